/**
 * Playing one video: plan its parts (one per configured height), then run them one after the
 * other as a single stream of MPEG-TS bytes, starting the next part early so a fast reader never
 * waits at a join, with bounded memory and every ffmpeg killed on every exit path.
 *
 * @module
 */

import { ReelayError } from "../shared/errors.ts";
import type { VideoInfo } from "./catalog.ts";
import {
  AAC_FRAME,
  buildFfmpegArgs,
  type MediaOptions,
  outputSampleRate,
  type SegmentSpec,
  Transcode,
} from "./transcode.ts";

/**
 * One planned part: what to transcode, and how its height was chosen.
 *
 * @example
 * ```ts
 * import type { PlannedSegment } from "./playback.ts";
 * const label = (s: PlannedSegment) => `${s.height}p${s.capped ? ` (asked ${s.requestedHeight}p)` : ""}`;
 * ```
 */
export interface PlannedSegment extends SegmentSpec {
  /** The height asked for by the configuration. */
  requestedHeight: number;
  /** True when the requested height was lowered to the source's height. */
  capped: boolean;
}

/**
 * The parts of one video, in playing order.
 *
 * @example
 * ```ts
 * import { planPlayback, type PlaybackPlan } from "./playback.ts";
 * import { probeVideo } from "./catalog.ts";
 * const plan: PlaybackPlan = planPlayback(await probeVideo("/srv/videos/cats.mp4"), {
 *   heights: [144, 720, 1440],
 *   capToSource: true,
 * });
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
}

function evenDown(value: number): number {
  return Math.max(2, Math.floor(value / 2) * 2);
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
 * import { planPlayback } from "./playback.ts";
 * import { probeVideo } from "./catalog.ts";
 * const info = await probeVideo("/srv/videos/cats.mp4");
 * const plan = planPlayback(info, { heights: [144, 720, 1440], capToSource: true });
 * for (const s of plan.segments) console.log(s.start, s.end, s.width, s.height, s.capped);
 * ```
 */
export function planPlayback(
  info: VideoInfo,
  options: Pick<MediaOptions, "heights" | "capToSource">,
): PlaybackPlan {
  const heights = options.heights.length > 0 ? options.heights : [info.height];
  for (const height of heights) {
    if (!Number.isInteger(height) || height < 2) {
      throw new ReelayError("bad-height", `Height "${height}" is not a whole number of 2 or more`);
    }
  }
  const fps = info.frameRate.num / info.frameRate.den;
  const frameCount = Math.max(1, Math.round(info.duration * fps));
  const count = heights.length;
  const cuts = Array.from({ length: count + 1 }, (_, k) => Math.round(k * frameCount / count));

  const rate = outputSampleRate(info);
  const audioOrigin = Math.round((info.audioStart ?? 0) * rate);
  const audioCuts: number[] = [audioOrigin];
  for (let k = 1; k < count; k++) {
    const time = info.videoStart + cuts[k] / fps;
    const frames = Math.round((time * rate - audioOrigin) / AAC_FRAME);
    audioCuts.push(Math.max(audioOrigin + frames * AAC_FRAME, audioCuts[k - 1] + AAC_FRAME));
  }

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
      audioStartSample: info.hasAudio ? audioCuts[k] : undefined,
      audioEndSample: info.hasAudio && !last ? audioCuts[k + 1] : undefined,
    });
  }
  return { name: info.name, duration: info.duration, frameCount, segments };
}

/**
 * A held transcode slot; `release()` gives it back and is safe to call twice.
 *
 * @example
 * ```ts
 * import { TranscodeSlots, type SlotLease } from "./playback.ts";
 * const lease: SlotLease = new TranscodeSlots(2).acquire();
 * lease.release();
 * ```
 */
export interface SlotLease {
  /** Gives the slot back. */
  release(): void;
}

/**
 * Caps how many ffmpeg processes run at once across the server. A stream holds one slot while it
 * plays and a second one while it reads the next part ahead, if one is free.
 *
 * @example
 * ```ts
 * import { TranscodeSlots } from "./playback.ts";
 * const slots = new TranscodeSlots(4);
 * const lease = slots.tryAcquire();
 * if (!lease) throw new Error("busy, try later");
 * lease.release();
 * ```
 */
