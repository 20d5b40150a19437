/**
 * Makes untrusted text (messages, names, video names, error reasons from the server) safe to
 * draw on a terminal. Everything a peer or a server sends goes through
 * {@linkcode sanitizeForDisplay} before it is wrapped, measured or printed.
 *
 * What it defends against:
 * - **Terminal control**: C0 controls (ESC, BEL, CR, backspace…) become visible symbols (␛, ␇,
 *   ␍…), C1 controls (including the one-byte CSI, U+009B) become U+FFFD, so no escape sequence
 *   can move the cursor, clear the screen or recolor text: it shows as `␛[2J`.
 * - **Invisible characters**: zero-width characters, direction marks, bidi embeddings,
 *   overrides and isolates, word joiners, the byte-order mark, tag characters and every other
 *   default-ignorable or format character are removed. They hide text, make two strings that
 *   look equal differ, reorder what is shown, and terminals disagree on their width, so a line we
 *   measure as fitting could overflow its row. Variation selectors are kept only right after the
 *   character they modify (`❤️`), one per character.
 * - **Fake lines**: a run of more than `maxBlankRun` blanks (spaces, tabs, no-break and other
 *   Unicode spaces, the braille blank) becomes one visible {@linkcode BLANK_RUN_MARKER}, so
 *   padding cannot push text to the start of the next terminal row. Line and paragraph
 *   separators become ␤, and newlines show as ␊ unless the caller keeps them to wrap them
 *   (continuation lines are indented by `wrapText`).
 * - **Stacked accents** ("Zalgo" text) that spill over the rows above and below: at most
 *   `maxMarks` non-spacing marks are kept on one character.
 *
 * The emoji zero-width joiner is removed too: `👨‍👩‍👧` shows as `👨👩👧`. Terminals that do not
 * join such sequences draw them three times wider than `string-width` measures them, which is
 * exactly the under-count that lets a line overflow.
 *
 * We wrote this ourselves: the npm packages in this space (`strip-ansi`, `ansi-regex`) only
 * remove escape sequences, and neither handles invisible characters, blank runs or marks.
 *
 * @module
 */

/** What a run of more than `maxBlankRun` blanks becomes. */
export const BLANK_RUN_MARKER = " ␣ ";

/** How to sanitize. */
export interface SanitizeOptions {
  /** The longest run of blanks kept as spaces (default 4). Longer runs become the marker. */
  maxBlankRun?: number;
  /** `show` (default): a newline shows as ␊. `keep`: newlines (LF or CRLF) stay, for wrapText. */
  newlines?: "show" | "keep";
  /** The most non-spacing marks kept on one character (default 4). */
  maxMarks?: number;
}

/** The defaults of {@linkcode SanitizeOptions}. */
export const SANITIZE_DEFAULTS: Readonly<Required<SanitizeOptions>> = {
  maxBlankRun: 4,
  newlines: "show",
  maxMarks: 4,
};

const segmenter = new Intl.Segmenter(undefined, { granularity: "grapheme" });

// Printable ASCII without long space runs needs no work; most chat lines are like that.
const PLAIN_ASCII = /^[\x20-\x7e]*$/;
// deno-lint-ignore no-control-regex -- controls are what this file is about
const C0 = /^[\x00-\x1f\x7f]$/;
const C1 = /^[\x80-\x9f]$/;
const BLANK = /^[\p{Zs}\t\u2800]$/u;
const LINE_SEPARATOR = /^[\u2028\u2029]$/;
const VARIATION_SELECTOR = /^[\uFE00-\uFE0F\u{E0100}-\u{E01EF}]$/u;
const MARK = /^[\p{Mn}\p{Me}]$/u;
// Format characters are invisible except the prepended concatenation marks (ARABIC NUMBER
// SIGN and kin), which are drawn as visible signs.
const PREPENDED_MARKS = /^[\u0600-\u0605\u06DD\u0890\u0891\u08E2\u{110BD}\u{110CD}]$/u;
const INVISIBLE = /^[\p{Default_Ignorable_Code_Point}\p{Cf}]$/u;
// Characters that only extend the one before them; at the start of a cluster they are strays.
const EXTENDER = /^[\p{M}\p{Grapheme_Extend}\p{Emoji_Modifier}]$/u;

