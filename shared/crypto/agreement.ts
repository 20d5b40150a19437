/**
 * Starting a conversation with someone who may be offline: a PQXDH-style agreement (Signal's
 * X3DH with a post-quantum KEM, revision of 2023) over the responder's published prekeys, whose
 * result seeds both sides' Double Ratchet.
 *
 * reelay identities are RSA keys, which cannot take part in a Diffie-Hellman, so where X3DH mixes
 * DH(IK_A, SPK_B) and DH(EK_A, IK_B) into the key we authenticate with signatures instead:
 *
 * 1. The initiator checks the bundle: it belongs to the responder's pinned RSA keys and the
 *    signed prekey (SPK) and PQ prekey are signed by them (`prekeys.ts`).
 * 2. It makes an ephemeral X25519 key EK and computes DH1 = DH(EK, SPK), DH2 = DH(EK, OPK) when a
 *    one-time prekey came with the bundle, and (CT, SS) = ML-KEM-768 encapsulation to the PQ
 *    prekey. SK = HKDF-SHA-256(salt = 32 zero bytes, ikm = 32 x 0xFF || DH1 || DH2? || SS,
 *    info = fields("reelay-pqxdh-v1", initiator fingerprint, responder fingerprint)); the 0xFF
 *    prefix is PQXDH's domain separator from other uses of the same curve keys.
 * 3. It signs (RSA-PSS) the transcript fields("reelay-init-v1", version, both names, both
 *    identity fingerprints, SPK id and key, PQ prekey id, kind and key, OPK id and key or two
 *    empty fields, EK, CT). The responder thus knows who started the conversation, with which
 *    of its keys, for whom: nobody can redirect the initial message to someone else or claim it.
 * 4. The responder checks names and fingerprints against its own and the initiator's pinned keys,
 *    finds the named private prekeys, verifies the signature (before any decapsulation), derives
 *    SK, and opens the first ratchet message with it. Only then are the one-time prekeys erased
 *    (or, if none was used, EK remembered so the initial message cannot be replayed while the
 *    SPK lives); a refused initial message consumes nothing.
 *
 * The conversation's associated data is AD = fields(initiator fingerprint, responder
 * fingerprint, initiator name, responder name); the responder's SPK is its first ratchet key,
 * as in Signal.
 *
 * Deniability is lost: X3DH lets either party deny the conversation because anyone could have
 * computed its transcript; here the initiator's RSA signature is a transferable proof that the
 * initiator started a conversation with the responder (not of what was said). Forward secrecy
 * of the first messages rests on the one-time prekeys: without them, a thief of the responder's
 * SPK and last-resort PQ private keys can read an initial message until those are rotated and
 * erased (as in Signal).
 *
 * Wire form of the init (integers big-endian). The initial message is `u32 length + init`
 * followed by the first ratchet message; an initiator attaches the same init to every message
 * until it has opened a reply ({@linkcode Ratchet.hasReceived}).
 *
 * ```text
 * u8   version = 1
 * u16  length + initiator name (1-32 bytes, see `shared/names.ts`)
 * u16  length + responder name
 * 32   initiator identity fingerprint (SHA-256 over both RSA SPKIs)
 * 32   responder identity fingerprint
 * u32  signed prekey id
 * u32  PQ prekey id
 * u8   PQ prekey kind: 0 one-time, 1 last-resort
 * u8   one-time prekey present: 0 or 1
 * [u32 one-time prekey id]
 * 32   EK (X25519 public key)
 * 1088 ML-KEM-768 ciphertext
 * u16  length + RSA-PSS signature (256-512)
 * ```
 *
 * @module
 */

import {
  ByteReader,
  type Bytes,
  concat,
  encodeFields,
  type Field,
  fromUtf8,
  toHex,
  u64,
  utf8,
} from "../bytes.ts";
import { MAX_NAME_LENGTH } from "../names.ts";
import { ConversationError } from "./conversation_error.ts";
import {
  decapsulate,
  dh,
  encapsulate,
  generateDh,
  KEM_CIPHERTEXT_BYTES,
  X25519_BYTES,
} from "./_keys.ts";
import {
  checkName,
  fingerprintBytes,
  type Identity,
  importVerifyKey,
  parsePublicIdentity,
  type PublicIdentity,
  verifyPss,
} from "./identity.ts";
import { hkdf, KEY_BYTES } from "./kdf.ts";
import { type InitPrekeyIds, type PrekeyStore, verifyBundle } from "./prekeys.ts";
import { MAX_RATCHET_MESSAGE_BYTES, Ratchet } from "./ratchet.ts";

