/**
 * The SQLite {@linkcode Mailbox}: one `mail` table in insertion order, per-recipient and total
 * counters kept by triggers, and the bounds checked inside the inserting transaction. The puts
 * and removals of one turn of the event loop share one transaction and one sync (group commit):
 * each call resolves once the commit holding it is done, and a failed commit rejects every call
 * it held.
 *
 * @module
 */

import type { Bytes } from "../../shared/bytes.ts";
import { fromUtf8 } from "../../shared/bytes.ts";
import { afterThisTurn } from "../../shared/async.ts";
import { ReelayError } from "../../shared/errors.ts";
import { GroupCommit } from "../../shared/group_commit.ts";
import {
  type CheckedMail,
  checkFingerprint,
  checkLimit,
  checkMail,
  checkRecipientRoom,
  checkSenderRoom,
  checkTime,
  shown,
} from "./_check.ts";
import { type Row, settled, storeError } from "./_db.ts";
import { SqlitePart } from "./_part.ts";
import {
  type EndedMail,
  type JsonValue,
  type Mailbox,
  type MailboxStats,
  type MailCount,
  type MailEndReason,
  type MailId,
  type MailItem,
  type MailParties,
  type MailStamp,
  MAX_PAGE,
  type NewMail,
  type PendingOptions,
  type PutOptions,
  type PutResult,
} from "./mod.ts";

const COLUMNS = "id, kind, recipient_key, recipient_name, sender_key, sender_name, message_id, " +
  "size, queued_at, expires_at";

function stampOf(row: Row): MailStamp {
  return {
    id: String(row.id),
    queuedAt: Number(row.queued_at),
    expiresAt: Number(row.expires_at),
    bytes: Number(row.size),
  };
}

function partiesOf(row: Row): MailParties {
  const recipientKey = row.recipient_key as string;
  const recipientName = row.recipient_name as string;
  if (row.kind !== "sealed") return { kind: "notice", recipientKey, recipientName };
  return {
    kind: "sealed",
    recipientKey,
    recipientName,
    senderKey: row.sender_key as string,
    senderName: row.sender_name as string,
    messageId: row.message_id as string,
  };
}

function itemOf(row: Row): MailItem {
  const parties = partiesOf(row);
  const body = row.body as Bytes;
  if (parties.kind === "sealed") return { ...parties, envelope: body, ...stampOf(row) };
  const notice = JSON.parse(fromUtf8(body) ?? "null") as JsonValue;
  return { ...parties, notice, ...stampOf(row) };
}

function endedOf(row: Row): EndedMail {
  return { ...partiesOf(row), ...stampOf(row), reason: row.end_reason as MailEndReason };
}

/** Our ids are decimal row ids; anything else names no item here. */
function rowIdOf(id: MailId): number | undefined {
  if (typeof id !== "string" || !/^[1-9][0-9]{0,15}$/.test(id)) return undefined;
  const value = Number(id);
  return Number.isSafeInteger(value) ? value : undefined;
}

/** A bound that refuses one item: the rest of its batch goes on. */
const REFUSALS = new Set([
  "recipient-mailbox-full",
  "sender-mailbox-full",
  "mailbox-full",
  "recipient-key-changed",
  "unknown-recipient",
]);

function isRefusal(error: unknown): error is ReelayError {
  return error instanceof ReelayError && REFUSALS.has(error.code);
}

function countOf(row: Row | undefined): MailCount {
  return { items: Number(row?.items ?? 0), bytes: Number(row?.bytes ?? 0) };
}

/**
 * The mailbox over one `Db`.
 *
 * @example
 * ```ts ignore
 * const mailbox = new SqliteMailbox(db, DEFAULT_STORE_LIMITS, Date.now);
 * ```
 */
