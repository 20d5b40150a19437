import assert from "node:assert/strict";
import { ProtocolError } from "../shared/errors.ts";
import { MAX_NAME_LENGTH } from "../shared/names.ts";
import { MAX_KEY_TEXT } from "../shared/crypto/mod.ts";
import { MAX_SEALED_BYTES as MAX_ENVELOPE_BYTES } from "../shared/protocol/mod.ts";
import { decodeFrame, type Frame, KIND_CONTROL } from "../shared/protocol/frame.ts";
import {
  encodeMessage,
  parseClientMessage,
  parseServerMessage,
  type ServerMessage,
} from "../shared/protocol/messages.ts";
import {
  announcement,
  CLIENT_EXAMPLES,
  controlFrame,
  listing,
  segment,
  SERVER_EXAMPLES,
} from "./_raw.ts";

const encoder = new TextEncoder();

/** A control frame carrying `text` as is. */
function raw(text: string | Uint8Array): Frame {
  return { kind: KIND_CONTROL, payload: typeof text === "string" ? encoder.encode(text) : text };
}

/** The frame a peer sending `value` as is would send (a body frame when it has an envelope). */
function json(value: unknown): Frame {
  return decodeFrame(controlFrame(value), 1 << 20);
}

function rejects(parse: (frame: Frame) => unknown, frame: Frame, code: string) {
  assert.throws(() => parse(frame), (error: unknown) => {
    assert.ok(error instanceof ProtocolError, `expected a ProtocolError, got ${error}`);
    assert.equal(error.code, code, `for ${new TextDecoder().decode(frame.payload).slice(0, 200)}`);
    return true;
  });
}

Deno.test("every client message type round-trips through encode and parse", () => {
  for (const message of CLIENT_EXAMPLES) {
    assert.deepEqual(parseClientMessage(decodeFrame(encodeMessage(message))), message);
  }
});

Deno.test("every server message type round-trips through encode and parse", () => {
  for (const message of SERVER_EXAMPLES) {
    assert.deepEqual(parseServerMessage(decodeFrame(encodeMessage(message))), message);
  }
});

Deno.test("unknown fields are dropped, not passed on", () => {
  const parsed = parseClientMessage(json({ type: "ping", extra: "x".repeat(100) }));
  assert.deepEqual(parsed, { type: "ping" });
  const send = parseClientMessage(json({ type: "send", to: "bob", envelope: "A", admin: true }));
  assert.deepEqual(send, { type: "send", to: "bob", envelope: new TextEncoder().encode("A") });
});

Deno.test("payloads that are not a UTF-8 JSON object are malformed", () => {
  const cases: Frame[] = [
    raw(new Uint8Array(0)),
    raw("not json"),
    raw('{"type":"ping"'),
    raw(new Uint8Array([0xff, 0xfe, 0x7b, 0x7d])),
    raw(new Uint8Array([0x7b, 0x22, 0xc3, 0x28, 0x22, 0x3a, 0x31, 0x7d])), // {"\xc3(":1}
    json(null),
    json([{ type: "ping" }]),
    json("ping"),
    json(42),
    raw("[".repeat(100_000) + "]".repeat(100_000)),
  ];
  for (const payload of cases) {
    rejects(parseClientMessage, payload, "malformed-message");
    rejects(parseServerMessage, payload, "malformed-message");
  }
});

Deno.test("a missing, non-string, overlong or unknown type is refused", () => {
  rejects(parseClientMessage, json({}), "malformed-message");
  rejects(parseClientMessage, json({ type: 1 }), "malformed-message");
  rejects(parseClientMessage, json({ type: "x".repeat(33) }), "malformed-message");
  rejects(parseClientMessage, json({ type: "welcome" }), "unknown-message");
  rejects(parseClientMessage, json({ type: "__proto__" }), "unknown-message");
  rejects(parseClientMessage, json({ type: "toString" }), "unknown-message");
  rejects(parseServerMessage, json({ type: "hello" }), "unknown-message");
  rejects(parseServerMessage, json({ type: "constructor" }), "unknown-message");
});

