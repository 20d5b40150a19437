/**
 * The Double Ratchet (Signal's specification, revision 1) that carries a conversation once the
 * agreement (`agreement.ts`) has given both sides a session key: a new AES-256-GCM key for every
 * message (the symmetric chain, `KDF_CK` in `kdf.ts`) and a new X25519 key pair with every change
 * of direction (the DH ratchet, `KDF_RK`), so a key stolen today opens neither past messages nor,
 * after the next change of direction, future ones.
 *
 * Wire form of a ratchet message (integers big-endian); the 41-byte header is authenticated as
 * associated data after the conversation's own AD (`AD || header`):
 *
 * ```text
 * u8  version = 1
 * 32  sender's current X25519 ratchet public key
 * u32 PN: messages the sender sent in its previous sending chain
 * u32 N:  this message's number in the current sending chain
 * ..  AES-256-GCM ciphertext with its 16-byte tag (key and nonce from KDF_CK)
 * ```
 *
 * Ordering (decided for reelay, where the server delivers a conversation in order): unlike
 * Signal, keys of skipped messages are never kept. A gap in N, or the unread rest of the previous
 * chain (PN), is counted and reported as `missing`; a message that then arrives anyway is refused
 * as `late`, one that arrives twice as `replayed`, one from a chain whose keys are gone as
 * `erased-key`. A header that would skip more than {@linkcode MAX_SKIP} messages is refused
 * before any key is derived, so a hostile header costs at most MAX_SKIP chain steps. Which
 * message numbers were skipped is remembered (numbers, not keys) for the last
 * {@linkcode HISTORY_CHAINS} chains so `late` and `replayed` can be told apart.
 *
 * A refused message changes nothing: a decryption is computed on staged values and committed
 * only once AES-GCM has authenticated it. Operations on one ratchet run one at a time. Replaced
 * keys are dropped and their arrays zeroed at once; JavaScript cannot wipe copies the engine may
 * have made, nor the inside of a CryptoKey, so "erased" means unreachable from the state.
 *
 * Persist {@linkcode Ratchet.toJSON} after every `encrypt` *before* the message leaves: a state
 * restored from before a send would seal a different plaintext under the same key and nonce,
 * which AES-GCM does not survive. After a `decrypt`, persist before acknowledging the message, so
 * a crash in between means it is delivered and opened again rather than lost.
 *
 * WebCrypto calls per message: 4 to seal (two HKDF derives side by side, an AES key import, the
 * encryption), 4 to open, plus one HKDF derive per skipped message and, with each change of
 * direction, two X25519 agreements, one key generation and two root derivations.
 *
 * @module
 */

import {
  ByteReader,
  type Bytes,
  concat,
  encodeFields,
  fromBase64,
  toBase64,
  toHex,
} from "../bytes.ts";
import { ConversationError } from "./conversation_error.ts";
import { dh, type DhKeyPair, generateDh, importDh, X25519_BYTES } from "./_keys.ts";
import { type ChainStep, kdfChain, kdfRoot, KEY_BYTES, nextChainKey } from "./kdf.ts";

/** Version byte of the ratchet message format. */
export const RATCHET_VERSION = 1;
/** Most messages one header may skip (in its chain plus the rest of the previous chain). */
export const MAX_SKIP = 2000;
/** Bytes of a ratchet message header. */
export const RATCHET_HEADER_BYTES = 1 + X25519_BYTES + 4 + 4;
/** Longest plaintext a ratchet message carries. */
export const MAX_RATCHET_PLAINTEXT_BYTES = 64 * 1024;
/** Finished receiving chains whose skipped message numbers are remembered. */
export const HISTORY_CHAINS = 32;

const TAG_BYTES = 16;
const MAX_COUNTER = 0xffff_ffff;
const MAX_GAPS = 64;
const MAX_AD_BYTES = 4096;
const FORMAT = "reelay-ratchet-v1" as const;

/** Largest ratchet message in bytes; anything longer is refused unparsed. */
export const MAX_RATCHET_MESSAGE_BYTES = RATCHET_HEADER_BYTES + MAX_RATCHET_PLAINTEXT_BYTES +
  TAG_BYTES;