/** Version byte of the init format. */
export const INIT_VERSION = 1;

const INIT_LABEL = "reelay-init-v1";
const KDF_LABEL = "reelay-pqxdh-v1";
const FINGERPRINT_BYTES = 32;
const MIN_SIGNATURE_BYTES = 256;
const MAX_SIGNATURE_BYTES = 512;
const PQ_ONE_TIME = 0;
const PQ_LAST_RESORT = 1;

/** Largest init in bytes. */
export const MAX_INIT_BYTES = 1 + 2 * (2 + MAX_NAME_LENGTH) + 2 * FINGERPRINT_BYTES + 4 + 4 + 1 +
  1 + 4 + X25519_BYTES + KEM_CIPHERTEXT_BYTES + 2 + MAX_SIGNATURE_BYTES;
/** Largest initial message (init plus first ratchet message) in bytes. */
export const MAX_INITIAL_MESSAGE_BYTES = 4 + MAX_INIT_BYTES + MAX_RATCHET_MESSAGE_BYTES;

/** What an init says, read without verifying anything (to route it to the right conversation). */
export interface InitSummary {
  /** Who claims to start the conversation. */
  initiatorName: string;
  /** Whom it is for. */
  responderName: string;
  /** Claimed initiator identity fingerprint (64 hex digits). */
  initiatorFingerprint: string;
  /** Claimed responder identity fingerprint (64 hex digits). */
  responderFingerprint: string;
  /** The responder's prekeys it names. */
  prekeys: InitPrekeyIds;
}

interface ParsedInit extends InitSummary {
  version: number;
  initiatorFp: Bytes;
  responderFp: Bytes;
  ephemeral: Bytes;
  ciphertext: Bytes;
  signature: Bytes;
}

/** The parameters of {@linkcode initiate}. */
export interface InitiateOptions {
  /** Our identity. */
  identity: Identity;
  /** Our name. */
  name: string;
  /** The responder's name. */
  peerName: string;
  /** The responder's public keys as we pinned them; the bundle must belong to them. */
  peerIdentity: PublicIdentity;
  /** The responder's prekey bundle as the server handed it (checked here). */
  bundle: unknown;
}

/** What {@linkcode initiate} returns. */
export interface Initiated {
  /** Our side of the conversation, ready to send. */
  ratchet: Ratchet;
  /** The signed init to attach to our messages until {@linkcode Ratchet.hasReceived}. */
  init: Bytes;
}

/** The parameters of {@linkcode respond}. */
export interface RespondOptions {
  /** Our identity. */
  identity: Identity;
  /** Our name. */
  name: string;
  /** Our prekeys; one-time keys the init used are erased from it on success (persist it). */
  prekeys: PrekeyStore;
  /** The name the initiator is known by (the relay's sender name). */
  peerName: string;
  /** The initiator's public keys as we pinned them. */
  peerIdentity: PublicIdentity;
  /** The init. */
  init: Bytes;
  /** The first ratchet message that came with it. */
  message: Bytes;
}

/** What {@linkcode respond} returns. */
export interface Responded {
  /** Our side of the conversation, ready to send and receive. */
  ratchet: Ratchet;
  /** The first message's plaintext. */
  plaintext: Bytes;
  /** Messages skipped before it. */
  missing: number;
}

function refuse(code: ConversationError["code"], message: string): never {
  throw new ConversationError(code, message);
}

function u32(value: number): Bytes {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, value);
  return out;
}

function readU32(reader: ByteReader): number {
  return new DataView(reader.fixed(4).buffer).getUint32(0);
}

function readName(reader: ByteReader): string {
  const name = fromUtf8(reader.prefixed16(1, MAX_NAME_LENGTH));
  if (name === undefined) throw new RangeError("A name is not UTF-8");
  return name;
}

/**
 * The associated data of a conversation, bound into every ratchet message.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { conversationAd } from "./agreement.ts";
 * const ad = conversationAd(new Uint8Array(32), new Uint8Array(32), "alice", "bob");
 * assert.equal(ad.length, 4 + 32 + 4 + 32 + 4 + 5 + 4 + 3);
 * ```
 */
