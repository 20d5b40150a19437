/**
 * Human-readable lines for every {@linkcode ClientEvent}: what a person sees in the terminal.
 *
 * Text that came from other people (messages, names of videos, error reasons) is passed
 * through {@linkcode printable} first, so a peer cannot move the cursor, recolor the screen,
 * reorder or hide text with escape sequences, bidi controls or invisible characters, or fake a
 * line from someone else.
 *
 * @module
 */

import type { SegmentPlan, VideoListing } from "../../shared/protocol/mod.ts";
import type { ClientEvent, PeerView } from "../events.ts";
import { textWidth } from "./line_editor.ts";
import { sanitizeForDisplay } from "./sanitize.ts";
import { renderTable, type TableColumn } from "./table.ts";

/** How to format. */
export interface FormatOptions {
  /** Use ANSI colors (only when writing to a terminal, and not when NO_COLOR is set). */
  color: boolean;
  /** The width tables must fit (the terminal's columns - 1); `undefined`: no limit (pipes). */
  width?: () => number | undefined;
  /** Your own name, shown on your kept messages in `/history` (default `you`). */
  name?: string;
  /** The clock (ms): kept messages from another day show their date. Default `Date.now`. */
  now?: () => number;
}

type Paint = (text: string) => string;

interface Palette {
  red: Paint;
  yellow: Paint;
  green: Paint;
  dim: Paint;
  bold: Paint;
  loud: Paint;
}

function sgr(open: string): Paint {
  return (text) => `\x1b[${open}m${text}\x1b[0m`;
}

const COLORS: Palette = {
  red: sgr("31"),
  yellow: sgr("33"),
  green: sgr("32"),
  dim: sgr("2"),
  bold: sgr("1"),
  loud: sgr("1;97;41"),
};

const plain: Paint = (text) => text;
const NO_COLORS: Palette = {
  red: plain,
  yellow: plain,
  green: plain,
  dim: plain,
  bold: plain,
  loud: plain,
};

/**
 * Makes untrusted text safe to print with {@linkcode sanitizeForDisplay}: control characters
 * become visible symbols (␛ for ESC, ␇ for BEL…), C1 controls become U+FFFD, invisible
 * characters (zero-width, direction marks, tags) are removed, newlines show as ␊ and a long run
 * of blanks shows as one ␣ marker, so a message stays on its own line and cannot pad a fake
 * line from someone else onto the next terminal row.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { printable } from "./format.ts";
 * assert.equal(printable("hi\x1b[2J"), "hi␛[2J");
 * assert.equal(printable("a\u200Bl\u200Eice\nx"), "alice␊x");
 * ```
 */
export function printable(text: string): string {
  return sanitizeForDisplay(text);
}

/**
 * Seconds as `m:ss`, or `h:mm:ss` from one hour on.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatDuration } from "./format.ts";
 * assert.equal(formatDuration(123.9), "2:03");
 * assert.equal(formatDuration(3725), "1:02:05");
 * ```
 */
export function formatDuration(seconds: number): string {
  const total = Number.isFinite(seconds) && seconds > 0 ? Math.floor(seconds) : 0;
  const s = String(total % 60).padStart(2, "0");
  const minutes = Math.floor(total / 60);
  if (minutes < 60) return `${minutes}:${s}`;
  return `${Math.floor(minutes / 60)}:${String(minutes % 60).padStart(2, "0")}:${s}`;
}

/**
 * A wait or a time away, for people: `0.4 s` under ten seconds, then whole seconds, minutes
 * past two minutes, hours and minutes past two hours. The one human duration of the client.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatWait } from "./format.ts";
 * assert.equal(formatWait(380), "0.4 s");
 * assert.equal(formatWait(12_300), "12 s");
 * assert.equal(formatWait(600_000), "10 min");
 * assert.equal(formatWait(3_600_000), "60 min");
 * assert.equal(formatWait(7_500_000), "2 h 5 min");
 * ```
 */
