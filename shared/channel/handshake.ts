/**
 * reelay's secure-channel handshake over a byte connection.
 *
 * Protocol: `Noise_NXhfs_25519+MLKEM768_ChaChaPoly_SHA256`. We chose a Noise handshake over TLS:
 * the whole design fits in one page (two messages, no certificates, no negotiation), every
 * primitive is in Deno's WebCrypto, it is checked against published vectors, and the server's
 * identity is a bare key that clients pin like ssh host keys. `NX` authenticates the server by
 * its static X25519 key (sent encrypted, so a passive observer does not learn it); the client
 * stays anonymous at this layer and proves who it is afterwards by signing the handshake hash
 * with its RSA identity, so it needs no static Noise key. `hfs` (KEM-based hybrid forward
 * secrecy) mixes an ML-KEM-768 exchange into the keys: traffic recorded today stays secret
 * unless both X25519 and ML-KEM-768 are broken.
 *
 *     -> e, e1                      client's X25519 and ML-KEM-768 ephemeral public keys
 *     <- e, ee, ekem1, s, es        server's ephemeral, KEM ciphertext and static key (encrypted)
 *
 * On the wire each side's message is `REELAY\0\x01` (8 bytes: who we are and the framing
 * version), a 2-byte big-endian length, then the Noise message: 1216 bytes from the client and
 * 1200 from the server. Both payloads are empty. The Noise prologue binds the framing tag and
 * the caller's protocol name and version (such as `reelay/3`), so two builds that disagree on
 * either fail the handshake instead of misreading each other later.
 *
 * Errors (all {@linkcode ReelayError}; the connection is closed on every failure):
 * `not-reelay` when the first bytes are not this handshake, `handshake-failed` when a message
 * does not parse or authenticate or the peer hangs up, `handshake-timeout` when it takes longer
 * than allowed, and `server-key-changed` when the client was given an expected key and the
 * server presented another.
 *
 * @module
 */

import { type Bytes, concat, encodeFields, type Field, utf8 } from "../bytes.ts";
import { messageOf, ReelayError } from "../errors.ts";
import { writeAll } from "../io.ts";
import { HandshakeState } from "./handshake_state.ts";
import type { KeyPair } from "./primitives.ts";
import { assertServerKey, serverFingerprint } from "./server_key.ts";
import { type ByteConn, SecureConn } from "./transport.ts";

/** The Noise protocol name of reelay's channel. */
export const PROTOCOL_NAME = "Noise_NXhfs_25519+MLKEM768_ChaChaPoly_SHA256";
/** The 8 bytes that open each side's handshake message: `REELAY`, 0, framing version 1. */
export const CHANNEL_MAGIC: Bytes = concat([utf8("REELAY"), Uint8Array.of(0, 1)]);
/** How long a handshake may take unless the caller says otherwise. */
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;

/** What both sides pass to the handshake. */
export interface HandshakeOptions {
  /** The application protocol and version both sides must speak, such as `reelay/3`. */
  prologue: Field;
  /** The deadline for the whole handshake; defaults to {@linkcode DEFAULT_HANDSHAKE_TIMEOUT_MS}. */
  timeoutMs?: number;
  /** How to name the peer in errors; defaults to its `host:port`. */
  peer?: string;
}

/** What the client passes to {@linkcode initiate}. */
export interface InitiateOptions extends HandshakeOptions {
  /** The key pinned for this server: any other key fails with `server-key-changed`. */
  expectedServerKey?: Uint8Array;
}

/** A finished handshake. */
export interface Handshake {
  /** The encrypted connection; it now owns the connection given to the handshake. */
  transport: SecureConn;
  /** The Noise handshake hash: equal on both sides, unique to this session (sign it to bind). */
  handshakeHash: Bytes;
  /** The server's static key on the client side; `undefined` on the server side. */
  remoteStatic: Bytes | undefined;
}

/** A finished handshake on the client side. */
export interface ClientHandshake extends Handshake {
  /** The server's static public key, to compare with the pin for this server. */
  remoteStatic: Bytes;
  /** Its fingerprint, for people. */
  serverFingerprint: string;
}

