/**
 * Playing one planned video: its parts run one after the other as a single stream of MPEG-TS
 * bytes, the next part starting early so a fast reader never waits at a join, each part reading
 * ahead into a bounded buffer, and every ffmpeg killed on every exit path.
 *
 * @module
 */

import { ReelayError } from "../../shared/errors.ts";
import { DEFAULT_FAST_START } from "./encoders.ts";
import { FellBehindError } from "./fanout.ts";
import {
  type OpenedPart,
  type PartRequest,
  PartSources,
  type PartSourcesOptions,
} from "./part_sources.ts";
import type { PlannedSegment, PlaybackPlan } from "./plan.ts";
import type { VideoInfo } from "./probe.ts";

/**
 * Options for {@link streamVideo}: the server's {@link PartSources} (shared transcodes, the
 * cache, the slots), or, without them, the settings of sources of the stream's own.
 *
 * @example
 * ```ts
 * import type { StreamOptions } from "./playback.ts";
 * import { TranscodeSlots } from "./slots.ts";
 * const options: StreamOptions = { preset: "veryfast", slots: new TranscodeSlots(4) };
 * ```
 */
export interface StreamOptions extends Omit<PartSourcesOptions, "cache"> {
  /** The server's part sources; when given, the other source settings are theirs. */
  sources?: PartSources;
  /** Most bytes buffered per running part before its source waits (default 4 MiB). */
  readAheadBytes?: number;
  /** Wait for a slot for the first part instead of refusing `busy` (a stream going on). */
  waitForSlot?: boolean;
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
 * (plus one chunk): the platform's queuing strategy does the bookkeeping and the pacing. While
 * `held` gives a promise, nothing more is read (a paused viewer takes nothing from a shared
 * part); `failed` is told at once when the source errors, even with no read in flight.
 */
class ReadAhead {
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  #buffered = 0;

