/**
 * Where a part's bytes come from: one transcode shared by every viewer of the same part, the
 * `chunks/` cache when it is on, or a new ffmpeg. The server holds one {@link PartSources}; every
 * stream opens its parts through it, so viewers of the same video and part share one ffmpeg and
 * the transcode slots count ffmpeg processes, not viewers.
 *
 * A part is identified by everything that decides its bytes (the file, the frames and samples it
 * covers, its size, the encoder and its tuning), so only identical parts are shared or cached.
 * A running transcode is shared through a {@link SharedStream}: a viewer who comes while its
 * first byte is still kept reads from the start; later ones get a transcode of their own. Every
 * transcode's bytes pass through the honest-end check before anyone sees them, and a part is
 * committed to the cache only when it ended complete.
 *
 * @module
 */

import { DEFAULT_CONFIG } from "../../shared/config/mod.ts";
import { errorDetail } from "../../shared/errors.ts";
import type { Logger } from "../../shared/log.ts";
import { codecOf, type Encoder, type FastStart } from "./encoders.ts";
import { SharedStream } from "./fanout.ts";
import { buildFfmpegArgs } from "./ffmpeg_args.ts";
import { checkCoverage } from "./honest_end.ts";
import { type PartCache, type PartFields, partKey, sourceIdentity } from "./part_cache.ts";
import type { PlannedSegment } from "./plan.ts";
import type { VideoInfo } from "./probe.ts";
import type { SlotLease, TranscodeSlots } from "./slots.ts";
import { Transcode } from "./transcode.ts";

/** Bumped whenever the ffmpeg arguments change what a part's bytes are (keys cached parts). */
const ARGS_VERSION = 3;

/**
 * How {@link PartSources} transcodes, caps and caches.
 *
 * @example
 * ```ts
 * import type { PartSourcesOptions } from "./part_sources.ts";
 * import { TranscodeSlots } from "./slots.ts";
 * const options: PartSourcesOptions = { preset: "veryfast", slots: new TranscodeSlots(6) };
 * ```
 */
export interface PartSourcesOptions {
  /** The ffmpeg program (default: `[stream] ffmpeg`'s default). */
  ffmpegPath?: string;
  /** libx264 preset (default: `[stream] preset`'s default). */
  preset?: string;
  /** The H.264 encoder (default: software). */
  encoder?: Encoder;
  /** Server-wide slots; without them nothing is capped. */
  slots?: TranscodeSlots;
  /** The `chunks/` cache; without it nothing is saved. */
  cache?: PartCache;
  /** Bytes of a shared part kept for late and slower viewers (default 32 MiB). */
  shareBufferBytes?: number;
  /** Where failures to use the cache are reported (default: nowhere). */
  log?: Logger;
  /** Transcode workers of a cluster, tried before a local ffmpeg (see `server/cluster/`). */
  workers?: PartWorkers;
}

/**
 * A running transcode as {@link PartSources} uses it: a local {@link Transcode}, or a worker's
 * (`server/cluster/remote_transcode.ts`) with the same shape.
 */
export type PartTranscode =
  & Pick<Transcode, "stdout" | "status" | "pid" | "kill">
  // A local ffmpeg can be stopped while its viewers pause; a worker's goes on.
  & Partial<Pick<Transcode, "suspend" | "resume">>;

/**
 * Starts a part on a worker; undefined when no worker is free (the part then runs here).
 *
 * @example
 * ```ts
 * import type { PartWorkers } from "./part_sources.ts";
 * const none: PartWorkers = () => Promise.resolve(undefined);
 * ```
 */
export type PartWorkers = (
  request: PartRequest,
  preset: string,
  label: string,
) => Promise<PartTranscode | undefined>;

/**
 * One part to open: of which video, which planned part, and whether it is tuned to start fast.
 *
 * @example
 * ```ts
 * import type { PartRequest } from "./part_sources.ts";
 * const first = (request: PartRequest) => request.segment.index === 0;
 * ```
 */
export interface PartRequest {
  /** The video. */
  info: VideoInfo;
  /** The planned part. */
  segment: PlannedSegment;
  /** Tuning of the first part a stream plays. */
  fastStart?: FastStart;
}

/**
 * What to do when the part needs a new transcode and every slot is held: `busy` throws a
 * ReelayError code `busy` (a new play), `try` gives up with undefined (reading ahead), `wait`
 * waits for a slot ahead of new plays (a playing stream's next part).
 *
 * @example
 * ```ts
 * import type { SlotPolicy } from "./part_sources.ts";
 * const policy: SlotPolicy = "wait";
 * ```
 */
export type SlotPolicy = "busy" | "try" | "wait";

/**
 * An opened part: its bytes (cancel to leave), where they come from, and the ffmpeg behind them.
 *
 * @example
 * ```ts
 * import type { OpenedPart } from "./part_sources.ts";
 * const line = (part: OpenedPart) => `${part.origin} ${part.pid ?? "-"}`;
 * ```
 */
