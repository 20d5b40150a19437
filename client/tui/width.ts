/**
 * How many terminal columns text takes, and cutting or padding it to a number of columns.
 *
 * Widths come from `string-width`, which follows Unicode's grapheme clusters and East Asian
 * Width: `日` and `👍🏽` take two columns, `e` plus a combining accent takes one, zero-width and
 * control characters take none. ANSI color codes (SGR, `ESC [ … m`) take none either, so text the
 * formatter has already colored measures as what is seen.
 *
 * A string is handled as a list of {@linkcode DisplayUnit}s: grapheme clusters and color codes.
 * Nothing here ever cuts inside one, so a cut never leaves half an emoji or half an escape code.
 *
 * Input should already have been through `sanitizeForDisplay` (sanitize.ts): terminals disagree
 * on the width of the invisible characters it removes, and a width we under-count is a line that
 * overflows the terminal's row.
 *
 * @module
 */

import stringWidth from "string-width";

/** One thing drawn on the terminal: a grapheme cluster, or a color code of width 0. */
export interface DisplayUnit {
  /** The characters of the unit. */
  readonly text: string;
  /** Columns it takes: 0, 1 or 2. */
  readonly width: number;
}

const segmenter = new Intl.Segmenter(undefined, { granularity: "grapheme" });

// deno-lint-ignore no-control-regex -- color codes start with ESC
const SGR = /\x1b\[[0-9;:]*m/g;

/**
 * The width of text in terminal columns; color codes count zero.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { displayWidth } from "./width.ts";
 * assert.equal(displayWidth("abc"), 3);
 * assert.equal(displayWidth("日本"), 4);
 * assert.equal(displayWidth("👍🏽"), 2);
 * assert.equal(displayWidth("e\u0301"), 1);
 * assert.equal(displayWidth("\x1b[1mbob\x1b[0m"), 3);
 * ```
 */
export function displayWidth(text: string): number {
  return stringWidth(text);
}

/**
 * Splits text into grapheme clusters: what a person sees as one character.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { graphemes } from "./width.ts";
 * assert.deepEqual(graphemes("e\u0301👍🏽!"), ["e\u0301", "👍🏽", "!"]);
 * ```
 */
export function graphemes(text: string): string[] {
  return Array.from(segmenter.segment(text), (part) => part.segment);
}

/**
 * Splits text into the units drawn on the terminal, each with its width.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { displayUnits } from "./width.ts";
 * assert.deepEqual(displayUnits("\x1b[1m日a"), [
 *   { text: "\x1b[1m", width: 0 },
 *   { text: "日", width: 2 },
 *   { text: "a", width: 1 },
 * ]);
 * ```
 */
export function displayUnits(text: string): DisplayUnit[] {
  const units: DisplayUnit[] = [];
  let at = 0;
  for (const code of text.matchAll(SGR)) {
    pushGraphemes(units, text.slice(at, code.index));
    units.push({ text: code[0], width: 0 });
    at = code.index + code[0].length;
  }
  pushGraphemes(units, text.slice(at));
  return units;
}

function pushGraphemes(units: DisplayUnit[], text: string): void {
  for (const { segment } of segmenter.segment(text)) {
    units.push({ text: segment, width: stringWidth(segment) });
  }
}

/** The ellipsis that marks cut text. */
export const ELLIPSIS = "…";

/**
 * Cuts text to at most `width` columns, ending it with `ellipsis` when something was cut. Color
 * codes in the cut part are kept (after the ellipsis), so a color that was closed stays closed.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { truncateToWidth } from "./width.ts";
 * assert.equal(truncateToWidth("hello world", 8), "hello w…");
 * assert.equal(truncateToWidth("日本語テキスト", 7), "日本語…");
 * assert.equal(truncateToWidth("short", 10), "short");
 * ```
 */
export function truncateToWidth(text: string, width: number, ellipsis = ELLIPSIS): string {
  if (displayWidth(text) <= width) return text;
  const room = width - displayWidth(ellipsis);
  if (room < 0) return "";
  let kept = "";
  let codes = "";
  let used = 0;
  let cut = false;
  for (const unit of displayUnits(text)) {
    if (unit.width === 0 && unit.text.startsWith("\x1b")) {
      if (cut) codes += unit.text;
      else kept += unit.text;
    } else if (!cut && used + unit.width <= room) {
      kept += unit.text;
      used += unit.width;
    } else {
      cut = true;
    }
  }
  return kept + ellipsis + codes;
}

/**
 * Pads text with spaces to `width` columns, on the right (`start`, the default) or on the left
 * (`end`, for numbers). Text already as wide or wider is returned as is.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { padToWidth } from "./width.ts";
 * assert.equal(padToWidth("日本", 5), "日本 ");
 * assert.equal(padToWidth("42", 5, "end"), "   42");
 * ```
 */
export function padToWidth(text: string, width: number, align: "start" | "end" = "start"): string {
  const pad = " ".repeat(Math.max(0, width - displayWidth(text)));
  return align === "start" ? text + pad : pad + text;
}
