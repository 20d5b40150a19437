/**
 * The lines a person typed, for Up/Down and Ctrl-R: an immutable, bounded list, oldest first.
 *
 * - A line typed again moves to the end instead of being kept twice, so browsing and
 *   searching never show the same line twice in a row.
 * - Blank lines, lines longer than `maxLineLength` and lines with a line break are not kept
 *   (they could not be stored as one line); past `limit` entries the oldest go.
 * - {@linkcode InputHistory.older} and {@linkcode InputHistory.newer} step through the entries
 *   that start with what was typed before browsing began (as in zsh), so `/msg b` then Up
 *   finds the last message to bob.
 * - {@linkcode InputHistory.search} is Ctrl-R: the newest entry before a position that
 *   contains (or starts with) the query, ignoring case unless the query has a capital.
 *
 * No I/O: {@linkcode InputHistory.toLines} and {@linkcode InputHistory.fromLines} give and take
 * the lines; where they are stored is the caller's business.
 *
 * @module
 */

/** Limits of a history. */
export interface HistoryOptions {
  /** The most entries kept (default 1000); the oldest go first. */
  limit?: number;
  /** The longest line kept, in UTF-16 code units (default 4096); longer ones are not kept. */
  maxLineLength?: number;
}

/** The defaults of {@linkcode HistoryOptions}. */
export const HISTORY_DEFAULTS: Readonly<Required<HistoryOptions>> = {
  limit: 1000,
  maxLineLength: 4096,
};

/** How a query matches an entry. */
export type SearchMode = "substring" | "prefix";

/** An entry found by {@linkcode InputHistory.search}. */
export interface HistoryMatch {
  /** The entry's index, 0 being the oldest. */
  index: number;
  /** The entry. */
  line: string;
  /** Where the query matched in `line` (UTF-16 code units), to highlight it. */
  start: number;
  /** Where the match ends in `line`. */
  end: number;
}

/**
 * An immutable input history.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { InputHistory } from "./history.ts";
 * let history = new InputHistory();
 * history = history.add("/msg bob hi").add("/who").add("/msg bob hi");
 * assert.deepEqual(history.entries, ["/who", "/msg bob hi"]);
 * assert.equal(history.search("WHO"), undefined);
 * assert.deepEqual(history.search("who"), { index: 0, line: "/who", start: 1, end: 4 });
 * ```
 */
export class InputHistory {
  /** The entries, oldest first. */
  readonly entries: readonly string[];
  readonly #options: Readonly<Required<HistoryOptions>>;

