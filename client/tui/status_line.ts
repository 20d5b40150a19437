/**
 * The one status line drawn under the transcript and above the prompt: what is going on now
 * (reconnecting, who you are talking to, who wrote while you were elsewhere, the video playing),
 * so that none of it floods the transcript. Pure: a {@linkcode StatusState} in, one line out.
 *
 * The line always fits the width it is given. When room runs short it first cuts the video's
 * name, then uses shorter forms of the least important parts (`unread: alice 2, bob 1` becomes
 * `3 unread`), then leaves parts out, least important first: the video, the unread counts, the
 * conversation. Reconnecting is shown as long as one column is left.
 *
 * Words rather than symbols: arrows, bullets and ▶ are "ambiguous width" in Unicode and take
 * two columns in some terminals, which would wrap the line and break the layout.
 *
 * @module
 */

import { formatBytes, formatDuration } from "./format.ts";
import { sanitizeForDisplay } from "./sanitize.ts";
import { displayWidth, truncateToWidth } from "./width.ts";

/** A video being streamed. */
export interface PlayingStatus {
  /** The video's name (from the server: untrusted). */
  video: string;
  /** The part being shown, from 1. */
  part: number;
  /** How many parts the video has. */
  parts: number;
  /** The height of the part being shown, e.g. 720. */
  height: number;
  /** Seconds into the video. */
  position: number;
  /** The video's length in seconds. */
  duration: number;
  /** How much is received but not yet shown, in seconds or in bytes. */
  buffered?: { seconds: number } | { bytes: number };
  /** The player is paused. */
  paused?: boolean;
}

/** The connection to the server was lost and is being restored. */
export interface ReconnectingStatus {
  /** Which attempt is next or running, from 1. */
  attempt: number;
  /** Seconds until the next try; absent or 0 while a try is running. */
  retryIn?: number;
}

/** Everything the status line can show; absent parts are not shown. */
export interface StatusState {
  /** Reconnecting to the server. */
  reconnecting?: ReconnectingStatus;
  /** The person plain lines go to (`/query`). */
  conversation?: string;
  /** Unread messages per person; the current conversation and zero counts are left out. */
  unread?: Readonly<Record<string, number>>;
  /** The video playing. */
  playing?: PlayingStatus;
}

const SEPARATOR = " | ";

/** How many people the unread part names before it says `+N`. */
const UNREAD_NAMED = 3;

/** Below this many columns the video's name is not cut further before shorter forms are used. */
const MIN_VIDEO_NAME = 12;

/** The shortest cut of the video's name before the video is left out. */
const LAST_VIDEO_NAME = 4;

/** One part of the line: its forms from longest to shortest; `{name}` marks the video's name. */
interface Part {
  forms: string[];
  /** Whether this part names the video (whose name may be cut). */
  video: boolean;
}

/**
 * The status line for `state`, at most `width` columns wide. Give it the terminal's columns
 * minus one: writing the last column makes some terminals wrap.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { renderStatusLine } from "./status_line.ts";
 * const state = {
 *   conversation: "bob",
 *   unread: { alice: 2 },
 *   playing: {
 *     video: "cats.mp4", part: 2, parts: 3, height: 720,
 *     position: 83, duration: 296, buffered: { seconds: 12 },
 *   },
 * };
 * assert.equal(
 *   renderStatusLine(state, 100),
 *   "talking to bob | unread: alice 2 | " +
 *     "playing cats.mp4, part 2/3, 720p, 1:23 / 4:56, 12 s buffered",
 * );
 * assert.equal(renderStatusLine(state, 50), "to bob | 2 unread | cats.mp4 2/3 720p 1:23/4:56");
 * assert.equal(
 *   renderStatusLine({ reconnecting: { attempt: 3, retryIn: 4 } }, 80),
 *   "reconnecting (attempt 3), next try in 4 s",
 * );
 * ```
 */
