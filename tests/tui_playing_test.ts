/**
 * The status line's video: the part and resolution are the ones on screen (`showing`), not the
 * ones arriving (`segment`, `progress`); a stream started by a seek names the third it starts
 * in; time paused does not count as played.
 */
import assert from "node:assert/strict";
import type { ClientEvent } from "../client/events.ts";
import { PlayingTracker } from "../client/tui/playing.ts";
import type { SegmentPlan } from "../shared/protocol/mod.ts";

const SEGMENTS: SegmentPlan[] = [144, 360, 720].map((height, index) => ({
  index,
  start: index * 10,
  end: index * 10 + 10,
  width: height * 16 / 9,
  height,
  requestedHeight: height,
  capped: false,
}));

function progress(index: number, position: number, shown: number): ClientEvent {
  const height = SEGMENTS[index].height;
  return {
    event: "progress",
    video: "a.mp4",
    index,
    height,
    position,
    shown,
    duration: 30,
    bytes: 1,
  };
}

function tracker(from?: number) {
  const clock = { now: 0 };
  const playing = new PlayingTracker(() => clock.now);
  playing.update({
    event: "stream-started",
    video: "a.mp4",
    duration: 30,
    segments: SEGMENTS,
    from,
  });
  return { clock, playing };
}

Deno.test("playing: the part and resolution change when the player shows them, not on arrival", () => {
  const { clock, playing } = tracker();
  playing.update({ event: "showing", video: "a.mp4", index: 0, height: 144, width: 256 });
  clock.now = 8000;
  // The second third's bytes arrive while the player is still in the first.
  playing.update({ event: "segment", video: "a.mp4", index: 1, height: 360, width: 640 });
  playing.update(progress(1, 12, 8));
  assert.equal(playing.status?.part, 1);
  assert.equal(playing.status?.height, 144);
  assert.equal(playing.status?.position, 8, "the position on screen");
  assert.deepEqual(playing.status?.buffered, { seconds: 4 });
  clock.now = 10_000;
  assert.equal(
    playing.update({ event: "showing", video: "a.mp4", index: 1, height: 360, width: 640 }),
    true,
  );
  assert.equal(playing.status?.part, 2);
  assert.equal(playing.status?.height, 360);
});

Deno.test("playing: a stream that starts in the second third shows it from the start", () => {
  const { playing } = tracker(15);
  assert.equal(playing.status?.part, 2);
  assert.equal(playing.status?.height, 360);
  assert.equal(playing.status?.position, 15);
  const past = tracker(30);
  assert.equal(past.playing.status?.part, 3, "at the very end: the last third");
});

Deno.test("playing: time paused is not played, so the buffer does not drain while paused", () => {
  const { clock, playing } = tracker();
  clock.now = 2000;
  playing.update(progress(0, 6, 2));
  assert.deepEqual(playing.status?.buffered, { seconds: 4 });
  playing.update({ event: "paused", video: "a.mp4", position: 6 });
  assert.equal(playing.status?.paused, true);
  clock.now = 60_000;
  playing.update({ event: "resumed", video: "a.mp4", position: 6 });
  assert.equal(playing.status?.paused, false);
  assert.deepEqual(playing.status?.buffered, { seconds: 4 });
  clock.now = 61_000;
  playing.update(progress(0, 6, 3));
  assert.deepEqual(playing.status?.buffered, { seconds: 3 });
  playing.update({ event: "stream-ended", video: "a.mp4", bytes: 9, reason: "stopped" });
  assert.equal(playing.status, undefined);
});
