/**
 * A TCP link between a client and a server on loopback that a test can make go dead without a
 * word, the way a link does when wifi drops: the peers notice only by their keepalives.
 *
 * @module
 */

import { closeQuietly } from "./_conn.ts";

/** Which way bytes travel through the link. */
export type LinkDirection = "to-server" | "to-client";

/**
 * Forwards one connection to `port` until frozen; frozen (one way or both), it passes nothing
 * on that way and closes nothing, as a link that died without a word does (the server keeps its
 * end open).
 *
 * @example
 * ```ts ignore
 * const link = new FreezableLink(server.port);
 * const bob = await joinClient(link.port, "bob");
 * link.freeze(); // or link.freeze("to-server"): bob hears the server, the server not bob
 * await link.close();
 * ```
 */
export class FreezableLink {
  readonly #listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  readonly #conns: Deno.Conn[] = [];
  readonly #pipes: Promise<void>[] = [];
  readonly #frozen = new Set<LinkDirection>();

  /** Takes the first connection to {@linkcode FreezableLink.port} through to `port`. */
  constructor(port: number) {
    this.#pipes.push(this.#accept(port));
  }

  /** The port a client dials. */
  get port(): number {
    return this.#listener.addr.port;
  }

  /** Passes nothing more the given ways (both by default). */
  freeze(...directions: LinkDirection[]): void {
    for (const direction of directions.length > 0 ? directions : ["to-server", "to-client"]) {
      this.#frozen.add(direction as LinkDirection);
    }
  }

  /** Closes both ends and the listener. */
  async close(): Promise<void> {
    this.#listener.close();
    for (const conn of this.#conns) closeQuietly(conn);
    await Promise.all(this.#pipes);
  }

  async #accept(port: number): Promise<void> {
    let client: Deno.Conn;
    try {
      client = await this.#listener.accept();
    } catch (error) {
      // Closed before anyone dialled (a test that failed early): nothing to forward.
      if (error instanceof Deno.errors.BadResource) return;
      throw error;
    }
    this.#conns.push(client);
    const server = await Deno.connect({ hostname: "127.0.0.1", port });
    this.#conns.push(server);
    this.#pipes.push(
      this.#pipe(client, server, "to-server"),
      this.#pipe(server, client, "to-client"),
    );
  }

  async #pipe(from: Deno.Conn, to: Deno.Conn, direction: LinkDirection): Promise<void> {
    const buffer = new Uint8Array(64 * 1024);
    try {
      for (let n = await from.read(buffer); n !== null; n = await from.read(buffer)) {
        if (!this.#frozen.has(direction)) await to.write(buffer.subarray(0, n));
      }
    } catch {
      // one side closed
    }
  }
}
