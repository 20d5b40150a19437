/**
 * The ffmpeg arguments that turn one planned part of a video into MPEG-TS (H.264 + AAC) on
 * stdout. Pure: every function here builds strings; `transcode.ts` runs ffmpeg with them.
 *
 * The arguments are built so that the byte-concatenation of consecutive parts is one valid
 * stream: every part keeps the source's own timestamps (`-copyts -start_at_zero`) shifted by one
 * constant base, writes without mux delay, and marks its first packets as a discontinuity. Audio
 * is cut on the AAC frame grid and encoded with extra frames on both sides that are dropped again
 * by packet index, so decoded audio runs on without a gap, an overlap or a click.
 *
 * @module
 */

import type { Config } from "../../shared/config/mod.ts";
import { type Encoder, type EncoderArgs, encoderArgs, type FastStart } from "./encoders.ts";
import { AAC_FRAME, outputSampleRate, type PlannedSegment } from "./plan.ts";
import type { VideoInfo } from "./probe.ts";

/**
 * Constant offset (seconds) added to every timestamp so all parts share one base; it must be
 * larger than one AAC frame so the first part's priming frame never has a negative timestamp.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { TIMESTAMP_BASE_SECONDS } from "./ffmpeg_args.ts";
 * assert.equal(TIMESTAMP_BASE_SECONDS * 90000, 900000); // MPEG-TS ticks of the first frame
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
 * import assert from "node:assert/strict";
 * import { AUDIO_LEAD_FRAMES } from "./ffmpeg_args.ts";
 * assert.equal(AUDIO_LEAD_FRAMES, 2);
 * ```
 */
export const AUDIO_LEAD_FRAMES = 2;

/**
 * Extra AAC frames encoded after a part's audio (and dropped again).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { AUDIO_TAIL_FRAMES } from "./ffmpeg_args.ts";
 * assert.equal(AUDIO_TAIL_FRAMES, 2);
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

/**
 * The encoder settings the arguments depend on: the libx264 preset, the encoder (libx264 unless
 * told), and whether the part is tuned to start fast (the first part a stream plays).
 */
export type EncodeOptions = Pick<Config["stream"], "preset"> & {
  /** The H.264 encoder (default: libx264). */
  encoder?: Encoder;
  /** Tune for the first frame: the first part of a stream, or the first after a seek. */
  fastStart?: FastStart;
};

/**
 * A bitrate cap (bits per second) for one output size, so a noisy source cannot make the
 * stream explode: 0.12 bit per pixel per frame, at least 300 kbit/s.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { maxrateFor } from "./ffmpeg_args.ts";
 * assert.equal(maxrateFor(1280, 720, 30), 3317760);
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

function fpsOf(info: VideoInfo): number {
  return info.frameRate.num / info.frameRate.den;
}

/** Where the part's video starts and ends on the file's timeline (undefined: open end). */
function videoCuts(info: VideoInfo, segment: PlannedSegment): { from?: number; to?: number } {
  const frameTime = (frame: number) => info.videoStart + frame / fpsOf(info);
  // Cut halfway between frames so timestamp rounding never moves a frame across a cut.
  return {
    from: segment.startFrame > 0 ? frameTime(segment.startFrame - 0.5) : undefined,
    to: segment.last ? undefined : frameTime(segment.endFrame - 0.5),
  };
}

/**
 * Input 0, the video: every input is shifted by the common base with -itsoffset. (Besides giving
 * all parts one timeline, this keeps ffmpeg from re-basing an MPEG-TS input on the start of the
 * mapped streams only, which would move video against audio.) Input seeking only bounds what is
 * read; the trim filter, in shifted time, makes the cut exact. There is no input -to: it would
 * count from the seek point in unshifted time.
 */
function videoInputArgs(info: VideoInfo, segment: PlannedSegment, probe: string[]): string[] {
  const { from } = videoCuts(info, segment);
  const margin = INDEXED_FORMATS.test(info.formatName) ? 0 : UNINDEXED_SEEK_MARGIN;
  const seek = from === undefined ? [] : ["-ss", seconds(from - margin)];
  return [...probe, ...seek, "-itsoffset", String(TIMESTAMP_BASE_SECONDS), "-i", info.path];
}

