/**
 * Parse one line a person typed into a typed {@linkcode Command}.
 *
 * One table, {@linkcode COMMAND_SPECS}, describes every command: the parser reads its argument
 * shapes and {@linkcode HELP_TEXT} is printed from it, so help and parser cannot disagree.
 *
 * @module
 */

import { UsageError } from "../../shared/errors.ts";
import { nameProblem } from "../../shared/names.ts";
import { suggestCommand } from "./complete.ts";

/** Everything a person can ask the client to do. */
export type Command =
  | { command: "help" }
  | { command: "who" }
  | { command: "msg"; to: string; text: string }
  | { command: "say"; text: string }
  | { command: "query"; name?: string }
  | { command: "reply"; text?: string }
  | { command: "ignore"; name?: string }
  | { command: "unignore"; name: string }
  | { command: "forget-input" }
  | HistoryCommand
  | { command: "verify"; name: string }
  | { command: "trust"; name: string }
  | { command: "videos" }
  | { command: "play"; video: string; from?: string }
  | { command: "stop" }
  | { command: "pause" }
  | { command: "resume" }
  | { command: "seek"; position: string }
  | { command: "quit" };

/**
 * `/history [NAME] [N]` shows (`show`), `/history clear [NAME]` deletes, `/history on|off`
 * starts or stops keeping messages.
 */
export type HistoryCommand =
  | { command: "history"; action: "show"; name?: string; count?: number }
  | { command: "history"; action: "clear"; name?: string }
  | { command: "history"; action: "on" | "off" };

/** Messages `/history` shows unless told `N`. */
export const DEFAULT_HISTORY_LINES = 20;
/** The most messages `/history` shows at once. */
export const MAX_HISTORY_LINES = 1000;

/** The names of the commands (`say` is a plain line: it has no `/` spelling). */
export type CommandName = Exclude<Command["command"], "say">;

/**
 * How one argument is read: `name` is one word that must be a valid person's name, `rest` is
 * everything left on the line (inner spaces kept) and must not be empty.
 */
export interface ArgSpec {
  /** Shown in the usage line, e.g. `NAME` (in brackets when optional, unless it has some). */
  label: string;
  /** How the argument is read from the line (`video` is `rest` that completes video names). */
  kind: "name" | "rest" | "video";
  /** The argument may be left out (only the last one). */
  optional?: boolean;
}

/** One row of the command table. */
export interface CommandSpec {
  /** The name typed after `/`. */
  command: CommandName;
  /** Other spellings, e.g. `exit` for `quit`. */
  aliases: readonly string[];
  /** The arguments, in order; at most the last one may be `rest`. */
  args: readonly ArgSpec[];
  /** One line for the help text. */
  summary: string;
}

const NAME: ArgSpec = { label: "NAME", kind: "name" };
const TEXT: ArgSpec = { label: "TEXT", kind: "rest" };

/** The single source of truth for parsing and for help. */
export const COMMAND_SPECS: readonly CommandSpec[] = [
  { command: "help", aliases: [], args: [], summary: "Show this list" },
  { command: "who", aliases: [], args: [], summary: "List who is online, with fingerprints" },
  {
    command: "msg",
    aliases: [],
    args: [NAME, TEXT],
    summary: "Send an end-to-end encrypted message",
  },
  {
    command: "query",
    aliases: ["q"],
    args: [{ ...NAME, optional: true }],
    summary: "Talk to NAME: plain lines go to them (no NAME: leave)",
  },
  {
    command: "reply",
    aliases: ["r"],
    args: [{ ...TEXT, optional: true }],
    summary: "Reply to whoever wrote last (no TEXT: talk to them)",
  },
  {
    command: "verify",
    aliases: [],
    args: [NAME],
    summary: "Show the code to compare with NAME out of band",
  },
  {
    command: "trust",
    aliases: [],
    args: [NAME],
    summary: "Accept NAME's current key (after /verify)",
  },
  { command: "videos", aliases: [], args: [], summary: "List the server's videos" },
  {
    command: "play",
    aliases: [],
    args: [{ label: "VIDEO", kind: "video" }],
    summary: "Stream a video (a unique start of its name is enough); --from 1:30 starts there",
  },
  { command: "stop", aliases: [], args: [], summary: "Stop the running video" },
  { command: "pause", aliases: [], args: [], summary: "Pause the running video" },
  { command: "resume", aliases: [], args: [], summary: "Resume the paused video where it was" },
  {
    command: "seek",
    aliases: [],
    args: [{ label: "POSITION", kind: "rest" }],
    summary: "Jump to 1:30, or by +30 / -10 seconds (the player restarts there)",
  },
  {
    command: "ignore",
    aliases: [],
    args: [{ ...NAME, optional: true }],
    summary: "Drop NAME's messages, also next time (no NAME: list)",
  },
  { command: "unignore", aliases: [], args: [NAME], summary: "See NAME's messages again" },
  {
    command: "history",
    aliases: [],
    args: [{ label: "[NAME] [N]", kind: "rest", optional: true }],
    summary: `Past messages (last ${DEFAULT_HISTORY_LINES}; with NAME, or the open ` +
      "conversation); /history clear [NAME] deletes; /history off, /history on",
  },
  {
    command: "forget-input",
    aliases: [],
    args: [],
    summary: "Delete the typed lines kept for Up-arrow and Ctrl-R",
  },
  { command: "quit", aliases: ["exit"], args: [], summary: "Leave (also /exit)" },
];