/** Message numbers `[start, end)` of one chain that were skipped, never received. */
type Gap = [start: number, end: number];

interface Sending {
  pair: DhKeyPair;
  chainKey: Bytes | null;
  n: number;
  previous: number;
}

interface Receiving {
  publicKey: Bytes | null;
  chainKey: Bytes | null;
  n: number;
  gaps: Gap[];
}

interface PastChain {
  publicKey: Bytes;
  end: number;
  gaps: Gap[];
}

interface Header {
  bytes: Bytes;
  publicKey: Bytes;
  previous: number;
  n: number;
}

/** A message opened by {@linkcode Ratchet.decrypt}. */
export interface OpenedRatchetMessage {
  /** The plaintext. */
  plaintext: Bytes;
  /** Messages skipped right before this one (their keys were not kept; they cannot be read). */
  missing: number;
}

/**
 * What a test may see of a ratchet: hashes of the chain keys (never the keys), the public
 * ratchet keys and the counters.
 */
export interface RatchetDebugState {
  /** SHA-256 (hex, domain-separated) of the sending chain key, or `null` before there is one. */
  sendingChain: string | null;
  /** SHA-256 (hex, domain-separated) of the receiving chain key, or `null`. */
  receivingChain: string | null;
  /** Our current ratchet public key (hex). */
  sendingRatchetKey: string;
  /** The peer's current ratchet public key (hex), or `null` before we know it. */
  receivingRatchetKey: string | null;
  /** Messages sent in the current sending chain. */
  sent: number;
  /** Next expected message number in the current receiving chain. */
  received: number;
  /** Messages sent in the previous sending chain. */
  previousSent: number;
}

/** The persisted form of a {@linkcode Ratchet}. Binary fields are base64. */
export interface StoredRatchet {
  /** Always `reelay-ratchet-v1`. */
  format: typeof FORMAT;
  /** The conversation's associated data. */
  ad: string;
  /** Current root key. */
  rootKey: string;
  /** Our current ratchet key pair (private scalar and public key), chain key and counters. */
  sending: {
    secret: string;
    publicKey: string;
    chainKey: string | null;
    n: number;
    previous: number;
  };
  /** The peer's current ratchet key, our receiving chain key, next number and gaps. */
  receiving: { publicKey: string | null; chainKey: string | null; n: number; gaps: Gap[] };
  /** Finished receiving chains: public key, end and gaps (no keys). */
  history: { publicKey: string; end: number; gaps: Gap[] }[];
}

function refuse(code: ConversationError["code"], message: string): never {
  throw new ConversationError(code, message);
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}

function encodeHeader(publicKey: Bytes, previous: number, n: number): Bytes {
  const out = new Uint8Array(RATCHET_HEADER_BYTES);
  const view = new DataView(out.buffer);
  out[0] = RATCHET_VERSION;
  out.set(publicKey, 1);
  view.setUint32(1 + X25519_BYTES, previous);
  view.setUint32(5 + X25519_BYTES, n);
  return out;
}

function parseMessage(message: Bytes): { header: Header; ciphertext: Bytes } {
  if (
    message.length < RATCHET_HEADER_BYTES + TAG_BYTES || message.length > MAX_RATCHET_MESSAGE_BYTES
  ) {
    refuse("bad-message", `A ratchet message of "${message.length}" bytes is out of range`);
  }
  const reader = new ByteReader(message);
  const version = reader.u8();
  if (version !== RATCHET_VERSION) {
    refuse("bad-message", `Ratchet message version "${version}" is not ${RATCHET_VERSION}`);
  }
  const publicKey = reader.fixed(X25519_BYTES);
  const counters = new DataView(reader.fixed(8).buffer);
  const header: Header = {
    bytes: message.slice(0, RATCHET_HEADER_BYTES),
    publicKey,
    previous: counters.getUint32(0),
    n: counters.getUint32(4),
  };
  return { header, ciphertext: message.slice(RATCHET_HEADER_BYTES) };
}

