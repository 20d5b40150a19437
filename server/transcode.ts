/**
 * One part of a stream: the ffmpeg arguments that turn a slice of a video into MPEG-TS
 * (H.264 + AAC) on stdout, and the {@link Transcode} that owns the running ffmpeg.
 *
 * The arguments are built so that the byte-concatenation of consecutive parts is one valid
 * stream: every part keeps the source's own timestamps (`-copyts -start_at_zero`) shifted by one
 * constant base, writes without mux delay, and marks its first packets as a discontinuity. Audio
 * is cut on the AAC frame grid and encoded with extra frames on both sides that are dropped again
 * by packet index, so decoded audio runs on without a gap, an overlap or a click.
 *
 * @module
 */

import { messageOf, ReelayError } from "../shared/errors.ts";
import { missingProgramError, runToEnd } from "./_ffmpeg.ts";
import { StderrTail, terminate } from "../shared/process.ts";
import type { VideoInfo } from "./catalog.ts";

/**
 * Media settings, filled by the server from config.ini.
 *
 * @example
 * ```ts
 * import { DEFAULT_MEDIA_OPTIONS, type MediaOptions } from "./transcode.ts";
 * const options: MediaOptions = { ...DEFAULT_MEDIA_OPTIONS, heights: [240, 480, 1080] };
 * ```
 */
export interface MediaOptions {
  /** Output heights of the three parts, in order (default [144, 720, 1440]). */
  heights: number[];
  /** Never upscale: a height above the source's is lowered to it (default true). */
  capToSource: boolean;
  /** libx264 preset (default `veryfast`). */
  preset: string;
  /** The ffmpeg program (default `ffmpeg`). */
  ffmpegPath: string;
  /** The ffprobe program (default `ffprobe`). */
  ffprobePath: string;
  /** How many ffmpeg processes may run at once across the server (default 6). */
  maxTranscodes: number;
}

/**
 * The defaults for {@link MediaOptions}.
 *
 * @example
 * ```ts
 * import { DEFAULT_MEDIA_OPTIONS } from "./transcode.ts";
 * const options = { ...DEFAULT_MEDIA_OPTIONS, preset: "ultrafast" };
 * ```
 */
export const DEFAULT_MEDIA_OPTIONS: Readonly<MediaOptions> = Object.freeze({
  heights: [144, 720, 1440],
  capToSource: true,
  preset: "veryfast",
  ffmpegPath: "ffmpeg",
  ffprobePath: "ffprobe",
  maxTranscodes: 6,
});

/**
 * Samples in one AAC frame.
 *
 * @example
 * ```ts
 * import { AAC_FRAME } from "./transcode.ts";
 * const seconds = AAC_FRAME / 48000; // 21.3 ms
 * ```
 */
export const AAC_FRAME = 1024;

/**
 * Constant offset (seconds) added to every timestamp so all parts share one base; it must be
 * larger than one AAC frame so the first part's priming frame never has a negative timestamp.
 *
 * @example
 * ```ts
 * import { TIMESTAMP_BASE_SECONDS } from "./transcode.ts";
 * const firstPts = TIMESTAMP_BASE_SECONDS * 90000; // MPEG-TS ticks of the first frame
 * ```
 */
export const TIMESTAMP_BASE_SECONDS = 10;

/**
 * Extra AAC frames encoded before a part's audio (and dropped again). Measured here: with one
 * frame the encoder still treats the jump from silence as a transient and a click remains at the
 * join; with two the decoded join matches the source.
 *
 * @example
 * ```ts
 * import { AAC_FRAME, AUDIO_LEAD_FRAMES } from "./transcode.ts";
 * const extraSamples = AUDIO_LEAD_FRAMES * AAC_FRAME;
 * ```
 */
export const AUDIO_LEAD_FRAMES = 2;

