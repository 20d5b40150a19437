/**
 * End-to-end encrypted one-to-one messages. A sender's {@linkcode Outbox} sets up one session
 * per recipient connection (a random AES-256 key, RSA-OAEP-wrapped to the recipient and RSA-PSS
 * signed by the sender) and then seals every message with AES-256-GCM only. The recipient's
 * {@linkcode Inbox} checks names, epochs, signature, session order and counter before it
 * accepts a message.
 *
 * The Outbox attaches the session's signed init to every envelope of the session, so a first
 * message lost or spoiled on the way does not cut the session off: any later message sets it
 * up. The Inbox spends RSA only on an init it has not accepted yet; for the live session it
 * just checks that the attached init is byte for byte the one it accepted.
 *
 * Wire form (integers big-endian, see `docs/security.md`):
 *
 * ```text
 * u8 version = 1 | u8 flags (bit 0: init present, other bits 0)
 * u16 len + sender name (ASCII, 1-32) | u16 len + recipient name (ASCII, 1-32)
 * 16 session id | u64 counter (a counter of 0 requires the init)
 * [init: 16 sender epoch | 16 recipient epoch | u64 session sequence
 *        | u16 len + wrapped key (256-512) | u16 len + signature (256-512)]
 * u32 len + AES-GCM ciphertext with its 16-byte tag
 * ```
 *
 * @module
 */

import { SerialQueue } from "../async.ts";
import { messageOf, ReelayError } from "../errors.ts";
import { MAX_NAME_LENGTH } from "../names.ts";
import {
  ByteReader,
  type Bytes,
  concat,
  constantTimeEqual,
  encodeFields,
  fromUtf8,
  randomBytes,
  toHex,
  u64,
  utf8,
} from "../bytes.ts";
import {
  checkName,
  EPOCH_BYTES,
  epochBytes,
  fingerprintBytes,
  type Identity,
  importEncryptionKey,
  importVerifyKey,
  type PublicIdentity,
  verifyPss,
} from "./identity.ts";

/** Version byte of the envelope format. */
export const ENVELOPE_VERSION = 1;
/** Longest message text, in UTF-8 bytes. */
export const MAX_TEXT_BYTES = 16 * 1024;
/**
 * Longest plaintext (the JSON of text and send time): room for every quote or backslash to be
 * escaped. Texts whose escaped form is longer (many control characters) are `message-too-long`.
 */
export const MAX_PLAINTEXT_BYTES = 2 * MAX_TEXT_BYTES + 64;

const ID_BYTES = 16;
const KEY_BYTES = 32;
const TAG_BYTES = 16;
const MIN_RSA_BYTES = 256;
const MAX_RSA_BYTES = 512;
const INIT_FLAG = 1;
const MAX_CIPHERTEXT_BYTES = MAX_PLAINTEXT_BYTES + TAG_BYTES;
const INIT_MAX_BYTES = 2 * EPOCH_BYTES + 8 + 2 * (2 + MAX_RSA_BYTES);

/** Largest possible envelope in bytes; anything longer is rejected unparsed. */
export const MAX_ENVELOPE_BYTES = 2 + 2 * (2 + MAX_NAME_LENGTH) + ID_BYTES + 8 + INIT_MAX_BYTES +
  4 + MAX_CIPHERTEXT_BYTES;

/** A sealed message ready to relay. */
export interface SealedMessage {
  /** The envelope in its wire form. */
  bytes: Bytes;
  /** `<session id hex>:<counter>`, the same id the recipient's {@linkcode Inbox} reports. */
  id: string;
}

/** A message that passed every check. */
export interface OpenedMessage {
  /** The sender's name (as pinned by the caller and confirmed by the envelope). */
  from: string;
  /** The message text. */
  text: string;
  /** The sender's clock when sealing, in ms since 1970 (for latency measurement). */
  sentAt: number;
  /** `<session id hex>:<counter>`, equal to {@linkcode SealedMessage.id}. */
  id: string;
  /** How many earlier messages of this session never arrived (dropped on the way). */
  missing: number;
}

interface SessionInit {
  senderEpoch: Bytes;
  recipientEpoch: Bytes;
  sequence: number;
  wrappedKey: Bytes;
  signature: Bytes;
}

interface Envelope {
  sender: string;
  recipient: string;
  sessionId: Bytes;
  counter: number;
  init?: SessionInit;
  ciphertext: Bytes;
}

