/**
 * What every benchmark group is given: a temporary folder (removed at the end of the run), a
 * progress logger, and the generated source video, made once and shared.
 *
 * @module
 */

import { probeVideo, type VideoInfo } from "../server/media/mod.ts";
import { generateVideo } from "../testing/sample_video.ts";

/** The source video every video figure is measured on. */
export interface SourceVideo {
  /** Folder holding only this video (a server's videos folder). */
  dir: string;
  /** Its catalog name. */
  name: string;
  info: VideoInfo;
  /** How it was made, for the report. */
  description: string;
}

/** Shared by the groups of one run. */
export interface BenchContext {
  tempDir: string;
  /** Prints a progress line on stderr. */
  log(line: string): void;
  /** The 1080p source video (generated with ffmpeg on first use). */
  source(): Promise<SourceVideo>;
}

/** Width, height, rate and length of the generated source. */
export const SOURCE = { width: 1920, height: 1080, rate: 30, seconds: 12, audioRate: 48000 };

/** Makes the context for one run under `tempDir`. */
export function createContext(tempDir: string): BenchContext {
  let source: Promise<SourceVideo> | undefined;
  const log = (line: string) => {
    // Progress goes to stderr so stdout carries only the table.
    Deno.stderr.writeSync(new TextEncoder().encode(`[bench] ${line}\n`));
  };
  return {
    tempDir,
    log,
    source: () => {
      source ??= (async () => {
        const dir = `${tempDir}/videos`;
        await Deno.mkdir(dir, { recursive: true });
        const name = "source-1080p30.mp4";
        const started = performance.now();
        await generateVideo(`${dir}/${name}`, {
          width: SOURCE.width,
          height: SOURCE.height,
          rate: String(SOURCE.rate),
          seconds: SOURCE.seconds,
          audioRate: SOURCE.audioRate,
          channels: 2,
        });
        log(`generated the source video in ${((performance.now() - started) / 1000).toFixed(1)} s`);
        const info = await probeVideo(`${dir}/${name}`);
        return {
          dir,
          name,
          info,
          description: `${SOURCE.width}x${SOURCE.height} ${SOURCE.rate} fps testsrc2 (H.264 ` +
            `ultrafast, GOP 24) + ${SOURCE.audioRate / 1000} kHz stereo sine (AAC), ` +
            `${SOURCE.seconds} s, generated with ffmpeg into a temporary folder`,
        };
      })();
      return source;
    },
  };
}