export interface OpenedPart {
  /** The part's MPEG-TS bytes; errors if the part failed or was short. */
  stream: ReadableStream<Uint8Array>;
  /** A new transcode, a running one shared, or the cache. */
  origin: "transcode" | "shared" | "cache";
  /** Process id of the ffmpeg behind it (not for the cache). */
  pid?: number;
  /**
   * This viewer pauses: the ffmpeg behind the part is stopped (SIGSTOP) once every viewer of it
   * has paused; a viewer still reading keeps it running.
   */
  suspend(): void;
  /** This viewer goes on: the ffmpeg runs again. */
  unsuspend(): void;
}

/**
 * How long a complete part small enough to be kept whole stays in memory for viewers who come
 * after it ended (its readers ahead of them have often read it to the end already).
 */
const LINGER_MS = 30_000;

interface Running {
  key: string;
  shared: SharedStream;
  transcode: PartTranscode;
  /** When the part ended complete (ms since the epoch). */
  completedAt?: number;
  /** Viewers of it that paused. */
  paused: Set<symbol>;
}

/**
 * Opens parts for every stream of a server. See the module documentation.
 *
 * @example
 * ```ts ignore
 * import { PartSources } from "./part_sources.ts";
 * const sources = new PartSources({ slots });
 * const part = await sources.open({ info, segment: plan.segments[0] }, "busy");
 * for await (const chunk of part!.stream) await Deno.stdout.write(chunk);
 * await sources.close();
 * ```
 */
export class PartSources {
  readonly #options: PartSourcesOptions;
  /** The joinable transcode of each part key (the newest one). */
  readonly #joinable = new Map<string, Running>();
  readonly #running = new Set<Running>();
  /** Parts being opened now, by key: a second viewer of one waits and joins. */
  readonly #opening = new Map<string, Promise<void>>();
  /** Cache commits and aborts not finished yet. */
  readonly #settling = new Set<Promise<void>>();
  #started = 0;

  /** Creates the sources; nothing runs until a part is opened. */
  constructor(options: PartSourcesOptions = {}) {
    this.#options = options;
  }

  /** ffmpeg processes running now. */
  get transcodes(): number {
    return this.#running.size;
  }

  /** ffmpeg processes started so far. */
  get started(): number {
    return this.#started;
  }

  /** The encoder parts are transcoded with. */
  get encoder(): Encoder {
    return this.#options.encoder ?? { kind: "software" };
  }

  /**
   * Opens a part: from a transcode of the same part that is running and still has its start,
   * else from the cache, else from a new ffmpeg (taking a slot as `policy` says; undefined only
   * with `try` when no slot is free). `signal` gives up a `wait`.
   */
  async open(
    request: PartRequest,
    policy: SlotPolicy,
    signal?: AbortSignal,
  ): Promise<OpenedPart | undefined> {
    const fields = this.#fields(request);
    const key = `${request.info.path}\n${JSON.stringify(fields)}`;
    while (true) {
      const joined = this.#join(key);
      if (joined) return joined;
      // Another viewer is opening this very part: wait for it, then join what it started.
      const opening = this.#opening.get(key);
      if (!opening) break;
      await opening;
    }
    const done = Promise.withResolvers<void>();
    this.#opening.set(key, done.promise);
    try {
      return await this.#openNew(key, request, fields, policy, signal);
    } finally {
      this.#opening.delete(key);
      done.resolve();
    }
  }

