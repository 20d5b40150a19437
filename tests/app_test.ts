import assert from "node:assert/strict";
import { type ChatSession, EXIT_COMMAND_FAILED, runClientApp } from "../client/tui/app.ts";
import { EXIT_GAVE_UP } from "../shared/errors.ts";
import type { ClientEvent, PeerView } from "../client/events.ts";
import { HELP_TEXT } from "../client/tui/commands.ts";
import {
  type InputEnd,
  type LineInput,
  PipedInput,
  type SyncWriter,
  TerminalInput,
} from "../client/tui/terminal.ts";
import { JsonEventWriter } from "../client/tui/json.ts";
import { MemoryIgnoreList } from "../client/tui/ignore.ts";
import { deferred } from "../shared/async.ts";
import { within } from "./_deadline.ts";
import { waitUntil } from "./_raw.ts";
import { ReelayError } from "../shared/errors.ts";
import type { VideoListing } from "../shared/protocol/messages.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

const FP_BOB = "b0b0:b0b0:b0b0:b0b0:b0b0:b0b0:b0b0:b0b0:b0b0:b0b0";
const FP_ME = "a11c:a11c:a11c:a11c:a11c:a11c:a11c:a11c:a11c:a11c";
const CATS: VideoListing = {
  name: "cats.mp4",
  duration: 9,
  width: 640,
  height: 360,
  fps: 25,
  hasAudio: false,
  segments: [],
};

const tick = (ms = 0) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * An in-memory session. `log` records calls and the events it emits, in order, so tests can
 * check sequencing (e.g. that quit comes after the stream ended).
 */
class FakeSession implements ChatSession {
  readonly name = "alice";
  readonly log: string[] = [];
  #logWaiters: { entry: string; resolve: () => void }[] = [];
  #listening = deferred<void>();
  peers: PeerView[] = [{ name: "Bob", fingerprint: FP_BOB, trust: "changed" }];
  /** When set, send() waits for it. */
  sendGate: Promise<void> | undefined;
  catalog: VideoListing[] = [CATS];
  #listeners: ((event: ClientEvent) => void)[] = [];
  #streams = 0;
  /** How to end each stream still running (the test says when). */
  #running: (() => void)[] = [];
  #idleWaiters: (() => void)[] = [];
  #closed = deferred<{ code: string; reason: string }>();
  readonly closed = this.#closed.promise;

  /** Resolves once `entry` is in the log (fails after a deadline instead of hanging). */
  reached(entry: string): Promise<void> {
    if (this.log.includes(entry)) return Promise.resolve();
    const { promise, resolve } = Promise.withResolvers<void>();
    this.#logWaiters.push({ entry, resolve });
    return within(promise, 10_000, `the session to log ${JSON.stringify(entry)}`);
  }

  /** Resolves once the app listens to events. */
  listening(): Promise<void> {
    return within(this.#listening.promise, 10_000, "the app to listen to session events");
  }

  #record(entry: string): void {
    this.log.push(entry);
    for (const waiter of this.#logWaiters.filter((w) => w.entry === entry)) waiter.resolve();
    this.#logWaiters = this.#logWaiters.filter((w) => w.entry !== entry);
  }

  emit(event: ClientEvent): void {
    this.#record(`event:${event.event}`);
    for (const listener of this.#listeners) listener(event);
  }

  onEvent(listener: (event: ClientEvent) => void): void {
    this.#listeners.push(listener);
    this.#listening.resolve();
  }

  who(): PeerView[] {
    this.#record("who");
    return this.peers.map((peer) => ({ ...peer }));
  }

  async send(to: string, text: string): Promise<void> {
    this.#record(`send:${to}:${text}`);
    if (to.toLowerCase() !== "bob") {
      throw new ReelayError("unknown-recipient", `Nobody called ${to} is online`);
    }
    await this.sendGate;
    this.emit({ event: "sent", to: "Bob", id: `m-${text}` });
  }

  verify(name: string) {
    this.#record(`verify:${name}`);
    return Promise.resolve({ code: "111 222 333", fingerprint: FP_BOB, yourFingerprint: FP_ME });
  }

  trust(name: string): Promise<void> {
    this.#record(`trust:${name}`);
    this.peers = this.peers.map((peer) => ({ ...peer, trust: "verified" }));
    // Like the real session: trust() itself reports `trusted`.
    this.emit({ event: "trusted", name: "Bob", fingerprint: FP_BOB });
    return Promise.resolve();
  }

  listVideos(): Promise<VideoListing[]> {
    this.#record("videos");
    return Promise.resolve(this.catalog);
  }

  play(video: string): Promise<void> {
    this.#record(`play:${video}`);
    if (video !== "cats.mp4") {
      return Promise.reject(new ReelayError("unknown-video", `No video called ${video}`));
    }
    this.#streams++;
    this.emit({ event: "stream-started", video, duration: 9, segments: [] });
    this.#running.push(() => {
      this.emit({ event: "stream-ended", video, bytes: 4096, reason: "complete" });
      this.#streams--;
      this.#settle();
    });
    return Promise.resolve();
  }

