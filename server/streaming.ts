/**
 * Video for connected viewers: the catalog as listings, and one stream per viewer pumped from
 * the transcoding parts into the viewer's connection, paced by the credit the viewer grants.
 *
 * @module
 */

import type { Config } from "../shared/config.ts";
import { messageOf, ReelayError } from "../shared/errors.ts";
import { encodeStreamHeader } from "../shared/protocol/frame.ts";
import type { FramedConnection } from "../shared/protocol/framed.ts";
import type { StreamEndReason, VideoListing } from "../shared/protocol/messages.ts";
import { type Catalog, requireVideo, type VideoInfo } from "./catalog.ts";
import type { Viewer } from "./connection.ts";
import type { Logger } from "./log.ts";
import { planPlayback, streamVideo, TranscodeSlots, type VideoStream } from "./playback.ts";

/**
 * The catalog as clients see it: names, durations, sizes and the three parts each would play.
 *
 * @example
 * ```ts ignore
 * const listing = videoListing(info, { heights: [144, 720, 1440], capToSource: true });
 * ```
 */
export function videoListing(
  info: VideoInfo,
  stream: Pick<Config["stream"], "heights" | "capToSource">,
): VideoListing {
  const plan = planPlayback(info, stream);
  return {
    name: info.name,
    duration: round(info.duration),
    width: info.displayWidth,
    height: info.height,
    fps: round(info.frameRate.num / info.frameRate.den),
    hasAudio: info.hasAudio,
    segments: plan.segments.map((segment) => ({
      index: segment.index,
      start: round(segment.start - info.videoStart),
      end: round(segment.end - info.videoStart),
      width: segment.width,
      height: segment.height,
      requestedHeight: segment.requestedHeight,
      capped: segment.capped,
    })),
  };
}

function round(value: number): number {
  return Math.round(value * 1000) / 1000;
}

/**
 * Owns the server-wide transcode slots and every viewer's stream.
 *
 * @example
 * ```ts ignore
 * const service = new StreamingService(catalog, config, log);
 * const viewer = service.viewer(framed);
 * await service.close(); // stops every stream
 * ```
 */
export class StreamingService {
  readonly #catalog: Catalog;
  readonly #config: Config;
  readonly #log: Logger;
  readonly #slots: TranscodeSlots;
  readonly #viewers = new Set<StreamViewer>();
  #nextStream = 1;

  /** Creates the service over a catalog. */
  constructor(catalog: Catalog, config: Config, log: Logger) {
    this.#catalog = catalog;
    this.#config = config;
    this.#log = log;
    this.#slots = new TranscodeSlots(config.stream.maxTranscodes);
  }

  /** Transcodes running now. */
  get transcodes(): number {
    return this.#slots.inUse;
  }

  /** A viewer for one connection. */
  viewer(framed: FramedConnection): Viewer {
    const viewer = new StreamViewer(framed, this);
    this.#viewers.add(viewer);
    return viewer;
  }

