/**
 * Child processes that must never outlive their owner: a bounded tail of their error output, and
 * an end that escalates from SIGTERM to SIGKILL. Used for ffmpeg on the server and the player on
 * the client.
 *
 * @module
 */

import { settlesWithin } from "./async.ts";

/** How much of a child's stderr is kept for error messages. */
const DEFAULT_TAIL_BYTES = 4096;

/**
 * Keeps the last few kilobytes of a byte stream (a child's stderr) so error messages can quote
 * them, while draining the stream so the child never blocks on a full stderr pipe.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { StderrTail } from "./process.ts";
 * const child = new Deno.Command("ffmpeg", { args: ["-bad-option"], stdout: "null", stderr: "piped" })
 *   .spawn();
 * const tail = new StderrTail();
 * await Promise.all([tail.drain(child.stderr), child.status]);
 * assert.match(tail.lastLines(3), /bad-option/);
 * ```
 */
export class StderrTail {
  #bytes = new Uint8Array(0);
  readonly #limit: number;

  /** Creates an empty tail keeping at most `limit` bytes. */
  constructor(limit = DEFAULT_TAIL_BYTES) {
    this.#limit = limit;
  }

  /** Appends bytes, forgetting the oldest ones beyond the limit. */
  push(chunk: Uint8Array): void {
    const joined = new Uint8Array(this.#bytes.length + chunk.length);
    joined.set(this.#bytes);
    joined.set(chunk, this.#bytes.length);
    this.#bytes = joined.length > this.#limit ? joined.slice(joined.length - this.#limit) : joined;
  }

  /** Reads `stream` to its end (or until it errors), keeping its tail; never throws. */
  async drain(stream: ReadableStream<Uint8Array>): Promise<void> {
    try {
      for await (const chunk of stream) this.push(chunk);
    } catch {
      // The pipe broke because the child was killed: what we kept is all there is.
    }
  }

  /** The last `count` non-empty lines, joined with newlines. */
  lastLines(count = 5): string {
    const text = new TextDecoder().decode(this.#bytes);
    return text.split(/\r?\n|\r/).map((line) => line.trim()).filter((line) => line !== "")
      .slice(-count).join("\n");
  }
}

/**
 * Ends a child: SIGTERM at once, SIGKILL if it has not exited after `graceMs`; resolves once it
 * has exited. Safe on a child that already exited.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { terminate } from "./process.ts";
 * const child = new Deno.Command("ffmpeg", {
 *   args: ["-v", "error", "-re", "-f", "lavfi", "-i", "testsrc", "-f", "null", "-"],
 *   stdin: "null",
 * }).spawn();
 * await terminate(child, child.status, 1000);
 * assert.equal((await child.status).success, false);
 * ```
 */
export async function terminate(
  child: Deno.ChildProcess,
  exited: Promise<unknown>,
  graceMs: number,
): Promise<void> {
  signal(child, "SIGTERM");
  if (!(await settlesWithin(exited, graceMs))) signal(child, "SIGKILL");
  await exited.catch(() => {});
}

function signal(child: Deno.ChildProcess, name: Deno.Signal): void {
  try {
    child.kill(name);
  } catch {
    // It has already exited.
  }
}
