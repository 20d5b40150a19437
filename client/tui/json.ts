/**
 * `--json` output: every {@linkcode ClientEvent} as one JSON object on its own line (JSON Lines),
 * for scripts. Lines are written strictly one after another through a queue, and each write
 * loops until every byte is out, so two events never interleave even when the sink accepts
 * only part of a buffer at a time.
 *
 * @module
 */

import { SerialQueue } from "../../shared/async.ts";
import { type PartialWriter, writeAll } from "../../shared/io.ts";
import type { ClientEvent } from "../events.ts";

/** Where JSON lines go: `Deno.stdout`, an open file, or any byte `WritableStream`. */
export type ByteSink = PartialWriter | WritableStream<Uint8Array>;

const encoder = new TextEncoder();

/**
 * The bytes of one event line: the event object exactly, as JSON, then `\n`.
 *
 * @example
 * ```ts
 * import { encodeEventLine } from "./json.ts";
 * new TextDecoder().decode(encodeEventLine({ event: "left", name: "bob" }));
 * // '{"event":"left","name":"bob"}\n'
 * ```
 */
export function encodeEventLine(event: ClientEvent): Uint8Array {
  return encoder.encode(JSON.stringify(event) + "\n");
}

/**
 * Writes events as JSON lines, in order, one at a time.
 *
 * {@linkcode JsonEventWriter.write} never throws and never rejects, so it is safe to call from
 * an event listener; the first write error (such as a closed pipe) is kept, later events are
 * dropped, and {@linkcode JsonEventWriter.flush} rejects with that error.
 *
 * @example
 * ```ts
 * import { JsonEventWriter } from "./json.ts";
 * const out = new JsonEventWriter(Deno.stdout);
 * out.write({ event: "sent", to: "bob", id: "m1" });
 * await out.flush();
 * ```
 */
export class JsonEventWriter {
  #write: (bytes: Uint8Array) => Promise<void>;
  #release: () => void = () => {};
  readonly #queue = new SerialQueue();
  #error: unknown = undefined;
  #failed = false;

  /** Creates a writer on `sink` (`Deno.stdout` by default). */
  constructor(sink: ByteSink = Deno.stdout) {
    if (sink instanceof WritableStream) {
      const writer = sink.getWriter();
      this.#write = (bytes) => writer.write(bytes);
      this.#release = () => writer.releaseLock();
    } else {
      this.#write = (bytes) => writeAll(sink, bytes);
    }
  }

  /** Whether a write failed; later events are dropped. */
  get failed(): boolean {
    return this.#failed;
  }

  /** Queues one event line behind every earlier one. */
  write(event: ClientEvent): void {
    const bytes = encodeEventLine(event);
    void this.#queue.run(async () => {
      if (this.#failed) return;
      try {
        await this.#write(bytes);
      } catch (error) {
        this.#failed = true;
        this.#error = error;
      }
    });
  }

  /** Resolves when every queued line is written; rejects with the first write error. */
  async flush(): Promise<void> {
    await this.#queue.idle();
    if (this.#failed) throw this.#error;
  }

  /** Flushes, then lets go of a `WritableStream` sink (which stays open for its owner). */
  async close(): Promise<void> {
    try {
      await this.flush();
    } finally {
      this.#release();
    }
  }
}
