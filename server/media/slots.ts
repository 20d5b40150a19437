/**
 * The server-wide cap on ffmpeg processes: a stream holds one slot while it plays and a second
 * one while it reads the next part ahead, if one is free.
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

  /** Takes a free slot, or returns undefined when all are held. */
  tryAcquire(): SlotLease | undefined {
    if (this.#inUse >= this.max) return undefined;
    this.#inUse++;
    let held = true;
    return {
      release: () => {
        if (!held) return;
        held = false;
        this.#inUse--;
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