  stop(): Promise<void> {
    this.#record("stop");
    return Promise.resolve();
  }

  pause(): void {
    this.#record("pause");
  }

  resume(): void {
    this.#record("resume");
  }

  seek(seconds: number, relative = false): Promise<void> {
    this.#record(`seek ${relative && seconds >= 0 ? "+" : ""}${seconds}`);
    return Promise.resolve();
  }

  idle(): Promise<void> {
    this.#record("idle");
    if (this.#streams === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  quit(): Promise<void> {
    this.#record("quit");
    this.#closed.resolve({ code: "quit", reason: "You left" });
    return Promise.resolve();
  }

  /** Every running stream ends complete. */
  endStreams(): void {
    for (const end of this.#running.splice(0)) end();
  }

  /** The server went away. */
  drop(reason: string, announce: boolean): void {
    this.#running = [];
    if (announce) this.emit({ event: "disconnected", code: "connection-lost", reason });
    this.#closed.resolve({ code: "connection-lost", reason });
  }

  /** The server stayed away past the give-up time: `gave-up`, then the session ends. */
  giveUp(): void {
    this.#running = [];
    const reason = "Connection to h:9 was refused";
    this.emit({
      event: "gave-up",
      server: "h:9",
      code: "server-unreachable",
      reason,
      afterMs: 120_000,
      attempts: 3,
    });
    this.#closed.resolve({ code: "gave-up", reason });
  }

  #settle(): void {
    if (this.#streams > 0) return;
    for (const resolve of this.#idleWaiters.splice(0)) resolve();
  }
}

/** Collects what was written to a byte sink. */
function collector() {
  const chunks: Uint8Array[] = [];
  const stream = new WritableStream<Uint8Array>({ write: (chunk) => void chunks.push(chunk) });
  const text = () => chunks.map((chunk) => decoder.decode(chunk)).join("");
  return {
    stream,
    text,
    events: () => text().split("\n").filter(Boolean).map((l) => JSON.parse(l)),
  };
}

function syncCollector(): SyncWriter & { text: () => string } {
  let out = "";
  return {
    writeSync(bytes: Uint8Array): number {
      out += decoder.decode(bytes);
      return bytes.length;
    },
    text: () => out,
  };
}

/** Piped input from fixed text; it ends after the text (or stays open if `open`). */
function piped(text: string, open = false) {
  const output = syncCollector();
  const input = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(encoder.encode(text));
      if (!open) controller.close();
    },
  });
  return { input: new PipedInput({ input, output, signals: false }), output };
}

/** Input that yields lines, then ends with the given reason without closing on its own. */
class ScriptedInput implements LineInput {
  printed: string[] = [];
  endReason: InputEnd | undefined;
  setStatus?: (render: ((width: number) => string) | undefined) => void;
  setPrompt?: (prompt: string) => void;
  bell?: () => void;
  columns?: () => number | undefined;
  /** Resolves when the app asked for the line after the last one. */
  readonly drained = deferred<void>();
  constructor(private script: string[], private end: InputEnd, private hold?: Promise<void>) {}
  async *lines(): AsyncGenerator<string> {
    for (const line of this.script) yield line;
    this.drained.resolve();
    await this.hold;
    this.endReason = this.end;
  }
  print(text: string): void {
    this.printed.push(text);
  }
  close(): void {}
}