function fail(code: string, message: string, cause?: unknown): ReelayError {
  return new ReelayError(code, message, { cause });
}

function prefixed16(bytes: Uint8Array): Bytes {
  const out = new Uint8Array(2 + bytes.length);
  new DataView(out.buffer).setUint16(0, bytes.length);
  out.set(bytes, 2);
  return out;
}

function prefixed32(bytes: Uint8Array): Bytes {
  const out = new Uint8Array(4 + bytes.length);
  new DataView(out.buffer).setUint32(0, bytes.length);
  out.set(bytes, 4);
  return out;
}

function encodeInit(init: SessionInit): Bytes[] {
  return [
    init.senderEpoch,
    init.recipientEpoch,
    u64(init.sequence),
    prefixed16(init.wrappedKey),
    prefixed16(init.signature),
  ];
}

function encodeEnvelope(envelope: Envelope): Bytes {
  const { init } = envelope;
  return concat([
    new Uint8Array([ENVELOPE_VERSION, init ? INIT_FLAG : 0]),
    prefixed16(utf8(envelope.sender)),
    prefixed16(utf8(envelope.recipient)),
    envelope.sessionId,
    u64(envelope.counter),
    ...(init ? encodeInit(init) : []),
    prefixed32(envelope.ciphertext),
  ]);
}

function readName(reader: ByteReader): string {
  const name = fromUtf8(reader.prefixed16(1, MAX_NAME_LENGTH));
  if (name === undefined) throw new RangeError("Name is not valid UTF-8");
  return name;
}

function readInit(reader: ByteReader): SessionInit {
  return {
    senderEpoch: reader.fixed(EPOCH_BYTES),
    recipientEpoch: reader.fixed(EPOCH_BYTES),
    sequence: reader.u64(),
    wrappedKey: reader.prefixed16(MIN_RSA_BYTES, MAX_RSA_BYTES),
    signature: reader.prefixed16(MIN_RSA_BYTES, MAX_RSA_BYTES),
  };
}

function readEnvelope(reader: ByteReader): Envelope {
  if (reader.u8() !== ENVELOPE_VERSION) throw new RangeError("Unknown envelope version");
  const flags = reader.u8();
  if (flags !== 0 && flags !== INIT_FLAG) throw new RangeError("Unknown envelope flags");
  const sender = readName(reader);
  const recipient = readName(reader);
  const sessionId = reader.fixed(ID_BYTES);
  const counter = reader.u64();
  if (counter === 0 && flags !== INIT_FLAG) {
    throw new RangeError("The first message of a session must carry its init");
  }
  const init = flags === INIT_FLAG ? readInit(reader) : undefined;
  const ciphertext = reader.prefixed32(TAG_BYTES, MAX_CIPHERTEXT_BYTES);
  reader.end();
  return { sender, recipient, sessionId, counter, init, ciphertext };
}

/**
 * Parses an envelope strictly; any malformation (wrong version or flags, a length out of
 * bounds, bad UTF-8, trailing bytes) throws `bad-envelope`.
 */
function parseEnvelope(bytes: Uint8Array): Envelope {
  if (bytes.length > MAX_ENVELOPE_BYTES) {
    throw fail(
      "bad-envelope",
      `Envelope of ${bytes.length} bytes exceeds the limit of ${MAX_ENVELOPE_BYTES} bytes`,
    );
  }
  try {
    return readEnvelope(new ByteReader(bytes));
  } catch (error) {
    throw fail("bad-envelope", `Envelope is malformed: ${messageOf(error)}`, error);
  }
}

/** What the sender signs to set up a session (see `docs/security.md`). */
function sessionData(
  envelope: Pick<Envelope, "sender" | "recipient" | "sessionId">,
  fingerprints: { sender: Bytes; recipient: Bytes },
  init: Omit<SessionInit, "signature">,
): Bytes {
  return encodeFields([
    "reelay-session-v1",
    envelope.sender,
    envelope.recipient,
    fingerprints.sender,
    fingerprints.recipient,
    init.senderEpoch,
    init.recipientEpoch,
    u64(init.sequence),
    envelope.sessionId,
    init.wrappedKey,
  ]);
}

/** Associated data of one message: binds both names, the session and the counter. */
function messageAad(envelope: Omit<Envelope, "ciphertext">): Bytes {
  return encodeFields([
    "reelay-msg-v1",
    envelope.sender,
    envelope.recipient,
    envelope.sessionId,
    u64(envelope.counter),
  ]);
}

