/**
 * Long-term identities: two RSA-2048 keypairs per person (RSA-OAEP to receive session keys,
 * RSA-PSS to sign), their fingerprints, the verification code two people compare out of band,
 * and the signed announcement a client presents when it joins.
 *
 * @module
 */

import { ReelayError } from "../errors.ts";
import { checkName } from "../names.ts";
import {
  type Bytes,
  concat,
  encodeFields,
  fromBase64,
  randomBytes,
  toBase64,
  toHex,
  utf8,
} from "../bytes.ts";

/** Modulus size of newly generated keys. */
export const RSA_BITS = 2048;
/** Smallest modulus accepted from anyone. */
export const MIN_RSA_BITS = 2048;
/** Largest modulus accepted from anyone (bounds the cost a peer can impose). */
export const MAX_RSA_BITS = 4096;
/** RSA-PSS salt length in bytes (the SHA-256 output size). */
export const PSS_SALT_BYTES = 32;
/** Size of a connection epoch in bytes. */
export const EPOCH_BYTES = 16;
/** Longest epoch text accepted (base64 of 16 bytes is 24 characters). */
export const MAX_EPOCH_TEXT = 64;
/**
 * Longest base64 text of a key or signature accepted anywhere (the wire, the key files): room
 * for the PKCS#8 form of an RSA-4096 private key, the largest key reelay accepts.
 */
export const MAX_KEY_TEXT = 4096;
/** Longest base64 text of an RSA-PSS signature: 512 bytes, from the largest key accepted. */
export const MAX_SIGNATURE_TEXT = 4 * Math.ceil(MAX_RSA_BITS / 8 / 3);

export { checkName };
const OAEP: RsaHashedImportParams = { name: "RSA-OAEP", hash: "SHA-256" };
const PSS: RsaHashedImportParams = { name: "RSA-PSS", hash: "SHA-256" };
const STORED_FORMAT = "reelay-identity-v1" as const;
const SELF_TEST = utf8("reelay-identity-self-test");

/**
 * A person's public keys, each a base64 DER SubjectPublicKeyInfo. This is also their wire form
 * (the protocol carries it as is).
 */
export interface PublicIdentity {
  /** RSA-OAEP (SHA-256) key that session keys are wrapped to. */
  encryptionKey: string;
  /** RSA-PSS (SHA-256) key that announcements and sessions are verified with. */
  signingKey: string;
}

/** The persisted form of an {@linkcode Identity}: both private keys as base64 PKCS#8. */
export interface StoredIdentity {
  /** Always `reelay-identity-v1`. */
  format: typeof STORED_FORMAT;
  /** RSA-OAEP private key. */
  encryptionKey: string;
  /** RSA-PSS private key. */
  signingKey: string;
}

/**
 * A signed statement "the holder of these keys is joining as `name` for connection `epoch`":
 * the one definition, which the protocol's `hello`, `directory` and `joined` carry as is.
 */
export interface Announcement {
  /** The name being claimed. */
  name: string;
  /** The claimant's public keys. */
  keys: PublicIdentity;
  /** Base64 of 16 random bytes, fresh for every connection. */
  epoch: string;
  /** Base64 RSA-PSS signature over the announcement (see {@linkcode signAnnouncement}). */
  signature: string;
}

function badKey(message: string, cause?: unknown): ReelayError {
  return new ReelayError("bad-key", message, { cause });
}

/** Throws `bad-key` unless an imported RSA key has an accepted size and exponent 65537. */
function checkRsaKey(key: CryptoKey, label: string): CryptoKey {
  const algorithm = key.algorithm as RsaHashedKeyAlgorithm;
  const bits = algorithm.modulusLength;
  if (bits < MIN_RSA_BITS || bits > MAX_RSA_BITS) {
    throw badKey(`The ${label} is "${bits}" bits; expected ${MIN_RSA_BITS}-${MAX_RSA_BITS}`);
  }
  if (toHex(algorithm.publicExponent) !== "010001") {
    throw badKey(`The ${label} does not use the public exponent 65537`);
  }
  return key;
}

