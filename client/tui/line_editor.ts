/**
 * The pure part of the interactive prompt: bytes from a raw terminal become {@linkcode Key}s,
 * a key turns one {@linkcode EditorState} into the next, and a state renders to the text and
 * escape sequences to draw. Nothing here touches a terminal, so all of it is unit-testable;
 * `terminal.ts` does the I/O.
 *
 * The buffer is a list of grapheme clusters, so Backspace removes a whole "é" or "👍🏽" rather
 * than half of one, and the cursor never lands inside a character. Column widths come from
 * `npm:string-width`.
 *
 * Ours rather than a library's: the readline-style packages on npm own the terminal (raw mode,
 * stdin, their own output), while reelay prints event lines above a prompt that must survive
 * them, from one writer, and tests every key as a pure state change. What a line editor needs on
 * top of that (a key decoder and a dozen editing keys) is this file.
 *
 * @module
 */

import stringWidth from "string-width";
import { InputHistory } from "./history.ts";

/** Keys with a name; everything printable arrives as `{ kind: "text" }`. */
export type NamedKey =
  | "enter"
  | "backspace"
  | "delete"
  | "left"
  | "right"
  | "word-left"
  | "word-right"
  | "home"
  | "end"
  | "up"
  | "down"
  | "ctrl-a"
  | "ctrl-b"
  | "ctrl-c"
  | "ctrl-d"
  | "ctrl-e"
  | "ctrl-f"
  | "ctrl-k"
  | "ctrl-l"
  | "ctrl-u"
  | "ctrl-w"
  | "ctrl-r"
  | "ctrl-g"
  | "tab"
  | "alt-backspace"
  | "unknown";

/** One key press, or a run of printable text (typed or pasted). */
export type Key = { kind: "text"; text: string } | { kind: NamedKey };

const CONTROL_KEYS: Readonly<Record<number, NamedKey>> = {
  0x01: "ctrl-a",
  0x02: "ctrl-b",
  0x03: "ctrl-c",
  0x04: "ctrl-d",
  0x05: "ctrl-e",
  0x06: "ctrl-f",
  0x07: "ctrl-g",
  0x08: "backspace",
  0x09: "tab",
  0x0b: "ctrl-k",
  0x0c: "ctrl-l",
  0x12: "ctrl-r",
  0x15: "ctrl-u",
  0x17: "ctrl-w",
  0x7f: "backspace",
};

/**
 * Keys a terminal sends as a final letter, after CSI (`ESC [`) or, in application-cursor mode,
 * after SS3 (`ESC O`).
 */
const CURSOR_KEYS: Readonly<Record<string, NamedKey>> = {
  "A": "up",
  "B": "down",
  "C": "right",
  "D": "left",
  "H": "home",
  "F": "end",
};

/** CSI sequences by their final byte and parameters (`ESC [ params final`). */
const CSI_KEYS: Readonly<Record<string, NamedKey>> = {
  ...CURSOR_KEYS,
  "1;5C": "word-right",
  "1;5D": "word-left",
  "1;3C": "word-right",
  "1;3D": "word-left",
  "1~": "home",
  "7~": "home",
  "4~": "end",
  "8~": "end",
  "3~": "delete",
};

/** SS3 sequences (`ESC O x`), sent by some terminals in application-cursor mode. */
const SS3_KEYS = CURSOR_KEYS;

/** Meta (Alt) combinations (`ESC x`). */
const META_KEYS: Readonly<Record<string, NamedKey>> = {
  "b": "word-left",
  "f": "word-right",
  "\x7f": "alt-backspace",
};

/**
 * Turns raw terminal bytes into keys. It keeps state between chunks because a read may end in
 * the middle of a UTF-8 character or of an escape sequence.
 *
 * @example
 * ```ts
 * import { KeyDecoder } from "./line_editor.ts";
 * const keys = new KeyDecoder();
 * keys.feed(new TextEncoder().encode("hé\x1b[D\r"));
 * // [{ kind: "text", text: "hé" }, { kind: "left" }, { kind: "enter" }]
 * ```
 */
