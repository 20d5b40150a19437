/**
 * What the benchmark groups return, and how the results are shown: a plain-text table on stdout
 * and the generated part of `docs/benchmarks.md`.
 *
 * @module
 */

import type { MachineInfo } from "./_procs.ts";
import { ratios, summarize, type Summary } from "./_stats.ts";

/** An aim for a figure: its median ratio (or value) compared with a target. */
export interface Aim {
  /** Which number the aim is about. */
  on: "ratio" | "value";
  op: "<=" | ">=";
  target: number;
}

/** One measured figure: reelay's value, the baseline measured in the same run, their ratio. */
export interface Figure {
  /** What is measured, e.g. `720p frames/s`. */
  name: string;
  /** reelay's value over the repetitions. */
  value: Summary;
  unit: string;
  /** The baseline it is compared with, measured in the same run. */
  baseline?: { label: string; value: Summary; unit: string };
  /** Per-repetition ratios value/baseline (or as `ratioLabel` says). */
  ratio?: Summary;
  /** What the ratio is, e.g. `reelay ÷ ffmpeg`. */
  ratioLabel?: string;
  aim?: Aim;
  /** Shown in the report when the aim is missed: why, and what would close the gap. */
  whyMissed?: string;
}

/** A figure's repetitions and its baseline's, measured in turn in the same run, in one unit. */
export interface Comparison
  extends Pick<Figure, "name" | "unit" | "ratioLabel" | "aim" | "whyMissed"> {
  values: readonly number[];
  baseline: { label: string; values: readonly number[] };
}

/** The figure of a comparison: both sides summarized, and the ratio of each repetition. */
export function compared(comparison: Comparison): Figure {
  const { values, baseline, ...rest } = comparison;
  return {
    ...rest,
    value: summarize(values),
    baseline: { label: baseline.label, value: summarize(baseline.values), unit: rest.unit },
    ratio: summarize(ratios(values, baseline.values)),
  };
}

/** A group of figures with a description of how they were measured. */
export interface GroupResult {
  title: string;
  /** How the figures were measured (markdown, one paragraph per entry). */
  method: string[];
  figures: Figure[];
  /** Findings worth reporting (misbehaviour seen while measuring, sizes, etc.). */
  findings: string[];
  /** Wall time the group took, in seconds. */
  seconds: number;
}

/** Everything one run produced. */
export interface RunReport {
  machine: MachineInfo;
  date: string;
  command: string;
  totalSeconds: number;
  /** /proc/loadavg at the start and at the end (the machine may be shared). */
  load: { start: string; end: string };
  groups: GroupResult[];
}

/** A number shown with about three significant digits. */
export function formatNumber(value: number): string {
  if (!Number.isFinite(value)) return String(value);
  const abs = Math.abs(value);
  if (abs >= 1000) return Math.round(value).toLocaleString("en-US");
  if (abs >= 100) return value.toFixed(0);
  if (abs >= 10) return value.toFixed(1);
  if (abs >= 1) return value.toFixed(2);
  if (abs === 0) return "0";
  if (abs >= 0.01) return value.toFixed(3);
  return value.toPrecision(2);
}

/** `median (min–max)`. */
export function formatSummary(summary: Summary, unit = ""): string {
  const suffix = unit ? ` ${unit}` : "";
  if (summary.n <= 1 || summary.min === summary.max) {
    return `${formatNumber(summary.median)}${suffix}`;
  }
  return `${formatNumber(summary.median)}${suffix} (${formatNumber(summary.min)}–${
    formatNumber(summary.max)
  })`;
}

/** Whether a figure meets its aim (undefined when it has none or nothing to judge). */
export function meetsAim(figure: Figure): boolean | undefined {
  const aim = figure.aim;
  if (!aim) return undefined;
  const summary = aim.on === "ratio" ? figure.ratio : figure.value;
  if (!summary || !Number.isFinite(summary.median)) return false;
  return aim.op === "<=" ? summary.median <= aim.target : summary.median >= aim.target;
}

function aimText(figure: Figure): string {
  const aim = figure.aim;
  if (!aim) return "";
  const op = aim.op === "<=" ? "≤" : "≥";
  const what = aim.on === "ratio" ? "ratio" : figure.unit;
  return aim.on === "ratio" ? `${what} ${op} ${aim.target}` : `${op} ${aim.target} ${what}`;
}

function verdict(figure: Figure): string {
  const met = meetsAim(figure);
  return met === undefined ? "" : met ? "met" : "MISSED";
}

