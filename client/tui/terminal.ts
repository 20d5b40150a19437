/**
 * Where the client's input lines come from and where its human output goes.
 *
 * - {@linkcode TerminalInput}: an interactive prompt on a TTY. Raw mode, a small line editor
 *   (the pure logic is in `line_editor.ts`), and {@linkcode LineInput.print} that shows event
 *   lines above the prompt without disturbing what the person is typing.
 * - {@linkcode PipedInput}: lines read from a pipe or file; output is plain lines on stdout.
 *
 * Neither knows anything about the network: the app reads lines and prints text.
 *
 * @module
 */

import {
  applyKey,
  CLEAR_ROW,
  drawPrompt,
  type EditorState,
  emptyEditor,
  graphemes,
  type Key,
  KeyDecoder,
  type KeyResult,
  lineText,
  renderPrompt,
} from "./line_editor.ts";
import { AsyncQueue, onSignals } from "../../shared/async.ts";
import { type PartialSyncWriter, writeAllSync } from "../../shared/io.ts";

/** Why the input ended: `eof` = no more input (finish what is running); `interrupt` = leave now. */
export type InputEnd = "eof" | "interrupt";

/** A source of command lines plus a place to show output lines, shared by TTY and pipe. */
export interface LineInput {
  /** The lines, without line endings; ends at end of input or when the person quits. Single use. */
  lines(): AsyncIterable<string>;
  /** Shows one piece of output (it may span several lines). */
  print(text: string): void;
  /** Stops reading and gives the terminal back; idempotent. */
  close(): void;
  /** Why {@linkcode LineInput.lines} ended, once it has. */
  readonly endReason: InputEnd | undefined;
  /** Changes the prompt (a TTY shows it; pipes have none). */
  setPrompt?(prompt: string): void;
  /**
   * Shows a status line between the output and the prompt, drawn by `render` for the width it
   * gets (columns minus one); `undefined` removes it. Pipes have none.
   */
  setStatus?(render: ((width: number) => string) | undefined): void;
  /** Rings the terminal bell (a TTY only). */
  bell?(): void;
  /** The width to wrap output at, or `undefined` to leave lines as they are (pipes). */
  columns?(): number | undefined;
  /** Forgets the lines typed so far (Up-arrow and Ctrl-R find none of them). */
  clearHistory?(): void;
}

/** What Tab did: the new line and cursor (UTF-16 index), and every candidate that matched. */
export interface CompletionResult {
  line: string;
  cursor: number;
  matches: string[];
}

/** Completes the word at `cursor` (a UTF-16 index into `line`). */
export type Completer = (line: string, cursor: number) => CompletionResult;

/** A synchronous writer such as `Deno.stdout` (a write may be partial). */
export type SyncWriter = PartialSyncWriter;

/** What the TTY prompt needs from stdin. */
export interface RawInput {
  /** The bytes typed. */
  readonly readable: ReadableStream<Uint8Array>;
  /** Switches raw mode (no echo, no line buffering, Ctrl-C as a key) on or off. */
  setRaw(mode: boolean): void;
}

const encoder = new TextEncoder();

/**
 * Writes a whole string synchronously. Being synchronous is what keeps one printed line from
 * ever interleaving with another.
 */
function writeText(out: SyncWriter, text: string): void {
  writeAllSync(out, encoder.encode(text));
}

/** Options for {@linkcode TerminalInput}; the defaults are the real terminal. */
export interface TerminalInputOptions {
  /** Shown before the line being typed; plain text. Default `"> "`. */
  prompt?: string;
  /** Default `Deno.stdin`. */
  input?: RawInput;
  /** Default `Deno.stdout`. */
  output?: SyncWriter;
  /** The terminal's width now. Default: `Deno.consoleSize()`, or 80 when unknown. */
  columns?: () => number;
  /** Listen to SIGTERM/SIGHUP (restore and quit) and SIGWINCH (redraw). Default true. */
  signals?: boolean;
  /** What Tab does; without it Tab rings the bell. */
  complete?: Completer;
  /**
   * Whether a submitted line stays in the scrollback after the prompt, as a shell leaves it.
   * Default: every line.
   */
  echo?: (line: string) => boolean;
  /** Lines typed in earlier runs, oldest first, for Up-arrow and Ctrl-R. */
  history?: readonly string[];
  /** Called with the history (oldest first) each time a submitted line changed it. */
  onHistory?: (lines: readonly string[]) => void;
}