/**
 * Runs the client's side over `conn`: sends the first message, checks the server's answer, and
 * returns the encrypted connection with the server's static key. Pass `expectedServerKey` to
 * have a changed key refused here; otherwise compare `remoteStatic` with your pin yourself.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initiate, respond, ServerKey } from "./mod.ts";
 * const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const serverKey = await ServerKey.generate();
 * const accepted = listener.accept().then((conn) =>
 *   respond(conn, serverKey, { prologue: "reelay/3" })
 * );
 * const client = await initiate(
 *   await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }),
 *   { prologue: "reelay/3" },
 * );
 * const server = await accepted;
 * assert.equal(client.serverFingerprint, serverKey.fingerprint);
 * assert.deepEqual(client.handshakeHash, server.handshakeHash);
 * client.transport.close();
 * server.transport.close();
 * listener.close();
 * ```
 */
export async function initiate(conn: ByteConn, options: InitiateOptions): Promise<ClientHandshake> {
  const peer = options.peer ?? describe(conn, "the server");
  return await withDeadline(conn, peer, options.timeoutMs, async (wire) => {
    const state = await HandshakeState.initialize({
      protocolName: PROTOCOL_NAME,
      initiator: true,
      prologue: prologueOf(options.prologue),
    });
    await wire.send(await noiseStep(peer, "server", () => state.writeMessage(new Uint8Array(0))));
    const reply = await wire.receive("server");
    await noiseStep(peer, "server", () => readEmpty(state, reply));
    const remoteStatic = state.remoteStatic!;
    if (options.expectedServerKey) {
      await assertServerKey(peer, options.expectedServerKey, remoteStatic);
    }
    return {
      transport: new SecureConn(conn, state.transport(), wire.rest()),
      handshakeHash: state.handshakeHash,
      remoteStatic,
      serverFingerprint: await serverFingerprint(remoteStatic),
    };
  });
}

/**
 * Runs the server's side over an accepted `conn` with the server's static key pair (such as a
 * `ServerKey`), and returns the encrypted connection. The client is not authenticated here: it
 * proves its identity afterwards by signing `handshakeHash`.
 *
 * @example A client that speaks something else (see {@linkcode initiate} for a handshake)
 * ```ts
 * import assert from "node:assert/strict";
 * import { respond, ServerKey } from "./mod.ts";
 * const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const stranger = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
 * await stranger.write(new TextEncoder().encode("GET / HTTP/1.1\r\n\r\n"));
 * const serverKey = await ServerKey.generate();
 * await assert.rejects(
 *   respond(await listener.accept(), serverKey, { prologue: "reelay/3" }),
 *   { code: "not-reelay" },
 * );
 * stranger.close();
 * listener.close();
 * ```
 */
export async function respond(
  conn: ByteConn,
  serverKey: KeyPair,
  options: HandshakeOptions,
): Promise<Handshake> {
  const peer = options.peer ?? describe(conn, "the client");
  return await withDeadline(conn, peer, options.timeoutMs, async (wire) => {
    const state = await HandshakeState.initialize({
      protocolName: PROTOCOL_NAME,
      initiator: false,
      prologue: prologueOf(options.prologue),
      s: serverKey,
    });
    const hello = await wire.receive("client");
    await noiseStep(peer, "client", () => readEmpty(state, hello));
    await wire.send(await noiseStep(peer, "client", () => state.writeMessage(new Uint8Array(0))));
    return {
      transport: new SecureConn(conn, state.transport(), wire.rest()),
      handshakeHash: state.handshakeHash,
      remoteStatic: undefined,
    };
  });
}

function prologueOf(prologue: Field): Bytes {
  return encodeFields([CHANNEL_MAGIC, prologue]);
}

async function readEmpty(state: HandshakeState, message: Uint8Array): Promise<void> {
  const payload = await state.readMessage(message);
  if (payload.length !== 0) throw new Error(`an unexpected ${payload.length}-byte payload`);
}

/** Runs a Noise operation, turning whatever it throws into `handshake-failed`. */
async function noiseStep<T>(peer: string, role: string, step: () => Promise<T>): Promise<T> {
  try {
    return await step();
  } catch (error) {
    throw failed(peer, role, messageOf(error), error);
  }
}

function failed(peer: string, role: string, detail: string, cause?: unknown): ReelayError {
  const hint = role === "server"
    ? ": it may run another reelay version, or the connection was altered on the way"
    : "";
  return new ReelayError(
    "handshake-failed",
    `The secure handshake with ${peer} failed (${detail})${hint}`,
    { cause },
  );
}

