/**
 * Seeded fuzzing of everything that reads untrusted bytes: the frame decoder and both message
 * parsers. A run prints nothing unless it fails; then it prints the seed. Replay a failure with
 * `REELAY_FUZZ_SEED=<seed> deno test ... tests/fuzz_test.ts`.
 */

import assert from "node:assert/strict";
import { ReelayError } from "../shared/errors.ts";
import { concat } from "../shared/bytes.ts";
import {
  decodeFrame,
  encodeFrame,
  encodeStreamFrame,
  type Frame,
  FRAME_HEADER_BYTES,
  FrameDecoder,
  KIND_BODY,
  KIND_CONTROL,
} from "../shared/protocol/frame.ts";
import {
  type ClientMessage,
  encodeMessage,
  parseClientMessage,
  parseServerMessage,
  type ServerMessage,
} from "../shared/protocol/messages.ts";
import { CLIENT_EXAMPLES, controlFrame, mulberry32, randomBytes, SERVER_EXAMPLES } from "./_raw.ts";

const SEED = (() => {
  const given = Deno.env.get("REELAY_FUZZ_SEED");
  if (given !== undefined) {
    const seed = Number(given);
    if (!Number.isInteger(seed)) throw new Error(`REELAY_FUZZ_SEED=${given} is not an integer`);
    return seed >>> 0;
  }
  return (Date.now() ^ (Math.random() * 2 ** 32)) >>> 0;
})();

/** Runs `body` with a generator seeded from SEED + `salt`; names the seed when it fails. */
function seeded(salt: number, body: (random: () => number) => void): () => void {
  return () => {
    try {
      body(mulberry32(SEED + salt));
    } catch (error) {
      throw new Error(
        `Fuzz failure with seed ${SEED}: replay with REELAY_FUZZ_SEED=${SEED}`,
        { cause: error },
      );
    }
  };
}

function pick<T>(random: () => number, items: readonly T[]): T {
  return items[Math.floor(random() * items.length)];
}

function int(random: () => number, below: number): number {
  return Math.floor(random() * below);
}

const INTERESTING_NUMBERS = [
  0,
  -0,
  1,
  -1,
  0.5,
  255,
  256,
  2 ** 31,
  2 ** 32 - 1,
  2 ** 32,
  2 ** 40,
  2 ** 53,
  Number.MAX_SAFE_INTEGER + 2,
  1e308,
  -1e308,
  5e-324,
];

const INTERESTING_STRINGS = [
  "",
  "alice",
  "Alice",
  "../etc/passwd",
  "\u0000",
  "\ud800",
  "é",
  "hello",
  "welcome",
  "send",
  "error",
  "__proto__",
  "constructor",
  "complete",
];

/** A random JSON value, nested at most `depth` deep, sometimes large. */
function randomJson(random: () => number, depth = 3): unknown {
  switch (int(random, depth > 0 ? 8 : 6)) {
    case 0:
      return null;
    case 1:
      return random() < 0.5;
    case 2:
      return pick(random, INTERESTING_NUMBERS);
    case 3:
      return (random() - 0.5) * 10 ** int(random, 12);
    case 4:
      return pick(random, INTERESTING_STRINGS);
    case 5:
      return random() < 0.9 ? "x".repeat(int(random, 80)) : "y".repeat(int(random, 70_000));
    case 6:
      return Array.from({ length: int(random, 5) }, () => randomJson(random, depth - 1));
    default: {
      const value: Record<string, unknown> = {};
      for (let i = int(random, 5); i > 0; i--) {
        value[pick(random, ["type", "name", "keys", "ref", "to", "x"])] = randomJson(
          random,
          depth - 1,
        );
      }
      return value;
    }
  }
}

/** Every path to a field of a JSON value, for changing one field deep inside. */
function paths(value: unknown, prefix: (string | number)[] = []): (string | number)[][] {
  if (typeof value !== "object" || value === null) return [];
  const found: (string | number)[][] = [];
  for (const [key, child] of Object.entries(value)) {
    const path = [...prefix, Array.isArray(value) ? Number(key) : key];
    found.push(path, ...paths(child, path));
  }
  return found;
}

