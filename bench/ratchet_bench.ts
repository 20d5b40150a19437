// deno-lint-ignore-file no-console
/**
 * Benchmark of lasting conversations for one pair: seal+open throughput and latency with the
 * Double Ratchet against the seal-and-open ceiling measured in the same run (one AES-256-GCM
 * encrypt and decrypt of the same payload and AD under a fixed key), the WebCrypto calls each
 * message costs, and the time to start a conversation (bundle checks, agreement, first message,
 * and the responder's side). Prints numbers; asserts nothing.
 *
 * Run: `deno run -A bench/ratchet_bench.ts [messages per size]`
 *
 * @module
 */

import { type Bytes, randomBytes } from "../shared/bytes.ts";
import {
  encodeInitialMessage,
  Identity,
  initiate,
  PrekeyStore,
  type Ratchet,
  respond,
  verifyBundle,
} from "../shared/crypto/mod.ts";
import { PrekeyDirectory, text } from "../testing/conversation.ts";
import { percentile } from "./_stats.ts";

const MESSAGES = Number(Deno.args[0] ?? 4000);
const SIZES = [100, 1024, 16 * 1024];
const ROUNDS = 4;
const STARTS = 20;
const AD_BYTES = 84 + 2 * 5; // conversationAd() for two 5-letter names

interface Sample {
  perSecond: number;
  p50: number;
  p99: number;
}

function summary(latencies: number[], seconds: number): Sample {
  return {
    perSecond: latencies.length / seconds,
    p50: percentile(latencies, 0.5),
    p99: percentile(latencies, 0.99),
  };
}

function us(ms: number): string {
  return `${(ms * 1000).toFixed(0)} µs`;
}

/** Runs `once` `count` times and records each latency; returns them with the elapsed seconds. */
async function measure(count: number, once: () => Promise<unknown>) {
  const latencies: number[] = [];
  const began = performance.now();
  for (let i = 0; i < count; i++) {
    const t0 = performance.now();
    await once();
    latencies.push(performance.now() - t0);
  }
  return { latencies, seconds: (performance.now() - began) / 1000 };
}

/** Alternates blocks of each contender so drift of the machine hits all of them alike. */
async function compare(contenders: Record<string, () => Promise<unknown>>, count: number) {
  const results: Record<string, { latencies: number[]; seconds: number }> = {};
  for (const name of Object.keys(contenders)) results[name] = { latencies: [], seconds: 0 };
  for (const once of Object.values(contenders)) await measure(200, once); // warm up
  for (let round = 0; round < ROUNDS; round++) {
    for (const [name, once] of Object.entries(contenders)) {
      const block = await measure(Math.ceil(count / ROUNDS), once);
      results[name].latencies.push(...block.latencies);
      results[name].seconds += block.seconds;
    }
  }
  const out: Record<string, Sample> = {};
  for (const [name, r] of Object.entries(results)) out[name] = summary(r.latencies, r.seconds);
  return out;
}

/** Counts WebCrypto calls made while `task` runs (wraps crypto.subtle's methods). */
async function countCalls(task: () => Promise<unknown>): Promise<number> {
  const subtle = crypto.subtle as unknown as Record<string, (...args: unknown[]) => unknown>;
  const names = Object.getOwnPropertyNames(Object.getPrototypeOf(crypto.subtle))
    .filter((name) => name !== "constructor" && typeof subtle[name] === "function");
  let calls = 0;
  const originals = new Map(names.map((name) => [name, subtle[name]]));
  for (const name of names) {
    const original = originals.get(name)!;
    Object.defineProperty(subtle, name, {
      configurable: true,
      value: (...args: unknown[]) => {
        calls++;
        return original.apply(crypto.subtle, args);
      },
    });
  }
  try {
    await task();
  } finally {
    for (const name of names) delete subtle[name];
  }
  return calls;
}

const [alice, bob] = await Promise.all([Identity.generate(), Identity.generate()]);
const directory = new PrekeyDirectory();
const prekeys = await PrekeyStore.generate(bob, { oneTime: STARTS + 1, pqOneTime: STARTS + 1 });
await directory.publish("bob", bob.public, prekeys.published());

