/**
 * One TCP connection speaking frames: a read loop over one growable buffer and exactly one
 * writer, so frames from different tasks never interleave.
 *
 * The writer has two lanes. The urgent lane (chat, directory, errors, keepalive) always goes
 * first and is capped in bytes: a peer that stops reading is cut off instead of growing our
 * memory. The ordered lane (stream data and the control messages that must stay in order with
 * it) is paced by its producer, which awaits each frame being written.
 *
 * @module
 */

import { settlesWithin, Wake } from "../async.ts";
import { ProtocolError, ReelayError } from "../errors.ts";
import { writeAll } from "../io.ts";

import { encodeStreamHeader, type Frame, FrameDecoder } from "./frame.ts";
import {
  type ClientMessage,
  encodeMessage,
  fromClient,
  fromServer,
  type Received,
  type ServerMessage,
} from "./messages.ts";

/** Options for a {@linkcode FramedConnection}. */
export interface FramedOptions {
  /** Cap on a received frame's length. */
  maxFrameBytes: number;
  /** Cap on bytes waiting in the urgent lane before the connection is cut off. */
  maxQueueBytes: number;
  /** A budget shared with other connections (the server's total), told of every queued byte. */
  budget?: QueueAccount;
}

/** A budget of queued bytes shared by many connections (the server's `QueueBudget`). */
export interface QueueAccount {
  /** Counts `bytes` for a connection holding `held`; false refuses them (that peer is cut off). */
  reserve(bytes: number, held: number): boolean;
  /** Gives back bytes written or dropped. */
  release(bytes: number): void;
}

interface OrderedFrame {
  /** Written back to back, nothing in between (a frame header, then its payload). */
  parts: Uint8Array[];
  size: number;
  done: () => void;
  failed: (error: Error) => void;
}

/** Bytes the ordered lane may hold before a producer has to wait for its frame's write. */
export const ORDERED_BUDGET_BYTES = 256 * 1024;

/** Most bytes of urgent frames coalesced into one socket write. */
const BATCH_BYTES = 64 * 1024;

/**
 * A framed connection with one reader and one writer, typed by what it receives (`In`) and what
 * it sends (`Out`). Make one with {@linkcode FramedConnection.forServer} (the server's side of a
 * client) or {@linkcode FramedConnection.forClient}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { FramedConnection } from "./framed.ts";
 * const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const limits = { maxFrameBytes: 1 << 20, maxQueueBytes: 8 << 20 };
 * const [accepted, dialed] = await Promise.all([
 *   listener.accept(),
 *   Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }),
 * ]);
 * listener.close();
 * const server = FramedConnection.forServer(accepted, limits);
 * const client = FramedConnection.forClient(dialed, limits);
 * client.sendMessage({ type: "ping" });
 * for await (const item of server.receive()) {
 *   assert.deepEqual(item, { kind: "message", message: { type: "ping" } });
 *   break;
 * }
 * client.close();
 * server.close();
 * await Promise.all([client.done, server.done]);
 * ```
 */
export class FramedConnection<In, Out extends ClientMessage | ServerMessage> {
  readonly #conn: Deno.Conn;
  readonly #options: FramedOptions;
  readonly #decode: (frame: Frame) => Received<In>;
  readonly #urgent: Uint8Array[] = [];
  #urgentBytes = 0;
  readonly #ordered: OrderedFrame[] = [];
  #orderedBytes = 0;
  readonly #work = new Wake();
  #closed = false;
  #closeReason: ReelayError | undefined;
  readonly #writerDone: Promise<void>;
  #lastReceived = Date.now();
  #bytesReceived = 0;
  readonly #drained = new Wake();
  /** Whether the writer is writing a batch taken from the urgent lane right now. */
  #writingUrgent = false;

  /** Wraps a connected socket; starts its writer at once. `decode` says what each frame is. */
  constructor(conn: Deno.Conn, options: FramedOptions, decode: (frame: Frame) => Received<In>) {
    this.#conn = conn;
    this.#options = options;
    this.#decode = decode;
    this.#writerDone = this.#writeLoop();
  }

  /** The server's side of a connection from a client. */
  static forServer(
    conn: Deno.Conn,
    options: FramedOptions,
  ): FramedConnection<ClientMessage, ServerMessage> {
    return new FramedConnection(conn, options, fromClient);
  }

