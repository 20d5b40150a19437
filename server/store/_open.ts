/**
 * Opens the store's file: an owner-only folder and file, a check that the file is SQLite and
 * ours before anything writes to it, the connection settings, then the migrations.
 *
 * @module
 */

import { DatabaseSync } from "node:sqlite";
import { messageOf } from "../../shared/errors.ts";
import { corruptError, Db, foreignError, mapSqliteError, storeError } from "./_db.ts";
import { APPLICATION_ID, checkOwnership, migrate } from "./_schema.ts";

/** The file name inside the state folder. */
export const STORE_FILE_NAME = "reelay.db";

/** What a store is opened on: a state folder, or `:memory:` for a store that dies with it. */
export type StoreLocation = string;

const MEMORY = ":memory:";
const SQLITE_MAGIC = "SQLite format 3\0";
// The database header is 100 bytes; the application id is a big-endian u32 at offset 68.
const HEADER_BYTES = 100;
const APPLICATION_ID_AT = 68;
const FOLDER_MODE = 0o700;
const FILE_MODE = 0o600;
// After a checkpoint the WAL file is cut back to this, so it cannot stay large.
const WAL_SIZE_LIMIT = 16 * 1024 * 1024;
const canChmod = Deno.build.os !== "windows";

function openFailed(what: string, error: unknown): Error {
  return storeError("store-open-failed", `Cannot use ${what}: ${messageOf(error)}`, error);
}

async function ensureFolder(dir: string): Promise<void> {
  try {
    const info = await Deno.stat(dir);
    if (!info.isDirectory) throw new Error("it is not a folder");
    return;
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw openFailed(`state folder "${dir}"`, error);
  }
  try {
    await Deno.mkdir(dir, { recursive: true, mode: FOLDER_MODE });
    if (canChmod) await Deno.chmod(dir, FOLDER_MODE);
  } catch (error) {
    throw openFailed(`state folder "${dir}"`, error);
  }
}

/** Creates the file owner-only if it is missing, and returns its header (empty when new). */
async function ensureFile(path: string): Promise<Uint8Array> {
  try {
    (await Deno.open(path, { write: true, createNew: true, mode: FILE_MODE })).close();
    if (canChmod) await Deno.chmod(path, FILE_MODE);
    return new Uint8Array();
  } catch (error) {
    if (!(error instanceof Deno.errors.AlreadyExists)) {
      throw openFailed(`state file "${path}"`, error);
    }
  }
  try {
    if (!(await Deno.stat(path)).isFile) throw new Error("it is not a regular file");
    using file = await Deno.open(path, { read: true });
    const head = new Uint8Array(HEADER_BYTES);
    let length = 0;
    while (length < head.length) {
      const read = await file.read(head.subarray(length));
      if (read === null) break;
      length += read;
    }
    return head.subarray(0, length);
  } catch (error) {
    throw openFailed(`state file "${path}"`, error);
  }
}

/**
 * Reads the header SQLite would: refuses what is not SQLite, or carries another program's
 * application id, before SQLite touches it. Returns whether the file is already ours.
 */
function checkHeader(path: string, head: Uint8Array): boolean {
  if (head.length === 0) return false;
  if (new TextDecoder().decode(head.subarray(0, SQLITE_MAGIC.length)) !== SQLITE_MAGIC) {
    throw foreignError(path, "not a SQLite database");
  }
  if (head.length < HEADER_BYTES) return false;
  const applicationId = new DataView(head.buffer, head.byteOffset).getUint32(APPLICATION_ID_AT);
  if (applicationId !== 0 && applicationId !== APPLICATION_ID) {
    throw foreignError(path, "a database of another program");
  }
  return applicationId === APPLICATION_ID;
}

/** Takes group and other access away from the store's files that exist. */
async function tighten(paths: string[]): Promise<void> {
  if (!canChmod) return;
  for (const path of paths) {
    try {
      const { mode } = await Deno.stat(path);
      if (mode !== null && (mode & 0o077) !== 0) await Deno.chmod(path, FILE_MODE);
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw openFailed(`state file "${path}"`, error);
    }
  }
}

/** Settings of every connection; only after {@linkcode checkOwnership}, as WAL alters the file. */
function configure(db: Db, onDisk: boolean): void {
  // WAL: readers never wait for the writer and a commit appends instead of rewriting pages.
  // synchronous=FULL: a commit is on the disk (fsync of the WAL) before `put` returns, so a
  // message the sender was told is queued survives a power cut, not only a crash.
  if (onDisk) {
    const mode = db.get("PRAGMA journal_mode = WAL")?.journal_mode;
    if (mode !== "wal") {
      throw storeError(
        "store-failed",
        `State file "${db.path}" cannot use write-ahead logging (got "${mode}"): put the ` +
          `state folder on a local disk`,
      );
    }
  }
  db.exec("PRAGMA synchronous = FULL");
  // Removed mail is overwritten, so the file keeps no metadata of delivered messages.
  db.exec("PRAGMA secure_delete = ON");
  db.exec("PRAGMA trusted_schema = OFF");
  db.exec(`PRAGMA journal_size_limit = ${WAL_SIZE_LIMIT}`);
}

function connect(path: string, busyTimeoutMs: number): Db {
  let raw: DatabaseSync;
  try {
    raw = new DatabaseSync(path);
  } catch (error) {
    const mapped = mapSqliteError(error, path, busyTimeoutMs);
    throw mapped === error ? openFailed(`state file "${path}"`, error) : mapped;
  }
  const db = new Db(raw, path, busyTimeoutMs);
  try {
    db.exec(`PRAGMA busy_timeout = ${busyTimeoutMs}`);
    return db;
  } catch (error) {
    db.close();
    throw error;
  }
}

/**
 * Opens (creating if needed) the store in `location`, checked and migrated.
 * `busyTimeoutMs` must be a safe integer: it is written into a pragma.
 */
export async function openDb(location: StoreLocation, busyTimeoutMs: number): Promise<Db> {
  const onDisk = location !== MEMORY;
  let path = MEMORY;
  if (onDisk) {
    if (location === "") throw new RangeError("The store location is empty");
    await ensureFolder(location);
    path = `${location.endsWith("/") ? location : `${location}/`}${STORE_FILE_NAME}`;
    // Ours already: owner-only before SQLite opens it, as its -wal and -shm copy its mode.
    if (checkHeader(path, await ensureFile(path))) await tighten([path]);
  }
  const db = connect(path, busyTimeoutMs);
  try {
    checkOwnership(db);
    configure(db, onDisk);
    migrate(db);
    checkIntegrity(db);
    if (onDisk) await tighten([path, `${path}-wal`, `${path}-shm`]);
    return db;
  } catch (error) {
    db.close();
    throw error;
  }
}

/**
 * Reads every page once (`quick_check`), so a damaged file is refused at start rather than
 * failing one request later.
 */
function checkIntegrity(db: Db): void {
  const result = db.get("PRAGMA quick_check(1)")?.quick_check;
  if (result !== "ok") throw corruptError(db.path, String(result));
}
