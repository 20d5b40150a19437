/**
 * What ffprobe says about a file, turned into the {@linkcode VideoInfo} the media pipeline needs.
 * Pure: it parses ffprobe's JSON and never runs anything (`tools.ts` runs ffprobe).
 *
 * @module
 */

import { ReelayError } from "../../shared/errors.ts";

/**
 * Everything the media pipeline needs to know about one video, measured once by ffprobe.
 *
 * @example
 * ```ts
 * import type { VideoInfo } from "./probe.ts";
 * const describe = (v: VideoInfo) => `${v.name}: ${v.width}x${v.height}, ${v.duration} s`;
 * ```
 */
export interface VideoInfo {
  /** The file name, which is also the name users play it by. */
  name: string;
  /** Absolute path of the file. */
  path: string;
  /** Size in bytes when probed. */
  size: number;
  /** Modification time (ms since the epoch) when probed, or 0 when unknown. */
  mtimeMs: number;
  /** Playable duration in seconds (of the video stream when known). */
  duration: number;
  /** Coded width of the video in pixels. */
  width: number;
  /** Coded height of the video in pixels. */
  height: number;
  /** Width the picture is shown at (coded width times the sample aspect ratio). */
  displayWidth: number;
  /** Frame rate as a fraction, e.g. 30000/1001. */
  frameRate: { num: number; den: number };
  /** The container as ffprobe names it, e.g. `mov,mp4,m4a,3gp,3g2,mj2` or `mpegts`. */
  formatName: string;
  /** Start of the video stream in seconds on a timeline where the file starts at 0. */
  videoStart: number;
  /** Index of the video stream among all the file's streams. */
  videoStreamIndex: number;
  /** Whether the file has an audio stream. */
  hasAudio: boolean;
  /** Index of the audio stream among all the file's streams, when there is one. */
  audioStreamIndex?: number;
  /** Audio sample rate in Hz, when there is audio. */
  audioSampleRate?: number;
  /** Audio channel count, when there is audio. */
  audioChannels?: number;
  /** Start of the audio stream in seconds on the file's zero-based timeline. */
  audioStart?: number;
  /**
   * Samples per audio frame to snap the first decoded frame's timestamp to, for containers whose
   * timestamps are coarser than one sample (Matroska and FLV count milliseconds); 1 when the
   * container's timestamps are exact enough.
   */
  audioFrameGrid?: number;
}

/** One stream in ffprobe's `-show_streams` JSON (the fields reelay reads). */
export interface FfprobeStream {
  index?: number;
  codec_type?: string;
  width?: number;
  height?: number;
  sample_aspect_ratio?: string;
  avg_frame_rate?: string;
  r_frame_rate?: string;
  start_time?: string;
  duration?: string;
  sample_rate?: string;
  channels?: number;
  codec_name?: string;
  profile?: string;
  time_base?: string;
  disposition?: { attached_pic?: number };
}

/** ffprobe's `-print_format json -show_format -show_streams` output (the fields reelay reads). */
export interface FfprobeOutput {
  streams?: FfprobeStream[];
  format?: { duration?: string; start_time?: string; format_name?: string };
}

/** The file a probe describes. */
export interface ProbedFile {
  /** The catalog name (the bare file name). */
  name: string;
  /** Absolute path. */
  path: string;
  /** Size in bytes. */
  size: number;
  /** Modification time in ms since the epoch, or 0 when unknown. */
  mtimeMs: number;
}

/**
 * Turns ffprobe's output for `file` into a {@linkcode VideoInfo}, or throws a
 * {@linkcode ReelayError} with code `probe-failed` saying why the file cannot be played.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { videoInfoFromProbe } from "./probe.ts";
 * const info = videoInfoFromProbe(
 *   {
 *     streams: [{ index: 0, codec_type: "video", width: 640, height: 360, avg_frame_rate: "30/1" }],
 *     format: { duration: "12.5", format_name: "mov,mp4,m4a,3gp,3g2,mj2" },
 *   },
 *   { name: "cats.mp4", path: "/srv/videos/cats.mp4", size: 1000, mtimeMs: 0 },
 * );
 * assert.equal(info.duration, 12.5);
 * assert.equal(info.hasAudio, false);
 * assert.throws(() => videoInfoFromProbe({}, { name: "x.mp4", path: "/x.mp4", size: 0, mtimeMs: 0 }),
 *   /has no video stream/);
 * ```
 */
