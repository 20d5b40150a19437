import assert from "node:assert/strict";
import type { ClientEvent } from "../client/events.ts";
import {
  EventFormatter,
  formatBytes,
  formatDuration,
  formatTable,
  printable,
} from "../client/tui/format.ts";
import type { SegmentPlan, VideoListing } from "../shared/protocol/messages.ts";

// deno-lint-ignore no-control-regex -- stripping ANSI codes to compare text
const ANSI = /\x1b\[[0-9;]*m/g;
const plain = new EventFormatter({ color: false });
const FP_A = "aaaa:bbbb:cccc:dddd:eeee:ffff:0000:1111:2222:3333";
const FP_B = "1234:5678:9abc:def0:1234:5678:9abc:def0:1234:5678";

function segment(index: number, height: number): SegmentPlan {
  const width = Math.round(height * 16 / 9);
  return {
    index,
    start: index * 41,
    end: index * 41 + 41,
    width,
    height,
    requestedHeight: height,
    capped: false,
  };
}

Deno.test("format: durations as m:ss, then h:mm:ss", () => {
  assert.equal(formatDuration(0), "0:00");
  assert.equal(formatDuration(41.9), "0:41");
  assert.equal(formatDuration(123), "2:03");
  assert.equal(formatDuration(3599), "59:59");
  assert.equal(formatDuration(3725), "1:02:05");
  assert.equal(formatDuration(-3), "0:00");
  assert.equal(formatDuration(Number.NaN), "0:00");
});

Deno.test("format: sizes in binary units", () => {
  assert.equal(formatBytes(0), "0 B");
  assert.equal(formatBytes(1023), "1023 B");
  assert.equal(formatBytes(1024), "1 KiB");
  assert.equal(formatBytes(1536), "1.5 KiB");
  assert.equal(formatBytes(200 * 1024), "200 KiB");
  assert.equal(formatBytes(5.25 * 1024 * 1024), "5.3 MiB");
  assert.equal(formatBytes(3 * 1024 ** 3), "3 GiB");
});

Deno.test("format: tables align columns, counting wide characters as two", () => {
  assert.equal(formatTable([["a", "bb", "c"], ["ddd", "e", "f"]]), "a    bb  c\nddd  e   f");
  assert.equal(formatTable([["日本", "x"], ["ab", "y"]]), "日本  x\nab    y");
});

Deno.test("format: who is an aligned table of name, trust and fingerprint", () => {
  const text = plain.format({
    event: "who",
    peers: [
      { name: "bob", fingerprint: FP_A, trust: "verified" },
      { name: "carolina", fingerprint: FP_B, trust: "changed" },
    ],
  });
  assert.equal(
    text,
    [
      `NAME      TRUST     FINGERPRINT`,
      `bob       verified  ${FP_A}`,
      `carolina  changed   ${FP_B}`,
    ].join("\n"),
  );
  assert.equal(plain.format({ event: "who", peers: [] }), "Nobody else is online.");
});

Deno.test("format: progress shows part, height and times", () => {
  const format = new EventFormatter({ color: false });
  const started = format.format({
    event: "stream-started",
    video: "cats.mp4",
    duration: 123,
    segments: [segment(0, 1080), segment(1, 720), segment(2, 480)],
  });
  assert.equal(started, "▶ cats.mp4  2:03, 3 parts: 1080p, 720p, 480p");
  const progress: ClientEvent = {
    event: "progress",
    video: "cats.mp4",
    index: 1,
    height: 720,
    position: 41.5,
    shown: 39,
    duration: 123,
    bytes: 3 * 1024 * 1024,
  };
  assert.equal(format.format(progress), "▶ cats.mp4  part 2/3  720p  0:41 / 2:03  3 MiB");
  assert.equal(
    format.format({ event: "segment", video: "cats.mp4", index: 2, width: 854, height: 480 }),
    "▶ cats.mp4  part 3/3  now 480p (854x480)",
  );
  assert.equal(
    format.format({ event: "stream-ended", video: "cats.mp4", bytes: 2048, reason: "complete" }),
    "■ cats.mp4 finished (2 KiB)",
  );
  // Without a stream-started the total is unknown.
  assert.match(new EventFormatter({ color: false }).format(progress), /part 2 {2}720p/);
});

Deno.test("format: a failed stream says why", () => {
  const text = plain.format({
    event: "stream-ended",
    video: "dogs.mkv",
    bytes: 0,
    reason: "error",
    message: "ffmpeg exited with code 1",
  });
  assert.equal(text, "✗ dogs.mkv failed after 0 B: ffmpeg exited with code 1");
});

Deno.test("format: key-changed is loud and explains /verify then /trust", () => {
  const event: ClientEvent = {
    event: "key-changed",
    name: "bob",
    fingerprint: FP_B,
    pinnedFingerprint: FP_A,
  };
  const text = plain.format(event);
  assert.match(text, /WARNING: BOB'S KEY HAS CHANGED/);
  assert.ok(text.includes(FP_A) && text.includes(FP_B));
  assert.ok(text.indexOf("/verify bob") < text.indexOf("/trust bob"));
  assert.match(text, /blocked/);
  const colored = new EventFormatter({ color: true }).format(event);
  assert.ok(colored.includes("\x1b[1;97;41m"), "white on red");
  assert.ok(colored.includes("\x1b[31m"), "red");
  assert.equal(colored.replace(ANSI, ""), text);
});

Deno.test("format: no ANSI codes without color, some with", () => {
  const events: ClientEvent[] = [
    { event: "error", code: "unknown-recipient", message: "Nobody called zed is online" },
    { event: "error", code: "usage", message: "Missing TEXT. Usage: /msg NAME TEXT" },
    { event: "joined", name: "bob", fingerprint: FP_A, trust: "new" },
    { event: "disconnected", code: "server-gone", reason: "Connection lost" },
  ];
  for (const event of events) {
    assert.ok(!plain.format(event).includes("\x1b"));
  }
  const color = new EventFormatter({ color: true });
  assert.equal(
    color.format(events[0]),
    "\x1b[31m✗ Nobody called zed is online\x1b[0m",
  );
  assert.equal(color.format(events[1]), "\x1b[33mMissing TEXT. Usage: /msg NAME TEXT\x1b[0m");
  assert.equal(plain.format(events[3]), "Disconnected: Connection lost");
});

Deno.test("format: messages show time, sender and text; lost messages are flagged", () => {
  const sentAt = new Date(2024, 0, 2, 9, 5).getTime();
  const base = { event: "message", from: "bob", id: "m1", sentAt } as const;
  assert.equal(plain.format({ ...base, text: "hi  there", missing: 0 }), "[09:05] bob: hi  there");
  assert.equal(
    plain.format({ ...base, text: "again", missing: 2 }),
    "⚠ 2 earlier messages from bob never arrived\n[09:05] bob: again",
  );
});

Deno.test("format: text from peers cannot carry terminal escapes", () => {
  const text = plain.format({
    event: "message",
    from: "bob",
    text: "hi\x1b[2J\x1b]0;pwned\x07\r\nfake line\u202egnp.exe\x9b",
    id: "m",
    sentAt: 0,
    missing: 0,
  });
  assert.ok(
    [...text].every((char) => char.charCodeAt(0) >= 0x20 && !(char >= "\x7f" && char <= "\x9f")),
  );
  assert.ok(!text.includes("\u202e"));
  // The override is invisible, so it is removed (not shown): the text reads as it was sent.
  assert.ok(text.endsWith("hi␛[2J␛]0;pwned␇␍␊fake linegnp.exe\uFFFD"));
  assert.equal(printable("a\x7fb"), "a\u2421b");
  const video = plain.format({
    event: "stream-ended",
    video: "x\x1b[31m",
    bytes: 0,
    reason: "stopped",
  });
  assert.equal(video, "■ x␛[31m stopped (0 B)");
});

Deno.test("format: verify shows the code and both fingerprints", () => {
  const text = plain.format({
    event: "verify",
    name: "bob",
    code: "123 456 789",
    fingerprint: FP_B,
    yourFingerprint: FP_A,
  });
  assert.equal(
    text,
    [
      "Safety number with bob: 123 456 789",
      `  bob's fingerprint:  ${FP_B}`,
      `  your fingerprint:   ${FP_A}`,
      "Compare the 60 digits with bob in person or by phone. If they match: /trust bob",
    ].join("\n"),
  );
});

Deno.test("format: the other events have a line each", () => {
  const video: VideoListing = {
    name: "cats.mp4",
    duration: 123,
    width: 1920,
    height: 1080,
    fps: 29.97,
    hasAudio: true,
    segments: [segment(0, 144), segment(1, 720), {
      ...segment(2, 1080),
      requestedHeight: 1440,
      capped: true,
    }],
  };
  assert.equal(
    plain.format({ event: "videos", videos: [video] }),
    "VIDEO     LENGTH  SOURCE       FPS  AUDIO  PLAYS AT (BY THIRDS)\n" +
      "cats.mp4    2:03  1920x1080  29.97  yes    144p, 720p, 1080p (1440p capped)",
  );
  const narrow = new EventFormatter({ color: false, width: () => 59 });
  const long = { ...video, name: "a very long holiday video name 2024.mkv", duration: 7000 };
  const table = narrow.format({ event: "videos", videos: [long] }).split("\n");
  assert.ok(table.every((line) => line.length <= 59), table.join("\n"));
  assert.match(table[1], /^a very long holid… +1:56:40/);
  const who = narrow.format({
    event: "who",
    peers: [{ name: "bob", fingerprint: FP_A, trust: "verified" }],
  }).split("\n");
  assert.ok(who.every((line) => line.length <= 59), who.join("\n"));
  assert.match(who[1], /^bob +verified +aaaa:/);
  assert.equal(plain.format({ event: "videos", videos: [] }), "No videos on the server.");
  assert.equal(plain.format({ event: "left", name: "bob" }), "← bob left");
  assert.equal(plain.format({ event: "sent", to: "bob", id: "m1" }), "✓ sent to bob");
  assert.equal(
    plain.format({ event: "trusted", name: "bob", fingerprint: FP_B }),
    `✓ bob's key is now verified (${FP_B})`,
  );
  assert.equal(
    plain.format({ event: "joined", name: "bob", fingerprint: FP_A, trust: "verified" }),
    `→ bob joined (verified: ${FP_A})`,
  );
  assert.match(
    plain.format({ event: "joined", name: "bob", fingerprint: FP_A, trust: "changed" }),
    /CHANGED key/,
  );
  assert.equal(
    plain.format({
      event: "welcome",
      server: "10.0.0.2:9000",
      name: "alice",
      fingerprint: FP_A,
      online: 3,
      serverFingerprint: "SHA256:server",
      serverKey: "pinned",
      names: ["bob", "carol"],
      verified: 0,
      changed: 0,
    }),
    `Connected to 10.0.0.2:9000 as alice (${FP_A}). Online: bob, carol. Type /help for commands.`,
  );
  assert.equal(
    plain.format({
      event: "welcome",
      server: "10.0.0.2:9000",
      name: "alice",
      fingerprint: FP_A,
      online: 3,
      serverFingerprint: "SHA256:server",
      serverKey: "pinned",
      names: ["bob", "carol"],
      verified: 1,
      changed: 1,
    }),
    `Connected to 10.0.0.2:9000 as alice (${FP_A}). Online: bob, carol (1 verified, 1 with a ` +
      "CHANGED key). Type /help for commands.",
  );
  assert.match(
    plain.format({
      event: "welcome",
      server: "10.0.0.2:9000",
      name: "alice",
      fingerprint: FP_A,
      online: 1,
      serverFingerprint: "SHA256:server",
      serverKey: "new",
      names: [],
      verified: 0,
      changed: 0,
    }),
    /\nFirst connection: pinned the server key SHA256:server/,
  );
});

Deno.test("format: kept messages are dimmed, marked │, dated when not today, with delivery marks", () => {
  const today = new Date(2026, 11, 3, 10, 0).getTime();
  const format = new EventFormatter({ color: true, name: "alice", now: () => today });
  const at = (day: number, hour: number) => new Date(2026, 11, day, hour, 5).getTime();
  const text = format.format({
    event: "history",
    name: "bob",
    entries: [
      { peer: "bob", direction: "out", id: "1", text: "hi", at: at(2, 21), status: "delivered" },
      {
        peer: "bob",
        direction: "in",
        id: "2",
        text: "yo\x1b[2J",
        at: at(3, 9),
        status: "received",
      },
      { peer: "bob", direction: "out", id: "3", text: "there?", at: at(3, 9), status: "queued" },
      { peer: "bob", direction: "out", id: "4", text: "lost", at: at(3, 9), status: "failed" },
    ],
  });
  const lines = text.split("\n");
  assert.ok(lines.every((line) => line.startsWith("\x1b[2m")), "every line dimmed");
  assert.deepEqual(lines.map((line) => line.replace(ANSI, "")), [
    "── history with bob: last 4 messages ──",
    "│ [2026-12-02 21:05] alice → bob: hi ✓✓",
    "│ [09:05] bob: yo␛[2J",
    "│ [09:05] alice → bob: there? ✓ (held for them)",
    "│ [09:05] alice → bob: lost ✗ (failed)",
  ]);
  assert.equal(
    plain.format({ event: "history", name: "bob", entries: [], recent: false }),
    "No kept messages with bob.",
  );
  assert.equal(
    plain.format({ event: "history", entries: [], off: true }),
    "No kept messages. History is off: /history on keeps new ones.",
  );
  assert.equal(
    plain.format({ event: "history-cleared", deleted: 1 }),
    "Deleted 1 kept message (everyone's) from this computer.",
  );
});

Deno.test("format: reconnecting, back and gave-up each have their line, with the waits worded here", () => {
  const lost = { event: "reconnecting", server: "h:9", code: "server-lost" } as const;
  assert.equal(
    plain.format({ ...lost, reason: "Connection to h:9 was lost", attempt: 1, delayMs: 380 }),
    "Connection lost: Connection to h:9 was lost; reconnecting in 0.4 s (attempt 1)",
  );
  assert.equal(
    plain.format({ ...lost, reason: "No answer", attempt: 4, delayMs: 12_300 }),
    "Still away: No answer; reconnecting in 12 s (attempt 4)",
  );
  assert.equal(
    plain.format({ ...lost, reason: "Server is shutting down", attempt: 1, delayMs: 40 }),
    "Connection lost: Server is shutting down; reconnecting now (attempt 1)",
  );
  const back = { event: "reconnected", server: "h:9", attempts: 3 } as const;
  assert.equal(
    plain.format({ ...back, afterMs: 12_000, online: 2, names: ["bob"] }),
    "Back: reconnected to h:9 after 12 s (online: bob)",
  );
  assert.equal(
    plain.format({ ...back, afterMs: 800, online: 1, names: [] }),
    "Back: reconnected to h:9 after 0.8 s (online: nobody else)",
  );
  const gaveUp = { event: "gave-up", server: "h:9", code: "server-unreachable" } as const;
  assert.equal(
    plain.format({ ...gaveUp, reason: "No answer", afterMs: 7_500_000, attempts: 140 }),
    "Gave up reconnecting to h:9 after 2 h 5 min (140 attempts): No answer",
  );
  assert.equal(
    plain.format({ ...gaveUp, reason: "No answer", afterMs: 500, attempts: 1 }),
    "Gave up reconnecting to h:9 after 0.5 s (1 attempt): No answer",
  );
});

Deno.test("format: a stream cut by a lost connection says whether it resumes", () => {
  const ended = { event: "stream-ended", video: "cats.mp4", bytes: 2048 } as const;
  assert.equal(
    plain.format({ ...ended, reason: "error", message: "Connection lost", resumes: true }),
    "✗ cats.mp4 failed after 2 KiB: Connection lost; it resumes here when the server is back",
  );
  assert.equal(
    plain.format({ ...ended, reason: "stopped", bytes: 0, resumes: false }),
    "■ cats.mp4 stopped (0 B): it will not resume when the server is back",
  );
  assert.equal(plain.format({ ...ended, reason: "stopped" }), "■ cats.mp4 stopped (2 KiB)");
});