export function formatWait(ms: number): string {
  const seconds = Math.max(0, ms) / 1000;
  if (seconds < 10) return `${Math.round(seconds * 10) / 10} s`;
  if (seconds < 120) return `${Math.round(seconds)} s`;
  const minutes = Math.round(seconds / 60);
  if (minutes < 120) return `${minutes} min`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB"];

/**
 * A byte count in binary units: `512 B`, `1.5 KiB`, `12 MiB`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatBytes } from "./format.ts";
 * assert.equal(formatBytes(1536), "1.5 KiB");
 * assert.equal(formatBytes(25 * 1024 * 1024), "25 MiB");
 * ```
 */
export function formatBytes(bytes: number): string {
  let value = Number.isFinite(bytes) && bytes > 0 ? bytes : 0;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  if (unit === 0) return `${value} B`;
  const shown = value < 10 ? value.toFixed(1).replace(/\.0$/, "") : String(Math.round(value));
  return `${shown} ${UNITS[unit]}`;
}

/**
 * Aligns rows into columns separated by two spaces; the last column is not padded.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatTable } from "./format.ts";
 * assert.equal(formatTable([["NAME", "TRUST"], ["alice", "new"]]), "NAME   TRUST\nalice  new");
 * ```
 */
export function formatTable(rows: readonly (readonly string[])[]): string {
  const widths: number[] = [];
  for (const row of rows) {
    row.forEach((cell, i) => widths[i] = Math.max(widths[i] ?? 0, textWidth(cell)));
  }
  const pad = (cell: string, i: number, row: readonly string[]) =>
    i === row.length - 1 ? cell : cell + " ".repeat(widths[i] - textWidth(cell));
  return rows.map((row) => row.map((cell, i) => pad(cell, i, row)).join("  ")).join("\n");
}

/** {@linkcode printable} applied to every string inside a JSON-like value. */
function printableDeep<T>(value: T): T {
  if (typeof value === "string") return printable(value) as T;
  if (Array.isArray(value)) return value.map(printableDeep) as T;
  if (value === null || typeof value !== "object") return value;
  const entries = Object.entries(value).map(([key, inner]) => [key, printableDeep(inner)]);
  return Object.fromEntries(entries) as T;
}

/** `n` with at least two digits. */
function two(n: number): string {
  return String(n).padStart(2, "0");
}

/** The local time of day as `HH:MM`. */
function clock(epochMs: number): string {
  const date = new Date(epochMs);
  return `${two(date.getHours())}:${two(date.getMinutes())}`;
}

/** The local date and time as `YYYY-MM-DD HH:MM`, or `HH:MM` on the day of `today`. */
function when(epochMs: number, today: number): string {
  const date = new Date(epochMs);
  if (date.toDateString() === new Date(today).toDateString()) return clock(epochMs);
  return `${date.getFullYear()}-${two(date.getMonth() + 1)}-${two(date.getDate())} ` +
    clock(epochMs);
}

/** What an outgoing kept message's status adds to its line. */
const STATUS_MARKS: Record<string, string> = {
  sending: " (not confirmed)",
  sent: " ✓",
  queued: " ✓ (held for them)",
  delivered: " ✓✓",
  failed: " ✗ (failed)",
};

/**
 * Formats events for a person. It remembers how many parts each playing video has, because
 * `segment` and `progress` events carry only the part's index.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { EventFormatter } from "./format.ts";
 * const format = new EventFormatter({ color: false });
 * assert.equal(format.format({ event: "left", name: "bob" }), "← bob left");
 * ```
 */
export class EventFormatter {
  #paint: Palette;
  #width: () => number | undefined;
  #name: string;
  #now: () => number;
  #parts = new Map<string, number>();

  /** Creates a formatter; `color` adds ANSI colors. */
  constructor(options: FormatOptions) {
    this.#paint = options.color ? COLORS : NO_COLORS;
    this.#width = options.width ?? (() => undefined);
    this.#name = options.name ?? "you";
    this.#now = options.now ?? Date.now;
  }

  /**
   * Your own sent line, timestamped like the lines of others.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { EventFormatter } from "./format.ts";
   * const format = new EventFormatter({ color: false });
   * const line = format.ownMessage("alice", "bob", "hi", new Date(2026, 0, 1, 9, 5).getTime());
   * assert.equal(line, "[09:05] alice → bob: hi");
   * ```
   */
  ownMessage(name: string, to: string, text: string, sentAt: number): string {
    const p = this.#paint;
    const [who, whom, said] = [name, to, text].map((part) => sanitizeForDisplay(part));
    return `${p.dim(`[${clock(sentAt)}]`)} ${p.bold(who)} → ${whom}: ${said}`;
  }

  /** `rows` under `columns`, fitted to the width; the header dimmed. */
  #table(columns: readonly (TableColumn | string)[], rows: string[][]): string[] {
    const [header, ...lines] = renderTable(columns, rows, this.#width() ?? Infinity);
    return [this.#paint.dim(header), ...lines];
  }

  /** The text for one event; it may span several lines (tables, warnings). */
  format(untrusted: ClientEvent): string {
    const event = printableDeep(untrusted);
    const p = this.#paint;
    switch (event.event) {
      case "welcome": {
        const others = event.names.length === 0
          ? "Nobody else is online"
          : `Online: ${event.names.join(", ")}`;
        const trust = [
          event.verified > 0 ? `${event.verified} verified` : "",
          event.changed > 0 ? p.red(`${event.changed} with a CHANGED key`) : "",
        ].filter(Boolean).join(", ");
        return `Connected to ${event.server} as ${p.bold(event.name)} ` +
          `(${event.fingerprint}). ${others}${trust ? ` (${trust})` : ""}. ` +
          "Type /help for commands." + serverKeyNote(event.serverKey, event.serverFingerprint);
      }
      case "conversation":
        return event.name === undefined
          ? "No conversation: plain lines need /query NAME first"
          : `Talking to ${
            p.bold(event.name)
          }: plain lines go to ${event.name} (/query alone leaves)`;
      case "history":
        return this.#history(event);
      case "history-cleared":
        return `Deleted ${plural(event.deleted, "kept message")}` +
          (event.name === undefined ? " (everyone's)" : ` with ${event.name}`) +
          " from this computer.";
      case "history-kept":
        return event.kept
          ? "History on: messages are kept (encrypted) for /history."
          : "History off: new messages are not kept; /history clear deletes the kept ones.";
      case "ignored":
        return event.names.length === 0
          ? "You ignore nobody."
          : `Ignoring (their messages are dropped): ${event.names.join(", ")}`;
      case "joined":
        return this.#joined(event);
      case "left":
        return p.dim(`← ${event.name} left`);
      case "who":
        return this.#who(event.peers);
      case "message":
        return this.#message(event);
      case "sent":
        return p.dim(`✓ sent to ${event.to}`);
      case "queued":
        return p.dim(`✓ held for ${event.to} (offline): delivered when they connect`);
      case "delivered":
        return p.dim(`✓✓ ${event.to} received it`);
      case "failed":
        return p.red(`✗ a message to ${event.to} failed: ${failureText(event.reason, event.to)}`);
      case "sealed":
        return p.dim(`· ${event.from} → ${event.to}: ${event.bytes} sealed bytes`);
      case "key-changed":
        return this.#keyChanged(event);
      case "verify":
        return this.#verify(event);
      case "trusted":
        return p.green(`✓ ${event.name}'s key is now verified (${event.fingerprint})`);
      case "verify-hint":
        return p.yellow(`ⓘ ${event.message}`);
      case "videos":
        return this.#videos(event.videos);
      default:
        return this.#streamOrStatus(event);
    }
  }

  #streamOrStatus(event: ClientEvent): string {
    const p = this.#paint;
    switch (event.event) {
      case "stream-started":
        this.#parts.set(event.video, event.segments.length);
        return `▶ ${event.video}  ${formatDuration(event.duration)}, ` +
          `${event.segments.length} parts: ${event.segments.map(segmentLabel).join(", ")}`;
      case "segment":
      case "showing":
        return `▶ ${event.video}  ${this.#part(event.video, event.index)}  ` +
          `now ${event.height}p (${event.width}x${event.height})`;
      case "progress":
        return `▶ ${event.video}  ${this.#part(event.video, event.index)}  ` +
          `${event.height}p  ${formatDuration(event.position)} / ${
            formatDuration(event.duration)
          }  ${formatBytes(event.bytes)}`;
      case "stream-ended":
        return this.#streamEnded(event);
      case "paused":
      case "resumed":
        return `${event.event === "paused" ? "⏸" : "▶"} ${event.video}  ${event.event} at ${
          formatDuration(event.position)
        }`;
      case "seeked":
        return `⏩ ${event.video}  seeking to ${formatDuration(event.position)}`;
      case "error":
        return this.#error(event.code, event.message);
      case "disconnected":
        return p.red(`Disconnected: ${event.reason}`);
      default:
        return this.#connection(event);
    }
  }

  #connection(event: ClientEvent): string {
    const p = this.#paint;
    switch (event.event) {
      case "reconnecting": {
        const when = event.delayMs < 100 ? "now" : `in ${formatWait(event.delayMs)}`;
        const next = `reconnecting ${when} (attempt ${event.attempt})`;
        return p.yellow(
          event.attempt === 1
            ? `Connection lost: ${event.reason}; ${next}`
            : `Still away: ${event.reason}; ${next}`,
        );
      }
      case "reconnected":
        return p.green(
          `Back: reconnected to ${event.server} after ${formatWait(event.afterMs)} ` +
            `(online: ${event.names.length === 0 ? "nobody else" : event.names.join(", ")})`,
        );
      case "gave-up": {
        const attempts = event.attempts === 1 ? "1 attempt" : `${event.attempts} attempts`;
        return p.red(
          `Gave up reconnecting to ${event.server} after ${formatWait(event.afterMs)} ` +
            `(${attempts}): ${event.reason}`,
        );
      }
      default:
        return JSON.stringify(event);
    }
  }

  #part(video: string, index: number): string {
    const total = this.#parts.get(video);
    return total === undefined ? `part ${index + 1}` : `part ${index + 1}/${total}`;
  }

  #joined(event: Extract<ClientEvent, { event: "joined" }>): string {
    const p = this.#paint;
    if (event.trust === "changed") {
      return p.red(`→ ${event.name} joined with a CHANGED key: messages blocked, see below`);
    }
    const note = event.trust === "verified" ? "verified" : "not verified: /verify " + event.name;
    return `→ ${event.name} joined ${p.dim(`(${note}: ${event.fingerprint})`)}`;
  }

  #who(peers: readonly PeerView[]): string {
    if (peers.length === 0) return "Nobody else is online.";
    const p = this.#paint;
    const columns = [
      { header: "NAME", priority: 2 },
      { header: "TRUST", priority: 1 },
      { header: "FINGERPRINT", minWidth: 14 },
    ];
    const rows = peers.map((peer) => [peer.name, peer.trust, peer.fingerprint]);
    return this.#table(columns, rows).map((line, i) =>
      i > 0 && peers[i - 1].trust === "changed" ? p.red(line) : line
    ).join("\n");
  }

  #message(event: Extract<ClientEvent, { event: "message" }>): string {
    const p = this.#paint;
    const line = `${p.dim(`[${clock(event.sentAt)}]`)} ${p.bold(event.from)}: ${event.text}`;
    if (event.missing <= 0) return line;
    const lost = event.missing === 1 ? "1 earlier message" : `${event.missing} earlier messages`;
    return `${p.yellow(`⚠ ${lost} from ${event.from} never arrived`)}\n${line}`;
  }

  /**
   * Kept messages, dimmed and marked with `│` so they are not taken for new ones, under a line
   * saying what they are.
   */
  #history(event: Extract<ClientEvent, { event: "history" }>): string {
    const p = this.#paint;
    const whose = event.name === undefined ? "" : ` with ${event.name}`;
    const off = event.off ? " History is off: /history on keeps new ones." : "";
    if (event.entries.length === 0) return p.dim(`No kept messages${whose}.${off}`);
    const title = event.recent
      ? `── earlier${whose} (history) ──`
      : `── history${whose}: last ${plural(event.entries.length, "message")} ──`;
    const today = this.#now();
    const lines = event.entries.map((entry) => {
      const at = `[${when(entry.at, today)}]`;
      const said = entry.direction === "out"
        ? `${this.#name} → ${entry.peer}: ${entry.text}${STATUS_MARKS[entry.status ?? ""] ?? ""}`
        : `${entry.peer}: ${entry.text}`;
      return p.dim(`│ ${at} ${said}`);
    });
    return [p.dim(title), ...lines, ...(off ? [p.dim(off.trim())] : [])].join("\n");
  }

  #keyChanged(event: Extract<ClientEvent, { event: "key-changed" }>): string {
    const p = this.#paint;
    const name = event.name;
    return [
      p.loud(` WARNING: ${name.toUpperCase()}'S KEY HAS CHANGED `),
      p.red(`Pinned key: ${event.pinnedFingerprint}`),
      p.red(`New key:    ${event.fingerprint}`),
      p.red(`Someone may be pretending to be ${name}, or ${name} reinstalled reelay.`),
      p.red(`Messages to and from ${name} are blocked until you decide:`),
      p.yellow(`  1. /verify ${name}   and compare the code with ${name} in person or by phone`),
      p.yellow(`  2. /trust ${name}    ONLY if the codes match`),
    ].join("\n");
  }

  #verify(event: Extract<ClientEvent, { event: "verify" }>): string {
    const p = this.#paint;
    return [
      `Safety number with ${event.name}: ${p.bold(event.code)}`,
      formatTable([
        [`  ${event.name}'s fingerprint:`, event.fingerprint],
        ["  your fingerprint:", event.yourFingerprint],
      ]),
      `Compare the 60 digits with ${event.name} in person or by phone. ` +
      `If they match: /trust ${event.name}`,
    ].join("\n");
  }

  #videos(videos: readonly VideoListing[]): string {
    if (videos.length === 0) return "No videos on the server.";
    const columns = [
      { header: "VIDEO", priority: 3, minWidth: 16 },
      { header: "LENGTH", priority: 3 },
      { header: "SOURCE", priority: 1 },
      { header: "FPS" },
      { header: "AUDIO" },
      { header: "PLAYS AT (BY THIRDS)", priority: 2, minWidth: 12 },
    ];
    const rows = videos.map((video) => [
      video.name,
      formatDuration(video.duration),
      `${video.width}x${video.height}`,
      String(Math.round(video.fps * 100) / 100),
      video.hasAudio ? "yes" : "no",
      video.segments.map(segmentLabel).join(", "),
    ]);
    const encoder = videos.find((video) => video.encoder)?.encoder;
    const table = this.#table(columns, rows).join("\n");
    return encoder ? `${table}\nTranscoded with ${encoder}.` : table;
  }

  #streamEnded(event: Extract<ClientEvent, { event: "stream-ended" }>): string {
    const p = this.#paint;
    this.#parts.delete(event.video);
    const video = event.video;
    const size = formatBytes(event.bytes);
    if (event.reason === "complete") return `■ ${video} finished (${size})`;
    if (event.reason === "stopped") {
      const after = event.resumes === false ? ": it will not resume when the server is back" : "";
      return `■ ${video} stopped (${size})${after}`;
    }
    const why = event.message ? `: ${event.message}` : "";
    const next = event.resumes ? "; it resumes here when the server is back" : "";
    return p.red(`✗ ${video} failed after ${size}${why}${next}`);
  }

  #error(code: string, message: string): string {
    const p = this.#paint;
    // Mistakes in typing are the person's to fix (yellow); everything else is a failure (red).
    // The code is for scripts (--json); people read the words.
    const typo = code === "usage" || code === "unknown-command";
    return typo ? p.yellow(message) : p.red(`✗ ${message}`);
  }
}

