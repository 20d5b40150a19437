import assert from "node:assert/strict";
import {
  applyKey,
  charWidth,
  drawAbove,
  drawPrompt,
  type EditorState,
  emptyEditor,
  graphemes,
  type Key,
  KeyDecoder,
  type KeyResult,
  lineText,
  MAX_HISTORY,
  renderPrompt,
  textWidth,
} from "../client/tui/line_editor.ts";

const bytes = (text: string) => new TextEncoder().encode(text);

/** Decodes `input` as typed bytes and applies every key; returns the last result and all submits. */
function type(input: string, start: EditorState = emptyEditor()) {
  const decoder = new KeyDecoder();
  let result: KeyResult = { state: start };
  const submitted: string[] = [];
  for (const key of decoder.feed(bytes(input))) {
    result = applyKey(result.state, key);
    if (result.submit !== undefined) submitted.push(result.submit);
  }
  return { ...result, submitted, text: lineText(result.state), cursor: result.state.cursor };
}

Deno.test("keys: printable text, UTF-8 and control keys", () => {
  const keys = new KeyDecoder().feed(bytes("hé日👍\x7f\x01\x05\x15\x17\x03\x04\r"));
  assert.deepEqual(keys, [
    { kind: "text", text: "hé日👍" },
    { kind: "backspace" },
    { kind: "ctrl-a" },
    { kind: "ctrl-e" },
    { kind: "ctrl-u" },
    { kind: "ctrl-w" },
    { kind: "ctrl-c" },
    { kind: "ctrl-d" },
    { kind: "enter" },
  ]);
});

Deno.test("keys: escape sequences, CSI and SS3", () => {
  const keys = new KeyDecoder().feed(
    bytes("\x1b[A\x1b[B\x1b[C\x1b[D\x1b[H\x1b[F\x1bOH\x1bOF\x1b[1~\x1b[4~\x1b[3~\x1b[1;5D\x1b[99Z"),
  );
  assert.deepEqual(keys.map((key) => key.kind), [
    "up",
    "down",
    "right",
    "left",
    "home",
    "end",
    "home",
    "end",
    "home",
    "end",
    "delete",
    "word-left",
    "unknown",
  ]);
});

Deno.test("keys: sequences and characters split across reads", () => {
  const decoder = new KeyDecoder();
  const euro = bytes("€"); // three bytes
  assert.deepEqual(decoder.feed(euro.subarray(0, 1)), []);
  assert.deepEqual(decoder.feed(euro.subarray(1)), [{ kind: "text", text: "€" }]);
  assert.deepEqual(decoder.feed(bytes("\x1b")), []);
  assert.deepEqual(decoder.feed(bytes("[")), []);
  assert.deepEqual(decoder.feed(bytes("1;5")), []);
  assert.deepEqual(decoder.feed(bytes("Cx")), [{ kind: "word-right" }, {
    kind: "text",
    text: "x",
  }]);
});

Deno.test("keys: CRLF is one Enter, LF alone is Enter", () => {
  const decoder = new KeyDecoder();
  assert.deepEqual(decoder.feed(bytes("a\r\nb\nc\r")).map((key) => key.kind), [
    "text",
    "enter",
    "text",
    "enter",
    "text",
    "enter",
  ]);
  assert.deepEqual(decoder.feed(bytes("\n")), [], "the LF of a CRLF split across reads");
});

Deno.test("editor: typing, moving and inserting in the middle", () => {
  const r = type("hllo\x1b[D\x1b[D\x1b[De");
  assert.equal(r.text, "hello");
  assert.equal(r.cursor, 2);
  assert.equal(type("world\x01hello \x05!").text, "hello world!");
  assert.equal(type("abc\x1b[H\x1b[C\x1b[3~").text, "ac", "Delete removes under the cursor");
});

Deno.test("editor: Backspace removes whole grapheme clusters", () => {
  assert.equal(type("ae\u0301\x7f").text, "a");
  assert.equal(type("ok👍🏽\x7f").text, "ok");
  assert.equal(type("x👨‍👩‍👧\x7f").text, "x");
  assert.deepEqual(graphemes("e\u0301👍🏽"), ["e\u0301", "👍🏽"]);
});

Deno.test("editor: nothing to do rings the bell and keeps the state", () => {
  const start = emptyEditor();
  for (const kind of ["backspace", "left", "right", "delete", "up", "down", "ctrl-w"] as const) {
    const result = applyKey(start, { kind });
    assert.equal(result.bell, true, kind);
    assert.equal(result.state, start, kind);
  }
});

Deno.test("editor: Ctrl-U clears before the cursor, Ctrl-K after, Ctrl-W deletes a word", () => {
  assert.equal(type("hello world\x1b[D\x1b[D\x15").text, "ld");
  assert.equal(type("hello world\x01\x1b[C\x0b").text, "h");
  assert.equal(type("/msg bob hello  \x17").text, "/msg bob ");
  assert.equal(type("/msg bob hello\x17\x17").text, "/msg ");
});

