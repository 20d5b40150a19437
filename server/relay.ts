/**
 * Live routing of sealed chat envelopes between the people connected, without holding them: the
 * server relays bytes it cannot read to the one person named and says whether they were queued
 * on their connection. Chat goes through the mailroom (`mail.ts`), which holds every envelope
 * until it is acknowledged; this live path is left for a cluster node's delivery to someone the
 * shared registry does not know yet (`server/cluster/people.ts`).
 *
 * @module
 */

import { ReelayError } from "../shared/errors.ts";
import type { Announcement } from "../shared/protocol/mod.ts";
import type { Directory, Member } from "./directory.ts";

/** What the relay needs of a connected person. */
export interface Recipient extends Member {
  readonly announcement: Announcement;
  /**
   * Queues a sealed envelope from `from` (with the sender's message id, by which the recipient
   * drops a copy sent again); false when the recipient is gone (or was cut off).
   */
  deliver(from: string, envelope: Uint8Array, id?: string): boolean;
}

/**
 * Routes envelopes through a {@linkcode Directory}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Directory } from "./directory.ts";
 * import { type Recipient, Relay } from "./relay.ts";
 * const got: string[] = [];
 * const person = (name: string): Recipient => ({
 *   announcement: { name, keys: { encryptionKey: "", signingKey: "" }, epoch: "", signature: "" },
 *   sendFrame: () => {},
 *   deliver: (from) => got.push(`${from}->${name}`) > 0,
 * });
 * const directory = new Directory<Recipient>();
 * const [alice, bob] = [person("alice"), person("bob")];
 * directory.join(alice);
 * directory.join(bob);
 * const relay = new Relay(directory);
 * assert.equal(relay.route(alice, "BOB", new Uint8Array([1])), "bob");
 * assert.deepEqual(got, ["alice->bob"]);
 * assert.throws(() => relay.route(alice, "carol", new Uint8Array([1])), /Nobody called "carol"/);
 * ```
 */
export class Relay<M extends Recipient> {
  readonly #directory: Directory<M>;

  /** Routes to the members of `directory`. */
  constructor(directory: Directory<M>) {
    this.#directory = directory;
  }

  /**
   * Hands `envelope` from `sender` to the person called `to` (any case); returns their name as
   * they joined. Throws `unknown-recipient` when nobody by that name is online, when it is the
   * sender, or when the recipient went away as it was queued (the message went nowhere).
   */
  route(sender: M, to: string, envelope: Uint8Array, id?: string): string {
    const recipient = this.#directory.get(to);
    if (!recipient) {
      throw new ReelayError("unknown-recipient", `Nobody called ${JSON.stringify(to)} is online`);
    }
    if (recipient === sender) {
      throw new ReelayError("unknown-recipient", "Messages to yourself are not relayed");
    }
    if (!recipient.deliver(sender.announcement.name, envelope, id)) {
      throw new ReelayError(
        "unknown-recipient",
        `${JSON.stringify(to)} is no longer online: the message was not delivered`,
      );
    }
    return recipient.announcement.name;
  }
}
