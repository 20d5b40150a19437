/**
 * Video for connected viewers: the catalog as listings, and one stream per viewer pumped from
 * the transcoding parts into the viewer's connection, paced by the credit the viewer grants.
 *
 * @module
 */

import { Wake, withTimeout } from "../../shared/async.ts";
import type { Config } from "../../shared/config/mod.ts";
import { errorDetail, messageOf, ReelayError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/log.ts";
import type { ServerConnection, StreamEndReason, VideoListing } from "../../shared/protocol/mod.ts";
import { type Catalog, requireVideo } from "./catalog.ts";
import { TIMESTAMP_BASE_SECONDS } from "./ffmpeg_args.ts";
import {
  outputSampleRate,
  planFrom,
  planPlayback,
  type PlaybackPlan,
  type StartPoint,
  startPointAt,
} from "./plan.ts";
import type { VideoInfo } from "./probe.ts";
import { pesBoundary, TsClock } from "../../shared/ts_clock.ts";
import {
  describeEncoder,
  detectEncoder,
  type Detection,
  type Encoder,
  type EncoderSetting,
} from "./encoders.ts";
import { PartCache } from "./part_cache.ts";
import { PartSources, type PartWorkers } from "./part_sources.ts";
import { streamVideo, type VideoStream } from "./playback.ts";
import { TranscodeSlots } from "./slots.ts";

/** A viewer's video controls, owned by one connection. */
export interface Viewer {
  /** Answers `videos` with the catalog's listings. */
  list(ref: number | undefined): void;
  /**
   * Starts a stream (stopping the current one), from `from` seconds into the video when given
   * (a seek: a new stream from the frame shown then); throws `unknown-video` or `busy`.
   */
  play(ref: number | undefined, video: string, from?: number): Promise<void>;
  /** Pauses the current stream; throws `not-playing` when there is none. */
  pause(ref: number | undefined): void;
  /** Resumes the current stream; throws `not-playing` when there is none. */
  resume(ref: number | undefined): void;
  /** Stops the current stream, if any. */
  stop(ref: number | undefined): Promise<void>;
  /** The viewer consumed `bytes` of stream `stream`. */
  credit(stream: number, bytes: number): void;
  /** Ends any stream and kills its processes. */
  close(): Promise<void>;
  /** Whether a stream is playing (it holds a transcode); per-host stream caps count these. */
  readonly playing: boolean;
}

/** A stream just opened, with the listing its `stream-start` carries (from the same plan). */
interface OpenedStream {
  id: number;
  stream: VideoStream;
  listing: VideoListing;
  info: VideoInfo;
  /** The whole video's plan (a seek or a resume plays the rest of it). */
  plan: PlaybackPlan;
  /** Where the stream starts, in seconds from the video's start. */
  from: number;
}

/** What a viewer needs from the service that made it. */
interface ViewerDeps {
  listings(): VideoListing[];
  open(name: string, from: number): Promise<OpenedStream>;
  /** A stream of the rest of a plan (after a parked pause). */
  reopen(info: VideoInfo, plan: PlaybackPlan): Promise<VideoStream>;
  forget(viewer: StreamViewer): void;
  log: Logger;
  /** Stream bytes a viewer may have unacknowledged. */
  windowBytes: number;
  /** How long a viewer may take no stream data before it is given up on. */
  stallMs: number;
  /** How long a paused stream's ffmpeg stays stopped before it is ended (parked). */
  pauseGraceMs: number;
}

/**
 * Owns the server-wide transcode slots and every viewer's stream.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { defaultConfig } from "../../shared/config/mod.ts";
 * import { silentLogger } from "../../shared/log.ts";
 * import { Catalog } from "./catalog.ts";
 * import { MediaService } from "./viewer.ts";
 * const catalog = await Catalog.open(await Deno.makeTempDir(), { watch: false });
 * const media = new MediaService(catalog, defaultConfig(), silentLogger);
 * assert.equal(media.transcodes, 0);
 * await media.close();
 * await catalog.close();
 * ```
 */
export class MediaService {
  readonly #catalog: Catalog;
  readonly #config: Config;
  readonly #slots: TranscodeSlots;
  readonly #sources: PartSources;
  readonly #viewers = new Set<StreamViewer>();
  readonly #deps: ViewerDeps;
  #nextStream = 1;

  /**
   * Creates the service over a catalog, opening the `chunks/` cache when `[media] cache` is on.
   *
   * @example
   * ```ts
   * import { defaultConfig } from "../../shared/config/mod.ts";
   * import { silentLogger } from "../../shared/log.ts";
   * import { Catalog } from "./catalog.ts";
   * import { MediaService } from "./viewer.ts";
   * const catalog = await Catalog.open(await Deno.makeTempDir(), { watch: false });
   * const media = await MediaService.open(catalog, defaultConfig(), silentLogger);
   * await media.close();
   * await catalog.close();
   * ```
   */
  static async open(
    catalog: Catalog,
    config: Config,
    log: Logger,
    options: { workers?: PartWorkers } = {},
  ): Promise<MediaService> {
    const encoder = await chooseEncoder(config, log);
    const { cache, cacheDir, cacheMaxBytes, cacheMaxAgeMs } = config.media;
    const partCache = cache
      ? await PartCache.open({ dir: cacheDir, maxBytes: cacheMaxBytes, maxAgeMs: cacheMaxAgeMs })
      : undefined;
    if (partCache) {
      log("info", `Caching finished parts in ${partCache.dir} (at most ${cacheMaxBytes} bytes)`);
    }
    return new MediaService(catalog, config, log, {
      cache: partCache,
      encoder,
      workers: options.workers,
    });
  }

  /** Creates the service over a catalog (without a cache unless given one). */
  constructor(
    catalog: Catalog,
    config: Config,
    log: Logger,
    options: { cache?: PartCache; encoder?: Encoder; workers?: PartWorkers } = {},
  ) {
    this.#catalog = catalog;
    this.#config = config;
    this.#slots = new TranscodeSlots(config.stream.maxTranscodes);
    this.#sources = new PartSources({
      ffmpegPath: config.stream.ffmpeg,
      preset: config.stream.preset,
      slots: this.#slots,
      cache: options.cache,
      encoder: options.encoder,
      shareBufferBytes: config.media.shareBufferBytes,
      workers: options.workers,
      log,
    });
    this.#deps = {
      listings: () => this.#listings(),
      open: (name, from) => this.#open(name, from),
      // A parked stream going on waits for a slot, ahead of new plays, instead of failing busy.
      reopen: (info, plan) =>
        streamVideo(info, plan, { sources: this.#sources, waitForSlot: true }),
      forget: (viewer) => this.#viewers.delete(viewer),
      log,
      windowBytes: config.stream.windowBytes,
      stallMs: config.limits.idleTimeoutMs,
      pauseGraceMs: config.media.pauseGraceMs,
    };
  }

  /** Transcodes running now. */
  get transcodes(): number {
    return this.#sources.transcodes;
  }

  /** Transcodes started since the service began. */
  get transcodesStarted(): number {
    return this.#sources.started;
  }

  /** A viewer for one connection. */
  viewer(framed: ServerConnection): Viewer {
    const viewer = new StreamViewer(framed, this.#deps);
    this.#viewers.add(viewer);
    return viewer;
  }

  /** Stops every stream (their ffmpeg processes are killed and awaited). */
  async close(): Promise<void> {
    await Promise.all([...this.#viewers].map((viewer) => viewer.close()));
    await this.#sources.close();
  }

  #listings(): VideoListing[] {
    const encoder = describeEncoder(this.#sources.encoder);
    return this.#catalog.list().map((info) => ({
      ...planPlayback(info, this.#config.stream).listing,
      encoder,
    }));
  }

  /** Starts a stream of `name` from `from` seconds, or throws `unknown-video` / `busy`. */
  async #open(name: string, from: number): Promise<OpenedStream> {
    const info = requireVideo(this.#catalog, name);
    const plan = planPlayback(info, this.#config.stream);
    if (from >= info.duration) {
      throw new ReelayError(
        "bad-position",
        `Position "${from}" s is past the end of "${name}" (${round3(info.duration)} s long)`,
      );
    }
    const rest = from > 0 ? planFrom(plan, info, startPointAt(info, from)) : plan;
    const stream = await streamVideo(info, rest, { sources: this.#sources });
    const start = rest.segments[0].start - info.videoStart;
    return { id: this.#nextStream++, stream, listing: plan.listing, info, plan, from: start };
  }
}

interface Playing {
  id: number;
  stream: VideoStream;
  name: string;
  info: VideoInfo;
  plan: PlaybackPlan;
  inFlight: number;
  bytes: number;
  stopReason?: StreamEndReason;
  /** Woken when credit arrives or the stream is stopped. */
  credit: Wake;
  pumping: Promise<void>;
  /** Timestamps of every byte sent: where a parked stream goes on. */
  sent: TsClock;
  /** Bytes of the current part sent (where its transport packets start). */
  partBytes: number;
  /** The viewer asked to pause and has not resumed. */
  paused: boolean;
  /** The paused stream's ffmpeg was ended after the grace time; resuming starts a new one. */
  parked: boolean;
  /** Woken on pause, resume, park and stop. */
  control: Wake;
  /** The stream whose drop from a shared part is watched (once per stream, not per pause). */
  watched?: VideoStream;
  /** Why that stream was dropped from its shared part, once it was. */
  droppedWhy?: string;
}

function withRef(ref: number | undefined): { ref?: number } {
  return ref === undefined ? {} : { ref };
}

/** How a paused stream went on. */
type HoldOutcome = "resumed" | "parked" | "stopped";

/** One connection's video: at most one stream at a time. */
class StreamViewer implements Viewer {
  readonly #framed: ServerConnection;
  readonly #deps: ViewerDeps;
  #playing: Playing | undefined;
  #closed = false;

  constructor(framed: ServerConnection, deps: ViewerDeps) {
    this.#framed = framed;
    this.#deps = deps;
  }

  get playing(): boolean {
    return this.#playing !== undefined;
  }

  list(ref: number | undefined): void {
    this.#framed.sendMessage({ type: "videos", ...withRef(ref), videos: this.#deps.listings() });
  }

  async play(ref: number | undefined, video: string, from = 0): Promise<void> {
    await this.stop(undefined);
    if (this.#closed) return;
    const opened = await this.#deps.open(video, from);
    if (this.#closed) return await opened.stream.stop();
    const playing: Playing = {
      id: opened.id,
      stream: opened.stream,
      name: video,
      info: opened.info,
      plan: opened.plan,
      inFlight: 0,
      bytes: 0,
      credit: new Wake(),
      pumping: Promise.resolve(),
      sent: new TsClock(),
      partBytes: 0,
      paused: false,
      parked: false,
      control: new Wake(),
    };
    this.#playing = playing;
    const at = opened.from > 0 ? ` from ${opened.from.toFixed(3)} s` : "";
    this.#deps.log(
      "info",
      `Streaming ${JSON.stringify(video)}${at} to ${this.#framed.remote} (stream ${opened.id})`,
    );
    const start = this.#framed.sendOrderedMessage({
      type: "stream-start",
      ...withRef(ref),
      stream: opened.id,
      video: opened.listing,
      ...(opened.from > 0 ? { from: round3(opened.from) } : {}),
    });
    playing.pumping = this.#pump(playing, start);
  }

  pause(_ref: number | undefined): void {
    const playing = this.#current();
    if (playing.paused) return;
    playing.paused = true;
    playing.control.wake();
  }

  resume(_ref: number | undefined): void {
    const playing = this.#current();
    if (!playing.paused) return;
    playing.paused = false;
    playing.control.wake();
  }

  #current(): Playing {
    const playing = this.#playing;
    if (!playing) throw new ReelayError("not-playing", "Nothing is playing");
    return playing;
  }

  async stop(_ref: number | undefined): Promise<void> {
    const playing = this.#playing;
    if (!playing) return;
    playing.stopReason ??= "stopped";
    playing.credit.wake();
    playing.control.wake();
    await playing.stream.stop();
    await playing.pumping;
  }

  credit(stream: number, bytes: number): void {
    const playing = this.#playing;
    if (!playing || playing.id !== stream) return;
    if (bytes > playing.inFlight) {
      // Credit for bytes never sent would let a client that does not read hold ffmpeg forever.
      throw new ReelayError(
        "bad-credit",
        `Credit of ${bytes} bytes exceeds the ${playing.inFlight} bytes in flight`,
      );
    }
    playing.inFlight -= bytes;
    playing.credit.wake();
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.stop(undefined);
    this.#deps.forget(this);
  }

  /** The error for a viewer that took no stream data for too long. */
  #stalled = (): ReelayError =>
    new ReelayError(
      "viewer-stalled",
      `Viewer took no stream data for ${this.#deps.stallMs / 1000} s`,
    );

  async #pump(playing: Playing, start: Promise<void>): Promise<void> {
    let reason: StreamEndReason = "complete";
    let message: string | undefined;
    try {
      await start;
      while ((await this.#pumpStream(playing)) === "parked" && !playing.stopReason) {
        // Resumed after the grace time: a new ffmpeg from the frame and sample after the last
        // ones sent. Every part joins like a third does, so the stream stays one MPEG-TS.
        const rest = planFrom(playing.plan, playing.info, this.#resumePoint(playing));
        if (rest.segments.length === 0) break;
        playing.stream = await this.#deps.reopen(playing.info, rest);
        this.#deps.log("info", `${this.#describe(playing)} resumed with a new ffmpeg`);
      }
    } catch (error) {
      reason = "error";
      message = error instanceof ReelayError ? error.message : `Stream failed: ${messageOf(error)}`;
      if (!(error instanceof ReelayError)) this.#deps.log("error", errorDetail(error));
    } finally {
      await playing.stream.stop();
    }
    if (playing.stopReason) reason = playing.stopReason;
    this.#logEnd(playing, reason, message);
    if (this.#playing === playing) this.#playing = undefined;
    if (this.#framed.closed) return;
    await this.#framed.sendOrderedMessage({
      type: "stream-end",
      stream: playing.id,
      bytes: playing.bytes,
      reason,
      ...(message === undefined ? {} : { message }),
    }).catch(() => {});
  }

  /**
   * Sends one stream's events until it ends ("end") or was parked while paused ("parked"). A
   * pause takes effect at the next place where every PES packet sent is whole, so what the
   * viewer has is exactly some frames and samples, and nothing half.
   */
  async #pumpStream(playing: Playing): Promise<"end" | "parked"> {
    for await (const event of playing.stream) {
      if (playing.stopReason) return "end";
      if (event.type !== "chunk") {
        playing.partBytes = 0;
        continue;
      }
      let chunk = event.chunk;
      while (chunk.length > 0) {
        const cut = playing.paused
          ? pesBoundary(chunk, (188 - playing.partBytes % 188) % 188) ?? chunk.length
          : chunk.length;
        if (cut > 0) {
          await this.#send(playing, event.segmentIndex, chunk.subarray(0, cut));
          chunk = chunk.subarray(cut);
          continue;
        }
        const outcome = await this.#hold(playing);
        if (outcome === "stopped") return "end";
        if (outcome === "parked") return "parked";
      }
      if (playing.stopReason) return "end";
    }
    return "end";
  }

  /**
   * Sends `bytes` in pieces that fit the viewer's window: the server waits for credit only with
   * the whole window in flight, so a viewer may grant it as late as that. (Waiting for room for
   * a whole chunk instead waited for ever on a viewer that had taken everything it was sent but
   * credits a quarter window at a time, as ours does: a chunk of more than three quarters of a
   * small window, which ffmpeg's pipe gives after a pause, never fitted.)
   */
  async #send(playing: Playing, segment: number, bytes: Uint8Array): Promise<void> {
    let rest = bytes;
    while (rest.length > 0) {
      const room = await this.#awaitRoom(playing);
      if (playing.stopReason) return;
      const piece = rest.subarray(0, room);
      rest = rest.subarray(piece.length);
      playing.inFlight += piece.length;
      playing.bytes += piece.length;
      playing.partBytes += piece.length;
      playing.sent.push(piece);
      const sent = this.#framed.sendStream(playing.id, segment, piece);
      // A socket that takes nothing for too long is a stalled viewer too.
      await withTimeout(sent, this.#deps.stallMs, this.#stalled);
    }
  }

  /**
   * Holds a paused stream at a clean cut: its ffmpeg is stopped at once (SIGSTOP), and ended
   * after the grace time (parked). A shared part that runs on for other viewers past what its
   * share keeps drops this one: it is parked at once, as it would be after the grace time. No
   * stall timeout runs while paused.
   */
  async #hold(playing: Playing): Promise<HoldOutcome> {
    const stream = playing.stream;
    stream.suspend();
    this.#deps.log("info", `${this.#describe(playing)} paused after ${playing.bytes} bytes`);
    const park = (why: string) => this.#park(playing, stream, why);
    const grace = setTimeout(() => park("its ffmpeg is ended"), this.#deps.pauseGraceMs);
    if (playing.watched !== stream) {
      // One reaction per stream: a pause/resume loop must not pile up closures on a promise
      // that may never settle.
      playing.watched = stream;
      playing.droppedWhy = undefined;
      void stream.fellBehind.then((error) => {
        if (playing.stream !== stream) return;
        playing.droppedWhy =
          `dropped from a shared part (${error.message}); it goes on from what it was sent`;
        this.#park(playing, stream, playing.droppedWhy);
      });
    }
    if (playing.droppedWhy) park(playing.droppedWhy);
    try {
      while (playing.paused && !playing.parked && !playing.stopReason) {
        await playing.control.wait();
      }
    } finally {
      clearTimeout(grace);
    }
    if (playing.stopReason) return "stopped";
    if (!playing.parked) {
      stream.unsuspend();
      this.#deps.log("info", `${this.#describe(playing)} resumed`);
      return "resumed";
    }
    await stream.stop();
    while (playing.paused && !playing.stopReason) await playing.control.wait();
    playing.parked = false;
    return playing.stopReason ? "stopped" : "parked";
  }

  /** Parks a paused `stream` (its ffmpeg is ended on the way out of the hold). */
  #park(playing: Playing, stream: VideoStream, why: string): void {
    if (playing.stream !== stream || !playing.paused || playing.parked) return;
    playing.parked = true;
    this.#deps.log("info", `${this.#describe(playing)} parked: ${why}`);
    playing.control.wake();
  }

  /** The first frame and audio sample not sent yet. */
  #resumePoint(playing: Playing): StartPoint {
    const { info } = playing;
    const fps = info.frameRate.num / info.frameRate.den;
    const video = playing.sent.lastVideoPts;
    const audio = playing.sent.lastAudioPts;
    const first = playing.plan.segments[0];
    const frame = video === undefined
      ? first.startFrame
      : Math.round((video / 90_000 - TIMESTAMP_BASE_SECONDS - info.videoStart) * fps) + 1;
    if (audio === undefined) return { frame };
    const rate = outputSampleRate(info);
    const sample = Math.round((audio / 90_000 - TIMESTAMP_BASE_SECONDS) * rate) + 1024;
    return { frame, sample };
  }

  #describe(playing: Playing): string {
    return `Stream ${playing.id} of ${JSON.stringify(playing.name)} to ${this.#framed.remote}`;
  }

  #logEnd(playing: Playing, reason: StreamEndReason, message: string | undefined): void {
    const ended = this.#describe(playing);
    if (reason === "error") this.#deps.log("warn", `${ended} failed: ${message}`);
    else this.#deps.log("info", `${ended} ${reason} after ${playing.bytes} bytes`);
  }

  /**
   * Waits until the viewer's window has room, or gives up on a stalled viewer; returns how many
   * bytes fit.
   */
  async #awaitRoom(playing: Playing): Promise<number> {
    const { windowBytes, stallMs } = this.#deps;
    const room = () => windowBytes - playing.inFlight;
    while (room() <= 0 && !playing.stopReason) {
      await withTimeout(playing.credit.wait(), stallMs, this.#stalled);
    }
    return room();
  }
}

function round3(value: number): number {
  return Math.round(value * 1000) / 1000;
}

/** Detections already made in this process, by setting and program: hardware does not change. */
const detections = new Map<string, Promise<Detection>>();

/**
 * The encoder `[media] encoder` asks for: `auto` tries the hardware (a one-frame trial each) and
 * falls back to software; a forced hardware encoder that fails its trial stops the server with
 * `encoder-unavailable`. The choice and what was tried go to the log.
 */
async function chooseEncoder(config: Config, log: Logger): Promise<Encoder> {
  const setting = config.media.encoder as EncoderSetting;
  const key = `${setting}\n${config.stream.ffmpeg}`;
  let detection = detections.get(key);
  if (!detection) {
    detection = detectEncoder({ setting, ffmpegPath: config.stream.ffmpeg });
    detections.set(key, detection);
    detection.catch(() => detections.delete(key));
  }
  const { encoder, trials } = await detection;
  const tried = trials.map((trial) => `${trial.kind}: ${trial.detail.split("\n")[0]}`);
  log(
    "info",
    `Encoding with ${describeEncoder(encoder)}` +
      (tried.length > 0 ? ` (tried ${tried.join("; ")})` : ""),
  );
  return encoder;
}