export function renderStatusLine(state: StatusState, width: number): string {
  const room = Math.floor(width);
  const parts = buildParts(state);
  const name = state.playing ? clean(state.playing.video) : "";
  if (room <= 0 || parts.length === 0) return "";
  const levels = parts.map(() => 0);
  // Least important first; parts get shorter in turns, one step each, so no part loses all
  // its detail while another keeps all of its own.
  const order = parts.map((_, i) => i).reverse();
  let turn = 0;
  for (;;) {
    const line = fit(parts, levels, name, room, MIN_VIDEO_NAME);
    if (line !== undefined) return line;
    const next = [...order.slice(turn), ...order.slice(0, turn)]
      .find((i) => levels[i] < parts[i].forms.length - 1);
    if (next === undefined) break;
    levels[next]++;
    turn = (order.indexOf(next) + 1) % order.length;
  }
  const kept = [...parts];
  const keptLevels = [...levels];
  while (kept.length > 1) {
    const line = fit(kept, keptLevels, name, room, LAST_VIDEO_NAME);
    if (line !== undefined) return line;
    kept.pop();
    keptLevels.pop();
  }
  return truncateToWidth(render(kept, keptLevels, name), room);
}

/** The parts in display order, which is also their order of importance. */
function buildParts(state: StatusState): Part[] {
  const parts: Part[] = [];
  if (state.reconnecting) {
    parts.push({ forms: reconnectingForms(state.reconnecting), video: false });
  }
  if (state.conversation !== undefined) {
    const name = clean(state.conversation);
    parts.push({ forms: [`talking to ${name}`, `to ${name}`], video: false });
  }
  const unread = unreadForms(state.unread ?? {}, state.conversation);
  if (unread) parts.push({ forms: unread, video: false });
  if (state.playing) parts.push({ forms: playingForms(state.playing), video: true });
  return parts;
}

function reconnectingForms(status: ReconnectingStatus): string[] {
  const attempt = Math.max(1, Math.floor(status.attempt));
  const wait = Math.ceil(status.retryIn ?? 0);
  if (wait <= 0) return [`reconnecting now (attempt ${attempt})`, "reconnecting"];
  return [`reconnecting (attempt ${attempt}), next try in ${wait} s`, `reconnecting in ${wait} s`];
}

function unreadForms(
  unread: Readonly<Record<string, number>>,
  conversation: string | undefined,
): string[] | undefined {
  const counts = Object.entries(unread)
    .filter(([name, count]) => name !== conversation && Number.isFinite(count) && count > 0)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  if (counts.length === 0) return undefined;
  const named = counts.slice(0, UNREAD_NAMED).map(([name, count]) => `${clean(name)} ${count}`);
  const more = counts.length > UNREAD_NAMED ? ` +${counts.length - UNREAD_NAMED}` : "";
  const total = counts.reduce((sum, [, count]) => sum + Math.floor(count), 0);
  return [`unread: ${named.join(", ")}${more}`, `${total} unread`];
}

function playingForms(playing: PlayingStatus): string[] {
  const part = `${playing.part}/${playing.parts}`;
  const [at, of] = [formatDuration(playing.position), formatDuration(playing.duration)];
  const paused = playing.paused ? " paused" : "";
  return [
    `${playing.paused ? "paused" : "playing"} {name}, part ${part}, ${playing.height}p, ` +
    `${at} / ${of}${buffered(playing.buffered)}`,
    `{name} ${part} ${playing.height}p ${at}/${of}${paused}`,
    `{name} ${at}/${of}${paused}`,
  ];
}

function buffered(amount: PlayingStatus["buffered"]): string {
  if (!amount) return "";
  if ("seconds" in amount) return `, ${Math.round(Math.max(0, amount.seconds))} s buffered`;
  return `, ${formatBytes(amount.bytes)} buffered`;
}

/** The line at these levels, cutting the video's name to no less than `minName` columns. */
function fit(
  parts: readonly Part[],
  levels: readonly number[],
  name: string,
  room: number,
  minName: number,
): string | undefined {
  const full = render(parts, levels, name);
  const over = displayWidth(full) - room;
  if (over <= 0) return full;
  if (!parts.some((part) => part.video)) return undefined;
  const nameRoom = displayWidth(name) - over;
  if (nameRoom < Math.min(minName, displayWidth(name))) return undefined;
  return render(parts, levels, truncateToWidth(name, nameRoom));
}

function render(parts: readonly Part[], levels: readonly number[], name: string): string {
  return parts.map((part, i) => {
    const form = part.forms[levels[i]];
    return part.video ? form.replace("{name}", () => name) : form;
  }).join(SEPARATOR);
}

function clean(text: string): string {
  return sanitizeForDisplay(text);
}
