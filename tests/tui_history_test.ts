import assert from "node:assert/strict";
import { HISTORY_DEFAULTS, InputHistory } from "../client/tui/history.ts";

/** Walks Up from the line being typed until the bell; returns the lines shown. */
function upAll(history: InputHistory, prefix = ""): string[] {
  const shown: string[] = [];
  let at: number | undefined = history.size;
  while ((at = history.older(at, prefix)) !== undefined) shown.push(history.entries[at]);
  return shown;
}

Deno.test("history: blank lines are skipped, a repeated line moves to the end", () => {
  let history = new InputHistory();
  for (const line of ["/who", "", "   ", "hello", "/who", "/who", "bye"]) {
    history = history.add(line);
  }
  assert.deepEqual(history.entries, ["hello", "/who", "bye"]);
  assert.equal(history.size, 3);
  const same = history.add("bye");
  assert.equal(same, history);
});

Deno.test("history: bounded in entries and in line length, line breaks refused", () => {
  let history = new InputHistory([], { limit: 3, maxLineLength: 10 });
  for (const line of ["a", "b", "c", "d", "x".repeat(11), "two\nlines", "cr\r"]) {
    history = history.add(line);
  }
  assert.deepEqual(history.entries, ["b", "c", "d"]);
  let big = new InputHistory();
  for (let i = 0; i < HISTORY_DEFAULTS.limit + 50; i++) big = big.add(`line ${i}`);
  assert.equal(big.size, HISTORY_DEFAULTS.limit);
  assert.equal(big.entries[0], "line 50");
  assert.equal(big.add("z".repeat(HISTORY_DEFAULTS.maxLineLength + 1)), big);
});

Deno.test("history: Up and Down walk the entries, then back to the typed line", () => {
  const history = new InputHistory(["one", "two", "three"]);
  assert.deepEqual(upAll(history), ["three", "two", "one"]);
  assert.equal(history.older(0), undefined);
  assert.equal(history.newer(0), 1);
  assert.equal(history.newer(1), 2);
  assert.equal(history.newer(2), undefined);
  assert.equal(new InputHistory().older(0), undefined);
  assert.equal(history.older(99), 2);
});

Deno.test("history: Up with text typed finds only lines starting with it", () => {
  const history = new InputHistory([
    "/msg bob hi",
    "/who",
    "/msg carol yo",
    "/msg bob how are you",
    "/msg b",
  ]);
  assert.deepEqual(upAll(history, "/msg b"), ["/msg bob how are you", "/msg bob hi"]);
  assert.deepEqual(upAll(history, "/msg c"), ["/msg carol yo"]);
  assert.deepEqual(upAll(history, "/zzz"), []);
  assert.equal(history.newer(0, "/msg b"), 3);
});

Deno.test("history: Ctrl-R finds substrings from the newest, again and again", () => {
  const history = new InputHistory([
    "/play Cats.mp4",
    "/msg bob cats!",
    "/who",
    "/msg carol I like CATS",
  ]);
  const first = history.search("cats");
  assert.deepEqual(first, { index: 3, line: "/msg carol I like CATS", start: 18, end: 22 });
  const second = history.search("cats", { before: first!.index });
  assert.deepEqual(second, { index: 1, line: "/msg bob cats!", start: 9, end: 13 });
  const third = history.search("cats", { before: second!.index });
  assert.equal(third?.index, 0);
  assert.equal(history.search("cats", { before: third!.index }), undefined);
  // A capital letter makes the search exact.
  assert.equal(history.search("CATS")?.index, 3);
  assert.equal(history.search("Cats")?.index, 0);
  assert.equal(history.search("nothing"), undefined);
  assert.equal(history.search(""), undefined);
});

Deno.test("history: Ctrl-R by prefix", () => {
  const history = new InputHistory(["/msg bob hi", "/who", "say /msg"]);
  assert.equal(history.search("/msg", { mode: "prefix" })?.line, "/msg bob hi");
  assert.equal(history.search("/msg")?.line, "say /msg");
  assert.equal(history.search("/WHO", { mode: "prefix" }), undefined);
});

Deno.test("history: toLines and fromLines round-trip, and clean up what was stored", () => {
  const history = new InputHistory(["/who", "héllo 日本 👍🏽", "/msg bob  two  spaces "]);
  assert.deepEqual(InputHistory.fromLines(history.toLines()).entries, history.entries);
  const stored = ["/who", "", "/videos\r", "/who", "x".repeat(5000), "last"];
  assert.deepEqual(InputHistory.fromLines(stored).entries, ["/videos", "/who", "last"]);
  const many = Array.from({ length: 5000 }, (_, i) => `l${i}`);
  const limited = InputHistory.fromLines(many, { limit: 10 });
  assert.deepEqual(limited.entries, many.slice(-10));
});

Deno.test("history: adding never changes the history it was called on", () => {
  const before = new InputHistory(["a"]);
  const after = before.add("b");
  assert.deepEqual(before.entries, ["a"]);
  assert.deepEqual(after.entries, ["a", "b"]);
});
