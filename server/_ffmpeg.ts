/**
 * Private helpers shared by the media modules: running a short ffmpeg/ffprobe command to
 * completion.
 *
 * @module
 */

import { ReelayError } from "../shared/errors.ts";
import { StderrTail } from "../shared/process.ts";

/**
 * What a finished short command produced.
 *
 * @example
 * ```ts
 * import { type CommandResult, runToEnd } from "./_ffmpeg.ts";
 * const result: CommandResult = await runToEnd("ffprobe", ["-version"]);
 * console.log(result.code, result.stderr);
 * ```
 */
export interface CommandResult {
  /** The exit code (non-zero when it failed or was killed). */
  code: number;
  /** Everything it wrote to stdout. */
  stdout: Uint8Array;
  /** The last lines it wrote to stderr. */
  stderr: string;
}

/**
 * Runs a short command (ffprobe, `ffmpeg -version`) with stdin closed, collecting stdout and the
 * tail of stderr. It is killed after `timeoutMs`. A missing program becomes a ReelayError with
 * code `ffmpeg-missing`.
 *
 * @example
 * ```ts
 * import { runToEnd } from "./_ffmpeg.ts";
 * const result = await runToEnd("ffprobe", ["-version"]);
 * console.log(result.code);
 * ```
 */
export async function runToEnd(
  program: string,
  args: string[],
  timeoutMs = 30_000,
): Promise<CommandResult> {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), timeoutMs);
  try {
    const output = await new Deno.Command(program, {
      args,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      signal: abort.signal,
    }).output();
    const tail = new StderrTail();
    tail.push(output.stderr);
    return { code: output.code, stdout: output.stdout, stderr: tail.lastLines() };
  } catch (error) {
    throw missingProgramError(program, error) ?? error;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Turns "the program could not be started" into a ReelayError with code `ffmpeg-missing` that
 * names the fix; returns undefined for any other error.
 *
 * @example
 * ```ts
 * import { missingProgramError } from "./_ffmpeg.ts";
 * const error = missingProgramError("ffmpeg", new Deno.errors.NotFound("no such file"));
 * console.log(error?.code); // "ffmpeg-missing"
 * ```
 */
export function missingProgramError(program: string, error: unknown): ReelayError | undefined {
  if (error instanceof Deno.errors.NotFound || error instanceof Deno.errors.PermissionDenied) {
    return new ReelayError(
      "ffmpeg-missing",
      `Program "${program}" could not be started; install ffmpeg ` +
        "(apt-get install -y ffmpeg, or brew install ffmpeg) or put ffmpeg and ffprobe on PATH",
      { cause: error },
    );
  }
  if (error instanceof Deno.errors.NotCapable) {
    return new ReelayError(
      "ffmpeg-missing",
      `Program "${program}" is not allowed to run; install ffmpeg (apt-get install -y ffmpeg, ` +
        "or brew install ffmpeg) or put ffmpeg and ffprobe on PATH, or allow it with --allow-run",
      { cause: error },
    );
  }
  return undefined;
}