/** Why a message numbered `n` below the next expected one was refused. */
function olderMessage(gaps: readonly Gap[], n: number): never {
  if (gaps.some(([start, end]) => n >= start && n < end)) {
    refuse("late", `Message ${n} arrived after a newer one; its key was not kept`);
  }
  refuse("replayed", `Message ${n} of this chain was already read`);
}

function withGap(gaps: readonly Gap[], start: number, end: number): Gap[] {
  const next = end > start ? [...gaps, [start, end] as Gap] : [...gaps];
  return next.slice(-MAX_GAPS);
}

/** Steps over `skip` messages (keeping none of their keys), then derives the next message's. */
async function advance(chainKey: Bytes, skip: number): Promise<ChainStep> {
  let key = chainKey;
  for (let i = 0; i < skip; i++) {
    const next = await nextChainKey(key);
    if (key !== chainKey) erase(key);
    key = next;
  }
  const step = await kdfChain(key);
  if (key !== chainKey) erase(key);
  return step;
}

async function aesKey(step: ChainStep, usage: KeyUsage): Promise<CryptoKey> {
  return await crypto.subtle.importKey("raw", step.key, "AES-GCM", false, [usage]);
}

async function debugHash(key: Bytes | null): Promise<string | null> {
  if (!key) return null;
  const data = encodeFields(["reelay-ratchet-debug-v1", key]);
  return toHex(new Uint8Array(await crypto.subtle.digest("SHA-256", data)));
}

function erase(...keys: (Uint8Array | null)[]): void {
  for (const key of keys) key?.fill(0);
}

/**
 * One side of a conversation's Double Ratchet. Made by `initiate`/`respond` in `agreement.ts`
 * (or restored with {@linkcode Ratchet.fromJSON}); persist {@linkcode Ratchet.toJSON} after
 * every message sealed or opened.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Ratchet } from "./ratchet.ts";
 * const sessionKey = crypto.getRandomValues(new Uint8Array(32));
 * const bobKey = crypto.getRandomValues(new Uint8Array(32)); // the responder's first ratchet key
 * const ad = new Uint8Array([1, 2, 3]);
 * const bob = await Ratchet.responder(sessionKey, bobKey, ad);
 * const alice = await Ratchet.initiator(sessionKey, bob.ratchetPublicKey, ad);
 * const sealed = await alice.encrypt(new TextEncoder().encode("hi"));
 * assert.equal(new TextDecoder().decode((await bob.decrypt(sealed)).plaintext), "hi");
 * ```
 */
export class Ratchet {
  readonly #ad: Bytes;
  #rootKey: Bytes;
  #sending: Sending;
  #receiving: Receiving;
  #history: PastChain[];
  #tail: Promise<unknown> = Promise.resolve();

  private constructor(
    state: {
      ad: Bytes;
      rootKey: Bytes;
      sending: Sending;
      receiving: Receiving;
      history: PastChain[];
    },
  ) {
    this.#ad = state.ad;
    this.#rootKey = state.rootKey;
    this.#sending = state.sending;
    this.#receiving = state.receiving;
    this.#history = state.history;
  }

  /**
   * The initiator's side: a fresh ratchet key pair, and a first sending chain from its DH with
   * the responder's first ratchet key (the responder's signed prekey).
   */
  static async initiator(sessionKey: Bytes, peerRatchetKey: Bytes, ad: Bytes): Promise<Ratchet> {
    checkKeyBytes(sessionKey, peerRatchetKey, ad);
    const pair = await generateDh();
    const { rootKey, chainKey } = await kdfRoot(
      sessionKey,
      await dh(pair.privateKey, peerRatchetKey),
    );
    return new Ratchet({
      ad: ad.slice(),
      rootKey,
      sending: { pair, chainKey, n: 0, previous: 0 },
      receiving: { publicKey: peerRatchetKey.slice(), chainKey: null, n: 0, gaps: [] },
      history: [],
    });
  }

