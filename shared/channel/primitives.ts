/**
 * The crypto functions of reelay's Noise suite, `25519+MLKEM768_ChaChaPoly_SHA256`, as the Noise
 * specification (revision 34, section 4) and the KEM-based hybrid forward secrecy extension
 * (`hfs`, revision 1, section 3) define them, all on WebCrypto:
 *
 * - DH: X25519. `DHLEN` = 32. Private keys never leave WebCrypto except where a caller asks for
 *   them at creation (the server's stored identity).
 * - KEM: ML-KEM-768 (FIPS 203). Public key 1184 bytes, ciphertext 1088, output 32.
 * - Cipher: ChaCha20-Poly1305 with the 96-bit nonce Noise prescribes: 4 zero bytes, then the
 *   64-bit counter little-endian.
 * - Hash: SHA-256, HMAC-SHA-256 and Noise's HKDF (`HASHLEN` = 32, `BLOCKLEN` = 64).
 *
 * Ours rather than a library's: WebCrypto in Deno 2.9 has every primitive (no npm dependency
 * and no WASM to trust), and what is left is thin glue that the published Noise vectors check.
 *
 * @module
 */

import { type Bytes, concat } from "../bytes.ts";
import { ReelayError } from "../errors.ts";

/** Bytes of an X25519 public key or shared secret. */
export const DHLEN = 32;
/** Bytes of a SHA-256 output. */
export const HASHLEN = 32;
/** Bytes of a ChaCha20-Poly1305 authentication tag. */
export const TAGLEN = 16;
/** Bytes of a cipher key. */
export const KEYLEN = 32;
/** The largest nonce counter we use: Noise reserves 2^64-1, and JS integers stop at 2^53. */
export const MAX_NONCE = Number.MAX_SAFE_INTEGER - 1;

/** An X25519 key pair: the public key as raw bytes, the private key inside WebCrypto. */
export interface KeyPair {
  /** The 32-byte public key. */
  publicKey: Bytes;
  /** The private key; usable only for `deriveBits`. */
  privateKey: CryptoKey;
}

/** An ML-KEM-768 key pair: the public (encapsulation) key as raw bytes. */
export interface KemKeyPair {
  /** The 1184-byte encapsulation key. */
  publicKey: Bytes;
  /** The decapsulation key; usable only for `decapsulateBits`. */
  privateKey: CryptoKey;
}

/** The result of encapsulating to a KEM public key. */
export interface KemEncapsulation {
  /** The ciphertext to send. */
  ciphertext: Bytes;
  /** The 32-byte shared secret (the spec's `kem_output`). */
  output: Bytes;
}

/** The KEM functions the `hfs` extension asks for (its section 3). */
export interface Kem {
  /** The name used in protocol names, such as `MLKEM768`. */
  readonly name: string;
  /** `KEMPUBLICKEYLEN`. */
  readonly publicKeyLength: number;
  /** `KEMCIPHERTEXTLEN`. */
  readonly ciphertextLength: number;
  /** `KEMOUTPUTLEN`. */
  readonly outputLength: number;
  /** `GENERATE_KEM_KEYPAIR()`. */
  generateKeyPair(): Promise<KemKeyPair>;
  /** `GENERATE_KEM_CIPHERTEXT(public_key)`. */
  encapsulate(publicKey: Bytes): Promise<KemEncapsulation>;
  /** `KEM(key_pair, ciphertext)`. */
  decapsulate(keyPair: KemKeyPair, ciphertext: Bytes): Promise<Bytes>;
}

/** Raised when a primitive rejects its input: a bad tag, a bad public key, a bad ciphertext. */
export class CryptoFailure extends ReelayError {
  /** Creates a failure with a short description of what was rejected. */
  constructor(message: string, cause?: unknown) {
    super("noise-crypto-failed", message, { cause });
    this.name = "CryptoFailure";
  }
}