function rows(group: GroupResult): string[][] {
  return group.figures.map((figure) => [
    figure.name,
    formatSummary(figure.value, figure.unit),
    figure.baseline
      ? `${figure.baseline.label}: ${formatSummary(figure.baseline.value, figure.baseline.unit)}`
      : "",
    figure.ratio ? formatSummary(figure.ratio) : "",
    aimText(figure),
    verdict(figure),
  ]);
}

const HEADERS = ["figure", "reelay", "baseline (same run)", "ratio", "aim", ""];

/** The results as a plain-text table for the terminal. */
export function textTable(report: RunReport): string {
  const lines: string[] = [];
  for (const group of report.groups) {
    const body = rows(group);
    const widths = HEADERS.map((header, i) =>
      Math.max(header.length, ...body.map((row) => row[i].length))
    );
    const line = (cells: string[]) =>
      cells.map((cell, i) => cell.padEnd(widths[i])).join("  ").trimEnd();
    lines.push("", `== ${group.title} (${group.seconds.toFixed(1)} s)`);
    lines.push(line(HEADERS), line(widths.map((width) => "-".repeat(width))));
    for (const row of body) lines.push(line(row));
    for (const finding of group.findings) lines.push(`  * ${finding}`);
  }
  lines.push(
    "",
    `Total: ${report.totalSeconds.toFixed(1)} s; load average ${report.load.start} at the ` +
      `start, ${report.load.end} at the end`,
  );
  return lines.join("\n");
}

function escapeCell(text: string): string {
  return text.replaceAll("|", "\\|");
}

function gib(bytes: number): string {
  return `${(bytes / 2 ** 30).toFixed(1)} GiB`;
}

/** The generated part of docs/benchmarks.md. */
export function markdown(report: RunReport): string {
  const { machine } = report;
  const out: string[] = [];
  out.push(
    `Generated by \`${report.command}\` on ${report.date}; the whole run took ` +
      `${report.totalSeconds.toFixed(0)} s.`,
    "",
    "| machine | |",
    "|---|---|",
    `| CPU | ${machine.cpuModel}, ${machine.cores} cores |`,
    `| memory | ${gib(machine.memoryBytes)} |`,
    `| OS | ${machine.os} |`,
    `| Deno | ${machine.deno} (V8 ${machine.v8}) |`,
    `| ffmpeg | ${machine.ffmpeg} |`,
    `| load average (1, 5, 15 min) | ${report.load.start} at the start, ${report.load.end} at the end |`,
    "",
    "Each figure is the median of its repetitions with (min–max); each ratio is computed per " +
      "repetition against the baseline measured next to it in the same run.",
  );
  for (const group of report.groups) {
    out.push("", `### ${group.title}`, "");
    out.push(`| ${HEADERS.slice(0, 5).join(" | ")} | verdict |`);
    out.push(`|${HEADERS.map(() => "---").join("|")}|`);
    for (const row of rows(group)) out.push(`| ${row.map(escapeCell).join(" | ")} |`);
    out.push("");
    for (const paragraph of group.method) out.push(paragraph, "");
    for (const finding of group.findings) out.push(`- ${finding}`);
    if (group.findings.length > 0) out.push("");
    const missed = group.figures.filter((figure) => meetsAim(figure) === false);
    for (const figure of missed) {
      out.push(
        `**${figure.name} misses its aim (${aimText(figure)}).** ${
          figure.whyMissed ?? "No explanation recorded yet."
        }`,
        "",
      );
    }
    out.push(`(${group.seconds.toFixed(1)} s)`);
  }
  return out.join("\n");
}

const BEGIN = "<!-- bench:begin (generated by deno task bench; edit outside these markers) -->";
const END = "<!-- bench:end -->";

/**
 * Writes the generated part between the markers of `path`, keeping everything outside them
 * (a missing file is created with a title), then formats the file with `deno fmt`.
 */
export async function writeMarkdown(path: string, report: RunReport): Promise<void> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
    text = `# Benchmarks\n\n${BEGIN}\n${END}\n`;
  }
  const begin = text.indexOf(BEGIN);
  const end = text.indexOf(END);
  const generated = `${BEGIN}\n${markdown(report)}\n${END}`;
  const next = begin >= 0 && end > begin
    ? text.slice(0, begin) + generated + text.slice(end + END.length)
    : `${text.trimEnd()}\n\n${generated}\n`;
  await Deno.writeTextFile(path, next);
  // The repository checks markdown with `deno fmt --check`: leave the file formatted.
  const formatted = await new Deno.Command("deno", {
    args: ["fmt", "--quiet", path],
    stdin: "null",
    stdout: "null",
    stderr: "inherit",
  }).output();
  if (!formatted.success) throw new Error(`deno fmt ${path} failed`);
}