/** A structural mutation of a valid message: one field replaced, removed or added. */
function mutateJson(random: () => number, message: unknown): unknown {
  const copy = structuredClone(message) as Record<string, unknown>;
  const all = paths(copy);
  const choice = int(random, 4);
  if (choice === 0 || all.length === 0) {
    copy[pick(random, ["type", "ref", "name", "extra", "protocol", "stream"])] = randomJson(random);
    return copy;
  }
  const path = pick(random, all);
  let parent: Record<string | number, unknown> = copy;
  for (const key of path.slice(0, -1)) parent = parent[key] as Record<string | number, unknown>;
  const last = path[path.length - 1];
  if (choice === 1) delete parent[last];
  else parent[last] = randomJson(random);
  return copy;
}

/** A byte-level mutation: bit flips, truncation, insertion, duplication or a splice. */
function mutateBytes(random: () => number, bytes: Uint8Array, other: Uint8Array): Uint8Array {
  const out = new Uint8Array(bytes);
  switch (int(random, 6)) {
    case 0: {
      for (let i = 1 + int(random, 4); i > 0 && out.length > 0; i--) {
        out[int(random, out.length)] ^= 1 << int(random, 8);
      }
      return out;
    }
    case 1:
      return out.subarray(0, int(random, out.length + 1));
    case 2: {
      const at = int(random, out.length + 1);
      const insert = randomBytes(random, 1 + int(random, 16));
      return concat([out.subarray(0, at), insert, out.subarray(at)]);
    }
    case 3: {
      const at = int(random, out.length + 1);
      return concat([out.subarray(0, at), out.subarray(int(random, out.length + 1))]);
    }
    case 4: {
      const cut = int(random, out.length + 1);
      return concat([out.subarray(0, cut), other.subarray(int(random, other.length + 1))]);
    }
    default:
      if (out.length > 0) out[int(random, out.length)] = pick(random, [0, 0x22, 0x7b, 0xff, 0x5c]);
      return out;
  }
}

/** Parses `frame`; the result must be a clean refusal or a value that survives a round trip. */
function checkParse(parse: (frame: Frame) => unknown, frame: Frame): "ok" | "refused" {
  let value: unknown;
  try {
    value = parse(frame);
  } catch (error) {
    if (error instanceof ReelayError) return "refused";
    throw new Error(
      `Parser threw ${error} (not a ReelayError) for ${
        JSON.stringify(new TextDecoder().decode(frame.payload).slice(0, 300))
      }`,
      { cause: error },
    );
  }
  // What was accepted is a value the encoder can write and the parser accepts again as is.
  const again = parse(decodeFrame(encodeMessage(value as Parameters<typeof encodeMessage>[0])));
  assert.deepEqual(again, value);
  return "ok";
}

/** A random frame to parse: a mutated example, mutated JSON, random JSON or random bytes. */
function randomMessageFrame(
  random: () => number,
  examples: readonly (ClientMessage | ServerMessage)[],
): Frame {
  const base = pick(random, examples);
  const kind = int(random, 4);
  if (kind === 0) {
    // Mutated as plain JSON; an envelope goes as text (sent as its bytes).
    const plain = "envelope" in base ? { ...base, envelope: "AAAA" } : base;
    const mutated = mutateJson(random, plain);
    try {
      return decodeFrame(controlFrame(mutated));
    } catch {
      // A header too long for a body frame: send it as a plain control message instead.
      return { kind: KIND_CONTROL, payload: new TextEncoder().encode(JSON.stringify(mutated)) };
    }
  }
  if (kind === 1) {
    const frame = decodeFrame(encodeMessage(base));
    const other = decodeFrame(encodeMessage(pick(random, examples)));
    return { kind: frame.kind, payload: mutateBytes(random, frame.payload, other.payload) };
  }
  if (kind === 2) return decodeFrame(controlFrame(randomJson(random)));
  return { kind: pick(random, [KIND_CONTROL, KIND_BODY]), payload: randomBytes(random, 200) };
}

const ROUNDS = 10_000;

Deno.test(
  "fuzz: parseClientMessage refuses cleanly or returns a valid message",
  seeded(1, (random) => {
    const tally = { ok: 0, refused: 0 };
    for (let round = 0; round < ROUNDS; round++) {
      tally[checkParse(parseClientMessage, randomMessageFrame(random, CLIENT_EXAMPLES))]++;
    }
    // The mutations must have exercised both outcomes, or the fuzzer tests nothing.
    assert.ok(tally.ok > ROUNDS / 20 && tally.refused > ROUNDS / 4, JSON.stringify(tally));
  }),
);

