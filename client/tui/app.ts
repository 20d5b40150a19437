/**
 * The client's command loop: lines from a {@linkcode LineInput} become commands, commands
 * become calls on a {@linkcode ChatSession}, and every event goes to one output, human lines
 * or `--json` lines. This file never touches a socket or the terminal directly.
 *
 * Rules of the loop:
 * - Commands run one at a time, in the order typed. A failing command emits an `error`
 *   event `{ code, message }` and the loop goes on.
 * - End of input (a pipe or file ran out): the queued commands finish, then the app waits for
 *   {@linkcode ChatSession.idle} (pending sends, a running stream), quits cleanly, exits 0.
 * - `/quit`, Ctrl-C or Ctrl-D in the prompt: quit now, exit 0.
 * - The connection ends on its own (server gone): a `disconnected` event is shown, exit 1.
 * - `/help` prints the help text; with `--json` it goes to stderr instead, so stdout stays
 *   pure event lines (a help text is not a {@linkcode ClientEvent}).
 *
 * @module
 */

import { deferred, onSignals, SerialQueue, TERMINATION_SIGNALS } from "../../shared/async.ts";
import { EXIT_FAILURE, messageOf, ReelayError } from "../../shared/errors.ts";
import { writeAllSync } from "../../shared/io.ts";
import { sameName } from "../../shared/names.ts";
import type { VideoListing } from "../../shared/protocol/mod.ts";
import type { ClientEvent, PeerView } from "../events.ts";
import { type Command, HELP_TEXT, parseCommand } from "./commands.ts";
import { EventFormatter } from "./format.ts";
import { type ByteSink, JsonEventWriter } from "./json.ts";
import { ProgressThrottle } from "./progress.ts";
import { type InputEnd, type LineInput, openLineInput, PipedInput } from "./terminal.ts";

/** How often progress is shown to a person, and in `--json` output (ms). */
const HUMAN_PROGRESS_MS = 5000;
const JSON_PROGRESS_MS = 1000;

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
  play(video: string): Promise<void>;
  /** Stops the running stream. */
  stop(): Promise<void>;
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
  /** Default: {@linkcode openLineInput} with the prompt `NAME> `; plain stdin lines with `json`. */
  input?: LineInput;
  /** Events as JSON lines (`--json`) instead of human lines. */
  json?: boolean;
  /** Where JSON lines go. Default `Deno.stdout`. */
  jsonOutput?: ByteSink;
  /** Where help goes in JSON mode. Default: stderr. */
  diagnostics?: (text: string) => void;
  /** Colors in human output. Default: when stdout is a terminal and NO_COLOR is unset. */
  color?: boolean;
  /**
   * A video's progress is shown at most this often (ms); a new part always shows. Default 5 s
   * for people, 1 s with `json`.
   */
  progressIntervalMs?: number;
  /** The clock for progress throttling. Default `Date.now`. */
  now?: () => number;
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

function throttleFor(options: ClientAppOptions, defaultMs: number): ProgressThrottle {
  return new ProgressThrottle(options.progressIntervalMs ?? defaultMs, options.now);
}

function jsonOutput(options: ClientAppOptions): Output {
  const writer = new JsonEventWriter(options.jsonOutput ?? Deno.stdout);
  const throttle = throttleFor(options, JSON_PROGRESS_MS);
  return {
    emit: (event) => throttle.pass(event).forEach((shown) => writer.write(shown)),
    note: options.diagnostics ?? writeStderr,
    flush: () => writer.close(),
  };
}

function humanOutput(options: ClientAppOptions, input: LineInput): Output {
  const formatter = new EventFormatter({ color: options.color ?? defaultColor() });
  const throttle = throttleFor(options, HUMAN_PROGRESS_MS);
  return {
    emit: (event) => throttle.pass(event).forEach((shown) => input.print(formatter.format(shown))),
    note: (text) => input.print(text),
    flush: () => Promise.resolve(),
  };
}

