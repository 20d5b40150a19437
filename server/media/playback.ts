/**
 * Playing one planned video: its parts run one after the other as a single stream of MPEG-TS
 * bytes, the next part starting early so a fast reader never waits at a join, each part reading
 * ahead into a bounded buffer, and every ffmpeg killed on every exit path.
 *
 * @module
 */

import { DEFAULT_CONFIG } from "../../shared/config/mod.ts";
import { ReelayError } from "../../shared/errors.ts";
import { DEFAULT_FAST_START } from "./encoders.ts";
import { buildFfmpegArgs } from "./ffmpeg_args.ts";
import type { PlannedSegment, PlaybackPlan } from "./plan.ts";
import type { VideoInfo } from "./probe.ts";
import type { SlotLease, TranscodeSlots } from "./slots.ts";
import { Transcode } from "./transcode.ts";
import { checkCoverage } from "./honest_end.ts";

/**
 * Options for {@link streamVideo}.
 *
 * @example
 * ```ts
 * import type { StreamOptions } from "./playback.ts";
 * import { TranscodeSlots } from "./slots.ts";
 * const options: StreamOptions = { preset: "veryfast", slots: new TranscodeSlots(4) };
 * ```
 */
export interface StreamOptions {
  /** The ffmpeg program (default: `[stream] ffmpeg`'s default). */
  ffmpegPath?: string;
  /** libx264 preset (default: `[stream] preset`'s default). */
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

/**
 * A byte stream that reads `source` ahead of its reader into a queue of at most `limit` bytes
 * (plus one chunk): the platform's queuing strategy does the bookkeeping and the pacing.
 */
class ReadAhead {
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  #buffered = 0;

  constructor(source: ReadableStream<Uint8Array>, limit: number) {
    const upstream = source.getReader();
    const stream = new ReadableStream<Uint8Array>(
      {
        pull: async (controller) => {
          const read = await upstream.read();
          try {
            if (read.done) return controller.close();
            controller.enqueue(read.value);
            this.#buffered += read.value.length;
          } catch {
            // Cancelled while this read was in flight: nobody wants the bytes.
          }
        },
        cancel: (reason) => upstream.cancel(reason),
      },
      new ByteLengthQueuingStrategy({ highWaterMark: limit }),
    );
    this.#reader = stream.getReader();
  }

  /** Bytes read from the source and not yet taken. */
  get bytes(): number {
    return this.#buffered;
  }

  /** The next chunk, undefined at the end; throws what the source threw. */
  async next(): Promise<Uint8Array | undefined> {
    const read = await this.#reader.read();
    if (read.done) return undefined;
    this.#buffered -= read.value.length;
    return read.value;
  }

  /** Drops what is buffered and cancels the source. */
  async cancel(): Promise<void> {
    this.#buffered = 0;
    await this.#reader.cancel().catch(() => {});
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
 * ```ts ignore
 * import { streamVideo } from "./playback.ts";
 * import { planPlayback } from "./plan.ts";
 * import { probeVideo } from "./tools.ts";
 * const info = await probeVideo("videos/cats.mp4");
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
    this.#ffmpegPath = options.ffmpegPath ?? DEFAULT_CONFIG.stream.ffmpeg;
    this.#preset = options.preset ?? DEFAULT_CONFIG.stream.preset;
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
    // The part a viewer waits for is tuned to start fast; the others, read ahead, for size.
    const fastStart = index === 0 ? DEFAULT_FAST_START : undefined;
    const args = buildFfmpegArgs(this.#info, segment, { preset: this.#preset, fastStart });
    const label = `part ${index + 1} of "${this.#info.name}"`;
    const transcode = Transcode.start(this.#ffmpegPath, args, label);
    this.#pids.push(transcode.pid);
    const fps = this.#info.frameRate.num / this.#info.frameRate.den;
    const checked = checkCoverage(transcode.stdout, {
      seconds: segment.end - segment.start,
      fps,
      label,
    });
    const buffer = new ReadAhead(checked, this.#readAhead);
    const part = { segment, transcode, buffer, lease };
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
        yield segmentStart(index, part.segment);
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

function segmentStart(index: number, segment: PlannedSegment): StreamEvent {
  const { height, width, requestedHeight, capped } = segment;
  return { type: "segment-start", index, height, width, requestedHeight, capped };
}

/**
 * Starts playing `plan` of `info`: spawns the first part at once (taking a slot, or throwing a
 * ReelayError with code `busy`), and the next part as soon as the current one has produced its
 * first bytes. Each part buffers at most `readAheadBytes`; beyond that ffmpeg waits for the reader.
 *
 * @example
 * ```ts ignore
 * import { streamVideo } from "./playback.ts";
 * import { planPlayback } from "./plan.ts";
 * import { TranscodeSlots } from "./slots.ts";
 * import { probeVideo } from "./tools.ts";
 * const slots = new TranscodeSlots(4);
 * const info = await probeVideo("videos/cats.mp4");
 * const plan = planPlayback(info, { heights: [144, 720, 1440], capToSource: true });
 * const stream = streamVideo(info, plan, { slots });
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
