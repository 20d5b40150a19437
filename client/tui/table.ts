/**
 * A table that fits the terminal: `/who`, `/videos` and the like at 60 columns as well as 200.
 *
 * Columns start at their natural width (the widest cell). When the table is too wide, the
 * columns with the lowest priority shrink first, the widest of them first, down to their
 * minimum; when even the minimums do not fit, the lowest-priority columns are left out
 * (rightmost first among equals). Short columns (10 or fewer) are shown whole or not at all.
 * Cells are cut with … by display width, so CJK and emoji line up. Columns of numbers (`42`,
 * `1:23`, `29.97`, `12 MiB`) are right-aligned.
 *
 * Every cell and header goes through `sanitizeForDisplay`, so cells from peers or the server
 * can be passed as they are. Color the lines afterwards, not the cells.
 *
 * We wrote our own: the npm table packages (`cli-table3`, `table`) take fixed column widths;
 * none fits a table to a given width by shrinking and leaving out columns by priority.
 *
 * @module
 */

import { sanitizeForDisplay } from "./sanitize.ts";
import { displayWidth, padToWidth, truncateToWidth } from "./width.ts";

/** One column of a {@linkcode renderTable} table. */
export interface TableColumn {
  /** The header, e.g. `NAME`. */
  header: string;
  /** `end` right-aligns. Default: `end` when every non-empty cell looks like a number. */
  align?: "start" | "end";
  /** Higher is kept longer: the lowest priority shrinks, then goes, first. Default 0. */
  priority?: number;
  /**
   * The narrowest the column gets before it is left out. Default 10, or the natural width of
   * a narrower column: cutting `1920x1080` to `1920x…` saves little and loses the value.
   */
  minWidth?: number;
}

/** Columns are separated by this many spaces. */
export const COLUMN_GAP = 2;

const DEFAULT_MIN_WIDTH = 10;

// A number, a duration or a size: 42, -3, 29.97, 1,024, 1:02:05, 12 MiB, 720p, 50%.
const NUMERIC = /^[+-]?\d[\d.,:]*(?: ?[A-Za-z%]{1,3})?$/;

interface Layout {
  /** Indexes of the columns shown, in order. */
  shown: number[];
  /** The width of each shown column. */
  widths: number[];
}

/**
 * Renders rows under a header line, at most `width` columns wide. Returns the lines, header
 * first; no line ends in spaces.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { renderTable } from "./table.ts";
 * const rows = [["cats.mp4", "4:56"], ["a long video name.mkv", "1:02:05"]];
 * assert.deepEqual(renderTable(["VIDEO", "LENGTH"], rows, 24), [
 *   "VIDEO             LENGTH",
 *   "cats.mp4            4:56",
 *   "a long video n…  1:02:05",
 * ]);
 * const columns = [{ header: "NAME", priority: 1 }, { header: "FINGERPRINT" }];
 * assert.deepEqual(renderTable(columns, [["alice", "aaaa:bbbb:cccc:dddd"]], 12), [
 *   "NAME",
 *   "alice",
 * ]);
 * ```
 */
export function renderTable(
  columns: readonly (TableColumn | string)[],
  rows: readonly (readonly string[])[],
  width: number,
): string[] {
  const specs = columns.map((column) => typeof column === "string" ? { header: column } : column);
  const headers = specs.map((spec) => sanitizeForDisplay(spec.header));
  const cells = rows.map((row) => specs.map((_, i) => sanitizeForDisplay(row[i] ?? "")));
  const natural = specs.map((_, i) =>
    Math.max(displayWidth(headers[i]), ...cells.map((row) => displayWidth(row[i])))
  );
  const align = specs.map((spec, i) => spec.align ?? numericAlign(cells.map((row) => row[i])));
  const layout = fitColumns(specs, natural, Math.max(0, Math.floor(width)));
  return [headers, ...cells].map((row) => {
    const drawn = layout.shown.map((column, k) => {
      const cell = truncateToWidth(row[column], layout.widths[k]);
      return padToWidth(cell, layout.widths[k], align[column]);
    });
    return drawn.join(" ".repeat(COLUMN_GAP)).trimEnd();
  });
}

function numericAlign(column: readonly string[]): "start" | "end" {
  const filled = column.filter((cell) => cell !== "");
  return filled.length > 0 && filled.every((cell) => NUMERIC.test(cell)) ? "end" : "start";
}

/** Which columns to show and how wide, so that the table fits `width`. */
function fitColumns(specs: readonly TableColumn[], natural: number[], width: number): Layout {
  const priority = (i: number) => specs[i].priority ?? 0;
  const minimum = natural.map((n, i) => Math.min(n, specs[i].minWidth ?? DEFAULT_MIN_WIDTH));
  const total = (columns: number[], widths: (i: number) => number) =>
    columns.reduce((sum, i) => sum + widths(i), 0) + COLUMN_GAP * (columns.length - 1);
  const shown = specs.map((_, i) => i);
  while (shown.length > 1 && total(shown, (i) => minimum[i]) > width) {
    shown.splice(shown.indexOf(leastImportant(shown, priority)), 1);
  }
  const widths = new Map(shown.map((i) => [i, natural[i]]));
  let over = total(shown, (i) => widths.get(i)!) - width;
  while (over > 0) {
    const shrinkable = shown.filter((i) => widths.get(i)! > minimum[i]);
    if (shrinkable.length === 0) break;
    const lowest = Math.min(...shrinkable.map(priority));
    const candidates = shrinkable.filter((i) => priority(i) === lowest);
    // The widest of the least important shrinks by one column at a time, so equals even out.
    const widest = candidates.reduce((a, b) => (widths.get(b)! >= widths.get(a)! ? b : a));
    widths.set(widest, widths.get(widest)! - 1);
    over--;
  }
  // One column left and still too wide: it is cut to the width.
  if (over > 0 && shown.length === 1) widths.set(shown[0], width);
  return { shown, widths: shown.map((i) => widths.get(i)!) };
}

/** The column with the lowest priority; the rightmost among equals. */
function leastImportant(shown: readonly number[], priority: (i: number) => number): number {
  return shown.reduce((a, b) => (priority(b) <= priority(a) ? b : a));
}
