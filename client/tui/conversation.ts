/**
 * Who plain lines go to, who wrote last and who wrote while you were elsewhere: the state
 * behind `/query`, `/reply` and the unread counts of the status line. Pure: no I/O.
 *
 * Names are matched without case, as the server matches them, and kept as first spelled.
 *
 * @module
 */

import { nameKey } from "../../shared/names.ts";

/** The most people unread counts are kept for; the longest-quiet ones are dropped first. */
export const MAX_UNREAD_PEOPLE = 100;

/**
 * The current conversation, the last sender and unread counts.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Conversations } from "./conversation.ts";
 * const talk = new Conversations();
 * assert.equal(talk.received("carol"), false, "no conversation open: nothing is elsewhere");
 * talk.open("bob");
 * talk.received("carol");
 * talk.received("Carol");
 * assert.deepEqual(talk.unread, { carol: 2 });
 * assert.equal(talk.lastSender, "Carol");
 * talk.open("CAROL");
 * assert.equal(talk.current, "CAROL");
 * assert.deepEqual(talk.unread, {});
 * ```
 */
export class Conversations {
  #current: string | undefined;
  #lastSender: string | undefined;
  readonly #unread = new Map<string, { name: string; count: number }>();

  /** Who plain lines go to, if anyone. */
  get current(): string | undefined {
    return this.#current;
  }

  /** Who wrote last, for `/reply`. */
  get lastSender(): string | undefined {
    return this.#lastSender;
  }

  /** Unread messages per person (as first spelled); the current conversation has none. */
  get unread(): Record<string, number> {
    return Object.fromEntries([...this.#unread.values()].map((entry) => [entry.name, entry.count]));
  }

  /** Makes `name` the conversation (its unread count goes), or leaves it with `undefined`. */
  open(name: string | undefined): void {
    this.#current = name;
    if (name !== undefined) this.#unread.delete(nameKey(name));
  }

  /**
   * Notes a message from `from`; it counts as unread when a conversation with someone else is
   * open (with none open, every message is in plain sight). Returns whether it was counted.
   */
  received(from: string): boolean {
    this.#lastSender = from;
    const key = nameKey(from);
    if (this.#current === undefined || nameKey(this.#current) === key) return false;
    const entry = this.#unread.get(key) ?? { name: from, count: 0 };
    this.#unread.delete(key); // re-inserted last: the map stays ordered by latest message
    this.#unread.set(key, { name: entry.name, count: entry.count + 1 });
    if (this.#unread.size > MAX_UNREAD_PEOPLE) {
      this.#unread.delete(this.#unread.keys().next().value!);
    }
    return true;
  }
}