Deno.test("client messages with bad fields are refused, naming the field", () => {
  const hello = { type: "hello", protocol: 1, ...announcement };
  const bad: unknown[] = [
    { ...hello, protocol: "1" },
    { ...hello, protocol: 1.5 },
    { ...hello, protocol: -1 },
    { ...hello, protocol: 1001 },
    { ...hello, name: 7 },
    { ...hello, name: "x".repeat(MAX_NAME_LENGTH + 1) },
    { ...hello, keys: "QUJD" },
    { ...hello, keys: null },
    { ...hello, keys: [] },
    { ...hello, keys: { encryptionKey: "A" } },
    { ...hello, keys: { encryptionKey: "A", signingKey: "x".repeat(MAX_KEY_TEXT + 1) } },
    { ...hello, epoch: undefined },
    { ...hello, epoch: "x".repeat(65) },
    { ...hello, signature: {} },
    { type: "send", to: "bob" },
    { type: "send", envelope: "A" },
    { type: "send", to: "bob", envelope: "x".repeat(MAX_ENVELOPE_BYTES + 1) },
    { type: "ping", envelope: "A" },
    { type: "send", to: "bob", envelope: "A", ref: -1 },
    { type: "send", to: "bob", envelope: "A", ref: 2 ** 32 + 1 },
    { type: "send", to: "bob", envelope: "A", ref: "1" },
    { type: "send", to: "bob", envelope: "A", ref: null },
    { type: "videos", ref: 0.5 },
    { type: "play" },
    { type: "play", video: ["a"] },
    { type: "play", video: "x".repeat(1025) },
    { type: "stop", ref: Number.MAX_SAFE_INTEGER + 2 },
    { type: "credit", stream: 1 },
    { type: "credit", stream: 1, bytes: 0 },
    { type: "credit", stream: 1, bytes: 2 ** 40 + 1 },
    { type: "credit", stream: -1, bytes: 1 },
    { type: "credit", stream: 2 ** 32, bytes: 1 },
    { type: "credit", stream: 1, bytes: 1e400 },
  ];
  for (const value of bad) {
    rejects(parseClientMessage, json(value), "malformed-message");
  }
  assert.throws(
    () => parseClientMessage(json({ type: "play", video: 3 })),
    /Field "video" must be a string/,
  );
  // NaN and Infinity are not JSON: they arrive as null and are refused the same way.
  rejects(
    parseClientMessage,
    raw('{"type":"credit","stream":1,"bytes":NaN}'),
    "malformed-message",
  );
});

Deno.test("server messages with bad fields are refused", () => {
  const welcome = SERVER_EXAMPLES.find((message) => message.type === "welcome") as Extract<
    ServerMessage,
    { type: "welcome" }
  >;
  const bad: unknown[] = [
    { type: "directory", peers: "alice" },
    { type: "directory", peers: [{ ...announcement, keys: 1 }] },
    { type: "directory", peers: new Array(257).fill(announcement) },
    { ...welcome, limits: undefined },
    { ...welcome, limits: { ...welcome.limits, maxFrameBytes: 0 } },
    { ...welcome, limits: { ...welcome.limits, chatRate: -1 } },
    { ...welcome, limits: { ...welcome.limits, windowBytes: "big" } },
    { type: "joined" },
    { type: "joined", peer: { ...announcement, signature: 5 } },
    { type: "left" },
    { type: "deliver", from: "bob" },
    { type: "relayed", ref: -3, to: "bob" },
    { type: "videos", videos: [{ ...listing, hasAudio: "yes" }] },
    { type: "videos", videos: [{ ...listing, segments: new Array(17).fill(segment) }] },
    { type: "videos", videos: [{ ...listing, segments: [{ ...segment, index: 256 }] }] },
    { type: "videos", videos: [{ ...listing, duration: -1 }] },
    { type: "stream-start", stream: 1 },
    { type: "stream-start", stream: 1, video: { ...listing, width: 1e9 } },
    { type: "stream-end", stream: 1, bytes: 1, reason: "exploded" },
    { type: "stream-end", stream: 1, bytes: 1, reason: "complete", message: 7 },
    { type: "error", code: "x" },
    { type: "error", code: "x".repeat(65), message: "m" },
    { type: "shutdown" },
  ];
  for (const value of bad) {
    rejects(parseServerMessage, json(value), "malformed-message");
  }
});

Deno.test("envelopes travel as raw bytes, up to the largest sealed envelope", () => {
  const envelope = new Uint8Array(MAX_ENVELOPE_BYTES).fill(0xff);
  const parsed = parseClientMessage(json({ type: "send", to: "bob", envelope }));
  assert.deepEqual(parsed, { type: "send", to: "bob", envelope });
  const bytes = encodeMessage({ type: "deliver", from: "bob", envelope });
  assert.ok(bytes.length < MAX_ENVELOPE_BYTES + 64, "no base64: the frame is the envelope's size");
  rejects(parseClientMessage, json({ type: "send", to: "bob" }), "malformed-message");
  rejects(parseServerMessage, json({ type: "left", name: "bob", envelope }), "malformed-message");
});