/**
 * Extra AAC frames encoded after a part's audio (and dropped again).
 *
 * @example
 * ```ts
 * import { AAC_FRAME, AUDIO_TAIL_FRAMES } from "./transcode.ts";
 * const extraSamples = AUDIO_TAIL_FRAMES * AAC_FRAME;
 * ```
 */
export const AUDIO_TAIL_FRAMES = 2;

/** Seconds of source read before an audio cut, so the decoder has warmed up before it. */
const AUDIO_SEEK_MARGIN = 0.5;

/**
 * Seconds of source read before a video cut in containers without a keyframe index (MPEG-TS,
 * MPEG-PS, FLV): their seek lands on any frame, and frames before the next keyframe cannot be
 * decoded. Reading from earlier and trimming exactly keeps every frame.
 */
const UNINDEXED_SEEK_MARGIN = 5;

/** Containers whose seek lands on a keyframe, so no margin is needed. */
const INDEXED_FORMATS = /mov|mp4|matroska|webm|avi|asf/;

/** Sample rates the AAC encoder accepts; other sources are resampled to 48 kHz. */
const AAC_RATES = [
  96000,
  88200,
  64000,
  48000,
  44100,
  32000,
  24000,
  22050,
  16000,
  12000,
  11025,
  8000,
];

/**
 * What one part transcodes: which frames, which audio samples, at what size.
 *
 * @example
 * ```ts
 * import type { SegmentSpec } from "./transcode.ts";
 * const frames = (s: SegmentSpec) => s.endFrame - s.startFrame;
 * ```
 */
export interface SegmentSpec {
  /** Position of this part in the stream, from 0. */
  index: number;
  /** Whether this is the last part (it reads to the end of the file). */
  last: boolean;
  /** Output width in pixels (even). */
  width: number;
  /** Output height in pixels (even). */
  height: number;
  /** First video frame of the part (index from the start of the video stream). */
  startFrame: number;
  /** First video frame of the next part (exclusive end); the last part reads to the end. */
  endFrame: number;
  /** Start of the part in seconds on the file's zero-based timeline. */
  start: number;
  /** End of the part in seconds (the next part's start, or the duration for the last one). */
  end: number;
  /** First audio sample of the part (on the output sample rate's grid, from the file's 0). */
  audioStartSample?: number;
  /** First audio sample of the next part; undefined for the last part. */
  audioEndSample?: number;
}

/**
 * The audio sample rate a source is encoded at.
 *
 * @example
 * ```ts
 * import { outputSampleRate } from "./transcode.ts";
 * outputSampleRate({ audioSampleRate: 44100 }); // 44100
 * outputSampleRate({ audioSampleRate: 37800 }); // 48000
 * ```
 */
export function outputSampleRate(info: Pick<VideoInfo, "audioSampleRate">): number {
  const rate = info.audioSampleRate ?? 48000;
  return AAC_RATES.includes(rate) ? rate : 48000;
}

/**
 * A bitrate cap (bits per second) for one output size, so a noisy source cannot make the
 * stream explode: 0.12 bit per pixel per frame, at least 300 kbit/s.
 *
 * @example
 * ```ts
 * import { maxrateFor } from "./transcode.ts";
 * maxrateFor(1280, 720, 30); // 3317760
 * ```
 */
export function maxrateFor(width: number, height: number, fps: number): number {
  const perSecond = width * height * Math.min(Math.max(fps, 1), 60) * 0.12;
  return Math.max(300_000, Math.round(perSecond));
}

/** Seconds as ffmpeg reads them, to the microsecond. */
function seconds(value: number): string {
  return Math.max(0, value).toFixed(6);
}

/**
 * Builds the ffmpeg arguments (without the program name) for one part.
 *
 * @example
 * ```ts
 * import { buildFfmpegArgs, DEFAULT_MEDIA_OPTIONS } from "./transcode.ts";
 * import { probeVideo } from "./catalog.ts";
 * import { planPlayback } from "./playback.ts";
 * const info = await probeVideo("/srv/videos/cats.mp4");
 * const plan = planPlayback(info, DEFAULT_MEDIA_OPTIONS);
 * const args = buildFfmpegArgs(info, plan.segments[1], DEFAULT_MEDIA_OPTIONS);
 * ```
 */