  async #openNew(
    key: string,
    request: PartRequest,
    fields: PartFields,
    policy: SlotPolicy,
    signal?: AbortSignal,
  ): Promise<OpenedPart | undefined> {
    const cacheKey = await this.#cacheKey(request, fields);
    const cached = cacheKey === undefined ? undefined : await this.#readCache(cacheKey);
    if (cached) return cached;
    const remote = await this.#options.workers?.(request, this.#preset, labelOf(request));
    if (remote) return await this.#start(key, request, undefined, cacheKey, remote);
    const lease = await this.#lease(policy, signal);
    if (this.#options.slots && !lease) return undefined;
    return await this.#start(key, request, lease, cacheKey);
  }

  /** Ends every transcode now (shutdown): their viewers' streams error with `reason`. */
  async close(reason: Error = new Error("The server is shutting down")): Promise<void> {
    for (const running of this.#joinable.values()) running.shared.release();
    this.#joinable.clear();
    await Promise.all([...this.#running].map(async (running) => {
      await running.shared.abort(reason);
      await running.transcode.kill();
    }));
    await Promise.all(this.#settling);
  }

  #fields(request: PartRequest): PartFields {
    const { segment, info, fastStart } = request;
    return {
      args: ARGS_VERSION,
      stream: info.videoStreamIndex,
      audio: info.audioStreamIndex ?? -1,
      startFrame: segment.startFrame,
      endFrame: segment.endFrame,
      last: segment.last,
      audioStart: segment.audioStartSample ?? -1,
      audioEnd: segment.audioEndSample ?? -1,
      width: segment.width,
      height: segment.height,
      encoder: codecOf(this.encoder),
      preset: this.#preset,
      fastStart: fastStart ? JSON.stringify(fastStart) : "",
    };
  }

  get #preset(): string {
    return this.#options.preset ?? DEFAULT_CONFIG.stream.preset;
  }

  #forget(running: Running): void {
    if (this.#joinable.get(running.key) === running) this.#joinable.delete(running.key);
  }

  /** Releases the complete parts nobody reads that cannot be joined or have lingered enough. */
  #sweep(now = Date.now()): void {
    for (const running of this.#joinable.values()) {
      if (running.completedAt === undefined) continue;
      const { consumers, firstRetainedByte } = running.shared.stats;
      if (consumers > 0) continue;
      if (firstRetainedByte > 0 || now - running.completedAt >= LINGER_MS) {
        running.shared.release();
        this.#forget(running);
      }
    }
  }

  #join(key: string): OpenedPart | undefined {
    this.#sweep();
    const running = this.#joinable.get(key);
    const stream = running?.shared.join();
    if (!running || !stream) return undefined;
    // A new viewer wants bytes now, paused others or not.
    running.transcode.resume?.();
    return { stream, origin: "shared", pid: running.transcode.pid, ...this.#holds(running) };
  }

  async #cacheKey(request: PartRequest, fields: PartFields): Promise<string | undefined> {
    if (!this.#options.cache) return undefined;
    try {
      return await partKey(await sourceIdentity(request.info.path), fields);
    } catch (error) {
      this.#options.log?.("warn", `Cache key of "${request.info.name}": ${errorDetail(error)}`);
      return undefined;
    }
  }

  async #readCache(key: string): Promise<OpenedPart | undefined> {
    try {
      const part = await this.#options.cache?.read(key);
      return part && { stream: part.stream, origin: "cache", suspend() {}, unsuspend() {} };
    } catch (error) {
      this.#options.log?.("warn", `Reading the cache failed: ${errorDetail(error)}`);
      return undefined;
    }
  }

  async #lease(policy: SlotPolicy, signal?: AbortSignal): Promise<SlotLease | undefined> {
    const slots = this.#options.slots;
    if (!slots) return undefined;
    if (policy === "busy") return slots.acquire();
    if (policy === "try") return slots.tryAcquire();
    return await slots.wait(signal);
  }

  async #start(
    key: string,
    request: PartRequest,
    lease: SlotLease | undefined,
    cacheKey: string | undefined,
    remote?: PartTranscode,
  ): Promise<OpenedPart> {
    const writer = cacheKey === undefined ? undefined : await this.#writer(cacheKey);
    const { info, segment } = request;
    const label = labelOf(request);
    let transcode: PartTranscode;
    try {
      transcode = remote ?? this.#startLocal(request, label);
    } catch (error) {
      lease?.release();
      await writer?.abort();
      throw error;
    }
    this.#started++;
    const fps = info.frameRate.num / info.frameRate.den;
    const checked = checkCoverage(transcode.stdout, {
      seconds: segment.end - segment.start,
      fps,
      label,
    });
    const shareBytes = this.#options.shareBufferBytes ?? 32 * 1024 * 1024;
    const shared = new SharedStream(writer ? writer.tee(checked) : checked, {
      maxBufferBytes: shareBytes,
      readAheadBytes: Math.min(1024 * 1024, Math.floor(shareBytes / 2)),
    });
    const running: Running = { key, shared, transcode, paused: new Set() };
    this.#running.add(running);
    this.#joinable.set(key, running);
    void transcode.status.then(() => {
      lease?.release();
      this.#running.delete(running);
    });
    const settled = shared.ended.then(async (end) => {
      // A complete part stays joinable a while (see LINGER_MS); a failed one is gone.
      if (end.kind === "complete") running.completedAt = Date.now();
      else this.#forget(running);
      if (!writer) return;
      if (end.kind === "complete") await writer.commit();
      else await writer.abort();
    });
    this.#settling.add(settled);
    void settled.finally(() => this.#settling.delete(settled));
    return {
      stream: shared.join()!,
      origin: "transcode",
      pid: transcode.pid,
      ...this.#holds(running),
    };
  }

  /** One viewer's pause and resume of a running part. */
  #holds(running: Running): Pick<OpenedPart, "suspend" | "unsuspend"> {
    const viewer = Symbol("viewer");
    return {
      suspend: () => {
        running.paused.add(viewer);
        if (running.paused.size >= running.shared.stats.consumers) running.transcode.suspend?.();
      },
      unsuspend: () => {
        running.paused.delete(viewer);
        running.transcode.resume?.();
      },
    };
  }

  #startLocal(request: PartRequest, label: string): Transcode {
    const args = buildFfmpegArgs(request.info, request.segment, {
      preset: this.#preset,
      encoder: this.#options.encoder,
      fastStart: request.fastStart,
    });
    return Transcode.start(this.#options.ffmpegPath ?? DEFAULT_CONFIG.stream.ffmpeg, args, label);
  }

  async #writer(key: string) {
    try {
      return await this.#options.cache?.write(key);
    } catch (error) {
      this.#options.log?.("warn", `Writing to the cache failed: ${errorDetail(error)}`);
      return undefined;
    }
  }
}

function labelOf(request: PartRequest): string {
  return `part ${request.segment.index + 1} of "${request.info.name}"`;
}
