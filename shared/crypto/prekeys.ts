/**
 * Prekeys: what a person publishes through the server so that others can start a conversation
 * with them while they are offline (Signal's X3DH/PQXDH prekeys), and the private halves they
 * keep.
 *
 * Each identity holds:
 * - a signed X25519 prekey (SPK), replaced by {@linkcode PrekeyStore.rotate}; the one it
 *   replaces stays usable for a grace period (messages already on their way) and is erased by
 *   {@linkcode PrekeyStore.prune};
 * - a signed ML-KEM-768 last-resort prekey (PQSPK), rotated together with the SPK;
 * - a batch of signed one-time ML-KEM-768 prekeys (PQOPK) and of unsigned one-time X25519
 *   prekeys (OPK, unsigned as in Signal: a forged one only makes the agreement fail).
 *
 * Signatures are RSA-PSS by the identity's signing key over the length-prefixed encoding of
 * (label, id as u64, public key, creation time in ms as u64), with the labels `reelay-spk-v1`,
 * `reelay-pqspk-v1` (last resort) and `reelay-pqopk-v1` (one-time): the label binds the kind, so
 * a server cannot pass a last-resort key off as a one-time one or the reverse. The creation time
 * is signed so that an initiator can refuse a stale signed prekey a server keeps handing out.
 *
 * One id counter serves every key of a store, so ids never repeat across kinds or rotations.
 * A one-time key is erased when an initial message that used it is accepted; an initial message
 * that used no one-time key is remembered (its ephemeral key) while its signed prekey lives, so a
 * replay of it is refused. The store is plain data the caller persists (owner-only permissions)
 * after every change; JavaScript cannot wipe memory, so erasing means dropping every reference
 * (and zeroing the arrays we own).
 *
 * @module
 */

import { type Bytes, encodeFields, fromBase64, toBase64, u64 } from "../bytes.ts";
import { ConversationError } from "./conversation_error.ts";
import {
  checkKemPublicKey,
  type DhKeyPair,
  generateDh,
  generateKem,
  importDh,
  importKem,
  KEM_PUBLIC_BYTES,
  KEM_SEED_BYTES,
  type KemKeyPair,
  X25519_BYTES,
} from "./_keys.ts";
import {
  fingerprintHash,
  type Identity,
  importVerifyKey,
  parsePublicIdentity,
  type PublicIdentity,
  verifyPss,
} from "./identity.ts";

/** One-time prekeys of each kind made by {@linkcode PrekeyStore.generate} by default. */
export const DEFAULT_ONE_TIME_PREKEYS = 100;
/** Most one-time prekeys of each kind a store holds (bounds the state and its upload). */
export const MAX_ONE_TIME_PREKEYS = 1000;
/** How long a replaced signed prekey stays usable, by default: 14 days. */
export const SIGNED_PREKEY_GRACE_MS = 14 * 24 * 3600 * 1000;
/**
 * How old a signed prekey (and the last-resort PQ prekey made with it) may grow before its
 * owner replaces it, as Signal does: it bounds how long a thief of those private keys can read
 * initial messages that used no one-time key.
 */
export const SIGNED_PREKEY_ROTATION_MS = 7 * 24 * 3600 * 1000;
/** Most replaced signed prekeys kept at once, whatever their age. */
export const MAX_PREVIOUS_SIGNED_PREKEYS = 4;
/** Most remembered initial messages (those that used no one-time key). */
export const MAX_REMEMBERED_INITS = 4096;

const FORMAT = "reelay-prekeys-v1" as const;
const SPK_LABEL = "reelay-spk-v1";
const PQSPK_LABEL = "reelay-pqspk-v1";
const PQOPK_LABEL = "reelay-pqopk-v1";
const MAX_ID = 0xffff_ffff;
const MAX_SIGNATURE_BYTES = 512;

/** A signed X25519 prekey as published. Binary fields are canonical base64. */
export interface SignedPrekey {
  /** Key id (u32), unique within the owner's store. */
  id: number;
  /** 32-byte X25519 public key. */
  publicKey: string;
  /** Creation time, ms since the epoch (signed). */
  createdAt: number;
  /** RSA-PSS signature by the owner (see the module header). */
  signature: string;
}