  /** A history of `entries` (oldest first), applying the rules: duplicates, length, limit. */
  constructor(entries: Iterable<string> = [], options: HistoryOptions = {}) {
    this.#options = { ...HISTORY_DEFAULTS, ...options };
    this.entries = normalize([...entries], this.#options);
  }

  /**
   * A history read from stored lines (oldest first); a trailing CR is ignored, lines that
   * could not have been typed are skipped.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { InputHistory } from "./history.ts";
   * const stored = ["/who", "", "/who", "/videos\r"];
   * assert.deepEqual(InputHistory.fromLines(stored).entries, ["/who", "/videos"]);
   * ```
   */
  static fromLines(lines: Iterable<string>, options: HistoryOptions = {}): InputHistory {
    return new InputHistory(Array.from(lines, (line) => line.replace(/\r$/, "")), options);
  }

  /**
   * The lines to store, oldest first, one entry each; {@linkcode InputHistory.fromLines} reads
   * them back.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { InputHistory } from "./history.ts";
   * assert.deepEqual(new InputHistory(["/who", "hello"]).toLines(), ["/who", "hello"]);
   * ```
   */
  toLines(): string[] {
    return [...this.entries];
  }

  /** How many entries there are; also the index that stands for the line being typed. */
  get size(): number {
    return this.entries.length;
  }

  /**
   * The history with `line` added as the newest entry (moved there if it was already in);
   * the same history when the line is not to be kept.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { InputHistory } from "./history.ts";
   * const history = new InputHistory(["a", "b"]);
   * assert.deepEqual(history.add("a").entries, ["b", "a"]);
   * assert.equal(history.add("   "), history);
   * ```
   */
  add(line: string): InputHistory {
    if (!keepable(line, this.#options) || this.entries.at(-1) === line) return this;
    return new InputHistory([...this.entries, line], this.#options);
  }

  /**
   * For Up: the index of the newest entry before `from` that starts with `prefix` and is not
   * just `prefix` itself, or `undefined` when there is none (ring the bell).
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { InputHistory } from "./history.ts";
   * const history = new InputHistory(["/msg bob hi", "/who", "/msg carol yo"]);
   * assert.equal(history.older(history.size), 2);
   * assert.equal(history.older(history.size, "/msg b"), 0);
   * ```
   */
  older(from: number, prefix = ""): number | undefined {
    for (let i = Math.min(from, this.size) - 1; i >= 0; i--) {
      if (this.#browsable(i, prefix)) return i;
    }
    return undefined;
  }

  /**
   * For Down: the index of the oldest entry after `from` that starts with `prefix`, or
   * `undefined` when there is none (go back to the line being typed).
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { InputHistory } from "./history.ts";
   * const history = new InputHistory(["/msg bob hi", "/who", "/msg bob yo"]);
   * assert.equal(history.newer(0, "/msg"), 2);
   * assert.equal(history.newer(2, "/msg"), undefined);
   * ```
   */
  newer(from: number, prefix = ""): number | undefined {
    for (let i = Math.max(from, -1) + 1; i < this.size; i++) {
      if (this.#browsable(i, prefix)) return i;
    }
    return undefined;
  }

  #browsable(index: number, prefix: string): boolean {
    const entry = this.entries[index];
    return entry.startsWith(prefix) && entry !== prefix;
  }

  /**
   * For Ctrl-R: the newest entry before index `before` (default: all of them) that contains
   * the query (`substring`, the default) or starts with it (`prefix`). A query with no
   * capital letter ignores case. Press Ctrl-R again with `before` set to the match's index to
   * find the next older one.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { InputHistory } from "./history.ts";
   * const history = new InputHistory(["/play Cats.mp4", "/msg bob cats!", "/who"]);
   * assert.equal(history.search("cats")?.index, 1);
   * assert.equal(history.search("cats", { before: 1 })?.index, 0);
   * assert.equal(history.search("/m", { mode: "prefix" })?.line, "/msg bob cats!");
   * ```
   */
  search(
    query: string,
    options: { before?: number; mode?: SearchMode } = {},
  ): HistoryMatch | undefined {
    if (query === "") return undefined;
    const exact = query !== query.toLowerCase();
    for (let i = Math.min(options.before ?? this.size, this.size) - 1; i >= 0; i--) {
      const line = this.entries[i];
      const start = find(line, query, exact, options.mode ?? "substring");
      if (start >= 0) return { index: i, line, start, end: start + query.length };
    }
    return undefined;
  }
}

/** Where `query` is in `line`, or -1. */
function find(line: string, query: string, exact: boolean, mode: SearchMode): number {
  // Lower-casing keeps positions only when it keeps the length (not for "İ", for example).
  const folded = exact ? line : line.toLowerCase();
  const text = folded.length === line.length ? folded : line;
  if (mode === "prefix") return text.startsWith(query) ? 0 : -1;
  return text.indexOf(query);
}

function keepable(line: string, options: Required<HistoryOptions>): boolean {
  return line.trim() !== "" && line.length <= options.maxLineLength && !/[\r\n]/.test(line);
}

/** Keeps the last copy of each line, at most `limit` of them, oldest first. */
function normalize(lines: readonly string[], options: Required<HistoryOptions>): string[] {
  const seen = new Set<string>();
  const kept: string[] = [];
  for (let i = lines.length - 1; i >= 0 && kept.length < options.limit; i--) {
    const line = lines[i];
    if (seen.has(line) || !keepable(line, options)) continue;
    seen.add(line);
    kept.push(line);
  }
  return kept.reverse();
}