const X25519 = { name: "X25519" } as const;
const CHACHA = "ChaCha20-Poly1305";
const HMAC_SHA256: HmacImportParams = { name: "HMAC", hash: "SHA-256" };
const ML_KEM_768 = { name: "ML-KEM-768" } as const;
// PKCS#8 header for a raw X25519 private key (RFC 8410): the 32 key bytes follow.
const X25519_PKCS8_PREFIX = Uint8Array.fromHex("302e020100300506032b656e04220420");
const BASE_POINT = (() => {
  const point = new Uint8Array(DHLEN);
  point[0] = 9;
  return point;
})();

/**
 * `GENERATE_KEYPAIR()`: a fresh X25519 key pair.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateKeyPair } from "./primitives.ts";
 * assert.equal((await generateKeyPair()).publicKey.length, 32);
 * ```
 */
export async function generateKeyPair(): Promise<KeyPair> {
  const pair = await crypto.subtle.generateKey(X25519, false, ["deriveBits"]) as CryptoKeyPair;
  const publicKey = new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey));
  return { publicKey, privateKey: pair.privateKey };
}

/**
 * An X25519 key pair from 32 raw private-key bytes (a stored key, or a test vector's key). The
 * public key is derived as `DH(private, 9)`, the X25519 base point.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { keyPairFromPrivate } from "./primitives.ts";
 * // The private key of the cacophony test vectors' initiator, and its public key.
 * const pair = await keyPairFromPrivate(
 *   Uint8Array.fromHex("e61ef9919cde45dd5f82166404bd08e38bceb5dfdfded0a34c8df7ed542214d1"),
 * );
 * assert.equal(
 *   pair.publicKey.toHex(),
 *   "6bc3822a2aa7f4e6981d6538692b3cdf3e6df9eea6ed269eb41d93c22757b75a",
 * );
 * ```
 */
export async function keyPairFromPrivate(privateBytes: Uint8Array): Promise<KeyPair> {
  if (privateBytes.length !== DHLEN) {
    throw new RangeError(`An X25519 private key is ${DHLEN} bytes, not ${privateBytes.length}`);
  }
  const pkcs8 = concat([X25519_PKCS8_PREFIX, privateBytes]);
  const privateKey = await crypto.subtle.importKey("pkcs8", pkcs8, X25519, false, ["deriveBits"]);
  const publicKey = await dh({ publicKey: new Uint8Array(0), privateKey }, BASE_POINT);
  return { publicKey, privateKey };
}

/**
 * `DH(key_pair, public_key)`: X25519. WebCrypto refuses a public key that yields the all-zero
 * output (a low-order point); Noise allows that refusal, and it surfaces as a
 * {@linkcode CryptoFailure}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { dh, generateKeyPair } from "./primitives.ts";
 * const [a, b] = [await generateKeyPair(), await generateKeyPair()];
 * assert.deepEqual(await dh(a, b.publicKey), await dh(b, a.publicKey));
 * await assert.rejects(dh(a, new Uint8Array(32)), { code: "noise-crypto-failed" });
 * ```
 */
export async function dh(keyPair: KeyPair, publicKey: Uint8Array): Promise<Bytes> {
  try {
    const remote = await crypto.subtle.importKey("raw", bytes(publicKey), X25519, false, []);
    const shared = await crypto.subtle.deriveBits(
      { name: "X25519", public: remote },
      keyPair.privateKey,
      DHLEN * 8,
    );
    return new Uint8Array(shared);
  } catch (error) {
    throw new CryptoFailure("The X25519 public key was rejected", error);
  }
}

/** WebCrypto's KEM calls, which TypeScript's DOM types do not list yet. */
interface KemSubtle {
  encapsulateBits(
    algorithm: typeof ML_KEM_768,
    key: CryptoKey,
  ): Promise<{ ciphertext: ArrayBuffer; sharedKey: ArrayBuffer }>;
  decapsulateBits(
    algorithm: typeof ML_KEM_768,
    key: CryptoKey,
    ciphertext: BufferSource,
  ): Promise<ArrayBuffer>;
}

const kemSubtle = crypto.subtle as unknown as KemSubtle;

