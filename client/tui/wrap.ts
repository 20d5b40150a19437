/**
 * Word wrapping by terminal display width.
 *
 * {@linkcode wrapText} breaks at spaces, breaks a word wider than a line between grapheme
 * clusters (never inside `é` or `👍🏽`), and starts every line after the first with an indent.
 * That indent is a safety property, not only layout: a continuation line always begins with
 * it, so text that a peer wrote can never appear at the start of a row and pass for a new
 * `[12:00] bob: …` line. Newlines in the input start a new, indented line too. This holds as
 * long as the terminal draws characters as wide as we measure them, which is why invisible
 * characters, whose width terminals disagree on, are removed by sanitizing first.
 *
 * The text should have been through `sanitizeForDisplay` (sanitize.ts) first; color codes added
 * by the formatter afterwards are fine (they take no columns and are never split).
 *
 * We wrote our own because the npm wrappers do not do this: `wrap-ansi` has no continuation
 * indent, and `word-wrap` indents every line (the first too) and counts characters, not
 * columns.
 *
 * @module
 */

import { type DisplayUnit, displayUnits, displayWidth } from "./width.ts";

/** How to wrap. */
export interface WrapOptions {
  /** The most columns a line may take (the caller usually passes the terminal's columns - 1). */
  width: number;
  /** Continuation lines start with this many spaces, or with this text (default 2 spaces). */
  indent?: number | string;
}

/** The default continuation indent, in spaces. */
export const DEFAULT_INDENT = 2;

/** A run of non-blank units and the blanks before it. */
interface Word {
  gap: number;
  units: DisplayUnit[];
  width: number;
}

/**
 * Wraps text to `width` columns. Every line but the first starts with the indent, which must be
 * at least one column wide. No line is wider than `width`, unless `width` is smaller than the
 * indent plus two columns (room for one wide character): then that is the width used.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { wrapText } from "./wrap.ts";
 * assert.deepEqual(wrapText("[12:00] bob: the quick brown fox jumps", { width: 20 }), [
 *   "[12:00] bob: the",
 *   "  quick brown fox",
 *   "  jumps",
 * ]);
 * assert.deepEqual(wrapText("日本語のテキストです", { width: 9, indent: 1 }), [
 *   "日本語の",
 *   " テキスト",
 *   " です",
 * ]);
 * ```
 */
export function wrapText(text: string, options: WrapOptions): string[] {
  const indent = typeof options.indent === "string"
    ? options.indent
    : " ".repeat(options.indent ?? DEFAULT_INDENT);
  const indentWidth = displayWidth(indent);
  if (indentWidth < 1) {
    throw new RangeError(`Indent ${JSON.stringify(indent)} must take at least one column`);
  }
  const width = Math.max(Math.floor(options.width), indentWidth + 2);
  const lines: string[] = [];
  text.split("\n").forEach((paragraph, i) => {
    wrapParagraph(paragraph, i === 0 ? "" : indent, { width, indent, indentWidth }, lines);
  });
  return lines;
}

interface Layout {
  width: number;
  indent: string;
  indentWidth: number;
}

/** Appends the lines of one paragraph (text without newlines) to `lines`. */
function wrapParagraph(text: string, first: string, layout: Layout, lines: string[]): void {
  const { width, indent, indentWidth } = layout;
  let line = first;
  let start = displayWidth(first);
  let used = start;
  let broken = false;
  const breakLine = () => {
    lines.push(line);
    [line, start, used, broken] = [indent, indentWidth, indentWidth, true];
  };
  for (const word of words(text)) {
    // A word that fits on a line of its own goes to the next line; a longer one is cut anyway,
    // so it starts here and fills this line first.
    const fits = used + word.gap + word.width <= width;
    if (used > start && !fits && indentWidth + word.width <= width) {
      breakLine();
    }
    // Blanks at a break are dropped; blanks that start the text are kept while they leave room.
    const gap = broken && used === start ? 0 : Math.min(word.gap, Math.max(0, width - used - 1));
    line += " ".repeat(gap);
    used += gap;
    for (const unit of word.units) {
      if (used + unit.width > width && used > start) breakLine();
      line += unit.text;
      used += unit.width;
    }
  }
  lines.push(line);
}

/** Splits a paragraph into words, each with the count of blanks before it. */
function words(text: string): Word[] {
  const result: Word[] = [];
  let gap = 0;
  let current: Word | undefined;
  for (const unit of displayUnits(text)) {
    if (unit.text === " ") {
      gap++;
      current = undefined;
      continue;
    }
    if (!current) {
      current = { gap, units: [], width: 0 };
      result.push(current);
      gap = 0;
    }
    current.units.push(unit);
    current.width += unit.width;
  }
  return result;
}