export class TranscodeSlots {
  /** The most slots that can be held at once. */
  readonly max: number;
  #inUse = 0;

  /** Creates `max` free slots. */
  constructor(max: number) {
    if (!Number.isInteger(max) || max < 1) {
      throw new ReelayError("bad-max-transcodes", `Transcode limit "${max}" must be 1 or more`);
    }
    this.max = max;
  }

  /** Slots held right now. */
  get inUse(): number {
    return this.#inUse;
  }

  /** Takes a free slot, or returns undefined when all are held. */
  tryAcquire(): SlotLease | undefined {
    if (this.#inUse >= this.max) return undefined;
    this.#inUse++;
    let held = true;
    return {
      release: () => {
        if (!held) return;
        held = false;
        this.#inUse--;
      },
    };
  }

  /** Takes a free slot or throws a ReelayError with code `busy`. */
  acquire(): SlotLease {
    const lease = this.tryAcquire();
    if (!lease) {
      throw new ReelayError(
        "busy",
        `The server is busy: all ${this.max} transcoding slots are in use; try again later`,
      );
    }
    return lease;
  }
}

/**
 * Options for {@link streamVideo}.
 *
 * @example
 * ```ts
 * import { type StreamOptions, TranscodeSlots } from "./playback.ts";
 * const options: StreamOptions = { preset: "veryfast", slots: new TranscodeSlots(4), readAheadBytes: 4 << 20 };
 * ```
 */
export interface StreamOptions {
  /** The ffmpeg program (default `ffmpeg`). */
  ffmpegPath?: string;
  /** libx264 preset (default `veryfast`). */
  preset?: string;
  /** Server-wide slots; without them nothing is capped. */
  slots?: TranscodeSlots;
  /** Most bytes buffered per running part before ffmpeg is left blocked (default 4 MiB). */
  readAheadBytes?: number;
}

/**
 * What a stream yields: a part begins, or bytes of the current part.
 *
 * @example
 * ```ts
 * import type { StreamEvent } from "./playback.ts";
 * const show = (e: StreamEvent) => e.type === "chunk" ? `${e.chunk.length} bytes` : `${e.height}p starts`;
 * ```
 */
export type StreamEvent =
  | {
    type: "segment-start";
    /** Index of the part that begins. */
    index: number;
    /** Its height in pixels. */
    height: number;
    /** Its width in pixels. */
    width: number;
    /** The height the configuration asked for. */
    requestedHeight: number;
    /** Whether the height was lowered to the source's. */
    capped: boolean;
  }
  | {
    type: "chunk";
    /** Index of the part these bytes belong to. */
    segmentIndex: number;
    /** MPEG-TS bytes; concatenating every chunk in order gives one valid stream. */
    chunk: Uint8Array;
  };

/** Reads a byte stream into a bounded queue in the background. */
class ReadAhead {
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  readonly #limit: number;
  readonly #queue: Uint8Array[] = [];
  #bytes = 0;
  #ended = false;
  #cancelled = false;
  #failure?: { error: unknown };
  #wakeConsumer?: () => void;
  #wakeProducer?: () => void;
  readonly pumped: Promise<void>;

  constructor(stream: ReadableStream<Uint8Array>, limit: number) {
    this.#reader = stream.getReader();
    this.#limit = limit;
    this.pumped = this.#pump();
  }

