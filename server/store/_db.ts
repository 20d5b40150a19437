/**
 * One `node:sqlite` connection with cached statements, write transactions, and SQLite's
 * failures turned into `ReelayError`s that name the file and say what to do.
 *
 * @module
 */

import type { DatabaseSync, SQLInputValue, SQLOutputValue, StatementSync } from "node:sqlite";
import { ReelayError } from "../../shared/errors.ts";
import type { StoreFailureCode } from "./mod.ts";

/** A result row. */
export type Row = Record<string, SQLOutputValue>;

// Primary result codes (https://sqlite.org/rescode.html); extended codes keep them in the low byte.
const SQLITE_BUSY = 5;
const SQLITE_LOCKED = 6;
const SQLITE_READONLY = 8;
const SQLITE_IOERR = 10;
const SQLITE_CORRUPT = 11;
const SQLITE_FULL = 13;
const SQLITE_CANTOPEN = 14;
const SQLITE_NOTADB = 26;

/**
 * Runs `body` now and hands its result or its throw over as a promise: the SQLite work is
 * synchronous, and the interfaces are async for the implementations that are not.
 */
export function settled<T>(body: () => T): Promise<T> {
  try {
    return Promise.resolve(body());
  } catch (error) {
    return Promise.reject(error);
  }
}

/** A store failure naming the file: `store-corrupt` and the like. */
export function storeError(
  code: StoreFailureCode,
  message: string,
  cause?: unknown,
): ReelayError {
  return new ReelayError(code, message, { cause });
}

/** The advice for a damaged file, shared by the open checks and the running store. */
export function corruptError(path: string, detail: string, cause?: unknown): ReelayError {
  return storeError(
    "store-corrupt",
    `State file "${path}" is damaged (${detail}). Stop reelay, move "${path}" and any ` +
      `"${path}-wal" and "${path}-shm" beside it out of the way, and start again with an empty ` +
      `store (messages held in it are lost), or try to salvage it with "sqlite3 ${path} .recover"`,
    cause,
  );
}

/** The advice for a file that is not ours: `what` it is instead. */
export function foreignError(path: string, what: string): ReelayError {
  return storeError(
    "store-foreign",
    `State file "${path}" is ${what}, not a reelay store: point reelay at another state ` +
      `folder, or move the file away if it is not needed`,
  );
}

function resultCode(error: Error): number | undefined {
  const code = (error as { errcode?: unknown }).errcode;
  if (typeof code === "number") return code & 0xff;
  // Some failures (a file that is not a database) come without a numeric code.
  if (/file is not a database/.test(error.message)) return SQLITE_NOTADB;
  if (/malformed/.test(error.message)) return SQLITE_CORRUPT;
  if (/database is locked/.test(error.message)) return SQLITE_BUSY;
  return undefined;
}

/**
 * Turns SQLite's failures that are about the file or the machine into store errors; anything
 * else (a constraint, a syntax error) is our bug and is returned unchanged.
 */
export function mapSqliteError(error: unknown, path: string, busyTimeoutMs: number): unknown {
  if (!(error instanceof Error) || (error as { code?: unknown }).code !== "ERR_SQLITE_ERROR") {
    return error;
  }
  switch (resultCode(error)) {
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return corruptError(path, error.message, error);
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return storeError(
        "store-busy",
        `State file "${path}" stayed locked by another process for ${busyTimeoutMs} ms: is ` +
          `another reelay server using the same state folder?`,
        error,
      );
    case SQLITE_FULL:
      return storeError("store-disk-full", `State file "${path}" cannot grow: the disk is full`);
    case SQLITE_READONLY:
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
      return storeError(
        "store-failed",
        `State file "${path}" cannot be used (${error.message}): check the disk and the ` +
          `file's permissions`,
        error,
      );
    default:
      return error;
  }
}

/**
 * A connection to one database. Every call is synchronous (SQLite in this process), so one call
 * never interleaves with another of the same connection.
 */
export class Db {
  /** The file, as shown in errors (or `:memory:`). */
  readonly path: string;
  readonly #busyTimeoutMs: number;
  #db: DatabaseSync | undefined;
  readonly #statements = new Map<string, StatementSync>();
  #inWrite = false;

  /** Wraps an open connection. */
  constructor(db: DatabaseSync, path: string, busyTimeoutMs: number) {
    this.#db = db;
    this.path = path;
    this.#busyTimeoutMs = busyTimeoutMs;
  }

  /** Whether {@linkcode close} has been called. */
  get closed(): boolean {
    return this.#db === undefined;
  }

  /** The first row of a query, if any. */
  get(sql: string, ...params: SQLInputValue[]): Row | undefined {
    return this.#guard(() => this.#statement(sql).get(...params));
  }

  /** Every row of a query, which must bound its rows with `LIMIT`. */
  all(sql: string, ...params: SQLInputValue[]): Row[] {
    return this.#guard(() => this.#statement(sql).all(...params));
  }

  /** Runs a statement and returns how many rows it changed. */
  run(sql: string, ...params: SQLInputValue[]): number {
    return Number(this.#guard(() => this.#statement(sql).run(...params)).changes);
  }

  /** Runs SQL text with no parameters (schema, pragmas with constant values). */
  exec(sql: string): void {
    this.#guard(() => this.#open().exec(sql));
  }

  /**
   * Runs `body` in a write transaction taken at the start (`BEGIN IMMEDIATE`), so that what it
   * reads cannot change under it, even from another process; any throw rolls it all back. With
   * `durable: false` the commit is not synced to the disk at once (`synchronous=NORMAL` for this
   * one): it survives a crash of the process, and a power cut may undo it (the next durable
   * commit, or checkpoint, syncs it too). Only for writes whose loss is harmless.
   */
  write<T>(body: () => T, options: { durable?: boolean } = {}): T {
    if (this.#inWrite) throw new Error("Store write transactions do not nest");
    const level = options.durable === false
      ? this.get("PRAGMA synchronous")?.synchronous
      : undefined;
    this.#inWrite = true;
    try {
      // Inside the try: a BEGIN refused (`store-busy`) must not leave later durable writes unsynced.
      if (level !== undefined) this.exec("PRAGMA synchronous = NORMAL");
      this.exec("BEGIN IMMEDIATE");
      const result = body();
      this.exec("COMMIT");
      return result;
    } catch (error) {
      if (this.#db?.isTransaction) this.#db.exec("ROLLBACK");
      throw error;
    } finally {
      this.#inWrite = false;
      if (level !== undefined) this.exec(`PRAGMA synchronous = ${Number(level)}`);
    }
  }

  /** Closes the connection; later calls throw `store-closed`. */
  close(): void {
    const db = this.#db;
    if (db === undefined) return;
    this.#db = undefined;
    this.#statements.clear();
    db.close();
  }

  #open(): DatabaseSync {
    if (this.#db === undefined) {
      throw storeError("store-closed", `The store in "${this.path}" is closed`);
    }
    return this.#db;
  }

  #statement(sql: string): StatementSync {
    let statement = this.#statements.get(sql);
    if (statement === undefined) {
      statement = this.#open().prepare(sql);
      this.#statements.set(sql, statement);
    }
    return statement;
  }

  #guard<T>(body: () => T): T {
    try {
      return body();
    } catch (error) {
      throw mapSqliteError(error, this.path, this.#busyTimeoutMs);
    }
  }
}
