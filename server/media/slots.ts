/**
 * The server-wide cap on ffmpeg processes. A slot is held by a running transcode, not by a viewer:
 * viewers who share a transcode share its slot. A new play needs a free slot (or a part that is
 * already running or cached), a playing stream waits for one for its next part, ahead of new plays.
 *
 * @module
 */

import { ReelayError } from "../../shared/errors.ts";

/**
 * A held transcode slot; `release()` gives it back and is safe to call twice.
 *
 * @example
 * ```ts
 * import { type SlotLease, TranscodeSlots } from "./slots.ts";
 * const lease: SlotLease = new TranscodeSlots(2).acquire();
 * lease.release();
 * ```
 */
export interface SlotLease {
  /** Gives the slot back. */
  release(): void;
}

/**
 * Caps how many ffmpeg processes run at once across the server.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { TranscodeSlots } from "./slots.ts";
 * const slots = new TranscodeSlots(1);
 * const lease = slots.acquire();
 * assert.equal(slots.tryAcquire(), undefined);
 * assert.throws(() => slots.acquire(), /busy/);
 * lease.release();
 * lease.release();
 * assert.equal(slots.inUse, 0);
 * ```
 */
export class TranscodeSlots {
  /** The most slots that can be held at once. */
  readonly max: number;
  #inUse = 0;
  #waiters: ((lease: SlotLease) => void)[] = [];

  /** Creates `max` free slots. */
  constructor(max: number) {
    if (!Number.isInteger(max) || max < 1) {
      throw new ReelayError("bad-max-transcodes", `Transcode limit "${max}" must be 1 or more`);
    }
    this.max = max;
  }

  /** Slots held right now. */
  get inUse(): number {
    return this.#inUse;
  }

  /** Streams waiting for a slot to go on with their next part. */
  get waiting(): number {
    return this.#waiters.length;
  }

  /**
   * Takes a free slot, or returns undefined when all are held, or when a stream that already
   * plays is waiting for one: going on comes before starting.
   */
  tryAcquire(): SlotLease | undefined {
    if (this.#inUse >= this.max || this.#waiters.length > 0) return undefined;
    return this.#lease();
  }

  /**
   * Waits for a slot, ahead of every new start: for a stream that plays and needs its next part.
   * `signal` gives up waiting (rejecting with its reason).
   */
  wait(signal?: AbortSignal): Promise<SlotLease> {
    if (this.#inUse < this.max && this.#waiters.length === 0) {
      return Promise.resolve(this.#lease());
    }
    signal?.throwIfAborted();
    return new Promise((resolve, reject) => {
      const waiter = (lease: SlotLease) => {
        signal?.removeEventListener("abort", onAbort);
        resolve(lease);
      };
      const onAbort = () => {
        this.#waiters = this.#waiters.filter((other) => other !== waiter);
        reject(signal?.reason);
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#waiters.push(waiter);
    });
  }

  #lease(): SlotLease {
    this.#inUse++;
    let held = true;
    return {
      release: () => {
        if (!held) return;
        held = false;
        this.#inUse--;
        const next = this.#waiters.shift();
        if (next) next(this.#lease());
      },
    };
  }

  /** Takes a free slot or throws a ReelayError with code `busy`. */
  acquire(): SlotLease {
    const lease = this.tryAcquire();
    if (!lease) {
      throw new ReelayError(
        "busy",
        `The server is busy: all ${this.max} transcoding slots are in use; try again later`,
      );
    }
    return lease;
  }
}