export class KeyDecoder {
  #utf8 = new TextDecoder("utf-8", { fatal: false });
  #pending = "";
  #afterCR = false;

  /** Decodes one chunk; an incomplete sequence at its end waits for the next chunk. */
  feed(bytes: Uint8Array): Key[] {
    const text = this.#pending + this.#utf8.decode(bytes, { stream: true });
    this.#pending = "";
    const keys: Key[] = [];
    let at = 0;
    while (at < text.length) {
      const step = this.#next(text, at);
      if (!step) {
        this.#pending = text.slice(at);
        break;
      }
      if (step.key) pushKey(keys, step.key);
      at = step.end;
    }
    return keys;
  }

  /** Reads one key at `at`; `undefined` when the text ends inside a sequence. */
  #next(text: string, at: number): { key?: Key; end: number } | undefined {
    const char = text[at];
    const afterCR = this.#afterCR;
    this.#afterCR = char === "\r";
    if (char === "\x1b") return escapeSequence(text, at);
    // A "\r\n" pair (pasted Windows text) is one Enter, not two.
    if (char === "\n") return { key: afterCR ? undefined : { kind: "enter" }, end: at + 1 };
    if (char === "\r") return { key: { kind: "enter" }, end: at + 1 };
    const code = char.charCodeAt(0);
    if (code < 0x20 || code === 0x7f) {
      return { key: { kind: CONTROL_KEYS[code] ?? "unknown" }, end: at + 1 };
    }
    let end = at + 1;
    while (end < text.length && isPrintable(text.charCodeAt(end))) end++;
    return { key: { kind: "text", text: text.slice(at, end) }, end };
  }
}

function isPrintable(code: number): boolean {
  return code >= 0x20 && code !== 0x7f && code !== 0x1b;
}

/** Merges adjacent text runs so a paste split by a sequence boundary stays one insert. */
function pushKey(keys: Key[], key: Key): void {
  const last = keys.at(-1);
  if (key.kind === "text" && last?.kind === "text") {
    keys[keys.length - 1] = { kind: "text", text: last.text + key.text };
  } else {
    keys.push(key);
  }
}

function escapeSequence(text: string, at: number): { key: Key; end: number } | undefined {
  const kind = text[at + 1];
  if (kind === undefined) return undefined;
  if (kind === "[") {
    let end = at + 2;
    while (end < text.length && !isFinalByte(text.charCodeAt(end))) end++;
    if (end >= text.length) return undefined;
    const body = text.slice(at + 2, end + 1);
    return { key: { kind: CSI_KEYS[body] ?? "unknown" }, end: end + 1 };
  }
  if (kind === "O") {
    const final = text[at + 2];
    if (final === undefined) return undefined;
    return { key: { kind: SS3_KEYS[final] ?? "unknown" }, end: at + 3 };
  }
  return { key: { kind: META_KEYS[kind] ?? "unknown" }, end: at + 2 };
}

function isFinalByte(code: number): boolean {
  return code >= 0x40 && code <= 0x7e;
}

/** The editor's whole state; every key produces a new one. */
export interface EditorState {
  /** The line as grapheme clusters. */
  readonly chars: readonly string[];
  /** Index into `chars`, 0 to `chars.length`. */
  readonly cursor: number;
  /** Submitted lines (`InputHistory` keeps each once, bounded). */
  readonly history: InputHistory;
  /** Which history entry is shown; `history.size` means the line being typed. */
  readonly historyIndex: number;
  /** The line being typed, kept while browsing history; Up and Down find lines starting so. */
  readonly draft: string;
  /** Ctrl-R: searching the history for `query`; `index` is the entry shown, if any matched. */
  readonly search?: { readonly query: string; readonly index?: number };
}