/**
 * Runs `body` with a deadline: when it passes, the connection is closed, which ends any read
 * or write in progress. On any failure the connection is closed too. (Not `withTimeout` from
 * `shared/async.ts`: racing would leave the read pending; only closing the socket ends it.)
 */
async function withDeadline<T>(
  conn: ByteConn,
  peer: string,
  timeoutMs = DEFAULT_HANDSHAKE_TIMEOUT_MS,
  body: (wire: HandshakeWire) => Promise<T>,
): Promise<T> {
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    closeQuietly(conn);
  }, timeoutMs);
  try {
    const result = await body(new HandshakeWire(conn, peer));
    if (timedOut) throw new Error("deadline passed");
    return result;
  } catch (error) {
    closeQuietly(conn);
    if (timedOut) {
      throw new ReelayError(
        "handshake-timeout",
        `The secure handshake with ${peer} did not finish within ${timeoutMs} ms`,
        { cause: error },
      );
    }
    throw error;
  } finally {
    clearTimeout(timer);
  }
}

function closeQuietly(conn: ByteConn): void {
  try {
    conn.close();
  } catch {
    // Already closed.
  }
}

/** Handshake messages on the wire: the magic tag, a 2-byte length, the Noise message. */
class HandshakeWire {
  readonly #conn: ByteConn;
  readonly #peer: string;
  readonly #scratch = new Uint8Array(16 * 1024);
  #pending: Bytes = new Uint8Array(0);

  constructor(conn: ByteConn, peer: string) {
    this.#conn = conn;
    this.#peer = peer;
  }

  async send(message: Uint8Array): Promise<void> {
    const length = new Uint8Array(2);
    new DataView(length.buffer).setUint16(0, message.length);
    try {
      await writeAll(this.#conn, concat([CHANNEL_MAGIC, length, message]));
    } catch (error) {
      throw failed(this.#peer, "", `sending failed: ${messageOf(error)}`, error);
    }
  }

  /** The next message, after checking that the peer opened with the magic tag. */
  async receive(role: "client" | "server"): Promise<Bytes> {
    await this.#expectMagic(role);
    const header = await this.#take(2, role);
    const length = (header[0] << 8) | header[1];
    if (length === 0) throw failed(this.#peer, role, "an empty handshake message");
    return await this.#take(length, role);
  }

  /** Bytes that arrived after the last message: the start of the first records. */
  rest(): Bytes {
    return this.#pending;
  }

  async #expectMagic(role: "client" | "server"): Promise<void> {
    for (;;) {
      const have = Math.min(this.#pending.length, CHANNEL_MAGIC.length);
      for (let i = 0; i < have; i++) {
        if (this.#pending[i] !== CHANNEL_MAGIC[i]) throw this.#notReelay(role);
      }
      if (have === CHANNEL_MAGIC.length) {
        this.#pending = this.#pending.subarray(have);
        return;
      }
      await this.#more(role);
    }
  }

  async #take(length: number, role: string): Promise<Bytes> {
    while (this.#pending.length < length) await this.#more(role);
    const taken = this.#pending.slice(0, length);
    this.#pending = this.#pending.subarray(length);
    return taken;
  }

  async #more(role: string): Promise<void> {
    let count: number | null;
    try {
      count = await this.#conn.read(this.#scratch);
    } catch (error) {
      throw failed(this.#peer, role, `the connection broke: ${messageOf(error)}`, error);
    }
    if (count === null) throw failed(this.#peer, role, "the peer closed the connection");
    this.#pending = concat([this.#pending, this.#scratch.subarray(0, count)]);
  }

  #notReelay(role: "client" | "server"): ReelayError {
    const shown = JSON.stringify(
      Array.from(
        this.#pending.subarray(0, 16),
        (byte) => byte >= 0x20 && byte < 0x7f ? String.fromCharCode(byte) : ".",
      ).join(""),
    );
    const message = role === "server"
      ? `${this.#peer} is not a reelay server, or runs a reelay version without the secure ` +
        `channel (its first bytes were ${shown})`
      : `${this.#peer} does not speak reelay's secure channel (its first bytes were ${shown})`;
    return new ReelayError("not-reelay", message);
  }
}

function describe(conn: ByteConn, fallback: string): string {
  const address = conn.remoteAddr;
  if (address?.transport === "tcp" || address?.transport === "udp") {
    return `${address.hostname}:${address.port}`;
  }
  return fallback;
}
