/**
 * The server's durable store: the {@linkcode Mailbox} that holds sealed messages for people who
 * are offline, the {@linkcode PrekeyDirectory} of published prekeys, and the {@linkcode Registry}
 * of people this server knows. Every operation is async so that a cluster implementation (NATS
 * JetStream and KV) can stand behind the same interfaces. This module is the contract and holds
 * no implementation: `openSqliteStore` in `./sqlite.ts` is the single-binary one, one SQLite
 * file through `node:sqlite` (see `docs/storage.md`).
 *
 * Errors a remote person can cause are `ReelayError`s with a stable code (listed on
 * each method). Misuse by the server's own code (a malformed fingerprint, an oversized notice)
 * throws a `TypeError` or `RangeError`: that is a bug, and keeps its stack.
 *
 * @example Holding a message, delivering it, removing it
 * ```ts
 * import assert from "node:assert/strict";
 * import { openSqliteStore } from "./sqlite.ts";
 * await using store = await openSqliteStore(":memory:");
 * const bob = "b0".repeat(32); // key fingerprints are lowercase hex
 * const { id } = await store.mailbox.put({
 *   kind: "sealed",
 *   recipientKey: bob,
 *   recipientName: "bob",
 *   senderKey: "a1".repeat(32),
 *   senderName: "alice",
 *   messageId: "m1",
 *   envelope: new Uint8Array([1, 2, 3]),
 * });
 * const [item] = await store.mailbox.pending(bob, 10);
 * assert.equal(item.id, id);
 * assert.equal(await store.mailbox.remove(bob, [id]), 1);
 * ```
 *
 * @module
 */

import type { Bytes } from "../../shared/bytes.ts";

export type { Bytes };

/** A JSON value as `JSON.parse` returns it. */
export type JsonValue =
  | null
  | boolean
  | number
  | string
  | JsonValue[]
  | { [key: string]: JsonValue };

/**
 * A mail item's id: opaque, unique for the life of the store (never reused, even after the
 * item is removed), so a client can use it to drop a duplicate delivery. Compare for equality
 * only; the store alone knows the order.
 */
export type MailId = string;

/** A sealed envelope from one person to another, as the sender's client made it. */
export interface NewSealedMail {
  /** Tells a sealed message from a notice. */
  kind: "sealed";
  /** The recipient's key fingerprint (lowercase hex, optionally grouped with ":"). */
  recipientKey: string;
  /** The recipient's name as the server shows it. */
  recipientName: string;
  /** The sender's key fingerprint, so that the sender can be told what became of it. */
  senderKey: string;
  /** The sender's name as the server shows it. */
  senderName: string;
  /**
   * The sender's id for this message: 1 to {@linkcode MAX_MESSAGE_ID_LENGTH} printable ASCII
   * characters. A second put with the same sender, recipient and id is not stored twice.
   */
  messageId: string;
  /** Opaque sealed bytes; the store never looks inside. */
  envelope: Bytes;
}

/** A note from the server to a person (say, "your message m1 to bob expired"). */
export interface NewNotice {
  /** Tells a notice from a sealed message. */
  kind: "notice";
  /** The key fingerprint of the person the notice is for. */
  recipientKey: string;
  /** Their name as the server shows it. */
  recipientName: string;
  /**
   * The key fingerprint of the person whose act the notice passes on (a refusal's refuser): it
   * counts against their share of the mailbox like their own messages. None for the server's own
   * notices (an expiry).
   */
  senderKey?: string;
  /** At most {@linkcode MAX_NOTICE_BYTES} bytes once written as JSON. */
  notice: JsonValue;
}

/** What {@linkcode Mailbox.put} accepts. */
export type NewMail = NewSealedMail | NewNotice;

/** Times and identity every held item has. */
export interface MailStamp {
  /** The item's id, unique for the life of the store. */
  id: MailId;
  /** When it was put, in milliseconds since the epoch (the store's clock). */
  queuedAt: number;
  /** When it expires (or ended, for an item the registry ended). */
  expiresAt: number;
  /** What it counts against the byte bounds: the envelope, or the notice as JSON. */
  bytes: number;
}

/** A held item, as {@linkcode Mailbox.pending} returns it. */
export type MailItem = (NewSealedMail | NewNotice) & MailStamp;

