/**
 * What a play of a video is, before anything runs: its parts (one per configured height, on
 * frame boundaries, with audio cuts on the AAC frame grid) and the listing clients see. Pure,
 * and computed once per play: the stream and its `stream-start` listing come from one plan.
 *
 * @module
 */

import { ReelayError } from "../../shared/errors.ts";
import type { Config } from "../../shared/config/mod.ts";
import type { VideoListing } from "../../shared/protocol/mod.ts";
import type { VideoInfo } from "./probe.ts";

/**
 * Samples in one AAC frame.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { AAC_FRAME } from "./plan.ts";
 * assert.equal(AAC_FRAME, 1024);
 * ```
 */
export const AAC_FRAME = 1024;

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
 * The audio sample rate a source is encoded at.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { outputSampleRate } from "./plan.ts";
 * assert.equal(outputSampleRate({ audioSampleRate: 44100 }), 44100);
 * assert.equal(outputSampleRate({ audioSampleRate: 37800 }), 48000);
 * ```
 */
export function outputSampleRate(info: Pick<VideoInfo, "audioSampleRate">): number {
  const rate = info.audioSampleRate ?? 48000;
  return AAC_RATES.includes(rate) ? rate : 48000;
}

/** The media settings a plan depends on. */
export type PlanOptions = Pick<Config["stream"], "heights" | "capToSource">;

/**
 * One planned part: which frames and audio samples it transcodes, at what size, and how its
 * height was chosen.
 *
 * @example
 * ```ts
 * import type { PlannedSegment } from "./plan.ts";
 * const frames = (s: PlannedSegment) => s.endFrame - s.startFrame;
 * ```
 */
export interface PlannedSegment {
  /** Position of this part in the stream, from 0. */
  index: number;
  /** Whether this is the last part (it reads to the end of the file). */
  last: boolean;
  /** Output width in pixels (even). */
  width: number;
  /** Output height in pixels (even). */
  height: number;
  /** The height asked for by the configuration. */
  requestedHeight: number;
  /** True when the requested height was lowered to the source's height. */
  capped: boolean;
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
 * The parts of one video, in playing order, and how clients see them.
 *
 * @example
 * ```ts
 * import type { PlaybackPlan } from "./plan.ts";
 * const heights = (plan: PlaybackPlan) => plan.segments.map((s) => s.height);
 * ```
 */
export interface PlaybackPlan {
  /** The video's catalog name. */
  name: string;
  /** The video's duration in seconds. */
  duration: number;
  /** Total number of video frames the parts cover. */
  frameCount: number;
  /** One part per configured height (fewer only for videos with fewer frames than heights). */
  segments: PlannedSegment[];
  /** The video as offered to clients, with these parts. */
  listing: VideoListing;
}

function evenDown(value: number): number {
  return Math.max(2, Math.floor(value / 2) * 2);
}

function checkHeights(heights: readonly number[]): void {
  for (const height of heights) {
    if (!Number.isInteger(height) || height < 2) {
      throw new ReelayError("bad-height", `Height "${height}" is not a whole number of 2 or more`);
    }
  }
}

/** Audio cut points (in output samples), one per video cut, each on the AAC frame grid. */
function audioCuts(info: VideoInfo, cuts: number[], fps: number): number[] {
  const rate = outputSampleRate(info);
  const origin = Math.round((info.audioStart ?? 0) * rate);
  const audio: number[] = [origin];
  for (let k = 1; k < cuts.length - 1; k++) {
    const time = info.videoStart + cuts[k] / fps;
    const frames = Math.round((time * rate - origin) / AAC_FRAME);
    audio.push(Math.max(origin + frames * AAC_FRAME, audio[k - 1] + AAC_FRAME));
  }
  return audio;
}

/**
 * Splits a video into equal parts on frame boundaries, one per configured height: with the
 * default heights the first third plays at 144p, the second at 720p, the last at 1440p. A height
 * above the source's is lowered to it when `capToSource` is set. Widths keep the picture's aspect
 * ratio; widths and heights are even. Audio cuts are placed on the AAC frame grid nearest to each
 * video cut.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { planPlayback } from "./plan.ts";
 * import type { VideoInfo } from "./probe.ts";
 * const info = {
 *   name: "cats.mp4", duration: 9, width: 1280, height: 720, displayWidth: 1280,
 *   frameRate: { num: 30, den: 1 }, videoStart: 0, hasAudio: false,
 * } as VideoInfo;
 * const plan = planPlayback(info, { heights: [144, 720, 1440], capToSource: true });
 * assert.deepEqual(plan.segments.map((s) => s.height), [144, 720, 720]);
 * assert.deepEqual(plan.listing.segments.map((s) => [s.start, s.end]), [[0, 3], [3, 6], [6, 9]]);
 * ```
 */