function consoleColumns(): number {
  try {
    return Deno.consoleSize().columns || 80;
  } catch {
    return 80;
  }
}

/**
 * The interactive prompt on a TTY.
 *
 * Raw mode is switched on when {@linkcode TerminalInput.lines} starts and switched off on
 * every way out: {@linkcode TerminalInput.close}, the end of the iteration, a read error,
 * SIGTERM or SIGHUP, `Deno.exit` (the `unload` event) and an uncaught error.
 *
 * @example
 * ```ts ignore
 * import { TerminalInput } from "./terminal.ts";
 * const input = new TerminalInput({ prompt: "alice> " });
 * const timer = setInterval(() => input.print("tick"), 1000);
 * for await (const line of input.lines()) input.print(`you typed ${line}`);
 * clearInterval(timer);
 * ```
 */
export class TerminalInput implements LineInput {
  #prompt: string;
  #input: RawInput;
  #out: SyncWriter;
  #columns: () => number;
  #signals: boolean;
  #complete: Completer | undefined;
  #echo: (line: string) => boolean;
  #onHistory: (lines: readonly string[]) => void;
  #status: ((width: number) => string) | undefined;
  /** Whether a status row is on screen above the prompt row. */
  #statusShown = false;
  #state: EditorState = emptyEditor();
  #queue = new AsyncQueue<string>();
  #reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
  #active = false;
  #closed = false;
  #started = false;
  #cleanups: (() => void)[] = [];
  #endReason: InputEnd | undefined;

  /** Creates the prompt; nothing happens to the terminal until `lines()` is iterated. */
  constructor(options: TerminalInputOptions = {}) {
    this.#prompt = options.prompt ?? "> ";
    this.#input = options.input ?? Deno.stdin;
    this.#out = options.output ?? Deno.stdout;
    this.#columns = options.columns ?? consoleColumns;
    this.#signals = options.signals ?? true;
    this.#complete = options.complete;
    this.#echo = options.echo ?? (() => true);
    this.#onHistory = options.onHistory ?? (() => {});
    this.#state = emptyEditor(options.history ?? []);
  }

  /** Why input ended, once it has. */
  get endReason(): InputEnd | undefined {
    return this.#endReason;
  }

  /** Changes the prompt and redraws it. */
  setPrompt(prompt: string): void {
    this.#prompt = prompt;
    this.#redraw();
  }

  /** Shows (or with `undefined` removes) the status line above the prompt. */
  setStatus(render: ((width: number) => string) | undefined): void {
    this.#status = render;
    this.#redraw();
  }