/** The video filter chain: an exact trim (in shifted time), then the encoder's scale and format. */
function videoFilter(info: VideoInfo, segment: PlannedSegment, tail: string): string {
  const { from, to } = videoCuts(info, segment);
  const base = TIMESTAMP_BASE_SECONDS;
  const trims = [];
  if (from !== undefined) trims.push(`start=${seconds(base + from)}`);
  if (to !== undefined) trims.push(`end=${seconds(base + to)}`);
  const trim = trims.length > 0 ? `trim=${trims.join(":")},` : "";
  return `${trim}${tail}`;
}

/** The encoder's pieces for this part: its size, capped bitrate, two-second GOP, BT.709. */
function encoderPieces(
  info: VideoInfo,
  segment: PlannedSegment,
  options: EncodeOptions,
): EncoderArgs {
  const fps = fpsOf(info);
  return encoderArgs(options.encoder ?? { kind: "software" }, {
    width: segment.width,
    height: segment.height,
    fps,
    maxrate: maxrateFor(segment.width, segment.height, fps),
    preset: options.preset,
    fastStart: options.fastStart,
  });
}

/** The video output: the filter chain, the encoder's options, the source's own timestamps. */
function videoEncodeArgs(info: VideoInfo, segment: PlannedSegment, pieces: EncoderArgs): string[] {
  return [
    ...["-vf", videoFilter(info, segment, pieces.filterTail), ...pieces.outputArgs],
    // No B-frames in any part: decoding order is presentation order, so parts encoded with
    // different tunings (the fast first part, the others) join with increasing DTS, and every
    // keyframe is a clean place to cut the stream and go on from.
    ...["-bf", "0"],
    "-fps_mode",
    "passthrough",
    // Keep the source's timestamps instead of rounding them to a 1/fps grid, so audio and video
    // stay in sync when the video does not start on that grid.
    ...["-enc_time_base:v", "-1"],
  ];
}

/**
 * Whether the part starts the video: nothing precedes it, so its audio begins with the encoder's
 * priming frame instead of extra frames that are dropped again. Every other part (a later third,
 * or a part cut to start where a seek or a resume asked) joins onto what came before.
 */
function isHead(segment: PlannedSegment): boolean {
  return segment.startFrame === 0;
}

/** Whether the part carries audio. */
function hasAudio(info: VideoInfo, segment: PlannedSegment): boolean {
  return info.hasAudio && info.audioStreamIndex !== undefined &&
    segment.audioStartSample !== undefined;
}

/** The audio samples the part encodes: its own, plus extra frames on both sides. */
function audioSpan(segment: PlannedSegment): { from: number; to?: number } {
  const first = segment.audioStartSample ?? 0;
  const lead = isHead(segment) ? 0 : AUDIO_LEAD_FRAMES * AAC_FRAME;
  const to = segment.last
    ? undefined
    : (segment.audioEndSample ?? 0) + AUDIO_TAIL_FRAMES * AAC_FRAME;
  return { from: first - lead, to };
}

/**
 * Input 1: the same file again, for the audio with its extra frames around the cut. No accurate
 * seek: whole decoded frames keep the first timestamp on the codec's frame grid.
 */
function audioInputArgs(info: VideoInfo, segment: PlannedSegment, probe: string[]): string[] {
  const rate = outputSampleRate(info);
  const { from } = audioSpan(segment);
  const seek = !isHead(segment) ? ["-ss", seconds(from / rate - AUDIO_SEEK_MARGIN)] : [];
  return [
    ...probe,
    "-noaccurate_seek",
    ...seek,
    ...["-itsoffset", String(TIMESTAMP_BASE_SECONDS), "-i", info.path],
  ];
}

/**
 * The audio filter chain. Samples are counted from the first decoded frame, whose timestamp is
 * snapped to the codec's frame grid when the container rounds timestamps: every part then agrees
 * on where each sample is.
 */