/** AES-GCM IV: 4 zero bytes then the 8-byte counter; unique because every key is fresh. */
function messageIv(counter: number): Bytes {
  return concat([new Uint8Array(4), u64(counter)]);
}

function messageId(sessionId: Uint8Array, counter: number): string {
  return `${toHex(sessionId)}:${counter}`;
}

function sameKeys(a: PublicIdentity, b: PublicIdentity): boolean {
  return a.encryptionKey === b.encryptionKey && a.signingKey === b.signingKey;
}

/** Encodes the plaintext, throwing `message-too-long` above {@linkcode MAX_TEXT_BYTES}. */
function encodePlaintext(text: string, sentAt: number, prev?: TailClaim): Bytes {
  if (typeof text !== "string") throw fail("bad-message", "Message text must be a string");
  const size = utf8(text).length;
  if (size > MAX_TEXT_BYTES) {
    throw fail(
      "message-too-long",
      `Message of ${size} bytes is too long: the limit is ${MAX_TEXT_BYTES} bytes`,
    );
  }
  if (!Number.isSafeInteger(sentAt) || sentAt < 0) {
    throw fail("bad-message", `Send time "${sentAt}" is not a whole number of milliseconds`);
  }
  const plaintext = utf8(JSON.stringify(prev ? { text, sentAt, prev } : { text, sentAt }));
  if (plaintext.length > MAX_PLAINTEXT_BYTES) {
    throw fail(
      "message-too-long",
      `Message of "${plaintext.length}" bytes once escaped exceeds ${MAX_PLAINTEXT_BYTES}`,
    );
  }
  return plaintext;
}

/** On the wire: the previous session's id (hex) and the last counter sent in it. */
type TailClaim = [string, number];

function decodePlaintext(
  bytes: Uint8Array,
): { text: string; sentAt: number; prev?: SessionTail } {
  let value: unknown;
  try {
    value = JSON.parse(fromUtf8(bytes) ?? "");
  } catch {
    value = undefined;
  }
  const record = (typeof value === "object" && value !== null ? value : {}) as Record<
    string,
    unknown
  >;
  const { text, sentAt, prev } = record;
  const keys = Object.keys(record).length;
  const ok = (keys === 2 || (keys === 3 && isTailClaim(prev))) && typeof text === "string" &&
    utf8(text).length <= MAX_TEXT_BYTES && Number.isSafeInteger(sentAt) && Number(sentAt) >= 0;
  if (!ok) throw fail("bad-envelope", "Message content is not a valid reelay message");
  const content = { text: text as string, sentAt: sentAt as number };
  if (keys === 2) return content;
  const [session, last] = prev as TailClaim;
  return { ...content, prev: { session, last } };
}

function isTailClaim(value: unknown): value is TailClaim {
  return Array.isArray(value) && value.length === 2 && typeof value[0] === "string" &&
    /^[0-9a-f]{32}$/.test(value[0]) && Number.isSafeInteger(value[1]) && value[1] >= 0;
}

/**
 * Where a sender's session with one peer ended: its id (hex) and the last counter sent in it.
 * A new session carries the previous one's tail, so a receiver learns of a dropped tail.
 */
export interface SessionTail {
  session: string;
  last: number;
}

interface OutSession {
  /** The tail of this sender's previous session with the same peer, claimed in every message. */
  prev?: TailClaim;
  epoch: string;
  keys: PublicIdentity;
  sessionId: Bytes;
  key: CryptoKey;
  next: number;
  init: SessionInit;
}

/**
 * Seals messages from one named sender during one of its connections (`epoch`, the same value
 * as in its announcement and its {@linkcode Inbox}). Keeps one session per recipient and starts
 * a new one when the recipient's epoch (a reconnect) or keys change; after the first message of
 * a session, sealing costs one AES-GCM call and no RSA.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Identity, Inbox, newEpoch, Outbox } from "./mod.ts";
 * const [alice, bob] = [await Identity.generate(), await Identity.generate()];
 * const [aliceEpoch, bobEpoch] = [newEpoch(), newEpoch()];
 * const outbox = new Outbox(alice, "alice", aliceEpoch);
 * const inbox = new Inbox(bob, "bob", bobEpoch);
 * const sealed = await outbox.seal("bob", bob.public, bobEpoch, "hello");
 * const opened = await inbox.open("alice", alice.public, aliceEpoch, sealed.bytes);
 * assert.equal(opened.text, "hello");
 * ```
 */
