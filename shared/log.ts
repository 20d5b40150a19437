/**
 * The one log reelay writes: connections, the catalog, streams and errors, one line each on
 * stderr. Never message contents. The server and every part of it take a {@linkcode Logger}.
 *
 * @module
 */

import { writeAllSync } from "./io.ts";

/** Severity of a log line. */
export type LogLevel = "info" | "warn" | "error";

/** Where the server and its parts write log lines. */
export type Logger = (level: LogLevel, message: string) => void;

// C0 and C1 controls, DEL, line and paragraph separators, bidi controls, zero-width and other
// invisible format characters, lone surrogates: nothing that can move the operator's cursor,
// start a line, reorder or hide text.
const UNSAFE_IN_LOG =
  // deno-lint-ignore no-control-regex -- controls are what must not reach the terminal
  /[\x00-\x1f\x7f-\x9f\u2028\u2029\p{Cf}\p{Default_Ignorable_Code_Point}]|\p{Cs}/gu;

/**
 * Makes text safe for one log line: every control, separator, bidi or invisible character
 * becomes a visible `\u{...}` escape (and `\` itself `\\`, so an escape in a name cannot pass
 * for one of ours). Names and file names come from strangers: a file called `x\nINFO ...` or
 * one carrying `ESC]0;...` must neither forge a line nor reach the operator's terminal.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { escapeForLog } from "./log.ts";
 * assert.equal(escapeForLog("cats.mp4"), "cats.mp4");
 * assert.equal(escapeForLog("a\x1b[31m\nINFO fake"), "a\\u{1b}[31m\\u{a}INFO fake");
 * assert.equal(escapeForLog("pay\u202Egnp.mp4"), "pay\\u{202e}gnp.mp4");
 * ```
 */
export function escapeForLog(text: string): string {
  return text.replaceAll("\\", "\\\\").replace(
    UNSAFE_IN_LOG,
    (char) => `\\u{${char.codePointAt(0)!.toString(16)}}`,
  );
}

/**
 * One log line as written: time, level, and the message with {@linkcode escapeForLog} applied,
 * ending in exactly one newline.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { logLine } from "./log.ts";
 * const line = logLine("warn", "Left out: \"x\nERROR forged.mp4\"", new Date(0));
 * assert.equal(line, '1970-01-01T00:00:00.000Z WARN  Left out: "x\\u{a}ERROR forged.mp4"\n');
 * ```
 */
export function logLine(level: LogLevel, message: string, at: Date): string {
  return `${at.toISOString()} ${level.toUpperCase().padEnd(5)} ${escapeForLog(message)}\n`;
}

/**
 * A logger writing `time level message` lines to stderr, each message through
 * {@linkcode escapeForLog}.
 *
 * @example
 * ```ts
 * import { stderrLogger } from "./log.ts";
 * stderrLogger("info", "Listening on 0.0.0.0:9000");
 * ```
 */
export const stderrLogger: Logger = (level: LogLevel, message: string): void => {
  const line = logLine(level, message, new Date());
  try {
    writeAllSync(Deno.stderr, new TextEncoder().encode(line));
  } catch {
    // stderr closed (e.g. piped into `head`): the server keeps serving without its log.
  }
};

/**
 * A logger that drops everything (tests and benchmarks).
 *
 * @example
 * ```ts
 * import { silentLogger } from "./log.ts";
 * silentLogger("error", "nobody reads this");
 * ```
 */
export const silentLogger: Logger = (): void => {};
