/**
 * The server's log: connections and errors, one line each on stderr. Never message contents.
 *
 * @module
 */

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
 * stderrLogger("info", "listening on 0.0.0.0:9000");
 * ```
 */
export const stderrLogger: Logger = (level: LogLevel, message: string): void => {
  const line = `${new Date().toISOString()} ${level.toUpperCase().padEnd(5)} ${message}\n`;
  try {
    Deno.stderr.writeSync(new TextEncoder().encode(line));
  } catch {
    // stderr closed (e.g. piped into `head`): the server keeps serving without its log.
  }
};

/** A logger that drops everything (tests and benchmarks). */
export const silentLogger: Logger = (): void => {};
