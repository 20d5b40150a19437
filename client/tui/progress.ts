/**
 * How often a video's progress is written in `--json` output: the one owner of that decision. A
 * session reports progress with every chunk it receives; `--json` passes it through a
 * {@linkcode ProgressThrottle}. (For people, progress goes to the status line only: see
 * `playing.ts`.)
 *
 * @module
 */

import type { ClientEvent } from "../events.ts";

type Progress = Extract<ClientEvent, { event: "progress" }>;

/**
 * Passes every event but `progress`, of which it passes one per video when the part changes or
 * when `intervalMs` passed since the last one shown. When a stream ends, the last progress held
 * back (the final position) is shown just before the end.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ProgressThrottle } from "./progress.ts";
 * let now = 0;
 * const throttle = new ProgressThrottle(1000, () => now);
 * const progress = (position: number) => ({
 *   event: "progress" as const, video: "a.mp4", index: 0, height: 144, position, shown: position,
 *   duration: 9, bytes: 0,
 * });
 * assert.equal(throttle.pass(progress(0)).length, 1);
 * now = 500;
 * assert.equal(throttle.pass(progress(1)).length, 0);
 * const end = { event: "stream-ended" as const, video: "a.mp4", bytes: 0, reason: "complete" as const };
 * assert.deepEqual(throttle.pass(end).map((event) => event.event), ["progress", "stream-ended"]);
 * ```
 */
export class ProgressThrottle {
  readonly #intervalMs: number;
  readonly #now: () => number;
  readonly #shown = new Map<string, { index: number; at: number }>();
  readonly #held = new Map<string, Progress>();

  /** Shows progress at most every `intervalMs` per video, by the clock `now`. */
  constructor(intervalMs: number, now: () => number = Date.now) {
    this.#intervalMs = intervalMs;
    this.#now = now;
  }

  /** The events to show for `event`, in order (none, it, or a held-back progress and it). */
  pass(event: ClientEvent): ClientEvent[] {
    if (event.event === "stream-ended") {
      const held = this.#held.get(event.video);
      this.#held.delete(event.video);
      this.#shown.delete(event.video);
      return held ? [held, event] : [event];
    }
    if (event.event !== "progress") return [event];
    const shown = this.#shown.get(event.video);
    const at = this.#now();
    if (shown && shown.index === event.index && at - shown.at < this.#intervalMs) {
      this.#held.set(event.video, event);
      return [];
    }
    this.#held.delete(event.video);
    this.#shown.set(event.video, { index: event.index, at });
    return [event];
  }
}
