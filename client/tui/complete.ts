/**
 * Tab completion and forgiving look-ups for what a person types.
 *
 * - {@linkcode complete}: the word under the cursor becomes a command after `/`, a name where
 *   the command table expects a `name` argument (and in free text), or a video name where it
 *   expects a `video` argument (the rest of the line, spaces included).
 * - {@linkcode suggestCommand}: the "did you mean /msg?" for an unknown command.
 * - {@linkcode findVideo}: `/play test` finds `test.mp4`; an unknown name lists close ones.
 *
 * Everything ignores case and compares whole grapheme clusters, so `CAFÉ` completes `café.mp4`
 * whether the accent is one code point or two. The command table is read through the small
 * {@linkcode CompletableCommand} shape, which the rows of `COMMAND_SPECS` already have.
 *
 * We wrote the edit distance ourselves: the npm packages for Damerau-Levenshtein are untyped
 * CommonJS, and we need an early exit once the distance passes a small limit, so a long line
 * compared with a long catalog stays cheap.
 *
 * @module
 */

import { UsageError } from "../../shared/errors.ts";
import { sanitizeForDisplay } from "./sanitize.ts";
import { graphemes } from "./width.ts";

/** An argument as completion reads it: `name` and `video` complete, others are free text. */
export interface CompletableArg {
  /** `name` (one word, a person), `video` (the rest of the line, a video) or free text. */
  readonly kind: string;
}

/** What completion needs from a row of the command table. */
export interface CompletableCommand {
  /** The name typed after `/`. */
  readonly command: string;
  /** Other spellings. */
  readonly aliases: readonly string[];
  /** The arguments in order; a `video` or free-text argument takes the rest of the line. */
  readonly args: readonly CompletableArg[];
}

/** Everything that can be completed. */
export interface CompletionSources {
  /** The command table. */
  commands: readonly CompletableCommand[];
  /** Names of the people online. */
  names: readonly string[];
  /** Names of the server's videos. */
  videos: readonly string[];
}

/** The outcome of pressing Tab. */
export interface Completion {
  /** The line after completion; the same line when nothing could be added. */
  line: string;
  /** The cursor after completion, as an index into `line` (UTF-16 code units). */
  cursor: number;
  /** Every candidate that matched, sorted; commands with their `/`. Show it when longer than 1. */
  matches: string[];
}

type Kind = "command" | "name" | "video";

/** The word being completed: `line.slice(start, end)`, matched on `line.slice(start, cursor)`. */
interface Target {
  kind: Kind;
  start: number;
  end: number;
  /** An empty word in free text completes nothing; in an argument slot it lists everything. */
  freeText: boolean;
}

/**
 * Completes the word under the cursor. A unique match replaces the word (commands and names
 * get a trailing space); several matches extend it to their longest common prefix and are
 * returned in `matches` to be shown; no match leaves the line as it is (ring the bell).
 * Candidates that would put control or invisible characters into the line are never offered.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { complete } from "./complete.ts";
 * const sources = {
 *   commands: [
 *     { command: "msg", aliases: [], args: [{ kind: "name" }, { kind: "rest" }] },
 *     { command: "play", aliases: [], args: [{ kind: "video" }] },
 *   ],
 *   names: ["alice", "bob", "bobby"],
 *   videos: ["My Cats.mp4"],
 * };
 * assert.deepEqual(complete("/ms", 3, sources), { line: "/msg ", cursor: 5, matches: ["/msg"] });
 * assert.equal(complete("/msg al", 7, sources).line, "/msg alice ");
 * assert.deepEqual(complete("/msg b", 6, sources), {
 *   line: "/msg bob",
 *   cursor: 8,
 *   matches: ["bob", "bobby"],
 * });
 * assert.equal(complete("/play my c", 10, sources).line, "/play My Cats.mp4");
 * ```
 */