/** Why an item left the mailbox without being delivered. */
export type MailEndReason =
  /** It waited longer than the mailbox's time to live. */
  | "expired"
  /** The registry dropped its recipient (unseen too long, or forgotten). */
  | "recipient-forgotten"
  /** Its recipient came back with another key, so it can no longer be opened. */
  | "recipient-key-changed";

/** Who an item is from and for: everything but its payload and its stamp. */
export type MailParties = Omit<NewSealedMail, "envelope"> | Omit<NewNotice, "notice">;

/** An item that left undelivered: everything but the payload, so the sender can be told. */
export type EndedMail = MailParties & MailStamp & { reason: MailEndReason };

/** Where {@linkcode Mailbox.put} stored an item. */
export interface PutResult {
  /** The item's id (the earlier item's, for a duplicate). */
  id: MailId;
  /** When it expires unless delivered first. */
  expiresAt: number;
  /** True when the same sender had already queued this message id for this recipient. */
  duplicate: boolean;
}

/** What one recipient, or the whole mailbox, holds. */
export interface MailCount {
  /** Items held. */
  items: number;
  /** Their bytes (envelopes and notices). */
  bytes: number;
}

/** The mailbox in figures, for metrics. */
export interface MailboxStats extends MailCount {
  /** People with at least one held item. */
  recipients: number;
}

/** How {@linkcode Mailbox.put} holds an item. */
export interface PutOptions {
  /**
   * False: the item survives a crash or restart of the server at once, and a power cut only
   * once the next durable write or checkpoint synced it (SQLite: `synchronous=NORMAL` for this
   * commit). For an item on its way to a connection that is open now. Default true: on the disk
   * before `put` resolves. A store that is always durable (JetStream) ignores it.
   */
  durable?: boolean;
  /**
   * The registry's name key of a sealed item's recipient, whose key the caller checked against
   * the one the item was sealed for: if, when the item is written, the registry holds that name
   * with another key (it changed while the put waited for its commit, after which nothing would
   * end it but its time to live), the put is refused with `recipient-key-changed`. A name the
   * registry does not hold refuses nothing, unless {@linkcode PutOptions.recipientOffline}. A
   * store whose puts are not staged (JetStream) ignores it.
   */
  recipientNameKey?: string;
  /**
   * With `recipientNameKey`: the recipient is offline, so a name the registry dropped before the
   * commit (evicted or unseen too long, which ended what was held for them) refuses the put with
   * `unknown-recipient`, as a send after the drop is answered, instead of holding it for nobody
   * until its time to live. (An online recipient's connection takes it whatever the registry
   * says.)
   */
  recipientOffline?: boolean;
}

/** Paging for {@linkcode Mailbox.pending}. */
export interface PendingOptions {
  /** Start after this item (the last id of the previous page). */
  after?: MailId;
  /**
   * Stop before the page's payload bytes would pass this; the first item is always returned,
   * so a large item cannot block the queue.
   */
  maxBytes?: number;
}

/**
 * Offline delivery: items held for a recipient until their connection takes them. Delivery is
 * at least once (the server removes an item only after the recipient's connection took it),
 * and the order per recipient is strict.
 */
export interface Mailbox {
  /**
   * Holds an item, checking the bounds in the same transaction as the insert.
   *
   * Throws `ReelayError` with code `recipient-mailbox-full` (the recipient's items or bytes
   * would pass their bound; the message says which), `sender-mailbox-full` (the bytes of the
   * sender's held messages would), `mailbox-full` (the total bytes would),
   * `recipient-key-changed` (see {@linkcode PutOptions.recipientNameKey}) or `bad-message-id`.
   */
  put(item: NewMail, options?: PutOptions): Promise<PutResult>;
  /** Up to `limit` (at most {@linkcode MAX_PAGE}) unexpired items for a recipient, oldest first. */
  pending(recipientKey: string, limit: number, options?: PendingOptions): Promise<MailItem[]>;
  /**
   * Deletes delivered items (at most {@linkcode MAX_PAGE} ids); ids that are not the
   * recipient's, or are gone already, are skipped. Returns how many were removed.
   */
  remove(recipientKey: string, ids: readonly MailId[]): Promise<number>;
  /**
   * Deletes up to `limit` items whose time is up at `now` (expired, or ended by the registry)
   * and returns them, oldest expiry first; call again while it returns `limit` items. The
   * server sweeps regularly: an expired item is no longer pending, but it counts against the
   * bounds until it is swept.
   */
  expire(now: number, limit?: number): Promise<EndedMail[]>;
  /** What one recipient holds. */
  count(recipientKey: string): Promise<MailCount>;
  /** What the whole mailbox holds. */
  stats(): Promise<MailboxStats>;
}

