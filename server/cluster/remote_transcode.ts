/**
 * A node's side of a worker transcode: offers a part to the cluster's workers and, when one
 * takes it, reads its MPEG-TS back as a stream shaped like a local `Transcode` (`stdout`,
 * `status`, `kill()`), so what plays it does not change. The node grants bytes as the stream is
 * read, so the worker's ffmpeg is paced by the viewer; a worker silent for
 * {@linkcode GONE_MS} (killed, cut off) fails the part with `worker-gone`.
 *
 * @module
 */

import type { Subscription } from "@nats-io/transport-node";
import { AsyncQueue } from "../../shared/async.ts";
import { toHex, utf8 } from "../../shared/bytes.ts";
import { messageOf, ReelayError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/log.ts";
import type { TranscodeStatus } from "../media/transcode.ts";
import {
  BEAT_MS,
  creditSubject,
  GONE_MS,
  type JobAnswer,
  JOBS_SUBJECT,
  outSubject,
  type PartJob,
} from "./_jobs.ts";
import type { NatsConnection } from "./nats.ts";

/** A part to offer (the job without its id). */
export type PartOffer = Omit<PartJob, "id">;

/** How long a node waits for a worker to take a part. */
const OFFER_TIMEOUT_MS = 10_000;

/**
 * Offers parts to workers.
 *
 * @example
 * ```ts ignore
 * const transcoder = new RemoteTranscoder(nc, log);
 * const part = await transcoder.start(offer, "part 1 of \"cats.mp4\""); // undefined: no worker free
 * for await (const chunk of part!.stdout) viewer.write(chunk);
 * ```
 */
export class RemoteTranscoder {
  readonly #nc: NatsConnection;
  readonly #log: Logger;
  readonly #windowBytes: number;

  /** Offers over `nc`; each part may have `windowBytes` sent ahead of its reader. */
  constructor(nc: NatsConnection, log: Logger, windowBytes = 4 * 1024 * 1024) {
    this.#nc = nc;
    this.#log = log;
    this.#windowBytes = windowBytes;
  }

  /**
   * Hands the part to a free worker; undefined when none is free (the node transcodes it
   * itself). Throws when a worker refuses it for a reason other than being busy (say, it has
   * another file by that name), so the mistake is seen.
   */
  async start(offer: PartOffer, label: string): Promise<RemoteTranscode | undefined> {
    const job: PartJob = { id: toHex(crypto.getRandomValues(new Uint8Array(16))), ...offer };
    const out = this.#nc.subscribe(outSubject(job.id));
    let answer: JobAnswer;
    try {
      await this.#nc.flush();
      const reply = await this.#nc.request(JOBS_SUBJECT, utf8(JSON.stringify(job)), {
        timeout: OFFER_TIMEOUT_MS,
      });
      answer = JSON.parse(new TextDecoder().decode(reply.data)) as JobAnswer;
    } catch (error) {
      out.unsubscribe();
      if (/no responders/i.test(messageOf(error))) return undefined;
      throw new ReelayError(
        "cluster-unavailable",
        `No worker answered for ${label} (${messageOf(error)})`,
        { cause: error },
      );
    }
    if (!answer.accepted) {
      out.unsubscribe();
      if (answer.reason === "busy") return undefined;
      throw new ReelayError("worker-refused", `A worker refused ${label}: ${answer.reason}`);
    }
    this.#log("info", `${label} runs on ${answer.worker}`);
    return new RemoteTranscode(this.#nc, job.id, out, label, answer.worker, this.#windowBytes);
  }
}

