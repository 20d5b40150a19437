/**
 * Noise's `SymmetricState` (specification revision 34, section 5.2): the chaining key `ck`, the
 * handshake hash `h` and the `CipherState` that handshake payloads are encrypted with.
 *
 * @module
 */

import { type Bytes, concat, utf8 } from "../bytes.ts";
import { CipherState } from "./cipher_state.ts";
import { HASHLEN, hkdf, sha256 } from "./primitives.ts";

/** The two cipher states `Split()` returns: the first for initiator-to-responder messages. */
export interface SplitCiphers {
  /** Encrypts what the initiator sends (`c1`). */
  initiatorToResponder: CipherState;
  /** Encrypts what the responder sends (`c2`). */
  responderToInitiator: CipherState;
}

/**
 * The symmetric half of a handshake: everything sent and received is hashed into `h`, and every
 * DH or KEM output is mixed into `ck` and the cipher key.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SymmetricState } from "./symmetric_state.ts";
 * const state = await SymmetricState.initialize("Noise_NN_25519_ChaChaPoly_SHA256");
 * // A name of exactly 32 bytes is the first hash as it is.
 * assert.equal(new TextDecoder().decode(state.handshakeHash), "Noise_NN_25519_ChaChaPoly_SHA256");
 * assert.equal(state.hasKey(), false);
 * await state.mixKey(new Uint8Array(32));
 * assert.equal(state.hasKey(), true);
 * ```
 */
export class SymmetricState {
  #ck: Bytes;
  #h: Bytes;
  readonly #cipher = CipherState.empty();

  private constructor(h: Bytes) {
    this.#h = h;
    this.#ck = h.slice();
  }

  /**
   * `InitializeSymmetric(protocol_name)`: `h` is the name padded with zeros when it fits in
   * `HASHLEN` bytes, else its hash; `ck` starts equal to `h`; no cipher key yet.
   */
  static async initialize(protocolName: string): Promise<SymmetricState> {
    const name = utf8(protocolName);
    let h: Bytes;
    if (name.length <= HASHLEN) {
      h = new Uint8Array(HASHLEN);
      h.set(name);
    } else {
      h = await sha256(name);
    }
    return new SymmetricState(h);
  }

  /** `GetHandshakeHash()`: a copy of `h`. */
  get handshakeHash(): Bytes {
    return this.#h.slice();
  }

  /** `HasKey()` of the inner cipher state. */
  hasKey(): boolean {
    return this.#cipher.hasKey();
  }

  /** `MixKey(input_key_material)`: `ck, temp_k = HKDF(ck, ikm, 2)`, then `InitializeKey(temp_k)`. */
  async mixKey(inputKeyMaterial: Uint8Array): Promise<void> {
    const [ck, tempK] = await hkdf(this.#ck, inputKeyMaterial, 2);
    this.#ck = ck;
    await this.#cipher.initializeKey(tempK);
  }

  /** `MixHash(data)`: `h = HASH(h || data)`. */
  async mixHash(data: Uint8Array): Promise<void> {
    this.#h = await sha256(concat([this.#h, data]));
  }

  /**
   * `MixKeyAndHash(input_key_material)`: `ck, temp_h, temp_k = HKDF(ck, ikm, 3)`, then
   * `MixHash(temp_h)` and `InitializeKey(temp_k)`. Used by `psk` tokens.
   */
  async mixKeyAndHash(inputKeyMaterial: Uint8Array): Promise<void> {
    const [ck, tempH, tempK] = await hkdf(this.#ck, inputKeyMaterial, 3);
    this.#ck = ck;
    await this.mixHash(tempH);
    await this.#cipher.initializeKey(tempK);
  }

  /** `EncryptAndHash(plaintext)`: encrypts with `h` as associated data, then hashes the result. */
  async encryptAndHash(plaintext: Uint8Array): Promise<Bytes> {
    const ciphertext = await this.#cipher.encryptWithAd(this.#h, plaintext);
    await this.mixHash(ciphertext);
    return ciphertext;
  }

  /** `DecryptAndHash(ciphertext)`: decrypts with `h` as associated data, then hashes the input. */
  async decryptAndHash(ciphertext: Uint8Array): Promise<Bytes> {
    const plaintext = await this.#cipher.decryptWithAd(this.#h, ciphertext);
    await this.mixHash(ciphertext);
    return plaintext;
  }

  /** `Split()`: two cipher states from `HKDF(ck, empty, 2)`. */
  async split(): Promise<SplitCiphers> {
    const [k1, k2] = await hkdf(this.#ck, new Uint8Array(0), 2);
    return {
      initiatorToResponder: await CipherState.withKey(k1),
      responderToInitiator: await CipherState.withKey(k2),
    };
  }
}
