/**
 * One running ffmpeg: the one place a stream's ffmpeg is spawned and killed. Its arguments come
 * from `ffmpeg_args.ts`; `playback.ts` runs one {@linkcode Transcode} per part.
 *
 * @module
 */

import { messageOf, ReelayError } from "../../shared/errors.ts";
import { StderrTail, terminate } from "../../shared/process.ts";
import { missingProgramError } from "./tools.ts";

/** How long {@link Transcode.kill} waits after SIGTERM before sending SIGKILL. */
const KILL_GRACE_MS = 1000;

/**
 * How a {@link Transcode} ended.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Transcode, type TranscodeStatus } from "./transcode.ts";
 * const part = Transcode.start("ffmpeg", ["-version"]);
 * await part.stdout.cancel();
 * const status: TranscodeStatus = await part.status;
 * assert.equal(status.error, undefined);
 * ```
 */
export interface TranscodeStatus {
  /** Exit code (non-zero on failure or when killed). */
  code: number;
  /** The signal that ended it, if any. */
  signal: Deno.Signal | null;
  /** True when it ended because {@link Transcode.kill} was called. */
  killed: boolean;
  /** The error explaining a failure that was not a kill. */
  error?: ReelayError;
}

/**
 * One running ffmpeg and everything it owns. Read `stdout` (it errors with a ReelayError code
 * `transcode-failed` if ffmpeg exits non-zero); call `kill()` on every path where the bytes are
 * no longer wanted. `status` always resolves, never rejects.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Transcode } from "./transcode.ts";
 * const part = Transcode.start("ffmpeg", [
 *   "-v", "error", "-f", "lavfi", "-i", "testsrc=size=64x64", "-t", "1", "-f", "mpegts", "pipe:1",
 * ]);
 * let bytes = 0;
 * for await (const chunk of part.stdout) bytes += chunk.length;
 * await part.kill(); // harmless once it has exited
 * assert.ok(bytes > 0);
 * assert.equal((await part.status).code, 0);
 * ```
 */
export class Transcode {
  /** The encoded bytes; ends when ffmpeg exits, errors if it failed. */
  readonly stdout: ReadableStream<Uint8Array>;
  /** Resolves once ffmpeg has exited and its pipes are closed. */
  readonly status: Promise<TranscodeStatus>;
  /** Process id of ffmpeg. */
  readonly pid: number;
  /** A short name used in error messages, e.g. `part 2 of "cats.mp4"`. */
  readonly label: string;
  readonly #child: Deno.ChildProcess;
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  readonly #tail = new StderrTail();
  #killed = false;
  #suspended = false;
  #killing?: Promise<void>;
  static #running = 0;

  /** How many ffmpeg processes started by this process have not exited yet. */
  static get running(): number {
    return Transcode.#running;
  }

  private constructor(child: Deno.ChildProcess, label: string) {
    this.#child = child;
    this.pid = child.pid;
    this.label = label;
    Transcode.#running++;
    child.status.finally(() => Transcode.#running--);
    this.#reader = child.stdout.getReader();
    const stderrDone = this.#tail.drain(child.stderr);
    this.status = Promise.all([child.status, stderrDone]).then(([status]) => {
      const result: TranscodeStatus = {
        code: status.code,
        signal: status.signal,
        killed: this.#killed,
      };
      if (!status.success && !this.#killed) {
        const how = status.signal
          ? `was killed by ${status.signal}`
          : `exited with code ${status.code}`;
        const stderr = this.#tail.lastLines(5);
        result.error = new ReelayError(
          "transcode-failed",
          `Transcoding ${label} failed: ffmpeg ${how}${stderr ? `:\n${stderr}` : ""}`,
        );
      }
      return result;
    });
    this.stdout = new ReadableStream<Uint8Array>(
      {
        pull: async (controller) => {
          // After a cancel the controller refuses chunks; there is nobody left to tell.
          const settle = (action: () => void) => {
            try {
              action();
            } catch {
              // Cancelled while this read was in flight.
            }
          };
          let read: ReadableStreamReadResult<Uint8Array>;
          try {
            read = await this.#reader.read();
          } catch (error) {
            if (this.#killed) return settle(() => controller.close());
            const status = await this.status;
            return settle(() => controller.error(status.error ?? error));
          }
          if (!read.done) return settle(() => controller.enqueue(read.value));
          const status = await this.status;
          settle(() => status.error ? controller.error(status.error) : controller.close());
        },
        cancel: () => this.kill(),
      },
      { highWaterMark: 0 },
    );
  }

  /**
   * Spawns `program` with `args`: stdin closed, stdout piped to {@link Transcode.stdout}, stderr
   * kept as a bounded tail for error messages. Throws a ReelayError with code `ffmpeg-missing`
   * when the program cannot be started.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { Transcode } from "./transcode.ts";
   * const part = Transcode.start("ffmpeg", ["-version"], "version check");
   * await part.stdout.cancel();
   * await part.status;
   * assert.throws(() => Transcode.start("no-such-ffmpeg", []), /could not be started/);
   * ```
   */
  static start(program: string, args: string[], label = "a video"): Transcode {
    let child: Deno.ChildProcess;
    try {
      child = new Deno.Command(program, { args, stdin: "null", stdout: "piped", stderr: "piped" })
        .spawn();
    } catch (error) {
      throw missingProgramError(program, error) ??
        new ReelayError("transcode-failed", `Starting "${program}" failed: ${messageOf(error)}`, {
          cause: error,
        });
    }
    return new Transcode(child, label);
  }

  /** True while ffmpeg is stopped by {@link Transcode.suspend}. */
  get suspended(): boolean {
    return this.#suspended;
  }

  /**
   * Stops ffmpeg where it is (SIGSTOP): a paused viewer's transcode then costs no CPU at all.
   * {@link Transcode.resume} goes on; {@link Transcode.kill} continues it first, so a stopped
   * ffmpeg still ends at once. Nothing happens after a kill.
   */
  suspend(): void {
    if (this.#suspended || this.#killed) return;
    this.#suspended = this.#signal("SIGSTOP");
  }

  /** Lets a suspended ffmpeg go on (SIGCONT). Idempotent. */
  resume(): void {
    if (!this.#suspended) return;
    this.#suspended = false;
    this.#signal("SIGCONT");
  }

  #signal(name: Deno.Signal): boolean {
    try {
      this.#child.kill(name);
      return true;
    } catch {
      return false; // It has already exited.
    }
  }

  /** True once {@link Transcode.kill} has been called. */
  get killed(): boolean {
    return this.#killed;
  }

  /**
   * Stops ffmpeg: closes its stdout, sends SIGTERM, then SIGKILL if it has not exited after a
   * short grace time, and waits for its exit. Idempotent; harmless after it exited by itself.
   */
  kill(): Promise<void> {
    this.#killing ??= this.#kill();
    return this.#killing;
  }

  async #kill(): Promise<void> {
    // Mark first so a read that fails because of the kill is not reported as a failure.
    this.#killed = true;
    const ended = terminate(this.#child, this.status, KILL_GRACE_MS);
    // A stopped process acts on SIGTERM only once it runs again.
    this.resume();
    // A blocked write to a full pipe fails at once when its reader goes away.
    await this.#reader.cancel().catch(() => {});
    await ended;
  }
}
