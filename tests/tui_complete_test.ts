import assert from "node:assert/strict";
import { UsageError } from "../shared/errors.ts";
import {
  complete,
  type CompletionSources,
  editDistance,
  findVideo,
  suggestCommand,
} from "../client/tui/complete.ts";

const NAME = { kind: "name" };
const TEXT = { kind: "rest" };
const VIDEO = { kind: "video" };

/** The shape of the client's command table, with the commands issue 13 adds. */
const COMMANDS = [
  { command: "help", aliases: [], args: [] },
  { command: "who", aliases: [], args: [] },
  { command: "msg", aliases: [], args: [NAME, TEXT] },
  { command: "query", aliases: ["q"], args: [NAME] },
  { command: "verify", aliases: [], args: [NAME] },
  { command: "trust", aliases: [], args: [NAME] },
  { command: "videos", aliases: [], args: [] },
  { command: "play", aliases: [], args: [VIDEO] },
  { command: "stop", aliases: [], args: [] },
  { command: "quit", aliases: ["exit"], args: [] },
];

const SOURCES: CompletionSources = {
  commands: COMMANDS,
  names: ["alice", "Bob", "bobby", "carol"],
  videos: ["My Cats.mp4", "my cats 2.mp4", "test.mp4", "café.mkv", "日本の夏.webm"],
};

/** Completes with the cursor at `|` (or at the end); returns the line with `|` at the cursor. */
function tab(typed: string, sources: CompletionSources = SOURCES) {
  const at = typed.includes("|") ? typed.indexOf("|") : typed.length;
  const line = typed.replace("|", "");
  const result = complete(line, at, sources);
  const shown = result.line.slice(0, result.cursor) + "|" + result.line.slice(result.cursor);
  return { shown, matches: result.matches };
}

Deno.test("complete: commands after /, unique prefix with a trailing space", () => {
  assert.deepEqual(tab("/ms"), { shown: "/msg |", matches: ["/msg"] });
  assert.deepEqual(tab("/MS"), { shown: "/msg |", matches: ["/msg"] });
  assert.deepEqual(tab("/ex"), { shown: "/exit |", matches: ["/exit"] });
  assert.deepEqual(tab("  /wh"), { shown: "  /who |", matches: ["/who"] });
  // Mid-word: the whole word is replaced, an existing space is reused.
  assert.deepEqual(tab("/ms|x bob"), { shown: "/msg |bob", matches: ["/msg"] });
});

Deno.test("complete: several commands extend to the common prefix and are listed", () => {
  assert.deepEqual(tab("/v"), { shown: "/v|", matches: ["/verify", "/videos"] });
  assert.deepEqual(tab("/vi"), { shown: "/videos |", matches: ["/videos"] });
  assert.deepEqual(tab("/qu"), { shown: "/qu|", matches: ["/query", "/quit"] });
  assert.deepEqual(tab("/que"), { shown: "/query |", matches: ["/query"] });
  assert.equal(tab("/").matches.length, COMMANDS.length + 2);
});

Deno.test("complete: no match leaves the line alone", () => {
  assert.deepEqual(tab("/zz"), { shown: "/zz|", matches: [] });
  assert.deepEqual(tab("/msg zed"), { shown: "/msg zed|", matches: [] });
  assert.deepEqual(tab("/nosuch al"), { shown: "/nosuch al|", matches: [] });
  assert.deepEqual(tab("/who al"), { shown: "/who al|", matches: [] });
  assert.deepEqual(tab(""), { shown: "|", matches: [] });
  assert.deepEqual(tab("hello "), { shown: "hello |", matches: [] });
  assert.deepEqual(tab("|  /msg"), { shown: "|  /msg", matches: [] });
});

