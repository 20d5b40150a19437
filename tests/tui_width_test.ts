import assert from "node:assert/strict";
import {
  displayUnits,
  displayWidth,
  ELLIPSIS,
  graphemes,
  padToWidth,
  truncateToWidth,
} from "../client/tui/width.ts";

Deno.test("width: wide CJK, emoji and combining marks measure as drawn", () => {
  const cases: [string, number][] = [
    ["", 0],
    ["abc", 3],
    ["日本語", 6],
    ["한국어", 6],
    ["ｱｲｳ", 3],
    ["Ａ", 2],
    ["👍", 2],
    ["👍🏽", 2],
    ["❤️", 2],
    ["🇫🇷", 2],
    ["👨‍👩‍👧", 2],
    ["1️⃣", 2],
    ["e\u0301", 1],
    ["a\u0301\u0302\u0303", 1],
    ["\u200B", 0],
    ["\x1b[1;31mred\x1b[0m", 3],
    ["a日👍e\u0301", 6],
  ];
  for (const [text, width] of cases) assert.equal(displayWidth(text), width, JSON.stringify(text));
});

Deno.test("width: graphemes and units never split a cluster or a color code", () => {
  assert.deepEqual(graphemes("e\u0301👍🏽🇫🇷!"), ["e\u0301", "👍🏽", "🇫🇷", "!"]);
  assert.deepEqual(displayUnits("\x1b[2ma\x1b[0m日"), [
    { text: "\x1b[2m", width: 0 },
    { text: "a", width: 1 },
    { text: "\x1b[0m", width: 0 },
    { text: "日", width: 2 },
  ]);
});

Deno.test("width: truncation fits the width and cuts between clusters", () => {
  assert.equal(truncateToWidth("hello world", 8), "hello w…");
  assert.equal(truncateToWidth("hello", 5), "hello");
  assert.equal(truncateToWidth("日本語テキスト", 7), "日本語…");
  assert.equal(truncateToWidth("日本語テキスト", 6), "日本…");
  assert.equal(truncateToWidth("👍🏽👍🏽👍🏽", 4), "👍🏽…");
  assert.equal(truncateToWidth("abc", 1), "…");
  assert.equal(truncateToWidth("abc", 0), "");
  assert.equal(truncateToWidth("abcdef", 4, "..."), "a...");
  const samples = ["e\u0301".repeat(9), "日a👍🏽".repeat(5), "plain ascii text here", "🇫🇷🇩🇪🇮🇹"];
  for (const text of samples) {
    for (let width = 0; width <= displayWidth(text) + 1; width++) {
      const cut = truncateToWidth(text, width);
      assert.ok(displayWidth(cut) <= width, `${JSON.stringify(cut)} wider than ${width}`);
      const kept = graphemes(cut.endsWith(ELLIPSIS) ? cut.slice(0, -1) : cut);
      assert.deepEqual(kept, graphemes(text).slice(0, kept.length), JSON.stringify(cut));
    }
  }
});

Deno.test("width: truncation keeps color codes, so a color that was closed stays closed", () => {
  const colored = "\x1b[1mbob\x1b[0m said hello";
  const cut = truncateToWidth(colored, 6);
  assert.equal(cut, "\x1b[1mbob\x1b[0m s…");
  const late = truncateToWidth("\x1b[31mvery long red text\x1b[0m", 5);
  assert.equal(late, "\x1b[31mvery…\x1b[0m");
  assert.equal(displayWidth(late), 5);
});

Deno.test("width: padding by columns, on either side", () => {
  assert.equal(padToWidth("日本", 5), "日本 ");
  assert.equal(padToWidth("42", 5, "end"), "   42");
  assert.equal(padToWidth("toolong", 3), "toolong");
  assert.equal(padToWidth("\x1b[1mx\x1b[0m", 3), "\x1b[1mx\x1b[0m  ");
});