export function conversationAd(
  initiatorFingerprint: Bytes,
  responderFingerprint: Bytes,
  initiatorName: string,
  responderName: string,
): Bytes {
  return encodeFields([initiatorFingerprint, responderFingerprint, initiatorName, responderName]);
}

function parseInit(init: Bytes): ParsedInit {
  if (init.length > MAX_INIT_BYTES) {
    refuse("bad-init", `An init of "${init.length}" bytes is too long`);
  }
  try {
    const reader = new ByteReader(init);
    const version = reader.u8();
    if (version !== INIT_VERSION) throw new RangeError(`Init version ${version} is unknown`);
    const initiatorName = readName(reader);
    const responderName = readName(reader);
    const initiatorFp = reader.fixed(FINGERPRINT_BYTES);
    const responderFp = reader.fixed(FINGERPRINT_BYTES);
    const signedId = readU32(reader);
    const pqId = readU32(reader);
    const kind = reader.u8();
    if (kind !== PQ_ONE_TIME && kind !== PQ_LAST_RESORT) throw new RangeError("Bad PQ kind");
    const hasOneTime = reader.u8();
    if (hasOneTime > 1) throw new RangeError("Bad one-time flag");
    const prekeys: InitPrekeyIds = { signedId, pqId, pqLastResort: kind === PQ_LAST_RESORT };
    if (hasOneTime) prekeys.oneTimeId = readU32(reader);
    const parsed: ParsedInit = {
      version,
      initiatorName,
      responderName,
      initiatorFp,
      responderFp,
      initiatorFingerprint: toHex(initiatorFp),
      responderFingerprint: toHex(responderFp),
      prekeys,
      ephemeral: reader.fixed(X25519_BYTES),
      ciphertext: reader.fixed(KEM_CIPHERTEXT_BYTES),
      signature: reader.prefixed16(MIN_SIGNATURE_BYTES, MAX_SIGNATURE_BYTES),
    };
    reader.end();
    return parsed;
  } catch (error) {
    throw new ConversationError("bad-init", `The init is malformed: ${String(error)}`, {
      cause: error,
    });
  }
}

function encodeInit(parsed: Omit<ParsedInit, keyof InitSummary | "version">, summary: {
  initiatorName: string;
  responderName: string;
  prekeys: InitPrekeyIds;
}): Bytes {
  const name = (text: string) => {
    const bytes = utf8(text);
    return concat([new Uint8Array([bytes.length >> 8, bytes.length & 255]), bytes]);
  };
  const { prekeys } = summary;
  const signature = parsed.signature;
  return concat([
    new Uint8Array([INIT_VERSION]),
    name(summary.initiatorName),
    name(summary.responderName),
    parsed.initiatorFp,
    parsed.responderFp,
    u32(prekeys.signedId),
    u32(prekeys.pqId),
    new Uint8Array([prekeys.pqLastResort ? PQ_LAST_RESORT : PQ_ONE_TIME]),
    prekeys.oneTimeId === undefined
      ? new Uint8Array([0])
      : concat([new Uint8Array([1]), u32(prekeys.oneTimeId)]),
    parsed.ephemeral,
    parsed.ciphertext,
    new Uint8Array([signature.length >> 8, signature.length & 255]),
    signature,
  ]);
}

/** The public keys an init names, which its signature covers. */
interface NamedKeys {
  signed: Bytes;
  pq: Bytes;
  oneTime?: Bytes;
}

function transcript(
  summary: { initiatorName: string; responderName: string; prekeys: InitPrekeyIds },
  fields: { initiatorFp: Bytes; responderFp: Bytes; ephemeral: Bytes; ciphertext: Bytes },
  keys: NamedKeys,
): Bytes {
  const { prekeys } = summary;
  const oneTime: Field[] = prekeys.oneTimeId === undefined || !keys.oneTime
    ? [new Uint8Array(), new Uint8Array()]
    : [u64(prekeys.oneTimeId), keys.oneTime];
  return encodeFields([
    INIT_LABEL,
    new Uint8Array([INIT_VERSION]),
    summary.initiatorName,
    summary.responderName,
    fields.initiatorFp,
    fields.responderFp,
    u64(prekeys.signedId),
    keys.signed,
    u64(prekeys.pqId),
    new Uint8Array([prekeys.pqLastResort ? PQ_LAST_RESORT : PQ_ONE_TIME]),
    keys.pq,
    ...oneTime,
    fields.ephemeral,
    fields.ciphertext,
  ]);
}

