/**
 * Who a node can reach: the one seam between a single server and a cluster. A connection joins,
 * leaves and sends through {@linkcode People}; {@linkcode LocalPeople} is the single server's
 * (a {@linkcode Directory} and a {@linkcode Relay} in memory), and `ClusterPeople` in
 * `server/cluster/people.ts` shares the directory and the relay with other nodes through NATS.
 *
 * @module
 */

import { Directory } from "./directory.ts";
import { type Recipient, Relay } from "./relay.ts";

/** The directory and relay a connection uses, local or cluster-wide. */
export interface People<M extends Recipient> {
  /** How many people are connected to this node (the `[limits] max_clients` count). */
  readonly size: number;
  /**
   * Adds a member under a name unique wherever its holder is connected, tells everyone, and
   * returns the `directory` pages of everyone already present. Throws `name-taken`.
   */
  join(member: M): Promise<Uint8Array[]>;
  /**
   * Removes a member (if it holds its name) and tells everyone; resolves once the name is free
   * for a new claim everywhere. Idempotent.
   */
  leave(member: M): Promise<void>;
  /** The member holding `name` on this node, if any. */
  here(name: string): M | undefined;
  /** Whether someone called `name` is online, on this node or another. */
  present(name: string): boolean;
  /**
   * Hands a sealed envelope (and the sender's message `id`) to the person called `to`, wherever
   * connected; returns their name as they joined. Throws `unknown-recipient` when nobody by that
   * name is online.
   */
  route(sender: M, to: string, envelope: Uint8Array, id?: string): Promise<string>;
  /** Lets go of what it holds (for a cluster, its names and its NATS subscriptions). */
  close(): Promise<void>;
}

/**
 * The single server's people: a directory and a relay in this process.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { LocalPeople } from "./people.ts";
 * import type { Recipient } from "./relay.ts";
 * const got: string[] = [];
 * const person = (name: string): Recipient => ({
 *   announcement: { name, keys: { encryptionKey: "", signingKey: "" }, epoch: "", signature: "" },
 *   sendFrame: () => {},
 *   deliver: (from) => got.push(`${from}->${name}`) > 0,
 * });
 * const people = new LocalPeople<Recipient>();
 * const [alice, bob] = [person("alice"), person("bob")];
 * await people.join(alice);
 * await people.join(bob);
 * assert.equal(await people.route(alice, "Bob", new Uint8Array([1])), "bob");
 * assert.deepEqual(got, ["alice->bob"]);
 * ```
 */
export class LocalPeople<M extends Recipient> implements People<M> {
  readonly directory: Directory<M> = new Directory<M>();
  readonly #relay: Relay<M> = new Relay(this.directory);

  /** See {@linkcode People.size}. */
  get size(): number {
    return this.directory.size;
  }

  /** See {@linkcode People.join}. */
  join(member: M): Promise<Uint8Array[]> {
    try {
      return Promise.resolve(this.directory.join(member));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** See {@linkcode People.leave}. */
  leave(member: M): Promise<void> {
    this.directory.leave(member);
    return Promise.resolve();
  }

  /** See {@linkcode People.here}. */
  here(name: string): M | undefined {
    return this.directory.get(name);
  }

  /** See {@linkcode People.present}. */
  present(name: string): boolean {
    return this.directory.get(name) !== undefined;
  }

  /** See {@linkcode People.route}. */
  route(sender: M, to: string, envelope: Uint8Array, id?: string): Promise<string> {
    try {
      return Promise.resolve(this.#relay.route(sender, to, envelope, id));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** Nothing to let go of. */
  close(): Promise<void> {
    return Promise.resolve();
  }
}