/** Decodes a base64 key field, throwing `bad-key` if it is not canonical base64. */
function keyBytes(text: unknown, label: string): Bytes {
  const bytes = typeof text === "string" && text.length <= MAX_KEY_TEXT
    ? fromBase64(text)
    : undefined;
  if (!bytes || bytes.length === 0) throw badKey(`The ${label} is not valid base64 key data`);
  return bytes;
}

async function importPublic(
  text: string,
  params: RsaHashedImportParams,
  usage: KeyUsage,
  label: string,
): Promise<CryptoKey> {
  const der = keyBytes(text, label);
  let key: CryptoKey;
  let canonical: Uint8Array;
  try {
    key = await crypto.subtle.importKey("spki", der, params, true, [usage]);
    canonical = new Uint8Array(await crypto.subtle.exportKey("spki", key));
  } catch (error) {
    throw badKey(`The ${label} is not an RSA public key`, error);
  }
  // One key, one encoding, one fingerprint: the parser also takes some non-DER variants.
  if (toHex(canonical) !== toHex(der)) {
    throw badKey(`The ${label} is not in its canonical DER encoding`);
  }
  return checkRsaKey(key, label);
}

/**
 * Imports and validates the RSA-OAEP public key of `pub`, throwing `bad-key` if it is unusable.
 *
 * @example
 * ```ts
 * import { Identity, importEncryptionKey } from "./identity.ts";
 * const me = await Identity.generate();
 * const key = await importEncryptionKey(me.public);
 * ```
 */
export function importEncryptionKey(pub: PublicIdentity): Promise<CryptoKey> {
  return importPublic(pub.encryptionKey, OAEP, "encrypt", "encryption key");
}

/**
 * Imports and validates the RSA-PSS public key of `pub`, throwing `bad-key` if it is unusable.
 *
 * @example
 * ```ts
 * import { Identity, importVerifyKey } from "./identity.ts";
 * const me = await Identity.generate();
 * const key = await importVerifyKey(me.public);
 * ```
 */
export function importVerifyKey(pub: PublicIdentity): Promise<CryptoKey> {
  return importPublic(pub.signingKey, PSS, "verify", "signing key");
}

/**
 * Checks the shape of untrusted public keys and that both import as valid RSA keys of an
 * accepted size; throws `bad-key` otherwise. The two keys must differ (key separation).
 *
 * @example
 * ```ts
 * import { parsePublicIdentity } from "./identity.ts";
 * const keys = await parsePublicIdentity(JSON.parse('{"encryptionKey":"…","signingKey":"…"}'))
 *   .catch((error) => undefined);
 * ```
 */
export async function parsePublicIdentity(value: unknown): Promise<PublicIdentity> {
  const record = isRecord(value) ? value : {};
  const encryptionKey = record.encryptionKey;
  const signingKey = record.signingKey;
  if (typeof encryptionKey !== "string" || typeof signingKey !== "string") {
    throw badKey("Public keys must be an object with encryptionKey and signingKey strings");
  }
  if (encryptionKey === signingKey) {
    throw badKey("The encryption key and the signing key must be different keys");
  }
  const pub = { encryptionKey, signingKey };
  await importEncryptionKey(pub);
  await importVerifyKey(pub);
  return pub;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * The full SHA-256 fingerprint of a public identity: the hash of the length-prefixed encoding
 * of (encryption SPKI, signing SPKI).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fingerprintBytes, Identity } from "./identity.ts";
 * const me = await Identity.generate();
 * assert.equal((await fingerprintBytes(me.public)).length, 32);
 * ```
 */
export async function fingerprintBytes(pub: PublicIdentity): Promise<Bytes> {
  const fields = [
    keyBytes(pub.encryptionKey, "encryption key"),
    keyBytes(pub.signingKey, "signing key"),
  ];
  return new Uint8Array(await crypto.subtle.digest("SHA-256", encodeFields(fields)));
}

/**
 * The full fingerprint as 64 lowercase hex digits, for exact comparison and storage.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fingerprintHash, Identity } from "./identity.ts";
 * const me = await Identity.generate();
 * assert.equal((await fingerprintHash(me.public)).length, 64);
 * ```
 */
