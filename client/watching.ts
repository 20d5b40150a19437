/**
 * The video side of a client session: the catalog as last listed, play, pause, resume, seek and
 * stop, and the video cut off by a lost connection, which picks up where it was once the
 * session is back. One stream at a time runs in `viewing.ts`; the session (`session.ts`) lends
 * this file its requests, its events and its idle count ({@linkcode WatchingHost}) and hands it
 * the stream frames it reads.
 *
 * @module
 */

import { messageOf, ReelayError } from "../shared/errors.ts";
import type {
  ClientConnection,
  ClientMessage,
  ServerMessage,
  StreamChunk,
  VideoListing,
} from "../shared/protocol/mod.ts";
import type { ClientEvent } from "./events.ts";
import { type SinkFactory, windowFor } from "./player.ts";
import type { SessionEnd } from "./reconnect.ts";
import { Viewing } from "./viewing.ts";

/** The requests the video side sends; the session gives them a `ref` (see `WatchingHost`). */
export type VideoRequest =
  | Omit<ClientMessage & { type: "videos" }, "ref">
  | Omit<ClientMessage & { type: "play" }, "ref">;

type StreamStart = ServerMessage & { type: "stream-start" };
type StreamEnd = ServerMessage & { type: "stream-end" };

/** What the video side borrows from the session. */
export interface WatchingHost {
  /** Sends `request` (with `ref` when given) and resolves with the server's answer. */
  request(request: VideoRequest, ref?: number): Promise<ServerMessage>;
  /** A new request ref (a play's stream is expected under it before the play is sent). */
  nextRef(): number;
  /** Runs `task` counted as work in flight: the session is not idle meanwhile. */
  tracked<T>(task: () => Promise<T>): Promise<T>;
  /** Reports an event to the session's listeners. */
  emit(event: ClientEvent): void;
  /** Whether the session has ended. */
  ended(): boolean;
  /** Wakes whoever waits for the session to be idle, when it is. */
  settleIdle(): void;
}

/** Where a video cut off by a lost connection picks up once back; `paused` by the person meanwhile. */
interface Resume {
  video: string;
  position: number;
  paused?: boolean;
}

/**
 * A session's videos: what plays, and what resumes after a reconnect.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Watching } from "./watching.ts";
 * const host = {
 *   request: () => Promise.reject(new Error("Offline")),
 *   nextRef: () => 1,
 *   tracked: <T>(task: () => Promise<T>) => task(),
 *   emit: () => {},
 *   ended: () => false,
 *   settleIdle: () => {},
 * };
 * const watching = new Watching(host, { sendMessage: () => {}, closed: false });
 * assert.equal(watching.busy, false);
 * await assert.rejects(watching.stop(), /Nothing is playing/);
 * ```
 */
export class Watching {
  readonly #host: WatchingHost;
  readonly #sinks: SinkFactory | undefined;
  readonly #viewing: Viewing;
  /** The catalog as last listed, by name (for the player's window size). */
  #listings = new Map<string, VideoListing>();
  /** The video that was playing when the connection was lost, to resume once back. */
  #resume: Resume | undefined;

  /**
   * Wires the video side to its session, to the connection of the moment (`link`) and to where
   * streams go (`sinks`; by default they are discarded).
   */
  constructor(
    host: WatchingHost,
    link: Pick<ClientConnection, "sendMessage" | "closed">,
    sinks?: SinkFactory,
  ) {
    this.#host = host;
    this.#sinks = sinks;
    this.#viewing = new Viewing(link, (event) => host.emit(event), () => host.settleIdle());
  }

  /** Whether a stream is requested or running, or a video waits to resume. */
  get busy(): boolean {
    return this.#viewing.active || this.#resume !== undefined;
  }

  /** Sets the stream window the server announced (clamped by `Viewing`). */
  set windowBytes(bytes: number) {
    this.#viewing.windowBytes = bytes;
  }

  /** The window in use. */
  get windowBytes(): number {
    return this.#viewing.windowBytes;
  }