Deno.test("app: --json emits exactly one event object per line, in command order", async () => {
  const session = new FakeSession();
  const sink = collector();
  const help: string[] = [];
  const { input } = piped(
    "/who\r\n/msg bob hi  there\n/msg zed hello\nhello\n/verify bob\n/trust bob\n/videos\n" +
      "/help\n\n/bogus\n/msg bob last line without newline",
  );
  const code = await runClientApp({
    session,
    input,
    json: true,
    jsonOutput: sink.stream,
    diagnostics: (text) => help.push(text),
  });
  assert.equal(code, EXIT_COMMAND_FAILED, "commands failed: a script can tell");
  assert.deepEqual(sink.events(), [
    { event: "who", peers: [{ name: "Bob", fingerprint: FP_BOB, trust: "changed" }] },
    { event: "sent", to: "Bob", id: "m-hi  there" },
    {
      event: "error",
      code: "unknown-recipient",
      message: "Nobody called zed is online",
      line: 3,
      input: "/msg zed hello",
    },
    {
      event: "error",
      code: "no-conversation",
      message: "No conversation open: type /query NAME first (then plain lines go to NAME), " +
        "or /msg NAME TEXT",
      line: 4,
      input: "hello",
    },
    {
      event: "verify",
      name: "Bob",
      code: "111 222 333",
      fingerprint: FP_BOB,
      yourFingerprint: FP_ME,
    },
    { event: "trusted", name: "Bob", fingerprint: FP_BOB },
    { event: "videos", videos: [CATS] },
    {
      event: "error",
      code: "unknown-command",
      message: 'Unknown command "/bogus". Type /help for the list of commands',
      line: 10,
      input: "/bogus",
    },
    { event: "sent", to: "Bob", id: "m-last line without newline" },
  ]);
  assert.deepEqual(help, [HELP_TEXT], "help goes to diagnostics, not into the JSON stream");
  assert.deepEqual(session.log.slice(-2), ["idle", "quit"]);
});

Deno.test("app: each /trust shows trusted once, as the session reports it", async () => {
  const session = new FakeSession();
  const sink = collector();
  const { input } = piped("/trust bob\n/trust bob\n");
  assert.equal(await runClientApp({ session, input, json: true, jsonOutput: sink.stream }), 0);
  assert.deepEqual(sink.events().map((event) => event.event), ["trusted", "trusted"]);
});

Deno.test("app: end of input waits for the running stream, then quits", async () => {
  const session = new FakeSession();
  const sink = collector();
  const { input } = piped("/play cats.mp4\n");
  const running = runClientApp({ session, input, json: true, jsonOutput: sink.stream });
  await session.reached("idle");
  session.endStreams();
  assert.equal(await within(running, 30_000, "the app to exit"), 0);
  assert.deepEqual(session.log, [
    "videos",
    "play:cats.mp4",
    "event:stream-started",
    "idle",
    "event:stream-ended",
    "quit",
  ]);
  assert.deepEqual(sink.events().map((event) => event.event), ["stream-started", "stream-ended"]);
});

Deno.test("app: end of input lets queued commands finish before waiting for idle", async () => {
  const session = new FakeSession();
  const gate = deferred<void>();
  session.sendGate = gate.promise;
  const sink = collector();
  const input = new ScriptedInput(["/msg bob one", "/who"], "eof");
  const running = runClientApp({ session, input, json: true, jsonOutput: sink.stream });
  // Once the app has read past /who, a /who run without waiting would already be logged.
  await within(input.drained.promise, 10_000, "the app to read every line");
  await session.reached("send:bob:one");
  assert.deepEqual(session.log, ["send:bob:one"], "the /who waits for the send");
  gate.resolve();
  assert.equal(await within(running, 30_000, "the app to exit"), 0);
  assert.deepEqual(session.log, ["send:bob:one", "event:sent", "who", "idle", "quit"]);
  assert.deepEqual(sink.events().map((event) => event.event), ["sent", "who"]);
});

Deno.test("app: server gone while input is open exits 1 with the reason", async () => {
  const session = new FakeSession();
  const sink = collector();
  const { input } = piped("/who\n", true);
  const running = runClientApp({ session, input, json: true, jsonOutput: sink.stream });
  await session.reached("who");
  session.drop("Connection reset by the server", false);
  assert.equal(await within(running, 30_000, "the app to exit"), 1);
  assert.deepEqual(sink.events().at(-1), {
    event: "disconnected",
    code: "connection-lost",
    reason: "Connection reset by the server",
  });
  assert.ok(!session.log.includes("quit"), "nothing to say goodbye to");
});

