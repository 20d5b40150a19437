/**
 * The store's schema and its migrations. `PRAGMA user_version` holds the schema version and
 * `PRAGMA application_id` marks the file as reelay's, so another program's database is refused
 * rather than altered.
 *
 * To change the schema, append a migration (never edit a shipped one): it runs, inside the same
 * transaction as the version bump, on every file written by an older reelay.
 *
 * @module
 */

import { type Db, foreignError, storeError } from "./_db.ts";

/** "REEL" in ASCII: the `application_id` in the header of every reelay store. */
export const APPLICATION_ID = 0x5245454c;

/**
 * Migration `i` takes a file from version `i` to `i + 1`. Counters are kept by triggers so that
 * the bounds are checked in constant time and stay right on every path that deletes.
 */
const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE mail (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    recipient_key TEXT NOT NULL,
    recipient_name TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('sealed', 'notice')),
    sender_key TEXT,
    sender_name TEXT,
    message_id TEXT,
    body BLOB NOT NULL,
    size INTEGER NOT NULL,
    queued_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    end_reason TEXT NOT NULL DEFAULT 'expired'
  ) STRICT;
  CREATE INDEX mail_by_recipient ON mail (recipient_key, id);
  CREATE INDEX mail_by_expiry ON mail (expires_at, id);
  CREATE UNIQUE INDEX mail_once ON mail (recipient_key, sender_key, message_id)
    WHERE kind = 'sealed';

  CREATE TABLE mail_recipient (
    recipient_key TEXT PRIMARY KEY,
    items INTEGER NOT NULL,
    bytes INTEGER NOT NULL
  ) STRICT, WITHOUT ROWID;
  CREATE TABLE mail_total (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    items INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    recipients INTEGER NOT NULL
  ) STRICT;
  INSERT INTO mail_total VALUES (1, 0, 0, 0);

  CREATE TRIGGER mail_added AFTER INSERT ON mail BEGIN
    UPDATE mail_total SET items = items + 1, bytes = bytes + NEW.size,
      recipients = recipients + (NOT EXISTS
        (SELECT 1 FROM mail_recipient WHERE recipient_key = NEW.recipient_key));
    INSERT INTO mail_recipient VALUES (NEW.recipient_key, 1, NEW.size)
      ON CONFLICT (recipient_key) DO UPDATE SET items = items + 1, bytes = bytes + excluded.bytes;
  END;
  CREATE TRIGGER mail_removed AFTER DELETE ON mail BEGIN
    UPDATE mail_recipient SET items = items - 1, bytes = bytes - OLD.size
      WHERE recipient_key = OLD.recipient_key;
    UPDATE mail_total SET items = items - 1, bytes = bytes - OLD.size,
      recipients = recipients - (EXISTS
        (SELECT 1 FROM mail_recipient WHERE recipient_key = OLD.recipient_key AND items = 0));
    DELETE FROM mail_recipient WHERE recipient_key = OLD.recipient_key AND items = 0;
  END;

  CREATE TABLE prekey_signed (
    fingerprint TEXT PRIMARY KEY,
    signed BLOB NOT NULL,
    published_at INTEGER NOT NULL
  ) STRICT, WITHOUT ROWID;
  CREATE TABLE prekey_one_time (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    fingerprint TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('x25519', 'mlkem768')),
    key_id INTEGER NOT NULL,
    key BLOB NOT NULL
  ) STRICT;
  CREATE UNIQUE INDEX prekey_one_time_id ON prekey_one_time (fingerprint, kind, key_id);
  CREATE INDEX prekey_one_time_queue ON prekey_one_time (fingerprint, kind, seq);

  CREATE TABLE registry (
    name_key TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    announcement TEXT NOT NULL,
    last_seen INTEGER NOT NULL
  ) STRICT, WITHOUT ROWID;
  CREATE INDEX registry_by_seen ON registry (last_seen, name_key);
  CREATE INDEX registry_by_fingerprint ON registry (fingerprint);
  CREATE TABLE registry_total (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    people INTEGER NOT NULL
  ) STRICT;
  INSERT INTO registry_total VALUES (1, 0);
  CREATE TRIGGER registry_added AFTER INSERT ON registry BEGIN
    UPDATE registry_total SET people = people + 1;
  END;
  CREATE TRIGGER registry_removed AFTER DELETE ON registry BEGIN
    UPDATE registry_total SET people = people - 1;
  END;
  `,
  // Bytes held per sender, so that one sender cannot fill the whole mailbox (max_bytes_per_sender).
  `
  CREATE TABLE mail_sender (
    sender_key TEXT PRIMARY KEY,
    items INTEGER NOT NULL,
    bytes INTEGER NOT NULL
  ) STRICT, WITHOUT ROWID;
  INSERT INTO mail_sender
    SELECT sender_key, COUNT(*), SUM(size) FROM mail WHERE sender_key IS NOT NULL
      GROUP BY sender_key;
  CREATE TRIGGER mail_sender_added AFTER INSERT ON mail WHEN NEW.sender_key IS NOT NULL BEGIN
    INSERT INTO mail_sender VALUES (NEW.sender_key, 1, NEW.size)
      ON CONFLICT (sender_key) DO UPDATE SET items = items + 1, bytes = bytes + excluded.bytes;
  END;
  CREATE TRIGGER mail_sender_removed AFTER DELETE ON mail WHEN OLD.sender_key IS NOT NULL BEGIN
    UPDATE mail_sender SET items = items - 1, bytes = bytes - OLD.size
      WHERE sender_key = OLD.sender_key;
    DELETE FROM mail_sender WHERE sender_key = OLD.sender_key AND items = 0;
  END;
  `,
];

/** The schema version this reelay writes. */
export const SCHEMA_VERSION: number = MIGRATIONS.length;

function pragmaNumber(db: Db, name: string): number {
  return Number(db.get(`PRAGMA ${name}`)?.[name] ?? 0);
}

/**
 * Refuses a file that is not a reelay store (before anything changes it) or is newer than this
 * reelay. Runs only reads.
 */
export function checkOwnership(db: Db): void {
  const applicationId = pragmaNumber(db, "application_id");
  if (applicationId === APPLICATION_ID) return checkVersion(db);
  const objects = Number(db.get("SELECT COUNT(*) AS n FROM sqlite_schema")?.n ?? 0);
  if (applicationId !== 0 || objects > 0) {
    throw foreignError(db.path, "a database of another program");
  }
}

function checkVersion(db: Db): void {
  const version = pragmaNumber(db, "user_version");
  if (version > SCHEMA_VERSION) {
    throw storeError(
      "store-too-new",
      `State file "${db.path}" was written by a newer reelay (schema ${version}; this one ` +
        `reads up to ${SCHEMA_VERSION}): run the newer reelay, or move the file away to start ` +
        `with an empty store`,
    );
  }
}

/** Brings the file to {@linkcode SCHEMA_VERSION}, all in one transaction. */
export function migrate(db: Db): void {
  db.write(() => {
    // Another process may have migrated between our checks and the write lock.
    checkOwnership(db);
    const from = pragmaNumber(db, "user_version");
    if (from === SCHEMA_VERSION) return;
    for (const migration of MIGRATIONS.slice(from)) db.exec(migration);
    // Pragmas take no parameters; both values are our own integer constants.
    db.exec(`PRAGMA user_version = ${SCHEMA_VERSION}`);
    db.exec(`PRAGMA application_id = ${APPLICATION_ID}`);
  });
}
