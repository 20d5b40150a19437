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

/**
 * A logger writing `time level message` lines to stderr.
 *
 * @example
 * ```ts
 * import { stderrLogger } from "./log.ts";
 * stderrLogger("info", "Listening on 0.0.0.0:9000");
 * ```
 */
export const stderrLogger: Logger = (level: LogLevel, message: string): void => {
  const line = `${new Date().toISOString()} ${level.toUpperCase().padEnd(5)} ${message}\n`;
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
