/**
 * The client's command loop: lines from a {@linkcode LineInput} become commands, commands
 * become calls on a {@linkcode ChatSession}, and every event goes to one output, human lines
 * or `--json` lines. This file never touches a socket or the terminal directly.
 *
 * Rules of the loop:
 * - Commands run one at a time, in the order typed. A failing command emits an `error`
 *   event `{ code, message, line, input }` (the input line's number, from 1, and its text) and
 *   the loop goes on.
 * - A line that is not a command goes to the current conversation (`/query NAME`).
 * - End of input (a pipe or file ran out): the queued commands finish, then the app waits for
 *   {@linkcode ChatSession.idle} (pending sends, a running stream), quits cleanly.
 * - `/quit`, Ctrl-C or Ctrl-D in the prompt: quit now.
 * - Exit codes (the table is in `shared/errors.ts`): 0 after a clean quit; with `--json`, 3
 *   after a clean quit when any command failed ({@linkcode EXIT_COMMAND_FAILED}), so a shell
 *   script can check. When the session ends on its own (a `disconnected` or `gave-up` event is
 *   shown): 5 when it gave up reconnecting, 4 when it was not to reconnect (`noReconnect`),
 *   else 1 (the server refused for good).
 * - While the session reconnects, the loop goes on: the typed line, the conversation and the
 *   input history stay; commands that need the server wait for it. The transcript gets one
 *   line when the connection is lost and one when it is back; the attempts in between are on
 *   the status line (in a terminal) or each a line (piped, for people).
 * - `/help` prints the help text; with `--json` it goes to stderr instead, so stdout stays
 *   pure event lines (a help text is not a {@linkcode ClientEvent}).
 * - For people, a video's progress is drawn on the status line (a terminal) and never added
 *   to the transcript, which gets one line when the stream starts, one per part and one at the
 *   end. `--json` keeps `progress` events, at most one a second per video.
 *
 * @module
 */

import { deferred, onSignals, SerialQueue, TERMINATION_SIGNALS } from "../../shared/async.ts";
import {
  EXIT_COMMAND_FAILED,
  EXIT_DISCONNECTED,
  EXIT_FAILURE,
  EXIT_GAVE_UP,
  messageOf,
  ReelayError,
  UsageError,
} from "../../shared/errors.ts";
import { parsePosition } from "../viewing.ts";
import { writeAllSync } from "../../shared/io.ts";
import { sameName } from "../../shared/names.ts";
import type { VideoListing } from "../../shared/protocol/mod.ts";
import type { ClientEvent, PeerView } from "../events.ts";
import { type Command, COMMAND_SPECS, HELP_TEXT, isMessage, parseCommand } from "./commands.ts";
import { complete, findVideo } from "./complete.ts";
import { Conversations } from "./conversation.ts";
import { EventFormatter } from "./format.ts";
import { type IgnoreList, MemoryIgnoreList } from "./ignore.ts";
import type { InputHistoryStore } from "./input_history_file.ts";
import { type HistorySource, recentHistory, runHistory } from "./message_history.ts";
import { type ByteSink, JsonEventWriter } from "./json.ts";
import { PlayingTracker } from "./playing.ts";
import { ProgressThrottle } from "./progress.ts";
import { ReconnectTracker } from "./reconnecting.ts";
import { renderStatusLine } from "./status_line.ts";
import {
  type CompletionResult,
  type InputEnd,
  isInteractive,
  type LineInput,
  PipedInput,
  TerminalInput,
} from "./terminal.ts";
import { wrapText } from "./wrap.ts";

/** How often progress is written in `--json` output (ms). */
const JSON_PROGRESS_MS = 1000;

export { EXIT_COMMAND_FAILED };

