/**
 * The message history in the client store: what was said, encrypted per row with AES-256-GCM
 * under a random 32-byte key that is kept in the file only wrapped with the identity's RSA-OAEP
 * key. The file alone shows who, when and how many (names, times, message ids, delivery
 * status), never what.
 *
 * Bounded: at most `maxPerPeer` rows per person and `maxTotal` rows in all, the oldest deleted
 * first. Clearing deletes the rows, and the file's `secure_delete` zeroes the freed bytes, so
 * the ciphertext is gone from the file too (the rollback journal that held it during the
 * transaction is deleted at its end).
 *
 * @module
 */

import type { DatabaseSync } from "node:sqlite";
import { type Bytes, encodeFields, randomBytes } from "../../shared/bytes.ts";
import { type Identity, importEncryptionKey } from "../../shared/crypto/mod.ts";
import { ReelayError, UsageError } from "../../shared/errors.ts";
import { nameKey } from "../../shared/names.ts";

/**
 * Where a message stands: an outgoing one is `sending` until the server took it (`sent`, or
 * `queued` for someone offline), then `delivered` when their client took it, or `failed`; an
 * incoming one is `received`.
 */
export type DeliveryStatus = "sending" | "sent" | "queued" | "delivered" | "failed" | "received";

/** One message in the history. */
export interface HistoryEntry {
  /** The other person. */
  peer: string;
  /** `in` from them, `out` to them. */
  direction: "in" | "out";
  /** The message id. */
  id: string;
  /** What was said. */
  text: string;
  /** When, in ms since the epoch. */
  at: number;
  /** Where it stands (absent for entries kept before statuses were). */
  status?: DeliveryStatus;
}

/** A history entry encrypted by {@linkcode MessageHistory.seal}, ready to be written. */
export interface SealedEntry {
  /** The person's name key. */
  peer: string;
  at: number;
  nonce: Bytes;
  /** The AES-256-GCM ciphertext of the entry. */
  data: Bytes;
  id: string;
  status: DeliveryStatus | null;
}

/** The store's meta table, as the history uses it. */
export interface HistoryMeta {
  /** The value kept under `key`, if any. */
  get(key: string): Bytes | undefined;
  /** Keeps `value` under `key`, or deletes the key with `undefined`. */
  set(key: string, value: Bytes | undefined): void;
}

/** What {@linkcode MessageHistory} needs from its store. */
export interface HistoryParts {
  db: DatabaseSync;
  /** The identity whose RSA-OAEP key wraps the history key. */
  identity: Identity;
  meta: HistoryMeta;
  /** Runs `body` in one write transaction. */
  transaction: (body: () => void) => void;
  /** The file, for error messages. */
  file: string;
  maxPerPeer: number;
  maxTotal: number;
  /** Nothing is written, whatever `/history on` says (`--no-history`). */
  forcedOff: boolean;
}

const KEY = "history-key";
const OFF = "history-off";
/** Later statuses replace earlier ones, never the reverse (a late `sent` after `delivered`). */
const RANK: Record<DeliveryStatus, number> = {
  sending: 0,
  sent: 1,
  queued: 1,
  failed: 2,
  delivered: 3,
  received: 3,
};

/** The encrypted, bounded history of one store. See the module header. */
export class MessageHistory {
  readonly #parts: HistoryParts;
  #key: CryptoKey | undefined;

  /** The history kept in `parts.db`. */
  constructor(parts: HistoryParts) {
    this.#parts = parts;
  }

  /** Whether new messages are kept. */
  get kept(): boolean {
    return !this.#parts.forcedOff && this.#parts.meta.get(OFF) === undefined;
  }

  /**
   * Keeps new messages from now on (`true`) or stops (`false`), remembered for this server.
   * Throws `history-forced-off` for `true` when the run said `--no-history`.
   */
  keep(on: boolean): void {
    if (on && this.#parts.forcedOff) {
      throw new UsageError(
        "History is off for this run (--no-history, or [client] history = false): " +
          "nothing is kept",
        "history-forced-off",
      );
    }
    this.#parts.meta.set(OFF, on ? undefined : new Uint8Array([1]));
  }

