/**
 * Chat figures through the real server (the `reelay server` CLI in its own process): one-way
 * latency and messages/s for one pair of {@linkcode ClientSession}s (seal, relay, verify, open),
 * against the same messages relayed as bare frames without crypto by raw peers, and against
 * seal+open alone in this process; then 50 pairs among 100 connected clients.
 *
 * @module
 */

import { ClientSession } from "../client/session.ts";
import { abortAfter, withTimeout } from "../shared/async.ts";
import { loadOrCreateIdentity } from "../client/keystore.ts";
import { ClientStore } from "../client/store/mod.ts";
import { knownServers } from "../client/server_trust.ts";
import { type Identity, Ratchet } from "../shared/crypto/mod.ts";
import { randomBytes } from "../shared/bytes.ts";
import type { BenchContext } from "./_context.ts";
import { sleep, spawnServer } from "./_procs.ts";
import { percentile, ratios, summarize } from "./_stats.ts";
import { RawPeer } from "./_wire.ts";
import type { ServerMessage } from "../shared/protocol/mod.ts";
import type { Figure, GroupResult } from "./report.ts";

const REPS = 3;
const TEXT_BYTES = 100;
const STEADY_RATE = 10;
const STEADY_SECONDS = 5;
const SATURATION_MESSAGES = 2000;
/** Messages a saturating sender keeps in flight (sent, not yet acknowledged by the server). */
const SATURATION_WINDOW = 32;
const CROWD = 100;
const CROWD_MESSAGES = 100;
const CROWD_WINDOW = 8;
/** How long any one wait of the bench may take before the run fails, naming what it waited for. */
const WAIT_MS = 60_000;
/** How long the crowd may take to see each other once joined. */
const CROWD_JOIN_MS = 180_000;

/** The config the bench server runs with: the chat rate limit raised out of the way. */
export const CHAT_CONFIG = `; deno task bench: chat
[limits]
chat_rate = 1000000
chat_burst = 1000000
chat_inbound_rate = 1000000
chat_inbound_burst = 1000000
chat_pair_rate = 1000000
chat_pair_burst = 1000000
max_clients_per_host = 1000
; The crowd joins 20 at a time from one host, each through a handshake.
max_pending_per_host = 64
`;

/** A message text of TEXT_BYTES that carries its run and sequence number. */
function textFor(run: number, seq: number): string {
  return `${run}:${seq}:`.padEnd(TEXT_BYTES, "x");
}

function parseText(text: string): { run: number; seq: number } {
  const [run, seq] = text.split(":", 2).map(Number);
  return { run, seq };
}

/** An opaque envelope of `length` bytes carrying a sequence number in its first four. */
function rawEnvelope(seq: number, length: number): Uint8Array {
  const envelope = new Uint8Array(Math.max(4, length));
  new DataView(envelope.buffer).setUint32(0, seq);
  return envelope;
}

function rawSeq(envelope: Uint8Array): number {
  return new DataView(envelope.buffer, envelope.byteOffset, 4).getUint32(0);
}

/** Send and receive times of one run, by sequence number. */
class Timings {
  readonly sentAt: number[] = [];
  readonly receivedAt: number[] = [];
  received = 0;
  readonly done = Promise.withResolvers<void>();

  constructor(readonly run: number, readonly count: number) {}

  receive(seq: number): void {
    if (seq < 0 || seq >= this.count || this.receivedAt[seq] !== undefined) return;
    this.receivedAt[seq] = performance.now();
    if (++this.received === this.count) this.done.resolve();
  }

  latencies(): number[] {
    return this.sentAt.map((sent, seq) => this.receivedAt[seq] - sent);
  }

  /** Messages per second, first send to last receipt. */
  rate(): number {
    const last = Math.max(...this.receivedAt);
    return this.count / ((last - this.sentAt[0]) / 1000);
  }