async function sessionKey(
  secrets: Bytes[],
  initiatorFp: Bytes,
  responderFp: Bytes,
): Promise<Bytes> {
  const ikm = concat([new Uint8Array(32).fill(0xff), ...secrets]);
  const key = await hkdf(ikm, new Uint8Array(32), [KDF_LABEL, initiatorFp, responderFp], KEY_BYTES);
  for (const secret of [ikm, ...secrets]) secret.fill(0);
  return key;
}

/**
 * Starts a conversation: checks the bundle against the responder's pinned keys, runs the
 * agreement and returns our ratchet (ready to send) with the signed init to attach.
 * Throws `bad-prekey`, `bad-signature` or `wrong-peer` (a bundle of other keys).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeInitialMessage, Identity, initiate, PrekeyStore, respond } from "./mod.ts";
 * const [alice, bob] = [await Identity.generate(), await Identity.generate()];
 * const prekeys = await PrekeyStore.generate(bob, { oneTime: 1, pqOneTime: 1 });
 * const parts = prekeys.published();
 * const bundle = {
 *   identity: bob.public,
 *   signedPrekey: parts.signedPrekey,
 *   pqPrekey: parts.pqOneTime[0],
 *   oneTimePrekey: parts.oneTime[0],
 * };
 * const started = await initiate({
 *   identity: alice, name: "alice", peerName: "bob", peerIdentity: bob.public, bundle,
 * });
 * const first = await started.ratchet.encrypt(new TextEncoder().encode("hello"));
 * const wire = encodeInitialMessage(started.init, first); // what the server relays
 * const answered = await respond({
 *   identity: bob, name: "bob", prekeys, peerName: "alice", peerIdentity: alice.public,
 *   init: started.init, message: first,
 * });
 * assert.equal(new TextDecoder().decode(answered.plaintext), "hello");
 * ```
 */
export async function initiate(options: InitiateOptions): Promise<Initiated> {
  const initiatorName = checkName(options.name);
  const responderName = checkName(options.peerName);
  const peerIdentity = await parsePublicIdentity(options.peerIdentity);
  const bundle = await verifyBundle(options.bundle, peerIdentity);
  const keys: NamedKeys = {
    signed: Uint8Array.fromBase64(bundle.signedPrekey.publicKey) as Bytes,
    pq: Uint8Array.fromBase64(bundle.pqPrekey.publicKey) as Bytes,
  };
  const prekeys: InitPrekeyIds = {
    signedId: bundle.signedPrekey.id,
    pqId: bundle.pqPrekey.id,
    pqLastResort: bundle.pqPrekey.lastResort,
  };
  if (bundle.oneTimePrekey) {
    keys.oneTime = Uint8Array.fromBase64(bundle.oneTimePrekey.publicKey) as Bytes;
    prekeys.oneTimeId = bundle.oneTimePrekey.id;
  }
  const ephemeral = await generateDh();
  const [initiatorFp, responderFp, dh1, dh2, kem] = await Promise.all([
    fingerprintBytes(options.identity.public),
    fingerprintBytes(peerIdentity),
    dh(ephemeral.privateKey, keys.signed, "bad-prekey"),
    keys.oneTime ? dh(ephemeral.privateKey, keys.oneTime, "bad-prekey") : undefined,
    encapsulate(keys.pq),
  ]);
  const secrets = dh2 ? [dh1, dh2, kem.sharedKey] : [dh1, kem.sharedKey];
  const sk = await sessionKey(secrets, initiatorFp, responderFp);
  ephemeral.secret.fill(0);
  const summary = { initiatorName, responderName, prekeys };
  const fields = {
    initiatorFp,
    responderFp,
    ephemeral: ephemeral.publicKey,
    ciphertext: kem.ciphertext,
  };
  const signature = await options.identity.sign(transcript(summary, fields, keys));
  const ad = conversationAd(initiatorFp, responderFp, initiatorName, responderName);
  const ratchet = await Ratchet.initiator(sk, keys.signed, ad);
  sk.fill(0);
  return { ratchet, init: encodeInit({ ...fields, signature }, summary) };
}

/**
 * Reads an init without verifying it, to see who claims to send it and which prekeys it names.
 * Throws `bad-init` if it is malformed.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readInit } from "./agreement.ts";
 * assert.throws(() => readInit(new Uint8Array([1, 2, 3])), { code: "bad-init" });
 * ```
 */