  /**
   * The responder's side: its first ratchet key pair is the signed prekey the initiator used
   * (`ownRatchetSecret` is its 32-byte private scalar); it can send once it has decrypted.
   */
  static async responder(sessionKey: Bytes, ownRatchetSecret: Bytes, ad: Bytes): Promise<Ratchet> {
    checkKeyBytes(sessionKey, ownRatchetSecret, ad);
    const pair = await importDh(ownRatchetSecret, undefined, "bad-state");
    return new Ratchet({
      ad: ad.slice(),
      rootKey: sessionKey.slice(),
      sending: { pair, chainKey: null, n: 0, previous: 0 },
      receiving: { publicKey: null, chainKey: null, n: 0, gaps: [] },
      history: [],
    });
  }

  /** Loads a ratchet saved with {@linkcode Ratchet.toJSON}; throws `bad-state` if corrupt. */
  static async fromJSON(value: unknown): Promise<Ratchet> {
    const raw = record(value, "Stored ratchet");
    if (raw.format !== FORMAT) refuse("bad-state", `Stored ratchet format is not "${FORMAT}"`);
    const sending = record(raw.sending, "Stored sending chain");
    const receiving = record(raw.receiving, "Stored receiving chain");
    const secret = storedBytes(sending.secret, "ratchet private key", X25519_BYTES);
    const publicKey = storedBytes(sending.publicKey, "ratchet public key", X25519_BYTES);
    if (!Array.isArray(raw.history) || raw.history.length > HISTORY_CHAINS) {
      refuse("bad-state", `Stored ratchet history must hold at most ${HISTORY_CHAINS} chains`);
    }
    const ad = storedBytes(raw.ad, "associated data", -1);
    if (ad.length > MAX_AD_BYTES) refuse("bad-state", "Stored associated data is too long");
    return new Ratchet({
      ad,
      rootKey: storedBytes(raw.rootKey, "root key", KEY_BYTES),
      sending: {
        pair: await importDh(secret, publicKey, "bad-state"),
        chainKey: storedKey(sending.chainKey, "sending chain key"),
        n: counter(sending.n),
        previous: counter(sending.previous),
      },
      receiving: {
        publicKey: receiving.publicKey === null
          ? null
          : storedBytes(receiving.publicKey, "peer ratchet key", X25519_BYTES),
        chainKey: storedKey(receiving.chainKey, "receiving chain key"),
        n: counter(receiving.n),
        gaps: storedGaps(receiving.gaps),
      },
      history: raw.history.map((item: unknown) => {
        const chain = record(item, "Stored past chain");
        return {
          publicKey: storedBytes(chain.publicKey, "past ratchet key", X25519_BYTES),
          end: counter(chain.end),
          gaps: storedGaps(chain.gaps),
        };
      }),
    });
  }

  /** Our current ratchet public key (32 bytes). */
  get ratchetPublicKey(): Bytes {
    return this.#sending.pair.publicKey.slice();
  }

  /** Whether any message from the peer has been opened (an initiator stops sending its init). */
  get hasReceived(): boolean {
    return this.#receiving.chainKey !== null;
  }