Deno.test("editor: Enter submits and clears; Ctrl-C and Ctrl-D quit", () => {
  const r = type("/who\r/msg bob hi\r");
  assert.deepEqual(r.submitted, ["/who", "/msg bob hi"]);
  assert.equal(r.text, "");
  assert.equal(applyKey(emptyEditor(), { kind: "ctrl-c" }).quit, "ctrl-c");
  assert.equal(type("typing\x03").quit, "ctrl-c");
  assert.equal(applyKey(emptyEditor(), { kind: "ctrl-d" }).quit, "ctrl-d");
  const notEmpty = type("ab\x01\x04");
  assert.equal(notEmpty.quit, undefined, "Ctrl-D on a line deletes forward");
  assert.equal(notEmpty.text, "b");
});

Deno.test("editor: Up and Down walk the history and bring the draft back", () => {
  let r = type("/who\r/videos\r\r/videos\r");
  assert.deepEqual(r.state.history.entries, ["/who", "/videos"], "no blanks, no repeats");
  const keys = (state: EditorState, ...kinds: Key["kind"][]) =>
    kinds.reduce((s, kind) => applyKey(s, { kind } as Key).state, state);
  let state = keys(type("/", r.state).state, "up");
  assert.equal(lineText(state), "/videos");
  assert.equal(state.cursor, "/videos".length);
  state = keys(state, "up");
  assert.equal(lineText(state), "/who");
  assert.equal(applyKey(state, { kind: "up" }).bell, true);
  state = keys(state, "down", "down");
  assert.equal(lineText(state), "/", "the draft comes back");
  assert.equal(applyKey(state, { kind: "down" }).bell, true);
  r = type("\x15\r", keys(r.state, "up", "up"));
  assert.deepEqual(r.submitted, [""], "Ctrl-U emptied the recalled line");
  r = type("\r", keys(r.state, "up", "up"));
  assert.deepEqual(r.submitted, ["/who"]);
  assert.deepEqual(r.state.history.entries, ["/videos", "/who"], "a line run again moves last");
});

Deno.test("editor: Up finds the lines that start with what was typed", () => {
  const state = type("/msg bob hi\r/who\r/msg carol yo\r/msg b").state;
  const up = applyKey(state, { kind: "up" });
  assert.equal(lineText(up.state), "/msg bob hi");
  assert.equal(applyKey(up.state, { kind: "up" }).bell, true);
});

Deno.test("editor: Ctrl-R searches older and older, Enter runs, Ctrl-G gives the draft back", () => {
  const start = type("/play cats.mp4\r/msg bob cats!\r/who\rdra").state;
  let r = type("\x12cat", start);
  assert.equal(r.text, "/msg bob cats!");
  assert.deepEqual(r.state.search, { query: "cat", index: 1 });
  assert.equal(renderPrompt(r.state, "> ", 80).text, "(search) 'cat': /msg bob cats!");
  r = type("\x12", r.state);
  assert.equal(r.text, "/play cats.mp4");
  assert.equal(type("\x12", r.state).bell, true, "no older match");
  assert.deepEqual(type("\r", r.state).submitted, ["/play cats.mp4"]);
  const cancelled = type("\x07", r.state);
  assert.equal(cancelled.text, "dra");
  assert.equal(cancelled.state.search, undefined);
  const edited = type("\x1b[F!", type("\x12who", start).state);
  assert.equal(edited.text, "/who!", "another key keeps the match and edits it");
  assert.equal(type("\x12zzz", start).bell, true);
});

Deno.test("editor: history is bounded", () => {
  let state = emptyEditor();
  for (let i = 0; i < MAX_HISTORY + 10; i++) state = type(`/msg bob ${i}\r`, state).state;
  assert.equal(state.history.size, MAX_HISTORY);
  assert.equal(state.history.entries[0], "/msg bob 10");
});

Deno.test("render: prompt, text and cursor column with wide characters", () => {
  assert.equal(charWidth("a"), 1);
  assert.equal(charWidth("日"), 2);
  assert.equal(charWidth("👍🏽"), 2);
  assert.equal(textWidth("日本a"), 5);
  const state = type("日本語\x1b[D").state;
  assert.deepEqual(renderPrompt(state, "> ", 80), { text: "> 日本語", cursorColumn: 6 });
});

Deno.test("render: long lines scroll so the cursor stays visible and nothing wraps", () => {
  const state = type("abcdefghijklmnopqrstuvwxyz").state;
  const view = renderPrompt(state, "> ", 12);
  assert.ok(textWidth(view.text) <= 11, view.text);
  assert.equal(view.text, "> rstuvwxyz");
  assert.equal(view.cursorColumn, 11);
  const home = renderPrompt(applyKey(state, { kind: "home" }).state, "> ", 12);
  assert.deepEqual(home, { text: "> abcdefghi", cursorColumn: 2 });
});

Deno.test("render: the bytes to draw the prompt and to print above it", () => {
  assert.equal(drawPrompt({ text: "> hi", cursorColumn: 4 }), "\r\x1b[2K> hi\r\x1b[4C");
  assert.equal(drawPrompt({ text: "", cursorColumn: 0 }), "\r\x1b[2K\r");
  assert.equal(
    drawAbove("one\ntwo", { text: "> hi", cursorColumn: 3 }),
    "\r\x1b[2Kone\r\ntwo\r\n\r\x1b[2K> hi\r\x1b[3C",
  );
});
