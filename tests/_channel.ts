/**
 * Helpers for secure-channel tests: a one-connection server on loopback, a connected pair of
 * secure connections (optionally through a {@linkcode ByteProxy}), and stream helpers.
 *
 * @module
 */

import {
  type ClientHandshake,
  type Handshake,
  initiate,
  type InitiateOptions,
  respond,
  ServerKey,
} from "../shared/channel/mod.ts";
import { concat } from "../shared/bytes.ts";
import { writeAll } from "../shared/io.ts";
import { ByteProxy, type Direction, type Rewriter } from "./_byte_proxy.ts";

/** The prologue every test side uses unless it tests a mismatch. */
export const PROLOGUE = "reelay/3";

/** One server key for the whole test run. */
export const serverKey: ServerKey = await ServerKey.generate();

/** A server that accepts one connection and runs the server's handshake on it. */
export class OneShotServer {
  readonly #listener: Deno.TcpListener;
  /** Settles with the server's handshake (or its failure). */
  readonly handshake: Promise<Handshake>;

  /** Listens on a free loopback port. */
  constructor(key: ServerKey = serverKey, options: { prologue?: string; timeoutMs?: number } = {}) {
    this.#listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.handshake = this.#listener.accept().then((conn) =>
      respond(conn, key, { prologue: options.prologue ?? PROLOGUE, timeoutMs: options.timeoutMs })
    );
    this.handshake.catch(() => {}); // inspected by the tests that expect a failure
  }

  /** The listening port. */
  get port(): number {
    return this.#listener.addr.port;
  }

  /** Stops listening. */
  close(): void {
    this.#listener.close();
  }
}

/** A client and a server joined by the secure channel, maybe through a proxy. */
export interface SecurePair {
  client: ClientHandshake;
  server: Handshake;
  proxy: ByteProxy | undefined;
  /** Closes both sides, the proxy and the listener. */
  close(): Promise<void>;
}

/** Connects a client to a fresh one-shot server (through a proxy when `rewriters` are given). */
export async function securePair(
  options: {
    rewriters?: Partial<Record<Direction, Rewriter>>;
    client?: Partial<InitiateOptions>;
  } = {},
): Promise<SecurePair> {
  const server = new OneShotServer();
  const proxy = options.rewriters ? new ByteProxy(server.port, options.rewriters) : undefined;
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: proxy?.port ?? server.port });
  const client = await initiate(conn, { prologue: PROLOGUE, ...options.client });
  const handshake = await server.handshake;
  return {
    client,
    server: handshake,
    proxy,
    async close() {
      client.transport.close();
      handshake.transport.close();
      server.close();
      await proxy?.close();
    },
  };
}

/** Deterministic bytes (a fast PRNG), so large transfers need no randomness source. */
export function patternBytes(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** Writes `data` in pieces whose sizes cycle through `sizes`, then half-closes. */
export async function sendInPieces(
  conn: { write(p: Uint8Array): Promise<number>; closeWrite(): Promise<void> },
  data: Uint8Array,
  sizes: readonly number[],
): Promise<void> {
  for (let offset = 0, i = 0; offset < data.length; i++) {
    const size = sizes[i % sizes.length];
    await writeAll(conn, data.subarray(offset, offset + size));
    offset += size;
  }
  await conn.closeWrite();
}

/** What a reader got before the stream ended or failed. */
export interface Received {
  bytes: Uint8Array;
  error: unknown;
}

/** Reads until the end of the stream or an error, with read buffers cycling through `sizes`. */
export async function receiveAll(
  conn: { read(p: Uint8Array): Promise<number | null> },
  sizes: readonly number[] = [64 * 1024],
): Promise<Received> {
  const chunks: Uint8Array[] = [];
  let error: unknown;
  try {
    for (let i = 0;; i++) {
      const buffer = new Uint8Array(sizes[i % sizes.length]);
      const count = await conn.read(buffer);
      if (count === null) break;
      chunks.push(buffer.subarray(0, count));
    }
  } catch (caught) {
    error = caught;
  }
  return { bytes: concat(chunks), error };
}