/**
 * ML-KEM-768 as a Noise KEM. Encapsulation rejects a malformed public key (FIPS 203's modulus
 * check); decapsulation of a wrong ciphertext yields an unrelated secret (implicit rejection),
 * which then fails the next authentication in the handshake.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MLKEM768 } from "./primitives.ts";
 * const pair = await MLKEM768.generateKeyPair();
 * const { ciphertext, output } = await MLKEM768.encapsulate(pair.publicKey);
 * assert.equal(output.length, 32);
 * assert.deepEqual(await MLKEM768.decapsulate(pair, ciphertext), output);
 * ```
 */
export const MLKEM768: Kem = {
  name: "MLKEM768",
  publicKeyLength: 1184,
  ciphertextLength: 1088,
  outputLength: 32,
  async generateKeyPair(): Promise<KemKeyPair> {
    const usages: KeyUsage[] = ["encapsulateBits", "decapsulateBits"] as unknown as KeyUsage[];
    const pair = await crypto.subtle.generateKey(ML_KEM_768, false, usages) as CryptoKeyPair;
    const publicKey = new Uint8Array(await crypto.subtle.exportKey("raw-public", pair.publicKey));
    return { publicKey, privateKey: pair.privateKey };
  },
  async encapsulate(publicKey: Bytes): Promise<KemEncapsulation> {
    try {
      const usages = ["encapsulateBits"] as unknown as KeyUsage[];
      const key = await crypto.subtle.importKey("raw-public", publicKey, ML_KEM_768, false, usages);
      const result = await kemSubtle.encapsulateBits(ML_KEM_768, key);
      return {
        ciphertext: new Uint8Array(result.ciphertext),
        output: new Uint8Array(result.sharedKey),
      };
    } catch (error) {
      throw new CryptoFailure("The ML-KEM-768 public key was rejected", error);
    }
  },
  async decapsulate(keyPair: KemKeyPair, ciphertext: Bytes): Promise<Bytes> {
    try {
      return new Uint8Array(
        await kemSubtle.decapsulateBits(ML_KEM_768, keyPair.privateKey, ciphertext),
      );
    } catch (error) {
      throw new CryptoFailure("The ML-KEM-768 ciphertext was rejected", error);
    }
  },
};

/**
 * `HASH(data)`: SHA-256.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { sha256 } from "./primitives.ts";
 * assert.equal(
 *   (await sha256(new Uint8Array())).toHex(),
 *   "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
 * );
 * ```
 */
export async function sha256(data: Uint8Array): Promise<Bytes> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes(data)));
}

/**
 * `HMAC-HASH(key, data)` with SHA-256.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { hmacSha256 } from "./primitives.ts";
 * // RFC 4231, test case 2.
 * const mac = await hmacSha256(
 *   new TextEncoder().encode("Jefe"),
 *   new TextEncoder().encode("what do ya want for nothing?"),
 * );
 * assert.equal(mac.toHex(), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
 * ```
 */
export async function hmacSha256(key: Uint8Array, data: Uint8Array): Promise<Bytes> {
  const imported = await crypto.subtle.importKey("raw", bytes(key), HMAC_SHA256, false, ["sign"]);
  return new Uint8Array(await crypto.subtle.sign("HMAC", imported, bytes(data)));
}

/**
 * Noise's `HKDF(chaining_key, input_key_material, num_outputs)` (spec section 4.3): HMAC with
 * the chaining key as key extracts a temporary key; each output is
 * `HMAC(temp_key, previous_output || byte(i))`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { hkdf } from "./primitives.ts";
 * const [ck, k] = await hkdf(new Uint8Array(32), new Uint8Array(32), 2);
 * assert.equal(ck.length, 32);
 * assert.notDeepEqual(ck, k);
 * // The first outputs do not depend on how many are asked for.
 * assert.deepEqual((await hkdf(new Uint8Array(32), new Uint8Array(32), 3))[1], k);
 * ```
 */
