/**
 * The video playing, as the status line shows it: the part and resolution on screen, the
 * position and how far the stream is ahead of real time. A session reports progress with every
 * chunk; this keeps the latest as a {@linkcode PlayingStatus} so the transcript never has to.
 *
 * The part and resolution are what the player shows (`showing`), not what arrives (`segment`,
 * `progress`): a real-time player reaches a new third seconds after its first bytes came.
 *
 * The position is the one on screen (`progress`'s `shown`). "Buffered" is an estimate: the media
 * time received minus the time played since the stream started (wall time less the time paused),
 * which is how much the player has in hand if it plays from the first byte at normal speed. The
 * player's own buffer is not visible to reelay.
 *
 * @module
 */

import type { SegmentPlan } from "../../shared/protocol/mod.ts";
import type { ClientEvent } from "../events.ts";
import type { PlayingStatus } from "./status_line.ts";

/**
 * Follows stream events; {@linkcode PlayingTracker.status} is what to show, or `undefined`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { PlayingTracker } from "./playing.ts";
 * let now = 0;
 * const tracker = new PlayingTracker(() => now);
 * const plan = { index: 0, start: 0, end: 9, width: 256, height: 144, requestedHeight: 144, capped: false };
 * tracker.update({ event: "stream-started", video: "a.mp4", duration: 9, segments: [plan] });
 * now = 2000;
 * tracker.update({
 *   event: "progress", video: "a.mp4", index: 0, height: 144, position: 5, shown: 2, duration: 9,
 *   bytes: 9,
 * });
 * assert.deepEqual(tracker.status, {
 *   video: "a.mp4", part: 1, parts: 1, height: 144, position: 2, duration: 9,
 *   buffered: { seconds: 3 },
 * });
 * ```
 */
export class PlayingTracker {
  readonly #now: () => number;
  #status: PlayingStatus | undefined;
  #startedAt = 0;
  #from = 0;
  /** Time spent paused before the current pause, and when the current one began. */
  #pausedMs = 0;
  #pausedAt: number | undefined;
  /** Seconds into the video of the newest bytes that arrived. */
  #received = 0;

  /** Tracks by the clock `now` (ms). */
  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  /** The video playing, or `undefined`. */
  get status(): PlayingStatus | undefined {
    return this.#status;
  }

  /** Takes one event; returns whether what is shown changed. */
  update(event: ClientEvent): boolean {
    switch (event.event) {
      case "stream-started": {
        const from = event.from ?? 0;
        const first = partAt(event.segments, from);
        this.#startedAt = this.#now();
        this.#from = from;
        this.#received = from;
        this.#pausedMs = 0;
        this.#pausedAt = undefined;
        this.#status = {
          video: event.video,
          part: (first?.index ?? 0) + 1,
          parts: Math.max(1, event.segments.length),
          height: first?.height ?? 0,
          position: from,
          duration: event.duration,
        };
        return true;
      }
      case "showing":
        return this.#set({ part: event.index + 1, height: event.height });
      case "progress":
        this.#received = event.position;
        return this.#set({ position: event.shown, buffered: this.#buffered() });
      case "paused":
        this.#pausedAt ??= this.#now();
        return this.#set({ paused: true });
      case "resumed":
        if (this.#pausedAt !== undefined) this.#pausedMs += this.#now() - this.#pausedAt;
        this.#pausedAt = undefined;
        return this.#set({ paused: false, buffered: this.#buffered() });
      case "stream-ended":
        this.#status = undefined;
        return true;
      default:
        return false;
    }
  }

  /** Media received ahead of the time played, by the estimate in the module documentation. */
  #buffered(): { seconds: number } {
    const now = this.#now();
    const pausedMs = this.#pausedMs + (this.#pausedAt === undefined ? 0 : now - this.#pausedAt);
    const played = Math.max(0, (now - this.#startedAt - pausedMs) / 1000);
    return { seconds: this.#received - this.#from - played };
  }

  #set(change: Partial<PlayingStatus>): boolean {
    if (!this.#status) return false;
    const before = shown(this.#status);
    this.#status = { ...this.#status, ...change };
    return shown(this.#status) !== before;
  }
}

/** The part holding `seconds` into the video (the last one past the end). */
function partAt(segments: readonly SegmentPlan[], seconds: number): SegmentPlan | undefined {
  return segments.find((segment) => seconds < segment.end) ?? segments.at(-1);
}

/** What the status line shows of a status, to skip redraws that change nothing visible. */
function shown(status: PlayingStatus): string {
  const buffered = status.buffered && "seconds" in status.buffered
    ? Math.round(Math.max(0, status.buffered.seconds))
    : 0;
  return `${status.part} ${status.height} ${Math.floor(status.position)} ${buffered} ` +
    `${status.paused === true}`;
}