export function buildFfmpegArgs(
  info: VideoInfo,
  segment: SegmentSpec,
  options: Pick<MediaOptions, "preset">,
): string[] {
  const fps = info.frameRate.num / info.frameRate.den;
  const frameTime = (frame: number) => info.videoStart + frame / fps;
  const args = ["-hide_banner", "-nostdin", "-nostats", "-loglevel", "error"];
  args.push("-copyts", "-start_at_zero");

  // Every input is shifted by the common base with -itsoffset. (Besides giving all parts one
  // timeline, this keeps ffmpeg from re-basing an MPEG-TS input on the start of the mapped
  // streams only, which would move video against audio.) Input seeking only bounds what is read;
  // the trim filters, in shifted time, make the cuts exact. There is no input -to: it would count
  // from the seek point in unshifted time.
  const base = TIMESTAMP_BASE_SECONDS;
  const margin = INDEXED_FORMATS.test(info.formatName) ? 0 : UNINDEXED_SEEK_MARGIN;
  // Cut halfway between frames so timestamp rounding never moves a frame across a cut.
  const videoFrom = segment.startFrame > 0 ? frameTime(segment.startFrame - 0.5) : undefined;
  const videoTo = segment.last ? undefined : frameTime(segment.endFrame - 0.5);
  if (videoFrom !== undefined) args.push("-ss", seconds(videoFrom - margin));
  args.push("-itsoffset", String(base), "-i", info.path);
  const trimParts = [];
  if (videoFrom !== undefined) trimParts.push(`start=${seconds(base + videoFrom)}`);
  if (videoTo !== undefined) trimParts.push(`end=${seconds(base + videoTo)}`);
  const videoTrim = trimParts.length > 0 ? `trim=${trimParts.join(":")},` : "";

  const audio = info.hasAudio && info.audioStreamIndex !== undefined &&
    segment.audioStartSample !== undefined;
  let dropExpression = "";
  let audioFilter = "";
  if (audio) {
    const rate = outputSampleRate(info);
    const first = segment.audioStartSample ?? 0;
    const lead = segment.index === 0 ? 0 : AUDIO_LEAD_FRAMES * AAC_FRAME;
    const from = first - lead;
    const to = segment.last
      ? undefined
      : (segment.audioEndSample ?? 0) + AUDIO_TAIL_FRAMES * AAC_FRAME;
    // Input 1: the same file again, for the audio with its extra frames around the cut. No
    // accurate seek: whole decoded frames keep the first timestamp on the codec's frame grid.
    args.push("-noaccurate_seek");
    if (segment.index > 0) args.push("-ss", seconds(from / rate - AUDIO_SEEK_MARGIN));
    args.push("-itsoffset", String(base), "-i", info.path);
    const shift = base * rate;
    const trims = [];
    if (segment.index > 0) trims.push(`start_pts=${shift + from}`);
    if (to !== undefined) trims.push(`end_pts=${shift + to}`);
    // Count samples from the first decoded frame, whose timestamp is snapped to the codec's frame
    // grid when the container rounds timestamps: every part then agrees on where each sample is.
    const sourceRate = info.audioSampleRate ?? rate;
    const origin = base * sourceRate + Math.round((info.audioStart ?? 0) * sourceRate);
    const grid = Math.max(1, info.audioFrameGrid ?? 1);
    const filters = [
      `asetpts=(round((STARTPTS*TB*SR-${origin})/${grid})*${grid}+${origin}+N)/(SR*TB)`,
    ];
    if (rate !== sourceRate) filters.push(`aresample=${rate}`);
    if (trims.length > 0) filters.push(`atrim=${trims.join(":")}`);
    audioFilter = filters.join(",");
    // The encoder emits one priming packet, then one packet per 1024 samples from `from`.
    // Keep the packets whose samples start in [first, end).
    const keepFrom = segment.index === 0 ? 0 : 1 + AUDIO_LEAD_FRAMES;
    const drops = [];
    if (keepFrom > 0) drops.push(`lt(n\\,${keepFrom})`);
    if (!segment.last) {
      const kept = ((segment.audioEndSample ?? 0) - first) / AAC_FRAME;
      drops.push(`gte(n\\,${keepFrom + kept + (segment.index === 0 ? 1 : 0)})`);
    }
    dropExpression = drops.join("+");
  }

  args.push("-map", `0:${info.videoStreamIndex}`);
  if (audio) args.push("-map", `1:${info.audioStreamIndex}?`);

  const gop = Math.max(1, Math.round(2 * fps));
  const maxrate = maxrateFor(segment.width, segment.height, fps);
  args.push(
    "-vf",
    `${videoTrim}scale=${segment.width}:${segment.height}:out_color_matrix=bt709:out_range=tv,` +
      "format=yuv420p,setsar=1",
    "-c:v",
    "libx264",
    "-preset",
    options.preset,
    "-crf",
    "23",
    "-maxrate",
    String(maxrate),
    "-bufsize",
    String(maxrate * 2),
    "-g",
    String(gop),
    "-fps_mode",
    "passthrough",
    // Keep the source's timestamps instead of rounding them to a 1/fps grid, so audio and video
    // stay in sync when the video does not start on that grid.
    "-enc_time_base:v",
    "-1",
    "-colorspace",
    "bt709",
    "-color_primaries",
    "bt709",
    "-color_trc",
    "bt709",
    "-color_range",
    "tv",
  );
  if (audio) {
    if (audioFilter) args.push("-af", audioFilter);
    args.push("-c:a", "aac", "-b:a", "128k");
    if ((info.audioChannels ?? 2) > 2) args.push("-ac", "2");
    if (dropExpression) args.push("-bsf:a", `noise=drop=${dropExpression}`);
  }
  args.push(
    "-avoid_negative_ts",
    "disabled",
    "-muxdelay",
    "0",
    "-muxpreload",
    "0",
    "-mpegts_flags",
    "+initial_discontinuity",
    "-f",
    "mpegts",
    "pipe:1",
  );
  return args;
}

