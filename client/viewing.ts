/**
 * The client's side of one video stream: match stream bytes to the stream the server started,
 * hand them to the sink in order, grant the server credit as the sink consumes (so a slow
 * player slows the server's ffmpeg, not the chat), and report segments, progress and the end.
 *
 * Progress is reported as it happens (every chunk, and every second while a real-time player
 * plays what it has); how often it is shown is decided by whoever shows it (`client/tui/`).
 *
 * @module
 */

import { deferred, settlesWithin, Wake } from "../shared/async.ts";
import { ReelayError, UsageError } from "../shared/errors.ts";
import type {
  ClientConnection,
  ServerMessage,
  StreamChunk,
  StreamEndReason,
  VideoListing,
} from "../shared/protocol/mod.ts";
import type { ClientEvent } from "./events.ts";
import { discardSink, type StreamSink } from "./player.ts";
import { shortfallTolerance, TsClock } from "../shared/ts_clock.ts";

type StreamStart = ServerMessage & { type: "stream-start" };
type StreamEnd = ServerMessage & { type: "stream-end" };

/** How long `/stop` waits for the server's confirmation before giving up on it. */
const STOP_TIMEOUT_MS = 3000;

/**
 * How often progress is reported while a real-time player plays: bytes arrive in bursts as it
 * grants credit (a quarter of the window at a time, seconds of video at a low resolution), and
 * the last window arrives long before it is shown, but the position on screen moves all along.
 */
const PROGRESS_TICK_MS = 1000;

/**
 * What a real-time player is showing, estimated from the time since it got the first bytes
 * (less the time paused) against where each part starts in the stream.
 */
interface Screen {
  /** The part on screen (-1 before the first). */
  shown: number;
  /** Parts whose bytes arrived, not yet on screen, in order. */
  arrived: number[];
  /** performance.now() when the player took the first bytes. */
  startedAt?: number;
  /** Time spent paused since then. */
  pausedMs: number;
  pausedAt?: number;
  timer?: ReturnType<typeof setTimeout>;
  /** Reports progress while a real-time player plays what it has (see `PROGRESS_TICK_MS`). */
  ticker?: ReturnType<typeof setInterval>;
}

interface Active {
  ref: number;
  sink: StreamSink;
  stream?: number;
  video?: VideoListing;
  queue: Uint8Array[];
  queuedBytes: number;
  received: number;
  consumed: number;
  credited: number;
  segment: number;
  clock: TsClock;
  /** Where in the video the stream starts, in seconds (after a seek or `--from`). */
  from: number;
  /** The viewer paused and has not resumed. */
  paused: boolean;
  /** What a real-time player shows: see {@link Viewing} `#show`. */
  screen: Screen;
  pumping: Promise<void>;
  /** Woken when bytes arrive or the stream ends. */
  wake: Wake;
  end?: { reason: StreamEndReason; bytes: number; message?: string };
  stopping?: { reason: StreamEndReason; message: string; quiet?: boolean };
  /** Settles once the stream has ended and its sink is closed. */
  finished: Promise<void>;
  finish: () => void;
}

/** The largest credit window the client grants, whatever the server announces. */
export const MAX_WINDOW_BYTES = 16 * 1024 * 1024;
/** The smallest (a server announcing less would only slow its own stream). */
export const MIN_WINDOW_BYTES = 64 * 1024;

/**
 * At most one stream at a time, tied to one connection.
 *
 * @example
 * ```ts ignore
 * const viewing = new Viewing(framed, emit, onIdle, 1 << 20);
 * viewing.expect(ref, sink); // before sending "play"
 * ```
 */
export class Viewing {
  readonly #framed: Pick<ClientConnection, "sendMessage" | "closed">;
  readonly #emit: (event: ClientEvent) => void;
  readonly #onIdle: () => void;
  #windowBytes = 1024 * 1024;
  #active: Active | undefined;

  /** Wires the viewer to a connection and an event listener. */
  constructor(
    framed: Pick<ClientConnection, "sendMessage" | "closed">,
    emit: (event: ClientEvent) => void,
    onIdle: () => void,
  ) {
    this.#framed = framed;
    this.#emit = emit;
    this.#onIdle = onIdle;
  }

  /** Whether a stream is requested or running. */
  get active(): boolean {
    return this.#active !== undefined;
  }

  /** Whether every byte of the stream is here (its end arrived): it needs no connection. */
  get arrived(): boolean {
    return this.#active?.end?.reason === "complete";
  }

