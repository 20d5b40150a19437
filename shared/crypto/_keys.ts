/**
 * X25519 and ML-KEM-768 keys for prekeys, the agreement and the ratchet: generation, the byte
 * forms they are published and persisted in, and the checks WebCrypto leaves to us.
 *
 * Persisted forms: an X25519 private key is its 32-byte scalar (JWK `d`), re-imported as a JWK
 * with `d` only so the public key is recomputed, never trusted from storage; an ML-KEM-768
 * private key is its 64-byte seed (`raw-seed`, FIPS 203 (d, z)), the smallest form Deno
 * re-imports. Deno 2.9's ML-KEM `raw-public` import does not run the FIPS 203 modulus check on
 * an encapsulation key, so {@linkcode checkKemPublicKey} does it before we encapsulate.
 *
 * @module
 */

import type { Bytes } from "../bytes.ts";
import { ConversationError, type ConversationErrorCode } from "./conversation_error.ts";

/** Bytes of an X25519 public key, private scalar or shared secret. */
export const X25519_BYTES = 32;
/** Bytes of an ML-KEM-768 encapsulation (public) key. */
export const KEM_PUBLIC_BYTES = 1184;
/** Bytes of an ML-KEM-768 ciphertext. */
export const KEM_CIPHERTEXT_BYTES = 1088;
/** Bytes of an ML-KEM-768 private seed. */
export const KEM_SEED_BYTES = 64;

const X25519: Algorithm = { name: "X25519" };
const KEM: Algorithm = { name: "ML-KEM-768" };
const KEM_Q = 3329;
// TypeScript 6's DOM types do not know ML-KEM yet.
const KEM_USAGES = ["encapsulateBits", "decapsulateBits"] as unknown as KeyUsage[];
const DECAPSULATE = ["decapsulateBits"] as unknown as KeyUsage[];
const ENCAPSULATE = ["encapsulateBits"] as unknown as KeyUsage[];
type KeyFormatExt = "raw-seed" | "raw-public";

interface KemSubtle {
  encapsulateBits(
    algorithm: Algorithm,
    key: CryptoKey,
  ): Promise<{ ciphertext: ArrayBuffer; sharedKey: ArrayBuffer }>;
  decapsulateBits(algorithm: Algorithm, key: CryptoKey, ciphertext: Bytes): Promise<ArrayBuffer>;
  exportKey(format: KeyFormatExt, key: CryptoKey): Promise<ArrayBuffer>;
  importKey(
    format: KeyFormatExt,
    data: Bytes,
    algorithm: Algorithm,
    extractable: boolean,
    usages: KeyUsage[],
  ): Promise<CryptoKey>;
}
const kemSubtle = crypto.subtle as unknown as KemSubtle;

/** An X25519 key pair with the bytes that persist it. */
export interface DhKeyPair {
  /** The private key, for `deriveBits`. */
  privateKey: CryptoKey;
  /** The 32-byte public key. */
  publicKey: Bytes;
  /** The 32-byte private scalar (what is stored). */
  secret: Bytes;
}

/** An ML-KEM-768 key pair with the bytes that persist it. */
export interface KemKeyPair {
  /** The private (decapsulation) key. */
  privateKey: CryptoKey;
  /** The 1184-byte encapsulation key. */
  publicKey: Bytes;
  /** The 64-byte seed (what is stored). */
  seed: Bytes;
}

function fail(code: ConversationErrorCode, message: string, cause?: unknown): never {
  throw new ConversationError(code, message, { cause });
}

function b64url(bytes: Uint8Array): string {
  return bytes.toBase64({ alphabet: "base64url", omitPadding: true });
}

function fromB64url(text: string | undefined): Bytes {
  return Uint8Array.fromBase64(text ?? "", { alphabet: "base64url" }) as Bytes;
}

/**
 * Generates an X25519 key pair.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateDh } from "./_keys.ts";
 * assert.equal((await generateDh()).publicKey.length, 32);
 * ```
 */
export async function generateDh(): Promise<DhKeyPair> {
  const pair = await crypto.subtle.generateKey(X25519, true, ["deriveBits"]) as CryptoKeyPair;
  const jwk = await crypto.subtle.exportKey("jwk", pair.privateKey);
  return { privateKey: pair.privateKey, publicKey: fromB64url(jwk.x), secret: fromB64url(jwk.d) };
}

/**
 * Re-imports a stored X25519 private scalar; the public key is recomputed and, when
 * `expectedPublic` is given, must match it. Throws `code` when the bytes are unusable.
 */
export async function importDh(
  secret: Bytes,
  expectedPublic: Bytes | undefined,
  code: ConversationErrorCode = "bad-state",
): Promise<DhKeyPair> {
  if (secret.length !== X25519_BYTES) fail(code, `An X25519 private key must be 32 bytes`);
  let privateKey: CryptoKey;
  let publicKey: Bytes;
  try {
    const jwk = { kty: "OKP", crv: "X25519", d: b64url(secret) };
    privateKey = await crypto.subtle.importKey("jwk", jwk, X25519, true, ["deriveBits"]);
    publicKey = fromB64url((await crypto.subtle.exportKey("jwk", privateKey)).x);
  } catch (error) {
    fail(code, "A stored X25519 private key does not import", error);
  }
  if (expectedPublic && publicKey.toHex() !== expectedPublic.toHex()) {
    fail(code, "A stored X25519 private key does not match its public key");
  }
  return { privateKey, publicKey, secret: secret.slice() };
}