/** What a key did besides changing the state. */
export interface KeyResult {
  /** The state after the key. */
  state: EditorState;
  /** A line was submitted with Enter. */
  submit?: string;
  /** The person asked to leave: Ctrl-C, or Ctrl-D on an empty line. */
  quit?: "ctrl-c" | "ctrl-d";
  /** The key did nothing (e.g. Backspace at the start): ring the bell. */
  bell?: boolean;
  /** Ctrl-L: clear the screen before redrawing. */
  clearScreen?: boolean;
}

/** How many submitted lines the history keeps. */
export const MAX_HISTORY = 1000;

const segmenter = new Intl.Segmenter(undefined, { granularity: "grapheme" });

/**
 * Splits text into grapheme clusters (what a person sees as one character).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { graphemes } from "./line_editor.ts";
 * assert.deepEqual(graphemes("e\u0301👍🏽"), ["e\u0301", "👍🏽"]);
 * ```
 */
export function graphemes(text: string): string[] {
  return Array.from(segmenter.segment(text), (part) => part.segment);
}

/**
 * A fresh, empty editor, optionally with earlier history.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { emptyEditor } from "./line_editor.ts";
 * assert.equal(emptyEditor(["/who"]).historyIndex, 1);
 * ```
 */
export function emptyEditor(history: InputHistory | readonly string[] = []): EditorState {
  const kept = history instanceof InputHistory
    ? history
    : new InputHistory(history, { limit: MAX_HISTORY });
  return { chars: [], cursor: 0, history: kept, historyIndex: kept.size, draft: "" };
}

/**
 * The text of the line being edited.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { emptyEditor, lineText } from "./line_editor.ts";
 * assert.equal(lineText(emptyEditor()), "");
 * ```
 */
export function lineText(state: EditorState): string {
  return state.chars.join("");
}

/**
 * Applies one key. Pure: returns the next state and what else happened.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { applyKey, emptyEditor } from "./line_editor.ts";
 * let state = applyKey(emptyEditor(), { kind: "text", text: "hi" }).state;
 * assert.equal(applyKey(state, { kind: "enter" }).submit, "hi");
 * ```
 */
export function applyKey(state: EditorState, key: Key): KeyResult {
  if (state.search) return searchKey(state, state.search, key);
  if (key.kind === "text") return insert(state, key.text);
  switch (key.kind) {
    case "ctrl-r":
      return startSearch(state);
    case "enter":
      return submit(state);
    case "ctrl-c":
      return { state, quit: "ctrl-c" };
    case "ctrl-d":
      return state.chars.length === 0 ? { state, quit: "ctrl-d" } : deleteForward(state);
    case "ctrl-l":
      return { state, clearScreen: true };
    case "up":
    case "down":
      return browse(state, key.kind === "up" ? -1 : 1);
    default:
      return edit(state, key.kind);
  }
}

/** Keys that only move the cursor or delete text. */
function edit(state: EditorState, key: NamedKey): KeyResult {
  const { chars, cursor } = state;
  switch (key) {
    case "left":
    case "ctrl-b":
      return moveTo(state, cursor - 1);
    case "right":
    case "ctrl-f":
      return moveTo(state, cursor + 1);
    case "home":
    case "ctrl-a":
      return moveTo(state, 0);
    case "end":
    case "ctrl-e":
      return moveTo(state, chars.length);
    case "word-left":
      return moveTo(state, wordStartBefore(chars, cursor));
    case "word-right":
      return moveTo(state, wordEndAfter(chars, cursor));
    case "backspace":
      return removeRange(state, cursor - 1, cursor);
    case "delete":
      return deleteForward(state);
    case "ctrl-u":
      return removeRange(state, 0, cursor);
    case "ctrl-k":
      return removeRange(state, cursor, chars.length);
    case "ctrl-w":
    case "alt-backspace":
      return removeRange(state, wordStartBefore(chars, cursor), cursor);
    default:
      return { state, bell: true };
  }
}

function insert(state: EditorState, text: string): KeyResult {
  const before = graphemes(state.chars.slice(0, state.cursor).join("") + text);
  const chars = [...before, ...state.chars.slice(state.cursor)];
  return { state: { ...state, chars, cursor: before.length } };
}

