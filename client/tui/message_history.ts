/**
 * `/history`: what it asks of the client store and the event each form answers with. The
 * store keeps the messages encrypted (`client/store/_history.ts`); this file only decides which
 * to show, and when `/query NAME` shows the last few.
 *
 * @module
 */

import { UsageError } from "../../shared/errors.ts";
import type { ClientEvent } from "../events.ts";
import type { HistoryEntry } from "../store/mod.ts";
import { DEFAULT_HISTORY_LINES, type HistoryCommand } from "./commands.ts";

/** Lines of a conversation shown when `/query NAME` opens it. */
export const QUERY_HISTORY_LINES = 5;

/** What `/history` needs from the client store (`ClientStore` is one). */
export interface HistorySource {
  /** The last `limit` messages with `peer` (with everyone when `undefined`), oldest first. */
  history(peer: string | undefined, limit: number): Promise<HistoryEntry[]>;
  /** Deletes the messages with `peer` (everyone's when `undefined`); how many went. */
  clearHistory(peer?: string): number;
  /** Whether new messages are kept. */
  readonly historyKept: boolean;
  /** Keeps new messages from now on, or stops. */
  keepHistory(on: boolean): void;
}

/**
 * The event answering `command`; `current` is the open conversation, which `/history` alone
 * shows. Throws `history-unavailable` without a store.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { runHistory } from "./message_history.ts";
 * const entries = [{ peer: "bob", direction: "in" as const, id: "1", text: "hi", at: 0 }];
 * const source = {
 *   history: () => Promise.resolve(entries),
 *   clearHistory: () => 1,
 *   historyKept: true,
 *   keepHistory: () => {},
 * };
 * const event = await runHistory({ command: "history", action: "show" }, source, "bob");
 * assert.deepEqual(event, { event: "history", name: "bob", entries });
 * ```
 */
export async function runHistory(
  command: HistoryCommand,
  source: HistorySource | undefined,
  current: string | undefined,
): Promise<ClientEvent> {
  if (!source) {
    throw new UsageError("This client keeps no history", "history-unavailable");
  }
  switch (command.action) {
    case "on":
    case "off":
      source.keepHistory(command.action === "on");
      return { event: "history-kept", kept: source.historyKept };
    case "clear": {
      const deleted = source.clearHistory(command.name);
      return { event: "history-cleared", ...named(command.name), deleted };
    }
    case "show": {
      const name = command.name ?? current;
      const entries = await source.history(name, command.count ?? DEFAULT_HISTORY_LINES);
      const off = source.historyKept ? {} : { off: true as const };
      return { event: "history", ...named(name), entries, ...off };
    }
  }
}

/**
 * The last {@linkcode QUERY_HISTORY_LINES} messages with `name`, as the event `/query` shows,
 * or nothing when none are kept.
 */
export async function recentHistory(
  source: HistorySource | undefined,
  name: string,
): Promise<ClientEvent | undefined> {
  const entries = await source?.history(name, QUERY_HISTORY_LINES) ?? [];
  return entries.length === 0 ? undefined : { event: "history", name, entries, recent: true };
}

function named(name: string | undefined): { name?: string } {
  return name === undefined ? {} : { name };
}
