/**
 * A token bucket: `rate` tokens a second, holding at most `burst`.
 *
 * @module
 */

/**
 * Refills continuously; each accepted action takes one token.
 *
 * @example
 * ```ts
 * import { TokenBucket } from "./rate_limit.ts";
 * const bucket = new TokenBucket(10, 20);
 * bucket.take(); // true until 20 actions arrive faster than 10 a second
 * ```
 */
export class TokenBucket {
  readonly #rate: number;
  readonly #burst: number;
  #tokens: number;
  #updated: number;

  /** Creates a full bucket. `now` is injectable for tests. */
  constructor(
    rate: number,
    burst: number,
    private readonly now: () => number = performance.now.bind(performance),
  ) {
    this.#rate = rate;
    this.#burst = burst;
    this.#tokens = burst;
    this.#updated = now();
  }

  /** Takes one token if there is one. */
  take(): boolean {
    const now = this.now();
    this.#tokens = Math.min(
      this.#burst,
      this.#tokens + ((now - this.#updated) / 1000) * this.#rate,
    );
    this.#updated = now;
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }
}