  /** Rings the bell. */
  bell(): void {
    if (this.#active) writeText(this.#out, "\x07");
  }

  /** The terminal's width now. */
  columns(): number {
    return this.#columns();
  }

  /** Forgets the lines typed so far; the line being typed stays. */
  clearHistory(): void {
    const { chars, cursor } = this.#state;
    this.#state = { ...emptyEditor(), chars, cursor };
  }

  /** Submitted lines, in order; Ctrl-C, or Ctrl-D on an empty line, ends them (`interrupt`). */
  async *lines(): AsyncGenerator<string> {
    if (this.#started) throw new Error("TerminalInput.lines() can be used once");
    this.#started = true;
    if (this.#closed) return;
    this.#start();
    try {
      yield* this.#queue.drain();
    } finally {
      this.close();
    }
  }

  /** Shows `text` above the prompt; the line being typed and the cursor stay where they were. */
  print(text: string): void {
    if (!this.#active) return writeText(this.#out, text + "\n");
    const lines = text.split(/\r?\n/).map((line) => line + "\r\n").join("");
    writeText(this.#out, this.#erase() + lines + this.#block());
  }

  /** Erases the prompt, restores the terminal and ends `lines()`; idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#endReason ??= "interrupt";
    for (const cleanup of this.#cleanups.splice(0)) cleanup();
    this.#restore();
    this.#reader?.cancel().catch(() => {});
    this.#queue.end();
  }

  #start(): void {
    this.#input.setRaw(true);
    this.#active = true;
    this.#listen();
    this.#redraw();
    this.#pump().catch((error) => this.#fail(error));
  }

  /** Switches raw mode off and erases the prompt row; safe to call more than once. */
  #restore = (): void => {
    if (!this.#active) return;
    this.#active = false;
    try {
      writeText(this.#out, this.#erase());
      this.#input.setRaw(false);
    } catch {
      // The terminal is already gone (hang-up); there is nothing left to restore.
    }
  };

  #listen(): void {
    globalThis.addEventListener("unload", this.#restore);
    globalThis.addEventListener("error", this.#restore);
    globalThis.addEventListener("unhandledrejection", this.#restore);
    this.#cleanups.push(() => {
      globalThis.removeEventListener("unload", this.#restore);
      globalThis.removeEventListener("error", this.#restore);
      globalThis.removeEventListener("unhandledrejection", this.#restore);
    });
    if (!this.#signals) return;
    // In raw mode Ctrl-C is a key, not SIGINT; these are the signals that still arrive.
    const quit = () => this.#end("interrupt");
    this.#cleanups.push(onSignals(["SIGTERM", "SIGHUP"], quit));
    this.#cleanups.push(onSignals(["SIGWINCH"], () => this.#redraw()));
  }

  async #pump(): Promise<void> {
    const decoder = new KeyDecoder();
    this.#reader = this.#input.readable.getReader();
    try {
      while (!this.#closed) {
        const { value, done } = await this.#reader.read();
        if (done) return this.#end("eof");
        for (const key of decoder.feed(value)) {
          if (this.#closed) break;
          this.#key(key);
        }
      }
    } finally {
      this.#reader.releaseLock();
    }
  }

  #key(key: Key): void {
    if (key.kind === "tab") return this.#tab();
    this.#handle(applyKey(this.#state, key));
  }

  #tab(): void {
    if (!this.#complete) return this.#handle({ state: this.#state, bell: true });
    const text = lineText(this.#state);
    const at = this.#state.chars.slice(0, this.#state.cursor).join("").length;
    const result = this.#complete(text, at);
    if (result.matches.length > 1) this.print(result.matches.join("  "));
    const chars = graphemes(result.line);
    const cursor = graphemes(result.line.slice(0, result.cursor)).length;
    const state = { ...this.#state, chars, cursor };
    this.#handle({ state, bell: result.matches.length === 0 });
  }

  #handle(result: KeyResult): void {
    const before = this.#state;
    this.#state = result.state;
    if (result.quit) return this.#end("interrupt");
    if (result.submit !== undefined) {
      // Leave a submitted command in the scrollback, as a shell does, then a fresh prompt.
      const echo = this.#echo(result.submit) ? `${this.#prompt}${lineText(before)}\r\n` : "";
      writeText(this.#out, `${this.#erase()}${echo}`);
      this.#statusShown = false;
      this.#queue.push(result.submit);
      if (result.state.history !== before.history) {
        this.#onHistory(result.state.history.entries);
      }
    }
    if (result.clearScreen) writeText(this.#out, "\x1b[2J\x1b[H");
    if (result.bell) writeText(this.#out, "\x07");
    this.#redraw();
  }

  #end(reason: InputEnd): void {
    this.#endReason ??= reason;
    this.close();
  }

  #fail(error: unknown): void {
    if (this.#closed) return;
    this.#queue.end(error);
    this.close();
  }

  #view() {
    return renderPrompt(this.#state, this.#prompt, this.#columns());
  }

  /**
   * The bytes that erase the status row (when shown) and the prompt row, leaving the cursor at
   * the start of the top one, where output goes next.
   */
  #erase(): string {
    const status = this.#statusShown ? `\x1b[1A${CLEAR_ROW}` : "";
    this.#statusShown = false;
    return CLEAR_ROW + status;
  }

  /** The bytes that draw the status row (if any) and the prompt row, from an erased row. */
  #block(): string {
    const status = this.#status?.(Math.max(1, this.#columns() - 1)) ?? "";
    this.#statusShown = status !== "";
    return (status === "" ? "" : `${status}\r\n`) + drawPrompt(this.#view());
  }

  #redraw(): void {
    if (this.#active) writeText(this.#out, this.#erase() + this.#block());
  }
}

/** Options for {@linkcode PipedInput}; the defaults are the real stdin and stdout. */
export interface PipedInputOptions {
  /** Default `Deno.stdin.readable`. */
  input?: ReadableStream<Uint8Array>;
  /** Default `Deno.stdout`. */
  output?: SyncWriter;
  /** End input as `interrupt` on SIGINT/SIGTERM instead of dying. Default true. */
  signals?: boolean;
}

/**
 * Lines from a pipe or a file (stdin that is not a TTY). Handles `\n` and `\r\n`, a last line
 * without a newline, and end of input. Output is printed as plain lines.
 *
 * @example
 * ```ts
 * import { PipedInput } from "./terminal.ts";
 * const input = new PipedInput({
 *   input: ReadableStream.from([new TextEncoder().encode("/who\r\n/quit")]),
 *   signals: false,
 * });
 * for await (const line of input.lines()) input.print(line); // "/who", then "/quit"
 * ```
 */
export class PipedInput implements LineInput {
  #input: ReadableStream<Uint8Array> | undefined;
  #out: SyncWriter;
  #signals: boolean;
  #reader: ReadableStreamDefaultReader<string> | undefined;
  #closed = false;
  #endReason: InputEnd | undefined;

  /** Creates the reader; stdin is not touched until `lines()` is iterated. */
  constructor(options: PipedInputOptions = {}) {
    this.#input = options.input;
    this.#out = options.output ?? Deno.stdout;
    this.#signals = options.signals ?? true;
  }

  /** Why input ended, once it has. */
  get endReason(): InputEnd | undefined {
    return this.#endReason;
  }

  /** The input's lines without their endings. */
  async *lines(): AsyncGenerator<string> {
    if (this.#reader || this.#closed) return;
    const source = this.#input ?? Deno.stdin.readable;
    this.#reader = source.pipeThrough(new TextDecoderStream()).getReader();
    const interrupt = () => {
      this.#endReason ??= "interrupt";
      this.close();
    };
    const stop = this.#signals ? onSignals(["SIGINT", "SIGTERM"], interrupt) : () => {};
    try {
      yield* this.#split(this.#reader);
      this.#endReason ??= "eof";
    } finally {
      stop();
      this.close();
    }
  }

  async *#split(reader: ReadableStreamDefaultReader<string>): AsyncGenerator<string> {
    let buffered = "";
    while (true) {
      const { value, done } = await reader.read();
      if (done) break;
      buffered += value;
      const parts = buffered.split("\n");
      buffered = parts.pop() ?? "";
      for (const line of parts) yield line.replace(/\r$/, "");
    }
    // Input closed by close() drops a partial line; a real end of input keeps it.
    if (buffered !== "" && !this.#closed) yield buffered.replace(/\r$/, "");
  }

  /** Writes `text` and a newline to stdout. */
  print(text: string): void {
    writeText(this.#out, text + "\n");
  }

  /** Stops reading; a pending read ends. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#reader?.cancel().catch(() => {});
  }
}

/**
 * The right {@linkcode LineInput} for this process: the interactive prompt when stdin and stdout
 * are both terminals, plain lines otherwise (pipes, files, scripts).
 *
 * @example
 * ```ts ignore
 * import { openLineInput } from "./terminal.ts";
 * const input = openLineInput({ prompt: "alice> " });
 * ```
 */
export function openLineInput(
  options: Omit<TerminalInputOptions, "input" | "output" | "columns" | "signals"> = {},
): LineInput {
  return isInteractive() ? new TerminalInput(options) : new PipedInput();
}

/**
 * Whether a person is at a terminal: stdin and stdout are both TTYs.
 *
 * @example
 * ```ts
 * import { isInteractive } from "./terminal.ts";
 * isInteractive(); // false under `deno test` with piped output
 * ```
 */
export function isInteractive(): boolean {
  return Deno.stdin.isTerminal() && Deno.stdout.isTerminal();
}
