/**
 * Public face of reelay's secure channel: every byte between client and server is encrypted and
 * authenticated after a Noise handshake (`Noise_NXhfs_25519+MLKEM768_ChaChaPoly_SHA256`) that
 * authenticates the server by its pinned static key.
 *
 * - {@linkcode initiate} / {@linkcode respond}: the handshake over a TCP connection; both give a
 *   {@linkcode SecureConn}, which has the calls of a `Deno.Conn`.
 * - {@linkcode ServerKey}: the server's persistent identity; {@linkcode ServerPins}: the client's
 *   pins per server address; {@linkcode serverFingerprint}: how a server key is shown.
 * - The Noise engine underneath ({@linkcode HandshakeState} and friends) for tests and tools.
 *
 * @example A client and a server on loopback
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
 * await client.transport.write(new TextEncoder().encode("hello"));
 * const buffer = new Uint8Array(64);
 * const count = await server.transport.read(buffer);
 * assert.equal(new TextDecoder().decode(buffer.subarray(0, count!)), "hello");
 * assert.deepEqual(client.remoteStatic, serverKey.publicKey);
 * client.transport.close();
 * server.transport.close();
 * listener.close();
 * ```
 *
 * @module
 */

export {
  CHANNEL_MAGIC,
  type ClientHandshake,
  DEFAULT_HANDSHAKE_TIMEOUT_MS,
  type Handshake,
  type HandshakeOptions,
  initiate,
  type InitiateOptions,
  PROTOCOL_NAME,
  respond,
} from "./handshake.ts";
export {
  type ByteConn,
  MAX_RECORD_PLAINTEXT,
  RECORD_HEADER_BYTES,
  SecureConn,
  tamperedError,
} from "./transport.ts";
export {
  assertServerKey,
  type PinCheck,
  serverFingerprint,
  ServerKey,
  ServerPins,
  type StoredServerKey,
} from "./server_key.ts";
export {
  HandshakeMessageError,
  type HandshakeOptions as NoiseHandshakeOptions,
  HandshakeState,
  MAX_MESSAGE_BYTES,
  PSK_BYTES,
  type TransportCiphers,
} from "./handshake_state.ts";
export { CipherState } from "./cipher_state.ts";
export { type SplitCiphers, SymmetricState } from "./symmetric_state.ts";
export {
  type HandshakePattern,
  parseProtocolName,
  pattern,
  type PreMessageToken,
  type ProtocolName,
  type Token,
} from "./patterns.ts";
export {
  CryptoFailure,
  dh,
  DHLEN,
  generateKeyPair,
  HASHLEN,
  type Kem,
  type KemEncapsulation,
  type KemKeyPair,
  type KeyPair,
  keyPairFromPrivate,
  MLKEM768,
  TAGLEN,
} from "./primitives.ts";