export async function fingerprintHash(pub: PublicIdentity): Promise<string> {
  return toHex(await fingerprintBytes(pub));
}

/**
 * The short fingerprint shown to people: the first 20 bytes of the hash as 10 groups of 4 hex
 * digits, such as `3f2a:09bc:…:77d1`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fingerprint, Identity } from "./identity.ts";
 * const me = await Identity.generate();
 * assert.equal((await fingerprint(me.public)).split(":").length, 10);
 * ```
 */
export async function fingerprint(pub: PublicIdentity): Promise<string> {
  const hex = toHex((await fingerprintBytes(pub)).subarray(0, 20));
  return hex.match(/.{4}/g)!.join(":");
}

/**
 * The code two people read to each other to check they see the same keys: the same value
 * whichever side computes it, and different if any name or key differs. 20 digits in 4 groups.
 *
 * @example
 * ```ts
 * import { Identity, verificationCode } from "./identity.ts";
 * const [a, b] = [await Identity.generate(), await Identity.generate()];
 * const code = await verificationCode("alice", a.public, "bob", b.public);
 * // "01234 56789 01234 56789", also from verificationCode("bob", b.public, "alice", a.public)
 * ```
 */
export async function verificationCode(
  nameA: string,
  pubA: PublicIdentity,
  nameB: string,
  pubB: PublicIdentity,
): Promise<string> {
  const sides = [
    encodeFields([checkName(nameA), await fingerprintBytes(pubA)]),
    encodeFields([checkName(nameB), await fingerprintBytes(pubB)]),
  ].sort(compareBytes);
  const input = concat([encodeFields(["reelay-verify-v1"]), ...sides]);
  const hash = new Uint8Array(await crypto.subtle.digest("SHA-256", input));
  const groups: string[] = [];
  for (let i = 0; i < 4; i++) {
    const chunk = hash.subarray(i * 5, i * 5 + 5);
    const value = chunk.reduce((acc, byte) => acc * 256 + byte, 0);
    groups.push(String(value % 100000).padStart(5, "0"));
  }
  return groups.join(" ");
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    if (a[i] !== b[i]) return a[i] - b[i];
  }
  return a.length - b.length;
}

/**
 * One person's long-term keys. Private keys are held as non-extractable `CryptoKey`s; the PKCS#8
 * text is kept only so {@linkcode Identity.toJSON} can persist it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Identity } from "./identity.ts";
 * const me = await Identity.generate();
 * const again = await Identity.fromJSON(JSON.parse(JSON.stringify(me)));
 * assert.equal(again.fingerprint === me.fingerprint, true);
 * ```
 */
export class Identity {
  /** The public keys to announce. */
  readonly public: PublicIdentity;
  /** The short fingerprint of {@linkcode Identity.public}. */
  readonly fingerprint: string;
  readonly #stored: StoredIdentity;
  readonly #decryptKey: CryptoKey;
  readonly #signKey: CryptoKey;

  private constructor(
    parts: { pub: PublicIdentity; fingerprint: string; stored: StoredIdentity },
    decryptKey: CryptoKey,
    signKey: CryptoKey,
  ) {
    this.public = parts.pub;
    this.fingerprint = parts.fingerprint;
    this.#stored = parts.stored;
    this.#decryptKey = decryptKey;
    this.#signKey = signKey;
  }

  /** Generates two fresh RSA-2048 keypairs (about 0.2-1 s). */
  static async generate(): Promise<Identity> {
    const stored: StoredIdentity = {
      format: STORED_FORMAT,
      encryptionKey: await generatePkcs8(OAEP, ["encrypt", "decrypt"]),
      signingKey: await generatePkcs8(PSS, ["sign", "verify"]),
    };
    return Identity.fromJSON(stored);
  }

