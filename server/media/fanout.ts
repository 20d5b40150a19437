/**
 * One transcode for many viewers: a {@link SharedStream} reads one source (an ffmpeg's stdout)
 * and gives each viewer its own stream of the same bytes, read at the viewer's own pace.
 *
 * The source is paced by the fastest viewer, so ffmpeg is throttled by the lead viewer's
 * back-pressure exactly as it is with one viewer, and a paused viewer stalls nobody. Memory is
 * bounded: bytes are kept from the slowest viewer to the head, at most `maxBufferBytes`; a viewer
 * further behind is detached with a {@link FellBehindError} that says where it was, so its owner
 * can go on from there with a transcode of its own. While nothing has been dropped, a viewer who
 * joins late starts at byte 0. When the last viewer leaves, the source is cancelled, which kills
 * its ffmpeg; a source that already completed keeps its bytes (if its start is kept) for viewers
 * who come later, until {@link SharedStream.release}. Every viewer learns how the source ended: closed when it completed, errored with
 * the source's error when it failed.
 *
 * Ours rather than a library's: `ReadableStream.tee()` buffers without bound for the slower
 * branch and paces by the slower one, and the npm broadcast streams are Node streams without a
 * retention window or a way to detach a laggard.
 *
 * @module
 */

import { ReelayError } from "../../shared/errors.ts";

/**
 * Bounds of a {@link SharedStream}.
 *
 * @example
 * ```ts
 * import type { SharedStreamOptions } from "./fanout.ts";
 * const options: SharedStreamOptions = { maxBufferBytes: 64 << 20, readAheadBytes: 1 << 20 };
 * ```
 */
export interface SharedStreamOptions {
  /** Bytes kept behind the head for slower and late viewers; at least twice `readAheadBytes`. */
  maxBufferBytes: number;
  /** How far past the fastest viewer the source is read. */
  readAheadBytes: number;
  /**
   * Called when the source ends without an error, before any viewer is told; a rejection turns
   * the end into a failure (for example an ffmpeg that exited 0 but delivered less than planned).
   */
  checkEnd?: () => Promise<void> | void;
}

/**
 * A viewer was further behind the head than the buffer holds, and was detached. `position` is
 * how many bytes it had read: its owner can go on from there with a transcode of its own.
 *
 * @example
 * ```ts
 * import { FellBehindError } from "./fanout.ts";
 * const error = new FellBehindError(123_456, 1 << 20);
 * error.code; // "fell-behind"
 * error.position; // 123456
 * ```
 */
export class FellBehindError extends ReelayError {
  /** Bytes the viewer had read when it was detached. */
  readonly position: number;

  /** Creates the error for a viewer detached at `position`. */
  constructor(position: number, maxBufferBytes: number) {
    super(
      "fell-behind",
      `Viewer at byte ${position} fell more than ${maxBufferBytes} bytes behind the shared stream`,
    );
    this.name = "FellBehindError";
    this.position = position;
  }
}

/**
 * How the source of a {@link SharedStream} ended.
 *
 * @example
 * ```ts
 * import type { SourceEnd } from "./fanout.ts";
 * const honest = (end: SourceEnd) => end.kind === "complete" ? "complete" : "error";
 * ```
 */
export type SourceEnd =
  | { kind: "complete"; bytes: number }
  | { kind: "failed"; bytes: number; error: unknown }
  | { kind: "cancelled"; bytes: number };

/**
 * What a {@link SharedStream} holds right now, for metrics and tests.
 *
 * @example
 * ```ts
 * import type { SharedStreamStats } from "./fanout.ts";
 * const lag = (s: SharedStreamStats) => s.headBytes - s.firstRetainedByte;
 * ```
 */
