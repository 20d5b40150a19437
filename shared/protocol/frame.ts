/**
 * Length-prefixed frames: the unit of everything reelay sends over TCP. The one place a frame is
 * encoded and decoded; frame kinds are private to `shared/protocol/`.
 *
 * Layout: a 4-byte big-endian length `L` of what follows, then `L` bytes: one kind byte and the
 * payload. The length is checked against the cap before any buffer is allocated for the body.
 *
 * @module
 */

import { ProtocolError } from "../errors.ts";

/** A control message: the payload is one UTF-8 JSON object. */
export const KIND_CONTROL = 1;
/** Stream data: a 4-byte stream id, a 1-byte segment index, then media bytes. */
export const KIND_STREAM = 2;
/**
 * A control message with a binary body (a sealed chat envelope): a 2-byte length `H`, `H` bytes
 * of UTF-8 JSON header, then the body bytes.
 */
export const KIND_BODY = 3;

/** Bytes before the payload: length (4) and kind (1). */
export const FRAME_HEADER_BYTES = 5;
/** Bytes of a stream frame's own header: stream id (4) and segment index (1). */
export const STREAM_HEADER_BYTES = 5;
/** The default cap on a frame's length field (1 MiB). */
export const DEFAULT_MAX_FRAME_BYTES = 1024 * 1024;

/** A decoded frame: its kind and payload (a view into the decoder's buffer until copied). */
export interface Frame {
  kind: number;
  payload: Uint8Array;
}

/** Bytes of a body frame's header length field. */
const BODY_HEADER_LENGTH_BYTES = 2;
/** Longest JSON header of a body frame. */
export const MAX_BODY_HEADER_BYTES = 0xffff;

/**
 * Encodes one frame.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeFrame, KIND_CONTROL } from "./frame.ts";
 * const bytes = encodeFrame(KIND_CONTROL, new TextEncoder().encode('{"type":"ping"}'));
 * assert.deepEqual([...bytes.subarray(0, 5)], [0, 0, 0, 16, 1]);
 * ```
 */
export function encodeFrame(kind: number, payload: Uint8Array): Uint8Array<ArrayBuffer> {
  const frame = new Uint8Array(FRAME_HEADER_BYTES + payload.length);
  const view = new DataView(frame.buffer);
  view.setUint32(0, payload.length + 1);
  frame[4] = kind;
  frame.set(payload, FRAME_HEADER_BYTES);
  return frame;
}

/**
 * Encodes a frame of a JSON header and a binary body (kind {@linkcode KIND_BODY}).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeBodyPayload, decodeFrame, encodeBodyFrame } from "./frame.ts";
 * const header = new TextEncoder().encode('{"type":"send","to":"bob"}');
 * const frame = decodeFrame(encodeBodyFrame(header, new Uint8Array([1, 2, 3])));
 * assert.deepEqual([...decodeBodyPayload(frame.payload).body], [1, 2, 3]);
 * ```
 */
export function encodeBodyFrame(header: Uint8Array, body: Uint8Array): Uint8Array<ArrayBuffer> {
  if (header.length > MAX_BODY_HEADER_BYTES) {
    throw new RangeError(`Body frame header of ${header.length} bytes is too long`);
  }
  const payloadLength = BODY_HEADER_LENGTH_BYTES + header.length + body.length;
  const frame = new Uint8Array(FRAME_HEADER_BYTES + payloadLength);
  const view = new DataView(frame.buffer);
  view.setUint32(0, payloadLength + 1);
  frame[4] = KIND_BODY;
  view.setUint16(FRAME_HEADER_BYTES, header.length);
  frame.set(header, FRAME_HEADER_BYTES + BODY_HEADER_LENGTH_BYTES);
  frame.set(body, FRAME_HEADER_BYTES + BODY_HEADER_LENGTH_BYTES + header.length);
  return frame;
}

/**
 * Splits a body frame's payload into its JSON header and a copy of its body. Throws a
 * {@linkcode ProtocolError} when the header length runs past the payload.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeBodyPayload } from "./frame.ts";
 * const { header, body } = decodeBodyPayload(new Uint8Array([0, 2, 123, 125, 9]));
 * assert.equal(new TextDecoder().decode(header), "{}");
 * assert.deepEqual([...body], [9]);
 * ```
 */
