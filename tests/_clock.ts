/**
 * A stopped clock for code that reads `performance.now()`: a test moves it by hand, so what
 * happens "a second later" happens when the test says, not when a loaded machine gets there.
 *
 * @module
 */

/**
 * Stops `performance.now()` at its current reading until {@linkcode StoppedClock.advance} moves
 * it; `using` puts the real clock back. Timers still run on real time: a timer set for "one
 * second from now" fires after a real second and then sees the stopped clock.
 *
 * The clock stops on a whole millisecond, so that sums of whole milliseconds are exact: stopped at
 * a fraction, `start + 2000 - (start + 1000 + 1000)` can be a positive 2e-13, and code waiting for
 * a moment "2 s after start" would set a timer for that remainder again and again, for ever (a
 * real clock moves on; this one does not). The viewing test met it about once in a thousand runs.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { StoppedClock } from "./_clock.ts";
 * using clock = new StoppedClock();
 * const then = performance.now();
 * clock.advance(1000);
 * clock.advance(1000);
 * assert.equal(performance.now() - then, 2000);
 * assert.equal(then + 2000 - performance.now(), 0);
 * ```
 */
export class StoppedClock implements Disposable {
  #now = Math.floor(performance.now());

  /** Stops the clock. */
  constructor() {
    performance.now = () => this.#now;
  }

  /** Moves the clock `ms` milliseconds on. */
  advance(ms: number): void {
    this.#now += ms;
  }

  /** Puts the real clock back (the prototype's `now`). */
  [Symbol.dispose](): void {
    delete (performance as { now?: () => number }).now;
  }
}