  /** A client's side of its connection to the server. */
  static forClient(
    conn: Deno.Conn,
    options: FramedOptions,
  ): FramedConnection<ServerMessage, ClientMessage> {
    return new FramedConnection(conn, options, fromServer);
  }

  /** Milliseconds since epoch when the peer last sent any byte. */
  get lastReceived(): number {
    return this.#lastReceived;
  }

  /** Total bytes received from the peer. */
  get bytesReceived(): number {
    return this.#bytesReceived;
  }

  /** Bytes waiting in the urgent lane. */
  get queuedBytes(): number {
    return this.#urgentBytes;
  }

  /** Whether the connection has been closed by either side. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Why the connection was closed, when it was closed for a reason. */
  get closeReason(): ReelayError | undefined {
    return this.#closeReason;
  }

  /** The peer's address as `host:port`. */
  get remote(): string {
    const address = this.#conn.remoteAddr;
    return address.transport === "tcp" ? `${address.hostname}:${address.port}` : "unknown";
  }

  /**
   * Yields what arrives, frame by frame, until the peer closes, the connection is closed, or a
   * frame breaks the protocol (then throws a {@linkcode ProtocolError}). Stream bytes are a view
   * valid until the next item.
   */
  async *receive(): AsyncGenerator<Received<In>> {
    const decoder = new FrameDecoder(this.#options.maxFrameBytes);
    while (!this.#closed) {
      let frame: Frame | undefined;
      while ((frame = decoder.next()) !== undefined) {
        // Decoded here, not in a generator of frames: one async hop per frame, not two.
        yield this.#decode(frame);
        if (this.#closed) return;
      }
      let count: number | null;
      try {
        count = await this.#conn.read(decoder.writable());
      } catch (error) {
        if (this.#closed || isDisconnect(error)) return;
        throw error;
      }
      if (count === null) return;
      decoder.commit(count);
      this.#bytesReceived += count;
      this.#lastReceived = Date.now();
    }
  }

  /** Queues a message on the urgent lane. */
  sendMessage(message: Out): void {
    this.sendUrgent(encodeMessage(message));
  }

  /**
   * Queues an encoded frame (from `encodeMessage`, shared by many connections) on the urgent
   * lane. When the lane is over its cap, the peer is not reading: the connection is closed with
   * code `slow-consumer`.
   */
  sendUrgent(frame: Uint8Array): void {
    if (this.#closed) return;
    if (this.#urgentBytes + frame.length > this.#options.maxQueueBytes) {
      this.close(
        new ReelayError(
          "slow-consumer",
          `Outbound queue of ${this.#urgentBytes} bytes is full: the peer is not reading`,
        ),
      );
      return;
    }
    if (this.#options.budget?.reserve(frame.length, this.#urgentBytes) === false) {
      this.close(
        new ReelayError(
          "slow-consumer",
          `Outbound queue of ${this.#urgentBytes} bytes is over its share of the server's ` +
            "budget: the peer is not reading",
        ),
      );
      return;
    }
    this.#urgent.push(frame);
    this.#urgentBytes += frame.length;
    this.#work.wake();
  }

  /** Queues a message on the ordered lane (see {@linkcode FramedConnection.sendStream}). */
  sendOrderedMessage(message: Out): Promise<void> {
    return this.#sendOrdered(encodeMessage(message));
  }

  /**
   * Queues stream bytes of one segment of one stream on the ordered lane, as a frame header and
   * the media itself (never copied). Resolves at once while the lane holds at most
   * {@linkcode ORDERED_BUDGET_BYTES}, else once this frame has been written: a producer that
   * awaits each frame keeps the socket busy without waiting for every write, and is still paced
   * by the network. Rejects if the connection is closed.
   */
  sendStream(streamId: number, segment: number, media: Uint8Array): Promise<void> {
    return this.#sendOrdered(encodeStreamHeader(streamId, segment, media.length), media);
  }

  #sendOrdered(...parts: Uint8Array[]): Promise<void> {
    if (this.#closed) return Promise.reject(this.#closedError());
    const size = parts.reduce((sum, part) => sum + part.length, 0);
    this.#orderedBytes += size;
    if (this.#orderedBytes <= ORDERED_BUDGET_BYTES) {
      this.#ordered.push({ parts, size, done: () => {}, failed: () => {} });
      this.#work.wake();
      return Promise.resolve();
    }
    return new Promise((done, failed) => {
      this.#ordered.push({ parts, size, done, failed });
      this.#work.wake();
    });
  }

  /**
   * Resolves when the urgent lane is empty and its last batch has been handed to the socket (or
   * the connection closed).
   */
  drained(): Promise<void> {
    if ((this.#urgentBytes === 0 && !this.#writingUrgent) || this.#closed) return Promise.resolve();
    return this.#drained.wait();
  }

  /**
   * Sends what is queued on the urgent lane (waiting at most `timeoutMs`), then closes.
   * Used to deliver a final error or goodbye before hanging up.
   */
  async flushAndClose(reason?: ReelayError, timeoutMs = 1000): Promise<void> {
    await settlesWithin(this.drained(), timeoutMs);
    this.close(reason);
    await this.#writerDone;
  }

  /** Closes the socket at once; pending ordered frames are rejected. Idempotent. */
  close(reason?: ReelayError): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#closeReason = reason;
    try {
      this.#conn.close();
    } catch {
      // Already closed by the runtime after an error: nothing left to release.
    }
    const error = this.#closedError();
    for (const frame of this.#ordered.splice(0)) frame.failed(error);
    this.#orderedBytes = 0;
    this.#urgent.length = 0;
    this.#options.budget?.release(this.#urgentBytes);
    this.#urgentBytes = 0;
    this.#drained.wake();
    this.#work.wake();
  }

  /** Resolves when the writer has stopped (after {@linkcode close}). */
  get done(): Promise<void> {
    return this.#writerDone;
  }

  #closedError(): ReelayError {
    return this.#closeReason ?? new ProtocolError("connection-closed", "Connection is closed");
  }

  #takeBatch(): { parts: Uint8Array[]; ordered?: OrderedFrame } | undefined {
    if (this.#urgent.length > 0) {
      let size = 0;
      let count = 0;
      while (
        count < this.#urgent.length &&
        (count === 0 || size + this.#urgent[count].length <= BATCH_BYTES)
      ) {
        size += this.#urgent[count].length;
        count++;
      }
      const frames = this.#urgent.splice(0, count);
      this.#urgentBytes -= size;
      this.#options.budget?.release(size);
      if (count === 1) return { parts: frames };
      const bytes = new Uint8Array(size);
      let offset = 0;
      for (const frame of frames) {
        bytes.set(frame, offset);
        offset += frame.length;
      }
      return { parts: [bytes] };
    }
    const ordered = this.#ordered.shift();
    if (ordered) this.#orderedBytes -= ordered.size;
    return ordered && { parts: ordered.parts, ordered };
  }

  async #writeLoop(): Promise<void> {
    while (!this.#closed) {
      const batch = this.#takeBatch();
      if (!batch) {
        this.#drained.wake();
        await this.#work.wait();
        continue;
      }
      this.#writingUrgent = batch.ordered === undefined;
      try {
        for (const part of batch.parts) await writeAll(this.#conn, part);
      } catch (error) {
        batch.ordered?.failed(this.#closedError());
        if (!this.#closed) {
          this.close(new ReelayError("connection-lost", `Write failed: ${String(error)}`));
        }
        return;
      } finally {
        this.#writingUrgent = false;
      }
      batch.ordered?.done();
    }
  }
}

/**
 * Whether an error only means the peer went away.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { isDisconnect } from "./framed.ts";
 * assert.ok(isDisconnect(new Deno.errors.ConnectionReset("reset")));
 * assert.ok(!isDisconnect(new TypeError("bug")));
 * ```
 */
export function isDisconnect(error: unknown): boolean {
  return error instanceof Deno.errors.ConnectionReset ||
    error instanceof Deno.errors.BrokenPipe ||
    error instanceof Deno.errors.ConnectionAborted ||
    error instanceof Deno.errors.NotConnected ||
    error instanceof Deno.errors.BadResource ||
    error instanceof Deno.errors.Interrupted;
}