  /**
   * Sets the window the server announced, on the client's own terms: clamped to
   * {@linkcode MIN_WINDOW_BYTES}..{@linkcode MAX_WINDOW_BYTES}, so a server announcing 2^53
   * cannot make the client hold more than twice the cap of stream data.
   */
  set windowBytes(bytes: number) {
    this.#windowBytes = Math.min(MAX_WINDOW_BYTES, Math.max(MIN_WINDOW_BYTES, bytes));
  }

  /** The window in use. */
  get windowBytes(): number {
    return this.#windowBytes;
  }

  /** Prepares for the answer to play request `ref`. */
  expect(ref: number, sink: StreamSink | undefined): void {
    const finished = deferred<void>();
    this.#active = {
      ref,
      sink: sink ?? discardSink(),
      queue: [],
      queuedBytes: 0,
      received: 0,
      consumed: 0,
      credited: 0,
      segment: -1,
      clock: new TsClock(),
      from: 0,
      paused: false,
      screen: { shown: -1, arrived: [], pausedMs: 0 },
      pumping: Promise.resolve(),
      wake: new Wake(),
      finished: finished.promise,
      finish: () => finished.resolve(),
    };
  }

  /** The server started the stream asked for. */
  started(message: StreamStart): void {
    const active = this.#active;
    if (!active || active.ref !== message.ref) return;
    active.stream = message.stream;
    active.video = message.video;
    active.from = message.from ?? 0;
    this.#emit({
      event: "stream-started",
      video: message.video.name,
      duration: message.video.duration,
      segments: message.video.segments,
      from: active.from,
    });
    active.pumping = this.#pump(active);
    void active.sink.gone.then(() => {
      if (this.#active !== active || active.end) return;
      const failure = active.sink.failure;
      void this.stop(
        failure ? "error" : "stopped",
        failure ? `Player failed: ${failure}` : "Player closed",
      );
    });
  }

  /** Stream bytes arrived. */
  data(chunk: StreamChunk): void {
    const active = this.#active;
    if (!active || active.stream !== chunk.streamId || active.end) return;
    if (active.queuedBytes > 2 * this.#windowBytes + chunk.media.length) {
      throw new ReelayError(
        "window-exceeded",
        "Server sent more stream data than the window allows",
      );
    }
    if (chunk.segment !== active.segment) this.#enterSegment(active, chunk.segment);
    const media = chunk.media.slice();
    active.received += media.length;
    active.clock.push(media);
    active.queue.push(media);
    active.queuedBytes += media.length;
    this.#reportProgress(active);
    active.wake.wake();
  }

  /**
   * The server ended the stream. After a complete stream, what is queued still reaches the sink
   * first; after a stop or an error, the rest is dropped and the player ends at once.
   */
  ended(message: StreamEnd): void {
    const active = this.#active;
    if (!active || active.stream !== message.stream) return;
    active.end = { reason: message.reason, bytes: message.bytes, message: message.message };
    if (message.reason === "complete") return active.wake.wake();
    // After our own /stop (or a failed player), our reason says more than the server's echo.
    const local = active.stopping;
    void this.#close(active, local?.reason ?? message.reason, local?.message ?? message.message);
  }

  /**
   * The video playing, the position (seconds into it) of the newest bytes that arrived, and the
   * position on screen (see `progress`'s `shown`).
   */
  get playing(): { video: string; position: number; shown: number; duration: number } | undefined {
    const active = this.#active;
    if (!active?.video) return undefined;
    const { name, duration } = active.video;
    const position = active.from + active.clock.position;
    return { video: name, position, shown: this.#shownPosition(active, position), duration };
  }

  /**
   * Where to pick the video up after the connection is lost: for a stream that is running (not
   * paused, not fully arrived), the position on screen (a real-time player shows less than has
   * arrived), else undefined.
   */
  resumePoint(): { video: string; position: number } | undefined {
    const active = this.#active;
    const playing = this.playing;
    if (!active || !playing || active.paused || active.end) return undefined;
    const { startedAt, pausedMs } = active.screen;
    if (active.sink.realtime !== true || startedAt === undefined) return playing;
    const shown = active.from + (performance.now() - startedAt - pausedMs) / 1000;
    return {
      video: playing.video,
      position: Math.max(active.from, Math.min(shown, playing.position)),
    };
  }

  /** Pauses the stream (the server stops sending, then stops its ffmpeg). */
  pause(): void {
    this.#control("pause");
  }

  /** Resumes a paused stream where it was. */
  resume(): void {
    this.#control("resume");
  }

  #control(type: "pause" | "resume"): void {
    const active = this.#active;
    const playing = this.playing;
    if (!active || active.stream === undefined || active.end || !playing) {
      throw new ReelayError("not-playing", "Nothing is playing");
    }
    if (active.paused === (type === "pause")) return;
    active.paused = type === "pause";
    this.#framed.sendMessage({ type });
    const screen = active.screen;
    if (active.paused) {
      screen.pausedAt = performance.now();
    } else if (screen.pausedAt !== undefined) {
      screen.pausedMs += performance.now() - screen.pausedAt;
      screen.pausedAt = undefined;
    }
    this.#show(active);
    const position = Math.round(playing.position * 10) / 10;
    this.#emit({ event: type === "pause" ? "paused" : "resumed", video: playing.video, position });
  }

  /**
   * Asks the server to stop and waits for it to confirm (or a short timeout). `quiet` leaves out
   * the `stream-ended` event (a seek replaces the stream).
   */
  async stop(
    reason: "stopped" | "error" = "stopped",
    message = "Stopped",
    quiet = false,
  ): Promise<void> {
    const active = this.#active;
    if (!active) return;
    active.stopping = { reason, message, quiet };
    if (!active.end && !this.#framed.closed) this.#framed.sendMessage({ type: "stop" });
    await settlesWithin(Promise.all([active.sink.abort(), active.finished]), STOP_TIMEOUT_MS);
    if (this.#active === active) await this.#close(active, reason, message);
  }

  /** A play request failed: release its sink. */
  async cancel(ref: number): Promise<void> {
    const active = this.#active;
    if (!active || active.ref !== ref) return;
    this.#active = undefined;
    await active.sink.abort();
    this.#onIdle();
  }

  /** The connection is gone: end the stream (as an error, or as stopped when the person left). */
  async abort(
    reason: string,
    how: "stopped" | "error" = "error",
    resumes?: boolean,
  ): Promise<void> {
    const active = this.#active;
    if (!active) return;
    if (active.stream === undefined) return await this.cancel(active.ref);
    await this.#close(active, how, reason, resumes);
  }

  #enterSegment(active: Active, index: number): void {
    active.segment = index;
    const plan = active.video?.segments[index];
    this.#emit({
      event: "segment",
      video: active.video?.name ?? "",
      index,
      height: plan?.height ?? 0,
      width: plan?.width ?? 0,
    });
    this.#reportProgress(active);
    active.screen.arrived.push(index);
    this.#show(active);
  }

  /**
   * Reports `showing` for each part once the player reaches it: at once for a sink that is no
   * real-time player (nothing to wait for), else when the time since the player took the first
   * bytes, less the time paused, reaches the part's start in the stream.
   */
  #show(active: Active): void {
    const screen = active.screen;
    clearTimeout(screen.timer);
    screen.timer = undefined;
    if (this.#active !== active) return;
    const realtime = active.sink.realtime === true;
    while (screen.arrived.length > 0) {
      const index = screen.arrived[0];
      if (realtime) {
        if (screen.startedAt === undefined || screen.pausedAt !== undefined) return;
        const starts = Math.max(0, (active.video?.segments[index]?.start ?? 0) - active.from);
        const due = screen.startedAt + screen.pausedMs + starts * 1000 - performance.now();
        if (due > 0) {
          screen.timer = setTimeout(() => this.#show(active), due);
          return;
        }
      }
      screen.arrived.shift();
      screen.shown = index;
      const plan = active.video?.segments[index];
      this.#emit({
        event: "showing",
        video: active.video?.name ?? "",
        index,
        height: plan?.height ?? 0,
        width: plan?.width ?? 0,
      });
    }
  }

  #reportProgress(active: Active): void {
    const video = active.video;
    const position = active.from + active.clock.position;
    this.#emit({
      event: "progress",
      video: video?.name ?? "",
      index: Math.max(active.segment, 0),
      height: video?.segments[Math.max(active.segment, 0)]?.height ?? 0,
      position: Math.round(position * 10) / 10,
      shown: Math.round(this.#shownPosition(active, position) * 10) / 10,
      duration: video?.duration ?? 0,
      bytes: active.received,
    });
  }

  /**
   * Seconds into the video on screen, by the same estimate as `showing`: what arrived for a sink
   * that is no real-time player; else the clock since the player took the first bytes, less the
   * time paused, never past what arrived.
   */
  #shownPosition(active: Active, arrived: number): number {
    if (active.sink.realtime !== true) return arrived;
    const { startedAt, pausedMs, pausedAt } = active.screen;
    if (startedAt === undefined) return active.from;
    const paused = pausedMs + (pausedAt === undefined ? 0 : performance.now() - pausedAt);
    const played = Math.max(0, (performance.now() - startedAt - paused) / 1000);
    return Math.min(arrived, active.from + played);
  }

  async #pump(active: Active): Promise<void> {
    while (this.#active === active) {
      const chunk = active.queue.shift();
      if (!chunk) {
        if (active.end) return await this.#complete(active);
        await active.wake.wait();
        continue;
      }
      active.queuedBytes -= chunk.length;
      try {
        await active.sink.write(chunk);
      } catch {
        // The player went away; `gone` asks the server to stop.
        active.queue.length = 0;
        active.queuedBytes = 0;
        await active.wake.wait();
        continue;
      }
      active.consumed += chunk.length;
      if (active.screen.startedAt === undefined) {
        active.screen.startedAt = performance.now();
        this.#show(active);
        if (active.sink.realtime === true) {
          active.screen.ticker = setInterval(() => {
            if (this.#active !== active) return clearInterval(active.screen.ticker);
            if (active.screen.pausedAt === undefined) this.#reportProgress(active);
          }, PROGRESS_TICK_MS);
        }
      }
      this.#grantCredit(active);
    }
  }

  #grantCredit(active: Active): void {
    const owed = active.consumed - active.credited;
    if (owed < this.#windowBytes / 4 || active.stream === undefined || active.end) return;
    active.credited = active.consumed;
    this.#framed.sendMessage({ type: "credit", stream: active.stream, bytes: owed });
  }

  async #complete(active: Active): Promise<void> {
    const end = active.end!;
    let { reason, message } = end;
    if (reason === "complete" && end.bytes !== active.received) {
      reason = "error";
      message = `Stream ended after ${active.received} of ${end.bytes} bytes`;
    }
    const shortfall = this.#shortfall(active);
    if (reason === "complete" && shortfall) {
      reason = "error";
      message = shortfall;
    }
    if (reason === "complete") await active.sink.finish();
    await this.#close(active, reason, message);
  }

  /** Why a stream the server called complete is not, judged by the media that arrived. */
  #shortfall(active: Active): string | undefined {
    const video = active.video;
    if (!video) return undefined;
    const expected = video.duration - active.from;
    const covered = active.clock.position;
    if (covered + shortfallTolerance(video.fps) >= expected) return undefined;
    return `Stream ended after ${covered.toFixed(1)} of ${expected.toFixed(1)} s of media`;
  }

  async #close(
    active: Active,
    reason: StreamEndReason,
    message?: string,
    resumes?: boolean,
  ): Promise<void> {
    if (this.#active !== active) return;
    this.#active = undefined;
    clearTimeout(active.screen.timer);
    clearInterval(active.screen.ticker);
    active.queue.length = 0;
    active.wake.wake();
    await active.sink.abort();
    this.#reportProgress(active);
    if (active.stopping?.quiet) {
      active.finish();
      return this.#onIdle();
    }
    this.#emit({
      event: "stream-ended",
      video: active.video?.name ?? "",
      bytes: active.received,
      reason,
      ...(message === undefined ? {} : { message }),
      ...(resumes === undefined ? {} : { resumes }),
    });
    active.finish();
    this.#onIdle();
  }
}

/**
 * A position typed by a person: absolute (`90`, `1:30`, `1:02:03`) or relative to the current
 * one (`+30`, `-10`, `+1:00`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parsePosition } from "./viewing.ts";
 * assert.deepEqual(parsePosition("1:30"), { seconds: 90, relative: false });
 * assert.deepEqual(parsePosition("-10"), { seconds: -10, relative: true });
 * assert.throws(() => parsePosition("soon"), /Position "soon"/);
 * ```
 */
export function parsePosition(text: string): { seconds: number; relative: boolean } {
  const match = /^\s*([+-]?)(\d+(?:\.\d+)?)(?::(\d{1,2}(?:\.\d+)?))?(?::(\d{1,2}(?:\.\d+)?))?\s*$/
    .exec(text);
  const parts = match?.slice(2).filter((part) => part !== undefined).map(Number) ?? [];
  if (!match || parts.slice(1).some((part) => part >= 60)) {
    throw new UsageError(
      `Position "${text}" is not seconds, M:SS or H:MM:SS, optionally with + or -`,
      "bad-position",
    );
  }
  const seconds = parts.reduce((total, part) => total * 60 + part, 0);
  return { seconds: match[1] === "-" ? -seconds : seconds, relative: match[1] !== "" };
}