export class SqliteMailbox extends SqlitePart implements Mailbox {
  /** Whether the batch staged now holds a put that must be synced before it is answered. */
  #durable = false;
  readonly #commits = new GroupCommit({
    schedule: afterThisTurn,
    transaction: (body) => {
      const durable = this.#durable;
      this.#durable = false;
      this.db.write(body, { durable });
    },
    closed: () => storeError("store-closed", `The store in "${this.db.path}" is closed`),
  });

  /**
   * See {@linkcode Mailbox.put}. Staged for the commit that ends this turn: the bounds are
   * checked in that transaction, in the order of the calls, each against what the items before
   * it left; a bound refuses only its own item.
   */
  put(item: NewMail, options: PutOptions = {}): Promise<PutResult> {
    let row: CheckedMail;
    try {
      row = checkMail(item);
    } catch (error) {
      return Promise.reject(error);
    }
    let outcome: PutResult | ReelayError | undefined;
    const committed = this.#commits.stage(() => {
      try {
        this.#checkKeyHeld(row, options);
        outcome = this.#duplicateOf(row) ?? this.#insert(row);
      } catch (error) {
        if (!isRefusal(error)) throw error;
        outcome = error;
      }
    });
    if (options.durable !== false) this.#durable = true;
    return committed.then(() => {
      if (outcome instanceof Error || outcome === undefined) throw outcome;
      return outcome;
    });
  }

  /** Writes what is staged now and takes nothing more: the store closes next. */
  close(): void {
    this.#commits.close();
  }

  /** See {@linkcode Mailbox.pending}. */
  pending(recipientKey: string, limit: number, options: PendingOptions = {}): Promise<MailItem[]> {
    return settled(() => {
      checkFingerprint(recipientKey, "Recipient key");
      checkLimit(limit);
      const after = options.after === undefined ? 0 : rowIdOf(options.after);
      if (after === undefined) throw new RangeError(`Mail id ${shown(options.after)} is unknown`);
      const now = this.now();
      const last = this.#lastWithin(recipientKey, after, now, limit, options.maxBytes);
      if (last === undefined) return [];
      return this.db.all(
        `SELECT ${COLUMNS}, body FROM mail
          WHERE recipient_key = ? AND id > ? AND id <= ? AND expires_at > ?
          ORDER BY id LIMIT ?`,
        recipientKey,
        after,
        last,
        now,
        limit,
      ).map(itemOf);
    });
  }

  /** See {@linkcode Mailbox.remove}. */
  remove(recipientKey: string, ids: readonly MailId[]): Promise<number> {
    try {
      checkFingerprint(recipientKey, "Recipient key");
      if (ids.length > 0) checkLimit(ids.length, "Number of ids");
    } catch (error) {
      return Promise.reject(error);
    }
    if (ids.length === 0) return Promise.resolve(0);
    const rowIds = ids.map(rowIdOf).filter((id) => id !== undefined);
    // Staged without asking for a sync: a removal a power cut undoes only delivers the item
    // again, which the client drops by its message id. One sync per acknowledgement would double
    // the cost of every message (docs/storage.md); it shares the sync of a put in its batch.
    let removed = 0;
    return this.#commits.stage(() => {
      for (const id of rowIds) {
        removed += this.db.run(
          "DELETE FROM mail WHERE id = ? AND recipient_key = ?",
          id,
          recipientKey,
        );
      }
    }).then(() => removed);
  }

  /** See {@linkcode Mailbox.expire}. */
  expire(now: number, limit: number = MAX_PAGE): Promise<EndedMail[]> {
    return settled(() => {
      checkTime(now);
      checkLimit(limit);
      return this.db.write(() => {
        const rows = this.db.all(
          `SELECT ${COLUMNS}, end_reason FROM mail WHERE expires_at <= ?
            ORDER BY expires_at, id LIMIT ?`,
          now,
          limit,
        );
        for (const row of rows) this.db.run("DELETE FROM mail WHERE id = ?", row.id as number);
        return rows.map(endedOf);
      });
    });
  }

  /** See {@linkcode Mailbox.count}. */
  count(recipientKey: string): Promise<MailCount> {
    return settled(() => {
      checkFingerprint(recipientKey, "Recipient key");
      return countOf(
        this.db.get(
          "SELECT items, bytes FROM mail_recipient WHERE recipient_key = ?",
          recipientKey,
        ),
      );
    });
  }

  /** See {@linkcode Mailbox.stats}. */
  stats(): Promise<MailboxStats> {
    return settled(() => {
      const row = this.db.get("SELECT items, bytes, recipients FROM mail_total WHERE id = 1");
      return { ...countOf(row), recipients: Number(row?.recipients ?? 0) };
    });
  }

  /**
   * Refuses a sealed item whose recipient's name the registry now holds with another key, or, for
   * an offline recipient, no longer holds: the registry's change ended what was held for them
   * before this item was written, so it would wait unread for its time to live.
   */
  #checkKeyHeld(row: CheckedMail, options: PutOptions): void {
    const { recipientNameKey, recipientOffline } = options;
    if (row.kind !== "sealed" || recipientNameKey === undefined) return;
    const entry = this.db.get(
      "SELECT fingerprint FROM registry WHERE name_key = ?",
      recipientNameKey,
    );
    if (entry === undefined && recipientOffline === true) {
      throw new ReelayError(
        "unknown-recipient",
        `Nobody called ${shown(row.recipientName)} is online or known`,
      );
    }
    if (entry === undefined || entry.fingerprint === row.recipientKey) return;
    throw new ReelayError(
      "recipient-key-changed",
      `${shown(row.recipientName)} now has another key than the one this message was sealed for`,
    );
  }

  #duplicateOf(row: CheckedMail): PutResult | undefined {
    if (row.kind !== "sealed") return undefined;
    const found = this.db.get(
      `SELECT id, expires_at FROM mail
        WHERE recipient_key = ? AND sender_key = ? AND message_id = ? AND kind = 'sealed'`,
      row.recipientKey,
      row.senderKey,
      row.messageId,
    );
    if (found === undefined) return undefined;
    return { id: String(found.id), expiresAt: Number(found.expires_at), duplicate: true };
  }

  #insert(row: CheckedMail): PutResult {
    const size = row.body.length;
    this.#checkRecipient(row.recipientName, row.recipientKey, size);
    if (row.senderKey !== null) this.#checkSender(row.senderKey, size);
    this.#checkTotal(size);
    const queuedAt = this.now();
    const expiresAt = queuedAt + this.limits.ttlMs;
    const inserted = this.db.get(
      `INSERT INTO mail (recipient_key, recipient_name, kind, sender_key, sender_name,
          message_id, body, size, queued_at, expires_at)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
      row.recipientKey,
      row.recipientName,
      row.kind,
      row.senderKey,
      row.senderName,
      row.messageId,
      row.body,
      size,
      queuedAt,
      expiresAt,
    );
    return { id: String(inserted?.id), expiresAt, duplicate: false };
  }

  #checkRecipient(name: string, recipientKey: string, size: number): void {
    const limits = this.limits;
    const held = countOf(
      this.db.get("SELECT items, bytes FROM mail_recipient WHERE recipient_key = ?", recipientKey),
    );
    checkRecipientRoom(name, held, size, limits);
  }

  /** One sender's share, checked before the total so that it is what a flooder hits. */
  #checkSender(senderKey: string, size: number): void {
    const limit = this.limits.maxBytesPerSender;
    const sent = countOf(
      this.db.get("SELECT items, bytes FROM mail_sender WHERE sender_key = ?", senderKey),
    );
    checkSenderRoom(sent, size, limit);
  }

  #checkTotal(size: number): void {
    const limits = this.limits;
    const total = countOf(this.db.get("SELECT items, bytes FROM mail_total WHERE id = 1"));
    if (total.bytes + size > limits.maxTotalBytes) {
      throw new ReelayError(
        "mailbox-full",
        `The server's mailbox is full: ${total.bytes} bytes are held for everyone, and ` +
          `${size} more would pass the most, ${limits.maxTotalBytes} bytes`,
      );
    }
  }

  /** The id of the last item of the page, stopping at `maxBytes` (the first always fits). */
  #lastWithin(
    recipientKey: string,
    after: number,
    now: number,
    limit: number,
    maxBytes: number | undefined,
  ): number | undefined {
    if (maxBytes !== undefined) checkTime(maxBytes, "Byte budget");
    const sizes = this.db.all(
      `SELECT id, size FROM mail WHERE recipient_key = ? AND id > ? AND expires_at > ?
        ORDER BY id LIMIT ?`,
      recipientKey,
      after,
      now,
      limit,
    );
    let last: number | undefined;
    let bytes = 0;
    for (const row of sizes) {
      bytes += Number(row.size);
      if (last !== undefined && maxBytes !== undefined && bytes > maxBytes) break;
      last = Number(row.id);
    }
    return last;
  }
}