  constructor(
    source: ReadableStream<Uint8Array>,
    limit: number,
    held: () => Promise<void> | undefined,
    failed: (error: unknown) => void,
  ) {
    const upstream = source.getReader();
    upstream.closed.catch(failed);
    const stream = new ReadableStream<Uint8Array>(
      {
        pull: async (controller) => {
          await held();
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
  buffer: ReadAhead;
  opened: OpenedPart;
}

/**
 * One playing video: iterate it for events, call `stop()` to end it early. Every part it opened
 * is left (its ffmpeg killed unless other viewers still share it) when it is stopped, when
 * iteration is abandoned (`break`, `return()`), and when a part fails; iterating to the end
 * leaves none running.
 *
 * @example
 * ```ts ignore
 * import { streamVideo } from "./playback.ts";
 * import { planPlayback } from "./plan.ts";
 * import { probeVideo } from "./tools.ts";
 * const info = await probeVideo("videos/cats.mp4");
 * const stream = await streamVideo(info, planPlayback(info, { heights: [144, 720, 1440], capToSource: true }));
 * for await (const event of stream) {
 *   if (event.type === "chunk") await Deno.stdout.write(event.chunk);
 * }
 * ```
 */
export class VideoStream implements AsyncIterable<StreamEvent> {
  /** The plan being played. */
  readonly plan: PlaybackPlan;
  readonly #info: VideoInfo;
  readonly #sources: PartSources;
  readonly #readAhead: number;
  readonly #parts: (Promise<RunningPart | undefined> | undefined)[];
  readonly #opened: RunningPart[] = [];
  readonly #pids: number[] = [];
  readonly #origins: OpenedPart["origin"][] = [];
  readonly #abort = new AbortController();
  readonly #fellBehind = Promise.withResolvers<FellBehindError>();
  #stopping?: Promise<void>;
  #iterated = false;
  /** Settled when the viewer goes on; present while it is paused. */
  #suspended?: PromiseWithResolvers<void>;

  /** Use {@link streamVideo}. */
  constructor(
    info: VideoInfo,
    plan: PlaybackPlan,
    sources: PartSources,
    first: OpenedPart,
    readAheadBytes: number,
  ) {
    this.plan = plan;
    this.#info = info;
    this.#sources = sources;
    this.#readAhead = readAheadBytes;
    this.#parts = plan.segments.map(() => undefined);
    this.#parts[0] = Promise.resolve(this.#running(0, first));
  }

  /**
   * Resolves when a shared part this stream reads ran further ahead of it than the share keeps
   * (typically while paused): the stream was dropped from that part, and its bytes not yet taken
   * are gone. Its owner goes on from what it sent, with a new stream (`server/media/viewer.ts`).
   */
  get fellBehind(): Promise<FellBehindError> {
    return this.#fellBehind.promise;
  }

  /** Process ids of every ffmpeg this stream read from (started or shared), in order. */
  get pids(): readonly number[] {
    return this.#pids;
  }

  /** Where each part opened so far came from, in order. */
  get origins(): readonly OpenedPart["origin"][] {
    return this.#origins;
  }

  /** Bytes read from the parts and not yet taken by the reader, over all open parts. */
  get bufferedBytes(): number {
    return this.#opened.reduce((sum, part) => sum + part.buffer.bytes, 0);
  }

  /** Resolves once every part being opened (ahead of the reader) has opened or failed. */
  async settled(): Promise<void> {
    await Promise.all(this.#parts.map((part) => part?.catch(() => undefined)));
  }

  /** True once the stream was stopped (by `stop()`, an error, or reaching its end). */
  get stopped(): boolean {
    return this.#stopping !== undefined;
  }

  #running(index: number, opened: OpenedPart): RunningPart {
    if (opened.pid !== undefined) this.#pids.push(opened.pid);
    this.#origins.push(opened.origin);
    const held = () => this.#suspended?.promise;
    const failed = (error: unknown) => {
      if (error instanceof FellBehindError) this.#fellBehind.resolve(error);
    };
    const part = {
      segment: this.plan.segments[index],
      buffer: new ReadAhead(opened.stream, this.#readAhead, held, failed),
      opened,
    };
    if (this.#suspended) opened.suspend();
    this.#opened.push(part);
    // Stopped while this part was opening: leave it at once.
    if (this.#stopping) void part.buffer.cancel();
    return part;
  }

  #request(index: number): PartRequest {
    return partRequest(this.#info, this.plan, index);
  }

  /** Opens the part after the current one now, if there is one and a slot is free. */
  #openAhead(index: number): void {
    if (this.#stopping || index >= this.#parts.length || this.#parts[index]) return;
    const opening = this.#sources.open(this.#request(index), "try", this.#abort.signal)
      .then((opened) => opened && this.#running(index, opened));
    // A failure here surfaces when the reader gets to this part.
    opening.catch(() => {});
    this.#parts[index] = opening;
  }

  async #part(index: number): Promise<RunningPart> {
    const ahead = await this.#parts[index];
    if (ahead) return ahead;
    const opened = await this.#sources.open(this.#request(index), "wait", this.#abort.signal);
    return this.#running(index, opened!);
  }

  async *#events(): AsyncGenerator<StreamEvent> {
    try {
      for (let index = 0; index < this.#parts.length; index++) {
        if (this.#stopping) return;
        const part = await this.#part(index);
        if (this.#stopping) return;
        yield segmentStart(part.segment);
        let first = true;
        while (true) {
          const chunk = await part.buffer.next();
          if (chunk === undefined || this.#stopping) break;
          if (first) {
            first = false;
            this.#openAhead(index + 1);
          }
          yield { type: "chunk", segmentIndex: part.segment.index, chunk };
        }
      }
    } finally {
      await this.stop();
    }
  }

  /**
   * The viewer paused: nothing more is read ahead from the open parts, and every ffmpeg behind
   * them that no other viewer is reading is stopped (SIGSTOP), as is any part opened while paused.
   */
  suspend(): void {
    this.#suspended ??= Promise.withResolvers<void>();
    for (const part of this.#opened) part.opened.suspend();
  }

  /** The viewer goes on: the stopped ffmpeg run again, and reading ahead goes on. */
  unsuspend(): void {
    this.#suspended?.resolve();
    this.#suspended = undefined;
    for (const part of this.#opened) part.opened.unsuspend();
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
   * Leaves every part (all at once): an ffmpeg nobody else reads is killed and awaited, a slot
   * wait is given up, buffered bytes are dropped. A pending read ends. Idempotent.
   */
  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      this.#abort.abort(new ReelayError("stream-stopped", "The stream was stopped"));
      const opening = await Promise.all(this.#parts.map((part) => part?.catch(() => undefined)));
      const parts = new Set([...this.#opened, ...opening.filter((part) => part !== undefined)]);
      // A stopped ffmpeg must run again to end (kill sends SIGCONT too; this also un-counts
      // this viewer's pause for transcodes others still share).
      this.#suspended?.resolve();
      for (const part of parts) part.opened.unsuspend();
      await Promise.all([...parts].map((part) => part.buffer.cancel()));
    })();
    return this.#stopping;
  }
}

function partRequest(info: VideoInfo, plan: PlaybackPlan, index: number): PartRequest {
  // The part a viewer waits for is tuned to start fast; the others, read ahead, for size.
  const fastStart = index === 0 ? DEFAULT_FAST_START : undefined;
  return { info, segment: plan.segments[index], fastStart };
}

function segmentStart(segment: PlannedSegment): StreamEvent {
  const { index, height, width, requestedHeight, capped } = segment;
  return { type: "segment-start", index, height, width, requestedHeight, capped };
}

/**
 * Starts playing `plan` of `info`: opens the first part at once (joining a running transcode of
 * it, reading it from the cache, or starting ffmpeg, which takes a slot or rejects with a
 * ReelayError code `busy`), and opens the next part as soon as the current one has produced its
 * first bytes. Each part buffers at most `readAheadBytes`; beyond that its source waits.
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
 * const stream = await streamVideo(info, plan, { slots });
 * try {
 *   for await (const event of stream) if (event.type === "chunk") await Deno.stdout.write(event.chunk);
 * } finally {
 *   await stream.stop();
 * }
 * ```
 */
export async function streamVideo(
  info: VideoInfo,
  plan: PlaybackPlan,
  options: StreamOptions = {},
): Promise<VideoStream> {
  if (plan.segments.length === 0) {
    throw new ReelayError("empty-plan", `Video "${info.name}" has nothing to play`);
  }
  const sources = options.sources ?? new PartSources(options);
  const readAhead = Math.max(64 * 1024, options.readAheadBytes ?? 4 * 1024 * 1024);
  const first = await sources.open(
    partRequest(info, plan, 0),
    options.waitForSlot ? "wait" : "busy",
  );
  return new VideoStream(info, plan, sources, first!, readAhead);
}
