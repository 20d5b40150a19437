/**
 * A man in the middle for channel tests: a TCP proxy on loopback between one client and a
 * server that records every byte and may rewrite the byte stream in either direction.
 *
 * @module
 */

import { concat } from "../shared/bytes.ts";
import { writeAll } from "../shared/io.ts";
import { containsBytes } from "./_bytes.ts";
import { closeQuietly } from "./_conn.ts";

/** Which way bytes travel. */
export type Direction = "to-server" | "to-client";

/**
 * Rewrites one direction's stream: called with each chunk as it arrives and once with `null`
 * at the end; returns the bytes to forward now.
 */
export type Rewriter = (chunk: Uint8Array | null) => Uint8Array[];

/** Forwards bytes as they are. */
export function passThrough(chunk: Uint8Array | null): Uint8Array[] {
  return chunk ? [chunk] : [];
}

/**
 * Flips bit `bit` of the byte at stream offset `offset` (counting from the first byte).
 *
 * @example
 * ```ts ignore
 * const proxy = new ByteProxy(port, { "to-client": flipBit(1300, 0) });
 * ```
 */
export function flipBit(offset: number, bit: number): Rewriter {
  let seen = 0;
  return (chunk) => {
    if (!chunk) return [];
    const out = chunk.slice();
    if (offset >= seen && offset < seen + out.length) out[offset - seen] ^= 1 << bit;
    seen += out.length;
    return [out];
  };
}

/**
 * Passes the first `skip` bytes (the handshake) through, then cuts the rest into records
 * (2-byte length, body) and lets `records` decide what to forward for each: the record itself,
 * nothing, it twice, or records held back earlier.
 */
export function recordRewriter(
  skip: number,
  records: (record: Uint8Array, index: number) => Uint8Array[],
): Rewriter {
  let pending = new Uint8Array(0);
  let skipped = 0;
  let index = 0;
  return (chunk) => {
    if (!chunk) return pending.length ? [pending] : [];
    const out: Uint8Array[] = [];
    let data = chunk;
    if (skipped < skip) {
      const head = data.subarray(0, skip - skipped);
      out.push(head.slice());
      skipped += head.length;
      data = data.subarray(head.length);
    }
    const joined = concat([pending, data]);
    let start = 0;
    while (joined.length - start >= 2) {
      const end = start + 2 + ((joined[start] << 8) | joined[start + 1]);
      if (end > joined.length) break;
      out.push(...records(joined.slice(start, end), index++));
      start = end;
    }
    pending = joined.slice(start);
    return out;
  };
}

/** Connects one client to `targetPort` through a recording, rewriting relay. */
export class ByteProxy {
  readonly #listener: Deno.TcpListener;
  readonly #targetPort: number;
  readonly #rewriters: Record<Direction, Rewriter>;
  readonly #tasks: Promise<void>[] = [];
  readonly #conns: Deno.Conn[] = [];
  /** Every byte forwarded, per direction, in order. */
  readonly captured: Record<Direction, Uint8Array[]> = { "to-server": [], "to-client": [] };

  /** Starts listening on a free loopback port. */
  constructor(targetPort: number, rewriters: Partial<Record<Direction, Rewriter>> = {}) {
    this.#listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.#targetPort = targetPort;
    this.#rewriters = {
      "to-server": rewriters["to-server"] ?? passThrough,
      "to-client": rewriters["to-client"] ?? passThrough,
    };
    this.#tasks.push(this.#accept());
  }

  /** The port the client connects to. */
  get port(): number {
    return this.#listener.addr.port;
  }

  /** All bytes forwarded in `direction` as one array. */
  bytes(direction: Direction): Uint8Array {
    return concat(this.captured[direction]);
  }

  /** Whether `needle` appears in the bytes forwarded either way. */
  saw(needle: Uint8Array): boolean {
    const sides = [this.bytes("to-server"), this.bytes("to-client")];
    return sides.some((all) => containsBytes(all, needle));
  }

  /** Stops listening, closes both sides and waits for the relay tasks. */
  async close(): Promise<void> {
    this.#listener.close();
    for (const conn of this.#conns) closeQuietly(conn);
    await Promise.all(this.#tasks);
  }

  async #accept(): Promise<void> {
    let client: Deno.Conn;
    try {
      client = await this.#listener.accept();
    } catch {
      return;
    }
    const server = await Deno.connect({ hostname: "127.0.0.1", port: this.#targetPort });
    this.#conns.push(client, server);
    this.#tasks.push(
      this.#pipe(client, server, "to-server"),
      this.#pipe(server, client, "to-client"),
    );
  }

  async #pipe(from: Deno.Conn, to: Deno.Conn, direction: Direction): Promise<void> {
    const rewrite = this.#rewriters[direction];
    const buffer = new Uint8Array(64 * 1024);
    try {
      for (;;) {
        const count = await from.read(buffer);
        for (const out of rewrite(count === null ? null : buffer.slice(0, count))) {
          this.captured[direction].push(out);
          await writeAll(to, out);
        }
        if (count === null) break;
      }
      await to.closeWrite();
    } catch {
      // One side went away; closing both below ends the mirror task too.
      closeQuietly(from);
      closeQuietly(to);
    }
  }
}
