/**
 * Noise's `HandshakeState` (specification revision 34, section 5.3) driven by a pattern's token
 * lists, with the `hfs` extension's `e1` / `ekem1` tokens and `psk` tokens. It runs any pattern
 * that `patterns.ts` builds, which is how the published test vectors check it.
 *
 * @module
 */

import { type Bytes, concat } from "../bytes.ts";
import { ReelayError } from "../errors.ts";
import type { CipherState } from "./cipher_state.ts";
import { parseProtocolName, type ProtocolName, type Token } from "./patterns.ts";
import {
  dh,
  DHLEN,
  generateKeyPair,
  type Kem,
  type KemKeyPair,
  type KeyPair,
  MLKEM768,
  TAGLEN,
} from "./primitives.ts";
import { SymmetricState } from "./symmetric_state.ts";

/** The largest Noise message (spec section 3). */
export const MAX_MESSAGE_BYTES = 65535;
/** Bytes of a pre-shared key. */
export const PSK_BYTES = 32;

/** What a {@linkcode HandshakeState} starts from (the spec's `Initialize()` arguments). */
export interface HandshakeOptions {
  /** Such as `Noise_NX_25519_ChaChaPoly_SHA256`. */
  protocolName: string;
  /** Whether this side sends the first message. */
  initiator: boolean;
  /** Bytes both sides must agree on; hashed before anything else. */
  prologue?: Uint8Array;
  /** This side's static key pair, when the pattern sends or pre-shares it. */
  s?: KeyPair;
  /** The peer's static public key, when the pattern pre-shares it. */
  rs?: Uint8Array;
  /** Pre-shared keys, in the order the pattern's `psk` tokens use them. */
  psks?: readonly Uint8Array[];
  /** A fixed ephemeral key pair for the `e` token. For test vectors only. */
  ephemeral?: KeyPair;
  /** The KEM for `hfs` patterns; ML-KEM-768 unless a test substitutes another. */
  kem?: Kem;
}

/** Which way each transport cipher works, from this side's point of view. */
export interface TransportCiphers {
  /** Encrypts what this side sends. */
  send: CipherState;
  /** Decrypts what this side receives. */
  receive: CipherState;
}

/** A handshake message that does not parse or does not authenticate. */
export class HandshakeMessageError extends ReelayError {
  /** Creates the error; `cause` keeps the underlying failure. */
  constructor(message: string, cause?: unknown) {
    super("noise-bad-message", message, { cause });
    this.name = "HandshakeMessageError";
  }
}

/**
 * One side of a Noise handshake. Call {@linkcode writeMessage} and {@linkcode readMessage} in
 * turn; once {@linkcode finished}, {@linkcode transport} gives the two transport ciphers.
 *
 * @example A complete NN handshake
 * ```ts
 * import assert from "node:assert/strict";
 * import { HandshakeState } from "./handshake_state.ts";
 * const protocolName = "Noise_NN_25519_ChaChaPoly_SHA256";
 * const alice = await HandshakeState.initialize({ protocolName, initiator: true });
 * const bob = await HandshakeState.initialize({ protocolName, initiator: false });
 * await bob.readMessage(await alice.writeMessage(new Uint8Array()));
 * await alice.readMessage(await bob.writeMessage(new TextEncoder().encode("hi")));
 * assert.ok(alice.finished && bob.finished);
 * assert.deepEqual(alice.handshakeHash, bob.handshakeHash);
 * const sealed = await alice.transport().send.encryptWithAd(new Uint8Array(), Uint8Array.of(1));
 * assert.deepEqual(
 *   await bob.transport().receive.decryptWithAd(new Uint8Array(), sealed),
 *   Uint8Array.of(1),
 * );
 * ```
 */
export class HandshakeState {
  readonly #protocol: ProtocolName;
  readonly #initiator: boolean;
  readonly #symmetric: SymmetricState;
  readonly #kem: Kem;
  readonly #psks: Uint8Array[];
  readonly #usesPsk: boolean;
  #s: KeyPair | undefined;
  #e: KeyPair | undefined;
  #rs: Bytes | undefined;
  #re: Bytes | undefined;
  #e1: KemKeyPair | undefined;
  #re1: Bytes | undefined;
  #fixedEphemeral: KeyPair | undefined;
  #index = 0;
  #broken = false;
  #transport: TransportCiphers | undefined;

  private constructor(
    options: HandshakeOptions,
    protocol: ProtocolName,
    symmetric: SymmetricState,
  ) {
    this.#protocol = protocol;
    this.#initiator = options.initiator;
    this.#symmetric = symmetric;
    this.#s = options.s;
    this.#rs = options.rs?.slice();
    this.#psks = [...(options.psks ?? [])];
    this.#usesPsk = protocol.pattern.messages.some((message) => message.includes("psk"));
    this.#fixedEphemeral = options.ephemeral;
    this.#kem = options.kem ?? MLKEM768;
  }