  /** Resolves once every message arrived; rejects after `timeoutMs` naming the missing ones. */
  wait(what: string, timeoutMs = WAIT_MS): Promise<void> {
    return withTimeout(this.done.promise, timeoutMs, () => {
      const missing: number[] = [];
      for (let seq = 0; seq < this.count && missing.length < 5; seq++) {
        if (this.receivedAt[seq] === undefined) missing.push(seq);
      }
      return new Error(
        `Run ${this.run} (${what}): ${this.received}/${this.count} arrived within ` +
          `${timeoutMs} ms; sent ${this.sentAt.filter((t) => t !== undefined).length}; ` +
          `first missing: ${missing.join(", ")}`,
      );
    });
  }
}

let nextRun = 1;

/** Polls `condition` until it holds; rejects after `ms` with what it waited for. */
async function until(condition: () => boolean, what: () => string, ms = WAIT_MS): Promise<void> {
  const deadline = abortAfter(ms);
  try {
    while (!condition()) {
      if (deadline.signal.aborted) throw new Error(`Waited ${ms} ms for ${what()}`);
      await sleep(10);
    }
  } finally {
    deadline.clear();
  }
}

/** Runs a closer, failing after WAIT_MS instead of keeping the server from being stopped. */
function closeWithin(close: () => Promise<void>): Promise<void> {
  return withTimeout(
    close(),
    WAIT_MS,
    () => new Error(`A client did not close within ${WAIT_MS} ms`),
  );
}

/** A session's `send`, failing after WAIT_MS with who sent what instead of hanging. */
function sendWithin(client: ChatClient, to: string, text: string): Promise<void> {
  return withTimeout(
    client.session.send(to, text),
    WAIT_MS,
    () =>
      new Error(
        `${client.session.name} -> ${to}: send of "${text.slice(0, 12)}" took over ${WAIT_MS} ms`,
      ),
  );
}

/** A session whose received messages go to the current Timings of their run. */
class ChatClient {
  readonly runs = new Map<number, Timings>();
  errors: string[] = [];

  constructor(readonly session: ClientSession) {
    session.onEvent((event) => {
      if (event.event === "message") {
        const { run, seq } = parseText(event.text);
        this.runs.get(run)?.receive(seq);
      } else if (event.event === "error") {
        if (this.errors.length < 5) this.errors.push(`${event.code}: ${event.message}`);
      }
    });
  }

  static async connect(
    port: number,
    name: string,
    identity: Identity,
    storeId: string,
    home: string,
  ): Promise<ChatClient> {
    const session = await ClientSession.connect({
      hostname: "127.0.0.1",
      port,
      name,
      identity,
      openStore: () => ClientStore.open({ home, server: storeId, identity }),
      serverPins: knownServers(home),
    });
    return new ChatClient(session);
  }
}

/** The server's answer to a `send`. */
type SendAnswer = Extract<ServerMessage, { type: "relayed" | "queued" | "error" }>;

/**
 * A raw peer whose deliveries go to the current Timings of a run (one run at a time), and whose
 * answers to its sends go to `onAnswer`.
 */
function attachRaw(peer: RawPeer, onAnswer?: (answer: SendAnswer) => void): { timings?: Timings } {
  const slot: { timings?: Timings } = {};
  peer.handlers = {
    onControl: (message) => {
      // RawPeer acknowledges every delivery itself (a second ack was one more commit each).
      if (message.type === "deliver") {
        slot.timings?.receive(rawSeq(message.envelope));
      } else if (
        message.type === "relayed" || message.type === "queued" || message.type === "error"
      ) onAnswer?.(message);
    },
  };
  return slot;
}