function submit(state: EditorState): KeyResult {
  const line = lineText(state);
  return { state: emptyEditor(state.history.add(line)), submit: line };
}

function moveTo(state: EditorState, cursor: number): KeyResult {
  if (cursor < 0 || cursor > state.chars.length) return { state, bell: true };
  return { state: { ...state, cursor } };
}

function deleteForward(state: EditorState): KeyResult {
  return removeRange(state, state.cursor, state.cursor + 1);
}

/** Removes `chars[from, to)`; the cursor ends at `from`. Rings when there is nothing to remove. */
function removeRange(state: EditorState, from: number, to: number): KeyResult {
  if (from < 0 || to > state.chars.length || from >= to) return { state, bell: true };
  const chars = [...state.chars.slice(0, from), ...state.chars.slice(to)];
  return { state: { ...state, chars, cursor: from } };
}

function isSpace(char: string | undefined): boolean {
  return char !== undefined && /^\s+$/.test(char);
}

/** Where Ctrl-W deletes back to: skip spaces, then the word before them. */
function wordStartBefore(chars: readonly string[], cursor: number): number {
  let at = cursor;
  while (at > 0 && isSpace(chars[at - 1])) at--;
  while (at > 0 && !isSpace(chars[at - 1])) at--;
  return at;
}

function wordEndAfter(chars: readonly string[], cursor: number): number {
  let at = cursor;
  while (at < chars.length && isSpace(chars[at])) at++;
  while (at < chars.length && !isSpace(chars[at])) at++;
  return at;
}

/**
 * Up (-1) and Down (+1) through the entries that start with the draft (the line as it was when
 * browsing began, as in zsh); Down past the newest brings the draft back.
 */
function browse(state: EditorState, step: -1 | 1): KeyResult {
  const { history } = state;
  const browsing = state.historyIndex < history.size;
  const draft = browsing ? state.draft : lineText(state);
  const found = step < 0
    ? history.older(state.historyIndex, draft)
    : history.newer(state.historyIndex, draft);
  if (found === undefined && (step < 0 || !browsing)) return { state, bell: true };
  const index = found ?? history.size;
  const chars = graphemes(found === undefined ? draft : history.entries[found]);
  return { state: { ...state, chars, cursor: chars.length, historyIndex: index, draft } };
}

/** Ctrl-R: search the history, newest first; the line typed so far comes back on Ctrl-G. */
function startSearch(state: EditorState): KeyResult {
  const draft = state.historyIndex < state.history.size ? state.draft : lineText(state);
  return { state: { ...state, draft, search: { query: "" } } };
}

/**
 * A key while searching: text and Backspace change the query, Ctrl-R finds the next older
 * match, Enter runs the match, Ctrl-G or Ctrl-C gives the draft back, and any other key keeps
 * the match to edit and then does what it does.
 */
function searchKey(
  state: EditorState,
  search: NonNullable<EditorState["search"]>,
  key: Key,
): KeyResult {
  switch (key.kind) {
    case "text":
      return findMatch(state, search.query + key.text);
    case "backspace":
      return findMatch(state, graphemes(search.query).slice(0, -1).join(""));
    case "ctrl-r":
      return findMatch(state, search.query, search.index);
    case "ctrl-g":
    case "ctrl-c": {
      const chars = graphemes(state.draft);
      const restored = { ...state, chars, cursor: chars.length, search: undefined };
      return { state: { ...restored, historyIndex: state.history.size } };
    }
    case "enter":
      return submit({ ...state, search: undefined });
    default:
      return applyKey({ ...state, search: undefined, historyIndex: state.history.size }, key);
  }
}

