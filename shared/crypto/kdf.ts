/**
 * Key derivation for lasting conversations, all HKDF-SHA-256 (RFC 5869) through WebCrypto:
 * the agreement's session key, the Double Ratchet's root KDF (`KDF_RK`) and its chain KDF
 * (`KDF_CK`) with the per-message AES-256-GCM key and nonce.
 *
 * `KDF_CK` as the Double Ratchet specification recommends it is HMAC-SHA-256 keyed by the chain
 * key over a constant: 0x01 for the message key, 0x02 for the next chain key. WebCrypto can only
 * compute an HMAC after importing its key, and every WebCrypto call costs tens of microseconds,
 * so importing each new chain key (then signing twice, then an HKDF import and derive for the
 * AES key and nonce) would cost five calls per message. We get the same HMACs in two calls that
 * run side by side: HKDF-Extract(salt, ikm) *is* HMAC(salt, ikm), so HKDF with the chain key as
 * salt and the constant as the (once-imported) input key material computes
 *
 * ```text
 * mk         = HMAC-SHA-256(ck, 0x01)                             (the specification's message key)
 * key||nonce = HKDF-Expand(mk, fields("reelay-message-v1"), 44)   (AES-256 key, 96-bit GCM nonce)
 * ck'        = HKDF-Expand(HMAC-SHA-256(ck, 0x02), fields("reelay-chain-v1"), 32)
 * KDF_RK:      rk'||ck = HKDF(salt = rk, ikm = DH output, info = fields("reelay-root-v1"), 64)
 * ```
 *
 * (`fields(...)` is the length-prefixed `encodeFields` of `shared/bytes.ts`.) A fresh key per
 * message would allow a constant nonce; deriving it too costs nothing, as it comes from the same
 * call.
 *
 * The message key and nonce are thus derived from `mk` by HKDF exactly; the next chain key is
 * the specification's HMAC(ck, 0x02) passed once more through HKDF-Expand (a PRF keyed by it),
 * which keeps the chain one-way and independent of every message key.
 *
 * @module
 */

import { type Bytes, encodeFields, type Field } from "../bytes.ts";

/** Bytes of a root key, chain key or session key. */
export const KEY_BYTES = 32;
/** Bytes of an AES-GCM nonce. */
export const NONCE_BYTES = 12;

const HASH = "SHA-256";
const ROOT_INFO = encodeFields(["reelay-root-v1"]);
const MESSAGE_INFO = encodeFields(["reelay-message-v1"]);
const CHAIN_INFO = encodeFields(["reelay-chain-v1"]);
const constantKeys = new Map<number, Promise<CryptoKey>>();

/** The HKDF key whose material is the single byte `value`, imported once per process. */
function constantKey(value: number): Promise<CryptoKey> {
  let key = constantKeys.get(value);
  if (!key) {
    key = crypto.subtle.importKey("raw", new Uint8Array([value]), "HKDF", false, ["deriveBits"]);
    constantKeys.set(value, key);
  }
  return key;
}

async function derive(key: CryptoKey, salt: Bytes, info: Bytes, bytes: number): Promise<Bytes> {
  const params = { name: "HKDF", hash: HASH, salt, info };
  return new Uint8Array(await crypto.subtle.deriveBits(params, key, bytes * 8));
}

/**
 * HKDF-SHA-256 of input key material `ikm` with `salt` and the length-prefixed `info` fields.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { hkdf } from "./kdf.ts";
 * const okm = await hkdf(new Uint8Array(32), new Uint8Array(32), ["example"], 32);
 * assert.equal(okm.length, 32);
 * ```
 */
export async function hkdf(
  ikm: Bytes,
  salt: Bytes,
  info: readonly Field[],
  bytes: number,
): Promise<Bytes> {
  const key = await crypto.subtle.importKey("raw", ikm, "HKDF", false, ["deriveBits"]);
  return derive(key, salt, encodeFields(info), bytes);
}

/**
 * `KDF_RK`: a Diffie-Hellman output mixed into the root key gives the next root key and a new
 * chain key (HKDF-SHA-256, salt = root key, ikm = DH output, 64 bytes split in two).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { kdfRoot } from "./kdf.ts";
 * const { rootKey, chainKey } = await kdfRoot(new Uint8Array(32), new Uint8Array(32).fill(7));
 * assert.equal(rootKey.length + chainKey.length, 64);
 * ```
 */
export async function kdfRoot(
  rootKey: Bytes,
  dhOutput: Bytes,
): Promise<{ rootKey: Bytes; chainKey: Bytes }> {
  const key = await crypto.subtle.importKey("raw", dhOutput, "HKDF", false, ["deriveBits"]);
  const out = await derive(key, rootKey, ROOT_INFO, 2 * KEY_BYTES);
  return { rootKey: out.slice(0, KEY_BYTES), chainKey: out.slice(KEY_BYTES) };
}

/** One step of a sending or receiving chain. */
export interface ChainStep {
  /** AES-256-GCM key for this message. */
  key: Bytes;
  /** AES-GCM nonce for this message. */
  nonce: Bytes;
  /** The chain key that replaces the one stepped from. */
  nextChainKey: Bytes;
}

/**
 * `KDF_CK` with the message's AES key and nonce (see the module header): two WebCrypto calls.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { kdfChain } from "./kdf.ts";
 * const step = await kdfChain(new Uint8Array(32));
 * assert.deepEqual([step.key.length, step.nonce.length, step.nextChainKey.length], [32, 12, 32]);
 * ```
 */
export async function kdfChain(chainKey: Bytes): Promise<ChainStep> {
  const [one, two] = await Promise.all([constantKey(1), constantKey(2)]);
  const [message, nextChainKey] = await Promise.all([
    derive(one, chainKey, MESSAGE_INFO, KEY_BYTES + NONCE_BYTES),
    derive(two, chainKey, CHAIN_INFO, KEY_BYTES),
  ]);
  return { key: message.slice(0, KEY_BYTES), nonce: message.slice(KEY_BYTES), nextChainKey };
}

/**
 * Only the next chain key: what skipping a message costs (one WebCrypto call), since the keys
 * of skipped messages are never kept.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { kdfChain, nextChainKey } from "./kdf.ts";
 * const ck = new Uint8Array(32);
 * assert.equal((await nextChainKey(ck)).toHex(), (await kdfChain(ck)).nextChainKey.toHex());
 * ```
 */
export async function nextChainKey(chainKey: Bytes): Promise<Bytes> {
  return derive(await constantKey(2), chainKey, CHAIN_INFO, KEY_BYTES);
}
