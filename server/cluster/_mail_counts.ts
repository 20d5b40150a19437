/**
 * What the cluster's mailbox holds per recipient and per sender, counted in one NATS KV bucket,
 * so that a put checks its bounds with a read of each count instead of a read of each item held.
 *
 * - `to.<recipient key>` and `from.<sender key>` hold `{ items, bytes }`. A put adds its item to
 *   both before it publishes (each a compare-and-set on the entry's revision, checked against
 *   the bound in the same step), and takes it back if the publish fails; taking mail out
 *   (acknowledged, expired, ended) takes it off. A node that dies between the two steps leaves a
 *   count too high, never too low: bounds bite early, never late, until the entry, unwritten for
 *   the mail's whole lifetime, expires (the bucket's TTL is the mail stream's max age).
 * - `id.<recipient key>.<sender key>.<hex of the message id>` holds the stream sequence of the
 *   item with that id, so a second put of it finds the first with one read.
 *
 * @module
 */

import { type KV, Kvm } from "@nats-io/kv";
import { fromUtf8, toHex, utf8 } from "../../shared/bytes.ts";
import { ReelayError } from "../../shared/errors.ts";
import type { MailCount } from "../store/mod.ts";
import type { NatsConnection } from "./nats.ts";
import { isWrongLastSequence } from "./_errors.ts";
import { token, withCas } from "./_kv.ts";

/** The count of a recipient's or a sender's mail, as a KV key. */
export type CountKey = `to.${string}` | `from.${string}`;

/** The key counting what `recipientKey` has held. */
export function recipientCount(recipientKey: string): CountKey {
  return `to.${token(recipientKey)}`;
}

/** The key counting what `senderKey` has held. */
export function senderCount(senderKey: string): CountKey {
  return `from.${token(senderKey)}`;
}

/** The key naming the item a sender put for a recipient with `messageId`. */
export function messageIdKey(recipientKey: string, senderKey: string, messageId: string): string {
  return `id.${token(recipientKey)}.${token(senderKey)}.${toHex(utf8(messageId))}`;
}

function countOf(value: Uint8Array): MailCount {
  const parsed = JSON.parse(fromUtf8(value) ?? "null");
  if (!Number.isSafeInteger(parsed?.items) || !Number.isSafeInteger(parsed?.bytes)) {
    throw new ReelayError("store-corrupt", "A mail count in NATS is not { items, bytes }");
  }
  return { items: parsed.items, bytes: parsed.bytes };
}

/** The counts and message ids of one mail stream. */
export class MailCounts {
  readonly #kv: KV;

  private constructor(kv: KV) {
    this.#kv = kv;
  }

  /** Opens (or creates) the bucket `bucket`, whose entries live `ttlMs` unless rewritten. */
  static async open(nc: NatsConnection, bucket: string, ttlMs: number): Promise<MailCounts> {
    return new MailCounts(await new Kvm(nc).create(bucket, { ttl: ttlMs, history: 1 }));
  }

  /**
   * Adds one item of `bytes` to the count at `key`, after `check` (which throws to refuse) has
   * seen the count as it was. A count not there yet starts from `initial()`.
   */
  add(
    key: CountKey,
    bytes: number,
    check: (held: MailCount) => void,
    initial: () => Promise<MailCount>,
  ): Promise<void> {
    return withCas("Counting mail", async () => {
      const current = await this.#kv.get(key);
      const held = current?.operation === "PUT" ? countOf(current.value) : await initial();
      check(held);
      const next = utf8(JSON.stringify({ items: held.items + 1, bytes: held.bytes + bytes }));
      if (current === null) await this.#kv.create(key, next);
      else await this.#kv.update(key, next, current.revision);
    });
  }

  /** Takes `items` items of `bytes` in all off the count at `key` (never below zero). */
  take(key: CountKey, items: number, bytes: number): Promise<void> {
    return withCas("Counting mail", async () => {
      const current = await this.#kv.get(key);
      if (current?.operation !== "PUT") return;
      const held = countOf(current.value);
      const next = {
        items: Math.max(0, held.items - items),
        bytes: Math.max(0, held.bytes - bytes),
      };
      await this.#kv.update(key, utf8(JSON.stringify(next)), current.revision);
    });
  }

  /** The count at `key`, zero when there is none. */
  async read(key: CountKey): Promise<MailCount> {
    const current = await this.#kv.get(key);
    return current?.operation === "PUT" ? countOf(current.value) : { items: 0, bytes: 0 };
  }

  /** The sequence recorded at a message id's `key`, if any. */
  async sequence(key: string): Promise<number | undefined> {
    const current = await this.#kv.get(key);
    if (current?.operation !== "PUT") return undefined;
    const seq = Number(fromUtf8(current.value));
    return Number.isSafeInteger(seq) && seq > 0 ? seq : undefined;
  }

  /**
   * Records `seq` at a message id's `key`. Returns the sequence already there when another put
   * of the same message recorded its own first.
   */
  async record(key: string, seq: number): Promise<number | undefined> {
    try {
      await this.#kv.create(key, utf8(String(seq)));
      return undefined;
    } catch (error) {
      if (!isWrongLastSequence(error)) throw error;
      return await this.sequence(key) ?? await this.record(key, seq);
    }
  }

  /** Forgets a message id's `key`. */
  async forget(key: string): Promise<void> {
    await this.#kv.delete(key);
  }
}