/**
 * A line that is not a valid command. `usage` is the usage line to show with it, or `/help`
 * when there is no single command to point to. The `code` is `usage`, `unknown-command` or
 * `not-a-command`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { CommandError, parseCommand } from "./commands.ts";
 * assert.throws(
 *   () => parseCommand("/msg bob"),
 *   (error) => error instanceof CommandError && error.usage === "Usage: /msg NAME TEXT",
 * );
 * ```
 */
export class CommandError extends UsageError {
  /** The usage line of the command concerned, e.g. `Usage: /msg NAME TEXT`. */
  readonly usage: string;

  /** Creates a command error; the usage line is appended to the message. */
  constructor(problem: string, usage: string, code = "usage") {
    super(`${problem}. ${usage}`, code);
    this.name = "CommandError";
    this.usage = usage;
  }
}

/**
 * The synopsis of a command, e.g. `/msg NAME TEXT`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { COMMAND_SPECS, synopsis } from "./commands.ts";
 * assert.equal(synopsis(COMMAND_SPECS[2]), "/msg NAME TEXT");
 * ```
 */
export function synopsis(spec: CommandSpec): string {
  const args = spec.args.map((arg) =>
    arg.optional && !arg.label.startsWith("[") ? `[${arg.label}]` : arg.label
  );
  return ["/" + spec.command, ...args].join(" ");
}

/**
 * The usage line of a command, e.g. `Usage: /msg NAME TEXT`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { COMMAND_SPECS, usageLine } from "./commands.ts";
 * assert.equal(usageLine(COMMAND_SPECS[2]), "Usage: /msg NAME TEXT");
 * ```
 */
export function usageLine(spec: CommandSpec): string {
  return `Usage: ${synopsis(spec)}`;
}

/**
 * The help text: one line per command, summaries aligned in one column.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { helpText } from "./commands.ts";
 * assert.equal(helpText().split("\n")[0], "/help                Show this list");
 * ```
 */
export function helpText(specs: readonly CommandSpec[] = COMMAND_SPECS): string {
  const width = Math.max(...specs.map((spec) => synopsis(spec).length));
  return specs.map((spec) => `${synopsis(spec).padEnd(width)}  ${spec.summary}`).join("\n");
}

/** {@linkcode helpText} for the built-in table, computed once. */
export const HELP_TEXT: string = helpText();

const HELP_HINT = "Type /help for the list of commands";

/**
 * Parses one input line. Returns `undefined` for a blank line and `say` for a line that is not
 * a command (it goes to the current conversation; `//text` sends `/text` as is). Throws
 * {@linkcode CommandError} for a mistyped command, suggesting the closest one. Command names
 * ignore case (`/MSG` works).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseCommand } from "./commands.ts";
 * assert.deepEqual(parseCommand("/msg bob  hello   there"), { command: "msg", to: "bob", text: "hello   there" });
 * assert.deepEqual(parseCommand("/play My Cats.mp4"), { command: "play", video: "My Cats.mp4" });
 * assert.deepEqual(parseCommand("hi there"), { command: "say", text: "hi there" });
 * assert.equal(parseCommand("   "), undefined);
 * ```
 */
export function parseCommand(line: string): Command | undefined {
  const trimmed = line.trim();
  if (trimmed === "") return undefined;
  if (!trimmed.startsWith("/")) return { command: "say", text: line };
  if (trimmed.startsWith("//")) return { command: "say", text: trimmed.slice(1) };
  const [word, rest] = splitWord(trimmed.slice(1));
  const spec = findSpec(word);
  if (!spec) {
    const guess = suggestCommand(word, COMMAND_SPECS);
    const hint = guess ? `Did you mean ${guess}? ${HELP_HINT}` : HELP_HINT;
    throw new CommandError(`Unknown command "/${word}"`, hint, "unknown-command");
  }
  return build(spec, readArgs(spec, rest));
}

function findSpec(word: string): CommandSpec | undefined {
  const key = word.toLowerCase();
  return COMMAND_SPECS.find((spec) => spec.command === key || spec.aliases.includes(key));
}

/** Splits off the first whitespace-delimited word; the rest starts at the next word. */
function splitWord(text: string): [string, string] {
  const match = /^(\S*)\s*([\s\S]*)$/.exec(text);
  return match ? [match[1], match[2]] : [text, ""];
}

/** Reads the arguments in table order; the values are keyed by label. */
function readArgs(spec: CommandSpec, text: string): Map<string, string> {
  const values = new Map<string, string>();
  let rest = text;
  for (const arg of spec.args) {
    const [value, next] = arg.kind === "name" ? splitWord(rest) : [rest, ""];
    values.set(arg.label, checkArg(spec, arg, value));
    rest = next;
  }
  if (rest !== "") throw new CommandError("Too many arguments", usageLine(spec));
  return values;
}

