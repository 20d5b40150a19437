/**
 * The SQLite {@linkcode Registry}, and what dropping a person does to the rest of the store:
 * their prekeys are deleted and their held mail is ended (not deleted) so that the next mailbox
 * sweep returns it and its senders are told. All of it in the transaction that drops them.
 *
 * @module
 */

import { fromUtf8 } from "../../shared/bytes.ts";
import { ReelayError } from "../../shared/errors.ts";
import { checkFingerprint, checkLimit, checkText, checkTime, jsonBytes } from "./_check.ts";
import { type Row, settled } from "./_db.ts";
import { SqlitePart } from "./_part.ts";
import {
  type JsonValue,
  type MailEndReason,
  MAX_ANNOUNCEMENT_BYTES,
  MAX_PAGE,
  type NewRegistryEntry,
  type Registry,
  type RegistryEntry,
  type RegistrySummary,
  type RememberResult,
} from "./mod.ts";

const SUMMARY = "name_key, name, fingerprint, last_seen";

function summaryOf(row: Row): RegistrySummary {
  return {
    nameKey: row.name_key as string,
    name: row.name as string,
    fingerprint: row.fingerprint as string,
    lastSeen: Number(row.last_seen),
  };
}

function announcementBytes(announcement: JsonValue): Uint8Array {
  return jsonBytes(announcement, MAX_ANNOUNCEMENT_BYTES, (bytes) =>
    new ReelayError(
      "announcement-too-large",
      `Announcement of ${bytes} bytes is larger than the most the server keeps, ` +
        `${MAX_ANNOUNCEMENT_BYTES} bytes`,
    ));
}

/**
 * The registry over one `Db`.
 *
 * @example
 * ```ts ignore
 * const registry = new SqliteRegistry(db, DEFAULT_STORE_LIMITS, Date.now);
 * ```
 */
export class SqliteRegistry extends SqlitePart implements Registry {
  /** See {@linkcode Registry.remember}. */
  remember(entry: NewRegistryEntry): Promise<RememberResult> {
    return settled(() => {
      const nameKey = checkText(entry.nameKey, "Name key");
      const name = checkText(entry.name, "Name");
      const fingerprint = checkFingerprint(entry.fingerprint);
      const announcement = fromUtf8(announcementBytes(entry.announcement)) as string;
      const now = entry.seenAt ?? this.now();
      checkTime(now);
      return this.db.write(() => {
        const before = this.#summary(nameKey);
        const evicted = before === undefined ? this.#makeRoom(now) : [];
        this.db.run(
          `INSERT INTO registry (name_key, name, fingerprint, announcement, last_seen)
            VALUES (?, ?, ?, ?, ?)
            ON CONFLICT (name_key) DO UPDATE SET name = excluded.name,
              fingerprint = excluded.fingerprint, announcement = excluded.announcement,
              last_seen = MAX(last_seen, excluded.last_seen)`,
          nameKey,
          name,
          fingerprint,
          announcement,
          now,
        );
        const result: RememberResult = { evicted };
        if (before !== undefined && before.fingerprint !== fingerprint) {
          result.previousFingerprint = before.fingerprint;
          this.#retire(before.fingerprint, now, "recipient-key-changed");
        }
        return result;
      });
    });
  }

  /** See {@linkcode Registry.lookup}. */
  lookup(nameKey: string): Promise<RegistryEntry | undefined> {
    return settled(() => {
      checkText(nameKey, "Name key");
      const row = this.db.get(
        `SELECT ${SUMMARY}, announcement FROM registry WHERE name_key = ?`,
        nameKey,
      );
      if (row === undefined) return undefined;
      return {
        ...summaryOf(row),
        announcement: JSON.parse(row.announcement as string) as JsonValue,
      };
    });
  }

  /** See {@linkcode Registry.forget}. */
  forget(nameKey: string): Promise<boolean> {
    return settled(() => {
      checkText(nameKey, "Name key");
      const now = this.now();
      return this.db.write(() => {
        const entry = this.#summary(nameKey);
        if (entry !== undefined) this.#drop(entry, now);
        return entry !== undefined;
      });
    });
  }

  /** See {@linkcode Registry.expire}. */
  expire(now: number, limit: number = MAX_PAGE): Promise<RegistrySummary[]> {
    return settled(() => {
      checkTime(now);
      checkLimit(limit);
      // Their mail ends at the store's clock, so that it is no longer pending from this moment.
      const endedAt = this.now();
      return this.db.write(() => {
        const dropped = this.db.all(
          `SELECT ${SUMMARY} FROM registry WHERE last_seen <= ?
            ORDER BY last_seen, name_key LIMIT ?`,
          now - this.limits.registryTtlMs,
          limit,
        ).map(summaryOf);
        for (const entry of dropped) this.#drop(entry, endedAt);
        return dropped;
      });
    });
  }

  /** See {@linkcode Registry.count}. */
  count(): Promise<number> {
    return settled(() => this.#people());
  }

  #people(): number {
    return Number(this.db.get("SELECT people FROM registry_total WHERE id = 1")?.people ?? 0);
  }

  #summary(nameKey: string): RegistrySummary | undefined {
    const row = this.db.get(`SELECT ${SUMMARY} FROM registry WHERE name_key = ?`, nameKey);
    return row === undefined ? undefined : summaryOf(row);
  }

  /** Drops the oldest seen until one more person fits. */
  #makeRoom(now: number): RegistrySummary[] {
    const over = this.#people() + 1 - this.limits.maxRegistered;
    if (over <= 0) return [];
    // A smaller bound than the people already held is met a page at a time.
    const oldest = this.db.all(
      `SELECT ${SUMMARY} FROM registry ORDER BY last_seen, name_key LIMIT ?`,
      Math.min(over, MAX_PAGE),
    ).map(summaryOf);
    for (const entry of oldest) this.#drop(entry, now);
    return oldest;
  }

  #drop(entry: RegistrySummary, now: number): void {
    this.db.run("DELETE FROM registry WHERE name_key = ?", entry.nameKey);
    this.#retire(entry.fingerprint, now, "recipient-forgotten");
  }

  /** Ends what belongs to a key that no registered name holds any more. */
  #retire(fingerprint: string, now: number, reason: MailEndReason): void {
    const held = this.db.get(
      "SELECT 1 AS held FROM registry WHERE fingerprint = ? LIMIT 1",
      fingerprint,
    );
    if (held !== undefined) return;
    this.db.run("DELETE FROM prekey_signed WHERE fingerprint = ?", fingerprint);
    this.db.run("DELETE FROM prekey_one_time WHERE fingerprint = ?", fingerprint);
    this.db.run(
      "UPDATE mail SET expires_at = ?, end_reason = ? WHERE recipient_key = ? AND expires_at > ?",
      now,
      reason,
      fingerprint,
      now,
    );
  }
}