Deno.test("app: a disconnect the session announced is not repeated", async () => {
  const session = new FakeSession();
  const sink = collector();
  const { input } = piped("", true);
  const running = runClientApp({ session, input, json: true, jsonOutput: sink.stream });
  await session.listening();
  session.drop("Server shut down", true);
  assert.equal(await within(running, 30_000, "the app to exit"), 1);
  assert.deepEqual(sink.events().map((event) => event.event), ["disconnected"]);
});

Deno.test("app: server gone while waiting for idle at end of input exits 1", async () => {
  const session = new FakeSession();
  const sink = collector();
  const { input } = piped("/play cats.mp4\n");
  const running = runClientApp({ session, input, json: true, jsonOutput: sink.stream });
  await session.reached("idle");
  assert.deepEqual(session.log.at(-1), "idle");
  session.drop("Connection lost", true);
  assert.equal(await within(running, 30_000, "the app to exit"), 1);
  assert.ok(!session.log.includes("quit"));
});

Deno.test("app: /quit quits at once and skips the lines after it", async () => {
  const session = new FakeSession();
  const sink = collector();
  const { input } = piped("/who\n/quit\n/msg bob never\n");
  assert.equal(await runClientApp({ session, input, json: true, jsonOutput: sink.stream }), 0);
  assert.deepEqual(session.log, ["who", "quit"]);
});

Deno.test("app: Ctrl-C quits even while a command is waiting on the network", async () => {
  const session = new FakeSession();
  const gate = deferred<void>();
  session.sendGate = gate.promise;
  const input = new ScriptedInput(["/msg bob stuck"], "interrupt");
  const code = await runClientApp({ session, input, json: false, color: false });
  assert.equal(code, 0);
  assert.deepEqual(session.log, ["send:bob:stuck", "quit"]);
  gate.resolve();
});

Deno.test("app: human output prints plain lines through the input, help included", async () => {
  const session = new FakeSession();
  const { input, output } = piped("/help\n/msg zed hi\n/who\n");
  assert.equal(await runClientApp({ session, input, json: false, color: false }), 0);
  const text = output.text();
  assert.ok(text.startsWith(HELP_TEXT + "\n"));
  assert.ok(
    text.includes("line 2: ✗ Nobody called zed is online\n"),
    "words, not codes, and which input line failed",
  );
  assert.ok(text.includes(`Bob   changed  ${FP_BOB}\n`));
  assert.ok(!text.includes("\x1b"));
});

Deno.test("app: progress goes to the status line, never to the transcript", async () => {
  const session = new FakeSession();
  let now = 0;
  const hold = deferred<void>();
  const input = new ScriptedInput([], "eof", hold.promise);
  const statuses: string[] = [];
  input.setStatus = (render) => void statuses.push(render?.(79) ?? "");
  const running = runClientApp({ session, input, json: false, color: false, now: () => now });
  const plan = (index: number, height: number) => ({
    index,
    start: index * 3,
    end: index * 3 + 3,
    width: height * 2,
    height,
    requestedHeight: height,
    capped: false,
  });
  session.emit({
    event: "stream-started",
    video: "cats.mp4",
    duration: 9,
    segments: [plan(0, 144), plan(1, 360), plan(2, 720)],
  });
  for (let second = 0; second < 9; second++) {
    now = second * 1000;
    const index = Math.floor(second / 3);
    const height = [144, 360, 720][index];
    if (second % 3 === 0) {
      // Bytes of the part arrive (not told), then the player shows it (told).
      session.emit({ event: "segment", video: "cats.mp4", index, height, width: 0 });
      session.emit({ event: "showing", video: "cats.mp4", index, height, width: 0 });
    }
    session.emit({
      event: "progress",
      video: "cats.mp4",
      index,
      height,
      position: second + 2,
      shown: second,
      duration: 9,
      bytes: second * 1000,
    });
  }
  session.emit({ event: "stream-ended", video: "cats.mp4", bytes: 9000, reason: "complete" });
  hold.resolve();
  assert.equal(await within(running, 30_000, "the app to exit"), 0);
  assert.equal(
    input.printed.length,
    5,
    "started, three parts on screen, finished:\n" + input.printed.join("\n"),
  );
  assert.ok(input.printed.every((line) => !line.includes("/ 0:09")));
  assert.ok(
    statuses.includes("playing cats.mp4, part 2/3, 360p, 0:03 / 0:09, 2 s buffered"),
    statuses.join("\n"),
  );
  assert.equal(statuses.at(-1), "", "the status line goes when the stream ends");
});