/** What the app needs from a connected session (implemented by `client/session.ts`). */
export interface ChatSession {
  /** This client's own name. */
  readonly name: string;
  /** Subscribes to every event, including errors reported by the server. */
  onEvent(listener: (event: ClientEvent) => void): void;
  /** The local copy of the directory. */
  who(): PeerView[];
  /** Resolves once the server relayed the message; rejects with a {@linkcode ReelayError}. */
  send(to: string, text: string): Promise<void>;
  /** The verification code and both fingerprints to compare out of band. */
  verify(name: string): Promise<{ code: string; fingerprint: string; yourFingerprint: string }>;
  /** Accepts a person's current key; emits `trusted`. */
  trust(name: string): Promise<void>;
  /** The server's catalog. */
  listVideos(): Promise<VideoListing[]>;
  /** Resolves when the stream started; events report its parts, progress and end. */
  play(video: string, options?: { from?: number }): Promise<void>;
  /** Stops the running stream. */
  stop(): Promise<void>;
  /** Pauses the running stream (`paused` event). */
  pause(): void;
  /** Resumes the paused stream where it was (`resumed` event). */
  resume(): void;
  /** Jumps to `seconds`, or by `seconds` when `relative` (`seeked`, then `stream-started`). */
  seek(seconds: number, relative?: boolean): Promise<void>;
  /** Resolves when nothing is in flight (no pending send, no running stream). */
  idle(): Promise<void>;
  /** Says goodbye and closes; idempotent. */
  quit(): Promise<void>;
  /** Resolves when the connection ended, for any reason. */
  readonly closed: Promise<{ code: string; reason: string }>;
}

/** How to run the app. */
export interface ClientAppOptions {
  /** The connected session. */
  session: ChatSession;
  /**
   * Default: the interactive prompt when stdin and stdout are terminals (with Tab completion),
   * else plain stdin lines; always plain stdin lines with `json`.
   */
  input?: LineInput;
  /** Events as JSON lines (`--json`) instead of human lines. */
  json?: boolean;
  /** Where JSON lines go. Default `Deno.stdout`. */
  jsonOutput?: ByteSink;
  /** Where help goes in JSON mode. Default: stderr. */
  diagnostics?: (text: string) => void;
  /** Colors in human output. Default: when stdout is a terminal and NO_COLOR is unset. */
  color?: boolean;
  /** `--json` progress is written at most this often per video (ms). Default 1 s. */
  progressIntervalMs?: number;
  /** The clock (ms) for progress, buffering and timestamps. Default `Date.now`. */
  now?: () => number;
  /** Whose messages are dropped. Default: an empty list for this run only. */
  ignore?: IgnoreList;
  /** Ring the terminal bell when a message arrives (config `[client] bell`). Default true. */
  bell?: boolean;
  /** Where typed lines are kept between runs; `/forget-input` deletes them. Default: nowhere. */
  inputHistory?: InputHistoryStore;
  /**
   * Read and write `inputHistory` for Up-arrow and Ctrl-R (config `[client] input_history`);
   * when false it is only deleted by `/forget-input`. Default true.
   */
  keepInputHistory?: boolean;
  /**
   * The session does not reconnect (`--no-reconnect`): a lost connection exits
   * {@linkcode EXIT_DISCONNECTED} rather than 1.
   */
  noReconnect?: boolean;
  /** The kept messages, for `/history` and `/query` (the client store). Default: none. */
  history?: HistorySource;
}

/** Where events and notes go: human lines or JSON lines. */
interface Output {
  emit(event: ClientEvent): void;
  /** Text that is not an event (help). */
  note(text: string): void;
  /** Waits until everything is written. */
  flush(): Promise<void>;
}

function defaultColor(): boolean {
  try {
    return Deno.stdout.isTerminal() && !Deno.env.get("NO_COLOR");
  } catch {
    return false; // no permission to read NO_COLOR: stay plain
  }
}

function writeStderr(text: string): void {
  writeAllSync(Deno.stderr, new TextEncoder().encode(text + "\n"));
}

