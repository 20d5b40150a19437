import assert from "node:assert/strict";
import { sanitizeForDisplay } from "../client/tui/sanitize.ts";
import { displayWidth, graphemes } from "../client/tui/width.ts";
import { wrapText } from "../client/tui/wrap.ts";

// deno-lint-ignore no-control-regex -- stripping ANSI codes to compare text
const ANSI = /\x1b\[[0-9;]*m/g;

function assertFits(lines: string[], width: number, context: string): void {
  for (const line of lines) {
    assert.ok(
      displayWidth(line) <= width,
      `${JSON.stringify(line)} wider than ${width} ${context}`,
    );
  }
}

Deno.test("wrap: breaks at spaces, continuation lines indented", () => {
  assert.deepEqual(wrapText("[12:00] bob: the quick brown fox jumps", { width: 20 }), [
    "[12:00] bob: the",
    "  quick brown fox",
    "  jumps",
  ]);
  assert.deepEqual(wrapText("short", { width: 20 }), ["short"]);
  assert.deepEqual(wrapText("", { width: 20 }), [""]);
  assert.deepEqual(wrapText("a b c d e f", { width: 5, indent: "> " }), ["a b c", "> d e", "> f"]);
  assert.deepEqual(wrapText("one two three", { width: 9, indent: 4 }), ["one two", "    three"]);
});

Deno.test("wrap: inner gaps are kept, blanks at a break are dropped", () => {
  assert.deepEqual(wrapText("  indented  text here", { width: 14 }), [
    "  indented",
    "  text here",
  ]);
  assert.deepEqual(wrapText("word          next", { width: 10 }), ["word", "  next"]);
});

Deno.test("wrap: a long word is cut by display width, never inside a cluster", () => {
  const url = "https://example.com/a/very/long/path/that/goes/on";
  const lines = wrapText(`see ${url}`, { width: 20 });
  assertFits(lines, 20, "");
  assert.equal(lines.map((line, i) => i === 0 ? line : line.slice(2)).join(""), `see ${url}`);

  const wide = "日本語".repeat(6) + "👍🏽".repeat(6) + "e\u0301".repeat(20);
  for (let width = 3; width <= 30; width++) {
    const cut = wrapText(wide, { width, indent: 1 });
    assertFits(cut, width, `at width ${width}`);
    const rejoined = cut.map((line, i) => i === 0 ? line : line.slice(1)).join("");
    assert.deepEqual(graphemes(rejoined), graphemes(wide), `at width ${width}`);
  }
});

Deno.test("wrap: CJK and emoji lines are filled by columns, not by characters", () => {
  assert.deepEqual(wrapText("日本語のテキストです", { width: 9, indent: 1 }), [
    "日本語の",
    " テキスト",
    " です",
  ]);
  assert.deepEqual(wrapText("👍🏽 👍🏽 👍🏽 👍🏽", { width: 7 }), ["👍🏽 👍🏽", "  👍🏽 👍🏽"]);
});

Deno.test("wrap: newlines start indented lines", () => {
  assert.deepEqual(wrapText("first\nsecond\n\nfourth", { width: 20 }), [
    "first",
    "  second",
    "  ",
    "  fourth",
  ]);
});

Deno.test("wrap: color codes take no room and are never split", () => {
  const line = "\x1b[2m[12:00]\x1b[0m \x1b[1mbob\x1b[0m: hello there";
  const lines = wrapText(line, { width: 12 });
  assertFits(lines, 12, "");
  assert.deepEqual(lines.map((l) => l.replace(ANSI, "")), ["[12:00] bob:", "  hello", "  there"]);
  const codes = (text: string) => text.match(ANSI)?.length ?? 0;
  for (const l of lines) assert.equal(codes(l), l.split("\x1b").length - 1, JSON.stringify(l));
  assert.equal(lines.map(codes).reduce((a, b) => a + b), codes(line));
});

Deno.test("wrap: the indent must take at least one column, tiny widths still terminate", () => {
  assert.throws(() => wrapText("x", { width: 10, indent: 0 }), RangeError);
  assert.throws(() => wrapText("x", { width: 10, indent: "" }), RangeError);
  const lines = wrapText("日本語 abc", { width: 1, indent: 1 });
  assertFits(lines, 3, "when the width is below indent + 2");
  assert.deepEqual(lines, ["日", " 本", " 語", " ab", " c"]);
});

Deno.test("wrap: 200 spaces then a fake line never put '[' at the start of a row", () => {
  const attacks = [
    "hi" + " ".repeat(200) + "[00:01] bob: hi",
    "hi" + "\u00a0".repeat(200) + "[00:01] bob: hi",
    "hi" + "\u3000".repeat(100) + "[00:01] bob: hi",
    "hi" + "\u2800".repeat(200) + "[00:01] bob: hi",
    "hi" + " \u200B".repeat(100) + "[00:01] bob: hi",
    "hi\n[00:01] bob: hi",
    "hi\r\n[00:01] bob: hi",
    "hi\u2028[00:01] bob: hi",
    "x".repeat(300) + "[00:01] bob: hi",
  ];
  for (const attack of attacks) {
    for (const newlines of ["show", "keep"] as const) {
      const text = "[12:00] alice: " + sanitizeForDisplay(attack, { newlines });
      for (let width = 10; width <= 200; width++) {
        for (const indent of [1, 2, 4]) {
          const lines = wrapText(text, { width, indent });
          assertFits(lines, width, `at width ${width}`);
          lines.slice(1).forEach((line) => {
            assert.ok(line.startsWith(" ".repeat(indent)), `${JSON.stringify(line)} at ${width}`);
          });
          assert.equal(lines.filter((line) => line.startsWith("[")).length, 1);
        }
      }
    }
  }
});

Deno.test("wrap: random words always fit and words that fit a line are never cut", () => {
  let state = 7;
  const next = () => (state = (state * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  const pool = ["a", "bb", "ccc", "日本", "👍🏽", "e\u0301e\u0301", "word", "longerword", "  "];
  for (let round = 0; round < 300; round++) {
    const words = Array.from(
      { length: 1 + Math.floor(next() * 30) },
      () => pool[Math.floor(next() * pool.length)],
    );
    const text = words.join(" ");
    const width = 12 + Math.floor(next() * 40);
    const lines = wrapText(text, { width });
    assertFits(lines, width, JSON.stringify(text));
    const found = lines.flatMap((line) => line.trim().split(/ +/)).filter((w) => w !== "");
    assert.deepEqual(found, text.trim().split(/ +/).filter((w) => w !== ""));
  }
});
