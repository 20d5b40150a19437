/**
 * A hostile relay for tests: a proxy between one client and the server that sees every frame
 * and may drop, change, repeat or reorder them, the way a compromised server could. It ends the
 * secure channel on both sides (the client pins the proxy's key on first use, as it would a
 * hostile server's), so it sees what the server sees: frames in the clear.
 *
 * @module
 */

import { initiate, respond, ServerKey } from "../shared/channel/mod.ts";
import { encodeFrame, FrameDecoder } from "../shared/protocol/frame.ts";
import { CHANNEL_PROLOGUE } from "../shared/protocol/mod.ts";
import { writeAll } from "../shared/io.ts";
import { controlFrame, frameJson, type Json } from "./_raw.ts";

export type { Json } from "./_raw.ts";

/** The hostile relay's own channel key (it cannot present the real server's). */
const proxyKey = await ServerKey.generate();

/** Which way a frame travels. */
export type Direction = "to-server" | "to-client";

/** Decides what to forward in place of one control message (return [] to drop it). */
export type Rewrite = (direction: Direction, message: Json) => Json[];

/**
 * Listens on a free loopback port and forwards one client to `serverPort`.
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
  /** Every byte that passed, both ways, as sent on the wire. */
  readonly captured: Uint8Array[] = [];
  rewrite: Rewrite;

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

  /** Whether `needle` appears anywhere in the captured bytes. */
  sawBytes(needle: Uint8Array): boolean {
    const all = new Uint8Array(this.captured.reduce((sum, part) => sum + part.length, 0));
    let offset = 0;
    for (const part of this.captured) {
      all.set(part, offset);
      offset += part.length;
    }
    outer: for (let i = 0; i + needle.length <= all.length; i++) {
      for (let j = 0; j < needle.length; j++) if (all[i + j] !== needle[j]) continue outer;
      return true;
    }
    return false;
  }

  /** Stops listening and closes both sides. */
  async close(): Promise<void> {
    this.#listener.close();
    for (const conn of this.#conns) {
      try {
        conn.close();
      } catch {
        // Already closed by the other side.
      }
    }
    await Promise.all(this.#tasks);
  }

  async #accept(): Promise<void> {
    let client: Deno.Conn;
    let server: Deno.Conn;
    try {
      const accepted = await this.#listener.accept();
      this.#conns.push(accepted);
      client = (await respond(accepted, proxyKey, { prologue: CHANNEL_PROLOGUE })).transport;
      this.#conns.push(client);
      const dialed = await Deno.connect({ hostname: "127.0.0.1", port: this.#serverPort });
      this.#conns.push(dialed);
      server = (await initiate(dialed, { prologue: CHANNEL_PROLOGUE })).transport;
      this.#conns.push(server);
    } catch {
      return;
    }
    this.#tasks.push(
      this.#pipe(client, server, "to-server"),
      this.#pipe(server, client, "to-client"),
    );
  }

  async #pipe(from: Deno.Conn, to: Deno.Conn, direction: Direction): Promise<void> {
    const decoder = new FrameDecoder(16 * 1024 * 1024);
    try {
      while (true) {
        const count = await from.read(decoder.writable());
        if (count === null) break;
        decoder.commit(count);
        for (let frame = decoder.next(); frame; frame = decoder.next()) {
          const message = frameJson(frame);
          if (message === undefined) {
            await this.#forward(to, encodeFrame(frame.kind, frame.payload.slice()));
            continue;
          }
          for (const out of this.rewrite(direction, message)) {
            await this.#forward(to, controlFrame(out));
          }
        }
      }
    } catch {
      // One side went away; closing the other below ends the mirror task too.
    }
    try {
      to.close();
    } catch {
      // Already closed.
    }
  }

  async #forward(to: Deno.Conn, bytes: Uint8Array): Promise<void> {
    this.captured.push(bytes);
    await writeAll(to, bytes);
  }
}
