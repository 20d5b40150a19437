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
import { planPlayback } from "./plan.ts";
import { PartCache } from "./part_cache.ts";
import { PartSources, type PartWorkers } from "./part_sources.ts";
import { streamVideo, type VideoStream } from "./playback.ts";
import { TranscodeSlots } from "./slots.ts";

/** A viewer's video controls, owned by one connection. */
export interface Viewer {
  /** Answers `videos` with the catalog's listings. */
  list(ref: number | undefined): void;
  /** Starts a stream (stopping the current one); throws `unknown-video` or `busy`. */
  play(ref: number | undefined, video: string): Promise<void>;
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
}

/** What a viewer needs from the service that made it. */
interface ViewerDeps {
  listings(): VideoListing[];
  open(name: string): Promise<OpenedStream>;
  forget(viewer: StreamViewer): void;
  log: Logger;
  /** Stream bytes a viewer may have unacknowledged. */
  windowBytes: number;
  /** How long a viewer may take no stream data before it is given up on. */
  stallMs: number;
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
    const { cache, cacheDir, cacheMaxBytes, cacheMaxAgeMs } = config.media;
    const partCache = cache
      ? await PartCache.open({ dir: cacheDir, maxBytes: cacheMaxBytes, maxAgeMs: cacheMaxAgeMs })
      : undefined;
    if (partCache) {
      log("info", `Caching finished parts in ${partCache.dir} (at most ${cacheMaxBytes} bytes)`);
    }
    return new MediaService(catalog, config, log, { cache: partCache, workers: options.workers });
  }

  /** Creates the service over a catalog (without a cache unless given one). */
  constructor(
    catalog: Catalog,
    config: Config,
    log: Logger,
    options: { cache?: PartCache; workers?: PartWorkers } = {},
  ) {
    this.#catalog = catalog;
    this.#config = config;
    this.#slots = new TranscodeSlots(config.stream.maxTranscodes);
    this.#sources = new PartSources({
      ffmpegPath: config.stream.ffmpeg,
      preset: config.stream.preset,
      slots: this.#slots,
      cache: options.cache,
      shareBufferBytes: config.media.shareBufferBytes,
      workers: options.workers,
      log,
    });
    this.#deps = {
      listings: () => this.#listings(),
      open: (name) => this.#open(name),
      forget: (viewer) => this.#viewers.delete(viewer),
      log,
      windowBytes: config.stream.windowBytes,
      stallMs: config.limits.idleTimeoutMs,
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
    return this.#catalog.list().map((info) => planPlayback(info, this.#config.stream).listing);
  }

  /** Starts a stream of `name` or throws `unknown-video` / `busy`. */
  async #open(name: string): Promise<OpenedStream> {
    const info = requireVideo(this.#catalog, name);
    const plan = planPlayback(info, this.#config.stream);
    const stream = await streamVideo(info, plan, { sources: this.#sources });
    return { id: this.#nextStream++, stream, listing: plan.listing };
  }
}

interface Playing {
  id: number;
  stream: VideoStream;
  name: string;
  inFlight: number;
  bytes: number;
  stopReason?: StreamEndReason;
  /** Woken when credit arrives or the stream is stopped. */
  credit: Wake;
  pumping: Promise<void>;
}

function withRef(ref: number | undefined): { ref?: number } {
  return ref === undefined ? {} : { ref };
}

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

  async play(ref: number | undefined, video: string): Promise<void> {
    await this.stop(undefined);
    if (this.#closed) return;
    const { id, stream, listing } = await this.#deps.open(video);
    if (this.#closed) return await stream.stop();
    const playing: Playing = {
      id,
      stream,
      name: video,
      inFlight: 0,
      bytes: 0,
      credit: new Wake(),
      pumping: Promise.resolve(),
    };
    this.#playing = playing;
    this.#deps.log(
      "info",
      `Streaming ${JSON.stringify(video)} to ${this.#framed.remote} (stream ${id})`,
    );
    const start = this.#framed.sendOrderedMessage({
      type: "stream-start",
      ...withRef(ref),
      stream: id,
      video: listing,
    });
    playing.pumping = this.#pump(playing, start);
  }

  async stop(_ref: number | undefined): Promise<void> {
    const playing = this.#playing;
    if (!playing) return;
    playing.stopReason ??= "stopped";
    playing.credit.wake();
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
      for await (const event of playing.stream) {
        if (playing.stopReason) break;
        if (event.type !== "chunk") continue;
        await this.#awaitCredit(playing, event.chunk.length);
        if (playing.stopReason) break;
        playing.inFlight += event.chunk.length;
        playing.bytes += event.chunk.length;
        const sent = this.#framed.sendStream(playing.id, event.segmentIndex, event.chunk);
        // A socket that takes nothing for too long is a stalled viewer too.
        await withTimeout(sent, this.#deps.stallMs, this.#stalled);
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

  #logEnd(playing: Playing, reason: StreamEndReason, message: string | undefined): void {
    const ended = `Stream ${playing.id} of ${
      JSON.stringify(playing.name)
    } to ${this.#framed.remote}`;
    if (reason === "error") this.#deps.log("warn", `${ended} failed: ${message}`);
    else this.#deps.log("info", `${ended} ${reason} after ${playing.bytes} bytes`);
  }

  /** Waits until the viewer has room for `bytes` more, or gives up on a stalled viewer. */
  async #awaitCredit(playing: Playing, bytes: number): Promise<void> {
    const { windowBytes, stallMs } = this.#deps;
    while (playing.inFlight > 0 && playing.inFlight + bytes > windowBytes && !playing.stopReason) {
      await withTimeout(playing.credit.wait(), stallMs, this.#stalled);
    }
  }
}
