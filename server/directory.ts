/**
 * The directory of people connected: names, unique by their confusable skeleton
 * (`shared/names.ts`), to their signed announcements, and the join and leave notices that keep everyone's copy current.
 *
 * @module
 */

import { ReelayError } from "../shared/errors.ts";
import { nameKey, sameName } from "../shared/names.ts";
import {
  type Announcement,
  encodeMessage,
  MAX_DIRECTORY_PAGE,
  type ServerMessage,
} from "../shared/protocol/mod.ts";

/** What the directory needs of a connected member. */
export interface Member {
  readonly announcement: Announcement;
  /** Queues an encoded message frame for this member (never blocks). */
  sendFrame(frame: Uint8Array): void;
}

/**
 * Names to members. Claiming a taken name fails and leaves the holder in place.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Directory, type Member } from "./directory.ts";
 * const frames: Uint8Array[] = [];
 * const member = (name: string): Member => ({
 *   announcement: { name, keys: { encryptionKey: "", signingKey: "" }, epoch: "", signature: "" },
 *   sendFrame: (frame) => frames.push(frame),
 * });
 * const directory = new Directory<Member>();
 * const [alice, bob] = [member("alice"), member("bob")];
 * directory.join(alice);
 * assert.equal(directory.join(bob).length, 1); // one page: alice
 * assert.equal(frames.length, 1); // alice was told "joined"
 * assert.throws(() => directory.join(member("ALICE")), /is taken/);
 * assert.throws(() => directory.join(member("a1ice")), /is taken/); // a lookalike
 * assert.equal(directory.get("a1ice"), undefined); // and not an address for alice
 * directory.leave(alice); // bob is told "left"
 * assert.equal(directory.size, 1);
 * ```
 */
export class Directory<M extends Member> {
  readonly #members = new Map<string, M>();
  readonly #fullPages: Uint8Array[] = [];

  /** How many people are connected. */
  get size(): number {
    return this.#members.size;
  }

  /**
   * The member with this name (any case), if connected. A lookalike (`b0b` for `bob`) is not
   * the same name: it finds nobody, so nothing is routed to someone the sender did not name.
   */
  get(name: string): M | undefined {
    const member = this.#members.get(nameKey(name));
    return member && sameName(member.announcement.name, name) ? member : undefined;
  }

  /** Every member. */
  members(): IterableIterator<M> {
    return this.#members.values();
  }

  /**
   * Adds a member and tells everyone else. Throws `name-taken` when the name, or a name that
   * looks like it (same {@linkcode nameKey}), is in use.
   * Returns the `directory` pages describing everyone already present, for the newcomer.
   */
  join(member: M): Uint8Array[] {
    const key = nameKey(member.announcement.name);
    const holder = this.#members.get(key);
    if (holder) {
      const wanted = member.announcement.name;
      const taken = holder.announcement.name;
      const looksLike = sameName(wanted, taken)
        ? ""
        : ` (${JSON.stringify(wanted)} looks like ${JSON.stringify(taken)})`;
      throw new ReelayError(
        "name-taken",
        `Name ${JSON.stringify(taken)} is taken${looksLike}: choose another with --name`,
      );
    }
    const pages = this.#pages();
    this.#members.set(key, member);
    this.#broadcast({ type: "joined", peer: member.announcement }, member);
    return pages;
  }

  /** Removes a member (if it holds its name) and tells everyone else. Idempotent. */
  leave(member: M): void {
    const key = nameKey(member.announcement.name);
    if (this.#members.get(key) !== member) return;
    this.#members.delete(key);
    this.#fullPages.length = 0;
    this.#broadcast({ type: "left", name: member.announcement.name }, member);
  }

  /**
   * The people present as `directory` frames. Full pages are kept and shared by every newcomer
   * until someone leaves (joins only append), so a burst of joins does not encode or hold the
   * same announcements once per joiner.
   */
  #pages(): Uint8Array[] {
    const present = [...this.#members.values()].map((member) => member.announcement);
    const pages: Uint8Array[] = [];
    for (let index = 0; index * MAX_DIRECTORY_PAGE < present.length; index++) {
      const start = index * MAX_DIRECTORY_PAGE;
      const peers = present.slice(start, start + MAX_DIRECTORY_PAGE);
      const page = this.#fullPages[index] ??
        encodeMessage({ type: "directory", peers });
      if (peers.length === MAX_DIRECTORY_PAGE) this.#fullPages[index] = page;
      pages.push(page);
    }
    return pages;
  }

  /** Encodes the notice once and queues the same bytes for everyone but `except`. */
  #broadcast(message: ServerMessage, except: M): void {
    const frame = encodeMessage(message);
    for (const other of this.#members.values()) {
      if (other !== except) other.sendFrame(frame);
    }
  }
}
