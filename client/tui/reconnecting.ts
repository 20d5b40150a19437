/**
 * The connection being restored, as the status line shows it: which attempt, and a countdown to
 * the next try that is redrawn every second while it runs (a number that does not move would
 * be a lie a few seconds later).
 *
 * @module
 */

import type { ClientEvent } from "../events.ts";
import type { ReconnectingStatus } from "./status_line.ts";

/**
 * Follows `reconnecting`, `reconnected` and `gave-up` events.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ReconnectTracker } from "./reconnecting.ts";
 * let now = 0;
 * const tracker = new ReconnectTracker(() => {}, () => now);
 * tracker.update({ event: "reconnecting", server: "h:1", code: "server-lost", reason: "lost", attempt: 2, delayMs: 3000 });
 * now = 1000;
 * assert.deepEqual(tracker.status, { attempt: 2, retryIn: 2 });
 * tracker.update({ event: "reconnected", server: "h:1", afterMs: 4000, attempts: 2, online: 1, names: [] });
 * assert.equal(tracker.status, undefined);
 * ```
 */
export class ReconnectTracker {
  readonly #redraw: () => void;
  readonly #now: () => number;
  #state: { attempt: number; at: number } | undefined;
  #timer: ReturnType<typeof setInterval> | undefined;

  /** `redraw` is called each second while a countdown runs. */
  constructor(redraw: () => void, now: () => number = Date.now) {
    this.#redraw = redraw;
    this.#now = now;
  }

  /** Takes an event; returns whether the status changed. */
  update(event: ClientEvent): boolean {
    switch (event.event) {
      case "reconnecting":
        this.#state = { attempt: event.attempt, at: this.#now() + event.delayMs };
        this.#timer ??= setInterval(() => this.#redraw(), 1000);
        return true;
      case "reconnected":
      case "gave-up":
      case "disconnected":
        this.close();
        return true;
      default:
        return false;
    }
  }

  /** What the status line shows, if reconnecting. */
  get status(): ReconnectingStatus | undefined {
    const state = this.#state;
    if (!state) return undefined;
    return { attempt: state.attempt, retryIn: Math.max(0, (state.at - this.#now()) / 1000) };
  }

  /** Stops the countdown. */
  close(): void {
    this.#state = undefined;
    clearInterval(this.#timer);
    this.#timer = undefined;
  }
}