/** The two kinds of one-time prekeys. */
export type OneTimeKind = "x25519" | "mlkem768";

/** Every {@linkcode OneTimeKind}, in a fixed order. */
export const ONE_TIME_KINDS: readonly OneTimeKind[] = Object.freeze(["x25519", "mlkem768"]);

/** One one-time prekey: the owner's numeric id for it and its opaque public part. */
export interface OneTimeKey {
  /** An unsigned 32-bit integer chosen by the owner, unique per identity and kind. */
  id: number;
  /** The public key and whatever the owner signed with it; opaque to the store. */
  key: Bytes;
}

/** What a sender gets to start a conversation with someone. */
export interface PrekeyBundle {
  /** The owner's signed prekeys, as last published. */
  signed: Bytes;
  /** At most one one-time key of each kind; absent when the owner has run out. */
  oneTime: Partial<Record<OneTimeKind, OneTimeKey>>;
}

/**
 * Published prekeys per identity fingerprint. Only identities in the {@linkcode Registry} may
 * publish; their prekeys go when the registry drops them.
 */
export interface PrekeyDirectory {
  /**
   * Replaces the identity's signed prekeys as a whole. Throws `prekey-too-large` (over
   * {@linkcode MAX_SIGNED_PREKEY_BYTES}) or `not-registered`.
   */
  publish(fingerprint: string, signed: Bytes): Promise<void>;
  /**
   * Adds one-time keys of one kind, all or none, and returns how many of that kind are held.
   * Throws `prekeys-full` (the kind's bound would be passed), `duplicate-prekey-id`,
   * `bad-prekey-id`, `prekey-too-large` (a key over {@linkcode MAX_ONE_TIME_KEY_BYTES}) or
   * `not-registered`.
   */
  addOneTime(fingerprint: string, kind: OneTimeKind, keys: readonly OneTimeKey[]): Promise<number>;
  /**
   * The signed prekeys plus the oldest one-time key of each kind, each taken key deleted in the
   * same transaction: no key is ever handed out twice. `undefined` (and nothing taken) when the
   * identity has published no signed prekeys.
   */
  takeBundle(fingerprint: string): Promise<PrekeyBundle | undefined>;
  /** How many one-time keys of each kind are left, so the server can ask for more. */
  oneTimeCount(fingerprint: string): Promise<Record<OneTimeKind, number>>;
}

/** What the registry knows of a person, without the announcement. */
export interface RegistrySummary {
  /** The caller's comparison key for the name (the store defines no name rules). */
  nameKey: string;
  /** The name as the person chose it. */
  name: string;
  /** Their key fingerprint (lowercase hex, optionally grouped with ":"). */
  fingerprint: string;
  /** When they were last seen, in milliseconds since the epoch. */
  lastSeen: number;
}

/** A registry entry in full. */
export interface RegistryEntry extends RegistrySummary {
  /** The person's latest signed announcement, as given (at most {@linkcode MAX_ANNOUNCEMENT_BYTES}). */
  announcement: JsonValue;
}

/** What {@linkcode Registry.remember} accepts. */
export type NewRegistryEntry = Omit<RegistryEntry, "lastSeen"> & {
  /** When they were seen (ms since the epoch); default the store's clock. Never moves it back. */
  seenAt?: number;
};

/** What {@linkcode Registry.remember} changed besides the entry itself. */
export interface RememberResult {
  /** The fingerprint the name had before, when it changed. */
  previousFingerprint?: string;
  /** People dropped to stay within `maxRegistered` (oldest seen first). */
  evicted: RegistrySummary[];
}

/**
 * People known to this server, so that a message can be held for someone offline. Dropping a
 * person (forget, expiry, eviction) deletes their prekeys and ends their held mail, which the
 * next {@linkcode Mailbox.expire} returns with reason `recipient-forgotten` so its senders can
 * be told; a person whose fingerprint changes has their old prekeys deleted and the mail held
 * for the old key ended with `recipient-key-changed`.
 */