/**
 * X25519 between our private key and a peer's 32-byte public key. WebCrypto refuses an
 * all-zero result (a low-order peer key); we check it again so no other runtime can slip one in.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { dh, generateDh } from "./_keys.ts";
 * const [a, b] = [await generateDh(), await generateDh()];
 * (await dh(a.privateKey, b.publicKey)).toHex() === (await dh(b.privateKey, a.publicKey)).toHex();
 * ```
 */
export async function dh(
  privateKey: CryptoKey,
  peerPublic: Bytes,
  code: ConversationErrorCode = "not-authentic",
): Promise<Bytes> {
  let out: Bytes;
  try {
    const pub = await crypto.subtle.importKey("raw", peerPublic, X25519, true, []);
    out = new Uint8Array(
      await crypto.subtle.deriveBits({ name: "X25519", public: pub }, privateKey, 256),
    );
  } catch (error) {
    fail(code, "An X25519 public key is unusable", error);
  }
  if (out.every((byte) => byte === 0)) fail(code, "An X25519 public key has low order");
  return out;
}

/**
 * Generates an ML-KEM-768 key pair.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateKem } from "./_keys.ts";
 * assert.equal((await generateKem()).publicKey.length, 1184);
 * ```
 */
export async function generateKem(): Promise<KemKeyPair> {
  const pair = await crypto.subtle.generateKey(KEM, true, KEM_USAGES) as CryptoKeyPair;
  const [publicKey, seed] = await Promise.all([
    kemSubtle.exportKey("raw-public", pair.publicKey),
    kemSubtle.exportKey("raw-seed", pair.privateKey),
  ]);
  return {
    privateKey: pair.privateKey,
    publicKey: new Uint8Array(publicKey),
    seed: new Uint8Array(seed),
  };
}

/**
 * Re-imports a stored ML-KEM-768 seed; its encapsulation key is recomputed and must equal
 * `expectedPublic`. Throws `code` when the bytes are unusable.
 */
export async function importKem(
  seed: Bytes,
  expectedPublic: Bytes,
  code: ConversationErrorCode = "bad-state",
): Promise<KemKeyPair> {
  if (seed.length !== KEM_SEED_BYTES) fail(code, "An ML-KEM-768 seed must be 64 bytes");
  let privateKey: CryptoKey;
  let publicKey: Bytes;
  try {
    privateKey = await kemSubtle.importKey("raw-seed", seed, KEM, true, DECAPSULATE);
    const jwk = await crypto.subtle.exportKey("jwk", privateKey) as { pub?: string };
    publicKey = fromB64url(jwk.pub);
  } catch (error) {
    fail(code, "A stored ML-KEM-768 seed does not import", error);
  }
  if (publicKey.toHex() !== expectedPublic.toHex()) {
    fail(code, "A stored ML-KEM-768 seed does not match its public key");
  }
  return { privateKey, publicKey, seed: seed.slice() };
}

/**
 * The FIPS 203 encapsulation-key check: 1184 bytes whose first 1152 decode to 768 12-bit
 * coefficients, each below q = 3329 (so the key re-encodes to the same bytes).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkKemPublicKey } from "./_keys.ts";
 * assert.equal(checkKemPublicKey(new Uint8Array(1184)), true);
 * assert.equal(checkKemPublicKey(new Uint8Array(1184).fill(255)), false);
 * ```
 */
export function checkKemPublicKey(bytes: Uint8Array): boolean {
  if (bytes.length !== KEM_PUBLIC_BYTES) return false;
  for (let i = 0; i < 1152; i += 3) {
    const low = bytes[i] | ((bytes[i + 1] & 0x0f) << 8);
    const high = (bytes[i + 1] >> 4) | (bytes[i + 2] << 4);
    if (low >= KEM_Q || high >= KEM_Q) return false;
  }
  return true;
}

/**
 * Encapsulates a fresh shared secret to an ML-KEM-768 encapsulation key (checked first).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decapsulate, encapsulate, generateKem } from "./_keys.ts";
 * const bob = await generateKem();
 * const { ciphertext, sharedKey } = await encapsulate(bob.publicKey);
 * assert.equal((await decapsulate(bob.privateKey, ciphertext)).toHex(), sharedKey.toHex());
 * ```
 */
export async function encapsulate(
  publicKey: Bytes,
  code: ConversationErrorCode = "bad-prekey",
): Promise<{ ciphertext: Bytes; sharedKey: Bytes }> {
  if (!checkKemPublicKey(publicKey)) fail(code, "An ML-KEM-768 public key is malformed");
  try {
    const key = await kemSubtle.importKey("raw-public", publicKey, KEM, true, ENCAPSULATE);
    const { ciphertext, sharedKey } = await kemSubtle.encapsulateBits(KEM, key);
    return { ciphertext: new Uint8Array(ciphertext), sharedKey: new Uint8Array(sharedKey) };
  } catch (error) {
    fail(code, "An ML-KEM-768 public key is unusable", error);
  }
}

/** Decapsulates an ML-KEM-768 ciphertext (a wrong one yields an unrelated secret, by design). */
export async function decapsulate(privateKey: CryptoKey, ciphertext: Bytes): Promise<Bytes> {
  if (ciphertext.length !== KEM_CIPHERTEXT_BYTES) {
    fail("bad-init", `An ML-KEM-768 ciphertext must be ${KEM_CIPHERTEXT_BYTES} bytes`);
  }
  return new Uint8Array(await kemSubtle.decapsulateBits(KEM, privateKey, ciphertext));
}