export function decodeBodyPayload(payload: Uint8Array): { header: Uint8Array; body: Uint8Array } {
  if (payload.length < BODY_HEADER_LENGTH_BYTES) {
    throw new ProtocolError(
      "malformed-frame",
      `Body frame of ${payload.length} bytes is too short`,
    );
  }
  const length = new DataView(payload.buffer, payload.byteOffset, 2).getUint16(0);
  const end = BODY_HEADER_LENGTH_BYTES + length;
  if (end > payload.length) {
    throw new ProtocolError(
      "malformed-frame",
      `Body frame header of ${length} bytes runs past the frame's ${payload.length} bytes`,
    );
  }
  return { header: payload.subarray(BODY_HEADER_LENGTH_BYTES, end), body: payload.slice(end) };
}

/**
 * Encodes a stream-data frame carrying media bytes of one segment of one stream.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeFrame, decodeStreamPayload, encodeStreamFrame } from "./frame.ts";
 * const frame = decodeFrame(encodeStreamFrame(7, 0, new Uint8Array(188)));
 * assert.equal(decodeStreamPayload(frame.payload).streamId, 7);
 * ```
 */
export function encodeStreamFrame(
  streamId: number,
  segment: number,
  media: Uint8Array,
): Uint8Array<ArrayBuffer> {
  const header = encodeStreamHeader(streamId, segment, media.length);
  const frame = new Uint8Array(header.length + media.length);
  frame.set(header);
  frame.set(media, header.length);
  return frame;
}

/**
 * The header of a stream frame carrying `mediaLength` bytes, to send before the media bytes
 * themselves (so a large chunk is never copied).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeStreamHeader } from "./frame.ts";
 * const header = encodeStreamHeader(7, 0, 65536); // then write the 65536 media bytes
 * assert.equal(header.length, 10);
 * ```
 */
export function encodeStreamHeader(
  streamId: number,
  segment: number,
  mediaLength: number,
): Uint8Array<ArrayBuffer> {
  const header = new Uint8Array(FRAME_HEADER_BYTES + STREAM_HEADER_BYTES);
  const view = new DataView(header.buffer);
  view.setUint32(0, 1 + STREAM_HEADER_BYTES + mediaLength);
  header[4] = KIND_STREAM;
  view.setUint32(5, streamId);
  header[9] = segment;
  return header;
}

/** A stream frame's parts. */
export interface StreamChunk {
  streamId: number;
  segment: number;
  media: Uint8Array;
}

/**
 * Splits a stream frame's payload into stream id, segment index and media bytes.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeStreamPayload } from "./frame.ts";
 * const { streamId, segment } = decodeStreamPayload(new Uint8Array([0, 0, 0, 7, 1]));
 * assert.deepEqual([streamId, segment], [7, 1]);
 * ```
 */
export function decodeStreamPayload(payload: Uint8Array): StreamChunk {
  if (payload.length < STREAM_HEADER_BYTES) {
    throw new ProtocolError(
      "malformed-frame",
      `Stream frame of ${payload.length} bytes is too short`,
    );
  }
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  return {
    streamId: view.getUint32(0),
    segment: payload[4],
    media: payload.subarray(STREAM_HEADER_BYTES),
  };
}

/**
 * Incremental frame decoder over one growable buffer: feed it bytes as they arrive, take whole
 * frames out. It never allocates more than the cap allows, whatever the peer claims.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeFrame, FrameDecoder, KIND_CONTROL } from "./frame.ts";
 * const decoder = new FrameDecoder(1024);
 * decoder.push(encodeFrame(KIND_CONTROL, new Uint8Array([123, 125])));
 * assert.deepEqual(decoder.next(), { kind: 1, payload: new Uint8Array([123, 125]) });
 * assert.equal(decoder.next(), undefined);
 * ```
 */
export class FrameDecoder {
  #buffer: Uint8Array<ArrayBuffer>;
  #start = 0;
  #end = 0;
  readonly #maxFrameBytes: number;
  readonly #initialBytes: number;