  /** The persisted form, keys included: store it with owner-only permissions. */
  toJSON(): StoredRatchet {
    const key = (bytes: Bytes | null) => bytes ? toBase64(bytes) : null;
    const receiving = this.#receiving;
    return {
      format: FORMAT,
      ad: toBase64(this.#ad),
      rootKey: toBase64(this.#rootKey),
      sending: {
        secret: toBase64(this.#sending.pair.secret),
        publicKey: toBase64(this.#sending.pair.publicKey),
        chainKey: key(this.#sending.chainKey),
        n: this.#sending.n,
        previous: this.#sending.previous,
      },
      receiving: {
        publicKey: key(receiving.publicKey),
        chainKey: key(receiving.chainKey),
        n: receiving.n,
        gaps: receiving.gaps.map(([start, end]) => [start, end]),
      },
      history: this.#history.map((chain) => ({
        publicKey: toBase64(chain.publicKey),
        end: chain.end,
        gaps: chain.gaps.map(([start, end]) => [start, end]),
      })),
    };
  }

  /**
   * Test hook: hashes of the current chain keys, the public ratchet keys and the counters, so a
   * test can see every key change without seeing a key.
   */
  async debugState(): Promise<RatchetDebugState> {
    return {
      sendingChain: await debugHash(this.#sending.chainKey),
      receivingChain: await debugHash(this.#receiving.chainKey),
      sendingRatchetKey: toHex(this.#sending.pair.publicKey),
      receivingRatchetKey: this.#receiving.publicKey ? toHex(this.#receiving.publicKey) : null,
      sent: this.#sending.n,
      received: this.#receiving.n,
      previousSent: this.#sending.previous,
    };
  }

  /**
   * Seals `plaintext` as the next message of the sending chain. Throws `too-long` above
   * {@linkcode MAX_RATCHET_PLAINTEXT_BYTES} and `not-ready` before a responder has opened a
   * message.
   */
  encrypt(plaintext: Bytes): Promise<Bytes> {
    return this.#serial(() => this.#encrypt(plaintext));
  }

  /**
   * Opens a ratchet message, or throws a {@linkcode ConversationError} (`bad-message`,
   * `replayed`, `late`, `erased-key`, `too-far-ahead`, `not-authentic`) and changes nothing.
   */
  decrypt(message: Bytes): Promise<OpenedRatchetMessage> {
    return this.#serial(() => this.#decrypt(message));
  }

  #serial<T>(task: () => Promise<T>): Promise<T> {
    const run = this.#tail.then(task, task);
    this.#tail = run.catch(() => {});
    return run;
  }

  async #encrypt(plaintext: Bytes): Promise<Bytes> {
    if (plaintext.length > MAX_RATCHET_PLAINTEXT_BYTES) {
      refuse("too-long", `A plaintext of "${plaintext.length}" bytes exceeds the limit`);
    }
    const sending = this.#sending;
    if (!sending.chainKey) refuse("not-ready", "No sending chain until a message is received");
    if (sending.n >= MAX_COUNTER) refuse("not-ready", "This sending chain is exhausted");
    const header = encodeHeader(sending.pair.publicKey, sending.previous, sending.n);
    const step = await kdfChain(sending.chainKey);
    erase(sending.chainKey);
    sending.chainKey = step.nextChainKey;
    sending.n += 1;
    const key = await aesKey(step, "encrypt");
    const params = { name: "AES-GCM", iv: step.nonce, additionalData: concat([this.#ad, header]) };
    const ciphertext = new Uint8Array(await crypto.subtle.encrypt(params, key, plaintext));
    erase(step.key);
    return concat([header, ciphertext]);
  }

  async #decrypt(message: Bytes): Promise<OpenedRatchetMessage> {
    const { header, ciphertext } = parseMessage(message);
    const receiving = this.#receiving;
    if (receiving.publicKey && sameBytes(header.publicKey, receiving.publicKey)) {
      return await this.#decryptInChain(header, ciphertext);
    }
    const past = this.#history.find((chain) => sameBytes(chain.publicKey, header.publicKey));
    if (past) {
      if (header.n < past.end) olderMessage(past.gaps, header.n);
      refuse("erased-key", `Message ${header.n} belongs to a chain whose keys were erased`);
    }
    return await this.#decryptNewChain(header, ciphertext);
  }

  async #decryptInChain(header: Header, ciphertext: Bytes): Promise<OpenedRatchetMessage> {
    const receiving = this.#receiving;
    if (!receiving.chainKey) refuse("not-authentic", "No chain was ever opened with this key");
    if (header.n < receiving.n) olderMessage(receiving.gaps, header.n);
    const skip = header.n - receiving.n;
    if (skip > MAX_SKIP) refuse("too-far-ahead", `Message ${header.n} skips "${skip}" messages`);
    const step = await advance(receiving.chainKey, skip);
    const plaintext = await this.#open(step, header, ciphertext);
    erase(receiving.chainKey);
    receiving.chainKey = step.nextChainKey;
    receiving.gaps = withGap(receiving.gaps, receiving.n, header.n);
    receiving.n = header.n + 1;
    return { plaintext, missing: skip };
  }

  async #decryptNewChain(header: Header, ciphertext: Bytes): Promise<OpenedRatchetMessage> {
    const old = this.#receiving;
    const missingBefore = old.chainKey ? Math.max(0, header.previous - old.n) : 0;
    if (missingBefore > MAX_SKIP || header.n > MAX_SKIP) {
      refuse("too-far-ahead", `A new chain's message ${header.n} skips too many messages`);
    }
    const [dhReceive, pair] = await Promise.all([
      dh(this.#sending.pair.privateKey, header.publicKey),
      generateDh(),
    ]);
    const receive = await kdfRoot(this.#rootKey, dhReceive);
    const send = await kdfRoot(receive.rootKey, await dh(pair.privateKey, header.publicKey));
    const step = await advance(receive.chainKey, header.n);
    const plaintext = await this.#open(step, header, ciphertext);
    if (old.publicKey && old.chainKey) {
      const end = Math.max(old.n, header.previous);
      this.#history = [...this.#history, {
        publicKey: old.publicKey,
        end,
        gaps: withGap(old.gaps, old.n, end),
      }].slice(-HISTORY_CHAINS);
    }
    erase(this.#rootKey, receive.rootKey, receive.chainKey, old.chainKey, this.#sending.chainKey);
    erase(this.#sending.pair.secret, dhReceive);
    this.#rootKey = send.rootKey;
    this.#sending = { pair, chainKey: send.chainKey, n: 0, previous: this.#sending.n };
    this.#receiving = {
      publicKey: header.publicKey,
      chainKey: step.nextChainKey,
      n: header.n + 1,
      gaps: withGap([], 0, header.n),
    };
    return { plaintext, missing: missingBefore + header.n };
  }

  async #open(step: ChainStep, header: Header, ciphertext: Bytes): Promise<Bytes> {
    const key = await aesKey(step, "decrypt");
    const params = {
      name: "AES-GCM",
      iv: step.nonce,
      additionalData: concat([this.#ad, header.bytes]),
    };
    try {
      return new Uint8Array(await crypto.subtle.decrypt(params, key, ciphertext));
    } catch {
      refuse(
        "not-authentic",
        "The message does not authenticate (tampered, forged or misdirected)",
      );
    } finally {
      erase(step.key);
    }
  }
}

function checkKeyBytes(sessionKey: Bytes, ratchetKey: Bytes, ad: Bytes): void {
  if (sessionKey.length !== KEY_BYTES || ratchetKey.length !== X25519_BYTES) {
    refuse("bad-state", "A session key and a ratchet key must be 32 bytes each");
  }
  if (ad.length > MAX_AD_BYTES) refuse("bad-state", "The associated data is too long");
}

function record(value: unknown, label: string): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    refuse("bad-state", `${label} must be an object`);
  }
  return value as Record<string, unknown>;
}

/** Decodes a stored base64 field of `length` bytes (any length when negative). */
function storedBytes(value: unknown, label: string, length: number): Bytes {
  const bytes = typeof value === "string" && value.length <= 8192 ? fromBase64(value) : undefined;
  if (!bytes || (length >= 0 && bytes.length !== length)) {
    refuse("bad-state", `The stored ${label} is not valid base64 of the right length`);
  }
  return bytes;
}

function storedKey(value: unknown, label: string): Bytes | null {
  return value === null ? null : storedBytes(value, label, KEY_BYTES);
}

/** A stored counter: a u32, or one past the largest u32 (the next number after it). */
function counter(value: unknown): number {
  if (!Number.isInteger(value) || (value as number) < 0 || (value as number) > MAX_COUNTER + 1) {
    refuse("bad-state", `Stored counter ${JSON.stringify(value)} is out of range`);
  }
  return value as number;
}

function storedGaps(value: unknown): Gap[] {
  if (!Array.isArray(value) || value.length > MAX_GAPS) {
    refuse("bad-state", `Stored gaps must be a list of at most ${MAX_GAPS}`);
  }
  return value.map((gap: unknown) => {
    if (!Array.isArray(gap) || gap.length !== 2) refuse("bad-state", "A stored gap is malformed");
    const [start, end] = [counter(gap[0]), counter(gap[1])];
    if (start >= end) refuse("bad-state", "A stored gap is empty or reversed");
    return [start, end];
  });
}
