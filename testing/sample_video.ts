/**
 * Sample videos made by ffmpeg's test sources: a moving test pattern with a clock and a tone,
 * for the demo, the tests and the benchmarks. Nothing is downloaded.
 *
 * @module
 */

import { ReelayError } from "../shared/errors.ts";

/** How to generate one video. */
export interface VideoSpec {
  /** Picture width (even, for libx264). */
  width: number;
  /** Picture height (even, for libx264). */
  height: number;
  /** Frame rate as ffmpeg writes it, e.g. `30` or `30000/1001`. */
  rate: string;
  /** Length in seconds. */
  seconds: number;
  /** Audio sample rate, or undefined for a video without audio. */
  audioRate?: number;
  /** Audio channel count (default 1). */
  channels?: number;
  /** Sine frequency of the audio (default 440 Hz). */
  frequency?: number;
}

/**
 * Generates a video file with ffmpeg (`testsrc2` picture, `sine` tone).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateVideo } from "./sample_video.ts";
 * const path = `${await Deno.makeTempDir()}/sample.mp4`;
 * await generateVideo(path, { width: 64, height: 36, rate: "10", seconds: 1, audioRate: 8000 });
 * assert.ok((await Deno.stat(path)).size > 0);
 * ```
 */
export async function generateVideo(
  path: string,
  spec: VideoSpec,
  ffmpeg = "ffmpeg",
): Promise<void> {
  const args = [
    "-v",
    "error",
    "-y",
    "-f",
    "lavfi",
    "-i",
    `testsrc2=size=${spec.width}x${spec.height}:rate=${spec.rate}`,
  ];
  if (spec.audioRate) {
    args.push(
      "-f",
      "lavfi",
      "-i",
      `sine=frequency=${spec.frequency ?? 440}:sample_rate=${spec.audioRate}`,
    );
  }
  args.push(
    "-t",
    String(spec.seconds),
    "-c:v",
    "libx264",
    "-preset",
    "ultrafast",
    "-g",
    "24",
    "-pix_fmt",
    "yuv420p",
  );
  if (spec.audioRate) args.push("-c:a", "aac", "-ac", String(spec.channels ?? 1));
  args.push(path);
  const { success, stderr } = await new Deno.Command(ffmpeg, {
    args,
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!success) {
    throw new ReelayError(
      "ffmpeg-failed",
      `ffmpeg could not make ${JSON.stringify(path)}: ${new TextDecoder().decode(stderr).trim()}`,
    );
  }
}
