/**
 * What a client keeps about one server, in one SQLite file
 * `HOME/servers/<server id>/client.db` (folder 0700, file 0600): the keys pinned for people, who
 * is verified, who is ignored, our prekeys' private halves, each conversation's ratchet, the ids
 * of messages already taken (so a redelivery is dropped), the receipts sealed and not yet taken
 * by the server, and the message history, encrypted at rest.
 *
 * - **Pins** live in memory and are written in batches: {@linkcode ClientStore.pin} marks a
 *   name, and every pin marked in the same turn of the event loop goes to disk in one
 *   transaction ({@linkcode ClientStore.flush} waits for it). A name is pinned when the person
 *   interacts with it (sends, receives, verifies), never merely because it was seen online.
 * - **Ignore list**: {@linkcode ClientStore.ignore}, {@linkcode ClientStore.unignore},
 *   {@linkcode ClientStore.isIgnored}, {@linkcode ClientStore.ignored}: names (compared by
 *   `nameKey`), written at once.
 * - **Prekeys and ratchets** are written in a transaction before a message leaves or is
 *   acknowledged (see `shared/crypto/ratchet.ts`); the conversations put the writes of the
 *   messages of one moment in one {@linkcode ClientStore.transaction} (`shared/group_commit.ts`).
 * - **History** (`_history.ts`): each message sent or received, with its time, direction and
 *   delivery status; AES-256-GCM under a random 32-byte key kept in the file wrapped with the
 *   identity's RSA-OAEP key, so the file alone does not show what was said; whoever also holds
 *   `identity.json` does (see `docs/security.md`). At most {@linkcode MAX_HISTORY_PER_PEER}
 *   entries per person and {@linkcode MAX_HISTORY_TOTAL} in all are kept (by default);
 *   {@linkcode ClientStore.keepHistory} turns it off and on, and
 *   {@linkcode ClientStore.clearHistory} deletes it from the file.
 *
 * The journal is SQLite's rollback journal with `secure_delete`, not WAL, so replaced ratchet
 * states do not linger in a side file (see `_db.ts`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Identity } from "../../shared/crypto/mod.ts";
 * import { ClientStore } from "./mod.ts";
 * const home = await Deno.makeTempDir();
 * const me = await Identity.generate();
 * const store = await ClientStore.open({ home, server: "127.0.0.1_9000", identity: me });
 * store.ignore("mallory");
 * assert.ok(store.isIgnored("MALLORY"));
 * await store.addHistory({ peer: "bob", direction: "in", id: "m1", text: "hi", at: 1 });
 * assert.equal((await store.history("bob", 10))[0].text, "hi");
 * store.close();
 * await Deno.remove(home, { recursive: true });
 * ```
 *
 * @module
 */

import type { DatabaseSync, SQLInputValue } from "node:sqlite";
import { posix } from "node:path";
import type { Bytes } from "../../shared/bytes.ts";
import type {
  Identity,
  PublicIdentity,
  StoredPrekeys,
  StoredRatchet,
} from "../../shared/crypto/mod.ts";
import { ReelayError } from "../../shared/errors.ts";
import { nameKey } from "../../shared/names.ts";
import { openClientDb } from "./_db.ts";
import {
  type DeliveryStatus,
  type HistoryEntry,
  MessageHistory,
  type SealedEntry,
} from "./_history.ts";

export type { DeliveryStatus, HistoryEntry, SealedEntry } from "./_history.ts";

/** The file name inside the server's folder. */
export const CLIENT_STORE_FILE = "client.db";
/** History entries kept per person by default; older ones are deleted. */
export const MAX_HISTORY_PER_PEER = 1000;
/** History entries kept in all by default; older ones are deleted. */
export const MAX_HISTORY_TOTAL = 50_000;
/** Message ids remembered per person for dropping redeliveries. */
export const MAX_SEEN_PER_PEER = 4096;

/** Receipts kept until the server takes them; beyond this many, the oldest are dropped. */
export const MAX_RECEIPTS_OWED = 1024;

/** Whether the person compared safety numbers (`verified`) or not yet (`new`). */
export type PinState = "new" | "verified";

/** A key pinned for a name. */
export interface Pin {
  /** The name as first pinned. */
  name: string;
  /** Their public keys. */
  keys: PublicIdentity;
  /** Full fingerprint (64 hex digits) of the keys. */
  fingerprint: string;
  /** `verified` once `/trust` followed `/verify`. */
  state: PinState;
  /** When pinned, in ms since the epoch. */
  pinnedAt: number;
}