Deno.test("app: /query sends plain lines to that person, the prompt shows them, /r replies", async () => {
  const session = new FakeSession();
  const hold = deferred<void>();
  const input = new ScriptedInput(
    ["/query bob", "hi there", "/query", "/r back to you", "/r"],
    "eof",
    hold.promise,
  );
  const prompts: string[] = [];
  input.setPrompt = (prompt) => void prompts.push(prompt);
  const sink = collector();
  const running = runClientApp({ session, input, json: true, jsonOutput: sink.stream });
  session.emit({ event: "message", from: "Bob", text: "hey", id: "x", sentAt: 0, missing: 0 });
  hold.resolve();
  assert.equal(await within(running, 30_000, "the app to exit"), 0);
  assert.deepEqual(session.log.filter((entry) => entry.startsWith("send:")), [
    "send:Bob:hi there",
    "send:Bob:back to you",
  ]);
  assert.deepEqual(prompts, ["[Bob] alice> ", "alice> ", "[Bob] alice> "]);
  assert.deepEqual(sink.events().filter((event) => event.event === "conversation"), [
    { event: "conversation", name: "Bob" },
    { event: "conversation" },
    { event: "conversation", name: "Bob" },
  ]);
});

Deno.test("app: unread counts while elsewhere, a bell per message, ignored people dropped", async () => {
  const session = new FakeSession();
  session.peers.push({ name: "carol", fingerprint: FP_ME, trust: "verified" });
  const hold = deferred<void>();
  const input = new ScriptedInput(["/query carol", "/ignore Eve"], "eof", hold.promise);
  let bells = 0;
  input.bell = () => void bells++;
  let status = (_width: number) => "";
  input.setStatus = (render) => void (status = render ?? status);
  const ignore = new MemoryIgnoreList();
  const running = runClientApp({ session, input, json: false, color: false, ignore });
  const from = (name: string) =>
    session.emit({ event: "message", from: name, text: "psst", id: name, sentAt: 0, missing: 0 });
  await waitFor(() => ignore.has("eve"));
  from("Bob");
  from("Bob");
  from("carol");
  from("eve");
  assert.equal(status(79), "unread: Bob 2");
  assert.equal(bells, 3, "the ignored message rings nothing");
  assert.ok(input.printed.every((line) => !line.includes("eve:")));
  hold.resolve();
  assert.equal(await within(running, 30_000, "the app to exit"), 0);
  const quiet = new ScriptedInput([], "eof");
  quiet.bell = () => void bells++;
  const second = new FakeSession();
  const done = runClientApp({
    session: second,
    input: quiet,
    json: false,
    color: false,
    bell: false,
  });
  second.emit({ event: "message", from: "Bob", text: "hi", id: "y", sentAt: 0, missing: 0 });
  assert.equal(await done, 0);
  assert.equal(bells, 3, "[client] bell = false keeps quiet");
});

/** Polls a condition on the event loop's turns (no timer), failing after 200 turns. */
async function waitFor(condition: () => boolean): Promise<void> {
  for (let turn = 0; turn < 200; turn++) {
    if (condition()) return;
    await Promise.resolve();
    await new Promise<void>((resolve) => queueMicrotask(resolve));
  }
  throw new Error("condition never held");
}

Deno.test("piped input: CRLF, a last line without newline, and lines split across chunks", async () => {
  const chunks = ["/who\r", "\n/msg bob h", "é\n\n/quit"].map((text) => encoder.encode(text));
  const input = new PipedInput({ input: ReadableStream.from(chunks), signals: false });
  const lines: string[] = [];
  for await (const line of input.lines()) lines.push(line);
  assert.deepEqual(lines, ["/who", "/msg bob hé", "", "/quit"]);
  assert.equal(input.endReason, "eof");
});

