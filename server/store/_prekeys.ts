/**
 * The SQLite {@linkcode PrekeyDirectory}: signed prekeys replaced whole, one-time keys in a
 * queue per identity and kind, taken with a `DELETE ... RETURNING` inside a write transaction so
 * two takers (even in two processes) never get the same key.
 *
 * @module
 */

import type { Bytes } from "../../shared/bytes.ts";
import { ReelayError } from "../../shared/errors.ts";
import { checkBytes, checkFingerprint, shown } from "./_check.ts";
import { settled } from "./_db.ts";
import { SqlitePart } from "./_part.ts";
import {
  MAX_ONE_TIME_KEY_BYTES,
  MAX_SIGNED_PREKEY_BYTES,
  ONE_TIME_KINDS,
  type OneTimeKey,
  type OneTimeKind,
  type PrekeyBundle,
  type PrekeyDirectory,
} from "./mod.ts";

const MAX_KEY_ID = 0xffff_ffff;

function checkKind(kind: unknown): OneTimeKind {
  if (!ONE_TIME_KINDS.includes(kind as OneTimeKind)) {
    throw new TypeError(`One-time prekey kind ${shown(kind)} is unknown`);
  }
  return kind as OneTimeKind;
}

/** A prekey larger than the server keeps. */
export function tooLarge(what: string, bytes: number, max: number): ReelayError {
  return new ReelayError(
    "prekey-too-large",
    `${what} of ${bytes} bytes is larger than the most the server keeps, ${max} bytes`,
  );
}

/** Refuses bad one-time prekeys: ids out of range or repeated, keys empty or too large. */
export function checkOneTimeKeys(kind: OneTimeKind, keys: readonly OneTimeKey[]): void {
  const seen = new Set<number>();
  for (const { id, key } of keys) {
    if (!Number.isInteger(id) || id < 0 || id > MAX_KEY_ID) {
      throw new ReelayError(
        "bad-prekey-id",
        `One-time prekey id ${shown(id)} is not allowed: use an integer from 0 to ${MAX_KEY_ID}`,
      );
    }
    if (seen.has(id)) throw duplicate(kind, id);
    seen.add(id);
    checkBytes(key, "One-time prekey");
    if (key.length === 0 || key.length > MAX_ONE_TIME_KEY_BYTES) {
      throw tooLarge(`One-time prekey ${id}`, key.length, MAX_ONE_TIME_KEY_BYTES);
    }
  }
}

/** A one-time prekey id that is held already. */
export function duplicate(kind: OneTimeKind, id: number): ReelayError {
  return new ReelayError(
    "duplicate-prekey-id",
    `One-time ${kind} prekey id ${id} is already held: give each key a new id`,
  );
}

/**
 * The prekey directory over one `Db`.
 *
 * @example
 * ```ts ignore
 * const prekeys = new SqlitePrekeys(db, DEFAULT_STORE_LIMITS, Date.now);
 * ```
 */
export class SqlitePrekeys extends SqlitePart implements PrekeyDirectory {
  /** See {@linkcode PrekeyDirectory.publish}. */
  publish(fingerprint: string, signed: Bytes): Promise<void> {
    return settled(() => {
      checkFingerprint(fingerprint);
      checkBytes(signed, "Signed prekeys");
      if (signed.length === 0 || signed.length > MAX_SIGNED_PREKEY_BYTES) {
        throw tooLarge("Signed prekeys", signed.length, MAX_SIGNED_PREKEY_BYTES);
      }
      const now = this.now();
      this.db.write(() => {
        this.#checkRegistered(fingerprint);
        this.db.run(
          `INSERT INTO prekey_signed (fingerprint, signed, published_at) VALUES (?, ?, ?)
            ON CONFLICT (fingerprint) DO UPDATE
              SET signed = excluded.signed, published_at = excluded.published_at`,
          fingerprint,
          signed,
          now,
        );
      });
    });
  }

  /** See {@linkcode PrekeyDirectory.addOneTime}. */
  addOneTime(fingerprint: string, kind: OneTimeKind, keys: readonly OneTimeKey[]): Promise<number> {
    return settled(() => {
      checkFingerprint(fingerprint);
      checkKind(kind);
      const max = this.limits.maxOneTimePerKind;
      if (keys.length > max) throw this.#full(kind, 0, keys.length);
      checkOneTimeKeys(kind, keys);
      return this.db.write(() => {
        this.#checkRegistered(fingerprint);
        const held = this.#count(fingerprint, kind);
        if (held + keys.length > max) throw this.#full(kind, held, keys.length);
        for (const { id, key } of keys) {
          const taken = this.db.get(
            "SELECT 1 AS taken FROM prekey_one_time WHERE fingerprint = ? AND kind = ? AND key_id = ?",
            fingerprint,
            kind,
            id,
          );
          if (taken !== undefined) throw duplicate(kind, id);
          this.db.run(
            "INSERT INTO prekey_one_time (fingerprint, kind, key_id, key) VALUES (?, ?, ?, ?)",
            fingerprint,
            kind,
            id,
            key,
          );
        }
        return held + keys.length;
      });
    });
  }

  /** See {@linkcode PrekeyDirectory.takeBundle}. */
  takeBundle(fingerprint: string): Promise<PrekeyBundle | undefined> {
    return settled(() => {
      checkFingerprint(fingerprint);
      return this.db.write(() => {
        const signed = this.db.get(
          "SELECT signed FROM prekey_signed WHERE fingerprint = ?",
          fingerprint,
        );
        if (signed === undefined) return undefined;
        const bundle: PrekeyBundle = { signed: signed.signed as Bytes, oneTime: {} };
        for (const kind of ONE_TIME_KINDS) {
          const taken = this.db.get(
            `DELETE FROM prekey_one_time WHERE seq = (SELECT seq FROM prekey_one_time
                WHERE fingerprint = ? AND kind = ? ORDER BY seq LIMIT 1)
              RETURNING key_id, key`,
            fingerprint,
            kind,
          );
          if (taken !== undefined) {
            bundle.oneTime[kind] = { id: Number(taken.key_id), key: taken.key as Bytes };
          }
        }
        return bundle;
      });
    });
  }

  /** See {@linkcode PrekeyDirectory.oneTimeCount}. */
  oneTimeCount(fingerprint: string): Promise<Record<OneTimeKind, number>> {
    return settled(() => {
      checkFingerprint(fingerprint);
      const counts = { x25519: 0, mlkem768: 0 };
      for (const kind of ONE_TIME_KINDS) counts[kind] = this.#count(fingerprint, kind);
      return counts;
    });
  }

  #count(fingerprint: string, kind: OneTimeKind): number {
    const row = this.db.get(
      "SELECT COUNT(*) AS n FROM prekey_one_time WHERE fingerprint = ? AND kind = ?",
      fingerprint,
      kind,
    );
    return Number(row?.n ?? 0);
  }

  #full(kind: OneTimeKind, held: number, adding: number): ReelayError {
    return new ReelayError(
      "prekeys-full",
      `Too many one-time ${kind} prekeys: ${held} are held and ${adding} more would pass the ` +
        `most, ${this.limits.maxOneTimePerKind}`,
    );
  }

  #checkRegistered(fingerprint: string): void {
    const known = this.db.get(
      "SELECT 1 AS known FROM registry WHERE fingerprint = ? LIMIT 1",
      fingerprint,
    );
    if (known === undefined) {
      throw new ReelayError(
        "not-registered",
        `Key ${
          shown(fingerprint)
        } is not registered on this server: join before publishing prekeys`,
      );
    }
  }
}