/** Shows the newest entry (before `before`) containing `query`; rings when there is none. */
function findMatch(state: EditorState, query: string, before?: number): KeyResult {
  const match = state.history.search(query, { before });
  if (!match) {
    const search = { query, index: before === undefined ? undefined : state.search?.index };
    return { state: { ...state, search }, bell: query !== "" };
  }
  const chars = graphemes(match.line);
  const cursor = graphemes(match.line.slice(0, match.start)).length;
  return { state: { ...state, chars, cursor, search: { query, index: match.index } } };
}

/**
 * How many terminal columns a grapheme cluster takes: 2 for wide (CJK, emoji), 0 for control
 * and zero-width characters, 1 otherwise.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { charWidth } from "./line_editor.ts";
 * assert.equal(charWidth("a"), 1);
 * assert.equal(charWidth("日"), 2);
 * assert.equal(charWidth("👍🏽"), 2);
 * ```
 */
export function charWidth(char: string): number {
  return stringWidth(char);
}

/**
 * The width of a string in terminal columns.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { textWidth } from "./line_editor.ts";
 * assert.equal(textWidth("héllo"), 5);
 * ```
 */
export function textWidth(text: string): number {
  return stringWidth(text);
}

/** What to show on the prompt row. */
export interface PromptView {
  /** Prompt plus the visible part of the line; never wider than the terminal. */
  text: string;
  /** The cursor's column, counted from 0. */
  cursorColumn: number;
}

/**
 * Renders the prompt row for a terminal `columns` wide. A line too long to fit scrolls
 * sideways so the cursor stays visible; the row never wraps, which is what lets one
 * `\r\x1b[2K` erase it whole.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { applyKey, emptyEditor, renderPrompt } from "./line_editor.ts";
 * const state = applyKey(emptyEditor(), { kind: "text", text: "hi" }).state;
 * assert.deepEqual(renderPrompt(state, "> ", 80), { text: "> hi", cursorColumn: 4 });
 * ```
 */
export function renderPrompt(
  state: EditorState,
  normalPrompt: string,
  columns: number,
): PromptView {
  const prompt = state.search ? `(search) '${state.search.query}': ` : normalPrompt;
  const promptWidth = textWidth(prompt);
  // The last column stays empty: writing there makes some terminals wrap early.
  const room = Math.max(1, columns - promptWidth - 1);
  const widths = state.chars.map(charWidth);
  const sum = (from: number, to: number) => widths.slice(from, to).reduce((a, b) => a + b, 0);
  let start = 0;
  while (start < state.cursor && sum(start, state.cursor) > room) start++;
  let end = start;
  let used = 0;
  while (end < widths.length && used + widths[end] <= room) used += widths[end++];
  return {
    text: prompt + state.chars.slice(start, end).join(""),
    cursorColumn: promptWidth + sum(start, state.cursor),
  };
}

/** Erases the current terminal row and returns the cursor to its start. */
export const CLEAR_ROW = "\r\x1b[2K";

/**
 * The bytes that redraw the prompt row: erase it, write it, put the cursor in place.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { drawPrompt } from "./line_editor.ts";
 * assert.equal(drawPrompt({ text: "> hi", cursorColumn: 3 }), "\r\x1b[2K> hi\r\x1b[3C");
 * ```
 */
export function drawPrompt(view: PromptView): string {
  const move = view.cursorColumn > 0 ? `\x1b[${view.cursorColumn}C` : "";
  return `${CLEAR_ROW}${view.text}\r${move}`;
}

/**
 * The bytes that show `text` above the prompt: erase the prompt row, write the text (each of
 * its lines ends with CRLF, because raw mode may not turn LF into CRLF), then redraw the prompt.
 *
 * @example
 * ```ts
 * import { drawAbove } from "./line_editor.ts";
 * drawAbove("bob: hi", { text: "> ", cursorColumn: 2 });
 * // "\r\x1b[2Kbob: hi\r\n\r\x1b[2K> \r\x1b[2C"
 * ```
 */
export function drawAbove(text: string, view: PromptView): string {
  const lines = text.split(/\r?\n/).map((line) => line + "\r\n").join("");
  return `${CLEAR_ROW}${lines}${drawPrompt(view)}`;
}
