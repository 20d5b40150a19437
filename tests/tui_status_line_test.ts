import assert from "node:assert/strict";
import {
  type PlayingStatus,
  renderStatusLine,
  type StatusState,
} from "../client/tui/status_line.ts";
import { displayWidth } from "../client/tui/width.ts";

const CATS: PlayingStatus = {
  video: "cats.mp4",
  part: 2,
  parts: 3,
  height: 720,
  position: 83,
  duration: 296,
  buffered: { seconds: 12 },
};

const BUSY: StatusState = {
  reconnecting: { attempt: 3, retryIn: 4 },
  conversation: "bob",
  unread: { alice: 2, carol: 1, dave: 3, erin: 9, bob: 4 },
  playing: {
    video: "A Very Long Movie Title With Many Words (2019) [1080p].mkv",
    part: 1,
    parts: 3,
    height: 144,
    position: 3725,
    duration: 7200,
    buffered: { bytes: 5.5 * 1024 * 1024 },
    paused: true,
  },
};

Deno.test("status: a playing video with part, resolution, position and buffer", () => {
  assert.equal(
    renderStatusLine({ playing: CATS }, 100),
    "playing cats.mp4, part 2/3, 720p, 1:23 / 4:56, 12 s buffered",
  );
  assert.equal(
    renderStatusLine({ playing: { ...CATS, buffered: { bytes: 1536 }, paused: true } }, 100),
    "paused cats.mp4, part 2/3, 720p, 1:23 / 4:56, 1.5 KiB buffered",
  );
  assert.equal(
    renderStatusLine({ playing: { ...CATS, buffered: undefined } }, 100),
    "playing cats.mp4, part 2/3, 720p, 1:23 / 4:56",
  );
});

Deno.test("status: reconnecting, with the wait until the next try", () => {
  assert.equal(
    renderStatusLine({ reconnecting: { attempt: 3, retryIn: 4 } }, 80),
    "reconnecting (attempt 3), next try in 4 s",
  );
  assert.equal(
    renderStatusLine({ reconnecting: { attempt: 1, retryIn: 0.2 } }, 80),
    "reconnecting (attempt 1), next try in 1 s",
  );
  assert.equal(
    renderStatusLine({ reconnecting: { attempt: 2 } }, 80),
    "reconnecting now (attempt 2)",
  );
  assert.equal(
    renderStatusLine({ reconnecting: { attempt: 2, retryIn: 9 } }, 20),
    "reconnecting in 9 s",
  );
});

Deno.test("status: the conversation and unread counts from the others", () => {
  assert.equal(
    renderStatusLine({ conversation: "bob", unread: { bob: 3, alice: 2, carol: 0 } }, 80),
    "talking to bob | unread: alice 2",
  );
  assert.equal(renderStatusLine({ conversation: "bob", unread: { bob: 3 } }, 80), "talking to bob");
  assert.equal(
    renderStatusLine({ unread: { dave: 1, carol: 1, bob: 1, alice: 1 } }, 80),
    "unread: alice 1, bob 1, carol 1 +1",
  );
  assert.equal(renderStatusLine({}, 80), "");
  assert.equal(renderStatusLine(BUSY, 0), "");
});

Deno.test("status: it always fits, and drops detail before dropping parts", () => {
  const states: StatusState[] = [
    BUSY,
    { conversation: "bob", unread: { alice: 2 }, playing: CATS },
    { playing: { ...CATS, video: "日本の夏の長い映画のタイトル.webm" } },
    { conversation: "a".repeat(32), unread: { ["b".repeat(32)]: 99999 } },
  ];
  for (const state of states) {
    for (let width = 1; width <= 220; width++) {
      const line = renderStatusLine(state, width);
      assert.ok(displayWidth(line) <= width, `${JSON.stringify(line)} wider than ${width}`);
      assert.ok(line.length > 0, `empty at ${width}`);
    }
  }
  assert.equal(
    renderStatusLine(BUSY, 80),
    "reconnecting in 4 s | to bob | 15 unread | A Very Long M… 1:02:05/2:00:00 paused",
  );
  assert.equal(renderStatusLine(BUSY, 40), "reconnecting in 4 s | to bob | 15 unread");
  assert.equal(renderStatusLine(BUSY, 20), "reconnecting in 4 s");
  assert.equal(renderStatusLine(BUSY, 10), "reconnect…");
});

Deno.test("status: a wide video name is cut by columns", () => {
  const video = "日本の夏の長い映画のタイトル.webm";
  const line = renderStatusLine({ playing: { ...CATS, video } }, 50);
  assert.equal(line, "日本の夏の長い映画のタイトル.w… 2/3 720p 1:23/4:56");
  assert.equal(displayWidth(line), 50);
});

Deno.test("status: hostile names cannot control the terminal or add a row", () => {
  const line = renderStatusLine({
    conversation: "eve\x1b[2J",
    unread: { "mallory\u202E": 1 },
    playing: { ...CATS, video: "x\n\r\x1b]0;pwned\x07" + " ".repeat(300) + "\u200Bfake" },
  }, 200);
  // deno-lint-ignore no-control-regex -- asserting that no control survives
  assert.doesNotMatch(line, /[\x00-\x1f\x7f-\x9f\u200B\u202E]/);
  assert.ok(!line.includes("     "));
  assert.match(line, /^talking to eve␛\[2J \| unread: mallory 1 \| playing x␊␍␛\]0;pwned␇ ␣ fake/);
});