  /** Loads an identity saved with {@linkcode Identity.toJSON}; throws `bad-key` if unusable. */
  static async fromJSON(stored: unknown): Promise<Identity> {
    const record = isRecord(stored) ? stored : {};
    if (record.format !== STORED_FORMAT) {
      throw badKey(`Stored identity format is not "${STORED_FORMAT}"`);
    }
    const enc = await importPrivate(record.encryptionKey, OAEP, "decrypt", "encryption key");
    const sig = await importPrivate(record.signingKey, PSS, "sign", "signing key");
    const pub = { encryptionKey: enc.spki, signingKey: sig.spki };
    await selfTest(pub, enc.key, sig.key);
    const parts = {
      pub,
      fingerprint: await fingerprint(pub),
      stored: {
        format: STORED_FORMAT,
        encryptionKey: String(record.encryptionKey),
        signingKey: String(record.signingKey),
      },
    };
    return new Identity(parts, enc.key, sig.key);
  }

  /** The persisted form, private keys included: store it with owner-only permissions. */
  toJSON(): StoredIdentity {
    return { ...this.#stored };
  }

  /** Signs `data` with RSA-PSS. Low level: callers must domain-separate what they sign. */
  async sign(data: Bytes): Promise<Bytes> {
    const params = { name: "RSA-PSS", saltLength: PSS_SALT_BYTES };
    return new Uint8Array(await crypto.subtle.sign(params, this.#signKey, data));
  }

  /** Decrypts RSA-OAEP `data`. Low level: only after verifying who sent it. */
  async decrypt(data: Bytes): Promise<Bytes> {
    return new Uint8Array(
      await crypto.subtle.decrypt({ name: "RSA-OAEP" }, this.#decryptKey, data),
    );
  }
}

async function generatePkcs8(params: RsaHashedImportParams, usages: KeyUsage[]): Promise<string> {
  const algorithm = {
    ...params,
    modulusLength: RSA_BITS,
    publicExponent: new Uint8Array([1, 0, 1]),
  };
  const pair = await crypto.subtle.generateKey(algorithm, true, usages);
  return toBase64(new Uint8Array(await crypto.subtle.exportKey("pkcs8", pair.privateKey)));
}

/** Imports a stored private key (non-extractable) and derives its public SPKI via JWK. */
async function importPrivate(
  text: unknown,
  params: RsaHashedImportParams,
  usage: KeyUsage,
  label: string,
): Promise<{ key: CryptoKey; spki: string }> {
  const der = keyBytes(text, `stored ${label}`);
  try {
    const full = await crypto.subtle.importKey("pkcs8", der, params, true, [usage]);
    checkRsaKey(full, `stored ${label}`);
    const { n, e } = await crypto.subtle.exportKey("jwk", full);
    const publicUsage: KeyUsage = usage === "decrypt" ? "encrypt" : "verify";
    const jwk: JsonWebKey = { kty: "RSA", n, e };
    const pub = await crypto.subtle.importKey("jwk", jwk, params, true, [publicUsage]);
    const spki = toBase64(new Uint8Array(await crypto.subtle.exportKey("spki", pub)));
    const key = await crypto.subtle.importKey("pkcs8", der, params, false, [usage]);
    return { key, spki };
  } catch (error) {
    if (error instanceof ReelayError) throw error;
    throw badKey(`The stored ${label} is not an RSA private key`, error);
  }
}

/** Proves the private keys match the derived public keys (catches corrupted key files). */
async function selfTest(pub: PublicIdentity, decryptKey: CryptoKey, signKey: CryptoKey) {
  try {
    const pss = { name: "RSA-PSS", saltLength: PSS_SALT_BYTES };
    const signature = await crypto.subtle.sign(pss, signKey, SELF_TEST);
    const verifyKey = await importVerifyKey(pub);
    const signs = await crypto.subtle.verify(pss, verifyKey, signature, SELF_TEST);
    const sealed = await crypto.subtle.encrypt(OAEP, await importEncryptionKey(pub), SELF_TEST);
    const opened = new Uint8Array(await crypto.subtle.decrypt(OAEP, decryptKey, sealed));
    if (signs && toHex(opened) === toHex(SELF_TEST)) return;
  } catch (error) {
    throw badKey("The stored private keys failed their self-test", error);
  }
  throw badKey("The stored private keys do not match their public keys");
}

/**
 * A fresh connection epoch: base64 of 16 random bytes. Use a new one for every connection.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { newEpoch } from "./identity.ts";
 * assert.equal(newEpoch().length, 24);
 * ```
 */
export function newEpoch(): string {
  return toBase64(randomBytes(EPOCH_BYTES));
}

/** Decodes an epoch, throwing `bad-epoch` unless it is base64 of exactly 16 bytes. */
export function epochBytes(epoch: unknown): Bytes {
  const bytes = typeof epoch === "string" && epoch.length <= MAX_EPOCH_TEXT
    ? fromBase64(epoch)
    : undefined;
  if (!bytes || bytes.length !== EPOCH_BYTES) {
    const shown = JSON.stringify(String(epoch).slice(0, 40));
    throw new ReelayError("bad-epoch", `Epoch ${shown} is not base64 of 16 bytes`);
  }
  return bytes;
}

function announcementData(name: string, keys: PublicIdentity, epoch: string): Bytes {
  return encodeFields([
    "reelay-announce-v1",
    name,
    keyBytes(keys.encryptionKey, "encryption key"),
    keyBytes(keys.signingKey, "signing key"),
    epochBytes(epoch),
  ]);
}

/**
 * Signs an announcement: RSA-PSS over the length-prefixed encoding of ("reelay-announce-v1",
 * name, encryption SPKI, signing SPKI, epoch bytes).
 *
 * @example
 * ```ts
 * import { Identity, newEpoch, signAnnouncement } from "./identity.ts";
 * const me = await Identity.generate();
 * const hello = await signAnnouncement(me, "alice", newEpoch());
 * ```
 */
export async function signAnnouncement(
  identity: Identity,
  name: string,
  epoch: string,
): Promise<Announcement> {
  const keys = { ...identity.public };
  const signature = await identity.sign(announcementData(checkName(name), keys, epoch));
  return { name, keys, epoch, signature: toBase64(signature) };
}

/**
 * Checks an untrusted announcement and returns it typed. Throws `bad-announcement` for a wrong
 * shape, `bad-name`, `bad-epoch` or `bad-key` for a bad field, and `bad-signature` when the
 * signature does not verify.
 *
 * @example
 * ```ts
 * import { Identity, newEpoch, signAnnouncement, verifyAnnouncement } from "./identity.ts";
 * const me = await Identity.generate();
 * const checked = await verifyAnnouncement(await signAnnouncement(me, "alice", newEpoch()));
 * ```
 */
export async function verifyAnnouncement(value: unknown): Promise<Announcement> {
  const record = isRecord(value) ? value : {};
  const { name, keys, epoch, signature } = record;
  if (typeof epoch !== "string" || typeof signature !== "string") {
    throw new ReelayError("bad-announcement", "Announcement needs epoch and signature strings");
  }
  const checked: Announcement = {
    name: checkName(name),
    keys: await parsePublicIdentity(keys),
    epoch,
    signature,
  };
  const data = announcementData(checked.name, checked.keys, epoch);
  const sig = signature.length <= MAX_KEY_TEXT ? fromBase64(signature) : undefined;
  const key = await importVerifyKey(checked.keys);
  if (!sig || !await verifyPss(key, sig, data)) {
    throw new ReelayError(
      "bad-signature",
      `Announcement of "${checked.name}" is not validly signed`,
    );
  }
  return checked;
}

/**
 * Verifies an RSA-PSS signature made by {@linkcode Identity.sign}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Identity, importVerifyKey, verifyPss } from "./identity.ts";
 * const me = await Identity.generate();
 * const data = new Uint8Array([1]);
 * assert.equal(await verifyPss(await importVerifyKey(me.public), await me.sign(data), data), true);
 * ```
 */
export async function verifyPss(key: CryptoKey, signature: Bytes, data: Bytes): Promise<boolean> {
  const params = { name: "RSA-PSS", saltLength: PSS_SALT_BYTES };
  try {
    return await crypto.subtle.verify(params, key, signature, data);
  } catch {
    return false;
  }
}
