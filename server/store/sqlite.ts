/**
 * The single-binary {@linkcode Store}: one SQLite file, `<state folder>/reelay.db`, through
 * Deno's built-in `node:sqlite` (no dependency, no native addon, no flag beyond
 * `--allow-read` and `--allow-write`; see `docs/storage.md` for the choice).
 *
 * The file and a folder it creates are owner-only (0600 and 0700); a file that is not a reelay
 * store, is damaged or is newer than this reelay is refused with an error that names it and says
 * what to do. Every commit is on the disk before the call returns (WAL, `synchronous=FULL`).
 *
 * The SQLite calls are synchronous: each operation runs to its end on the calling thread
 * (microseconds to about a millisecond with the fsync), so operations never interleave.
 *
 * @module
 */

import { settled } from "./_db.ts";
import { SqliteMailbox } from "./_mailbox.ts";
import { openDb } from "./_open.ts";
import { SqlitePrekeys } from "./_prekeys.ts";
import { SqliteRegistry } from "./_registry.ts";
import { DEFAULT_STORE_LIMITS, type Store, type StoreLimits, type StoreOptions } from "./mod.ts";

export { STORE_FILE_NAME, type StoreLocation } from "./_open.ts";
export { APPLICATION_ID, SCHEMA_VERSION } from "./_schema.ts";

function limitsOf(options: StoreOptions): StoreLimits {
  const limits = { ...DEFAULT_STORE_LIMITS };
  for (const key of Object.keys(DEFAULT_STORE_LIMITS) as (keyof StoreLimits)[]) {
    const value = options[key];
    if (value === undefined) continue;
    if (!Number.isSafeInteger(value) || value < 1) {
      throw new RangeError(`Store option ${key} must be a positive integer, not ${value}`);
    }
    limits[key] = value;
  }
  return limits;
}

/**
 * Opens (creating and migrating as needed) the store in a state folder, or in memory with
 * `":memory:"`. Close it with {@linkcode Store.close} or `await using`.
 *
 * Throws `ReelayError` with code `store-open-failed` (the folder or file cannot be created or
 * read), `store-foreign` (the file is not a reelay store), `store-corrupt`, `store-too-new`
 * (written by a newer reelay) or `store-busy` (another process holds the write lock too long).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openSqliteStore } from "./sqlite.ts";
 * const dir = await Deno.makeTempDir();
 * {
 *   await using store = await openSqliteStore(`${dir}/state`, { ttlMs: 60_000 });
 *   assert.equal(await store.registry.count(), 0);
 * }
 * assert.equal((await Deno.stat(`${dir}/state/reelay.db`)).mode! & 0o777, 0o600);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function openSqliteStore(
  location: string,
  options: StoreOptions = {},
): Promise<Store> {
  const limits = limitsOf(options);
  const now = options.now ?? Date.now;
  const db = await openDb(location, limits.busyTimeoutMs);
  const mailbox = new SqliteMailbox(db, limits, now);
  const close = () =>
    settled(() => {
      if (db.closed) return;
      mailbox.close();
      try {
        // Keeps the query planner's statistics current; cheap, bounded by SQLite, and optional,
        // so a failure here (a busy or damaged file) must not keep the file open.
        db.exec("PRAGMA optimize");
      } catch {
        // The close below is what matters.
      }
      db.close();
    });
  return {
    mailbox,
    prekeys: new SqlitePrekeys(db, limits, now),
    registry: new SqliteRegistry(db, limits, now),
    close,
    [Symbol.asyncDispose]: close,
  };
}