/** A conversation's persisted state. */
export interface StoredConversation {
  /** The peer's name. */
  name: string;
  /** The peer's full fingerprint when the conversation started. */
  fingerprint: string;
  /** The ratchet. */
  ratchet: StoredRatchet;
  /** The init an initiator still attaches (until the first reply), else `null`. */
  init: Bytes | null;
}

/**
 * A receipt sealed for `name` (whose keys have `fingerprint`), kept until the server takes it:
 * the envelope as sealed, sent again as it is, under the same message `id`.
 */
export interface OwedReceipt {
  /** Its place in the order they were sealed (set when written). */
  seq: number;
  name: string;
  fingerprint: string;
  id: string;
  envelope: Uint8Array;
}

/** What {@linkcode ClientStore.open} needs. */
export interface ClientStoreOptions {
  /** The client's home folder. */
  home: string;
  /** Which server: letters, digits, `.`, `_`, `-` (an address or a key fingerprint). */
  server: string;
  /** The identity whose RSA-OAEP key wraps the history key. */
  identity: Identity;
  /** History entries kept per person (default {@linkcode MAX_HISTORY_PER_PEER}). */
  maxHistoryPerPeer?: number;
  /** History entries kept in all (default {@linkcode MAX_HISTORY_TOTAL}). */
  maxHistoryTotal?: number;
  /** `false`: no message is kept, whatever `/history on` says (`--no-history`). Default true. */
  keepHistory?: boolean;
}

const PREKEYS = "prekeys";
const UPLOADED = "prekeys-uploaded";
const SERVER_ID = /^[A-Za-z0-9._-]{1,128}$/;

/**
 * A folder name for a server address: `127.0.0.1:9000` becomes `127.0.0.1_9000`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { serverFolderName } from "./mod.ts";
 * assert.equal(serverFolderName("127.0.0.1:9000"), "127.0.0.1_9000");
 * assert.equal(serverFolderName("[::1]:9000"), "___1__9000");
 * ```
 */
export function serverFolderName(address: string): string {
  return address.replace(/[^A-Za-z0-9.-]/g, "_").slice(0, 128);
}

/** One client's store for one server. See the module header. */
export class ClientStore {
  /** Path of the database file. */
  readonly file: string;
  readonly #db: DatabaseSync;
  readonly #pins = new Map<string, Pin>();
  readonly #dirtyPins = new Set<string>();
  readonly #ignored = new Map<string, string>();
  #flushing: Promise<void> | undefined;
  readonly #history: MessageHistory;
  #closed = false;
  /** How many `transaction` calls are under way (more than one: nested, as savepoints). */
  #depth = 0;
  /** Transactions that wrote pins (a test reads it to see that pins are batched). */
  pinWrites = 0;