/** `1 message`, `2 messages`. */
function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? "" : "s"}`;
}

/** `720p`, or `1080p (1440p capped)` when the source is smaller than asked for. */
function segmentLabel(segment: SegmentPlan): string {
  return segment.capped
    ? `${segment.height}p (${segment.requestedHeight}p capped)`
    : `${segment.height}p`;
}

function serverKeyNote(status: "pinned" | "new" | "accepted", fingerprint: string): string {
  if (status === "pinned") return "";
  const what = status === "new" ? "First connection: pinned" : "Accepted and pinned";
  return `\n${what} the server key ${fingerprint} (compare with reelay server --fingerprint).`;
}

/** Why a message failed, for people. */
function failureText(reason: string, name: string): string {
  switch (reason) {
    case "key-changed":
      return `${name} refused it: your key changed for them. Ask them to /verify and /trust you`;
    case "recipient-key-changed":
      return `${name}'s key changed: /verify ${name}, then /trust ${name}, and send again`;
    case "expired":
      return `${name} did not connect in time; it expired`;
    case "recipient-mailbox-full":
    case "mailbox-full":
      return "the server holds too much for them already";
    case "sender-mailbox-full":
      return "the server holds too much of your mail already; send again once it is delivered";
    default:
      return `${name} could not open it (${reason}); send it again`;
  }
}