function checkArg(spec: CommandSpec, arg: ArgSpec, value: string): string {
  if (value === "" && arg.optional) return value;
  if (value === "") throw new CommandError(`Missing ${arg.label}`, usageLine(spec));
  if (arg.kind === "name") {
    const problem = nameProblem(value);
    if (problem) throw new CommandError(problem, usageLine(spec));
  }
  return value;
}

function build(spec: CommandSpec, args: Map<string, string>): Command {
  const arg = (label: string): string => args.get(label) ?? "";
  const given = (label: string): string | undefined => arg(label) || undefined;
  switch (spec.command) {
    case "msg":
      return { command: "msg", to: arg("NAME"), text: arg("TEXT") };
    case "verify":
    case "trust":
    case "unignore":
      return { command: spec.command, name: arg("NAME") };
    case "query":
    case "ignore":
      return { command: spec.command, name: given("NAME") };
    case "reply":
      return { command: "reply", text: given("TEXT") };
    case "play": {
      const from = /^(.*?)\s+--from[ =](\S+)$/.exec(arg("VIDEO"));
      return from
        ? { command: "play", video: from[1], from: from[2] }
        : { command: "play", video: arg("VIDEO") };
    }
    case "seek":
      return { command: "seek", position: arg("POSITION") };
    case "history":
      return historyCommand(spec, arg("[NAME] [N]"));
    default:
      return { command: spec.command };
  }
}

/**
 * Reads `/history`'s words: `on`, `off`, `clear [NAME]`, or `[NAME] [N]` (a number alone is N).
 * The words `on`, `off` and `clear` mean the action, not a person of that name.
 */
function historyCommand(spec: CommandSpec, text: string): HistoryCommand {
  const words = text.split(/\s+/).filter((word) => word !== "");
  const [first, second, third] = words;
  const action = first?.toLowerCase();
  const name = (word: string) => {
    const problem = nameProblem(word);
    if (problem) throw new CommandError(problem, usageLine(spec));
    return word;
  };
  if (action === "on" || action === "off") {
    if (second !== undefined) throw new CommandError("Too many arguments", usageLine(spec));
    return { command: "history", action };
  }
  if (action === "clear") {
    if (third !== undefined) throw new CommandError("Too many arguments", usageLine(spec));
    return second === undefined
      ? { command: "history", action: "clear" }
      : { command: "history", action: "clear", name: name(second) };
  }
  if (third !== undefined) throw new CommandError("Too many arguments", usageLine(spec));
  const numeric = first !== undefined && /^\d+$/.test(first);
  const countWord = numeric ? first : second;
  if (numeric && second !== undefined) {
    throw new CommandError(`NAME comes before N, not after it ("${second}")`, usageLine(spec));
  }
  const shown: HistoryCommand = { command: "history", action: "show" };
  if (first !== undefined && !numeric) shown.name = name(first);
  if (countWord !== undefined) shown.count = historyCount(spec, countWord);
  return shown;
}

function historyCount(spec: CommandSpec, word: string): number {
  const count = Number(word);
  if (!/^\d+$/.test(word) || count < 1 || count > MAX_HISTORY_LINES) {
    throw new CommandError(
      `N is "${word}": expected a whole number from 1 to ${MAX_HISTORY_LINES}`,
      usageLine(spec),
    );
  }
  return count;
}

/**
 * Whether `line` is a message to someone: a chat line, `/msg NAME TEXT` or `/reply TEXT`. The
 * terminal shows those as your own timestamped line rather than echoing what was typed.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { isMessage } from "./commands.ts";
 * assert.equal(isMessage("hello"), true);
 * assert.equal(isMessage("/r see you"), true);
 * assert.equal(isMessage("/r"), false);
 * assert.equal(isMessage("/mgs bob hi"), false, "not a valid command at all");
 * ```
 */
export function isMessage(line: string): boolean {
  const command = tryParse(line);
  if (command?.command === "reply") return command.text !== undefined;
  return command?.command === "msg" || command?.command === "say";
}

/**
 * Whether `line` is a valid command that carries no message text: what may be kept in the
 * input history file. A line that does not parse (`/mgs bob secret`) may hold a message too,
 * so it is not kept either.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { isPlainCommand } from "./commands.ts";
 * assert.equal(isPlainCommand("/play cats.mp4"), true);
 * assert.equal(isPlainCommand("/r"), true);
 * assert.equal(isPlainCommand("/r see you"), false);
 * assert.equal(isPlainCommand("/mgs bob my pin"), false);
 * assert.equal(isPlainCommand("hello"), false);
 * ```
 */
export function isPlainCommand(line: string): boolean {
  return tryParse(line) !== undefined && !isMessage(line);
}

function tryParse(line: string): Command | undefined {
  try {
    return parseCommand(line);
  } catch {
    return undefined;
  }
}