export function videoInfoFromProbe(probe: FfprobeOutput, file: ProbedFile): VideoInfo {
  const fail = (why: string) => new ReelayError("probe-failed", `File "${file.name}" ${why}`);
  const streams = probe.streams ?? [];
  const video = streams.find((s) =>
    s.codec_type === "video" && !s.disposition?.attached_pic && (s.width ?? 0) > 0 &&
    (s.height ?? 0) > 0
  );
  if (!video || video.index === undefined) throw fail("has no video stream");
  const frameRate = parseRate(video.avg_frame_rate) ?? parseRate(video.r_frame_rate);
  if (!frameRate) throw fail("has no usable frame rate");
  const formatStart = parseNumber(probe.format?.start_time) ?? 0;
  const videoStart = Math.max(0, (parseNumber(video.start_time) ?? formatStart) - formatStart);
  const streamDuration = parseNumber(video.duration);
  const formatDuration = parseNumber(probe.format?.duration);
  const duration = streamDuration ??
    (formatDuration === undefined ? undefined : formatDuration - videoStart);
  if (duration === undefined || !(duration > 0)) throw fail("has no known duration");
  const sar = parseRate(video.sample_aspect_ratio?.replace(":", "/"));
  const width = video.width ?? 0;
  return {
    ...file,
    duration,
    width,
    height: video.height ?? 0,
    displayWidth: sar ? width * sar.num / sar.den : width,
    frameRate,
    formatName: probe.format?.format_name ?? "",
    videoStart,
    videoStreamIndex: video.index,
    ...audioInfo(streams, formatStart),
  };
}

function audioInfo(streams: FfprobeStream[], formatStart: number): Partial<VideoInfo> & {
  hasAudio: boolean;
} {
  const audio = streams.find((s) => s.codec_type === "audio" && s.index !== undefined);
  const sampleRate = parseNumber(audio?.sample_rate);
  if (!audio || !sampleRate || sampleRate <= 0) return { hasAudio: false };
  const timeBase = parseRate(audio.time_base);
  const coarse = !timeBase || timeBase.den / timeBase.num < sampleRate;
  return {
    hasAudio: true,
    audioStreamIndex: audio.index,
    audioSampleRate: sampleRate,
    audioChannels: audio.channels ?? 2,
    audioStart: Math.max(0, (parseNumber(audio.start_time) ?? formatStart) - formatStart),
    audioFrameGrid: coarse ? codecFrameSize(audio, sampleRate) : 1,
  };
}

/** Samples per frame of common fixed-frame audio codecs; 1 when unknown or variable. */
function codecFrameSize(stream: FfprobeStream, sampleRate: number): number {
  switch (stream.codec_name) {
    case "aac":
      return /HE/.test(stream.profile ?? "") ? 2048 : 1024;
    case "mp3":
    case "mp2":
      return sampleRate < 32000 ? 576 : 1152;
    case "ac3":
    case "eac3":
      return 1536;
    case "opus":
      return 960;
    default:
      return 1;
  }
}

function parseNumber(text: string | undefined): number | undefined {
  if (text === undefined || text === "N/A") return undefined;
  const value = Number(text);
  return Number.isFinite(value) ? value : undefined;
}

function parseRate(text: string | undefined): { num: number; den: number } | undefined {
  const match = /^(\d+)\/(\d+)$/.exec(text ?? "");
  if (!match) return undefined;
  const num = Number(match[1]);
  const den = Number(match[2]);
  return num > 0 && den > 0 ? { num, den } : undefined;
}

/**
 * One line describing a video for the log.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { describeVideo, type VideoInfo } from "./probe.ts";
 * const info = { width: 640, height: 360, frameRate: { num: 30, den: 1 }, duration: 2, hasAudio: false };
 * assert.equal(describeVideo(info as VideoInfo), "640x360, 30.000 fps, 2.00 s, no audio");
 * ```
 */
export function describeVideo(info: VideoInfo): string {
  const fps = info.frameRate.num / info.frameRate.den;
  const audio = info.hasAudio ? `audio ${info.audioSampleRate} Hz` : "no audio";
  return `${info.width}x${info.height}, ${fps.toFixed(3)} fps, ${
    info.duration.toFixed(2)
  } s, ${audio}`;
}
