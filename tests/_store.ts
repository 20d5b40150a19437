/**
 * Helpers for the store tests: fingerprints and mail to put, a clock to move by hand, a
 * temporary state folder, and child processes that use the store with exactly
 * `--allow-read --allow-write` (what `node:sqlite` needs; nothing more).
 *
 * @module
 */

import assert from "node:assert/strict";
import { settlesWithin, Wake } from "../shared/async.ts";
import { ReelayError } from "../shared/errors.ts";
import type { Bytes } from "../shared/bytes.ts";
import type { NewNotice, NewSealedMail, OneTimeKey } from "../server/store/mod.ts";
import { denoOnPath } from "./_procs.ts";

/** A distinct 64-digit hex fingerprint for a small number. */
export function fp(n: number): string {
  return n.toString(16).padStart(64, "0");
}

/** `size` bytes, all `fill`. */
export function bytes(size: number, fill = 7): Bytes {
  return new Uint8Array(size).fill(fill);
}

/** A sealed item from person `from` to person `to` (numbers, named `p<n>`). */
export function sealed(from: number, to: number, messageId: string, size = 10): NewSealedMail {
  return {
    kind: "sealed",
    recipientKey: fp(to),
    recipientName: `p${to}`,
    senderKey: fp(from),
    senderName: `p${from}`,
    messageId,
    envelope: bytes(size, to & 0xff),
  };
}

/** A server notice for person `to`; `from` is whose act it passes on (a refusal's refuser). */
export function notice(to: number, text: string, from?: number): NewNotice {
  const senderKey = from === undefined ? {} : { senderKey: fp(from) };
  return {
    kind: "notice",
    recipientKey: fp(to),
    recipientName: `p${to}`,
    ...senderKey,
    notice: { text },
  };
}

/** `count` one-time keys with ids from `first`. */
export function oneTimeKeys(first: number, count: number, size = 32): OneTimeKey[] {
  return Array.from({ length: count }, (_, i) => ({ id: first + i, key: bytes(size, i & 0xff) }));
}

/** A clock the test moves. */
export class Clock {
  /** The current time, in milliseconds since the epoch. */
  time: number;
  /** Starts at `time`. */
  constructor(time = 1_700_000_000_000) {
    this.time = time;
  }
  /** The function to pass as the store's `now`. */
  readonly now = (): number => this.time;
}

/** Asserts that `promise` rejects with a `ReelayError` of `code` whose message matches. */
export async function rejectsWith(
  promise: Promise<unknown>,
  code: string,
  ...patterns: RegExp[]
): Promise<ReelayError> {
  let caught: unknown;
  try {
    await promise;
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof ReelayError, `expected a ReelayError ${code}, got ${caught}`);
  assert.equal(caught.code, code, caught.message);
  for (const pattern of patterns) assert.match(caught.message, pattern);
  return caught;
}

/** A temporary folder removed when disposed. */
export async function tempDir(): Promise<AsyncDisposable & { path: string }> {
  const path = await Deno.makeTempDir({ prefix: "reelay-store-" });
  return { path, [Symbol.asyncDispose]: () => Deno.remove(path, { recursive: true }) };
}

const CHILD = new URL("./_store_child.ts", import.meta.url).pathname;

/**
 * `deno run --allow-read --allow-write tests/_store_child.ts ...args`, with its stdout read
 * line by line so a test can wait for progress, and its stdin open for a start signal.
 */
export class StoreChild implements AsyncDisposable {
  readonly #child: Deno.ChildProcess;
  readonly #stdin: WritableStreamDefaultWriter<Uint8Array>;
  readonly #lines: string[] = [];
  readonly #stderr: Promise<string>;
  readonly #stdout: Promise<void>;
  readonly #wake = new Wake();
  #ended = false;

  /** Starts the child. */
  constructor(args: string[]) {
    this.#child = new Deno.Command(denoOnPath(), {
      args: ["run", "--no-prompt", "--allow-read", "--allow-write", CHILD, ...args],
      env: { NO_COLOR: "1" },
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#stdin = this.#child.stdin.getWriter();
    this.#stdout = this.#readLines();
    this.#stderr = new Response(this.#child.stderr).text();
  }

  /** Every stdout line so far. */
  get lines(): readonly string[] {
    return this.#lines;
  }

  /** Waits until some stdout line passes `test`; fails after `timeoutMs` or if the child ends. */
  async waitForLine(test: (line: string) => boolean, timeoutMs = 30_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    while (true) {
      const found = this.#lines.find(test);
      if (found !== undefined) return found;
      const left = deadline - Date.now();
      if (this.#ended || left <= 0) {
        const why = this.#ended ? "the child ended" : `${timeoutMs} ms passed`;
        throw new Error(
          `Store child: no awaited line (${why}); stdout:\n${this.#lines.join("\n")}\n` +
            `stderr:\n${this.#ended ? await this.#stderr : "(still running)"}`,
        );
      }
      await settlesWithin(this.#wake.wait(), left);
    }
  }

  /** Writes one line to the child's stdin. */
  async send(line: string): Promise<void> {
    await this.#stdin.write(new TextEncoder().encode(`${line}\n`));
  }

  /** Kills the child at once (no chance to finish a transaction). */
  kill(): void {
    try {
      this.#child.kill("SIGKILL");
    } catch {
      // Already exited.
    }
  }

  /** Waits for the exit (killing it after `timeoutMs`), and returns its status and stderr. */
  async finish(timeoutMs = 30_000): Promise<{ status: Deno.CommandStatus; stderr: string }> {
    const timer = setTimeout(() => this.kill(), timeoutMs);
    try {
      await this.#stdin.close().catch(() => {});
      const status = await this.#child.status;
      await this.#stdout;
      return { status, stderr: await this.#stderr };
    } finally {
      clearTimeout(timer);
    }
  }

  /** Kills the child if it still runs and releases its pipes. */
  async [Symbol.asyncDispose](): Promise<void> {
    this.kill();
    await this.finish();
  }

  async #readLines(): Promise<void> {
    let rest = "";
    for await (const text of this.#child.stdout.pipeThrough(new TextDecoderStream())) {
      const parts = (rest + text).split("\n");
      rest = parts.pop() ?? "";
      this.#lines.push(...parts);
      this.#wake.wake();
    }
    if (rest !== "") this.#lines.push(rest);
    this.#ended = true;
    this.#wake.wake();
  }
}