export class Outbox {
  /** The sender name messages are sealed as. */
  readonly name: string;
  /** The sender's connection epoch (base64). */
  readonly epoch: string;
  readonly #epochRaw: Bytes;
  readonly #identity: Identity;
  readonly #sessions = new Map<string, OutSession>();
  readonly #queue = new SerialQueue();
  #sequence = 0;
  #fingerprint?: Promise<Bytes>;

  /** The last message sent to each peer, in this connection or (from `previous`) before it. */
  readonly #tails: Map<string, SessionTail>;

  /**
   * Seals as `name` during connection `epoch`, signing sessions with `identity`. `previous`
   * holds where this sender's sessions of earlier connections ended (see {@linkcode tails}).
   */
  constructor(
    identity: Identity,
    name: string,
    epoch: string,
    previous: ReadonlyMap<string, SessionTail> = new Map(),
  ) {
    this.#identity = identity;
    this.name = checkName(name);
    this.#epochRaw = epochBytes(epoch);
    this.epoch = epoch;
    this.#tails = new Map(previous);
  }

  /** Where the latest session with each peer stands: keep it for the next connection. */
  tails(): Map<string, SessionTail> {
    return new Map(this.#tails);
  }

  /**
   * Seals `text` for `recipientName`, whose keys and current epoch come from a verified
   * announcement. Throws `message-too-long`, `bad-name`, `bad-epoch` or `bad-key`.
   */
  async seal(
    recipientName: string,
    recipientPublic: PublicIdentity,
    recipientEpoch: string,
    text: string,
    sentAt: number = Date.now(),
  ): Promise<SealedMessage> {
    encodePlaintext(text, sentAt); // checks the text before any session work
    checkName(recipientName);
    return await this.#queue.run(async () => {
      const session = await this.#session(recipientName, recipientPublic, recipientEpoch);
      const plaintext = encodePlaintext(text, sentAt, session.prev);
      return this.#sealWith(session, recipientName, plaintext);
    });
  }

  /** Drops the session with `recipientName`, so the next message starts a new one. */
  forget(recipientName: string): void {
    this.#sessions.delete(recipientName);
  }

  async #sealWith(session: OutSession, recipient: string, plaintext: Bytes) {
    const counter = session.next++;
    this.#tails.set(recipient, { session: toHex(session.sessionId), last: counter });
    const header = { sender: this.name, recipient, sessionId: session.sessionId, counter };
    const params = { name: "AES-GCM", iv: messageIv(counter), additionalData: messageAad(header) };
    const ciphertext = new Uint8Array(
      await crypto.subtle.encrypt(params, session.key, plaintext),
    );
    const bytes = encodeEnvelope({ ...header, init: session.init, ciphertext });
    return { bytes, id: messageId(session.sessionId, counter) };
  }

  async #session(recipient: string, keys: PublicIdentity, epoch: string): Promise<OutSession> {
    const current = this.#sessions.get(recipient);
    if (
      current && current.epoch === epoch && sameKeys(current.keys, keys) &&
      current.next < Number.MAX_SAFE_INTEGER
    ) return current;
    const session: OutSession = await this.#newSession(recipient, { ...keys }, epoch);
    const previous = this.#tails.get(recipient);
    if (previous) session.prev = [previous.session, previous.last];
    this.#sessions.set(recipient, session);
    return session;
  }

  async #newSession(recipient: string, keys: PublicIdentity, epoch: string) {
    const recipientEpoch = epochBytes(epoch);
    const wrapKey = await importEncryptionKey(keys);
    const sessionId = randomBytes(ID_BYTES);
    const raw = randomBytes(KEY_BYTES);
    const key = await crypto.subtle.importKey("raw", raw, "AES-GCM", false, ["encrypt"]);
    const wrappedKey = new Uint8Array(
      await crypto.subtle.encrypt({ name: "RSA-OAEP" }, wrapKey, raw),
    );
    raw.fill(0);
    const sequence = this.#sequence++;
    const unsigned = { senderEpoch: this.#epochRaw, recipientEpoch, sequence, wrappedKey };
    this.#fingerprint ??= fingerprintBytes(this.#identity.public);
    const fingerprints = {
      sender: await this.#fingerprint,
      recipient: await fingerprintBytes(keys),
    };
    const header = { sender: this.name, recipient, sessionId };
    const signature = await this.#identity.sign(sessionData(header, fingerprints, unsigned));
    return { epoch, keys, sessionId, key, next: 0, init: { ...unsigned, signature } };
  }
}