/** Sends `count` messages with at most `window` unacknowledged, through `send`. */
async function saturate(
  timings: Timings,
  window: number,
  send: (seq: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  const workers = Array.from({ length: window }, async () => {
    while (next < timings.count) {
      const seq = next++;
      timings.sentAt[seq] = performance.now();
      await send(seq);
    }
  });
  await Promise.all(workers);
}

/**
 * A raw sender: `send` resolves when the server relayed the message, and rejects when it answered
 * anything else or nothing within WAIT_MS. The server answers one connection's sends in order.
 */
function rawSender(
  from: RawPeer,
  to: string,
  envelopeLength: number,
): { send: (seq: number) => Promise<void>; answer: (answer: SendAnswer) => void } {
  const waiting: { seq: number; answered: PromiseWithResolvers<void> }[] = [];
  let relayed = 0;
  return {
    send: (seq) => {
      const answered = Promise.withResolvers<void>();
      waiting.push({ seq, answered });
      from.send({ type: "send", to, envelope: rawEnvelope(seq, envelopeLength) });
      return withTimeout(
        answered.promise,
        WAIT_MS,
        () =>
          new Error(
            `${from.name} -> ${to}: no answer to send ${seq} within ${WAIT_MS} ms ` +
              `(${relayed} relayed, ${waiting.length} unanswered` +
              (from.closed ? `; the connection is closed: ${from.serverError ?? "no error"}` : "") +
              ")",
          ),
      );
    },
    answer: (answer) => {
      const entry = waiting.shift();
      if (answer.type === "relayed") {
        relayed++;
        entry?.answered.resolve();
        return;
      }
      const detail = answer.type === "error" ? `${answer.code}: ${answer.message}` : "queued";
      entry?.answered.reject(
        new Error(`${from.name} -> ${to}: send ${entry.seq} was answered ${detail}`),
      );
    },
  };
}

/** A conversation's two ratchets, the way a started conversation holds them. */
async function ratchetPair(): Promise<{ sender: Ratchet; receiver: Ratchet }> {
  const sessionKey = randomBytes(32);
  const ad = randomBytes(94); // conversationAd() for two 5-letter names
  const receiver = await Ratchet.responder(sessionKey, randomBytes(32), ad);
  const sender = await Ratchet.initiator(sessionKey, receiver.ratchetPublicKey, ad);
  return { sender, receiver };
}

/** The plaintext a conversation seals for a chat message of `text`. */
function chatPlain(text: string): Uint8Array<ArrayBuffer> {
  return new TextEncoder().encode(JSON.stringify({ k: "m", id: "x".repeat(16), text, at: 0 }));
}

/** Seal then open `count` messages, pipelined (seals queued, opened in order as they finish). */
async function cryptoRate(count: number): Promise<number> {
  const { sender, receiver } = await ratchetPair();
  await receiver.decrypt(await sender.encrypt(chatPlain(textFor(0, 0))));
  const t0 = performance.now();
  const sealed = Array.from(
    { length: count },
    (_, i) => sender.encrypt(chatPlain(textFor(0, i + 1))),
  );
  for (const message of sealed) await receiver.decrypt(await message);
  return count / ((performance.now() - t0) / 1000);
}

/** Runs the chat group. */
export async function runChat(ctx: BenchContext): Promise<GroupResult> {
  const began = performance.now();
  const videos = await Deno.makeTempDir({ dir: ctx.tempDir, prefix: "chat-videos-" });
  const server = await spawnServer({ videos, configIni: CHAT_CONFIG, tempDir: ctx.tempDir });
  const figures: Figure[] = [];
  const findings: string[] = [];
  const closers: (() => Promise<void>)[] = [];
  try {
    const homeA = await Deno.makeTempDir({ dir: ctx.tempDir, prefix: "alice-" });
    const homeB = await Deno.makeTempDir({ dir: ctx.tempDir, prefix: "bob-" });
    const [a, b] = await Promise.all([loadOrCreateIdentity(homeA), loadOrCreateIdentity(homeB)]);
    const alice = await ChatClient.connect(server.port, "alice", a.identity, "bench", homeA);
    closers.push(() => alice.session.quit());
    const bob = await ChatClient.connect(server.port, "bob", b.identity, "bench", homeB);
    closers.push(() => bob.session.quit());
    const ra = await RawPeer.join(server.port, "raw-a", a.identity);
    closers.push(() => ra.close());
    const rb = await RawPeer.join(server.port, "raw-b", b.identity);
    closers.push(() => rb.close());
    await until(
      () => alice.session.who().some((peer) => peer.name === "bob"),
      () => `alice to see bob (she sees ${alice.session.who().map((peer) => peer.name)})`,
    );

    // The size of a real envelope (a kind byte and a ratchet message), so raw frames carry as
    // many bytes.
    const probe = await ratchetPair();
    const envelopeLength = 1 + (await probe.sender.encrypt(chatPlain(textFor(0, 1)))).length;

    const rawSlot = attachRaw(rb);
    const sender = rawSender(ra, "raw-b", envelopeLength);
    attachRaw(ra, sender.answer);

    // Warm-up: the pair's first message sets up its session (RSA), not measured.
    {
      const warm = new Timings(nextRun++, 1);
      bob.runs.set(warm.run, warm);
      warm.sentAt[0] = performance.now();
      await sendWithin(alice, "bob", textFor(warm.run, 0));
      await warm.wait("warm-up, alice to bob");
      rawSlot.timings = new Timings(nextRun++, 1);
      rawSlot.timings.sentAt[0] = performance.now();
      await sender.send(0);
      await rawSlot.timings.wait("warm-up, raw-a to raw-b");
    }

    ctx.log("chat: crypto-only ceiling");
    const ceiling: number[] = [];
    for (let rep = 0; rep < REPS; rep++) {
      ceiling.push(await cryptoRate(SATURATION_MESSAGES));
    }

    ctx.log(`chat: steady ${STEADY_RATE} msg/s for ${STEADY_SECONDS} s, e2e and raw interleaved`);
    const steady = { p50: [] as number[], p99: [] as number[] };
    const steadyRaw = { p50: [] as number[], p99: [] as number[] };
    const count = STEADY_RATE * STEADY_SECONDS;
    const period = 1000 / STEADY_RATE;
    for (let rep = 0; rep < REPS; rep++) {
      const e2e = new Timings(nextRun++, count);
      const raw = new Timings(nextRun++, count);
      bob.runs.set(e2e.run, e2e);
      rawSlot.timings = raw;
      const t0 = performance.now();
      const pending: Promise<void>[] = [];
      for (let seq = 0; seq < count; seq++) {
        await sleep(Math.max(0, t0 + seq * period - performance.now()));
        e2e.sentAt[seq] = performance.now();
        pending.push(sendWithin(alice, "bob", textFor(e2e.run, seq)));
        await sleep(Math.max(0, t0 + seq * period + period / 2 - performance.now()));
        raw.sentAt[seq] = performance.now();
        pending.push(sender.send(seq));
      }
      await Promise.all(pending);
      await Promise.all([e2e.wait("steady, alice to bob"), raw.wait("steady, raw")]);
      steady.p50.push(percentile(e2e.latencies(), 0.5));
      steady.p99.push(percentile(e2e.latencies(), 0.99));
      steadyRaw.p50.push(percentile(raw.latencies(), 0.5));
      steadyRaw.p99.push(percentile(raw.latencies(), 0.99));
    }

    ctx.log(`chat: saturation, ${SATURATION_MESSAGES} messages, ${SATURATION_WINDOW} in flight`);
    const sat = { rate: [] as number[], p50: [] as number[], p99: [] as number[] };
    /** Latency of the first and the last 100 messages of each e2e saturation run. */
    const backlog: { first: number; last: number }[] = [];
    const satRaw = { rate: [] as number[], p50: [] as number[], p99: [] as number[] };
    for (let rep = 0; rep < REPS; rep++) {
      const runE2e = async () => {
        const timings = new Timings(nextRun++, SATURATION_MESSAGES);
        bob.runs.set(timings.run, timings);
        await saturate(
          timings,
          SATURATION_WINDOW,
          (seq) => sendWithin(alice, "bob", textFor(timings.run, seq)),
        );
        await timings.wait("saturation, alice to bob");
        sat.rate.push(timings.rate());
        sat.p50.push(percentile(timings.latencies(), 0.5));
        sat.p99.push(percentile(timings.latencies(), 0.99));
        const latencies = timings.latencies();
        backlog.push({
          first: percentile(latencies.slice(0, 100), 0.5),
          last: percentile(latencies.slice(-100), 0.5),
        });
        bob.runs.delete(timings.run);
      };
      const runRaw = async () => {
        const timings = new Timings(nextRun++, SATURATION_MESSAGES);
        rawSlot.timings = timings;
        await saturate(timings, SATURATION_WINDOW, (seq) => sender.send(seq));
        await timings.wait("saturation, raw-a to raw-b");
        satRaw.rate.push(timings.rate());
        satRaw.p50.push(percentile(timings.latencies(), 0.5));
        satRaw.p99.push(percentile(timings.latencies(), 0.99));
      };
      if (rep % 2 === 0) {
        await runRaw();
        await runE2e();
      } else {
        await runE2e();
        await runRaw();
      }
    }
    if (bob.errors.length > 0) findings.push(`Errors at the receiver: ${bob.errors.join("; ")}`);
    // Little's law: with the window full, latency from the window alone is window ÷ rate.
    const windowMs = SATURATION_WINDOW / summarize(sat.rate).median * 1000;
    const backlogged = summarize(sat.p50).median > 2 * windowMs;
    findings.push(
      `At saturation ${SATURATION_WINDOW} messages in flight at the measured rate account for ` +
        `~${windowMs.toFixed(1)} ms of latency; the measured p50 is ` +
        `${summarize(sat.p50).median.toFixed(1)} ms. Median latency of the first 100 messages ` +
        `of each run: ${backlog.map((entry) => entry.first.toFixed(1)).join(", ")} ms; of the ` +
        `last 100: ${backlog.map((entry) => entry.last.toFixed(1)).join(", ")} ms. ` +
        (backlogged
          ? `The excess is a backlog at the receiver: \`send()\` resolves once the server has ` +
            `relayed a message, so the sender seals ahead of a receiver that opens one message ` +
            `at a time, and nothing but the rate limit paces it.`
          : `The window explains it: no backlog built up at the receiver in this run.`),
    );
    figures.push(
      {
        name: `pair at ${STEADY_RATE} msg/s: one-way latency p50`,
        value: summarize(steady.p50),
        unit: "ms",
        baseline: { label: "raw frames, no crypto", value: summarize(steadyRaw.p50), unit: "ms" },
        ratio: summarize(ratios(steady.p50, steadyRaw.p50)),
        ratioLabel: "e2e ÷ raw",
      },
      {
        name: `pair at ${STEADY_RATE} msg/s: one-way latency p99`,
        value: summarize(steady.p99),
        unit: "ms",
        baseline: { label: "raw frames, no crypto", value: summarize(steadyRaw.p99), unit: "ms" },
        ratio: summarize(ratios(steady.p99, steadyRaw.p99)),
        ratioLabel: "e2e ÷ raw",
      },
      {
        name: "pair at saturation: messages/s",
        value: summarize(sat.rate),
        unit: "msg/s",
        baseline: { label: "raw frames, no crypto", value: summarize(satRaw.rate), unit: "msg/s" },
        ratio: summarize(ratios(sat.rate, satRaw.rate)),
        ratioLabel: "e2e ÷ raw",
      },
      {
        name: "pair at saturation: messages/s vs crypto alone",
        value: summarize(sat.rate),
        unit: "msg/s",
        baseline: { label: "seal+open only", value: summarize(ceiling), unit: "msg/s" },
        ratio: summarize(ratios(sat.rate, ceiling)),
        ratioLabel: "e2e ÷ crypto",
      },
      {
        name: "pair at saturation: one-way latency p50",
        value: summarize(sat.p50),
        unit: "ms",
        baseline: { label: "raw frames, no crypto", value: summarize(satRaw.p50), unit: "ms" },
        ratio: summarize(ratios(sat.p50, satRaw.p50)),
        ratioLabel: "e2e ÷ raw",
      },
      {
        name: "pair at saturation: one-way latency p99",
        value: summarize(sat.p99),
        unit: "ms",
        baseline: { label: "raw frames, no crypto", value: summarize(satRaw.p99), unit: "ms" },
        ratio: summarize(ratios(sat.p99, satRaw.p99)),
        ratioLabel: "e2e ÷ raw",
      },
    );

    // 100 connected clients, 50 pairs sending at once: raw first, then real sessions.
    for (const close of closers.splice(0).reverse()) await closeWithin(close);
    ctx.log(`chat: ${CROWD} raw clients, ${CROWD / 2} pairs`);
    const crowdRaw = await crowdRawRates(server.port, a.identity, envelopeLength);
    ctx.log(`chat: ${CROWD} client sessions, ${CROWD / 2} pairs`);
    const crowdHome = await Deno.makeTempDir({ dir: ctx.tempDir, prefix: "crowd-" });
    const crowd = await crowdSessionRates(server.port, crowdHome, ctx, findings);
    figures.push({
      name: `${CROWD} clients, ${CROWD / 2} pairs at once: messages/s`,
      value: summarize(crowd),
      unit: "msg/s",
      baseline: { label: "raw frames, no crypto", value: summarize(crowdRaw), unit: "msg/s" },
      ratio: summarize(ratios(crowd, crowdRaw)),
      ratioLabel: "e2e ÷ raw",
    });
  } finally {
    for (const close of closers.reverse()) await closeWithin(close).catch(() => {});
    const status = await server.stop();
    if (status.code !== 0) findings.push(`Server exited with ${status.code}: ${server.tail()}`);
  }
  return {
    title: "Chat",
    method: [
      `Server: the real \`reelay server\` CLI in its own process on loopback, with ` +
      `\`[limits] chat_rate = chat_burst = 1000000\` in its config so the per-client rate ` +
      `limit (default 1000/s, burst 2000) does not cap the saturation runs. Clients run in ` +
      `the benchmark process. Messages are ${TEXT_BYTES} characters; each carries its ` +
      `sequence number, and latency is the receiver's \`performance.now()\` at the \`message\` ` +
      `event minus the sender's just before \`send()\` (same process, same clock), so it ` +
      `includes sealing, the relay through the server, verifying and opening.`,
      `Baselines, same run: raw peers (FramedConnection, signed hello) relaying frames of the ` +
      `same size with an opaque envelope through the same server (no crypto; the receiver only ` +
      `parses each frame as the client does), and seal+open alone in this process ` +
      `(a conversation's two Double Ratchets: encrypts queued, decrypts in order, no network) as ` +
      `the crypto ceiling.`,
      `Steady: ${STEADY_RATE} msg/s for ${STEADY_SECONDS} s (e2e and raw interleaved 50 ms ` +
      `apart, so both see the same conditions). Saturation: ${SATURATION_MESSAGES} messages ` +
      `with ${SATURATION_WINDOW} unacknowledged at most; messages/s is counted from the first ` +
      `send to the last receipt. Crowd: ${CROWD} clients joined, ${CROWD / 2} disjoint pairs ` +
      `each sending ${CROWD_MESSAGES} messages (${CROWD_WINDOW} in flight per sender) at ` +
      `once, counted at the receivers; each session has its own identity and store (prekeys ` +
      `are per identity). ${REPS} repetitions each; the first message of every pair ` +
      `(the conversation's start from a prekey bundle) is sent before measuring.`,
    ],
    figures,
    findings,
    seconds: (performance.now() - began) / 1000,
  };
}

async function joinAll<T>(count: number, batch: number, join: (i: number) => Promise<T>) {
  const joined: T[] = [];
  for (let start = 0; start < count; start += batch) {
    const size = Math.min(batch, count - start);
    joined.push(...await Promise.all(Array.from({ length: size }, (_, k) => join(start + k))));
  }
  return joined;
}

/** Messages/s at the receivers for 50 raw pairs at once, per repetition. */
async function crowdRawRates(
  port: number,
  identity: Identity,
  envelopeLength: number,
): Promise<number[]> {
  const name = (i: number) => `raw${String(i).padStart(3, "0")}`;
  const peers = await joinAll(CROWD, 20, (i) => RawPeer.join(port, name(i), identity));
  try {
    const rates: number[] = [];
    const pairs = Array.from({ length: CROWD / 2 }, (_, k) => {
      const from = peers[2 * k];
      const to = peers[2 * k + 1];
      const sender = rawSender(from, to.name, envelopeLength);
      attachRaw(from, sender.answer);
      return { sender, slot: attachRaw(to) };
    });
    for (let rep = 0; rep <= REPS; rep++) {
      const all = pairs.map((pair) => {
        pair.slot.timings = new Timings(nextRun++, CROWD_MESSAGES);
        return pair.slot.timings;
      });
      const t0 = performance.now();
      await Promise.all(pairs.map((pair, k) => saturate(all[k], CROWD_WINDOW, pair.sender.send)));
      await Promise.all(all.map((timings, k) => timings.wait(`crowd, raw pair ${k}`)));
      const last = Math.max(...all.flatMap((timings) => timings.receivedAt));
      // Repetition 0 is a warm-up.
      if (rep > 0) rates.push(all.length * CROWD_MESSAGES / ((last - t0) / 1000));
    }
    return rates;
  } finally {
    await Promise.all(peers.map((peer) => peer.close()));
  }
}

/** Messages/s at the receivers for 50 pairs of real sessions at once, per repetition. */
async function crowdSessionRates(
  port: number,
  home: string,
  ctx: BenchContext,
  findings: string[],
): Promise<number[]> {
  const name = (i: number) => `user${String(i).padStart(3, "0")}`;
  const joinStarted = performance.now();
  const clients = await joinAll(
    CROWD,
    10,
    // Each its own identity: prekeys are per identity, so sessions sharing one would hand out
    // each other's prekeys and the first message of a pair could not be opened.
    async (i) => {
      const own = await Deno.makeTempDir({ dir: home, prefix: `${name(i)}-` });
      const { identity } = await loadOrCreateIdentity(own);
      return await ChatClient.connect(port, name(i), identity, "bench", own);
    },
  );
  try {
    // Everyone must know everyone before sending.
    await until(
      () => clients.every((client) => client.session.who().length >= CROWD - 1),
      () =>
        `every client to see the other ${CROWD - 1} (the fewest seen: ` +
        `${Math.min(...clients.map((client) => client.session.who().length))})`,
      CROWD_JOIN_MS,
    );
    const joinSeconds = (performance.now() - joinStarted) / 1000;
    ctx.log(`chat: ${CROWD} sessions joined and saw each other in ${joinSeconds.toFixed(1)} s`);
    findings.push(
      `${CROWD} client sessions joined and each verified the other ${CROWD - 1} announcements ` +
        `in ${joinSeconds.toFixed(1)} s (one process, sequential batches of 10).`,
    );
    const rates: number[] = [];
    for (let rep = 0; rep <= REPS; rep++) {
      const count = rep === 0 ? 1 : CROWD_MESSAGES;
      const all = Array.from({ length: CROWD / 2 }, (_, k) => {
        const timings = new Timings(nextRun++, count);
        clients[2 * k + 1].runs.set(timings.run, timings);
        return timings;
      });
      const t0 = performance.now();
      await Promise.all(all.map((timings, k) =>
        saturate(
          timings,
          CROWD_WINDOW,
          (seq) => sendWithin(clients[2 * k], name(2 * k + 1), textFor(timings.run, seq)),
        )
      ));
      await Promise.all(all.map((timings, k) => timings.wait(`crowd, session pair ${k}`)));
      const last = Math.max(...all.flatMap((timings) => timings.receivedAt));
      // Repetition 0 sets up every pair's session (RSA) and is not counted.
      if (rep > 0) rates.push(all.length * count / ((last - t0) / 1000));
    }
    const errors = clients.flatMap((client) => client.errors);
    if (errors.length > 0) findings.push(`Errors in the crowd: ${errors.slice(0, 3).join("; ")}`);
    return rates;
  } finally {
    await Promise.all(clients.map((client) => client.session.quit()));
  }
}