/** A signed ML-KEM-768 prekey as published. */
export interface PqPrekey {
  /** Key id (u32), unique within the owner's store. */
  id: number;
  /** 1184-byte ML-KEM-768 encapsulation key. */
  publicKey: string;
  /** `true` for the last-resort key (reused until rotated), `false` for a one-time key. */
  lastResort: boolean;
  /** Creation time, ms since the epoch (signed). */
  createdAt: number;
  /** RSA-PSS signature by the owner; its label says which kind of key this is. */
  signature: string;
}

/** An unsigned one-time X25519 prekey as published. */
export interface OneTimePrekey {
  /** Key id (u32), unique within the owner's store. */
  id: number;
  /** 32-byte X25519 public key. */
  publicKey: string;
}

/** Everything an owner uploads to the server. */
export interface PublishedPrekeys {
  /** The current signed X25519 prekey. */
  signedPrekey: SignedPrekey;
  /** The current last-resort ML-KEM-768 prekey. */
  pqLastResort: PqPrekey;
  /** One-time ML-KEM-768 prekeys not yet used. */
  pqOneTime: PqPrekey[];
  /** One-time X25519 prekeys not yet used. */
  oneTime: OneTimePrekey[];
}

/**
 * What the server hands someone who wants to start a conversation with the owner: the owner's
 * identity, the signed prekey, one PQ prekey (a one-time one while any is left, else the last
 * resort) and, while any is left, one one-time X25519 prekey. The server must hand out each
 * one-time key once and then forget it.
 */
export interface PrekeyBundle {
  /** The owner's RSA public keys. */
  identity: PublicIdentity;
  /** The owner's signed X25519 prekey. */
  signedPrekey: SignedPrekey;
  /** One signed ML-KEM-768 prekey. */
  pqPrekey: PqPrekey;
  /** One one-time X25519 prekey, if the owner has any left. */
  oneTimePrekey?: OneTimePrekey;
}

interface DhRecord {
  id: number;
  publicKey: Bytes;
  secret: Bytes;
}

interface SignedDhRecord extends DhRecord {
  createdAt: number;
  signature: Bytes;
}

interface KemRecord {
  id: number;
  publicKey: Bytes;
  seed: Bytes;
  createdAt: number;
  signature: Bytes;
}

interface Generation {
  signed: SignedDhRecord;
  pq: KemRecord;
  /** When a rotation replaced it (absent for the current generation). */
  retiredAt?: number;
}

interface SeenInit {
  signedPrekeyId: number;
  ephemeral: string;
}

interface StoredDh {
  id: number;
  publicKey: string;
  secret: string;
}

interface StoredKem {
  id: number;
  publicKey: string;
  seed: string;
  createdAt: number;
  signature: string;
}

interface StoredGeneration {
  signed: StoredDh & { createdAt: number; signature: string };
  pq: StoredKem;
  retiredAt?: number;
}

/** The persisted form of a {@linkcode PrekeyStore}: private keys included. */
export interface StoredPrekeys {
  /** Always `reelay-prekeys-v1`. */
  format: typeof FORMAT;
  /** Full fingerprint (64 hex digits) of the owner's identity. */
  owner: string;
  /** Next key id to hand out. */
  nextId: number;
  /** The current signed prekeys. */
  current: StoredGeneration;
  /** Replaced signed prekeys still in their grace period. */
  previous: StoredGeneration[];
  /** Unused one-time X25519 prekeys. */
  oneTime: StoredDh[];
  /** Unused one-time ML-KEM-768 prekeys. */
  pqOneTime: StoredKem[];
  /** Accepted initial messages that used no one-time key. */
  seenInits: SeenInit[];
}

/** Private keys an initial message names, found by {@linkcode PrekeyStore.findForInit}. */
export interface InitPrekeys {
  /** The signed X25519 prekey pair (also the responder's first ratchet key). */
  signed: DhKeyPair;
  /** The ML-KEM-768 prekey pair. */
  pq: KemKeyPair;
  /** The one-time X25519 prekey pair, if one was named. */
  oneTime?: DhKeyPair;
}

/** Which prekeys an initial message used, as {@linkcode PrekeyStore.findForInit} takes them. */
export interface InitPrekeyIds {
  /** Id of the signed X25519 prekey. */
  signedId: number;
  /** Id of the ML-KEM-768 prekey. */
  pqId: number;
  /** Whether that ML-KEM-768 prekey is a last-resort one. */
  pqLastResort: boolean;
  /** Id of the one-time X25519 prekey, if one was used. */
  oneTimeId?: number;
}

function badPrekey(message: string): never {
  throw new ConversationError("bad-prekey", message);
}

