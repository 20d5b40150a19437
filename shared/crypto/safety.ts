/**
 * Safety numbers: what two people compare out of band to be sure each holds the other's real
 * keys, made as Signal makes its 60-digit numeric fingerprints.
 *
 * Each person gets 30 digits of their own: SHA-512 iterated {@linkcode SAFETY_ITERATIONS} times,
 * starting from fields("reelay-safety-v1", key bytes, name) and then hashing (previous hash ||
 * key bytes) each round, where the key bytes are the identity fingerprint (SHA-256 over both
 * canonical RSA SPKIs, see `identity.ts`). The first 30 bytes of the result, as six 5-byte
 * big-endian numbers each taken mod 100000, give six groups of five digits. A pair's number is the
 * two halves in sorted order (12 groups), so both sides show the same 60 digits.
 *
 * Strength: 30 decimal digits hold about 99.7 bits; 5200 iterations add about 12.3 bits of work
 * per guess, so a server that wants its own key to show someone's half must do about 2^112 hash
 * work. Because each half depends on one person's key only, it is a (second-)preimage search per
 * person, not a birthday search over both keys as with a single hash over the pair.
 *
 * @module
 */

import { type Bytes, concat, encodeFields } from "../bytes.ts";
import {
  checkName,
  fingerprintBytes,
  parsePublicIdentity,
  type PublicIdentity,
} from "./identity.ts";

/** SHA-512 iterations per half, as Signal uses. */
export const SAFETY_ITERATIONS = 5200;
/** Digits of one person's half. */
export const SAFETY_HALF_DIGITS = 30;

async function sha512(data: Bytes): Promise<Bytes> {
  return new Uint8Array(await crypto.subtle.digest("SHA-512", data));
}

function digits(hash: Bytes): string[] {
  const groups: string[] = [];
  for (let offset = 0; offset < SAFETY_HALF_DIGITS; offset += 5) {
    const value = hash.subarray(offset, offset + 5).reduce((acc, byte) => acc * 256 + byte, 0);
    groups.push(String(value % 100000).padStart(5, "0"));
  }
  return groups;
}

/**
 * One person's 30 digits (6 groups of 5, space-separated). The keys must be canonical
 * (`bad-key` otherwise) and the name valid (`bad-name`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Identity, safetyNumberHalf } from "./mod.ts";
 * const me = await Identity.generate();
 * assert.equal((await safetyNumberHalf("alice", me.public)).length, 35);
 * ```
 */
export async function safetyNumberHalf(name: string, keys: PublicIdentity): Promise<string> {
  const keyBytes = await fingerprintBytes(await parsePublicIdentity(keys));
  let hash = await sha512(encodeFields(["reelay-safety-v1", keyBytes, checkName(name)]));
  for (let i = 1; i < SAFETY_ITERATIONS; i++) hash = await sha512(concat([hash, keyBytes]));
  return digits(hash).join(" ");
}

/**
 * The 60-digit safety number of a pair (12 groups of 5, space-separated): the same whichever
 * side computes it, and different if either key or either name differs.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Identity, safetyNumber } from "./mod.ts";
 * const [a, b] = [await Identity.generate(), await Identity.generate()];
 * const number = await safetyNumber("alice", a.public, "bob", b.public);
 * assert.equal(number, await safetyNumber("bob", b.public, "alice", a.public));
 * ```
 */
export async function safetyNumber(
  nameA: string,
  keysA: PublicIdentity,
  nameB: string,
  keysB: PublicIdentity,
): Promise<string> {
  const halves = await Promise.all([
    safetyNumberHalf(nameA, keysA),
    safetyNumberHalf(nameB, keysB),
  ]);
  return halves.sort().join(" ");
}