async function start(): Promise<{ initiator: Ratchet; responder: Ratchet; timings: number[] }> {
  const bundle = directory.bundle("bob");
  const t0 = performance.now();
  await verifyBundle(bundle, bob.public);
  const started = await initiate({
    identity: alice,
    name: "alice",
    peerName: "bob",
    peerIdentity: bob.public,
    bundle,
  });
  const first = await started.ratchet.encrypt(text("hello"));
  const wire = encodeInitialMessage(started.init, first);
  const t1 = performance.now();
  const answered = await respond({
    identity: bob,
    name: "bob",
    prekeys,
    peerName: "alice",
    peerIdentity: alice.public,
    init: started.init,
    message: first,
  });
  const t2 = performance.now();
  return {
    initiator: started.ratchet,
    responder: answered.ratchet,
    timings: [t1 - t0, t2 - t1, wire.length],
  };
}

console.log(`ratchet benchmark: ${MESSAGES} messages per size, Deno ${Deno.version.deno}`);
await start(); // warm up
const starts: number[][] = [];
for (let i = 0; i < STARTS; i++) starts.push((await start()).timings);
const col = (i: number) => starts.map((t) => t[i]);
console.log(
  `start a conversation (${STARTS} runs): initiator (bundle check + agreement + first message) ` +
    `p50 ${percentile(col(0), 0.5).toFixed(2)} ms, p90 ${percentile(col(0), 0.9).toFixed(2)} ms; ` +
    `responder (checks + agreement + open) p50 ${percentile(col(1), 0.5).toFixed(2)} ms; ` +
    `initial message ${starts[0][2]} B`,
);

const { initiator: a, responder: b } = await start();
const one = text("x");
let sealed = new Uint8Array() as Bytes;
const sealCalls = await countCalls(async () => sealed = await a.encrypt(one));
const openCalls = await countCalls(() => b.decrypt(sealed));
const reply = await b.encrypt(one);
const stepCalls = await countCalls(() => a.decrypt(reply));
console.log(
  `WebCrypto calls: seal ${sealCalls}, open ${openCalls}, open with a DH step ${stepCalls}; ` +
    `the ceiling makes 2`,
);

console.log(
  "size      contender              msgs/s    p50 seal+open  p99 seal+open  ratio (msgs/s, p50)",
);
for (const size of SIZES) {
  const payload = randomBytes(size);
  const ad = randomBytes(AD_BYTES);
  const fixed = await crypto.subtle.importKey("raw", randomBytes(32), "AES-GCM", false, [
    "encrypt",
    "decrypt",
  ]);
  const iv = randomBytes(12);
  const params = { name: "AES-GCM", iv, additionalData: ad };
  const pair = await start();
  let turn = 0;
  const results = await compare({
    "ceiling (fixed key)": async () => {
      const ciphertext = await crypto.subtle.encrypt(params, fixed, payload);
      await crypto.subtle.decrypt(params, fixed, ciphertext);
    },
    "ratchet, one way": async () => {
      await pair.responder.decrypt(await pair.initiator.encrypt(payload));
    },
    "ratchet, ping-pong": async () => {
      const [from, to] = turn++ % 2 === 0
        ? [pair.responder, pair.initiator]
        : [pair.initiator, pair.responder];
      await to.decrypt(await from.encrypt(payload as Bytes));
    },
  }, MESSAGES);
  const ceiling = results["ceiling (fixed key)"];
  for (const [name, r] of Object.entries(results)) {
    const ratios = `${(r.perSecond / ceiling.perSecond).toFixed(2)}, ${
      (ceiling.p50 / r.p50).toFixed(2)
    }`;
    console.log(
      `${String(size).padEnd(9)} ${name.padEnd(22)} ${r.perSecond.toFixed(0).padStart(7)}   ` +
        `${us(r.p50).padStart(13)}  ${us(r.p99).padStart(13)}  ${ratios}`,
    );
  }
}