  /** Creates a decoder that rejects frames longer than `maxFrameBytes`. */
  constructor(maxFrameBytes: number = DEFAULT_MAX_FRAME_BYTES, initialBytes = 16 * 1024) {
    this.#maxFrameBytes = maxFrameBytes;
    this.#initialBytes = initialBytes;
    this.#buffer = new Uint8Array(initialBytes);
  }

  /** Bytes received but not yet returned as frames. */
  get buffered(): number {
    return this.#end - this.#start;
  }

  /** A writable region of at least `min` free bytes, for reading from a socket into. */
  writable(min = 16 * 1024): Uint8Array<ArrayBuffer> {
    this.#reserve(min);
    return this.#buffer.subarray(this.#end);
  }

  /** Marks `count` bytes written into the region from {@linkcode writable} as received. */
  commit(count: number): void {
    this.#end += count;
  }

  /** Copies bytes in (for callers that do not read into {@linkcode writable}). */
  push(bytes: Uint8Array): void {
    this.#reserve(bytes.length);
    this.#buffer.set(bytes, this.#end);
    this.#end += bytes.length;
  }

  /**
   * Returns the next whole frame, or `undefined` if more bytes are needed. The payload is a view
   * that stays valid only until the next call to {@linkcode writable} or {@linkcode push}.
   * Throws a {@linkcode ProtocolError} for an oversize or empty frame.
   */
  next(): Frame | undefined {
    if (this.buffered < 4) return undefined;
    const view = new DataView(this.#buffer.buffer, this.#start, 4);
    const length = view.getUint32(0);
    if (length === 0) {
      throw new ProtocolError("malformed-frame", "Frame has a length of 0");
    }
    if (length > this.#maxFrameBytes) {
      throw new ProtocolError(
        "frame-too-large",
        `Frame of ${length} bytes exceeds the cap of ${this.#maxFrameBytes} bytes`,
      );
    }
    if (this.buffered < 4 + length) return undefined;
    const body = this.#start + 4;
    this.#start = body + length;
    return { kind: this.#buffer[body], payload: this.#buffer.subarray(body + 1, body + length) };
  }

  #reserve(min: number): void {
    const pending = this.buffered;
    if (pending === 0) {
      this.#start = this.#end = 0;
      // An idle connection should not keep the memory of the largest frame it ever received.
      if (this.#buffer.length > this.#initialBytes * 4 && min <= this.#initialBytes) {
        this.#buffer = new Uint8Array(this.#initialBytes);
      }
    }
    if (this.#buffer.length - this.#end >= min) return;
    const wanted = Math.max(pending + min, 4096);
    if (wanted <= this.#buffer.length && this.#start > 0) {
      this.#buffer.copyWithin(0, this.#start, this.#end);
    } else {
      // Grow geometrically, but never past what one whole frame plus one read can need.
      const ceiling = FRAME_HEADER_BYTES + this.#maxFrameBytes + min;
      const grown = new Uint8Array(
        Math.max(wanted, Math.min(this.#buffer.length * 2, wanted * 2, ceiling)),
      );
      grown.set(this.#buffer.subarray(this.#start, this.#end));
      this.#buffer = grown;
    }
    this.#start = 0;
    this.#end = pending;
  }
}

/**
 * Decodes bytes that hold exactly one whole frame (for tests and tools; connections use
 * {@linkcode FrameDecoder}). Throws a {@linkcode ProtocolError} otherwise.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeFrame, encodeFrame, KIND_CONTROL } from "./frame.ts";
 * assert.equal(decodeFrame(encodeFrame(KIND_CONTROL, new Uint8Array([1]))).kind, KIND_CONTROL);
 * ```
 */
export function decodeFrame(bytes: Uint8Array, maxFrameBytes = DEFAULT_MAX_FRAME_BYTES): Frame {
  const decoder = new FrameDecoder(maxFrameBytes);
  decoder.push(bytes);
  const frame = decoder.next();
  if (!frame || decoder.buffered !== 0) {
    throw new ProtocolError("malformed-frame", `${bytes.length} bytes are not exactly one frame`);
  }
  return { kind: frame.kind, payload: frame.payload.slice() };
}