Deno.test("json writer: short writes are completed and lines never interleave", async () => {
  let out = "";
  const slow = {
    async write(bytes: Uint8Array): Promise<number> {
      if (Math.random() < 0.3) await tick();
      const n = Math.min(7, bytes.length);
      out += decoder.decode(bytes.subarray(0, n));
      return n;
    },
  };
  const writer = new JsonEventWriter(slow);
  const sent: ClientEvent[] = [];
  for (let i = 0; i < 20; i++) {
    const event: ClientEvent = { event: "sent", to: "bob", id: `message-${i}-${"x".repeat(i)}` };
    sent.push(event);
    writer.write(event);
  }
  await writer.flush();
  assert.deepEqual(out.trimEnd().split("\n").map((line) => JSON.parse(line)), sent);
});

Deno.test("json writer: a broken output is reported by flush, and write never throws", async () => {
  const writer = new JsonEventWriter({ write: () => Promise.reject(new Error("Broken pipe")) });
  writer.write({ event: "left", name: "bob" });
  writer.write({ event: "left", name: "carol" });
  await assert.rejects(writer.flush(), /Broken pipe/);
  assert.equal(writer.failed, true);
});

Deno.test("terminal input: raw mode while reading, prints above the prompt, restores on Ctrl-C", async () => {
  const raw: boolean[] = [];
  const output = syncCollector();
  let feed!: ReadableStreamDefaultController<Uint8Array>;
  const readable = new ReadableStream<Uint8Array>({ start: (c) => void (feed = c) });
  const input = new TerminalInput({
    prompt: "> ",
    input: { readable, setRaw: (mode) => void raw.push(mode) },
    output,
    columns: () => 40,
    signals: false,
  });
  const lines: string[] = [];
  const reading = (async () => {
    for await (const line of input.lines()) lines.push(line);
  })();
  await waitUntil(() => raw.length === 1, "raw mode on while reading");
  feed.enqueue(encoder.encode("/who\r/ms"));
  await waitUntil(() => output.text().includes("> /ms"), "the typed text to echo");
  input.print("bob joined");
  assert.ok(output.text().endsWith("\r\x1b[2Kbob joined\r\n\r\x1b[2K> /ms\r\x1b[5C"));
  feed.enqueue(encoder.encode("\x03"));
  await within(reading, 30_000, "the input to end");
  assert.deepEqual(lines, ["/who"]);
  assert.deepEqual(raw, [true, false]);
  assert.equal(input.endReason, "interrupt");
  input.print("after");
  assert.ok(output.text().endsWith("\r\x1b[2Kafter\n"), "plain output once restored");
});

Deno.test("terminal input: close() from outside restores the terminal and ends lines()", async () => {
  const raw: boolean[] = [];
  const readable = new ReadableStream<Uint8Array>();
  const input = new TerminalInput({
    input: { readable, setRaw: (mode) => void raw.push(mode) },
    output: syncCollector(),
    signals: false,
  });
  const reading = (async () => {
    for await (const _ of input.lines()) assert.fail("no lines expected");
  })();
  await waitUntil(() => raw.length === 1, "raw mode on while reading");
  input.close();
  input.close();
  await within(reading, 30_000, "the input to end");
  assert.deepEqual(raw, [true, false]);
});

Deno.test("app: in a terminal, long lines wrap at words with indented continuations", async () => {
  const session = new FakeSession();
  const hold = deferred<void>();
  const input = new ScriptedInput([], "eof", hold.promise);
  input.columns = () => 30;
  const running = runClientApp({ session, input, json: false, color: false });
  const text = "the quick brown fox jumps over the lazy dog\nnew line";
  session.emit({ event: "message", from: "bob", text, id: "w", sentAt: 0, missing: 0 });
  hold.resolve();
  assert.equal(await within(running, 30_000, "the app to exit"), 0);
  const lines = input.printed[0].split("\n");
  assert.ok(lines.every((line) => line.length <= 29), lines.join("\n"));
  assert.match(lines[0], /^\[\d\d:\d\d\] bob: the quick brown$/);
  assert.ok(lines.slice(1).every((line) => line.startsWith("  ") && !line.startsWith("   ")));
  assert.equal(
    lines.map((line) => line.trim()).join(" "),
    lines.join(" ").replace(/ +/g, " ").trim(),
  );
  assert.ok(!lines.some((line) => line.includes("\n")));
});