export function readInit(init: Bytes): InitSummary {
  const parsed = parseInit(init);
  return {
    initiatorName: parsed.initiatorName,
    responderName: parsed.responderName,
    initiatorFingerprint: parsed.initiatorFingerprint,
    responderFingerprint: parsed.responderFingerprint,
    prekeys: { ...parsed.prekeys },
  };
}

/**
 * Accepts a conversation someone started: checks the init (names, fingerprints, the
 * initiator's signature), derives the session key from our named prekeys, opens the first
 * message and only then erases the one-time prekeys used. Throws `bad-init`, `wrong-peer`,
 * `unknown-prekey`, `bad-signature`, `init-replayed` or a ratchet error, and then changes
 * nothing. See {@linkcode initiate} for an example.
 */
export async function respond(options: RespondOptions): Promise<Responded> {
  const init = parseInit(options.init);
  const name = checkName(options.name);
  const peerIdentity = await parsePublicIdentity(options.peerIdentity);
  const [ownFp, peerFp] = await Promise.all([
    fingerprintBytes(options.identity.public),
    fingerprintBytes(peerIdentity),
  ]);
  if (init.responderName !== name || init.initiatorName !== options.peerName) {
    refuse("wrong-peer", `The init is from "${init.initiatorName}" to "${init.responderName}"`);
  }
  if (
    toHex(ownFp) !== init.responderFingerprint || toHex(peerFp) !== init.initiatorFingerprint ||
    options.prekeys.owner !== init.responderFingerprint
  ) {
    refuse("wrong-peer", "The init names other identity keys than ours and the sender's");
  }
  const { prekeys } = init;
  const noOneTime = prekeys.pqLastResort && prekeys.oneTimeId === undefined;
  if (noOneTime && options.prekeys.hasSeenInit(prekeys.signedId, init.ephemeral)) {
    refuse("init-replayed", "This initial message was already accepted");
  }
  const found = await options.prekeys.findForInit(prekeys);
  const keys: NamedKeys = { signed: found.signed.publicKey, pq: found.pq.publicKey };
  if (found.oneTime) keys.oneTime = found.oneTime.publicKey;
  const verifyKey = await importVerifyKey(peerIdentity);
  if (!await verifyPss(verifyKey, init.signature, transcript(init, init, keys))) {
    refuse("bad-signature", `The init is not signed by "${init.initiatorName}"`);
  }
  const [dh1, dh2, shared] = await Promise.all([
    dh(found.signed.privateKey, init.ephemeral, "bad-init"),
    found.oneTime ? dh(found.oneTime.privateKey, init.ephemeral, "bad-init") : undefined,
    decapsulate(found.pq.privateKey, init.ciphertext),
  ]);
  const sk = await sessionKey(dh2 ? [dh1, dh2, shared] : [dh1, shared], peerFp, ownFp);
  const ad = conversationAd(peerFp, ownFp, init.initiatorName, name);
  const ratchet = await Ratchet.responder(sk, found.signed.secret, ad);
  sk.fill(0);
  const opened = await ratchet.decrypt(options.message);
  options.prekeys.consumeForInit(prekeys, init.ephemeral);
  return { ratchet, plaintext: opened.plaintext, missing: opened.missing };
}

/**
 * The initial message: `u32 length + init`, then the ratchet message.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeInitialMessage, encodeInitialMessage } from "./agreement.ts";
 * const wire = encodeInitialMessage(new Uint8Array([1]), new Uint8Array([2, 3]));
 * assert.deepEqual(decodeInitialMessage(wire).message, new Uint8Array([2, 3]));
 * ```
 */
export function encodeInitialMessage(init: Bytes, message: Bytes): Bytes {
  return concat([u32(init.length), init, message]);
}

/** Splits an initial message; throws `bad-init` if it is malformed or too long. */
export function decodeInitialMessage(bytes: Bytes): { init: Bytes; message: Bytes } {
  if (bytes.length > MAX_INITIAL_MESSAGE_BYTES) {
    refuse("bad-init", `An initial message of "${bytes.length}" bytes is too long`);
  }
  try {
    const reader = new ByteReader(bytes);
    const init = reader.prefixed32(1, MAX_INIT_BYTES);
    return { init, message: bytes.slice(4 + init.length) };
  } catch (error) {
    throw new ConversationError("bad-init", "The initial message is malformed", { cause: error });
  }
}