function jsonOutput(options: ClientAppOptions): Output {
  const writer = new JsonEventWriter(options.jsonOutput ?? Deno.stdout);
  const throttle = new ProgressThrottle(
    options.progressIntervalMs ?? JSON_PROGRESS_MS,
    options.now,
  );
  return {
    emit: (event) => throttle.pass(event).forEach((shown) => writer.write(shown)),
    note: options.diagnostics ?? writeStderr,
    flush: () => writer.close(),
  };
}

/** Wraps each line of `text` at word boundaries when the input knows its width. */
function wrapped(input: LineInput, text: string): string {
  const columns = input.columns?.();
  if (columns === undefined) return text;
  return text.split("\n").flatMap((line) => wrapText(line, { width: columns - 1 })).join("\n");
}

function humanOutput(formatter: EventFormatter, input: LineInput): Output {
  return {
    emit: (event) => {
      // Progress lives on the status line; `sent` is shown as the person's own line instead; a
      // new resolution is told when the player shows it (`showing`), not when bytes arrive.
      if (event.event === "progress" || event.event === "sent" || event.event === "segment") {
        return;
      }
      const text = formatter.format(event);
      // A script's reader needs to know which input line failed; a person just typed it.
      const piped = input.columns?.() === undefined;
      const where = piped && event.event === "error" && event.line ? `line ${event.line}: ` : "";
      input.print(wrapped(input, where + text));
    },
    note: (text) => input.print(wrapped(input, text)),
    flush: () => Promise.resolve(),
  };
}

/** The event for a command that failed on input line `line`. */
function errorEvent(error: unknown, line: number, input: string): ClientEvent {
  if (error instanceof ReelayError) {
    return { event: "error", code: error.code, message: error.message, line, input };
  }
  return { event: "error", code: "internal", message: messageOf(error), line, input };
}

/** The directory entry for a name, ignoring case as names do. */
function findPeer(session: ChatSession, name: string): PeerView | undefined {
  return session.who().find((peer) => sameName(peer.name, name));
}

/** Everything one command may touch. */
interface Context {
  session: ChatSession;
  output: Output;
  conversations: Conversations;
  ignore: IgnoreList;
  /** The kept messages, if this client keeps any. */
  history?: HistorySource;
  /** Whether `/query` shows the last lines of the conversation (people, not `--json`). */
  showRecent: boolean;
  /** The catalog's names, as last listed (for `/play` and Tab). */
  catalog: { names: string[] };
  /** Shows your own sent line (people only). */
  showOwn(to: string, text: string): void;
  /** The prompt or status changed. */
  changed(): void;
  /** Forgets the typed lines, on screen and on disk. */
  forgetInput(): Promise<void>;
}

/** Runs one command; resolves to `"quit"` when the person asked to leave. */
async function execute(command: Command, context: Context): Promise<"quit" | void> {
  const { session, output } = context;
  switch (command.command) {
    case "help":
      return output.note(HELP_TEXT);
    case "who":
      return output.emit({ event: "who", peers: session.who() });
    case "msg":
      return await sendTo(context, command.to, command.text);
    case "say":
      return await sendTo(context, currentTarget(context), command.text);
    case "reply":
      return await reply(context, command.text);
    case "query":
      return await openConversation(context, command.name);
    case "history":
      return output.emit(
        await runHistory(command, context.history, context.conversations.current),
      );
    case "verify": {
      const result = await session.verify(command.name);
      const name = findPeer(session, command.name)?.name ?? command.name;
      return output.emit({ event: "verify", name, ...result });
    }
    case "trust":
      return await session.trust(command.name);
    case "videos": {
      const videos = await session.listVideos();
      context.catalog.names = videos.map((video) => video.name);
      return output.emit({ event: "videos", videos });
    }
    case "play": {
      const from = command.from === undefined ? undefined : parsePosition(command.from);
      if (from?.relative) {
        throw new UsageError(`Start "${command.from}" must be a position such as 1:30`);
      }
      return await session.play(await resolveVideo(context, command.video), {
        from: from?.seconds,
      });
    }
    case "stop":
      return await session.stop();
    case "pause":
      return session.pause();
    case "resume":
      return session.resume();
    case "seek": {
      const { seconds, relative } = parsePosition(command.position);
      return await session.seek(seconds, relative);
    }
    case "ignore":
    case "unignore":
      return await changeIgnored(context, command);
    case "forget-input":
      await context.forgetInput();
      return output.note("Typed lines forgotten: Up-arrow and Ctrl-R start empty.");
    case "quit":
      return "quit";
  }
}