Deno.test("app: /play finds a video by a unique start, ignoring case; an ambiguous one is an error naming both", async () => {
  const session = new FakeSession();
  session.catalog = [CATS, { ...CATS, name: "cats 2.mkv" }, { ...CATS, name: "dogs.mp4" }];
  const sink = collector();
  const { input } = piped("/play CATS.\n/play cat\n/play zebra\n");
  const running = runClientApp({ session, input, json: true, jsonOutput: sink.stream });
  await session.reached("idle");
  session.endStreams();
  assert.equal(await within(running, 30_000, "the app to exit"), EXIT_COMMAND_FAILED);
  assert.ok(session.log.includes("play:cats.mp4"));
  const errors = sink.events().filter((event) => event.event === "error");
  assert.deepEqual(errors.map((event) => [event.code, event.line]), [
    ["ambiguous-video", 2],
    ["unknown-video", 3],
  ]);
  assert.match(errors[0].message, /"cats\.mp4" or "cats 2\.mkv": type more/);
});

/** The connection lost, three attempts, back, lost again and given up, as a session tells it. */
function outage(session: FakeSession): void {
  const lost = { event: "reconnecting", server: "h:9", code: "server-lost" } as const;
  for (const attempt of [1, 2, 3]) {
    session.emit({ ...lost, reason: `lost ${attempt}`, attempt, delayMs: 1000 });
  }
  session.emit({
    event: "reconnected",
    server: "h:9",
    afterMs: 4000,
    attempts: 3,
    online: 1,
    names: [],
  });
  for (const attempt of [1, 2]) {
    session.emit({ ...lost, reason: `again ${attempt}`, attempt, delayMs: 1000 });
  }
  session.giveUp();
}

Deno.test("app: with a status line, the transcript gets the first attempt and the outcome; gave-up exits 5", async () => {
  const session = new FakeSession();
  const input = new ScriptedInput([], "eof", new Promise(() => {}));
  const statuses: string[] = [];
  input.setStatus = (render) => void statuses.push(render?.(79) ?? "");
  const running = runClientApp({ session, input, json: false, color: false });
  await session.listening();
  outage(session);
  assert.equal(await within(running, 30_000, "the app to exit"), EXIT_GAVE_UP);
  assert.deepEqual(input.printed, [
    "Connection lost: lost 1; reconnecting in 1 s (attempt 1)",
    "Back: reconnected to h:9 after 4 s (online: nobody else)",
    "Connection lost: again 1; reconnecting in 1 s (attempt 1)",
    "Gave up reconnecting to h:9 after 2 min (3 attempts): Connection to h:9 was refused",
  ]);
  assert.ok(
    statuses.some((line) => line.startsWith("reconnecting (attempt 3)")),
    statuses.join("\n"),
  );
  assert.equal(statuses.at(-1), "", "the countdown goes with the session");
});

Deno.test("app: without a status line every attempt is a line; --json gets every event and exit 5", async () => {
  const plain = new FakeSession();
  const input = new ScriptedInput([], "eof", new Promise(() => {}));
  const running = runClientApp({ session: plain, input, json: false, color: false });
  await plain.listening();
  outage(plain);
  assert.equal(await within(running, 30_000, "the app to exit"), EXIT_GAVE_UP);
  assert.equal(input.printed.filter((line) => /\(attempt \d\)$/.test(line)).length, 5);

  const scripted = new FakeSession();
  const sink = collector();
  const { input: lines } = piped("", true);
  const json = runClientApp({
    session: scripted,
    input: lines,
    json: true,
    jsonOutput: sink.stream,
  });
  await scripted.listening();
  outage(scripted);
  assert.equal(await within(json, 30_000, "the app to exit"), EXIT_GAVE_UP);
  assert.deepEqual(sink.events().map((event) => event.event), [
    ...Array(3).fill("reconnecting"),
    "reconnected",
    ...Array(2).fill("reconnecting"),
    "gave-up",
  ]);
});