interface InSession {
  keys: PublicIdentity;
  senderEpoch: string;
  sequence: number;
  sessionId: string;
  key: CryptoKey;
  last: number;
  /** The accepted init, encoded, to compare with the copy every later envelope carries. */
  init: Bytes;
}

/**
 * Opens messages for one named recipient during one of its connections. Make a new Inbox (with
 * a new epoch) for every connection: sessions made for an older epoch are refused, so old
 * traffic cannot be replayed across reconnects without storing anything. One session per
 * sender is live; a new one must come from the sender's current connection and carry a higher
 * sequence number. Which epoch is the sender's current one is the caller's to decide: the
 * client refuses an announcement that brings back an epoch it has already seen replaced, so the
 * server cannot make an old connection current again to replay its sessions.
 *
 * Error codes: `bad-envelope` (malformed), `redirected` (names do not match who the server says
 * sent it or who we are), `stale-session` (made for another connection, older than the live
 * session, or set up with another key), `replay` (counter already accepted in this session;
 * this also rejects reordered messages), `bad-signature` (init not signed by the pinned key),
 * `unknown-session` (an envelope without init for a session that is not live; the Outbox
 * never sends those) and `tampered` (authentication failed, or the init was altered).
 *
 * @example
 * ```ts
 * import { Identity, Inbox, newEpoch, Outbox } from "./mod.ts";
 * const [alice, bob] = [await Identity.generate(), await Identity.generate()];
 * const outbox = new Outbox(alice, "alice", newEpoch());
 * const inbox = new Inbox(bob, "bob", newEpoch());
 * const sealed = await outbox.seal("bob", bob.public, inbox.epoch, "hi");
 * const { text, missing } = await inbox.open("alice", alice.public, outbox.epoch, sealed.bytes);
 * ```
 */
export class Inbox {
  /** The recipient name this inbox accepts messages for. */
  readonly name: string;
  /** This connection's epoch (base64), as in the signed announcement. */
  readonly epoch: string;
  readonly #epochHex: string;
  readonly #identity: Identity;
  readonly #sessions = new Map<string, InSession>();
  readonly #queue = new SerialQueue();
  #fingerprint?: Promise<Bytes>;

  /** Opens messages for `name` holding `identity`, in connection `epoch`. */
  constructor(identity: Identity, name: string, epoch: string) {
    this.#identity = identity;
    this.name = checkName(name);
    this.#epochHex = toHex(epochBytes(epoch));
    this.epoch = epoch;
  }

  /**
   * Opens an envelope that the server says `fromName` sent. `fromPublic` must be the key the
   * caller has pinned for that name and `fromEpoch` the epoch of its current verified
   * announcement. Throws a {@linkcode ReelayError} if any check fails; a rejected envelope
   * never changes the inbox's state.
   */
  async open(
    fromName: string,
    fromPublic: PublicIdentity,
    fromEpoch: string,
    bytes: Uint8Array,
  ): Promise<OpenedMessage> {
    const envelope = parseEnvelope(bytes);
    if (envelope.sender !== fromName || envelope.recipient !== this.name) {
      throw fail(
        "redirected",
        `Envelope from ${JSON.stringify(envelope.sender)} to ${
          JSON.stringify(envelope.recipient)
        } ` +
          `arrived as from ${JSON.stringify(fromName)} to ${JSON.stringify(this.name)}`,
      );
    }
    const sender = { name: fromName, keys: { ...fromPublic }, epoch: toHex(epochBytes(fromEpoch)) };
    return await this.#queue.run(() => this.#open(sender, envelope));
  }