async function sendTo(context: Context, to: string, text: string): Promise<void> {
  await context.session.send(to, text);
  context.showOwn(to, text);
}

function currentTarget(context: Context): string {
  const target = context.conversations.current;
  if (target !== undefined) return target;
  throw new UsageError(
    "No conversation open: type /query NAME first (then plain lines go to NAME), " +
      "or /msg NAME TEXT",
    "no-conversation",
  );
}

async function reply(context: Context, text: string | undefined): Promise<void> {
  const to = context.conversations.lastSender;
  if (to === undefined) {
    throw new UsageError("Nobody has written to you yet: there is no one to reply to", "no-sender");
  }
  if (text === undefined) return await openConversation(context, to);
  await sendTo(context, to, text);
}

async function openConversation(context: Context, name: string | undefined): Promise<void> {
  const shown = name === undefined ? undefined : findPeer(context.session, name)?.name ?? name;
  context.conversations.open(shown);
  context.changed();
  context.output.emit(
    shown === undefined ? { event: "conversation" } : { event: "conversation", name: shown },
  );
  if (shown === undefined || !context.showRecent) return;
  const recent = await recentHistory(context.history, shown);
  if (recent) context.output.emit(recent);
}

/** The catalog name meant by `typed` (`test` finds `test.mp4`); asks for the catalog. */
async function resolveVideo(context: Context, typed: string): Promise<string> {
  const videos = await context.session.listVideos();
  context.catalog.names = videos.map((video) => video.name);
  return findVideo(typed, context.catalog.names);
}

async function changeIgnored(
  context: Context,
  command: Extract<Command, { command: "ignore" | "unignore" }>,
): Promise<void> {
  const { ignore } = context;
  if (command.command === "ignore" && command.name !== undefined) {
    await ignore.add(findPeer(context.session, command.name)?.name ?? command.name);
  } else if (command.command === "unignore" && !await ignore.remove(command.name)) {
    throw new UsageError(`You do not ignore "${command.name}"`, "not-ignored");
  }
  context.output.emit({ event: "ignored", names: ignore.names() });
}

/** How the command loop ended. */
type LoopEnd = InputEnd | "quit";

/**
 * Commands that need no answer from the server: they run as soon as they are read, never
 * behind a command waiting on the network (a server that never answers cannot freeze them).
 */
const LOCAL_COMMANDS: ReadonlySet<Command["command"]> = new Set([
  "help",
  "who",
  "query",
  "verify",
  "forget-input",
  "history",
]);

/**
 * Reads lines and runs them one after another. A person at the prompt does not wait for local
 * commands ({@linkcode LOCAL_COMMANDS}): they run at once, beside a command waiting on the
 * network. With `--json` (a script) everything stays in order, and a command waits at most for
 * the request timeout of those before it. Reading runs ahead of running, so Ctrl-C is seen at
 * once even while a command waits on the network.
 */
class CommandLoop {
  readonly #queue = new SerialQueue();
  readonly #local = new Set<Promise<void>>();
  #stopped = false;
  #lineNumber = 0;
  #failed = false;
  readonly #quit = deferred<"quit">();
  #context: Context;

  readonly #ordered: boolean;

