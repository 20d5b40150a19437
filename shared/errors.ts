/**
 * Typed errors shared by the server and the client.
 *
 * Every error a person can cause carries a stable `code` (used on the wire and in JSON events)
 * and a message written for that person. Anything else that escapes is a bug and keeps its stack.
 *
 * @module
 */

/** Exit code for a runtime failure that is not the user's fault (join refused, ffmpeg failed). */
export const EXIT_FAILURE = 1;

/** Exit code for a usage or configuration error, as in most command-line tools. */
export const EXIT_USAGE = 2;

/** Exit code of a `client --json` run that ended cleanly after at least one command failed. */
export const EXIT_COMMAND_FAILED = 3;

/** Exit code of `client --no-reconnect` when the connection to the server was lost. */
export const EXIT_DISCONNECTED = 4;

/** Exit code of a client that gave up reconnecting. */
export const EXIT_GAVE_UP = 5;

/**
 * reelay's exit codes and when each is used: the one table (`reelay client --help` prints it,
 * the README shows it).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { EXIT_CODES, EXIT_GAVE_UP } from "./errors.ts";
 * assert.match(EXIT_CODES.find(([code]) => code === EXIT_GAVE_UP)![1], /gave up/);
 * ```
 */
export const EXIT_CODES: readonly (readonly [number, string])[] = [
  [0, "done: /quit, Ctrl-C, Ctrl-D, or end of input after what was in flight finished"],
  [EXIT_FAILURE, "a failure: the server refused the join (at start, or for good on a reconnect)"],
  [EXIT_USAGE, "usage or configuration error"],
  [EXIT_COMMAND_FAILED, "client --json: the run ended cleanly but a command failed"],
  [EXIT_DISCONNECTED, "client --no-reconnect: the connection to the server was lost"],
  [EXIT_GAVE_UP, "client: gave up reconnecting ([client] reconnect_give_up_ms)"],
];

/**
 * An error meant for a person: its message is shown as is, without a stack.
 *
 * @example Throwing a user-facing error
 * ```ts
 * import assert from "node:assert/strict";
 * import { ReelayError } from "./errors.ts";
 * const error = new ReelayError("unknown-video", `Video "cats.mp4" is not in the catalog`);
 * assert.equal(error.code, "unknown-video");
 * assert.equal(error.exitCode, 1);
 * ```
 */
export class ReelayError extends Error {
  /** A stable, kebab-case identifier such as `name-taken`. */
  readonly code: string;
  /** The process exit code to use when this error ends the program. */
  readonly exitCode: number;

  /** Creates an error with a stable code and a message for a person. */
  constructor(code: string, message: string, options?: { exitCode?: number; cause?: unknown }) {
    super(message, { cause: options?.cause });
    this.name = "ReelayError";
    this.code = code;
    this.exitCode = options?.exitCode ?? EXIT_FAILURE;
  }
}

/**
 * A mistake in how the program was invoked or configured: exits 2, shown with usage.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { UsageError } from "./errors.ts";
 * assert.equal(new UsageError(`Port "99999" is out of range (1-65535)`).exitCode, 2);
 * ```
 */
export class UsageError extends ReelayError {
  /** Creates a usage error; `code` defaults to `usage`. */
  constructor(message: string, code = "usage") {
    super(code, message, { exitCode: EXIT_USAGE });
    this.name = "UsageError";
  }
}

/**
 * A peer broke the wire protocol (bad frame, bad message). The connection that sent it is closed.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ProtocolError } from "./errors.ts";
 * const error = new ProtocolError("frame-too-large", "Frame of 9999999 bytes is too large");
 * assert.equal(error.code, "frame-too-large");
 * ```
 */
export class ProtocolError extends ReelayError {
  /** Creates a protocol error with a stable code. */
  constructor(code: string, message: string) {
    super(code, message);
    this.name = "ProtocolError";
  }
}

/**
 * Returns a readable message for any thrown value.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { messageOf } from "./errors.ts";
 * assert.equal(messageOf(new Error("boom")), "boom");
 * assert.equal(messageOf("plain"), "plain");
 * ```
 */
export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * What to log about a thrown value: the message of a {@linkcode ReelayError} (it was expected,
 * and written for a person), the stack of anything else (a bug, to be found and fixed).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { errorDetail, ReelayError } from "./errors.ts";
 * assert.equal(errorDetail(new ReelayError("busy", "Server is busy")), "Server is busy");
 * assert.match(errorDetail(new TypeError("x is undefined")), /TypeError: x is undefined\n\s+at /);
 * assert.equal(errorDetail(42), "42");
 * ```
 */
export function errorDetail(error: unknown): string {
  if (error instanceof ReelayError) return error.message;
  if (error instanceof Error) return error.stack ?? `${error.name}: ${error.message}`;
  return String(error);
}