export function complete(line: string, cursor: number, sources: CompletionSources): Completion {
  const at = Math.max(0, Math.min(cursor, line.length));
  const unchanged: Completion = { line, cursor: at, matches: [] };
  const target = findTarget(line, at, sources.commands);
  const prefix = target ? line.slice(target.start, at) : "";
  if (!target || (target.freeText && prefix === "")) return unchanged;
  const matches = matchPrefix(prefix, candidates(target.kind, sources));
  if (matches.length === 0) return unchanged;
  const shown = target.kind === "command" ? matches.map((match) => "/" + match) : matches;
  if (matches.length === 1) return { ...replaceWord(line, target, matches[0]), matches: shown };
  const common = commonPrefix(prefix, matches);
  const next = line.slice(0, target.start) + common + line.slice(at);
  return { line: next, cursor: target.start + common.length, matches: shown };
}

function candidates(kind: Kind, sources: CompletionSources): string[] {
  const pool = kind === "command"
    ? sources.commands.flatMap((spec) => [spec.command, ...spec.aliases])
    : kind === "name"
    ? sources.names
    : sources.videos;
  return pool.filter(isSafeToInsert);
}

/** A server's name for a video must not put escape or invisible characters into the prompt. */
function isSafeToInsert(candidate: string): boolean {
  return candidate !== "" &&
    sanitizeForDisplay(candidate, { maxBlankRun: Infinity, maxMarks: Infinity }) === candidate;
}

/** What the cursor is in: the command word, an argument, or a word of free text. */
function findTarget(
  line: string,
  cursor: number,
  commands: readonly CompletableCommand[],
): Target | undefined {
  const lead = line.length - line.trimStart().length;
  if (line[lead] !== "/") return wordAt(line, cursor, "name", true);
  const start = lead + 1;
  const end = wordEnd(line, start);
  if (cursor < start) return undefined;
  if (cursor <= end) return { kind: "command", start, end, freeText: false };
  const spec = findCommand(line.slice(start, end), commands);
  return spec ? argumentAt(line, cursor, end, spec) : undefined;
}

/** The argument slot the cursor is in, after the command word that ends at `from`. */
function argumentAt(
  line: string,
  cursor: number,
  from: number,
  spec: CompletableCommand,
): Target | undefined {
  let at = from;
  for (const arg of spec.args) {
    const start = Math.min(wordStart(line, at), cursor);
    if (arg.kind === "video") return { kind: "video", start, end: line.length, freeText: false };
    if (arg.kind !== "name") return wordAt(line, cursor, "name", true);
    const end = wordEnd(line, start);
    if (cursor <= end) return { kind: "name", start, end, freeText: false };
    at = end;
  }
  return undefined;
}

/** The word around the cursor (possibly empty). */
function wordAt(line: string, cursor: number, kind: Kind, freeText: boolean): Target {
  let start = cursor;
  while (start > 0 && !/\s/.test(line[start - 1])) start--;
  return { kind, start, end: wordEnd(line, cursor), freeText };
}

function wordStart(line: string, from: number): number {
  let at = from;
  while (at < line.length && /\s/.test(line[at])) at++;
  return at;
}

function wordEnd(line: string, from: number): number {
  let at = from;
  while (at < line.length && !/\s/.test(line[at])) at++;
  return at;
}

function findCommand(
  word: string,
  commands: readonly CompletableCommand[],
): CompletableCommand | undefined {
  const key = word.toLowerCase();
  return commands.find((spec) => spec.command === key || spec.aliases.includes(key));
}

/** Graphemes compared without case and without regard to how accents are encoded. */
function folded(text: string): string[] {
  return graphemes(text).map((char) => char.normalize("NFC").toLowerCase());
}

/** The candidates that start with `prefix`, ignoring case; sorted, without duplicates. */
function matchPrefix(prefix: string, pool: readonly string[]): string[] {
  const want = folded(prefix);
  const found = pool.filter((candidate) => {
    const have = folded(candidate);
    return want.every((char, i) => have[i] === char);
  });
  return [...new Set(found)].sort(byFolded);
}