export function planPlayback(info: VideoInfo, options: PlanOptions): PlaybackPlan {
  const heights = options.heights.length > 0 ? options.heights : [info.height];
  checkHeights(heights);
  const fps = info.frameRate.num / info.frameRate.den;
  const frameCount = Math.max(1, Math.round(info.duration * fps));
  const count = heights.length;
  const cuts = Array.from({ length: count + 1 }, (_, k) => Math.round(k * frameCount / count));
  const audio = audioCuts(info, cuts, fps);
  const displayAspect = info.displayWidth / info.height;
  const segments: PlannedSegment[] = [];
  for (let k = 0; k < count; k++) {
    if (cuts[k + 1] <= cuts[k]) continue;
    const requestedHeight = heights[k];
    const capped = options.capToSource && requestedHeight > info.height;
    const height = evenDown(capped ? info.height : requestedHeight);
    const last = k === count - 1;
    segments.push({
      index: segments.length,
      last,
      requestedHeight,
      capped,
      height,
      width: evenDown(Math.round(height * displayAspect / 2) * 2),
      startFrame: cuts[k],
      endFrame: cuts[k + 1],
      start: info.videoStart + cuts[k] / fps,
      end: last ? info.videoStart + info.duration : info.videoStart + cuts[k + 1] / fps,
      audioStartSample: info.hasAudio ? audio[k] : undefined,
      audioEndSample: info.hasAudio && !last ? audio[k + 1] : undefined,
    });
  }
  const listing = videoListing(info, segments);
  return { name: info.name, duration: info.duration, frameCount, segments, listing };
}

/** The video as clients see it: names, durations, sizes and the parts it plays in. */
function videoListing(info: VideoInfo, segments: PlannedSegment[]): VideoListing {
  return {
    name: info.name,
    duration: round(info.duration),
    width: info.displayWidth,
    height: info.height,
    fps: round(info.frameRate.num / info.frameRate.den),
    hasAudio: info.hasAudio,
    segments: segments.map((segment) => ({
      index: segment.index,
      start: round(segment.start - info.videoStart),
      end: round(segment.end - info.videoStart),
      width: segment.width,
      height: segment.height,
      requestedHeight: segment.requestedHeight,
      capped: segment.capped,
    })),
  };
}

function round(value: number): number {
  return Math.round(value * 1000) / 1000;
}

/**
 * Where a play starts inside a video: the first video frame it shows and, for a video with
 * sound, the first audio sample (on the AAC frame grid of the plan's audio cuts).
 *
 * @example
 * ```ts
 * import type { StartPoint } from "./plan.ts";
 * const resume: StartPoint = { frame: 451, sample: 721_920 };
 * ```
 */
export interface StartPoint {
  /** First video frame (from the start of the video stream). */
  frame: number;
  /** First audio sample (output rate, from the file's 0); by default the grid point nearest the frame. */
  sample?: number;
}

/**
 * The start point nearest to `seconds` into the video (clamped to the video): the frame shown at
 * that time, and the AAC frame boundary nearest to it, so audio and video start together.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { startPointAt } from "./plan.ts";
 * import type { VideoInfo } from "./probe.ts";
 * const info = {
 *   duration: 9, frameRate: { num: 30, den: 1 }, videoStart: 0, hasAudio: true,
 *   audioStart: 0, audioSampleRate: 48000,
 * } as VideoInfo;
 * assert.deepEqual(startPointAt(info, 4.5), { frame: 135, sample: 216064 });
 * ```
 */
export function startPointAt(info: VideoInfo, seconds: number): StartPoint {
  const fps = info.frameRate.num / info.frameRate.den;
  const frameCount = Math.max(1, Math.round(info.duration * fps));
  const frame = Math.min(Math.max(0, Math.round(seconds * fps)), frameCount - 1);
  if (!info.hasAudio) return { frame };
  const rate = outputSampleRate(info);
  const origin = Math.round((info.audioStart ?? 0) * rate);
  const time = info.videoStart + frame / fps;
  const frames = Math.max(0, Math.round((time * rate - origin) / AAC_FRAME));
  return { frame, sample: origin + frames * AAC_FRAME };
}

/**
 * The rest of `plan` from `start`: the parts from the one holding the start frame on, the first
 * of them cut to begin at that frame and sample. Each part keeps its index and size, so a position
 * in the second third still plays at the second resolution. Empty when the start is past the
 * end. The listing stays the whole video's.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { planFrom, planPlayback } from "./plan.ts";
 * import type { VideoInfo } from "./probe.ts";
 * const info = {
 *   name: "cats.mp4", duration: 9, width: 1280, height: 720, displayWidth: 1280,
 *   frameRate: { num: 30, den: 1 }, videoStart: 0, hasAudio: false,
 * } as VideoInfo;
 * const plan = planPlayback(info, { heights: [144, 720, 1440], capToSource: true });
 * const rest = planFrom(plan, info, { frame: 120 });
 * assert.deepEqual(rest.segments.map((s) => [s.index, s.startFrame, s.height]), [[1, 120, 720], [2, 180, 720]]);
 * ```
 */
export function planFrom(plan: PlaybackPlan, info: VideoInfo, start: StartPoint): PlaybackPlan {
  const fps = info.frameRate.num / info.frameRate.den;
  const at = plan.segments.findIndex((segment) =>
    start.frame >= segment.startFrame && (segment.last || start.frame < segment.endFrame)
  );
  if (at < 0) return { ...plan, segments: [] };
  const [first, ...rest] = plan.segments.slice(at);
  const cut: PlannedSegment = {
    ...first,
    startFrame: start.frame,
    start: info.videoStart + start.frame / fps,
  };
  if (first.audioStartSample !== undefined) {
    cut.audioStartSample = start.sample ?? startPointAt(info, start.frame / fps).sample;
  }
  return { ...plan, segments: [cut, ...rest] };
}