Deno.test("complete: names for NAME arguments, ignoring case", () => {
  assert.deepEqual(tab("/msg al"), { shown: "/msg alice |", matches: ["alice"] });
  assert.deepEqual(tab("/msg AL"), { shown: "/msg alice |", matches: ["alice"] });
  assert.deepEqual(tab("/query c"), { shown: "/query carol |", matches: ["carol"] });
  assert.deepEqual(tab("/q c"), { shown: "/q carol |", matches: ["carol"] });
  assert.deepEqual(tab("/msg b"), { shown: "/msg bob|", matches: ["Bob", "bobby"] });
  assert.deepEqual(tab("/msg bobb"), { shown: "/msg bobby |", matches: ["bobby"] });
  // An empty NAME lists everyone online.
  assert.deepEqual(tab("/verify "), {
    shown: "/verify |",
    matches: ["alice", "Bob", "bobby", "carol"],
  });
  // The cursor in the NAME of a line that already has text.
  assert.deepEqual(tab("/msg al| how are you"), {
    shown: "/msg alice |how are you",
    matches: [
      "alice",
    ],
  });
});

Deno.test("complete: names in free text and after the message text", () => {
  assert.deepEqual(tab("hi car"), { shown: "hi carol |", matches: ["carol"] });
  assert.deepEqual(tab("/msg bob ask car"), { shown: "/msg bob ask carol |", matches: ["carol"] });
  assert.deepEqual(tab("/msg bob "), { shown: "/msg bob |", matches: [] });
});

Deno.test("complete: video names for /play, spaces included, no trailing space", () => {
  assert.deepEqual(tab("/play te"), { shown: "/play test.mp4|", matches: ["test.mp4"] });
  assert.deepEqual(tab("/play my"), {
    shown: "/play my cats|",
    matches: ["my cats 2.mp4", "My Cats.mp4"],
  });
  assert.deepEqual(tab("/play MY CATS."), {
    shown: "/play My Cats.mp4|",
    matches: ["My Cats.mp4"],
  });
  assert.deepEqual(tab("/play my cats 2"), {
    shown: "/play my cats 2.mp4|",
    matches: ["my cats 2.mp4"],
  });
  assert.deepEqual(tab("/play CAF"), { shown: "/play café.mkv|", matches: ["café.mkv"] });
  assert.deepEqual(tab("/play 日本"), {
    shown: "/play 日本の夏.webm|",
    matches: ["日本の夏.webm"],
  });
  assert.equal(tab("/play ").matches.length, SOURCES.videos.length);
});

Deno.test("complete: accents match however they are encoded, never half a character", () => {
  const sources = { ...SOURCES, videos: ["cafe\u0301 one.mp4", "cafe\u0301 two.mp4"] };
  assert.deepEqual(tab("/play CAF\u00c9", sources), {
    shown: "/play cafe\u0301 |",
    matches: ["cafe\u0301 one.mp4", "cafe\u0301 two.mp4"],
  });
  // "cafe" does not start "café": the accent is part of the last character.
  assert.deepEqual(tab("/play cafe", sources).matches, []);
});

Deno.test("complete: candidates with control or invisible characters are never inserted", () => {
  const sources = {
    ...SOURCES,
    videos: ["evil\x1b[2J.mp4", "bidi\u202Egnp.mp4", "ok.mp4"],
    names: ["eve\u200b"],
  };
  assert.deepEqual(tab("/play e", sources).matches, []);
  assert.deepEqual(tab("/play b", sources).matches, []);
  assert.deepEqual(tab("/play ", sources).matches, ["ok.mp4"]);
  assert.deepEqual(tab("/msg e", sources).matches, []);
});

Deno.test("complete: a cursor out of range is clamped", () => {
  assert.deepEqual(complete("/ms", 99, SOURCES).line, "/msg ");
  assert.deepEqual(complete("/ms", -5, SOURCES).matches, []);
});