function byFolded(a: string, b: string): number {
  const [x, y] = [a.toLowerCase(), b.toLowerCase()];
  return x < y ? -1 : x > y ? 1 : a < b ? -1 : a > b ? 1 : 0;
}

/**
 * The longest prefix the matches share, ignoring case. It is spelled as the matches spell it
 * when they all agree, else as typed followed by the first match's spelling.
 */
function commonPrefix(typed: string, matches: readonly string[]): string {
  const split = matches.map(graphemes);
  const fold = matches.map(folded);
  let length = 0;
  while (fold.every((chars) => length < chars.length && chars[length] === fold[0][length])) {
    length++;
  }
  const exact = split.every((chars) =>
    chars.slice(0, length).join("") === split[0].slice(0, length).join("")
  );
  if (exact) return split[0].slice(0, length).join("");
  return typed + split[0].slice(graphemes(typed).length, length).join("");
}

/** Replaces the whole word with a unique match; commands and names get one trailing space. */
function replaceWord(line: string, target: Target, match: string): Omit<Completion, "matches"> {
  const before = line.slice(0, target.start) + match;
  if (target.kind === "video") return { line: before, cursor: before.length };
  const after = line.slice(target.end);
  return {
    line: before + (after.startsWith(" ") ? after : " " + after),
    cursor: before.length + 1,
  };
}

/**
 * The distance between two strings in edits (insert, delete, replace, or swap two neighbours),
 * counted over grapheme clusters: the optimal-string-alignment form of Damerau-Levenshtein.
 * Past `limit` it stops counting and returns `limit + 1`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { editDistance } from "./complete.ts";
 * assert.equal(editDistance("mgs", "msg"), 1);
 * assert.equal(editDistance("kitten", "sitting"), 3);
 * assert.equal(editDistance("kitten", "sitting", 1), 2);
 * ```
 */
export function editDistance(a: string, b: string, limit = Infinity): number {
  const x = graphemes(a);
  const y = graphemes(b);
  if (Math.abs(x.length - y.length) > limit) return limit + 1;
  let before: number[] = [];
  let previous = Array.from({ length: y.length + 1 }, (_, j) => j);
  for (let i = 1; i <= x.length; i++) {
    const row = [i];
    for (let j = 1; j <= y.length; j++) {
      const cost = x[i - 1] === y[j - 1] ? 0 : 1;
      row[j] = Math.min(previous[j] + 1, row[j - 1] + 1, previous[j - 1] + cost);
      if (i > 1 && j > 1 && x[i - 1] === y[j - 2] && x[i - 2] === y[j - 1]) {
        row[j] = Math.min(row[j], before[j - 2] + 1);
      }
    }
    if (Math.min(...row) > limit) return limit + 1;
    [before, previous] = [previous, row];
  }
  return Math.min(previous[y.length], limit + 1);
}

/** How far a typed command may be from a real one: one edit, two from five letters on. */
function allowedEdits(word: string): number {
  return graphemes(word).length >= 5 ? 2 : 1;
}

/**
 * The command a mistyped one was probably meant to be, with its `/`, or `undefined`. A unique
 * prefix wins (`/vid` → `/videos`), then the closest spelling within one or two edits (`/mgs`
 * → `/msg`); a tie goes to the command listed first.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { suggestCommand } from "./complete.ts";
 * const commands = [
 *   { command: "msg", aliases: [] },
 *   { command: "videos", aliases: [] },
 *   { command: "quit", aliases: ["exit"] },
 * ];
 * assert.equal(suggestCommand("/mgs", commands), "/msg");
 * assert.equal(suggestCommand("vid", commands), "/videos");
 * assert.equal(suggestCommand("/exti", commands), "/exit");
 * assert.equal(suggestCommand("/zzz", commands), undefined);
 * ```
 */