  /**
   * `Initialize()`: parses the protocol name, checks that every key the pattern needs is
   * given, then hashes the prologue and the pre-message keys (initiator's first).
   */
  static async initialize(options: HandshakeOptions): Promise<HandshakeState> {
    const protocol = parseProtocolName(options.protocolName);
    checkKeys(protocol, options);
    const symmetric = await SymmetricState.initialize(protocol.name);
    const state = new HandshakeState(options, protocol, symmetric);
    await symmetric.mixHash(options.prologue ?? new Uint8Array(0));
    await state.#hashPreMessages();
    return state;
  }

  /** Whether the last message has been written or read. */
  get finished(): boolean {
    return this.#transport !== undefined;
  }

  /** `h`: after the handshake, a value unique to this session that both sides share. */
  get handshakeHash(): Bytes {
    return this.#symmetric.handshakeHash;
  }

  /** The peer's static public key, once known. */
  get remoteStatic(): Bytes | undefined {
    return this.#rs?.slice();
  }

  /** The transport ciphers; throws until the handshake has finished. */
  transport(): TransportCiphers {
    if (!this.#transport) throw new Error("The handshake has not finished");
    return this.#transport;
  }

  /** `WriteMessage(payload)`: the next message, which this side must be due to send. */
  async writeMessage(payload: Uint8Array): Promise<Bytes> {
    this.#checkTurn(true);
    try {
      const parts: Uint8Array[] = [];
      for (const token of this.#protocol.pattern.messages[this.#index]) {
        await this.#writeToken(token, parts);
      }
      parts.push(await this.#symmetric.encryptAndHash(payload));
      const message = concat(parts);
      if (message.length > MAX_MESSAGE_BYTES) {
        throw new RangeError(`Handshake message of ${message.length} bytes exceeds 65535`);
      }
      await this.#advance();
      return message;
    } catch (error) {
      this.#broken = true;
      throw error;
    }
  }

  /**
   * `ReadMessage(message)`: processes the peer's next message and returns its payload. A message
   * that is malformed or fails authentication throws a {@linkcode HandshakeMessageError} and
   * ends this handshake.
   */
  async readMessage(message: Uint8Array): Promise<Bytes> {
    this.#checkTurn(false);
    try {
      if (message.length > MAX_MESSAGE_BYTES) {
        throw new HandshakeMessageError(`Handshake message of ${message.length} bytes is too long`);
      }
      const cursor = { bytes: message, offset: 0 };
      for (const token of this.#protocol.pattern.messages[this.#index]) {
        await this.#readToken(token, cursor);
      }
      const payload = await this.#decryptAndHash(cursor.bytes.subarray(cursor.offset));
      await this.#advance();
      return payload;
    } catch (error) {
      this.#broken = true;
      if (error instanceof ReelayError) {
        throw error instanceof HandshakeMessageError
          ? error
          : new HandshakeMessageError(error.message, error);
      }
      throw error;
    }
  }

  async #hashPreMessages(): Promise<void> {
    const { initiatorPreMessage, responderPreMessage } = this.#protocol.pattern;
    for (
      const [tokens, mine] of [[initiatorPreMessage, this.#initiator], [
        responderPreMessage,
        !this.#initiator,
      ]] as const
    ) {
      for (const token of tokens) {
        if (token !== "s") throw new RangeError("Pre-message ephemeral keys are not supported");
        await this.#symmetric.mixHash(mine ? this.#s!.publicKey : this.#rs!);
      }
    }
  }

  async #writeToken(token: Token, parts: Uint8Array[]): Promise<void> {
    switch (token) {
      case "e": {
        this.#e = this.#fixedEphemeral ?? await generateKeyPair();
        parts.push(this.#e.publicKey);
        await this.#mixEphemeral(this.#e.publicKey);
        return;
      }
      case "s":
        parts.push(await this.#symmetric.encryptAndHash(this.#s!.publicKey));
        return;
      case "e1":
        this.#e1 = await this.#kem.generateKeyPair();
        parts.push(await this.#symmetric.encryptAndHash(this.#e1.publicKey));
        return;
      case "ekem1": {
        const { ciphertext, output } = await this.#kem.encapsulate(required(this.#re1, "e1"));
        parts.push(await this.#symmetric.encryptAndHash(ciphertext));
        await this.#symmetric.mixKey(output);
        return;
      }
      default:
        return await this.#mixToken(token);
    }
  }

  async #readToken(token: Token, cursor: { bytes: Uint8Array; offset: number }): Promise<void> {
    const take = (length: number, sealed: boolean) => {
      const size = length + (sealed && this.#symmetric.hasKey() ? TAGLEN : 0);
      if (cursor.offset + size > cursor.bytes.length) {
        throw new HandshakeMessageError(`Handshake message ends inside its "${token}" token`);
      }
      cursor.offset += size;
      return cursor.bytes.subarray(cursor.offset - size, cursor.offset);
    };
    switch (token) {
      case "e":
        this.#re = take(DHLEN, false).slice();
        await this.#mixEphemeral(this.#re);
        return;
      case "s":
        this.#rs = await this.#decryptAndHash(take(DHLEN, true));
        return;
      case "e1":
        this.#re1 = await this.#decryptAndHash(take(this.#kem.publicKeyLength, true));
        return;
      case "ekem1": {
        const ciphertext = await this.#decryptAndHash(take(this.#kem.ciphertextLength, true));
        await this.#symmetric.mixKey(
          await this.#kem.decapsulate(required(this.#e1, "e1"), ciphertext),
        );
        return;
      }
      default:
        return await this.#mixToken(token);
    }
  }

  /** The DH tokens and `psk`, which are processed alike when writing and reading. */
  async #mixToken(token: Token): Promise<void> {
    const e = () => required(this.#e, "e");
    const s = () => required(this.#s, "s");
    const re = () => required(this.#re, "re");
    const rs = () => required(this.#rs, "rs");
    switch (token) {
      case "ee":
        return await this.#symmetric.mixKey(await dh(e(), re()));
      case "es":
        return await this.#symmetric.mixKey(
          this.#initiator ? await dh(e(), rs()) : await dh(s(), re()),
        );
      case "se":
        return await this.#symmetric.mixKey(
          this.#initiator ? await dh(s(), re()) : await dh(e(), rs()),
        );
      case "ss":
        return await this.#symmetric.mixKey(await dh(s(), rs()));
      case "psk":
        return await this.#symmetric.mixKeyAndHash(required(this.#psks.shift(), "psk"));
      default:
        throw new Error(`Token "${token}" is not a mixing token`);
    }
  }

  async #mixEphemeral(publicKey: Uint8Array): Promise<void> {
    await this.#symmetric.mixHash(publicKey);
    // In psk handshakes the ephemeral key also acts as a nonce for the psk (spec section 9.2).
    if (this.#usesPsk) await this.#symmetric.mixKey(publicKey);
  }

  async #decryptAndHash(ciphertext: Uint8Array): Promise<Bytes> {
    return await this.#symmetric.decryptAndHash(ciphertext);
  }

  #checkTurn(writing: boolean): void {
    if (this.#broken) throw new Error("This handshake has failed and cannot continue");
    if (this.finished) throw new Error("This handshake has already finished");
    const initiatorsTurn = this.#index % 2 === 0;
    if ((initiatorsTurn === this.#initiator) !== writing) {
      throw new Error(`It is not this side's turn to ${writing ? "write" : "read"}`);
    }
  }

  async #advance(): Promise<void> {
    this.#index++;
    if (this.#index < this.#protocol.pattern.messages.length) return;
    const split = await this.#symmetric.split();
    this.#transport = this.#initiator
      ? { send: split.initiatorToResponder, receive: split.responderToInitiator }
      : { send: split.responderToInitiator, receive: split.initiatorToResponder };
    this.#e = undefined;
    this.#e1 = undefined;
  }
}

/** Throws unless `options` holds every key and psk the pattern needs for this side. */
function checkKeys(protocol: ProtocolName, options: HandshakeOptions): void {
  const { pattern } = protocol;
  const mine = options.initiator ? pattern.initiatorPreMessage : pattern.responderPreMessage;
  const theirs = options.initiator ? pattern.responderPreMessage : pattern.initiatorPreMessage;
  const sends = pattern.messages.some((message, index) =>
    (index % 2 === 0) === options.initiator && message.includes("s")
  );
  if ((sends || mine.includes("s")) && !options.s) {
    throw new RangeError(`Pattern "${pattern.name}" needs this side's static key pair`);
  }
  if (theirs.includes("s") && options.rs?.length !== DHLEN) {
    throw new RangeError(`Pattern "${pattern.name}" needs the peer's static public key`);
  }
  const pskCount = pattern.messages.flat().filter((token) => token === "psk").length;
  const psks = options.psks ?? [];
  if (psks.length !== pskCount || psks.some((psk) => psk.length !== PSK_BYTES)) {
    throw new RangeError(`Pattern "${pattern.name}" needs ${pskCount} pre-shared keys of 32 bytes`);
  }
}

function required<T>(value: T | undefined, name: string): T {
  if (value === undefined) throw new Error(`The handshake has no "${name}" value yet`);
  return value;
}
