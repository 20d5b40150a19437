/**
 * A hostile server for tests: it sees every frame of one client's connection in the clear and
 * may drop, change, repeat or reorder them, the way a compromised server could.
 *
 * Since protocol 3 every byte on the wire is encrypted, and a join proof binds each hello to its
 * secure channel, so a man in the middle can neither read nor relay a join. A hostile server can:
 * it holds the channel's keys. So the proxy forwards the encrypted bytes untouched, and taps the
 * server's decrypted side of that one connection (the test server's tap, `serverTaps`).
 *
 * @module
 */

import { concat } from "../shared/bytes.ts";
import { writeAll } from "../shared/io.ts";
import { encodeFrame, FrameDecoder } from "../shared/protocol/frame.ts";
import { serverTaps } from "../testing/harness.ts";
import { containsBytes } from "./_bytes.ts";
import { closeQuietly, DelegatingConn } from "./_conn.ts";
import { controlFrame, frameJson, type Json } from "./_raw.ts";

export type { Json } from "./_raw.ts";

/** Which way a frame travels. */
export type Direction = "to-server" | "to-client";

/** Decides what to forward in place of one control message (return [] to drop it). */
export type Rewrite = (direction: Direction, message: Json) => Json[];

/**
 * Listens on a free loopback port and forwards one client to the test server at `serverPort`,
 * rewriting that connection's frames inside the server.
 *
 * @example
 * ```ts ignore
 * const proxy = new HostileProxy(server.port, (direction, message) => [message]);
 * const bob = await joinClient(proxy.port, "bob");
 * ```
 */
export class HostileProxy {
  readonly #listener: Deno.TcpListener;
  readonly #serverPort: number;
  readonly #tasks: Promise<void>[] = [];
  readonly #conns: Deno.Conn[] = [];
  #tappedPort: number | undefined;
  /** Every frame the hostile server let through, both ways, as encoded. */
  readonly captured: Uint8Array[] = [];
  rewrite: Rewrite;
  /** How many times each frame that is not a message (stream data) is passed on. */
  repeatStream = 1;

  /** Starts listening. */
  constructor(serverPort: number, rewrite: Rewrite = (_direction, message) => [message]) {
    this.#listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.#serverPort = serverPort;
    this.rewrite = rewrite;
    this.#tasks.push(this.#accept());
  }

  /** The port clients connect to. */
  get port(): number {
    return this.#listener.addr.port;
  }

  /** Whether `needle` appears anywhere in the frames the server handled. */
  sawBytes(needle: Uint8Array): boolean {
    return containsBytes(concat(this.captured), needle);
  }

  /** Stops listening and closes both sides. */
  async close(): Promise<void> {
    if (this.#tappedPort !== undefined) serverTaps.delete(this.#tappedPort);
    this.#listener.close();
    for (const conn of this.#conns) closeQuietly(conn);
    await Promise.all(this.#tasks);
  }

  async #accept(): Promise<void> {
    let client: Deno.Conn;
    let server: Deno.TcpConn;
    try {
      client = await this.#listener.accept();
      this.#conns.push(client);
      server = await Deno.connect({ hostname: "127.0.0.1", port: this.#serverPort });
      this.#conns.push(server);
    } catch {
      return;
    }
    // Registered before any byte is forwarded, so before the server's handshake can finish.
    this.#tappedPort = server.localAddr.port;
    serverTaps.set(this.#tappedPort, (conn) => new FrameTap(conn, this));
    this.#tasks.push(pipe(client, server), pipe(server, client));
  }

  /** Rewrites the frames in `bytes` going `direction`; returns what to pass on. */
  rewriteFrames(decoder: FrameDecoder, bytes: Uint8Array, direction: Direction): Uint8Array[] {
    decoder.push(bytes);
    const out: Uint8Array[] = [];
    for (let frame = decoder.next(); frame; frame = decoder.next()) {
      const message = frameJson(frame);
      const forwarded = message === undefined
        ? Array.from(
          { length: this.repeatStream },
          () => encodeFrame(frame.kind, frame.payload.slice()),
        )
        : this.rewrite(direction, message).map((rewritten) => controlFrame(rewritten));
      this.captured.push(...forwarded);
      out.push(...forwarded);
    }
    return out;
  }
}

/**
 * The server's decrypted side of the tapped connection: frames the client sent pass through the
 * rewrite before the server reads them, frames the server writes before they are encrypted.
 */
class FrameTap extends DelegatingConn {
  readonly #proxy: HostileProxy;
  readonly #fromClient = new FrameDecoder(16 * 1024 * 1024);
  readonly #toClient = new FrameDecoder(16 * 1024 * 1024);
  readonly #buffer = new Uint8Array(64 * 1024);
  #ready: Uint8Array[] = [];

  constructor(inner: Deno.Conn, proxy: HostileProxy) {
    super(inner);
    this.#proxy = proxy;
  }

  override async read(p: Uint8Array): Promise<number | null> {
    while (this.#ready.length === 0) {
      const count = await this.inner.read(this.#buffer);
      if (count === null) return null;
      this.#ready = this.#proxy.rewriteFrames(
        this.#fromClient,
        this.#buffer.slice(0, count),
        "to-server",
      ).filter((part) => part.length > 0);
    }
    const next = this.#ready[0];
    const count = Math.min(p.length, next.length);
    p.set(next.subarray(0, count));
    if (count === next.length) this.#ready.shift();
    else this.#ready[0] = next.subarray(count);
    return count;
  }

  override async write(p: Uint8Array): Promise<number> {
    for (const part of this.#proxy.rewriteFrames(this.#toClient, p.slice(), "to-client")) {
      await writeAll(this.inner, part);
    }
    return p.length;
  }
}

async function pipe(from: Deno.Conn, to: Deno.Conn): Promise<void> {
  const buffer = new Uint8Array(64 * 1024);
  try {
    for (;;) {
      const count = await from.read(buffer);
      if (count === null) break;
      await writeAll(to, buffer.subarray(0, count));
    }
  } catch {
    // One side went away; closing the other below ends the mirror task too.
  }
  closeQuietly(to);
  closeQuietly(from);
}