export function suggestCommand(
  typed: string,
  commands: readonly Pick<CompletableCommand, "command" | "aliases">[],
): string | undefined {
  const word = typed.trim().replace(/^\//, "").toLowerCase();
  if (word === "") return undefined;
  const spellings = commands.flatMap((spec) => [spec.command, ...spec.aliases]);
  const prefixed = spellings.filter((name) => name.startsWith(word));
  if (prefixed.length === 1) return "/" + prefixed[0];
  const limit = allowedEdits(word);
  let best: string | undefined;
  let bestDistance = limit + 1;
  for (const name of spellings) {
    const distance = editDistance(word, name, limit);
    if (distance < bestDistance) [best, bestDistance] = [name, distance];
  }
  return best === undefined ? undefined : "/" + best;
}

/** How many names an error message lists. */
const LISTED = 5;

/**
 * The catalog name a person meant: the exact name, else the only one equal without case,
 * else the only one it starts, else the only one equal without its extension (`test` finds
 * `test.mp4`). Throws a {@linkcode UsageError} (`ambiguous-video` or `unknown-video`) that lists
 * the candidates or the closest names.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { findVideo } from "./complete.ts";
 * const videos = ["test.mp4", "testing.mkv", "My Cats.mp4"];
 * assert.equal(findVideo("test", videos), "test.mp4");
 * assert.equal(findVideo("my cats", videos), "My Cats.mp4");
 * assert.equal(findVideo("TESTI", videos), "testing.mkv");
 * ```
 */
export function findVideo(query: string, names: readonly string[]): string {
  const want = fold(query.trim());
  if (want === "") throw new UsageError("Missing VIDEO. Usage: /play VIDEO", "usage");
  if (names.includes(query)) return query;
  const rules = [
    (name: string) => fold(name) === want,
    (name: string) => fold(name).startsWith(want),
    (name: string) => fold(stem(name)) === want,
  ];
  let several: string[] = [];
  for (const rule of rules) {
    const found = names.filter(rule);
    if (found.length === 1) return found[0];
    if (found.length > 1 && several.length === 0) several = found;
  }
  if (several.length > 1) {
    throw new UsageError(
      `Video ${quote(query)} could be ${listOf(several)}: type more of the name`,
      "ambiguous-video",
    );
  }
  const close = closeVideos(want, names);
  const hint = close.length > 0 ? `Did you mean ${listOf(close)}?` : "Type /videos for the list";
  throw new UsageError(`No video called ${quote(query)}. ${hint}`, "unknown-video");
}

function fold(text: string): string {
  return text.normalize("NFC").toLowerCase();
}

/** The name without its extension: `test.mp4` → `test`; `.hidden` stays. */
function stem(name: string): string {
  const dot = name.lastIndexOf(".");
  return dot > 0 ? name.slice(0, dot) : name;
}

/** Names within a few edits of the query (with or without extension), or containing it. */
function closeVideos(want: string, names: readonly string[]): string[] {
  const limit = Math.max(2, Math.floor(graphemes(want).length / 4));
  const scored = names.map((name) => {
    const distance = Math.min(
      editDistance(want, fold(name), limit),
      editDistance(want, fold(stem(name)), limit),
    );
    return { name, distance: fold(name).includes(want) ? 0 : distance };
  });
  return scored.filter((entry) => entry.distance <= limit)
    .sort((a, b) => a.distance - b.distance || byFolded(a.name, b.name))
    .map((entry) => entry.name);
}

function quote(text: string): string {
  return JSON.stringify(text.length > 60 ? `${text.slice(0, 60)}…` : text);
}

/** `"a", "b" or "c"`, with at most {@linkcode LISTED} names and a count of the rest. */
function listOf(names: readonly string[]): string {
  const shown = names.slice(0, LISTED).map(quote);
  const more = names.length - shown.length;
  if (more > 0) return `${shown.join(", ")} or ${more} more`;
  return shown.length === 1 ? shown[0] : `${shown.slice(0, -1).join(", ")} or ${shown.at(-1)}`;
}