function badState(message: string): never {
  throw new ConversationError("bad-state", message);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function shown(value: unknown): string {
  return JSON.stringify(String(value).slice(0, 40));
}

/** The bytes an owner signs for one of its prekeys. */
function signedData(label: string, id: number, publicKey: Bytes, createdAt: number): Bytes {
  return encodeFields([label, u64(id), publicKey, u64(createdAt)]);
}

function checkId(value: unknown, fail: (message: string) => never): number {
  if (!Number.isInteger(value) || (value as number) < 0 || (value as number) > MAX_ID) {
    fail(`Prekey id ${shown(value)} is not an integer in 0-${MAX_ID}`);
  }
  return value as number;
}

function checkTime(value: unknown, fail: (message: string) => never): number {
  if (!Number.isSafeInteger(value) || (value as number) < 0) {
    fail(`Prekey time ${shown(value)} is not a non-negative integer`);
  }
  return value as number;
}

function bytesField(
  value: unknown,
  label: string,
  length: { min: number; max: number },
  fail: (message: string) => never,
): Bytes {
  const bytes = typeof value === "string" && value.length <= 4 * length.max
    ? fromBase64(value)
    : undefined;
  if (!bytes || bytes.length < length.min || bytes.length > length.max) {
    const size = length.min === length.max ? `${length.min}` : `${length.min}-${length.max}`;
    fail(`The ${label} is not canonical base64 of ${size} bytes`);
  }
  return bytes;
}

const exactly = (n: number) => ({ min: n, max: n });
const SIGNATURE_LENGTH = { min: 256, max: MAX_SIGNATURE_BYTES };

async function sign(identity: Identity, label: string, id: number, pub: Bytes, at: number) {
  return await identity.sign(signedData(label, id, pub, at));
}

/** Parses and checks the shape of a published signed X25519 prekey. */
function parseSigned(value: unknown): { record: SignedPrekey; publicKey: Bytes; sig: Bytes } {
  const raw = isRecord(value) ? value : badPrekey("A signed prekey must be an object");
  const record: SignedPrekey = {
    id: checkId(raw.id, badPrekey),
    publicKey: String(raw.publicKey),
    createdAt: checkTime(raw.createdAt, badPrekey),
    signature: String(raw.signature),
  };
  const publicKey = bytesField(raw.publicKey, "signed prekey", exactly(X25519_BYTES), badPrekey);
  const sig = bytesField(raw.signature, "signed prekey signature", SIGNATURE_LENGTH, badPrekey);
  return { record, publicKey, sig };
}

/** Parses and checks the shape of a published ML-KEM-768 prekey. */
function parsePq(value: unknown): { record: PqPrekey; publicKey: Bytes; sig: Bytes } {
  const raw = isRecord(value) ? value : badPrekey("A PQ prekey must be an object");
  if (typeof raw.lastResort !== "boolean") badPrekey("A PQ prekey needs a lastResort flag");
  const record: PqPrekey = {
    id: checkId(raw.id, badPrekey),
    publicKey: String(raw.publicKey),
    lastResort: raw.lastResort,
    createdAt: checkTime(raw.createdAt, badPrekey),
    signature: String(raw.signature),
  };
  const publicKey = bytesField(raw.publicKey, "PQ prekey", exactly(KEM_PUBLIC_BYTES), badPrekey);
  if (!checkKemPublicKey(publicKey)) badPrekey(`PQ prekey ${record.id} is not a valid key`);
  const sig = bytesField(raw.signature, "PQ prekey signature", SIGNATURE_LENGTH, badPrekey);
  return { record, publicKey, sig };
}

function parseOneTime(value: unknown): OneTimePrekey {
  const raw = isRecord(value) ? value : badPrekey("A one-time prekey must be an object");
  bytesField(raw.publicKey, "one-time prekey", exactly(X25519_BYTES), badPrekey);
  return { id: checkId(raw.id, badPrekey), publicKey: String(raw.publicKey) };
}

async function checkSignature(key: CryptoKey, label: string, parsed: {
  record: { id: number; createdAt: number };
  publicKey: Bytes;
  sig: Bytes;
}): Promise<void> {
  const data = signedData(label, parsed.record.id, parsed.publicKey, parsed.record.createdAt);
  if (!await verifyPss(key, parsed.sig, data)) {
    throw new ConversationError(
      "bad-signature",
      `Prekey ${parsed.record.id} is not signed by its owner's identity`,
    );
  }
}

/**
 * Checks an untrusted bundle: shapes, key validity and every signature against the owner's RSA
 * signing key. With `expected`, the bundle must belong to exactly those (pinned) public keys.
 * Throws `bad-prekey`, `bad-signature` or `wrong-peer`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Identity, PrekeyStore, verifyBundle } from "./mod.ts";
 * const bob = await Identity.generate();
 * const store = await PrekeyStore.generate(bob, { oneTime: 1, pqOneTime: 1 });
 * const parts = store.published();
 * const bundle = await verifyBundle({
 *   identity: bob.public,
 *   signedPrekey: parts.signedPrekey,
 *   pqPrekey: parts.pqOneTime[0],
 *   oneTimePrekey: parts.oneTime[0],
 * }, bob.public);
 * assert.equal(bundle.oneTimePrekey?.id, parts.oneTime[0].id);
 * ```
 */
export async function verifyBundle(
  value: unknown,
  expected?: PublicIdentity,
): Promise<PrekeyBundle> {
  const raw = isRecord(value) ? value : badPrekey("A prekey bundle must be an object");
  const identity = await parsePublicIdentity(raw.identity).catch((error) => {
    throw new ConversationError("bad-prekey", "The bundle's identity is unusable", {
      cause: error,
    });
  });
  if (
    expected &&
    (identity.signingKey !== expected.signingKey ||
      identity.encryptionKey !== expected.encryptionKey)
  ) {
    throw new ConversationError("wrong-peer", "The bundle belongs to other keys than expected");
  }
  const signed = parseSigned(raw.signedPrekey);
  const pq = parsePq(raw.pqPrekey);
  const oneTime = raw.oneTimePrekey === undefined ? undefined : parseOneTime(raw.oneTimePrekey);
  const key = await importVerifyKey(identity);
  await checkSignature(key, SPK_LABEL, signed);
  await checkSignature(key, pq.record.lastResort ? PQSPK_LABEL : PQOPK_LABEL, pq);
  const bundle: PrekeyBundle = { identity, signedPrekey: signed.record, pqPrekey: pq.record };
  if (oneTime) bundle.oneTimePrekey = oneTime;
  return bundle;
}

/**
 * Checks prekeys an owner uploads (for the server): shapes, limits and every signature against
 * the owner's RSA signing key. Throws `bad-prekey` or `bad-signature`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Identity, PrekeyStore, verifyPublished } from "./mod.ts";
 * const bob = await Identity.generate();
 * const store = await PrekeyStore.generate(bob, { oneTime: 2, pqOneTime: 2 });
 * const checked = await verifyPublished(bob.public, JSON.parse(JSON.stringify(store.published())));
 * assert.equal(checked.oneTime.length, 2);
 * ```
 */
export async function verifyPublished(
  owner: PublicIdentity,
  value: unknown,
): Promise<PublishedPrekeys> {
  const raw = isRecord(value) ? value : badPrekey("Published prekeys must be an object");
  const list = (field: unknown, label: string): unknown[] => {
    if (!Array.isArray(field) || field.length > MAX_ONE_TIME_PREKEYS) {
      badPrekey(`The ${label} must be a list of at most ${MAX_ONE_TIME_PREKEYS}`);
    }
    return field;
  };
  const signed = parseSigned(raw.signedPrekey);
  const lastResort = parsePq(raw.pqLastResort);
  if (!lastResort.record.lastResort) badPrekey("The last-resort PQ prekey is marked one-time");
  const pqOneTime = list(raw.pqOneTime, "one-time PQ prekeys").map(parsePq);
  if (pqOneTime.some((pq) => pq.record.lastResort)) {
    badPrekey("A one-time PQ prekey is marked last-resort");
  }
  const oneTime = list(raw.oneTime, "one-time prekeys").map(parseOneTime);
  const ids = [signed, lastResort, ...pqOneTime].map((p) => p.record.id)
    .concat(oneTime.map((o) => o.id));
  if (new Set(ids).size !== ids.length) badPrekey("Published prekey ids must be distinct");
  const key = await importVerifyKey(await parsePublicIdentity(owner));
  await checkSignature(key, SPK_LABEL, signed);
  await checkSignature(key, PQSPK_LABEL, lastResort);
  for (const pq of pqOneTime) await checkSignature(key, PQOPK_LABEL, pq);
  return {
    signedPrekey: signed.record,
    pqLastResort: lastResort.record,
    pqOneTime: pqOneTime.map((pq) => pq.record),
    oneTime,
  };
}

function publicSigned(record: SignedDhRecord): SignedPrekey {
  return {
    id: record.id,
    publicKey: toBase64(record.publicKey),
    createdAt: record.createdAt,
    signature: toBase64(record.signature),
  };
}

function publicPq(record: KemRecord, lastResort: boolean): PqPrekey {
  return {
    id: record.id,
    publicKey: toBase64(record.publicKey),
    lastResort,
    createdAt: record.createdAt,
    signature: toBase64(record.signature),
  };
}

function storeDh(record: DhRecord): StoredDh {
  return { id: record.id, publicKey: toBase64(record.publicKey), secret: toBase64(record.secret) };
}

function storeKem(record: KemRecord): StoredKem {
  return {
    id: record.id,
    publicKey: toBase64(record.publicKey),
    seed: toBase64(record.seed),
    createdAt: record.createdAt,
    signature: toBase64(record.signature),
  };
}

function loadDh(value: unknown): DhRecord {
  const raw = isRecord(value) ? value : badState("A stored X25519 prekey must be an object");
  return {
    id: checkId(raw.id, badState),
    publicKey: bytesField(raw.publicKey, "stored prekey", exactly(X25519_BYTES), badState),
    secret: bytesField(raw.secret, "stored prekey secret", exactly(X25519_BYTES), badState),
  };
}

function loadSignature(raw: Record<string, unknown>): { createdAt: number; signature: Bytes } {
  return {
    createdAt: checkTime(raw.createdAt, badState),
    signature: bytesField(raw.signature, "stored signature", SIGNATURE_LENGTH, badState),
  };
}

function loadSignedDh(value: unknown): SignedDhRecord {
  const raw = isRecord(value) ? value : badState("A stored signed prekey must be an object");
  return { ...loadDh(raw), ...loadSignature(raw) };
}

function loadKem(value: unknown): KemRecord {
  const raw = isRecord(value) ? value : badState("A stored PQ prekey must be an object");
  const id = checkId(raw.id, badState);
  const publicKey = bytesField(
    raw.publicKey,
    "stored PQ prekey",
    exactly(KEM_PUBLIC_BYTES),
    badState,
  );
  const seed = bytesField(raw.seed, "stored PQ seed", exactly(KEM_SEED_BYTES), badState);
  return { id, publicKey, seed, ...loadSignature(raw) };
}

function loadGeneration(value: unknown, retired: boolean): Generation {
  const raw = isRecord(value) ? value : badState("A stored prekey generation must be an object");
  const generation: Generation = { signed: loadSignedDh(raw.signed), pq: loadKem(raw.pq) };
  if (retired) generation.retiredAt = checkTime(raw.retiredAt, badState);
  return generation;
}

function loadList<T>(value: unknown, max: number, load: (item: unknown) => T): T[] {
  if (!Array.isArray(value) || value.length > max) {
    badState(`A stored prekey list must be a list of at most ${max}`);
  }
  return value.map(load);
}

function loadSeen(value: unknown): SeenInit {
  const raw = isRecord(value) ? value : badState("A remembered init must be an object");
  bytesField(raw.ephemeral, "remembered ephemeral key", exactly(X25519_BYTES), badState);
  return {
    signedPrekeyId: checkId(raw.signedPrekeyId, badState),
    ephemeral: String(raw.ephemeral),
  };
}

async function newKem(
  identity: Identity,
  label: string,
  now: number,
  takeId: () => number,
): Promise<KemRecord> {
  const pair = await generateKem();
  const id = takeId();
  return {
    id,
    publicKey: pair.publicKey,
    seed: pair.seed,
    createdAt: now,
    signature: await sign(identity, label, id, pair.publicKey, now),
  };
}

async function newGeneration(
  identity: Identity,
  now: number,
  takeId: () => number,
): Promise<Generation> {
  const pair = await generateDh();
  const id = takeId();
  const signed: SignedDhRecord = {
    id,
    publicKey: pair.publicKey,
    secret: pair.secret,
    createdAt: now,
    signature: await sign(identity, SPK_LABEL, id, pair.publicKey, now),
  };
  return { signed, pq: await newKem(identity, PQSPK_LABEL, now, takeId) };
}

function erase(...arrays: Uint8Array[]): void {
  for (const array of arrays) array.fill(0);
}

/**
 * One identity's private prekeys and the public parts it publishes. Persist
 * {@linkcode PrekeyStore.toJSON} after every change (generation, rotation, pruning, and every
 * accepted initial message, which consumes one-time keys).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Identity, PrekeyStore } from "./mod.ts";
 * const me = await Identity.generate();
 * const store = await PrekeyStore.generate(me, { oneTime: 10, pqOneTime: 10 });
 * const upload = store.published(); // hand to the server
 * const again = PrekeyStore.fromJSON(JSON.parse(JSON.stringify(store)));
 * assert.deepEqual(again.counts(), { oneTime: 10, pqOneTime: 10, previous: 0 });
 * ```
 */
export class PrekeyStore {
  /** Full fingerprint (64 hex digits) of the owner's identity. */
  readonly owner: string;
  #nextId: number;
  #current: Generation;
  #previous: Generation[];
  readonly #oneTime: Map<number, DhRecord>;
  readonly #pqOneTime: Map<number, KemRecord>;
  #seen: SeenInit[];

  private constructor(state: {
    owner: string;
    nextId: number;
    current: Generation;
    previous: Generation[];
    oneTime: DhRecord[];
    pqOneTime: KemRecord[];
    seen: SeenInit[];
  }) {
    this.owner = state.owner;
    this.#nextId = state.nextId;
    this.#current = state.current;
    this.#previous = state.previous;
    this.#oneTime = new Map(state.oneTime.map((record) => [record.id, record]));
    this.#pqOneTime = new Map(state.pqOneTime.map((record) => [record.id, record]));
    this.#seen = state.seen;
  }

  /**
   * Makes a new store: a signed prekey, a last-resort PQ prekey, and `oneTime` / `pqOneTime`
   * one-time prekeys (default {@linkcode DEFAULT_ONE_TIME_PREKEYS} each).
   */
  static async generate(
    identity: Identity,
    options: { oneTime?: number; pqOneTime?: number; now?: number } = {},
  ): Promise<PrekeyStore> {
    const now = options.now ?? Date.now();
    let nextId = 1;
    const current = await newGeneration(identity, now, () => nextId++);
    const store = new PrekeyStore({
      owner: await fingerprintHash(identity.public),
      nextId,
      current,
      previous: [],
      oneTime: [],
      pqOneTime: [],
      seen: [],
    });
    await store.addOneTimePrekeys(options.oneTime ?? DEFAULT_ONE_TIME_PREKEYS);
    await store.addPqOneTimePrekeys(identity, options.pqOneTime ?? DEFAULT_ONE_TIME_PREKEYS, now);
    return store;
  }

  /** Loads a store saved with {@linkcode PrekeyStore.toJSON}; throws `bad-state` if corrupt. */
  static fromJSON(value: unknown): PrekeyStore {
    const raw = isRecord(value) ? value : badState("Stored prekeys must be an object");
    if (raw.format !== FORMAT) badState(`Stored prekeys format is not "${FORMAT}"`);
    if (typeof raw.owner !== "string" || !/^[0-9a-f]{64}$/.test(raw.owner)) {
      badState("Stored prekeys need the owner's 64-digit fingerprint");
    }
    const store = new PrekeyStore({
      owner: raw.owner,
      nextId: checkId(raw.nextId, badState),
      current: loadGeneration(raw.current, false),
      previous: loadList(raw.previous, MAX_PREVIOUS_SIGNED_PREKEYS, (g) => loadGeneration(g, true)),
      oneTime: loadList(raw.oneTime, MAX_ONE_TIME_PREKEYS, loadDh),
      pqOneTime: loadList(raw.pqOneTime, MAX_ONE_TIME_PREKEYS, loadKem),
      seen: loadList(raw.seenInits, MAX_REMEMBERED_INITS, loadSeen),
    });
    const ids = store.#allIds();
    if (new Set(ids).size !== ids.length || ids.some((id) => id >= store.#nextId)) {
      badState("Stored prekey ids must be distinct and below nextId");
    }
    return store;
  }

  /** The persisted form, private keys included: store it with owner-only permissions. */
  toJSON(): StoredPrekeys {
    const generation = (g: Generation): StoredGeneration => {
      const stored: StoredGeneration = {
        signed: {
          ...storeDh(g.signed),
          createdAt: g.signed.createdAt,
          signature: toBase64(g.signed.signature),
        },
        pq: storeKem(g.pq),
      };
      if (g.retiredAt !== undefined) stored.retiredAt = g.retiredAt;
      return stored;
    };
    return {
      format: FORMAT,
      owner: this.owner,
      nextId: this.#nextId,
      current: generation(this.#current),
      previous: this.#previous.map(generation),
      oneTime: [...this.#oneTime.values()].map(storeDh),
      pqOneTime: [...this.#pqOneTime.values()].map(storeKem),
      seenInits: this.#seen.map((seen) => ({ ...seen })),
    };
  }

  /** The public parts to upload to the server. */
  published(): PublishedPrekeys {
    return {
      signedPrekey: publicSigned(this.#current.signed),
      pqLastResort: publicPq(this.#current.pq, true),
      pqOneTime: [...this.#pqOneTime.values()].map((record) => publicPq(record, false)),
      oneTime: [...this.#oneTime.values()].map((record) => ({
        id: record.id,
        publicKey: toBase64(record.publicKey),
      })),
    };
  }

  /** How many unused one-time keys of each kind and replaced signed prekeys are held. */
  counts(): { oneTime: number; pqOneTime: number; previous: number } {
    return {
      oneTime: this.#oneTime.size,
      pqOneTime: this.#pqOneTime.size,
      previous: this.#previous.length,
    };
  }

  /** Adds `count` one-time X25519 prekeys and returns their public parts (to upload). */
  async addOneTimePrekeys(count: number): Promise<OneTimePrekey[]> {
    this.#checkRoom(this.#oneTime.size, count);
    const added: OneTimePrekey[] = [];
    for (let i = 0; i < count; i++) {
      const pair = await generateDh();
      const record = { id: this.#takeId(), publicKey: pair.publicKey, secret: pair.secret };
      this.#oneTime.set(record.id, record);
      added.push({ id: record.id, publicKey: toBase64(record.publicKey) });
    }
    return added;
  }

  /** Adds `count` signed one-time ML-KEM-768 prekeys and returns their public parts. */
  async addPqOneTimePrekeys(
    identity: Identity,
    count: number,
    now: number = Date.now(),
  ): Promise<PqPrekey[]> {
    await this.#checkOwner(identity);
    this.#checkRoom(this.#pqOneTime.size, count);
    const added: PqPrekey[] = [];
    for (let i = 0; i < count; i++) {
      const record = await newKem(identity, PQOPK_LABEL, now, () => this.#takeId());
      this.#pqOneTime.set(record.id, record);
      added.push(publicPq(record, false));
    }
    return added;
  }

  /**
   * Replaces the signed X25519 prekey and the last-resort PQ prekey with new ones. The replaced
   * pair stays usable until {@linkcode PrekeyStore.prune} erases it after the grace period.
   */
  async rotate(identity: Identity, now: number = Date.now()): Promise<void> {
    await this.#checkOwner(identity);
    const next = await newGeneration(identity, now, () => this.#takeId());
    this.#previous.push({ ...this.#current, retiredAt: now });
    this.#current = next;
    while (this.#previous.length > MAX_PREVIOUS_SIGNED_PREKEYS) this.#erase(this.#previous[0]);
  }

  /**
   * Replaces the signed prekeys when they are {@linkcode SIGNED_PREKEY_ROTATION_MS} old or
   * more, then erases replaced ones past their grace period; true when it rotated.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { Identity, PrekeyStore, SIGNED_PREKEY_ROTATION_MS } from "./mod.ts";
   * const bob = await Identity.generate();
   * const prekeys = await PrekeyStore.generate(bob, { oneTime: 0, pqOneTime: 0, now: 0 });
   * assert.equal(await prekeys.rotateIfDue(bob, SIGNED_PREKEY_ROTATION_MS - 1), false);
   * assert.equal(await prekeys.rotateIfDue(bob, SIGNED_PREKEY_ROTATION_MS), true);
   * ```
   */
  async rotateIfDue(identity: Identity, now: number = Date.now()): Promise<boolean> {
    const due = this.#current.signed.createdAt + SIGNED_PREKEY_ROTATION_MS <= now;
    if (due) await this.rotate(identity, now);
    this.prune(now);
    return due;
  }

  /**
   * Erases replaced signed prekeys retired at least `graceMs` before `now`; returns how many
   * were erased. Initial messages that name them fail with `unknown-prekey` from then on.
   */
  prune(now: number = Date.now(), graceMs: number = SIGNED_PREKEY_GRACE_MS): number {
    const expired = this.#previous.filter((g) => (g.retiredAt ?? now) + graceMs <= now);
    for (const generation of expired) this.#erase(generation);
    return expired.length;
  }

  /**
   * For `agreement.ts`: the private keys an initial message names (nothing is consumed).
   * Throws `unknown-prekey` if any of them is not held.
   */
  async findForInit(ids: InitPrekeyIds): Promise<InitPrekeys> {
    const generations = [this.#current, ...this.#previous];
    const signed = generations.find((g) => g.signed.id === ids.signedId)?.signed;
    const pq = ids.pqLastResort
      ? generations.find((g) => g.pq.id === ids.pqId)?.pq
      : this.#pqOneTime.get(ids.pqId);
    const oneTime = ids.oneTimeId === undefined ? undefined : this.#oneTime.get(ids.oneTimeId);
    if (!signed || !pq || (ids.oneTimeId !== undefined && !oneTime)) {
      throw new ConversationError(
        "unknown-prekey",
        "The initial message names a prekey that is not held (used, erased, or not ours)",
      );
    }
    const found: InitPrekeys = {
      signed: await importDh(signed.secret, signed.publicKey),
      pq: await importKem(pq.seed, pq.publicKey),
    };
    if (oneTime) found.oneTime = await importDh(oneTime.secret, oneTime.publicKey);
    return found;
  }

  /**
   * For `agreement.ts`, once the initial message is authentic: erases the one-time keys it used,
   * or, if it used none, remembers its ephemeral key. Atomic: throws `unknown-prekey` (a one-time
   * key went in the meantime) or `init-replayed` without changing anything.
   */
  consumeForInit(ids: InitPrekeyIds, ephemeral: Bytes): void {
    const pqOneTimeId = ids.pqLastResort ? undefined : ids.pqId;
    const gone = (pqOneTimeId !== undefined && !this.#pqOneTime.has(pqOneTimeId)) ||
      (ids.oneTimeId !== undefined && !this.#oneTime.has(ids.oneTimeId));
    if (gone) {
      throw new ConversationError("unknown-prekey", "A one-time prekey was used meanwhile");
    }
    if (pqOneTimeId !== undefined || ids.oneTimeId !== undefined) {
      if (pqOneTimeId !== undefined) this.#takeRecord(this.#pqOneTime, pqOneTimeId);
      if (ids.oneTimeId !== undefined) this.#takeRecord(this.#oneTime, ids.oneTimeId);
      return;
    }
    if (this.hasSeenInit(ids.signedId, ephemeral)) {
      throw new ConversationError("init-replayed", "This initial message was already accepted");
    }
    this.#seen.push({ signedPrekeyId: ids.signedId, ephemeral: toBase64(ephemeral) });
    if (this.#seen.length > MAX_REMEMBERED_INITS) this.#seen.shift();
  }

  /** Whether an initial message with this signed prekey and ephemeral key was accepted. */
  hasSeenInit(signedId: number, ephemeral: Bytes): boolean {
    const text = toBase64(ephemeral);
    return this.#seen.some((s) => s.signedPrekeyId === signedId && s.ephemeral === text);
  }

  #takeRecord<T extends { secret?: Bytes; seed?: Bytes }>(map: Map<number, T>, id: number): void {
    const record = map.get(id);
    map.delete(id);
    if (record?.secret) erase(record.secret);
    if (record?.seed) erase(record.seed);
  }

  #erase(generation: Generation): void {
    this.#previous = this.#previous.filter((g) => g !== generation);
    this.#seen = this.#seen.filter((s) => s.signedPrekeyId !== generation.signed.id);
    erase(generation.signed.secret, generation.pq.seed);
  }

  #takeId(): number {
    if (this.#nextId > MAX_ID) {
      throw new ConversationError("too-many-prekeys", "This store has used every prekey id");
    }
    return this.#nextId++;
  }

  #checkRoom(held: number, count: number): void {
    if (!Number.isInteger(count) || count < 0 || held + count > MAX_ONE_TIME_PREKEYS) {
      throw new ConversationError(
        "too-many-prekeys",
        `Adding "${count}" one-time prekeys to ${held} would exceed ${MAX_ONE_TIME_PREKEYS}`,
      );
    }
  }

  async #checkOwner(identity: Identity): Promise<void> {
    if (await fingerprintHash(identity.public) !== this.owner) {
      throw new ConversationError("wrong-peer", "These prekeys belong to another identity");
    }
  }

  #allIds(): number[] {
    const generations = [this.#current, ...this.#previous];
    return [
      ...generations.flatMap((g) => [g.signed.id, g.pq.id]),
      ...this.#oneTime.keys(),
      ...this.#pqOneTime.keys(),
    ];
  }
}
