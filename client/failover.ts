/**
 * Several addresses of one server, such as the nodes of a cluster that share one server key
 * (`docs/cluster.md`): which address to try next. The first connection tries them in the order
 * given; after a loss, the reconnect (`reconnect.ts`) asks for one address per attempt, starting
 * with the one after the address that was lost and going round. Whatever address answers, the
 * session accepts only the key it joined with (`session.ts`), so another address can never
 * bring another server's conversations in.
 *
 * @module
 */

import { ReelayError } from "../shared/errors.ts";
import type { Address } from "./reconnect.ts";

/**
 * Endings after which the next address is worth a try: this one is down, not answering, full
 * (of people, or of connections still joining), or up but stuck before its welcome. None of them refuses the person; a changed key, a refused
 * identity or a name taken would be the same on every node, so they end the join where they are.
 */
const TRY_NEXT: ReadonlySet<string> = new Set([
  "server-unreachable",
  "handshake-timeout",
  "handshake-failed",
  "server-full",
  "host-full",
  "join-timeout",
  "too-many-pending",
]);

/**
 * The addresses of one server, in a ring.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { AddressRing } from "./failover.ts";
 * const ring = new AddressRing([
 *   { hostname: "a", port: 9000 },
 *   { hostname: "b", port: 9000 },
 * ]);
 * assert.equal(ring.current.hostname, "a");
 * assert.equal(ring.next().hostname, "b");
 * assert.equal(ring.next().hostname, "a");
 * ```
 */
export class AddressRing {
  readonly #addresses: readonly Address[];
  #at = 0;

  /** A ring over `addresses` (at least one), starting at the first. */
  constructor(addresses: readonly Address[]) {
    if (addresses.length === 0) throw new RangeError("A server needs at least one address");
    this.#addresses = addresses;
  }

  /** The address tried last. */
  get current(): Address {
    return this.#addresses[this.#at];
  }

  /** Moves to the address after the current one (the first after the last) and returns it. */
  next(): Address {
    this.#at = (this.#at + 1) % this.#addresses.length;
    return this.current;
  }

  /**
   * Runs `connect` on each address in turn from the current one until one takes the join; the
   * ring then stands on it. Only an address down, not answering, full or stuck is passed for the
   * next; any other ending (a changed key, a name taken) is not tried elsewhere. Throws the last
   * address's error when none takes it.
   */
  async connect<T>(connect: (address: Address) => Promise<T>): Promise<T> {
    for (let tried = 1;; tried++) {
      try {
        return await connect(this.current);
      } catch (error) {
        const passed = error instanceof ReelayError && TRY_NEXT.has(error.code);
        if (!passed || tried >= this.#addresses.length) throw error;
        this.next();
      }
    }
  }
}
