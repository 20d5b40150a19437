/**
 * Honest ends: a part is complete only when the media it delivered covers the part's planned
 * duration. ffmpeg exits 0 when its source ends early (a truncated file, a seek past the real end),
 * so its exit status alone cannot tell a finished part from a short one; the timestamps it wrote
 * can. A non-zero exit is already an error of the transcode (`transcode.ts`).
 *
 * @module
 */

import { ReelayError } from "../../shared/errors.ts";
import { shortfallTolerance, TsClock } from "../../shared/ts_clock.ts";

/**
 * What a part promises: how many seconds of media it must cover, and how it is named in errors.
 *
 * @example
 * ```ts
 * import type { PartPromise } from "./honest_end.ts";
 * const promise: PartPromise = { seconds: 3, fps: 30, label: 'part 1 of "cats.mp4"' };
 * ```
 */
export interface PartPromise {
  /** Seconds of media the part must cover. */
  seconds: number;
  /** The source's frame rate (for the tolerance). */
  fps: number;
  /** A short name for messages, e.g. `part 2 of "cats.mp4"`. */
  label: string;
}

/**
 * Passes an MPEG-TS byte stream through unchanged while reading its timestamps; when the source
 * ends, the stream closes only if the media covered `promise.seconds` (less
 * {@link shortfallTolerance}), and errors otherwise with a ReelayError code `short-part` that
 * says how much arrived. Errors of the source pass through; cancelling cancels the source.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkCoverage } from "./honest_end.ts";
 * const empty = checkCoverage(ReadableStream.from<Uint8Array>([]), {
 *   seconds: 3, fps: 30, label: "part 1",
 * });
 * await assert.rejects(Array.fromAsync(empty), /Part 1 ended after 0\.0 of 3\.0 s/);
 * ```
 */
export function checkCoverage(
  source: ReadableStream<Uint8Array>,
  promise: PartPromise,
): ReadableStream<Uint8Array> {
  const clock = new TsClock();
  const reader = source.getReader();
  return new ReadableStream<Uint8Array>(
    {
      pull: async (controller) => {
        const read = await reader.read();
        if (!read.done) {
          clock.push(read.value);
          return controller.enqueue(read.value);
        }
        const covered = clock.position;
        if (covered + shortfallTolerance(promise.fps) < promise.seconds) {
          return controller.error(shortPartError(promise, covered));
        }
        controller.close();
      },
      cancel: (reason) => reader.cancel(reason),
    },
    { highWaterMark: 0 },
  );
}

/**
 * The error of a part that ended before its planned end.
 *
 * @example
 * ```ts
 * import { shortPartError } from "./honest_end.ts";
 * shortPartError({ seconds: 3, fps: 30, label: "part 2" }, 1).message;
 * // "part 2 ended after 1.0 of 3.0 s: the source ended early"
 * ```
 */
export function shortPartError(promise: PartPromise, covered: number): ReelayError {
  const label = promise.label.charAt(0).toUpperCase() + promise.label.slice(1);
  return new ReelayError(
    "short-part",
    `${label} ended after ${covered.toFixed(1)} of ${
      promise.seconds.toFixed(1)
    } s: the source ended early`,
  );
}
