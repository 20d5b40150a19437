/**
 * Noise's `CipherState` (specification revision 34, section 5.1): a cipher key `k` (or none) and
 * a 64-bit nonce counter `n`, used for handshake payloads and, after `Split()`, for one direction
 * of transport messages.
 *
 * @module
 */

import type { Bytes } from "../bytes.ts";
import {
  CryptoFailure,
  decrypt,
  encrypt,
  importCipherKey,
  KEYLEN,
  MAX_NONCE,
} from "./primitives.ts";

// REKEY encrypts 32 zero bytes under the reserved nonce 2^64-1 (spec section 4.2).
const REKEY_NONCE = (1n << 64n) - 1n;

/**
 * One direction's cipher: `EncryptWithAd` / `DecryptWithAd` advance the nonce by one per message,
 * so a replayed, dropped or reordered message fails authentication.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { CipherState } from "./cipher_state.ts";
 * const key = new Uint8Array(32).fill(1);
 * const [alice, bob] = [await CipherState.withKey(key), await CipherState.withKey(key)];
 * const first = await alice.encryptWithAd(new Uint8Array(), new Uint8Array([42]));
 * const second = await alice.encryptWithAd(new Uint8Array(), new Uint8Array([43]));
 * await assert.rejects(bob.decryptWithAd(new Uint8Array(), second)); // out of order
 * assert.deepEqual(await bob.decryptWithAd(new Uint8Array(), first), new Uint8Array([42]));
 * assert.deepEqual(await bob.decryptWithAd(new Uint8Array(), second), new Uint8Array([43]));
 * ```
 */
export class CipherState {
  #key: CryptoKey | undefined;
  #n = 0;

  /** `InitializeKey(empty)`: a cipher that passes data through until it gets a key. */
  static empty(): CipherState {
    return new CipherState();
  }

  /** A cipher initialized with `key` (`InitializeKey(key)`). */
  static async withKey(key: Uint8Array): Promise<CipherState> {
    const state = new CipherState();
    await state.initializeKey(key);
    return state;
  }

  /** `InitializeKey(key)`: sets `k` and resets `n` to 0. */
  async initializeKey(key: Uint8Array): Promise<void> {
    const imported = await importCipherKey(key);
    this.#key = imported;
    this.#n = 0;
  }

  /** `HasKey()`. */
  hasKey(): boolean {
    return this.#key !== undefined;
  }

  /** The next nonce to be used. */
  get nonce(): number {
    return this.#n;
  }

  /** `SetNonce(nonce)`. */
  setNonce(nonce: number): void {
    if (!Number.isSafeInteger(nonce) || nonce < 0 || nonce > MAX_NONCE) {
      throw new RangeError(`Nonce ${nonce} is outside 0-${MAX_NONCE}`);
    }
    this.#n = nonce;
  }

  /**
   * `EncryptWithAd(ad, plaintext)`: encrypts under the current nonce and advances it; with no
   * key, returns the plaintext. The nonce is taken before the first await, so calls made without
   * awaiting each other still get consecutive nonces in call order.
   */
  encryptWithAd(ad: Uint8Array, plaintext: Uint8Array): Promise<Bytes> {
    if (this.#key === undefined) return Promise.resolve(plaintext.slice());
    return encrypt(this.#key, this.#take(1), ad, plaintext);
  }

  /**
   * `DecryptWithAd(ad, ciphertext)`: decrypts under the current nonce; with no key, returns the
   * ciphertext. A failed authentication throws a {@linkcode CryptoFailure} and, as the spec
   * says, leaves the nonce where it was.
   */
  async decryptWithAd(ad: Uint8Array, ciphertext: Uint8Array): Promise<Bytes> {
    if (this.#key === undefined) return ciphertext.slice();
    const n = this.#n;
    this.#checkNonce(n, 1);
    const plaintext = await decrypt(this.#key, n, ad, ciphertext);
    this.#n = n + 1;
    return plaintext;
  }

  /**
   * Reserves `count` consecutive nonces and returns the first, for a caller that encrypts or
   * decrypts several messages at once with {@linkcode encryptAt} / {@linkcode decryptAt}. A
   * failed decryption then leaves the nonces used: that caller must treat the failure as the
   * end of the session, which is what reelay's record layer does.
   */
  reserve(count: number): number {
    this.#requireKey();
    return this.#take(count);
  }

  /** `ENCRYPT(k, n, ad, plaintext)` at a nonce obtained from {@linkcode reserve}. */
  encryptAt(n: number, ad: Uint8Array, plaintext: Uint8Array): Promise<Bytes> {
    return encrypt(this.#requireKey(), n, ad, plaintext);
  }

  /** `DECRYPT(k, n, ad, ciphertext)` at a nonce obtained from {@linkcode reserve}. */
  decryptAt(n: number, ad: Uint8Array, ciphertext: Uint8Array): Promise<Bytes> {
    return decrypt(this.#requireKey(), n, ad, ciphertext);
  }

  /**
   * `Rekey()`: replaces `k` with the first 32 bytes of `ENCRYPT(k, 2^64-1, empty, zeros)`; `n`
   * is left as it is (spec section 11.3).
   */
  async rekey(): Promise<void> {
    const key = this.#requireKey();
    const sealed = await encrypt(key, REKEY_NONCE, new Uint8Array(0), new Uint8Array(KEYLEN));
    const n = this.#n;
    await this.initializeKey(sealed.subarray(0, KEYLEN));
    this.#n = n;
  }

  #take(count: number): number {
    const n = this.#n;
    this.#checkNonce(n, count);
    this.#n = n + count;
    return n;
  }

  #checkNonce(n: number, count: number): void {
    if (n + count - 1 > MAX_NONCE) {
      throw new CryptoFailure("The cipher's nonces are used up: the session must end");
    }
  }

  #requireKey(): CryptoKey {
    if (this.#key === undefined) throw new Error("The cipher state has no key");
    return this.#key;
  }
}