export async function hkdf(
  chainingKey: Uint8Array,
  inputKeyMaterial: Uint8Array,
  outputs: 2 | 3,
): Promise<Bytes[]> {
  const tempKey = await hmacSha256(chainingKey, inputKeyMaterial);
  const key = await crypto.subtle.importKey("raw", tempKey, HMAC_SHA256, false, ["sign"]);
  const result: Bytes[] = [];
  let previous: Bytes = new Uint8Array(0);
  for (let i = 1; i <= outputs; i++) {
    const input = concat([previous, Uint8Array.of(i)]);
    previous = new Uint8Array(await crypto.subtle.sign("HMAC", key, input));
    result.push(previous);
  }
  return result;
}

/**
 * Imports a 32-byte ChaCha20-Poly1305 key once, for many `ENCRYPT`/`DECRYPT` calls.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { importCipherKey } from "./primitives.ts";
 * const key = await importCipherKey(new Uint8Array(32));
 * assert.equal(key.algorithm.name, "ChaCha20-Poly1305");
 * assert.throws(() => importCipherKey(new Uint8Array(16)), RangeError);
 * ```
 */
export function importCipherKey(key: Uint8Array): Promise<CryptoKey> {
  if (key.length !== KEYLEN) {
    throw new RangeError(`A cipher key is ${KEYLEN} bytes, not ${key.length}`);
  }
  return crypto.subtle.importKey("raw-secret", bytes(key), CHACHA, false, ["encrypt", "decrypt"]);
}

/**
 * The 96-bit ChaChaPoly nonce for counter `n`: 32 zero bits, then `n` as 64-bit little-endian
 * (spec section 12.3). `n` may be up to 2^64-1 given as a bigint (as `REKEY` needs).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { chachaNonce } from "./primitives.ts";
 * assert.deepEqual(chachaNonce(258), Uint8Array.of(0, 0, 0, 0, 2, 1, 0, 0, 0, 0, 0, 0));
 * ```
 */
export function chachaNonce(n: number | bigint): Bytes {
  const nonce = new Uint8Array(12);
  new DataView(nonce.buffer).setBigUint64(4, BigInt(n), true);
  return nonce;
}

/**
 * `ENCRYPT(k, n, ad, plaintext)`: ciphertext followed by the 16-byte tag.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { encrypt, importCipherKey } from "./primitives.ts";
 * const key = await importCipherKey(new Uint8Array(32));
 * assert.equal((await encrypt(key, 0, new Uint8Array(), new Uint8Array(5))).length, 5 + 16);
 * ```
 */
export async function encrypt(
  key: CryptoKey,
  n: number | bigint,
  ad: Uint8Array,
  plaintext: Uint8Array,
): Promise<Bytes> {
  const params = { name: CHACHA, iv: chachaNonce(n), additionalData: bytes(ad) };
  return new Uint8Array(await crypto.subtle.encrypt(params, key, bytes(plaintext)));
}

/**
 * `DECRYPT(k, n, ad, ciphertext)`: the plaintext, or a {@linkcode CryptoFailure} when the tag
 * does not verify.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decrypt, encrypt, importCipherKey } from "./primitives.ts";
 * const key = await importCipherKey(new Uint8Array(32));
 * const sealed = await encrypt(key, 3, new Uint8Array(), new Uint8Array([1]));
 * assert.deepEqual(await decrypt(key, 3, new Uint8Array(), sealed), new Uint8Array([1]));
 * await assert.rejects(decrypt(key, 4, new Uint8Array(), sealed), { code: "noise-crypto-failed" });
 * ```
 */
export async function decrypt(
  key: CryptoKey,
  n: number | bigint,
  ad: Uint8Array,
  ciphertext: Uint8Array,
): Promise<Bytes> {
  const params = { name: CHACHA, iv: chachaNonce(n), additionalData: bytes(ad) };
  try {
    return new Uint8Array(await crypto.subtle.decrypt(params, key, bytes(ciphertext)));
  } catch (error) {
    throw new CryptoFailure("A ciphertext failed authentication", error);
  }
}

/** Views `data` as bytes over a plain ArrayBuffer (copying only shared or resizable memory). */
function bytes(data: Uint8Array): Bytes {
  return data.buffer instanceof ArrayBuffer ? data as Bytes : new Uint8Array(data);
}