function audioFilter(info: VideoInfo, segment: PlannedSegment): string {
  const rate = outputSampleRate(info);
  const { from, to } = audioSpan(segment);
  const shift = TIMESTAMP_BASE_SECONDS * rate;
  const trims = [];
  if (!isHead(segment)) trims.push(`start_pts=${shift + from}`);
  if (to !== undefined) trims.push(`end_pts=${shift + to}`);
  const sourceRate = info.audioSampleRate ?? rate;
  const origin = TIMESTAMP_BASE_SECONDS * sourceRate +
    Math.round((info.audioStart ?? 0) * sourceRate);
  const grid = Math.max(1, info.audioFrameGrid ?? 1);
  const filters = [
    `asetpts=(round((STARTPTS*TB*SR-${origin})/${grid})*${grid}+${origin}+N)/(SR*TB)`,
  ];
  if (rate !== sourceRate) filters.push(`aresample=${rate}`);
  if (trims.length > 0) filters.push(`atrim=${trims.join(":")}`);
  return filters.join(",");
}

/**
 * Which encoded packets to drop: the encoder emits one priming packet, then one packet per 1024
 * samples from the span's start; the part keeps the packets whose samples start in its own range.
 */
function audioDropExpression(segment: PlannedSegment): string {
  const first = segment.audioStartSample ?? 0;
  const keepFrom = isHead(segment) ? 0 : 1 + AUDIO_LEAD_FRAMES;
  const drops = [];
  if (keepFrom > 0) drops.push(`lt(n\\,${keepFrom})`);
  if (!segment.last) {
    const kept = ((segment.audioEndSample ?? 0) - first) / AAC_FRAME;
    drops.push(`gte(n\\,${keepFrom + kept + (isHead(segment) ? 1 : 0)})`);
  }
  return drops.join("+");
}

/** AAC at 128 kbit/s, stereo at most, with the extra packets dropped again. */
function audioEncodeArgs(info: VideoInfo, segment: PlannedSegment): string[] {
  const args = ["-af", audioFilter(info, segment), "-c:a", "aac", "-b:a", "128k"];
  if ((info.audioChannels ?? 2) > 2) args.push("-ac", "2");
  const drop = audioDropExpression(segment);
  if (drop) args.push("-bsf:a", `noise=drop=${drop}`);
  return args;
}

/**
 * MPEG-TS on stdout, without mux delay, marked as a discontinuity for the join, one AAC frame
 * per PES packet: the timestamps of what was sent then say exactly which samples a viewer has,
 * so a parked stream goes on at the next sample.
 */
const MUX_ARGS = [
  ...["-avoid_negative_ts", "disabled", "-muxdelay", "0", "-muxpreload", "0"],
  ...["-pes_payload_size", "0"],
  ...["-mpegts_flags", "+initial_discontinuity", "-f", "mpegts", "pipe:1"],
];

/**
 * Builds the ffmpeg arguments (without the program name) for one part.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { buildFfmpegArgs } from "./ffmpeg_args.ts";
 * import { planPlayback } from "./plan.ts";
 * import type { VideoInfo } from "./probe.ts";
 * const info = {
 *   name: "cats.mp4", path: "/srv/videos/cats.mp4", duration: 9, width: 1280, height: 720,
 *   displayWidth: 1280, frameRate: { num: 30, den: 1 }, formatName: "mov,mp4", videoStart: 0,
 *   videoStreamIndex: 0, hasAudio: false,
 * } as VideoInfo;
 * const plan = planPlayback(info, { heights: [144, 720, 1440], capToSource: true });
 * const args = buildFfmpegArgs(info, plan.segments[1], { preset: "veryfast" });
 * assert.deepEqual(args.slice(args.indexOf("-ss"), args.indexOf("-ss") + 2), ["-ss", "2.983333"]);
 * assert.equal(args.at(-1), "pipe:1");
 * ```
 */
export function buildFfmpegArgs(
  info: VideoInfo,
  segment: PlannedSegment,
  options: EncodeOptions,
): string[] {
  const audio = hasAudio(info, segment);
  const pieces = encoderPieces(info, segment, options);
  return [
    ...["-hide_banner", "-nostdin", "-nostats", "-loglevel", "error", "-copyts", "-start_at_zero"],
    ...pieces.deviceArgs,
    ...videoInputArgs(info, segment, pieces.perInputArgs),
    ...(audio ? audioInputArgs(info, segment, pieces.perInputArgs) : []),
    ...["-map", `0:${info.videoStreamIndex}`],
    ...(audio ? ["-map", `1:${info.audioStreamIndex}?`] : []),
    ...videoEncodeArgs(info, segment, pieces),
    ...(audio ? audioEncodeArgs(info, segment) : []),
    ...MUX_ARGS,
  ];
}
