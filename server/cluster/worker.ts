/**
 * A transcode worker: takes part jobs from the cluster while it has a free slot, runs ffmpeg on
 * its own copy of the video library, and streams the MPEG-TS back to the node that asked,
 * within the node's credit. See `_jobs.ts` for the protocol and `docs/cluster.md` for the design.
 *
 * Back-pressure is by subscription: the worker is in the `workers` queue group only while it has
 * a free slot, so NATS never offers a job to a worker that cannot run it in real time.
 *
 * @module
 */

import { headers, type Msg, type Subscription } from "@nats-io/transport-node";
import { Wake } from "../../shared/async.ts";
import { toHex, utf8 } from "../../shared/bytes.ts";
import { errorDetail, messageOf, ReelayError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/log.ts";
import { DEFAULT_FAST_START } from "../media/encoders.ts";
import { buildFfmpegArgs } from "../media/ffmpeg_args.ts";
import type { VideoInfo } from "../media/probe.ts";
import { probeVideo } from "../media/tools.ts";
import { Transcode } from "../media/transcode.ts";
import {
  BEAT_MS,
  creditSubject,
  GONE_MS,
  JOB_ID,
  type JobAnswer,
  JOBS_SUBJECT,
  outSubject,
  type PartJob,
  WORKERS_GROUP,
} from "./_jobs.ts";
import type { NatsConnection } from "./nats.ts";

/** How a worker runs. */
export interface WorkerOptions {
  /** The video library (the same files as the nodes'). */
  videos: string;
  /** Parts run at once: as many as this machine transcodes in real time. */
  slots: number;
  ffmpegPath: string;
  ffprobePath: string;
  log: Logger;
  /** This worker's id, for logs and answers. */
  id?: string;
}

const SAFE_NAME = /^[^/\\\0]+$/;

/**
 * A running worker.
 *
 * @example
 * ```ts ignore
 * const worker = TranscodeWorker.start(nc, { videos: "videos", slots: 2, ffmpegPath: "ffmpeg", ffprobePath: "ffprobe", log });
 * await worker.close(); // ends every part it runs, killing its ffmpeg
 * ```
 */
export class TranscodeWorker {
  readonly id: string;
  readonly #nc: NatsConnection;
  readonly #options: WorkerOptions;
  readonly #jobs = new Set<Promise<void>>();
  readonly #transcodes = new Set<Transcode>();
  readonly #probes = new Map<string, Promise<VideoInfo>>();
  #offers: Subscription | undefined;
  #listening: Promise<void> | undefined;
  #closed = false;

  private constructor(nc: NatsConnection, options: WorkerOptions) {
    this.#nc = nc;
    this.#options = options;
    this.id = options.id ?? `worker-${toHex(crypto.getRandomValues(new Uint8Array(4)))}`;
  }

  /** Starts taking jobs; resolves once NATS has the subscription. */
  static async start(nc: NatsConnection, options: WorkerOptions): Promise<TranscodeWorker> {
    if (!Number.isInteger(options.slots) || options.slots < 1) {
      throw new RangeError(`Worker slots ${options.slots} must be a whole number of 1 or more`);
    }
    const worker = new TranscodeWorker(nc, options);
    worker.#updateOffers();
    await nc.flush();
    return worker;
  }

  /** Parts running now. */
  get running(): number {
    return this.#jobs.size;
  }

  /** Process ids of the ffmpeg processes running now. */
  get pids(): number[] {
    return [...this.#transcodes].map((transcode) => transcode.pid);
  }

  /** Stops taking jobs, ends the running ones (their nodes are told) and waits for them. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#offers?.unsubscribe();
    this.#offers = undefined;
    await Promise.all([...this.#transcodes].map((transcode) => transcode.kill()));
    await Promise.all(this.#jobs);
    await this.#listening;
  }

  /** In the queue group while a slot is free; out of it while full (back-pressure). */
  #updateOffers(): void {
    const free = !this.#closed && this.#jobs.size < this.#options.slots;
    if (free && !this.#offers) {
      const offers = this.#nc.subscribe(JOBS_SUBJECT, { queue: WORKERS_GROUP });
      this.#offers = offers;
      this.#listening = this.#listen(offers);
    } else if (!free && this.#offers) {
      this.#offers.unsubscribe();
      this.#offers = undefined;
    }
  }

  async #listen(offers: Subscription): Promise<void> {
    for await (const message of offers) {
      if (this.#closed || this.#jobs.size >= this.#options.slots) {
        // Offered between filling up and leaving the group: the node tries elsewhere.
        answer(message, { accepted: false, reason: "busy" });
        continue;
      }
      let job: PartJob;
      try {
        job = parseJob(message.data);
      } catch (error) {
        answer(message, { accepted: false, reason: messageOf(error) });
        continue;
      }
      const running = this.#run(job, message).catch((error) => {
        this.#options.log("error", `Job ${job.id} failed: ${errorDetail(error)}`);
      });
      this.#jobs.add(running);
      this.#updateOffers();
      void running.finally(() => {
        this.#jobs.delete(running);
        this.#updateOffers();
      });
    }
  }

  async #run(job: PartJob, offer: Msg): Promise<void> {
    let transcode: Transcode;
    try {
      transcode = await this.#start(job);
    } catch (error) {
      answer(offer, { accepted: false, reason: messageOf(error) });
      return;
    }
    this.#transcodes.add(transcode);
    try {
      await this.#stream(job, offer, transcode);
    } finally {
      await transcode.kill();
      this.#transcodes.delete(transcode);
    }
  }

  async #start(job: PartJob): Promise<Transcode> {
    if (!SAFE_NAME.test(job.video) || job.video.startsWith(".")) {
      throw new ReelayError(
        "unknown-video",
        `Video name ${JSON.stringify(job.video)} is not allowed`,
      );
    }
    const path = `${this.#options.videos}/${job.video}`;
    let probing = this.#probes.get(path);
    if (!probing) {
      probing = probeVideo(path, this.#options.ffprobePath);
      this.#probes.set(path, probing);
      probing.catch(() => this.#probes.delete(path));
    }
    const info = await probing;
    if (info.size !== job.size) {
      this.#probes.delete(path);
      throw new ReelayError(
        "library-mismatch",
        `Worker ${this.id} has another "${job.video}" (${info.size} bytes, the node's has ${job.size})`,
      );
    }
    const args = buildFfmpegArgs(info, job.segment, {
      preset: job.preset,
      fastStart: job.fastStart ? DEFAULT_FAST_START : undefined,
    });
    const label = `part ${job.segment.index + 1} of "${job.video}" on ${this.id}`;
    return Transcode.start(this.#options.ffmpegPath, args, label);
  }

  /** Sends ffmpeg's bytes within the node's credit, with heartbeats, then the end. */
  async #stream(job: PartJob, offer: Msg, transcode: Transcode): Promise<void> {
    const out = outSubject(job.id);
    let allowed = 0;
    let cancelled = false;
    let lastHeard = Date.now();
    const changed = new Wake();
    const credit = this.#nc.subscribe(creditSubject(job.id));
    const hearing = (async () => {
      for await (const message of credit) {
        lastHeard = Date.now();
        const text = new TextDecoder().decode(message.data);
        if (text === "cancel") cancelled = true;
        else if (/^\d+$/.test(text)) allowed = Math.max(allowed, Number(text));
        changed.wake();
      }
    })();
    const beat = setInterval(() => {
      if (Date.now() - lastHeard > GONE_MS) {
        this.#options.log("warn", `Node of job ${job.id} went quiet: the part is stopped`);
        cancelled = true;
        changed.wake();
        return;
      }
      const h = headers();
      h.set("Beat", "1");
      this.#nc.publish(out, undefined, { headers: h });
    }, BEAT_MS);
    try {
      await this.#nc.flush();
      answer(offer, { accepted: true, worker: this.id });
      let sent = 0;
      let seq = 0;
      const reader = transcode.stdout.getReader();
      try {
        while (!cancelled) {
          while (sent >= allowed && !cancelled) await changed.wait();
          if (cancelled) break;
          const read = await reader.read();
          if (read.done) break;
          const h = headers();
          h.set("Seq", String(seq++));
          this.#nc.publish(out, read.value, { headers: h });
          sent += read.value.length;
        }
        const end = headers();
        end.set("Seq", String(seq));
        end.set("End", cancelled ? "cancelled" : "ok");
        this.#nc.publish(out, undefined, { headers: end });
      } catch (error) {
        const end = headers();
        end.set("Seq", String(seq));
        end.set("End", "error");
        this.#nc.publish(out, utf8(messageOf(error)), { headers: end });
      } finally {
        reader.releaseLock();
      }
      await this.#nc.flush().catch(() => {});
    } finally {
      clearInterval(beat);
      credit.unsubscribe();
      await hearing;
    }
  }
}

function answer(message: Msg, value: JobAnswer): void {
  message.respond(utf8(JSON.stringify(value)));
}

function parseJob(data: Uint8Array): PartJob {
  const job = JSON.parse(new TextDecoder().decode(data)) as PartJob;
  if (
    typeof job !== "object" || job === null || typeof job.id !== "string" || !JOB_ID.test(job.id) ||
    typeof job.video !== "string" || typeof job.size !== "number" ||
    typeof job.segment !== "object" || job.segment === null || typeof job.preset !== "string"
  ) {
    throw new ReelayError("bad-job", "The job is not a reelay part job");
  }
  return job;
}

/** Flags of `reelay worker`. */
export interface WorkerFlags {
  cluster?: string;
  videos?: string;
  slots?: string;
  config: string;
  configGiven: boolean;
}
