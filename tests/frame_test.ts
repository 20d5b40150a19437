import assert from "node:assert/strict";
import { ProtocolError } from "../shared/errors.ts";
import {
  decodeStreamPayload,
  encodeFrame,
  encodeStreamFrame,
  FRAME_HEADER_BYTES,
  FrameDecoder,
  KIND_CONTROL,
  KIND_STREAM,
} from "../shared/protocol/frame.ts";

function bytes(...values: number[]): Uint8Array {
  return new Uint8Array(values);
}

function payloadOf(length: number, seed = 1): Uint8Array {
  const payload = new Uint8Array(length);
  for (let i = 0; i < length; i++) payload[i] = (i * 31 + seed) & 0xff;
  return payload;
}

function header(length: number): Uint8Array {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, length);
  return out;
}

function assertProtocolError(action: () => unknown, code: string): void {
  assert.throws(action, (error: unknown) => {
    assert.ok(error instanceof ProtocolError, `expected a ProtocolError, got ${error}`);
    assert.equal(error.code, code);
    return true;
  });
}

Deno.test("encodeFrame writes length (kind + payload), kind, payload", () => {
  const frame = encodeFrame(KIND_CONTROL, bytes(7, 8, 9));
  assert.deepEqual([...frame], [0, 0, 0, 4, KIND_CONTROL, 7, 8, 9]);
});

Deno.test("a frame round-trips, and so does an empty payload", () => {
  const decoder = new FrameDecoder(1024);
  decoder.push(encodeFrame(KIND_CONTROL, bytes(1, 2, 3)));
  decoder.push(encodeFrame(KIND_STREAM, new Uint8Array(0)));
  const first = decoder.next();
  assert.equal(first?.kind, KIND_CONTROL);
  assert.deepEqual([...first!.payload], [1, 2, 3]);
  const second = decoder.next();
  assert.equal(second?.kind, KIND_STREAM);
  assert.equal(second?.payload.length, 0);
  assert.equal(decoder.next(), undefined);
  assert.equal(decoder.buffered, 0);
});

Deno.test("a frame split at every possible byte boundary decodes the same", () => {
  const frame = encodeFrame(KIND_CONTROL, payloadOf(300));
  for (let cut = 0; cut <= frame.length; cut++) {
    const decoder = new FrameDecoder(1024);
    decoder.push(frame.subarray(0, cut));
    if (cut < frame.length) assert.equal(decoder.next(), undefined, `cut at ${cut}`);
    decoder.push(frame.subarray(cut));
    const got = decoder.next();
    assert.deepEqual(got?.payload, payloadOf(300), `cut at ${cut}`);
    assert.equal(decoder.next(), undefined);
  }
});

Deno.test("frames fed one byte at a time through writable/commit decode in order", () => {
  const frames = [payloadOf(0), payloadOf(5, 2), payloadOf(5000, 3), payloadOf(1, 4)];
  const wire = frames.map((payload) => encodeFrame(KIND_CONTROL, payload));
  const all = new Uint8Array(wire.reduce((sum, frame) => sum + frame.length, 0));
  let offset = 0;
  for (const frame of wire) {
    all.set(frame, offset);
    offset += frame.length;
  }
  const decoder = new FrameDecoder(8192, 16);
  const got: Uint8Array[] = [];
  for (const byte of all) {
    const region = decoder.writable(1);
    region[0] = byte;
    decoder.commit(1);
    for (let frame = decoder.next(); frame; frame = decoder.next()) {
      got.push(frame.payload.slice());
    }
  }
  assert.deepEqual(got, frames);
});

Deno.test("a frame of exactly the cap is accepted; cap + 1 is refused", () => {
  const cap = 4096;
  const decoder = new FrameDecoder(cap);
  decoder.push(encodeFrame(KIND_CONTROL, payloadOf(cap - 1)));
  assert.equal(decoder.next()?.payload.length, cap - 1);
  const over = new FrameDecoder(cap);
  over.push(header(cap + 1));
  assertProtocolError(() => over.next(), "frame-too-large");
});

Deno.test("an oversize length is refused from the 4 header bytes alone, before allocating", () => {
  for (const claimed of [2 ** 32 - 1, 2 ** 31, 1024 * 1024 + 1]) {
    const decoder = new FrameDecoder(1024 * 1024);
    decoder.push(header(claimed));
    assert.equal(decoder.buffered, 4);
    assertProtocolError(() => decoder.next(), "frame-too-large");
    // Still refused on a second look, and nothing was reserved for the claimed body.
    assertProtocolError(() => decoder.next(), "frame-too-large");
    assert.ok(decoder.writable(1).length < 64 * 1024);
  }
});

Deno.test("a 4 GiB claim arriving with body bytes never grows the buffer past the cap", () => {
  const decoder = new FrameDecoder(64 * 1024);
  const region = decoder.writable(4);
  region.set(header(2 ** 32 - 1));
  decoder.commit(4);
  assertProtocolError(() => decoder.next(), "frame-too-large");
});

Deno.test("a zero length is a malformed frame", () => {
  const decoder = new FrameDecoder(1024);
  decoder.push(header(0));
  assertProtocolError(() => decoder.next(), "malformed-frame");
});

Deno.test("fewer than 4 header bytes wait for more", () => {
  const decoder = new FrameDecoder(1024);
  decoder.push(bytes(0, 0, 0));
  assert.equal(decoder.next(), undefined);
  assert.equal(decoder.buffered, 3);
});

Deno.test("a large frame grows the buffer only to what it needs, and an idle decoder shrinks", () => {
  const cap = 256 * 1024;
  const decoder = new FrameDecoder(cap, 1024);
  const frame = encodeFrame(KIND_CONTROL, payloadOf(cap - 1));
  for (let offset = 0; offset < frame.length; offset += 16 * 1024) {
    const chunk = frame.subarray(offset, offset + 16 * 1024);
    decoder.writable(16 * 1024).set(chunk);
    decoder.commit(chunk.length);
    assert.ok(decoder.buffered <= cap + FRAME_HEADER_BYTES);
    // The region offered for the next read is never more than one frame plus one read.
    assert.ok(decoder.writable(16 * 1024).length <= cap + FRAME_HEADER_BYTES + 16 * 1024);
  }
  assert.equal(decoder.next()?.payload.length, cap - 1);
  assert.equal(decoder.buffered, 0);
  assert.ok(decoder.writable(1024).length <= 4 * 1024, "the idle decoder gave its memory back");
});

Deno.test("stream frames carry stream id, segment and media", () => {
  const frame = encodeStreamFrame(0xdeadbeef, 2, bytes(9, 9));
  const decoder = new FrameDecoder(1024);
  decoder.push(frame);
  const got = decoder.next()!;
  assert.equal(got.kind, KIND_STREAM);
  const chunk = decodeStreamPayload(got.payload);
  assert.equal(chunk.streamId, 0xdeadbeef);
  assert.equal(chunk.segment, 2);
  assert.deepEqual([...chunk.media], [9, 9]);
});

Deno.test("a stream payload shorter than its header is malformed", () => {
  for (let length = 0; length < 5; length++) {
    assertProtocolError(() => decodeStreamPayload(new Uint8Array(length)), "malformed-frame");
  }
  assert.equal(decodeStreamPayload(new Uint8Array(5)).media.length, 0);
});