  /** Adds a message, encrypted; nothing when history is off. */
  async add(entry: HistoryEntry): Promise<void> {
    const row = await this.seal(entry);
    if (row) this.insert(row);
  }

  /**
   * Encrypts `entry` into a row for {@linkcode MessageHistory.insert}, so the row can be written
   * in the transaction of the message it belongs to; `undefined` when history is off.
   */
  async seal(entry: HistoryEntry): Promise<SealedEntry | undefined> {
    if (!this.kept) return;
    const key = await this.#cipherKey();
    const nonce = randomBytes(12);
    const peer = nameKey(entry.peer);
    const { peer: name, direction, id, text } = entry;
    const plain = new TextEncoder().encode(JSON.stringify({ peer: name, direction, id, text }));
    const data = await seal(key, nonce, historyAd(peer, entry.at), plain);
    return { peer, at: entry.at, nonce, data, id, status: entry.status ?? null };
  }

  /** Writes a sealed row, deleting the oldest beyond the bounds, in one (nested) transaction. */
  insert(row: SealedEntry): void {
    const { db, maxPerPeer, maxTotal } = this.#parts;
    const { peer } = row;
    this.#parts.transaction(() => {
      db.prepare(
        "INSERT INTO history (name_key, at, nonce, data, message_id, status) " +
          "VALUES (?, ?, ?, ?, ?, ?)",
      ).run(peer, row.at, row.nonce, row.data, row.id, row.status);
      db.prepare(
        "DELETE FROM history WHERE name_key = ? AND id NOT IN " +
          "(SELECT id FROM history WHERE name_key = ? ORDER BY id DESC LIMIT ?)",
      ).run(peer, peer, maxPerPeer);
      const { rows } = db.prepare("SELECT rows FROM history_total").get() as { rows: number };
      if (rows <= maxTotal) return;
      db.prepare("DELETE FROM history WHERE id IN (SELECT id FROM history ORDER BY id LIMIT ?)")
        .run(rows - maxTotal);
    });
  }

  /**
   * Records where message `id` to or from `peer` stands (a status never goes back); with
   * `onlyFrom`, only a message that stands at one of those.
   */
  mark(
    peer: string,
    id: string,
    status: DeliveryStatus,
    onlyFrom?: readonly DeliveryStatus[],
  ): void {
    const { db } = this.#parts;
    const key = nameKey(peer);
    const rows = db.prepare("SELECT id, status FROM history WHERE name_key = ? AND message_id = ?")
      .all(key, id);
    const rank = (value: unknown) => RANK[value as DeliveryStatus] ?? -1;
    const allowed = (value: unknown) => !onlyFrom || onlyFrom.includes(value as DeliveryStatus);
    const behind = rows.filter((row) => RANK[status] > rank(row.status) && allowed(row.status));
    if (behind.length === 0) return;
    this.#parts.transaction(() => {
      for (const row of behind) {
        db.prepare("UPDATE history SET status = ? WHERE id = ?").run(status, row.id as number);
      }
    });
  }

  /** The last `limit` messages with `peer` (with everyone when `undefined`), oldest first. */
  async recent(peer: string | undefined, limit: number): Promise<HistoryEntry[]> {
    const count = Math.max(0, Math.min(limit, this.#parts.maxPerPeer));
    const rows = peer === undefined
      ? this.#parts.db.prepare(
        "SELECT * FROM (SELECT * FROM history ORDER BY id DESC LIMIT ?) ORDER BY id",
      ).all(count)
      : this.#parts.db.prepare(
        "SELECT * FROM (SELECT * FROM history WHERE name_key = ? ORDER BY id DESC LIMIT ?) " +
          "ORDER BY id",
      ).all(nameKey(peer), count);
    if (rows.length === 0) return [];
    const key = await this.#cipherKey();
    const entries: HistoryEntry[] = [];
    for (const row of rows) {
      const plain = await crypto.subtle.decrypt(
        {
          name: "AES-GCM",
          iv: row.nonce as Uint8Array<ArrayBuffer>,
          additionalData: historyAd(String(row.name_key), Number(row.at)),
        },
        key,
        row.data as Uint8Array<ArrayBuffer>,
      ).catch((error) => {
        throw new ReelayError(
          "client-store-corrupt",
          `History with "${row.name_key}" in "${this.#parts.file}" is damaged`,
          { cause: error },
        );
      });
      const value = JSON.parse(new TextDecoder().decode(plain));
      const status = typeof row.status === "string" ? { status: row.status } : {};
      entries.push({ ...value, at: Number(row.at), ...status });
    }
    return entries;
  }

  /**
   * Deletes the messages with `peer` (with everyone when `undefined`) from the file: the rows go
   * and `secure_delete` (set when the file is opened) overwrites their bytes with zeros. Returns
   * how many went.
   */
  clear(peer?: string): number {
    const { db } = this.#parts;
    let deleted = 0;
    this.#parts.transaction(() => {
      const result = peer === undefined
        ? db.prepare("DELETE FROM history").run()
        : db.prepare("DELETE FROM history WHERE name_key = ?").run(nameKey(peer));
      deleted = Number(result.changes);
    });
    return deleted;
  }

  /**
   * Makes sure the history key in the file opens with this identity. One wrapped for another
   * identity (identity.json was replaced) never will, so the rows sealed under it cannot be read
   * here: they are deleted and a new key is started. Returns how many rows were deleted then, else
   * `undefined`. Does nothing while history is forced off (nothing is written then).
   */
  async claim(): Promise<number | undefined> {
    const wrapped = this.#parts.meta.get(KEY);
    if (this.#parts.forcedOff || this.#key || !wrapped) return undefined;
    const raw = await this.#parts.identity.decrypt(wrapped).catch(() => undefined);
    if (raw) {
      this.#key ??= await importHistoryKey(raw);
      return undefined;
    }
    // Rows first: a crash between the two leaves the foreign key, and the next claim goes on.
    const deleted = this.clear();
    this.#parts.meta.set(KEY, undefined);
    await this.#cipherKey();
    return deleted;
  }

  async #cipherKey(): Promise<CryptoKey> {
    if (this.#key) return this.#key;
    const { identity, meta, file } = this.#parts;
    const wrapped = meta.get(KEY);
    let raw: Bytes;
    if (wrapped) {
      raw = await identity.decrypt(wrapped).catch((error) => {
        throw new ReelayError(
          "client-store-foreign",
          `The history in "${file}" belongs to another identity`,
          { cause: error },
        );
      });
    } else {
      raw = randomBytes(32);
      const publicKey = await importEncryptionKey(identity.public);
      meta.set(
        KEY,
        new Uint8Array(await crypto.subtle.encrypt({ name: "RSA-OAEP" }, publicKey, raw)),
      );
    }
    this.#key = await importHistoryKey(raw);
    return this.#key;
  }
}

/** The AES-GCM key of `raw` (which is zeroed). */
async function importHistoryKey(raw: Bytes): Promise<CryptoKey> {
  const key = await crypto.subtle.importKey("raw", raw, "AES-GCM", false, ["encrypt", "decrypt"]);
  raw.fill(0);
  return key;
}

async function seal(
  key: CryptoKey,
  iv: Bytes,
  additionalData: Bytes,
  plain: Bytes,
): Promise<Bytes> {
  return new Uint8Array(
    await crypto.subtle.encrypt({ name: "AES-GCM", iv, additionalData }, key, plain),
  );
}

function historyAd(peerKey: string, at: number): Bytes {
  return encodeFields(["reelay-history-v1", peerKey, String(at)]);
}
