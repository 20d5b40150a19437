/**
 * ffmpeg and ffprobe as short-lived tools: whether they run ({@linkcode checkFfmpeg}), what is in
 * a file ({@linkcode probeVideo}: run ffprobe, parse with `probe.ts`), and the error that names
 * the fix when they cannot be started. The long-running ffmpeg of a stream is `transcode.ts`.
 *
 * @module
 */

import { DEFAULT_CONFIG } from "../../shared/config/mod.ts";
import { messageOf, ReelayError } from "../../shared/errors.ts";
import { StderrTail } from "../../shared/process.ts";
import { type FfprobeOutput, type VideoInfo, videoInfoFromProbe } from "./probe.ts";

/** What a finished short command produced. */
interface CommandResult {
  /** The exit code (non-zero when it failed or was killed). */
  code: number;
  /** Everything it wrote to stdout. */
  stdout: Uint8Array;
  /** The last lines it wrote to stderr. */
  stderr: string;
}

/**
 * Runs a short command (ffprobe, `ffmpeg -version`) with stdin closed, collecting stdout and the
 * tail of stderr; it is killed after `timeoutMs`. A missing program becomes `ffmpeg-missing`.
 */
async function runToEnd(
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
 * import assert from "node:assert/strict";
 * import { missingProgramError } from "./tools.ts";
 * const error = missingProgramError("ffmpeg", new Deno.errors.NotFound("no such file"));
 * assert.equal(error?.code, "ffmpeg-missing");
 * assert.equal(missingProgramError("ffmpeg", new Error("other")), undefined);
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

/**
 * Checks that ffmpeg and ffprobe can be run; throws a ReelayError with code `ffmpeg-missing`
 * naming the fix when either cannot.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkFfmpeg } from "./tools.ts";
 * await checkFfmpeg("ffmpeg", "ffprobe");
 * await assert.rejects(checkFfmpeg("no-such-ffmpeg", "ffprobe"), /could not be started/);
 * ```
 */
export async function checkFfmpeg(
  ffmpegPath: string = DEFAULT_CONFIG.stream.ffmpeg,
  ffprobePath: string = DEFAULT_CONFIG.stream.ffprobe,
): Promise<void> {
  for (const program of [ffmpegPath, ffprobePath]) {
    const result = await runToEnd(program, ["-version"], 10_000);
    if (result.code !== 0) {
      throw new ReelayError(
        "ffmpeg-missing",
        `Program "${program}" does not run (exit code ${result.code}); reinstall ffmpeg ` +
          "(apt-get install -y ffmpeg, or brew install ffmpeg) or put a working one on PATH",
      );
    }
  }
}

/**
 * Probes one file with ffprobe and returns what the pipeline needs, or throws a ReelayError with
 * code `probe-failed` saying why the file cannot be played.
 *
 * @example
 * ```ts ignore
 * import { probeVideo } from "./tools.ts";
 * const info = await probeVideo("videos/cats.mp4");
 * console.log(info.duration, info.width, info.height, info.hasAudio);
 * ```
 */
export async function probeVideo(
  path: string,
  ffprobePath: string = DEFAULT_CONFIG.stream.ffprobe,
): Promise<VideoInfo> {
  const name = path.split("/").pop() ?? path;
  // An absolute path can never be mistaken for an option or a protocol by ffmpeg.
  const absolute = await Deno.realPath(path);
  const stat = await Deno.stat(absolute);
  const result = await runToEnd(ffprobePath, [
    "-v",
    "error",
    "-print_format",
    "json",
    "-show_format",
    "-show_streams",
    absolute,
  ]);
  if (result.code !== 0) {
    const reason = result.stderr.split("\n").pop() || `ffprobe exited with code ${result.code}`;
    throw new ReelayError("probe-failed", `File "${name}" cannot be read by ffprobe: ${reason}`);
  }
  let parsed: FfprobeOutput;
  try {
    parsed = JSON.parse(new TextDecoder().decode(result.stdout));
  } catch (error) {
    throw new ReelayError(
      "probe-failed",
      `File "${name}" gave unreadable ffprobe output: ${messageOf(error)}`,
    );
  }
  const file = { name, path: absolute, size: stat.size, mtimeMs: stat.mtime?.getTime() ?? 0 };
  return videoInfoFromProbe(parsed, file);
}
