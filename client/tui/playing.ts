/**
 * The video playing, as the status line shows it: part, resolution, position and how far the
 * stream is ahead of real time. A session reports progress with every chunk; this keeps the
 * latest as a {@linkcode PlayingStatus} so the transcript never has to.
 *
 * "Buffered" is an estimate: the media time received minus the wall time since the stream
 * started, which is how much the player has in hand if it plays from the first byte at normal
 * speed. The player's own buffer is not visible to reelay.
 *
 * @module
 */

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
 *   event: "progress", video: "a.mp4", index: 0, height: 144, position: 5, duration: 9, bytes: 9,
 * });
 * assert.deepEqual(tracker.status, {
 *   video: "a.mp4", part: 1, parts: 1, height: 144, position: 5, duration: 9,
 *   buffered: { seconds: 3 },
 * });
 * ```
 */
export class PlayingTracker {
  readonly #now: () => number;
  #status: PlayingStatus | undefined;
  #startedAt = 0;
  #from = 0;

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
      case "stream-started":
        this.#startedAt = this.#now();
        this.#from = event.from ?? 0;
        this.#status = {
          video: event.video,
          part: 1,
          parts: Math.max(1, event.segments.length),
          height: event.segments[0]?.height ?? 0,
          position: event.from ?? 0,
          duration: event.duration,
        };
        return true;
      case "segment":
        return this.#set({ part: event.index + 1, height: event.height });
      case "progress":
        return this.#set({
          part: event.index + 1,
          height: event.height,
          position: event.position,
          buffered: {
            seconds: event.position - this.#from - (this.#now() - this.#startedAt) / 1000,
          },
        });
      case "stream-ended":
        this.#status = undefined;
        return true;
      default:
        return false;
    }
  }

  #set(change: Partial<PlayingStatus>): boolean {
    if (!this.#status) return false;
    const before = shown(this.#status);
    this.#status = { ...this.#status, ...change };
    return shown(this.#status) !== before;
  }
}

/** What the status line shows of a status, to skip redraws that change nothing visible. */
function shown(status: PlayingStatus): string {
  const buffered = status.buffered && "seconds" in status.buffered
    ? Math.round(Math.max(0, status.buffered.seconds))
    : 0;
  return `${status.part} ${status.height} ${Math.floor(status.position)} ${buffered}`;
}