  async #pump(): Promise<void> {
    try {
      while (!this.#cancelled) {
        if (this.#bytes >= this.#limit) {
          await new Promise<void>((resolve) => this.#wakeProducer = resolve);
          continue;
        }
        const read = await this.#reader.read();
        if (read.done || this.#cancelled) break;
        this.#queue.push(read.value);
        this.#bytes += read.value.length;
        this.#wake();
      }
    } catch (error) {
      if (!this.#cancelled) this.#failure = { error };
    } finally {
      this.#ended = true;
      this.#wake();
    }
  }

  #wake(): void {
    const consumer = this.#wakeConsumer;
    const producer = this.#wakeProducer;
    this.#wakeConsumer = this.#wakeProducer = undefined;
    consumer?.();
    producer?.();
  }

  /** Bytes read from the source and not yet taken. */
  get bytes(): number {
    return this.#bytes;
  }

  /** The next chunk, undefined at the end; throws what the source threw. */
  async next(): Promise<Uint8Array | undefined> {
    while (true) {
      const chunk = this.#queue.shift();
      if (chunk) {
        this.#bytes -= chunk.length;
        this.#wake();
        return chunk;
      }
      if (this.#failure) throw this.#failure.error;
      if (this.#ended || this.#cancelled) return undefined;
      await new Promise<void>((resolve) => this.#wakeConsumer = resolve);
    }
  }

  /** Drops what is buffered, cancels the source and waits for the pump to stop. */
  async cancel(): Promise<void> {
    this.#cancelled = true;
    this.#queue.length = 0;
    this.#bytes = 0;
    this.#wake();
    await this.#reader.cancel().catch(() => {});
    await this.pumped;
  }
}

interface RunningPart {
  segment: PlannedSegment;
  transcode: Transcode;
  buffer: ReadAhead;
  lease?: SlotLease;
}

/**
 * One playing video: iterate it for events, call `stop()` to end it early. Every ffmpeg it
 * started is killed and awaited when it is stopped, when iteration is abandoned (`break`,
 * `return()`), and when a part fails; iterating to the end leaves none running.
 *
 * @example
 * ```ts
 * import { streamVideo, planPlayback } from "./playback.ts";
 * import { probeVideo } from "./catalog.ts";
 * const info = await probeVideo("/srv/videos/cats.mp4");
 * const stream = streamVideo(info, planPlayback(info, { heights: [144, 720, 1440], capToSource: true }));
 * for await (const event of stream) {
 *   if (event.type === "chunk") await Deno.stdout.write(event.chunk);
 * }
 * ```
 */
export class VideoStream implements AsyncIterable<StreamEvent> {
  /** The plan being played. */
  readonly plan: PlaybackPlan;
  readonly #info: VideoInfo;
  readonly #ffmpegPath: string;
  readonly #preset: string;
  readonly #slots?: TranscodeSlots;
  readonly #readAhead: number;
  readonly #parts: (RunningPart | undefined)[];
  readonly #pids: number[] = [];
  #spareLease?: SlotLease;
  #stopping?: Promise<void>;
  #iterated = false;

  /** Use {@link streamVideo}. */
  constructor(info: VideoInfo, plan: PlaybackPlan, options: StreamOptions = {}) {
    if (plan.segments.length === 0) {
      throw new ReelayError("empty-plan", `Video "${info.name}" has nothing to play`);
    }
    this.plan = plan;
    this.#info = info;
    this.#ffmpegPath = options.ffmpegPath ?? "ffmpeg";
    this.#preset = options.preset ?? "veryfast";
    this.#slots = options.slots;
    this.#readAhead = Math.max(64 * 1024, options.readAheadBytes ?? 4 * 1024 * 1024);
    this.#parts = plan.segments.map(() => undefined);
    this.#startWithLease(0, this.#slots?.acquire());
  }

  /** Process ids of every ffmpeg this stream started, in order. */
  get pids(): readonly number[] {
    return this.#pids;
  }

  /** Bytes read from ffmpeg and not yet taken by the reader, over all running parts. */
  get bufferedBytes(): number {
    return this.#parts.reduce((sum, part) => sum + (part?.buffer.bytes ?? 0), 0);
  }

  /** True once the stream was stopped (by `stop()`, an error, or reaching its end). */
  get stopped(): boolean {
    return this.#stopping !== undefined;
  }

  #startPart(index: number, lease: SlotLease | undefined): RunningPart {
    const segment = this.plan.segments[index];
    const args = buildFfmpegArgs(this.#info, segment, { preset: this.#preset });
    const label = `part ${index + 1} of "${this.#info.name}"`;
    const transcode = Transcode.start(this.#ffmpegPath, args, label);
    this.#pids.push(transcode.pid);
    const part = {
      segment,
      transcode,
      buffer: new ReadAhead(transcode.stdout, this.#readAhead),
      lease,
    };
    this.#parts[index] = part;
    return part;
  }

  /** Starts the part after `index` now, if there is one and a slot is free. */
  #startAhead(index: number): void {
    if (this.#stopping || index >= this.#parts.length || this.#parts[index]) return;
    const lease = this.#slots?.tryAcquire();
    if (this.#slots && !lease) return;
    this.#startWithLease(index, lease);
  }

  #startWithLease(index: number, lease: SlotLease | undefined): RunningPart {
    try {
      return this.#startPart(index, lease);
    } catch (error) {
      lease?.release();
      throw error;
    }
  }

  async *#events(): AsyncGenerator<StreamEvent> {
    try {
      for (let index = 0; index < this.#parts.length; index++) {
        if (this.#stopping) return;
        const part = this.#parts[index] ?? this.#startWithLease(index, this.#takeSpare());
        const { segment } = part;
        yield {
          type: "segment-start",
          index,
          height: segment.height,
          width: segment.width,
          requestedHeight: segment.requestedHeight,
          capped: segment.capped,
        };
        let first = true;
        while (true) {
          const chunk = await part.buffer.next();
          if (chunk === undefined || this.#stopping) break;
          if (first) {
            first = false;
            this.#startAhead(index + 1);
          }
          yield { type: "chunk", segmentIndex: index, chunk };
        }
        if (this.#stopping) return;
        const status = await part.transcode.status;
        if (status.error) throw status.error;
        this.#finishPart(index);
      }
    } finally {
      await this.stop();
    }
  }

  #takeSpare(): SlotLease | undefined {
    const lease = this.#spareLease;
    this.#spareLease = undefined;
    return lease;
  }

  /** Part `index` has exited: its slot goes to the next part if that one is still waiting. */
  #finishPart(index: number): void {
    const part = this.#parts[index];
    const lease = part?.lease;
    if (part) part.lease = undefined;
    if (index + 1 < this.#parts.length && !this.#parts[index + 1] && this.#slots) {
      this.#spareLease = lease;
    } else {
      lease?.release();
    }
  }

  /** Iterates the stream's events; a stream can be iterated once. */
  [Symbol.asyncIterator](): AsyncIterator<StreamEvent> {
    if (this.#iterated) {
      throw new ReelayError(
        "stream-reused",
        `Stream of "${this.#info.name}" is already being read`,
      );
    }
    this.#iterated = true;
    return this.#events();
  }

  /**
   * Kills every ffmpeg this stream started (all at once), waits for them, drops buffered bytes
   * and gives the slots back. A pending read ends. Idempotent.
   */
  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      const parts = this.#parts.filter((part): part is RunningPart => part !== undefined);
      await Promise.all(parts.map(async (part) => {
        await Promise.all([part.transcode.kill(), part.buffer.cancel()]);
        part.lease?.release();
        part.lease = undefined;
      }));
      this.#takeSpare()?.release();
    })();
    return this.#stopping;
  }
}

/**
 * Starts playing `plan` of `info`: spawns the first part at once (taking a slot, or throwing a
 * ReelayError with code `busy`), and the next part as soon as the current one has produced its
 * first bytes. Each part buffers at most `readAheadBytes`; beyond that ffmpeg waits for the reader.
 *
 * @example
 * ```ts
 * import { planPlayback, streamVideo, TranscodeSlots } from "./playback.ts";
 * import { probeVideo } from "./catalog.ts";
 * const slots = new TranscodeSlots(4);
 * const info = await probeVideo("/srv/videos/cats.mp4");
 * const stream = streamVideo(info, planPlayback(info, { heights: [144, 720, 1440], capToSource: true }), { slots });
 * try {
 *   for await (const event of stream) if (event.type === "chunk") await Deno.stdout.write(event.chunk);
 * } finally {
 *   await stream.stop();
 * }
 * ```
 */
export function streamVideo(
  info: VideoInfo,
  plan: PlaybackPlan,
  options: StreamOptions = {},
): VideoStream {
  return new VideoStream(info, plan, options);
}