  /** `ordered`: run every command in turn, local ones too (`--json`). */
  constructor(context: Context, ordered: boolean) {
    this.#context = context;
    this.#ordered = ordered;
  }

  /** Resolves when a `/quit` command ran. */
  get quitRequested(): Promise<"quit"> {
    return this.#quit.promise;
  }

  /** Whether any command failed. */
  get failed(): boolean {
    return this.#failed;
  }

  /** Reads every line; resolves when input ends, with why. */
  async read(input: LineInput): Promise<InputEnd> {
    for await (const line of input.lines()) {
      if (this.#stopped) break;
      const number = ++this.#lineNumber;
      if (!this.#ordered && isLocal(line)) {
        const running = this.#run(line, number);
        this.#local.add(running);
        void running.finally(() => this.#local.delete(running));
      } else {
        void this.#queue.run(() => this.#run(line, number));
      }
    }
    return input.endReason ?? "eof";
  }

  /** Resolves when every line read so far has run. */
  async drained(): Promise<void> {
    await this.#queue.idle();
    await Promise.all(this.#local);
  }

  /** Skips lines not yet run. */
  stop(): void {
    this.#stopped = true;
  }

  async #run(line: string, number: number): Promise<void> {
    if (this.#stopped) return;
    try {
      const command = parseCommand(line);
      if (command && await execute(command, this.#context) === "quit") {
        this.#stopped = true;
        this.#quit.resolve("quit");
      }
    } catch (error) {
      this.#failed = true;
      this.#context.output.emit(errorEvent(error, number, line));
    }
  }
}

/** Whether `line` is a command that needs no answer from the server. */
function isLocal(line: string): boolean {
  try {
    const command = parseCommand(line);
    return command !== undefined && LOCAL_COMMANDS.has(command.command);
  } catch {
    return false; // A usage error is reported in its turn.
  }
}

/** The prompt: your name, and who plain lines go to. */
function promptFor(name: string, conversation: string | undefined): string {
  return conversation === undefined ? `${name}> ` : `[${conversation}] ${name}> `;
}

/** The input for a run: a terminal prompt with completion and history, or plain lines. */
async function defaultInput(options: ClientAppOptions, complete: Completer): Promise<LineInput> {
  if (options.json || !isInteractive()) return new PipedInput();
  const store = options.keepInputHistory === false ? undefined : options.inputHistory;
  const history = await store?.load().catch(() => []) ?? []; // unreadable: start empty
  let warned = false;
  return new TerminalInput({
    prompt: promptFor(options.session.name, undefined),
    complete,
    // Commands stay in the scrollback; messages show as your own timestamped line instead.
    echo: (line) => !isMessage(line),
    history,
    onHistory: (lines) =>
      store?.save(lines).catch((error) => {
        if (!warned) writeStderr(`reelay: typed lines not kept: ${messageOf(error)}`);
        warned = true;
      }),
  });
}

type Completer = (line: string, cursor: number) => CompletionResult;

/**
 * Runs the client until the person leaves, input ends or the connection drops. Resolves to the
 * process exit code (see the module's rules).
 *
 * @example
 * ```ts ignore
 * import { runClientApp } from "./app.ts";
 * const session = await openSession(options); // from client/mod.ts
 * const code = await runClientApp({ session });
 * Deno.exit(code);
 * ```
 */
export async function runClientApp(options: ClientAppOptions): Promise<number> {
  const { session } = options;
  const now = options.now ?? Date.now;
  const conversations = new Conversations();
  const playing = new PlayingTracker(now);
  const catalog = { names: [] as string[] };
  const completer: Completer = (line, cursor) =>
    complete(line, cursor, {
      commands: COMMAND_SPECS,
      names: session.who().map((peer) => peer.name),
      videos: catalog.names,
    });
  const input = options.input ?? await defaultInput(options, completer);
  const formatter = new EventFormatter({
    color: options.color ?? defaultColor(),
    name: session.name,
    now,
    width: () => {
      const columns = input.columns?.();
      return columns === undefined ? undefined : columns - 1;
    },
  });
  const output = options.json ? jsonOutput(options) : humanOutput(formatter, input);
  const reconnecting = new ReconnectTracker(() => input.setStatus?.(status), now);
  const status = (width: number) =>
    renderStatusLine({
      reconnecting: reconnecting.status,
      unread: conversations.unread,
      playing: playing.status,
    }, width);
  const context: Context = {
    session,
    output,
    conversations,
    ignore: options.ignore ?? new MemoryIgnoreList(),
    history: options.history,
    showRecent: !options.json,
    catalog,
    showOwn: (to, text) => {
      if (!options.json) output.note(formatter.ownMessage(session.name, to, text, now()));
    },
    changed: () => {
      input.setPrompt?.(promptFor(session.name, conversations.current));
      input.setStatus?.(status);
    },
    forgetInput: async () => {
      input.clearHistory?.();
      await options.inputHistory?.forget();
    },
  };
  input.setStatus?.(status);
  if (input.setStatus) {
    // Tab completes video names from the catalog; fetch it once up front for a person.
    session.listVideos().then((videos) => catalog.names = videos.map((video) => video.name))
      .catch(() => {}); // no catalog yet: /videos or /play fetch it again
  }
  const bell = options.bell ?? true;
  let reportedGone = false;
  session.onEvent((event) => {
    if (event.event === "disconnected" || event.event === "gave-up") reportedGone = true;
    if (reconnecting.update(event)) input.setStatus?.(status);
    // With a status line, only the first attempt and the outcome go to the transcript.
    if (event.event === "reconnecting" && event.attempt > 1 && input.setStatus) return;
    if (event.event === "message") {
      if (context.ignore.has(event.from)) return; // dropped without a word, as asked
      if (conversations.received(event.from)) input.setStatus?.(status);
      if (bell) input.bell?.();
    }
    if (playing.update(event)) input.setStatus?.(status);
    output.emit(event);
  });
  const loop = new CommandLoop(context, options.json ?? false);
  const closed = session.closed.then((info) => ({ gone: info }));
  // A signal ends the session cleanly (the player is stopped too) whatever the input is doing,
  // including after stdin has already ended and a stream is still playing.
  const signalled = deferred<LoopEnd>();
  const stopSignals = onSignals(TERMINATION_SIGNALS, () => signalled.resolve("interrupt"));
  try {
    const outcome = await Promise.race([
      waitForWork(loop, input, session),
      signalled.promise,
      closed,
    ]);
    loop.stop();
    if (typeof outcome === "object") {
      if (!reportedGone) output.emit({ event: "disconnected", ...outcome.gone });
      if (outcome.gone.code === "gave-up") return EXIT_GAVE_UP;
      return options.noReconnect ? EXIT_DISCONNECTED : EXIT_FAILURE;
    }
    await session.quit().catch(() => {}); // leaving anyway: a failed goodbye changes nothing
    return options.json && loop.failed ? EXIT_COMMAND_FAILED : 0;
  } finally {
    stopSignals();
    reconnecting.close();
    input.close();
    await options.inputHistory?.flush(); // the last line typed (often /quit) is kept too
    await output.flush().catch(() => {}); // stdout closed under us: nobody left to tell
  }
}

/**
 * Resolves when it is time to quit: at once for `/quit` or an interrupt; at end of input only
 * after the queued commands ran and the session went idle.
 */
async function waitForWork(
  loop: CommandLoop,
  input: LineInput,
  session: ChatSession,
): Promise<LoopEnd> {
  const end = await Promise.race([loop.read(input), loop.quitRequested]);
  if (end !== "eof") return end;
  const quitEarly = await Promise.race([loop.drained().then(() => undefined), loop.quitRequested]);
  if (quitEarly) return quitEarly;
  await session.idle();
  return "eof";
}