/** How long {@link Transcode.kill} waits after SIGTERM before sending SIGKILL. */
const KILL_GRACE_MS = 1000;

/**
 * How a {@link Transcode} ended.
 *
 * @example
 * ```ts
 * import { Transcode, type TranscodeStatus } from "./transcode.ts";
 * const part = Transcode.start("ffmpeg", ["-version"]);
 * await part.stdout.cancel();
 * const status: TranscodeStatus = await part.status;
 * if (status.error) throw status.error;
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
 * import { Transcode } from "./transcode.ts";
 * const part = Transcode.start("ffmpeg", ["-f", "lavfi", "-i", "testsrc", "-t", "1", "-f", "mpegts", "pipe:1"]);
 * let bytes = 0;
 * for await (const chunk of part.stdout) bytes += chunk.length;
 * await part.kill(); // harmless once it has exited
 * console.log(bytes, (await part.status).code);
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
   * import { Transcode } from "./transcode.ts";
   * const part = Transcode.start("ffmpeg", ["-version"], "version check");
   * await part.stdout.cancel();
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
    // A blocked write to a full pipe fails at once when its reader goes away.
    await this.#reader.cancel().catch(() => {});
    await ended;
  }
}

/**
 * Checks that ffmpeg and ffprobe can be run; throws a ReelayError with code `ffmpeg-missing`
 * naming the fix when either cannot.
 *
 * @example
 * ```ts
 * import { checkFfmpeg } from "./transcode.ts";
 * await checkFfmpeg(); // throws if ffmpeg or ffprobe is missing
 * ```
 */
export async function checkFfmpeg(ffmpegPath = "ffmpeg", ffprobePath = "ffprobe"): Promise<void> {
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