export interface SharedStreamStats {
  /** Bytes read from the source so far. */
  headBytes: number;
  /** Offset of the oldest byte still kept (0 while late joiners can start at the beginning). */
  firstRetainedByte: number;
  /** Bytes kept in memory. */
  retainedBytes: number;
  /** Viewers attached. */
  consumers: number;
  /** True while a read from the source is in flight. */
  reading: boolean;
}

interface Chunk {
  start: number;
  bytes: Uint8Array;
}

interface Consumer {
  position: number;
  controller: ReadableStreamDefaultController<Uint8Array>;
  /** Wakes a pull that waits for bytes. */
  wake?: () => void;
  gone: boolean;
}

/**
 * One source, many viewers. See the module documentation for the rules.
 *
 * @example Two viewers of one source
 * ```ts
 * import { SharedStream } from "./fanout.ts";
 * const source = ReadableStream.from([new Uint8Array([1, 2]), new Uint8Array([3])]);
 * const shared = new SharedStream(source, { maxBufferBytes: 1024, readAheadBytes: 256 });
 * const first = shared.join()!;
 * const second = shared.join()!;
 * const read = async (stream: ReadableStream<Uint8Array>) => {
 *   const bytes: number[] = [];
 *   for await (const chunk of stream) bytes.push(...chunk);
 *   return bytes;
 * };
 * const [a, b] = await Promise.all([read(first), read(second)]);
 * if (a.join() !== "1,2,3" || b.join() !== "1,2,3") throw new Error("not shared");
 * (await shared.ended).kind; // "complete"
 * ```
 */
export class SharedStream {
  /** How the source ended; resolves once it has, never rejects. */
  readonly ended: Promise<SourceEnd>;
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  readonly #options: SharedStreamOptions;
  readonly #consumers = new Set<Consumer>();
  #chunks: Chunk[] = [];
  #base = 0;
  #head = 0;
  #retained = 0;
  #reading = false;
  #released = false;
  #end?: SourceEnd;
  #settle!: (end: SourceEnd) => void;
  #cancelling?: Promise<void>;
  #idleWaiters: (() => void)[] = [];