Deno.test("edit distance: insertions, deletions, swaps, over whole characters", () => {
  assert.equal(editDistance("", ""), 0);
  assert.equal(editDistance("msg", "msg"), 0);
  assert.equal(editDistance("mgs", "msg"), 1);
  assert.equal(editDistance("ms", "msg"), 1);
  assert.equal(editDistance("mssg", "msg"), 1);
  assert.equal(editDistance("nsg", "msg"), 1);
  assert.equal(editDistance("kitten", "sitting"), 3);
  assert.equal(editDistance("ca", "abc"), 3);
  assert.equal(editDistance("👍🏽a", "a👍🏽"), 1);
  assert.equal(editDistance("kitten", "sitting", 1), 2);
  assert.equal(editDistance("a".repeat(5000), "b", 2), 3);
});

Deno.test("suggest: did you mean, for typos and unique prefixes", () => {
  assert.equal(suggestCommand("/mgs", COMMANDS), "/msg");
  assert.equal(suggestCommand("/MGS", COMMANDS), "/msg");
  assert.equal(suggestCommand("/hlep", COMMANDS), "/help");
  assert.equal(suggestCommand("/wo", COMMANDS), "/who");
  assert.equal(suggestCommand("/veirfy", COMMANDS), "/verify");
  assert.equal(suggestCommand("/vid", COMMANDS), "/videos");
  assert.equal(suggestCommand("/exti", COMMANDS), "/exit");
  assert.equal(suggestCommand("/qiut", COMMANDS), "/quit");
  assert.equal(suggestCommand("/zzz", COMMANDS), undefined);
  assert.equal(suggestCommand("/", COMMANDS), undefined);
  assert.equal(suggestCommand("/trustme", COMMANDS), "/trust");
  assert.equal(suggestCommand("/completelydifferent", COMMANDS), undefined);
});

const VIDEOS = ["test.mp4", "testing.mkv", "My Cats.mp4", "my cats 2.mp4", "A.mp4", "a.mp4"];

Deno.test("findVideo: exact, then without case, then unique prefix, then without extension", () => {
  assert.equal(findVideo("test.mp4", VIDEOS), "test.mp4");
  assert.equal(findVideo("TEST.MP4", VIDEOS), "test.mp4");
  assert.equal(findVideo("test", VIDEOS), "test.mp4");
  assert.equal(findVideo("testi", VIDEOS), "testing.mkv");
  assert.equal(findVideo("my cats.", VIDEOS), "My Cats.mp4");
  assert.equal(findVideo("my cats", VIDEOS), "My Cats.mp4");
  assert.equal(findVideo("MY CATS 2", VIDEOS), "my cats 2.mp4");
  assert.equal(findVideo("a.mp4", VIDEOS), "a.mp4");
  assert.equal(findVideo("A.mp4", VIDEOS), "A.mp4");
  assert.equal(findVideo("caf\u00e9", ["cafe\u0301.mp4"]), "cafe\u0301.mp4");
});

function assertUsage(fn: () => unknown, code: string, pattern: RegExp): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof UsageError);
    assert.equal(error.code, code);
    assert.match(error.message, pattern);
    return true;
  });
}

Deno.test("findVideo: an unknown or ambiguous name says what there is", () => {
  assertUsage(() => findVideo("tset", VIDEOS), "unknown-video", /"tset".*"test.mp4"/);
  assertUsage(() => findVideo("zzzz", VIDEOS), "unknown-video", /Type \/videos for the list/);
  assertUsage(() => findVideo("tes", VIDEOS), "ambiguous-video", /"test.mp4" or "testing.mkv"/);
  assertUsage(() => findVideo("A.MP4", VIDEOS), "ambiguous-video", /"A.mp4" or "a.mp4"/);
  assertUsage(() => findVideo("x", []), "unknown-video", /No video called "x"/);
  assertUsage(() => findVideo("   ", VIDEOS), "usage", /Missing VIDEO/);
  const many = Array.from({ length: 30 }, (_, i) => `clip${i}.mp4`);
  assertUsage(() => findVideo("clip", many), "ambiguous-video", /or 25 more/);
  const long = "x".repeat(500);
  assert.throws(() => findVideo(long, VIDEOS), (error: Error) => error.message.length < 200);
});