export interface Registry {
  /**
   * Records a person as seen now, with their latest announcement. Throws
   * `announcement-too-large`.
   */
  remember(entry: NewRegistryEntry): Promise<RememberResult>;
  /** The entry for a name key, if any. */
  lookup(nameKey: string): Promise<RegistryEntry | undefined>;
  /** Drops a person; returns whether they were known. */
  forget(nameKey: string): Promise<boolean>;
  /**
   * Drops up to `limit` people unseen for `registryTtlMs` at `now`, oldest first (their mail
   * ends at the store's clock); call again while it returns `limit` people.
   */
  expire(now: number, limit?: number): Promise<RegistrySummary[]>;
  /** How many people are known. */
  count(): Promise<number>;
}

/** The whole store: three parts over one database, closed together. */
export interface Store extends AsyncDisposable {
  /** Mail held for people who are offline. */
  readonly mailbox: Mailbox;
  /** Published prekeys. */
  readonly prekeys: PrekeyDirectory;
  /** People known to this server. */
  readonly registry: Registry;
  /** Closes the database; later calls throw `store-closed`. Closing twice is harmless. */
  close(): Promise<void>;
}

/** Bounds and clock. Every bound is enforced atomically with the write it limits. */
export interface StoreOptions {
  /** Items held for one recipient (`[mailbox] max_items_per_recipient`). */
  maxItemsPerRecipient?: number;
  /** Bytes held for one recipient (`[mailbox] max_bytes_per_recipient`). */
  maxBytesPerRecipient?: number;
  /** Bytes held for everyone together (`[mailbox] max_total_bytes`). */
  maxTotalBytes?: number;
  /** Bytes of one sender's messages held (`[mailbox] max_bytes_per_sender`), by sender key. */
  maxBytesPerSender?: number;
  /** How long an item is held before it expires (`[mailbox] ttl_ms`). */
  ttlMs?: number;
  /** One-time prekeys held per identity and kind (`[registry] max_one_time_prekeys`). */
  maxOneTimePerKind?: number;
  /** How long an unseen person is remembered (`[registry] ttl_ms`). */
  registryTtlMs?: number;
  /** People remembered at most; the oldest seen is dropped first (`[registry] max_registered`). */
  maxRegistered?: number;
  /** How long an operation waits for another process's write lock before `store-busy`. */
  busyTimeoutMs?: number;
  /** The clock, in milliseconds since the epoch (tests inject one). */
  now?: () => number;
}

/** The bounds with every default filled in. */
export type StoreLimits = Required<Omit<StoreOptions, "now">>;

const DAY_MS = 24 * 60 * 60 * 1000;
const MIB = 1024 * 1024;

/** The documented defaults (see `docs/storage.md`). */
export const DEFAULT_STORE_LIMITS: Readonly<StoreLimits> = Object.freeze({
  maxItemsPerRecipient: 1000,
  maxBytesPerRecipient: 16 * MIB,
  maxTotalBytes: 512 * MIB,
  maxBytesPerSender: 32 * MIB,
  ttlMs: 7 * DAY_MS,
  maxOneTimePerKind: 200,
  registryTtlMs: 90 * DAY_MS,
  maxRegistered: 100_000,
  busyTimeoutMs: 5000,
});

/** The most items (or ids) one call reads or deletes. */
export const MAX_PAGE = 1000;
/** The longest sender-chosen message id. */
export const MAX_MESSAGE_ID_LENGTH = 64;
/** The largest server notice, as JSON. */
export const MAX_NOTICE_BYTES = 4096;
/** The largest signed prekey blob. */
export const MAX_SIGNED_PREKEY_BYTES = 16 * 1024;
/** The largest one-time prekey blob. */
export const MAX_ONE_TIME_KEY_BYTES = 4096;
/** The largest announcement, as JSON. */
export const MAX_ANNOUNCEMENT_BYTES = 16 * 1024;

/**
 * Codes of the `ReelayError`s the store throws about itself rather than about one request: the
 * file cannot be used, the disk is full, another process holds the lock too long, or the store
 * was closed.
 */
export type StoreFailureCode =
  | "store-open-failed"
  | "store-foreign"
  | "store-corrupt"
  | "store-too-new"
  | "store-busy"
  | "store-disk-full"
  | "store-failed"
  | "store-closed";
