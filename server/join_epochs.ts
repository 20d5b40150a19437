/**
 * The epochs of every join the server accepted, remembered for a while so that the same epoch is
 * never accepted twice (`replayed-join`). The join proof already binds a hello to one
 * connection; this is the second lock, so a replay fails even if a proof check were lost.
 *
 * Bounded both ways: an epoch is forgotten after `ttlMs`, and beyond `maxEntries` the oldest is
 * forgotten first (each entry costs a join with a valid proof, so only key holders fill it).
 *
 * @module
 */

/** How long an accepted epoch is remembered by default: a day. */
export const DEFAULT_EPOCH_TTL_MS = 24 * 60 * 60 * 1000;
/** How many accepted epochs are remembered at most by default. */
export const DEFAULT_MAX_EPOCHS = 100_000;

/**
 * A bounded set of accepted join epochs with expiry.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { JoinEpochs } from "./join_epochs.ts";
 * let now = 0;
 * const epochs = new JoinEpochs({ ttlMs: 1000, maxEntries: 2, now: () => now });
 * assert.equal(epochs.accept("a"), true);
 * assert.equal(epochs.accept("a"), false); // a replay
 * now = 1001;
 * assert.equal(epochs.accept("a"), true); // forgotten after the TTL
 * ```
 */
export class JoinEpochs {
  /** Epoch -> when it is forgotten; in insertion order, which is expiry order. */
  readonly #expiries = new Map<string, number>();
  readonly #ttlMs: number;
  readonly #maxEntries: number;
  readonly #now: () => number;

  /** An empty set. */
  constructor(
    options: { ttlMs?: number; maxEntries?: number; now?: () => number } = {},
  ) {
    this.#ttlMs = options.ttlMs ?? DEFAULT_EPOCH_TTL_MS;
    this.#maxEntries = options.maxEntries ?? DEFAULT_MAX_EPOCHS;
    this.#now = options.now ?? Date.now;
  }

  /** How many epochs are remembered now. */
  get size(): number {
    return this.#expiries.size;
  }

  /** Records `epoch`; false when it was already accepted (and not yet forgotten). */
  accept(epoch: string): boolean {
    const now = this.#now();
    this.#forgetExpired(now);
    if (this.#expiries.has(epoch)) return false;
    while (this.#expiries.size >= this.#maxEntries) {
      this.#expiries.delete(this.#expiries.keys().next().value!);
    }
    this.#expiries.set(epoch, now + this.#ttlMs);
    return true;
  }

  #forgetExpired(now: number): void {
    for (const [epoch, expiry] of this.#expiries) {
      if (expiry > now) return;
      this.#expiries.delete(epoch);
    }
  }
}
