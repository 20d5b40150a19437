/**
 * The client store's SQLite file: an owner-only folder and file, settings chosen so that erased
 * keys leave the file (rollback journal, not WAL, and `secure_delete`), and the schema.
 *
 * Why not WAL: a WAL file keeps old copies of changed pages until a checkpoint, so a thief who
 * copies `client.db-wal` could find a ratchet state from before it moved forward. With the
 * rollback journal (`journal_mode=DELETE`) the journal is deleted at every commit, and with
 * `secure_delete=ON` SQLite overwrites freed content in the main file with zeros.
 *
 * @module
 */

import { DatabaseSync } from "node:sqlite";
import { messageOf, ReelayError } from "../../shared/errors.ts";

const FOLDER_MODE = 0o700;
const FILE_MODE = 0o600;
const APPLICATION_ID = 0x52454543; // "REEC"
const SCHEMA_VERSION = 4;
const canChmod = Deno.build.os !== "windows";

const SCHEMA = `
CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL) STRICT;
CREATE TABLE pins (
  name_key TEXT PRIMARY KEY, name TEXT NOT NULL, fingerprint TEXT NOT NULL,
  keys TEXT NOT NULL, state TEXT NOT NULL, pinned_at INTEGER NOT NULL) STRICT;
CREATE TABLE ignored (name_key TEXT PRIMARY KEY, name TEXT NOT NULL) STRICT;
CREATE TABLE conversations (
  name_key TEXT PRIMARY KEY, name TEXT NOT NULL, fingerprint TEXT NOT NULL,
  ratchet TEXT NOT NULL, init BLOB, updated_at INTEGER NOT NULL) STRICT;
CREATE TABLE seen (
  name_key TEXT NOT NULL, message_id TEXT NOT NULL, at INTEGER NOT NULL,
  PRIMARY KEY (name_key, message_id)) STRICT;
CREATE TABLE history (
  id INTEGER PRIMARY KEY AUTOINCREMENT, name_key TEXT NOT NULL, at INTEGER NOT NULL,
  nonce BLOB NOT NULL, data BLOB NOT NULL) STRICT;
CREATE INDEX history_by_peer ON history (name_key, id);
`;

/**
 * From version 1 to 2: each history row gets its message id and delivery status outside the
 * ciphertext, so a receipt can mark it delivered without decrypting and encrypting it again.
 * A migration that landed is never edited: files at its version exist.
 */
const TO_VERSION_2 = `
ALTER TABLE history ADD COLUMN message_id TEXT;
ALTER TABLE history ADD COLUMN status TEXT;
CREATE INDEX history_by_message ON history (name_key, message_id);
`;

/**
 * From version 2 to 3: triggers keep the number of history rows, so the bound in all is checked
 * without counting them. `IF NOT EXISTS` because for a while version 2 itself made the table, so
 * a version 2 file may already have it (its count is recomputed, which is right either way).
 */
const TO_VERSION_3 = `
CREATE TABLE IF NOT EXISTS history_total (rows INTEGER NOT NULL) STRICT;
DELETE FROM history_total;
INSERT INTO history_total SELECT count(*) FROM history;
CREATE TRIGGER IF NOT EXISTS history_added AFTER INSERT ON history
  BEGIN UPDATE history_total SET rows = rows + 1; END;
CREATE TRIGGER IF NOT EXISTS history_deleted AFTER DELETE ON history
  BEGIN UPDATE history_total SET rows = rows - 1; END;
`;

/**
 * From version 3 to 4: receipts sealed and not yet taken by the server, kept so that one owed
 * when a connection or the session ends leaves on the next one (the same bytes, so its sender
 * takes it once).
 */
const TO_VERSION_4 = `
CREATE TABLE IF NOT EXISTS receipts_owed (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, fingerprint TEXT NOT NULL,
  message_id TEXT NOT NULL, envelope BLOB NOT NULL) STRICT;
`;

/** What brings a file at each older version up to {@linkcode SCHEMA_VERSION}. */
const UPGRADES: Record<number, string> = {
  1: TO_VERSION_2 + TO_VERSION_3 + TO_VERSION_4,
  2: TO_VERSION_3 + TO_VERSION_4,
  3: TO_VERSION_4,
};

function unusable(path: string, error: unknown): ReelayError {
  return new ReelayError(
    "client-store-unusable",
    `Cannot use the client store "${path}": ${messageOf(error)}`,
    { cause: error },
  );
}

async function ensureFolder(dir: string): Promise<void> {
  try {
    await Deno.mkdir(dir, { recursive: true, mode: FOLDER_MODE });
    if (canChmod) await Deno.chmod(dir, FOLDER_MODE);
  } catch (error) {
    throw unusable(dir, error);
  }
}

async function ensureFile(path: string): Promise<void> {
  try {
    (await Deno.open(path, { write: true, createNew: true, mode: FILE_MODE })).close();
  } catch (error) {
    if (!(error instanceof Deno.errors.AlreadyExists)) throw unusable(path, error);
  }
  if (canChmod) await Deno.chmod(path, FILE_MODE);
}

/** Runs `sql` and the header change in one transaction, ending at {@linkcode SCHEMA_VERSION}. */
function migrate(db: DatabaseSync, sql: string, header: string): void {
  db.exec("BEGIN IMMEDIATE");
  try {
    db.exec(sql);
    db.exec(`${header} PRAGMA user_version = ${SCHEMA_VERSION}`);
    db.exec("COMMIT");
  } catch (error) {
    db.exec("ROLLBACK");
    throw error;
  }
}

/**
 * Opens (creating as needed) the database at `path` inside `dir`, both owner-only.
 * Throws `client-store-unusable` or `client-store-foreign`.
 */
export async function openClientDb(dir: string, path: string): Promise<DatabaseSync> {
  await ensureFolder(dir);
  await ensureFile(path);
  let db: DatabaseSync;
  try {
    db = new DatabaseSync(path);
  } catch (error) {
    throw unusable(path, error);
  }
  try {
    db.exec(
      "PRAGMA journal_mode = DELETE; PRAGMA secure_delete = ON; PRAGMA synchronous = FULL; " +
        "PRAGMA busy_timeout = 5000;",
    );
    const appId = Number(
      (db.prepare("PRAGMA application_id").get() as { application_id: number }).application_id,
    );
    const version = Number(
      (db.prepare("PRAGMA user_version").get() as { user_version: number }).user_version,
    );
    if (appId === 0 && version === 0) {
      migrate(db, SCHEMA + UPGRADES[1], `PRAGMA application_id = ${APPLICATION_ID};`);
    } else if (appId === APPLICATION_ID && UPGRADES[version] !== undefined) {
      migrate(db, UPGRADES[version], "");
    } else if (appId !== APPLICATION_ID || version !== SCHEMA_VERSION) {
      throw new ReelayError(
        "client-store-foreign",
        `"${path}" is not a reelay client store of version ${SCHEMA_VERSION}: move it away`,
      );
    }
    return db;
  } catch (error) {
    db.close();
    if (error instanceof ReelayError) throw error;
    throw unusable(path, error);
  }
}