Deno.test(
  "fuzz: parseServerMessage refuses cleanly or returns a valid message",
  seeded(2, (random) => {
    const tally = { ok: 0, refused: 0 };
    for (let round = 0; round < ROUNDS; round++) {
      tally[checkParse(parseServerMessage, randomMessageFrame(random, SERVER_EXAMPLES))]++;
    }
    assert.ok(tally.ok > ROUNDS / 20 && tally.refused > ROUNDS / 4, JSON.stringify(tally));
  }),
);

/** A stream of frames, some valid, some mutated, some plain garbage. */
function randomWire(random: () => number, cap: number): Uint8Array {
  const parts: Uint8Array[] = [];
  for (let i = 1 + int(random, 8); i > 0; i--) {
    const roll = int(random, 6);
    if (roll === 0) {
      parts.push(encodeFrame(KIND_CONTROL, encodeMessage(pick(random, CLIENT_EXAMPLES))));
    } else if (roll === 1) {
      parts.push(
        encodeStreamFrame(int(random, 9), int(random, 3), randomBytes(random, int(random, 2000))),
      );
    } else if (roll === 2) {
      parts.push(encodeFrame(int(random, 256), randomBytes(random, int(random, cap))));
    } else if (roll === 3) {
      // A header claiming anything at all, from 0 to 4 GiB.
      const header = new Uint8Array(FRAME_HEADER_BYTES);
      new DataView(header.buffer).setUint32(
        0,
        pick(random, [0, 1, cap, cap + 1, 2 ** 32 - 1, int(random, 2 ** 32)]),
      );
      parts.push(header);
    } else if (roll === 4) parts.push(randomBytes(random, int(random, 64)));
    else {
      const frame = encodeFrame(KIND_CONTROL, encodeMessage(pick(random, SERVER_EXAMPLES)));
      parts.push(mutateBytes(random, frame, frame));
    }
  }
  return concat(parts);
}

Deno.test(
  "fuzz: FrameDecoder yields frames or a clean ProtocolError, with bounded memory",
  seeded(3, (random) => {
    const cap = 4096;
    const tally = { frames: 0, refused: 0, waiting: 0 };
    for (let round = 0; round < ROUNDS; round++) {
      const wire = randomWire(random, cap + 64);
      const decoder = new FrameDecoder(cap, 64);
      let offset = 0;
      let refused = false;
      // Fed as a socket feeds it: reads of random sizes into the decoder's own buffer.
      while (offset < wire.length && !refused) {
        const readSize = 1 + int(random, 3000);
        const region = decoder.writable(readSize);
        assert.ok(region.length >= readSize);
        const chunk = wire.subarray(offset, offset + readSize);
        region.set(chunk);
        decoder.commit(chunk.length);
        offset += chunk.length;
        assert.ok(
          decoder.buffered <= cap + FRAME_HEADER_BYTES + readSize,
          `buffered ${decoder.buffered} with cap ${cap} and read size ${readSize}`,
        );
        for (let steps = 0;; steps++) {
          assert.ok(steps <= wire.length, "next() keeps returning frames without consuming bytes");
          let frame;
          try {
            frame = decoder.next();
          } catch (error) {
            if (!(error instanceof ReelayError)) throw error;
            assert.match(error.code, /^(frame-too-large|malformed-frame)$/);
            refused = true;
            break;
          }
          if (!frame) break;
          assert.ok(frame.payload.length < cap);
          tally.frames++;
        }
      }
      if (refused) tally.refused++;
      else if (decoder.buffered > 0) tally.waiting++;
    }
    assert.ok(tally.frames > ROUNDS && tally.refused > ROUNDS / 10, JSON.stringify(tally));
  }),
);

Deno.test(
  "fuzz: the same wire split differently decodes to the same frames",
  seeded(4, (random) => {
    for (let round = 0; round < ROUNDS / 4; round++) {
      const frames = Array.from(
        { length: 1 + int(random, 6) },
        () => encodeFrame(1 + int(random, 2), randomBytes(random, int(random, 600))),
      );
      const wire = concat(frames);
      const decoder = new FrameDecoder(1024, 16);
      const got: Uint8Array[] = [];
      let offset = 0;
      while (offset < wire.length) {
        const size = 1 + int(random, 200);
        decoder.push(wire.subarray(offset, offset + size));
        offset += size;
        for (let frame = decoder.next(); frame; frame = decoder.next()) {
          got.push(encodeFrame(frame.kind, frame.payload));
        }
      }
      assert.deepEqual(got, frames);
      assert.equal(decoder.buffered, 0);
    }
  }),
);