  /** Stops every stream (their ffmpeg processes are killed and awaited). */
  async close(): Promise<void> {
    await Promise.all([...this.#viewers].map((viewer) => viewer.close()));
  }

  /** @internal */
  forget(viewer: StreamViewer): void {
    this.#viewers.delete(viewer);
  }

  /** @internal */
  listings(): VideoListing[] {
    return this.#catalog.list().map((info) => videoListing(info, this.#config.stream));
  }

  /** @internal Starts a stream of `name` or throws `unknown-video` / `busy`. */
  open(name: string): { id: number; stream: VideoStream; listing: VideoListing } {
    const info = requireVideo(this.#catalog, name);
    const plan = planPlayback(info, this.#config.stream);
    const stream = streamVideo(info, plan, {
      ffmpegPath: this.#config.stream.ffmpeg,
      preset: this.#config.stream.preset,
      slots: this.#slots,
    });
    return { id: this.#nextStream++, stream, listing: videoListing(info, this.#config.stream) };
  }

  /** @internal */
  get config(): Config {
    return this.#config;
  }

  /** @internal */
  get log(): Logger {
    return this.#log;
  }
}

interface Playing {
  id: number;
  stream: VideoStream;
  name: string;
  inFlight: number;
  bytes: number;
  stopReason?: StreamEndReason;
  creditArrived?: () => void;
  pumping: Promise<void>;
}

/** One connection's video: at most one stream at a time. */
class StreamViewer implements Viewer {
  readonly #framed: FramedConnection;
  readonly #service: StreamingService;
  #playing: Playing | undefined;
  #closed = false;

  constructor(framed: FramedConnection, service: StreamingService) {
    this.#framed = framed;
    this.#service = service;
  }

  list(ref: number | undefined): void {
    this.#framed.sendMessage({
      type: "videos",
      ...(ref === undefined ? {} : { ref }),
      videos: this.#service.listings(),
    });
  }

  async play(ref: number | undefined, video: string): Promise<void> {
    await this.stop(undefined);
    if (this.#closed) return;
    const { id, stream, listing } = this.#service.open(video);
    const playing: Playing = {
      id,
      stream,
      name: video,
      inFlight: 0,
      bytes: 0,
      pumping: Promise.resolve(),
    };
    this.#playing = playing;
    this.#service.log(
      "info",
      `Streaming ${JSON.stringify(video)} to ${this.#framed.remote} (stream ${id})`,
    );
    const start = this.#framed.sendOrderedMessage({
      type: "stream-start",
      ...(ref === undefined ? {} : { ref }),
      stream: id,
      video: listing,
    });
    playing.pumping = this.#pump(playing, start);
  }

  async stop(_ref: number | undefined): Promise<void> {
    const playing = this.#playing;
    if (!playing) return;
    playing.stopReason ??= "stopped";
    playing.creditArrived?.();
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
    playing.creditArrived?.();
  }

  /** Waits for a write, or gives up on a viewer whose socket takes nothing for too long. */
  async #withinStall(write: Promise<void>): Promise<void> {
    const stallMs = this.#service.config.limits.idleTimeoutMs;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const stalled = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new ReelayError("viewer-stalled", `Viewer took no stream data for ${stallMs / 1000} s`),
          ),
        stallMs,
      );
    });
    try {
      await Promise.race([write, stalled]);
    } finally {
      clearTimeout(timer);
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.stop(undefined);
    this.#service.forget(this);
  }

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
        const header = encodeStreamHeader(playing.id, event.segmentIndex, event.chunk.length);
        await this.#withinStall(this.#framed.sendOrdered(header, event.chunk));
      }
    } catch (error) {
      reason = "error";
      message = error instanceof ReelayError ? error.message : `Stream failed: ${messageOf(error)}`;
      if (!(error instanceof ReelayError)) {
        this.#service.log("error", (error as Error)?.stack ?? String(error));
      }
    } finally {
      await playing.stream.stop();
    }
    if (playing.stopReason) reason = playing.stopReason;
    const ended = `Stream ${playing.id} of ${
      JSON.stringify(playing.name)
    } to ${this.#framed.remote}`;
    if (reason === "error") this.#service.log("warn", `${ended} failed: ${message}`);
    else this.#service.log("info", `${ended} ${reason} after ${playing.bytes} bytes`);
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

  /** Waits until the viewer has room for `bytes` more, or gives up on a stalled viewer. */
  async #awaitCredit(playing: Playing, bytes: number): Promise<void> {
    const { windowBytes } = this.#service.config.stream;
    const stallMs = this.#service.config.limits.idleTimeoutMs;
    while (playing.inFlight > 0 && playing.inFlight + bytes > windowBytes && !playing.stopReason) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const arrived = await new Promise<boolean>((resolve) => {
        playing.creditArrived = () => resolve(true);
        timer = setTimeout(() => resolve(false), stallMs);
      });
      clearTimeout(timer);
      playing.creditArrived = undefined;
      if (!arrived) {
        throw new ReelayError(
          "viewer-stalled",
          `Viewer took no stream data for ${stallMs / 1000} s`,
        );
      }
    }
  }
}
