// deno-lint-ignore-file no-console
/**
 * Sanity benchmark of the end-to-end crypto for one sender/recipient pair: session setup cost,
 * then seal+open throughput and per-message latency. Prints numbers; asserts nothing.
 *
 * Run: `deno run bench/crypto_bench.ts [messages] [text bytes]`
 *
 * @module
 */

import { Identity, Inbox, newEpoch, Outbox } from "../shared/crypto/mod.ts";

const count = Number(Deno.args[0] ?? 20_000);
const textBytes = Number(Deno.args[1] ?? 100);

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];
}

function ms(value: number): string {
  return `${value.toFixed(3)} ms`;
}

const [alice, bob] = await Promise.all([Identity.generate(), Identity.generate()]);
const outbox = new Outbox(alice, "alice", newEpoch());
const inbox = new Inbox(bob, "bob", newEpoch());
const text = "x".repeat(textBytes);
const seal = () => outbox.seal("bob", bob.public, inbox.epoch, text);
const open = (bytes: Uint8Array) => inbox.open("alice", alice.public, outbox.epoch, bytes);

let start = performance.now();
const first = await seal();
const setupSeal = performance.now() - start;
start = performance.now();
await open(first.bytes);
const setupOpen = performance.now() - start;
console.log(`session setup: seal ${ms(setupSeal)}, open ${ms(setupOpen)}`);
console.log(
  `envelope sizes: first ${first.bytes.length} B, later ${(await seal()).bytes.length} B`,
);
await open((await seal()).bytes).catch(() => {}); // skip the message measured for size

const latencies: number[] = [];
const sealTimes: number[] = [];
const began = performance.now();
for (let i = 0; i < count; i++) {
  const t0 = performance.now();
  const sealed = await seal();
  const t1 = performance.now();
  await open(sealed.bytes);
  sealTimes.push(t1 - t0);
  latencies.push(performance.now() - t0);
}
const elapsed = (performance.now() - began) / 1000;
latencies.sort((a, b) => a - b);
sealTimes.sort((a, b) => a - b);
console.log(`${count} messages of ${textBytes} B, sealed then opened one at a time:`);
console.log(`  ${Math.round(count / elapsed)} seal+open per second`);
console.log(
  `  seal+open latency p50 ${ms(percentile(latencies, 0.5))}, p99 ${
    ms(percentile(latencies, 0.99))
  }, max ${ms(latencies[latencies.length - 1])}`,
);
console.log(`  seal alone p50 ${ms(percentile(sealTimes, 0.5))}`);

const batch = performance.now();
const sealed = await Promise.all(Array.from({ length: count }, seal));
const sealedAt = performance.now();
await Promise.all(sealed.map((message) => open(message.bytes)));
const done = performance.now();
console.log(`pipelined (all sealed, then all opened):`);
console.log(`  seal ${Math.round(count / ((sealedAt - batch) / 1000))}/s`);
console.log(`  open ${Math.round(count / ((done - sealedAt) / 1000))}/s`);