/** The event for a command that failed. */
function errorEvent(error: unknown): ClientEvent {
  if (error instanceof ReelayError) {
    return { event: "error", code: error.code, message: error.message };
  }
  return { event: "error", code: "internal", message: messageOf(error) };
}

/** The directory entry for a name, ignoring case as names do. */
function findPeer(session: ChatSession, name: string): PeerView | undefined {
  return session.who().find((peer) => sameName(peer.name, name));
}

/** Runs one command; resolves to `"quit"` when the person asked to leave. */
async function execute(
  command: Command,
  session: ChatSession,
  output: Output,
): Promise<"quit" | void> {
  switch (command.command) {
    case "help":
      return output.note(HELP_TEXT);
    case "who":
      return output.emit({ event: "who", peers: session.who() });
    case "msg":
      return await session.send(command.to, command.text);
    case "verify": {
      const result = await session.verify(command.name);
      const name = findPeer(session, command.name)?.name ?? command.name;
      return output.emit({ event: "verify", name, ...result });
    }
    case "trust":
      return await session.trust(command.name);
    case "videos":
      return output.emit({ event: "videos", videos: await session.listVideos() });
    case "play":
      return await session.play(command.video);
    case "stop":
      return await session.stop();
    case "quit":
      return "quit";
  }
}

/** How the command loop ended. */
type LoopEnd = InputEnd | "quit";

/**
 * Reads lines and runs them one after another. Reading runs ahead of running, so Ctrl-C is
 * seen at once even while a command waits on the network.
 */
class CommandLoop {
  readonly #queue = new SerialQueue();
  #stopped = false;
  readonly #quit = deferred<"quit">();
  #session: ChatSession;
  #output: Output;

  constructor(session: ChatSession, output: Output) {
    this.#session = session;
    this.#output = output;
  }

  /** Resolves when a `/quit` command ran. */
  get quitRequested(): Promise<"quit"> {
    return this.#quit.promise;
  }

  /** Reads every line; resolves when input ends, with why. */
  async read(input: LineInput): Promise<InputEnd> {
    for await (const line of input.lines()) {
      if (this.#stopped) break;
      void this.#queue.run(() => this.#run(line));
    }
    return input.endReason ?? "eof";
  }

  /** Resolves when every line read so far has run. */
  drained(): Promise<void> {
    return this.#queue.idle();
  }

  /** Skips lines not yet run. */
  stop(): void {
    this.#stopped = true;
  }

  async #run(line: string): Promise<void> {
    if (this.#stopped) return;
    try {
      const command = parseCommand(line);
      if (command && await execute(command, this.#session, this.#output) === "quit") {
        this.#stopped = true;
        this.#quit.resolve("quit");
      }
    } catch (error) {
      this.#output.emit(errorEvent(error));
    }
  }
}

/**
 * Runs the client until the person leaves, input ends or the connection drops. Resolves to the
 * process exit code: 0 after a clean quit, 1 when the connection ended on its own.
 *
 * @example
 * ```ts ignore
 * import { runClientApp } from "./app.ts";
 * import { openLineInput } from "./terminal.ts";
 * const session = await openSession(options); // from client/mod.ts
 * const code = await runClientApp({ session, input: openLineInput({ prompt: "alice> " }) });
 * Deno.exit(code);
 * ```
 */
export async function runClientApp(options: ClientAppOptions): Promise<number> {
  const { session } = options;
  // With --json, stdout belongs to the JSON lines: no prompt is drawn there, even on a TTY.
  const input = options.input ??
    (options.json ? new PipedInput() : openLineInput({ prompt: `${session.name}> ` }));
  const output = options.json ? jsonOutput(options) : humanOutput(options, input);
  let reportedGone = false;
  session.onEvent((event) => {
    if (event.event === "disconnected") reportedGone = true;
    output.emit(event);
  });
  const loop = new CommandLoop(session, output);
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
      return EXIT_FAILURE;
    }
    await session.quit().catch(() => {}); // leaving anyway: a failed goodbye changes nothing
    return 0;
  } finally {
    stopSignals();
    input.close();
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