/** A part transcoded by a worker, read like a local `Transcode`. */
export class RemoteTranscode {
  /** The part's bytes; errors with `worker-gone` or `transcode-failed`. */
  readonly stdout: ReadableStream<Uint8Array>;
  /** Resolves once the worker said the part ended (or was taken for gone). Never rejects. */
  readonly status: Promise<TranscodeStatus>;
  /** No local process: -1. */
  readonly pid = -1;
  readonly label: string;
  /** The worker that runs it. */
  readonly worker: string;
  readonly #nc: NatsConnection;
  readonly #credit: string;
  readonly #out: Subscription;
  readonly #queue = new AsyncQueue<Uint8Array>();
  readonly #ended = Promise.withResolvers<TranscodeStatus>();
  readonly #window: number;
  readonly #beat: ReturnType<typeof setInterval>;
  readonly #receiving: Promise<void>;
  #allowed: number;
  #consumed = 0;
  #lastHeard = Date.now();
  #killed = false;
  #killing: Promise<void> | undefined;

  constructor(
    nc: NatsConnection,
    id: string,
    out: Subscription,
    label: string,
    worker: string,
    windowBytes: number,
  ) {
    this.#nc = nc;
    this.#credit = creditSubject(id);
    this.#out = out;
    this.label = label;
    this.worker = worker;
    this.#window = windowBytes;
    this.#allowed = windowBytes;
    this.status = this.#ended.promise;
    this.#grant();
    this.#beat = setInterval(() => {
      if (Date.now() - this.#lastHeard > GONE_MS) {
        this.#fail(
          new ReelayError(
            "worker-gone",
            `Worker ${worker} went silent while transcoding ${label}: the part is lost`,
          ),
        );
        return;
      }
      this.#grant();
    }, BEAT_MS);
    this.#receiving = this.#receive();
    this.stdout = new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        try {
          const chunk = await this.#queue.take();
          if (chunk === undefined) return controller.close();
          this.#consumed += chunk.length;
          if (this.#allowed - this.#consumed < this.#window / 2) {
            this.#allowed = this.#consumed + this.#window;
            this.#grant();
          }
          controller.enqueue(chunk);
        } catch (error) {
          if (this.#killed) controller.close();
          else controller.error(error);
        }
      },
      cancel: () => this.kill(),
    }, { highWaterMark: 0 });
  }

  /** True once {@linkcode RemoteTranscode.kill} was called. */
  get killed(): boolean {
    return this.#killed;
  }

  /** Tells the worker to stop (its ffmpeg is killed there) and stops listening. Idempotent. */
  kill(): Promise<void> {
    this.#killing ??= (async () => {
      this.#killed = true;
      this.#queue.end();
      if (!this.#nc.isClosed()) this.#nc.publish(this.#credit, utf8("cancel"));
      this.#finish({ code: 255, signal: null, killed: true });
      await this.#receiving;
    })();
    return this.#killing;
  }

  #grant(): void {
    if (this.#nc.isClosed()) return;
    this.#nc.publish(this.#credit, utf8(String(this.#allowed)));
  }

  async #receive(): Promise<void> {
    let expected = 0;
    for await (const message of this.#out) {
      this.#lastHeard = Date.now();
      const h = message.headers;
      if (h?.get("Beat")) continue;
      const seq = Number(h?.get("Seq"));
      if (seq !== expected) {
        this.#fail(
          new ReelayError(
            "worker-gone",
            `Bytes of ${this.label} from ${this.worker} were lost in the cluster (message ${expected} missing)`,
          ),
        );
        break;
      }
      expected++;
      const end = h?.get("End");
      if (end === "ok") {
        this.#queue.end();
        this.#finish({ code: 0, signal: null, killed: false });
        break;
      }
      if (end) {
        const reason = new TextDecoder().decode(message.data) || end;
        this.#fail(
          new ReelayError("transcode-failed", `${this.label} failed on ${this.worker}: ${reason}`),
        );
        break;
      }
      this.#queue.push(message.data);
    }
  }

  #fail(error: ReelayError): void {
    this.#queue.end(error);
    this.#finish({ code: 1, signal: null, killed: false, error });
  }

  #finish(status: TranscodeStatus): void {
    clearInterval(this.#beat);
    this.#out.unsubscribe();
    this.#ended.resolve(status);
  }
}
