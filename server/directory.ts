/**
 * The directory of people connected: unique names (case-insensitive) to their signed
 * announcements, and the join and leave notices that keep everyone's copy current.
 *
 * @module
 */

import { ReelayError } from "../shared/errors.ts";
import { nameKey } from "../shared/names.ts";
import type { Announcement, ServerMessage } from "../shared/protocol/messages.ts";

/** What the directory needs of a connected member. */
export interface Member {
  readonly announcement: Announcement;
  /** Queues a message for this member (never blocks). */
  notify(message: ServerMessage): void;
}

/**
 * Names to members. Claiming a taken name fails and leaves the holder in place.
 *
 * @example
 * ```ts ignore
 * import { Directory } from "./directory.ts";
 * const directory = new Directory<Member>();
 * directory.join(alice); // tells everyone else "joined"
 * directory.leave(alice); // tells everyone else "left"
 * ```
 */
export class Directory<M extends Member> {
  readonly #members = new Map<string, M>();

  /** How many people are connected. */
  get size(): number {
    return this.#members.size;
  }

  /** The member with this name (any case), if connected. */
  get(name: string): M | undefined {
    return this.#members.get(nameKey(name));
  }

  /** Every member. */
  members(): IterableIterator<M> {
    return this.#members.values();
  }

  /**
   * Adds a member and tells everyone else. Throws `name-taken` when the name is in use.
   * Returns the announcements of everyone already present, for the welcome.
   */
  join(member: M): Announcement[] {
    const key = nameKey(member.announcement.name);
    const holder = this.#members.get(key);
    if (holder) {
      throw new ReelayError(
        "name-taken",
        `Name ${JSON.stringify(holder.announcement.name)} is taken: choose another with --name`,
      );
    }
    const present = [...this.#members.values()].map((other) => other.announcement);
    this.#members.set(key, member);
    this.#broadcast({ type: "joined", peer: member.announcement }, member);
    return present;
  }

  /** Removes a member (if it holds its name) and tells everyone else. Idempotent. */
  leave(member: M): void {
    const key = nameKey(member.announcement.name);
    if (this.#members.get(key) !== member) return;
    this.#members.delete(key);
    this.#broadcast({ type: "left", name: member.announcement.name }, member);
  }

  #broadcast(message: ServerMessage, except: M): void {
    for (const other of this.#members.values()) {
      if (other !== except) other.notify(message);
    }
  }
}