  private constructor(file: string, db: DatabaseSync, options: ClientStoreOptions) {
    this.file = file;
    this.#db = db;
    this.#history = new MessageHistory({
      db,
      identity: options.identity,
      file,
      meta: {
        get: (key) => this.#metaBytes(key),
        set: (key, value) =>
          value === undefined
            ? this.#run("DELETE FROM meta WHERE key = ?", key)
            : this.#run("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", key, value),
      },
      transaction: (body) => this.transaction(body),
      maxPerPeer: options.maxHistoryPerPeer ?? MAX_HISTORY_PER_PEER,
      maxTotal: options.maxHistoryTotal ?? MAX_HISTORY_TOTAL,
      forcedOff: options.keepHistory === false,
    });
    for (const row of db.prepare("SELECT * FROM pins").all()) {
      const pin: Pin = {
        name: String(row.name),
        keys: JSON.parse(String(row.keys)),
        fingerprint: String(row.fingerprint),
        state: row.state === "verified" ? "verified" : "new",
        pinnedAt: Number(row.pinned_at),
      };
      this.#pins.set(String(row.name_key), pin);
    }
    for (const row of db.prepare("SELECT * FROM ignored").all()) {
      this.#ignored.set(String(row.name_key), String(row.name));
    }
  }

  /** Where the store of `server` lives under `home`. */
  static path(home: string, server: string): string {
    if (!SERVER_ID.test(server) || server === "." || server === "..") {
      throw new RangeError(`Server id "${server}" is not a safe folder name`);
    }
    return posix.join(home, "servers", server, CLIENT_STORE_FILE);
  }

  /**
   * Opens (creating as needed) the store. Throws `client-store-unusable` or
   * `client-store-foreign`.
   */
  static async open(options: ClientStoreOptions): Promise<ClientStore> {
    const file = ClientStore.path(options.home, options.server);
    const db = await openClientDb(posix.dirname(file), file);
    return new ClientStore(file, db, options);
  }

  // ---- pins --------------------------------------------------------------------------------

  /** The key pinned for `name` (any case), if any. */
  pinned(name: string): Pin | undefined {
    const pin = this.#pins.get(nameKey(name));
    return pin && structuredClone(pin);
  }

  /** How many names are pinned. */
  get pinCount(): number {
    return this.#pins.size;
  }

  /**
   * Pins `keys` for `name` (replacing any earlier pin) in state `state`; written with the other
   * pins of this turn in one transaction.
   */
  pin(name: string, keys: PublicIdentity, fingerprint: string, state: PinState = "new"): void {
    const key = nameKey(name);
    this.#pins.set(key, {
      name,
      keys: { encryptionKey: keys.encryptionKey, signingKey: keys.signingKey },
      fingerprint,
      state,
      pinnedAt: Date.now(),
    });
    this.#dirtyPins.add(key);
    this.#flushing ??= Promise.resolve().then(() => this.#flushPins());
  }

  /** Resolves once every pin marked so far is on disk. */
  async flush(): Promise<void> {
    while (this.#flushing) await this.#flushing;
  }

  #flushPins(): void {
    this.#flushing = undefined;
    if (this.#closed || this.#dirtyPins.size === 0) return;
    const keys = [...this.#dirtyPins];
    this.#dirtyPins.clear();
    const upsert = this.#db.prepare(
      "INSERT OR REPLACE INTO pins (name_key, name, fingerprint, keys, state, pinned_at) " +
        "VALUES (?, ?, ?, ?, ?, ?)",
    );
    this.transaction(() => {
      for (const key of keys) {
        const pin = this.#pins.get(key);
        if (!pin) continue;
        upsert.run(
          key,
          pin.name,
          pin.fingerprint,
          JSON.stringify(pin.keys),
          pin.state,
          pin.pinnedAt,
        );
      }
    });
    this.pinWrites++;
  }

  // ---- ignore list -------------------------------------------------------------------------

  /** Ignores `name` (any case): their messages are dropped unread. */
  ignore(name: string): void {
    const key = nameKey(name);
    this.#ignored.set(key, name);
    this.#run("INSERT OR REPLACE INTO ignored (name_key, name) VALUES (?, ?)", key, name);
  }

  /** Stops ignoring `name`; returns whether they were ignored. */
  unignore(name: string): boolean {
    const key = nameKey(name);
    this.#run("DELETE FROM ignored WHERE name_key = ?", key);
    return this.#ignored.delete(key);
  }

  /** Whether `name` (any case) is ignored. */
  isIgnored(name: string): boolean {
    return this.#ignored.has(nameKey(name));
  }

  /** The ignored names, as given. */
  ignored(): string[] {
    return [...this.#ignored.values()];
  }

  // ---- prekeys -----------------------------------------------------------------------------

  /** Our stored prekeys, private halves included, if any. */
  prekeys(): StoredPrekeys | undefined {
    const text = this.#meta(PREKEYS);
    return text === undefined ? undefined : JSON.parse(text);
  }

  /** Saves our prekeys at once (after every change). */
  savePrekeys(prekeys: StoredPrekeys): void {
    this.#setMeta(PREKEYS, JSON.stringify(prekeys));
  }

  /** The highest prekey id this server has been given. */
  get uploadedPrekeyId(): number {
    return Number(this.#meta(UPLOADED) ?? 0);
  }

  /** Records the highest prekey id this server has been given. */
  set uploadedPrekeyId(id: number) {
    this.#setMeta(UPLOADED, String(id));
  }

  // ---- conversations -----------------------------------------------------------------------

  /** The conversation with `name`, if any. */
  conversation(name: string): StoredConversation | undefined {
    const row = this.#db.prepare("SELECT * FROM conversations WHERE name_key = ?").get(
      nameKey(name),
    );
    if (!row) return undefined;
    return {
      name: String(row.name),
      fingerprint: String(row.fingerprint),
      ratchet: JSON.parse(String(row.ratchet)),
      init: row.init instanceof Uint8Array ? new Uint8Array(row.init) : null,
    };
  }

  /**
   * Saves a conversation at once; with `prekeys`, saves those in the same transaction (a
   * responder's first message consumes one-time prekeys).
   */
  saveConversation(conversation: StoredConversation, prekeys?: StoredPrekeys): void {
    this.transaction(() => {
      this.#db.prepare(
        "INSERT OR REPLACE INTO conversations (name_key, name, fingerprint, ratchet, init, " +
          "updated_at) VALUES (?, ?, ?, ?, ?, ?)",
      ).run(
        nameKey(conversation.name),
        conversation.name,
        conversation.fingerprint,
        JSON.stringify(conversation.ratchet),
        conversation.init,
        Date.now(),
      );
      if (prekeys) this.#setMetaNow(PREKEYS, JSON.stringify(prekeys));
    });
  }

  /** Forgets the conversation with `name` (its keys are erased from the file). */
  deleteConversation(name: string): void {
    this.#run("DELETE FROM conversations WHERE name_key = ?", nameKey(name));
  }

  // ---- redeliveries ------------------------------------------------------------------------

  /** Whether message `id` from `name` was already taken. */
  hasSeen(name: string, id: string): boolean {
    return this.#db.prepare("SELECT 1 AS x FROM seen WHERE name_key = ? AND message_id = ?")
      .get(nameKey(name), id) !== undefined;
  }

  /** Remembers that message `id` from `name` was taken (the oldest beyond the bound go). */
  markSeen(name: string, id: string): void {
    const key = nameKey(name);
    this.transaction(() => {
      this.#db.prepare("INSERT OR IGNORE INTO seen (name_key, message_id, at) VALUES (?, ?, ?)")
        .run(key, id, Date.now());
      this.#db.prepare(
        "DELETE FROM seen WHERE name_key = ? AND rowid NOT IN " +
          "(SELECT rowid FROM seen WHERE name_key = ? ORDER BY rowid DESC LIMIT ?)",
      ).run(key, key, MAX_SEEN_PER_PEER);
    });
  }

  // ---- receipts owed ----------------------------------------------------------------------

  /**
   * Keeps a sealed receipt until {@linkcode ClientStore.receiptsTaken}; returns its `seq`. Beyond
   * {@linkcode MAX_RECEIPTS_OWED}, the oldest go (their senders will not see those delivered).
   */
  oweReceipt(receipt: Omit<OwedReceipt, "seq">): number {
    let seq = 0;
    this.transaction(() => {
      const added = this.#db.prepare(
        "INSERT INTO receipts_owed (name, fingerprint, message_id, envelope) VALUES (?, ?, ?, ?)",
      ).run(receipt.name, receipt.fingerprint, receipt.id, receipt.envelope);
      seq = Number(added.lastInsertRowid);
      this.#db.prepare("DELETE FROM receipts_owed WHERE seq <= ?").run(seq - MAX_RECEIPTS_OWED);
    });
    return seq;
  }

  /** The receipts kept and not yet taken, oldest first. */
  receiptsOwed(): OwedReceipt[] {
    return this.#db.prepare("SELECT * FROM receipts_owed ORDER BY seq").all().map((row) => ({
      seq: Number(row.seq),
      name: String(row.name),
      fingerprint: String(row.fingerprint),
      id: String(row.message_id),
      envelope: new Uint8Array(row.envelope as Uint8Array),
    }));
  }

  /** Forgets receipts the server took (or refused for good), by `seq`. */
  receiptsTaken(seqs: readonly number[]): void {
    const remove = this.#db.prepare("DELETE FROM receipts_owed WHERE seq = ?");
    this.transaction(() => {
      for (const seq of seqs) remove.run(seq);
    });
  }

  // ---- history (see `_history.ts`) -------------------------------------------------------

  /** Adds a message to the history, encrypted; nothing when history is off. */
  addHistory(entry: HistoryEntry): Promise<void> {
    return this.#history.add(entry);
  }

  /**
   * Encrypts a message for the history without writing it (`undefined` when history is off), so
   * that {@linkcode ClientStore.insertHistory} can write it in the transaction of its message.
   */
  sealHistory(entry: HistoryEntry): Promise<SealedEntry | undefined> {
    return this.#history.seal(entry);
  }

  /** Writes a row from {@linkcode ClientStore.sealHistory} (the oldest beyond the bounds go). */
  insertHistory(row: SealedEntry): void {
    this.#history.insert(row);
  }

  /**
   * Makes sure the history opens with this store's identity; when it was kept for another one
   * (identity.json replaced), deletes the rows no one here can read and starts a new key, and
   * returns how many went (else `undefined`).
   */
  claimHistory(): Promise<number | undefined> {
    return this.#history.claim();
  }

  /**
   * Records where message `id` to or from `peer` stands (a status never goes back); with
   * `onlyFrom`, only a message that stands at one of those.
   */
  markHistory(
    peer: string,
    id: string,
    status: DeliveryStatus,
    onlyFrom?: readonly DeliveryStatus[],
  ): void {
    this.#history.mark(peer, id, status, onlyFrom);
  }

  /** The last `limit` messages with `peer` (with everyone when `undefined`), oldest first. */
  history(peer: string | undefined, limit: number): Promise<HistoryEntry[]> {
    return this.#history.recent(peer, limit);
  }

  /** Deletes the messages with `peer` (everyone's when `undefined`) from the file; how many. */
  clearHistory(peer?: string): number {
    return this.#history.clear(peer);
  }

  /** Whether new messages are kept. */
  get historyKept(): boolean {
    return this.#history.kept;
  }

  /**
   * Keeps new messages (`true`) or stops (`false`), remembered for this server; `true` throws
   * `history-forced-off` when the store was opened with `keepHistory: false`.
   */
  keepHistory(on: boolean): void {
    this.#history.keep(on);
  }

  /** Writes pending pins and closes the file. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#flushPins();
    this.#closed = true;
    this.#db.close();
  }

  #meta(key: string): string | undefined {
    const row = this.#db.prepare("SELECT value FROM meta WHERE key = ?").get(key);
    if (!row) return undefined;
    return row.value instanceof Uint8Array
      ? new TextDecoder().decode(row.value)
      : String(row.value);
  }

  #metaBytes(key: string): Bytes | undefined {
    const row = this.#db.prepare("SELECT value FROM meta WHERE key = ?").get(key);
    return row?.value instanceof Uint8Array ? new Uint8Array(row.value) : undefined;
  }

  #setMeta(key: string, value: string): void {
    this.transaction(() => this.#setMetaNow(key, value));
  }

  #setMetaNow(key: string, value: string): void {
    this.#db.prepare("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)").run(
      key,
      new TextEncoder().encode(value),
    );
  }

  #run(sql: string, ...values: SQLInputValue[]): void {
    this.transaction(() => this.#db.prepare(sql).run(...values));
  }

  /**
   * Whether a write transaction is open: inside {@linkcode ClientStore.transaction}, unless SQLite
   * undid it itself (an I/O error, a full disk).
   */
  get inTransaction(): boolean {
    return this.#db.isTransaction;
  }

  /**
   * Runs `body` in one write transaction: one commit, one wait for the disk, however many writes
   * it makes. Writes made inside it (directly or by a nested `transaction`) commit together; a
   * nested one that throws undoes only its own writes (a savepoint), so the caller may catch and
   * go on (the history is best effort inside a message's transaction).
   */
  transaction(body: () => void): void {
    if (this.#closed) throw new ReelayError("client-store-closed", "The client store is closed");
    const nested = this.#depth > 0;
    const savepoint = `nested_${this.#depth}`;
    this.#db.exec(nested ? `SAVEPOINT ${savepoint}` : "BEGIN IMMEDIATE");
    this.#depth++;
    try {
      body();
      this.#db.exec(nested ? `RELEASE ${savepoint}` : "COMMIT");
    } catch (error) {
      // SQLite may have rolled the whole transaction back itself (an I/O error, a full disk):
      // then there is no savepoint or transaction left to undo, and the error is the one to tell.
      if (this.#db.isTransaction) {
        this.#db.exec(nested ? `ROLLBACK TO ${savepoint}; RELEASE ${savepoint}` : "ROLLBACK");
      }
      throw error;
    } finally {
      this.#depth--;
    }
  }
}