  async #open(sender: Sender, envelope: Envelope): Promise<OpenedMessage> {
    const live = this.#isLive(sender, envelope);
    const previous = live ? undefined : this.#sessions.get(sender.name);
    const session = live
      ? this.#liveSession(sender, envelope)
      : await this.#acceptInit(sender, envelope);
    const params = {
      name: "AES-GCM",
      iv: messageIv(envelope.counter),
      additionalData: messageAad(envelope),
    };
    let plaintext: Uint8Array;
    try {
      plaintext = new Uint8Array(
        await crypto.subtle.decrypt(params, session.key, envelope.ciphertext),
      );
    } catch (error) {
      throw fail("tampered", `Message from "${sender.name}" failed authentication`, error);
    }
    const { prev, ...content } = decodePlaintext(plaintext);
    // A new session says where the sender's previous one ended: its dropped tail is missing too.
    const tail = previous && prev?.session === previous.sessionId
      ? Math.max(0, prev.last - previous.last)
      : 0;
    const missing = envelope.counter - session.last - 1 + tail;
    session.last = envelope.counter;
    this.#sessions.set(sender.name, session); // commit only once everything has passed
    return {
      from: sender.name,
      ...content,
      id: messageId(envelope.sessionId, envelope.counter),
      missing,
    };
  }

  /** True if the envelope belongs to the sender's live session, or carries no init to set one up. */
  #isLive(sender: Sender, envelope: Envelope): boolean {
    return !envelope.init ||
      this.#sessions.get(sender.name)?.sessionId === toHex(envelope.sessionId);
  }

  #liveSession(sender: Sender, envelope: Envelope): InSession {
    const id = toHex(envelope.sessionId);
    const session = this.#sessions.get(sender.name);
    if (!session || session.sessionId !== id) {
      throw fail(
        "unknown-session",
        `Session ${id} from "${sender.name}" is not the live one; it must start a new session`,
      );
    }
    if (envelope.init && !constantTimeEqual(session.init, concat(encodeInit(envelope.init)))) {
      throw fail("tampered", `The session init of message ${id}:${envelope.counter} was altered`);
    }
    if (!sameKeys(session.keys, sender.keys)) {
      throw fail("stale-session", `Session ${id} was set up with another key of "${sender.name}"`);
    }
    if (envelope.counter <= session.last) {
      throw fail("replay", `Message ${id}:${envelope.counter} from "${sender.name}" is a replay`);
    }
    return session;
  }

  async #acceptInit(sender: Sender, envelope: Envelope): Promise<InSession> {
    const init = envelope.init!;
    const sessionId = toHex(envelope.sessionId);
    this.#checkInitOrder(sender, sessionId, init);
    await this.#verifyInit(sender, envelope, init);
    const raw = await this.#unwrap(sender.name, init.wrappedKey);
    const key = await crypto.subtle.importKey("raw", raw, "AES-GCM", false, ["decrypt"]);
    raw.fill(0);
    const { keys, epoch: senderEpoch } = sender;
    const encoded = concat(encodeInit(init));
    return { keys, senderEpoch, sequence: init.sequence, sessionId, key, last: -1, init: encoded };
  }

  /** Refuses sessions made for other connections, replays, and sessions older than the live one. */
  #checkInitOrder(sender: Sender, sessionId: string, init: SessionInit): void {
    const from = sender.name;
    if (toHex(init.recipientEpoch) !== this.#epochHex) {
      throw fail(
        "stale-session",
        `Session ${sessionId} from "${from}" was made for your earlier connection`,
      );
    }
    if (toHex(init.senderEpoch) !== sender.epoch) {
      throw fail(
        "stale-session",
        `Session ${sessionId} comes from an earlier connection of "${from}"`,
      );
    }
    const live = this.#sessions.get(from);
    if (live && live.senderEpoch === sender.epoch && init.sequence <= live.sequence) {
      throw fail("stale-session", `Session ${sessionId} from "${from}" is older than the live one`);
    }
  }

  async #verifyInit(sender: Sender, envelope: Envelope, init: SessionInit): Promise<void> {
    this.#fingerprint ??= fingerprintBytes(this.#identity.public);
    const fingerprints = {
      sender: await fingerprintBytes(sender.keys),
      recipient: await this.#fingerprint,
    };
    const data = sessionData(envelope, fingerprints, init);
    const verifyKey = await importVerifyKey(sender.keys);
    if (!await verifyPss(verifyKey, init.signature, data)) {
      throw fail(
        "bad-signature",
        `Session from "${sender.name}" is not signed by their pinned key`,
      );
    }
  }

  async #unwrap(from: string, wrappedKey: Bytes): Promise<Bytes> {
    let raw: Bytes | undefined;
    try {
      raw = await this.#identity.decrypt(wrappedKey);
    } catch (error) {
      throw fail("bad-envelope", `Session key from "${from}" cannot be unwrapped`, error);
    }
    if (raw.length !== KEY_BYTES) {
      throw fail("bad-envelope", `Session key from "${from}" has "${raw.length}" bytes`);
    }
    return raw;
  }
}

interface Sender {
  name: string;
  keys: PublicIdentity;
  /** Hex of the sender's current epoch. */
  epoch: string;
}