  /** Takes over `source` (locks it); nothing is read until a viewer reads. */
  constructor(source: ReadableStream<Uint8Array>, options: SharedStreamOptions) {
    const { maxBufferBytes, readAheadBytes } = options;
    if (!(readAheadBytes > 0) || !(maxBufferBytes >= 2 * readAheadBytes)) {
      throw new RangeError(
        `Buffer of "${maxBufferBytes}" bytes must hold twice the read-ahead of "${readAheadBytes}"`,
      );
    }
    this.#options = options;
    this.#reader = source.getReader();
    this.ended = new Promise((resolve) => this.#settle = resolve);
  }

  /**
   * A new viewer's stream, starting at byte 0; undefined once byte 0 is no longer kept, or once
   * the shared stream is over (the source failed or was cancelled, or its viewers all left):
   * then the caller starts a transcode of its own. Cancelling the returned stream leaves.
   *
   * @example
   * ```ts
   * import { SharedStream } from "./fanout.ts";
   * const shared = new SharedStream(ReadableStream.from([new Uint8Array(8)]), {
   *   maxBufferBytes: 64,
   *   readAheadBytes: 16,
   * });
   * const viewer = shared.join();
   * await viewer?.cancel(); // the last one leaving cancels the source
   * shared.join(); // undefined
   * ```
   */
  join(): ReadableStream<Uint8Array> | undefined {
    if (this.#base > 0 || this.#released || this.#end?.kind === "failed") return undefined;
    if (this.#end?.kind === "cancelled") return undefined;
    let consumer!: Consumer;
    return new ReadableStream<Uint8Array>(
      {
        start: (controller) => {
          consumer = { position: 0, controller, gone: false };
          this.#consumers.add(consumer);
        },
        pull: () => this.#deliver(consumer),
        cancel: () => this.#leave(consumer),
      },
      // Nothing queued ahead of the owner's reads: a viewer's position is what it has read.
      new ByteLengthQueuingStrategy({ highWaterMark: 0 }),
    );
  }

  /**
   * No more viewers may join: the kept bytes are dropped once the viewers reading now are done
   * (at once when there are none). A source still running goes on for them. Idempotent.
   *
   * @example
   * ```ts
   * import { SharedStream } from "./fanout.ts";
   * const shared = new SharedStream(ReadableStream.from([new Uint8Array(8)]), {
   *   maxBufferBytes: 64,
   *   readAheadBytes: 16,
   * });
   * for await (const _ of shared.join()!); // read to the end: the bytes stay for late viewers
   * shared.release();
   * shared.join(); // undefined
   * ```
   */
  release(): void {
    this.#released = true;
    if (this.#consumers.size === 0 && this.#end) this.#stopSource(undefined);
  }

  /**
   * What is held right now.
   *
   * @example
   * ```ts
   * import { SharedStream } from "./fanout.ts";
   * const shared = new SharedStream(ReadableStream.from([]), { maxBufferBytes: 64, readAheadBytes: 16 });
   * shared.stats.retainedBytes; // 0
   * ```
   */
  get stats(): SharedStreamStats {
    return {
      headBytes: this.#head,
      firstRetainedByte: this.#base,
      retainedBytes: this.#retained,
      consumers: this.#consumers.size,
      reading: this.#reading,
    };
  }

  /**
   * Resolves when no read from the source is in flight. Reads start only when a viewer reads, so
   * after this nothing more is read until one does.
   *
   * @example
   * ```ts
   * import { SharedStream } from "./fanout.ts";
   * const shared = new SharedStream(ReadableStream.from([]), { maxBufferBytes: 64, readAheadBytes: 16 });
   * await shared.idle();
   * ```
   */
  idle(): Promise<void> {
    if (!this.#reading) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  /**
   * Ends everything now: every viewer's stream errors with `reason`, and the source is cancelled
   * (its ffmpeg killed). For shutdown; resolves once the source's cancel has finished.
   *
   * @example
   * ```ts
   * import { SharedStream } from "./fanout.ts";
   * const shared = new SharedStream(ReadableStream.from([new Uint8Array(4)]), {
   *   maxBufferBytes: 64,
   *   readAheadBytes: 16,
   * });
   * const viewer = shared.join()!;
   * await shared.abort(new Error("Server is shutting down"));
   * await viewer.getReader().read().catch((error) => error.message); // "Server is shutting down"
   * ```
   */
  abort(reason: Error): Promise<void> {
    const cancelled = this.#stopSource(reason);
    for (const consumer of this.#consumers) this.#detach(consumer, reason);
    return cancelled;
  }

  async #deliver(consumer: Consumer): Promise<void> {
    while (!consumer.gone) {
      if (consumer.position < this.#head) {
        const bytes = this.#bytesAt(consumer.position);
        consumer.position += bytes.length;
        consumer.controller.enqueue(bytes);
        this.#pump();
        return;
      }
      if (this.#end) return this.#finish(consumer, this.#end);
      this.#pump();
      await new Promise<void>((resolve) => consumer.wake = resolve);
    }
  }

  /** A copy of the bytes from `position` to the end of the chunk that holds it. */
  #bytesAt(position: number): Uint8Array {
    let low = 0;
    let high = this.#chunks.length - 1;
    while (low < high) {
      const middle = (low + high + 1) >> 1;
      if (this.#chunks[middle].start <= position) low = middle;
      else high = middle - 1;
    }
    const chunk = this.#chunks[low];
    return chunk.bytes.slice(position - chunk.start);
  }

  /** Reads from the source while the fastest viewer is less than the read-ahead from the head. */
  async #pump(): Promise<void> {
    if (this.#reading) return;
    this.#reading = true;
    try {
      while (!this.#end && this.#head - this.#leaderPosition() < this.#options.readAheadBytes) {
        const { done, value } = await this.#reader.read();
        if (this.#end) break;
        if (done) {
          await this.#completed();
          break;
        }
        if (value.length > 0) this.#append(value);
      }
    } catch (error) {
      this.#setEnd({ kind: "failed", bytes: this.#head, error });
    } finally {
      this.#reading = false;
      for (const resolve of this.#idleWaiters.splice(0)) resolve();
    }
  }

  async #completed(): Promise<void> {
    try {
      await this.#options.checkEnd?.();
      this.#setEnd({ kind: "complete", bytes: this.#head });
    } catch (error) {
      this.#setEnd({ kind: "failed", bytes: this.#head, error });
    }
  }

  #leaderPosition(): number {
    let leader = 0;
    for (const consumer of this.#consumers) leader = Math.max(leader, consumer.position);
    return leader;
  }

  #append(value: Uint8Array): void {
    // A view into a larger buffer would keep all of that buffer alive: keep exactly the bytes.
    const bytes = value.byteLength === value.buffer.byteLength ? value : value.slice();
    this.#chunks.push({ start: this.#head, bytes });
    this.#head += bytes.length;
    this.#retained += bytes.length;
    this.#trim();
    this.#wakeAll();
  }

  /** Drops the oldest bytes beyond the bound and detaches the viewers that still needed them. */
  #trim(): void {
    const leader = this.#leaderPosition();
    while (this.#retained > this.#options.maxBufferBytes && this.#chunks.length > 1) {
      const first = this.#chunks[0];
      const end = first.start + first.bytes.length;
      // Never drop what the lead viewer has not read: it is ahead of everybody else.
      if (end > leader) break;
      this.#chunks.shift();
      this.#retained -= first.bytes.length;
      this.#base = end;
    }
    for (const consumer of this.#consumers) {
      if (consumer.position < this.#base) {
        this.#detach(
          consumer,
          new FellBehindError(consumer.position, this.#options.maxBufferBytes),
        );
      }
    }
  }

  #finish(consumer: Consumer, end: SourceEnd): void {
    this.#remove(consumer);
    if (end.kind === "complete") consumer.controller.close();
    else if (end.kind === "failed") consumer.controller.error(end.error);
    else consumer.controller.error(new ReelayError("stream-cancelled", "The shared stream ended"));
  }

  #detach(consumer: Consumer, reason: unknown): void {
    this.#remove(consumer);
    consumer.controller.error(reason);
  }

  #leave(consumer: Consumer): Promise<void> {
    this.#remove(consumer);
    return this.#cancelling ?? Promise.resolve();
  }

  #remove(consumer: Consumer): void {
    if (consumer.gone) return;
    consumer.gone = true;
    this.#consumers.delete(consumer);
    consumer.wake?.();
    if (this.#consumers.size === 0) {
      // A complete part whose start is kept stays for late viewers until released.
      if (this.#end?.kind === "complete" && this.#base === 0 && !this.#released) return;
      this.#stopSource(new ReelayError("no-viewers", "Nobody is watching"));
    }
  }

  /** Cancels the source unless it has ended, and forgets the buffer; idempotent. */
  #stopSource(reason: unknown): Promise<void> {
    if (!this.#end) {
      this.#setEnd({ kind: "cancelled", bytes: this.#head });
      this.#cancelling = this.#reader.cancel(reason).catch(() => {});
    }
    this.#chunks = [];
    this.#retained = 0;
    return this.#cancelling ?? Promise.resolve();
  }

  #setEnd(end: SourceEnd): void {
    if (this.#end) return;
    this.#end = end;
    if (end.kind === "failed") this.#reader.cancel(end.error).catch(() => {});
    this.#settle(end);
    this.#wakeAll();
  }

  #wakeAll(): void {
    for (const consumer of this.#consumers) {
      const wake = consumer.wake;
      consumer.wake = undefined;
      wake?.();
    }
  }
}