  /** Asks the server for its catalog. */
  async listVideos(): Promise<VideoListing[]> {
    return await this.#host.tracked(async () => {
      const answer = await this.#host.request({ type: "videos" });
      const videos = answer.type === "videos" ? answer.videos : [];
      this.#listings = new Map(videos.map((video) => [video.name, video]));
      return videos;
    });
  }

  /**
   * Starts playing `video` (stopping any current stream), from `from` seconds into it when
   * given; resolves once it started.
   */
  async play(video: string, options: { from?: number } = {}): Promise<void> {
    this.#resume = undefined; // a new play replaces the one waiting to resume
    await this.#viewing.stop();
    // The window fits the largest part when the catalog was listed (the TUI lists it to find
    // the name); otherwise the player's default size.
    const parts = this.#listings.get(video)?.segments;
    const window = parts ? windowFor(parts) : undefined;
    const sink = (this.#sinks ?? (() => undefined))(video, window);
    const from = options.from && options.from > 0 ? { from: options.from } : {};
    await this.#host.tracked(async () => {
      const ref = this.#host.nextRef();
      this.#viewing.expect(ref, sink);
      try {
        await this.#host.request({ type: "play", video, ...from }, ref);
      } catch (error) {
        await this.#viewing.cancel(ref);
        throw error;
      }
    });
  }

  /**
   * Pauses the current stream; `not-playing` when nothing plays. While the server is away, the
   * video waiting to resume comes back paused.
   */
  pause(): void {
    if (!this.#holdPaused(true)) this.#viewing.pause();
  }

  /** Resumes the paused stream where it was; `not-playing` when nothing plays. */
  resume(): void {
    if (!this.#holdPaused(false)) this.#viewing.resume();
  }

  /**
   * Cut off and waiting to resume: notes whether the video is to come back `paused` (and says
   * so); false when no video waits.
   */
  #holdPaused(paused: boolean): boolean {
    const resume = this.#resume;
    if (!resume || this.#viewing.active) return false;
    if (resume.paused !== paused) {
      resume.paused = paused;
      const event = paused ? "paused" : "resumed";
      this.#host.emit({ event, video: resume.video, position: round1(resume.position) });
    }
    return true;
  }

  /**
   * Moves to `seconds` into the video, or by `seconds` from the current position when
   * `relative`: the player restarts cleanly on a new stream that starts at the frame shown then,
   * at that third's resolution. A position before the start is the start; one at or past the end
   * is refused with `bad-position` and the stream goes on. `not-playing` when nothing plays.
   */
  async seek(seconds: number, relative = false): Promise<void> {
    const playing = this.#viewing.playing;
    if (!playing) throw new ReelayError("not-playing", "Nothing is playing");
    // Relative to what the person sees, not to what arrived ahead of it.
    const position = Math.max(0, relative ? playing.shown + seconds : seconds);
    if (position >= playing.duration) {
      throw new ReelayError(
        "bad-position",
        `Position "${round1(position)}" s is past the end of "${playing.video}" ` +
          `(${round1(playing.duration)} s long)`,
      );
    }
    await this.#viewing.stop("stopped", "Seeking", true);
    this.#host.emit({ event: "seeked", video: playing.video, position: round1(position) });
    await this.play(playing.video, { from: position });
  }

  /** Stops the current stream; `not-playing` when nothing plays. */
  async stop(): Promise<void> {
    const resume = this.#resume;
    if (resume) {
      // Cut off and waiting to resume: stopping means it stays stopped once back.
      this.#resume = undefined;
      this.#host.emit({
        event: "stream-ended",
        video: resume.video,
        bytes: 0,
        reason: "stopped",
        resumes: false,
      });
      return this.#host.settleIdle();
    }
    if (!this.#viewing.active) throw new ReelayError("not-playing", "Nothing is playing");
    await this.#viewing.stop();
  }

  /** The server started the stream a play asked for (told in frame order, before its bytes). */
  streamStarted(message: StreamStart): void {
    this.#viewing.started(message);
  }

  /** Stream bytes arrived. */
  streamData(chunk: StreamChunk): void {
    this.#viewing.data(chunk);
  }

  /** The server ended the stream. */
  streamEnded(message: StreamEnd): void {
    this.#viewing.ended(message);
  }

  /**
   * The connection is down: notes where the video playing was, to resume it once back, and cuts
   * its stream (a stream that fully arrived plays on).
   */
  async lost(lost: SessionEnd): Promise<void> {
    this.#resume = this.#viewing.resumePoint();
    const resumes = this.#resume ? true : undefined;
    // A stream that fully arrived plays to its end from what the client holds.
    if (!this.#viewing.arrived) await this.#viewing.abort(lost.reason, "error", resumes);
  }

  /** The session is back: the video cut off picks up where it was (paused if it was paused). */
  async back(): Promise<void> {
    const resume = this.#resume;
    // Tracked from before the resume point is cleared, so the session never looks idle between.
    if (resume) await this.#host.tracked(() => this.#resumeVideo(resume));
  }

  async #resumeVideo(resume: Resume): Promise<void> {
    if (this.#resume !== resume) return; // stopped, or replaced by another play, meanwhile
    const resumed = async () => {
      await this.play(resume.video, { from: resume.position });
      if (resume.paused) this.#viewing.pause(); // paused while the server was away
    };
    await resumed().catch((error) => {
      if (this.#host.ended()) return;
      const code = error instanceof ReelayError ? error.code : "bug";
      this.#host.emit({
        event: "error",
        code,
        message: `Resuming ${resume.video}: ${messageOf(error)}`,
      });
    });
  }

  /** The session ended: nothing resumes, and the stream ends (as stopped when the person left). */
  async end(end: SessionEnd): Promise<void> {
    this.#resume = undefined;
    await this.#viewing.abort(end.reason, end.code === "quit" ? "stopped" : "error");
  }
}

/** Seconds to one decimal, as positions are told. */
function round1(seconds: number): number {
  return Math.round(seconds * 10) / 10;
}