/**
 * Makes one piece of untrusted text safe to print. Idempotent: sanitizing twice gives the same.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { sanitizeForDisplay } from "./sanitize.ts";
 * assert.equal(sanitizeForDisplay("hi\x1b[2J"), "hi␛[2J");
 * assert.equal(sanitizeForDisplay("pay\u200Bpal\u202Egnp.exe"), "paypalgnp.exe");
 * const padded = "hi" + " ".repeat(200) + "[00:01] bob: hi";
 * assert.equal(sanitizeForDisplay(padded), "hi ␣ [00:01] bob: hi");
 * assert.equal(sanitizeForDisplay("❤️ 日本 👍🏽"), "❤️ 日本 👍🏽");
 * assert.equal(sanitizeForDisplay("one\ntwo"), "one␊two");
 * assert.equal(sanitizeForDisplay("one\r\ntwo", { newlines: "keep" }), "one\ntwo");
 * ```
 */
export function sanitizeForDisplay(text: string, options: SanitizeOptions = {}): string {
  const settings = { ...SANITIZE_DEFAULTS, ...options };
  if (PLAIN_ASCII.test(text) && !hasLongBlankRun(text, settings.maxBlankRun)) return text;
  let input = text.toWellFormed();
  if (settings.newlines === "keep") input = input.replaceAll("\r\n", "\n");
  const out: string[] = [];
  let blanks = 0;
  for (const { segment } of segmenter.segment(input)) {
    const cleaned = cleanCluster(segment, settings);
    if (cleaned === " ") {
      blanks++;
      continue;
    }
    if (cleaned === "") continue;
    out.push(blankRun(blanks, settings.maxBlankRun), cleaned);
    blanks = 0;
  }
  out.push(blankRun(blanks, settings.maxBlankRun));
  return out.join("");
}

function hasLongBlankRun(text: string, max: number): boolean {
  return Number.isFinite(max) && text.includes(" ".repeat(max + 1));
}

function blankRun(count: number, max: number): string {
  return count > max ? BLANK_RUN_MARKER : " ".repeat(count);
}

/**
 * One grapheme cluster made safe: `" "` for a blank, `""` when nothing visible is left, else
 * the characters to draw.
 */
function cleanCluster(cluster: string, settings: Required<SanitizeOptions>): string {
  let out = "";
  let hasBase = false;
  let marks = 0;
  let selector = false;
  for (const char of cluster) {
    if (hasBase) {
      if (VARIATION_SELECTOR.test(char)) {
        if (!selector) out += char;
        selector = true;
      } else if (INVISIBLE.test(char)) {
        continue;
      } else if (MARK.test(char)) {
        if (++marks <= settings.maxMarks) out += char;
      } else {
        out += BLANK.test(char) ? " " : char;
      }
      continue;
    }
    const base = cleanBase(char, settings);
    // What follows a dropped start only extends it (accents, joiners, tags): drop it all, or it
    // would attach to the text before it once printed, and sanitizing again would differ.
    if (base === undefined) return "";
    // Marks on a blank are dropped, so the blank still counts toward a run.
    if (base === " ") return " ";
    out += base;
    // A control shown as a symbol takes no marks; a CRLF pair shows as ␍␊.
    hasBase = base === char;
  }
  return out;
}

/** The first character of a cluster: its safe form, or `undefined` to drop the cluster. */
function cleanBase(char: string, settings: Required<SanitizeOptions>): string | undefined {
  if (char === "\n" && settings.newlines === "keep") return "\n";
  if (C0.test(char)) return char === "\t" ? " " : controlPicture(char);
  if (C1.test(char)) return "\uFFFD";
  if (BLANK.test(char)) return " ";
  if (LINE_SEPARATOR.test(char)) return "\u2424";
  if (PREPENDED_MARKS.test(char)) return char;
  if (INVISIBLE.test(char) || EXTENDER.test(char)) return undefined;
  return char;
}

/** ␀…␟ for C0 controls, ␡ for DEL. */
function controlPicture(char: string): string {
  const code = char.charCodeAt(0);
  return code === 0x7f ? "\u2421" : String.fromCharCode(0x2400 + code);
}
