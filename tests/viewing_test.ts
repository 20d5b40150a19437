/**
 * The client's view of a stream: a resolution change is reported when a real-time player shows
 * it, not when its bytes arrive; a stream the server calls complete but whose media falls short
 * is an error; positions typed by a person.
 */
import assert from "node:assert/strict";
import type { ClientEvent } from "../client/events.ts";
import type { StreamSink } from "../client/player.ts";
import { parsePosition, Viewing } from "../client/viewing.ts";
import type { ClientConnection, VideoListing } from "../shared/protocol/mod.ts";
import { StoppedClock } from "./_clock.ts";
import { within } from "./_deadline.ts";
import { waitUntil } from "./_raw.ts";

const VIDEO: VideoListing = {
  name: "cats.mp4",
  duration: 3,
  width: 640,
  height: 360,
  fps: 30,
  hasAudio: false,
  segments: [0, 1, 2].map((index) => ({
    index,
    start: index,
    end: index + 1,
    width: 320 * (index + 1),
    height: 180 * (index + 1),
    requestedHeight: 180 * (index + 1),
    capped: false,
  })),
};

/** A connection that only records what the viewer sends. */
function connection(): ClientConnection {
  return { closed: false, sendMessage: () => {} } as unknown as ClientConnection;
}

function sink(realtime: boolean): StreamSink {
  return {
    write: () => Promise.resolve(),
    finish: () => Promise.resolve(),
    abort: () => Promise.resolve(),
    gone: new Promise<void>(() => {}),
    realtime,
  };
}

/** An MPEG-TS packet starting a video PES with presentation time `seconds`. */
function pesAt(seconds: number): Uint8Array {
  const packet = new Uint8Array(188);
  const pts = Math.round(seconds * 90_000);
  packet.set([0x47, 0x41, 0x00, 0x10, 0, 0, 1, 0xe0, 0, 0, 0x80, 0x80, 5]);
  packet.set([
    0x21 | ((pts / 2 ** 29) & 0x0e),
    (pts >> 22) & 0xff,
    ((pts >> 14) & 0xfe) | 1,
    (pts >> 7) & 0xff,
    ((pts << 1) & 0xfe) | 1,
  ], 13);
  return packet;
}

function play(realtime: boolean) {
  const events: ClientEvent[] = [];
  let idle = Promise.withResolvers<void>();
  const viewing = new Viewing(connection(), (event) => events.push(event), () => idle.resolve());
  viewing.expect(1, sink(realtime));
  viewing.started({ type: "stream-start", ref: 1, stream: 7, video: VIDEO });
  const send = (segment: number, seconds: number) =>
    viewing.data({ streamId: 7, segment, media: pesAt(10 + seconds) });
  const end = async (bytes: number) => {
    idle = Promise.withResolvers<void>();
    viewing.ended({ type: "stream-end", stream: 7, bytes, reason: "complete" });
    await within(idle.promise, 10_000, "the stream ends");
  };
  const showing = () => events.filter((e) => e.event === "showing").map((e) => e.index);
  return { events, send, end, showing };
}

Deno.test("viewing: a real-time player's resolution change is told when it reaches the part", async () => {
  using clock = new StoppedClock();
  const { send, end, showing, events } = play(true);
  send(0, 0);
  send(1, 1);
  send(2, 2);
  send(2, 2.99);
  // Every byte is here, but a player started just now shows part 1 in a second, part 2 in two:
  // while the clock stands still, only part 0 is on screen.
  await waitUntil(() => showing().length > 0, "part 0 on screen", 60_000);
  assert.deepEqual(showing(), [0], "parts 1 and 2 arrived but are not on screen yet");
  assert.deepEqual(events.filter((e) => e.event === "segment").map((e) => e.index), [0, 1, 2]);
  clock.advance(1000);
  await waitUntil(() => showing().length > 1, "part 1 on screen", 60_000);
  assert.deepEqual(showing(), [0, 1], "part 2 is a second further on");
  clock.advance(1000);
  await waitUntil(() => showing().length > 2, "every part on screen", 60_000);
  assert.deepEqual(showing(), [0, 1, 2]);
  await end(4 * 188);
  assert.equal(events.at(-1)?.event, "stream-ended");
});

Deno.test("viewing: without a player, a part is told as it arrives", () => {
  const { send, showing, events } = play(false);
  send(0, 0);
  send(1, 1);
  assert.deepEqual(showing(), [0, 1]);
  const progress = events.filter((e) => e.event === "progress");
  assert.ok(progress.length > 0 && progress.every((e) => e.shown === e.position));
});

Deno.test("viewing: a real-time player's position on screen is not where the bytes are", async () => {
  const { send, end, events } = play(true);
  // Sent before the player took any bytes (the pump writes later): nothing is on screen yet.
  send(0, 0);
  send(1, 1.5);
  send(2, 2.5);
  const last = events.filter((e) => e.event === "progress").at(-1);
  assert.ok(last?.event === "progress");
  assert.equal(last.position, 2.5);
  assert.equal(last.shown, 0);
  assert.equal(last.index, 2, "progress is about what arrives");
  await end(3 * 188);
});

Deno.test("viewing: a real-time player's position on screen moves on while nothing arrives", async () => {
  const { send, end, events } = play(true);
  send(0, 0);
  send(1, 1.5);
  send(2, 2.99);
  const arrived = events.length;
  const last = events.findLast((e) => e.event === "progress");
  assert.ok(last?.event === "progress");
  // Every byte is here; the player plays it, and the position on screen goes on without them.
  await waitUntil(
    () => events.slice(arrived).some((e) => e.event === "progress" && e.shown > 0),
    "progress while the player plays",
    10_000,
  );
  const ticked = events.slice(arrived).filter((e) => e.event === "progress");
  const where = last.position;
  assert.ok(
    ticked.every((e) => e.event === "progress" && e.position === where && e.shown <= where),
  );
  await end(3 * 188);
});

Deno.test("viewing: a stream called complete whose media falls short is an error", async () => {
  const { send, end, events } = play(false);
  send(0, 0);
  send(0, 0.5);
  await end(2 * 188);
  const ended = events.at(-1);
  assert.ok(ended?.event === "stream-ended");
  assert.equal(ended.reason, "error");
  assert.match(ended.message ?? "", /Stream ended after 0\.5 of 3\.0 s of media/);
});

Deno.test("viewing: positions are seconds, M:SS or H:MM:SS, absolute or relative", () => {
  assert.deepEqual(parsePosition("90"), { seconds: 90, relative: false });
  assert.deepEqual(parsePosition("1:30"), { seconds: 90, relative: false });
  assert.deepEqual(parsePosition("1:02:03"), { seconds: 3723, relative: false });
  assert.deepEqual(parsePosition("+30"), { seconds: 30, relative: true });
  assert.deepEqual(parsePosition("-10"), { seconds: -10, relative: true });
  for (const bad of ["", "1:60", "abc", "1::2", "--5"]) {
    assert.throws(() => parsePosition(bad), /is not seconds, M:SS or H:MM:SS/, bad);
  }
});
