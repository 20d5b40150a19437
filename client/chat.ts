/**
 * Sealing and opening one-to-one messages for one connection: the client's side of end-to-end
 * encryption. Nothing leaves unsealed, and nothing is opened before the sender's pinned key
 * verifies it (see `shared/crypto/`).
 *
 * @module
 */

import {
  type Identity,
  Inbox,
  Outbox,
  type SealedMessage,
  type SessionTail,
} from "../shared/crypto/mod.ts";
import { ReelayError } from "../shared/errors.ts";
import type { ClientEvent } from "./events.ts";
import type { Peer } from "./peers.ts";

/**
 * The sealing and opening state of one connection (its epoch).
 *
 * @example
 * ```ts ignore
 * const chat = new Chat(identity, "alice", epoch);
 * const sealed = await chat.seal(peers.sendable("bob"), "hello");
 * const event = await chat.open("bob", peers.find("bob"), envelope); // "message" or "error"
 * ```
 */
export class Chat {
  readonly #inbox: Inbox;
  readonly #outbox: Outbox;

  /**
   * Seals and opens as `name` holding `identity`, during connection `epoch`; `previousTails`
   * says where this person's sessions of the previous connection ended.
   */
  constructor(
    identity: Identity,
    name: string,
    epoch: string,
    previousTails?: ReadonlyMap<string, SessionTail>,
  ) {
    this.#inbox = new Inbox(identity, name, epoch);
    this.#outbox = new Outbox(identity, name, epoch, previousTails);
  }

  /** Where the latest session with each peer ended, for the next connection. */
  tails(): Map<string, SessionTail> {
    return this.#outbox.tails();
  }

  /** Seals `text` for `peer` (keys and epoch from their verified announcement). */
  seal(peer: Peer, text: string): Promise<SealedMessage> {
    const { name, keys, epoch } = peer.announcement;
    return this.#outbox.seal(name, keys, epoch, text);
  }

  /**
   * Opens an envelope the server says `from` sent; `peer` is who the directory copy knows by
   * that name. Returns the `message` event, or the `error` event saying why it was rejected.
   */
  async open(from: string, peer: Peer | undefined, envelope: Uint8Array): Promise<ClientEvent> {
    try {
      if (!peer) {
        throw new ReelayError(
          "unknown-sender",
          `Message from ${JSON.stringify(from)}, who is not online`,
        );
      }
      if (peer.trust === "changed") {
        throw new ReelayError(
          "key-changed",
          `Message from ${JSON.stringify(from)} ignored: their key changed (see /verify ${from})`,
        );
      }
      const { name, keys, epoch } = peer.announcement;
      const opened = await this.#inbox.open(name, keys, epoch, envelope);
      const { text, id, sentAt, missing } = opened;
      return { event: "message", from: opened.from, text, id, sentAt, missing };
    } catch (error) {
      if (!(error instanceof ReelayError)) throw error;
      return { event: "error", code: error.code, message: `Rejected a message: ${error.message}` };
    }
  }
}
