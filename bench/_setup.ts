/**
 * What the video benchmarks share: the server's default ladder and encoder preset (read from the
 * config's defaults, so the benches measure what a server runs unless told otherwise), and the
 * sources they generate.
 *
 * @module
 */

import { defaultConfig } from "../shared/config/mod.ts";
import type { VideoSpec } from "../testing/sample_video.ts";

const STREAM = defaultConfig().stream;

/** The default ladder (config.ini `[stream] heights`): 144p, 720p, 1440p. */
export const LADDER: number[] = STREAM.heights;

/** The default libx264 preset (config.ini `[stream] preset`). */
export const PRESET: string = STREAM.preset;

/** A generated source of `seconds` at `width`x`height`, 30 fps, with 48 kHz stereo sound. */
export function sourceSpec(width: number, height: number, seconds: number): VideoSpec {
  return { width, height, rate: "30", seconds, audioRate: 48000, channels: 2 };
}
