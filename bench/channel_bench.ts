// deno-lint-ignore-file no-console
/**
 * Micro-benchmark of the secure channel on loopback, in one process: handshake time (median of
 * N full TCP handshakes), and bulk throughput of a SecureConn against a plain TCP copy with the
 * same 64 KiB writes, alternated and compared repetition by repetition. Prints; asserts nothing.
 *
 * Run: `deno run -A bench/channel_bench.ts [handshakes] [MiB per copy] [repetitions]`
 *
 * @module
 */

import {
  HandshakeState,
  initiate,
  PROTOCOL_NAME,
  respond,
  ServerKey,
} from "../shared/channel/mod.ts";
import { cpuUsage } from "node:process";
import { writeAll } from "../shared/io.ts";
import { percentile, ratios, summarize } from "./_stats.ts";

const handshakes = Number(Deno.args[0] ?? 200);
const mebibytes = Number(Deno.args[1] ?? 256);
const repetitions = Number(Deno.args[2] ?? 5);
const WRITE_BYTES = 64 * 1024;
const PROLOGUE = "reelay/bench";

interface Conn {
  read(p: Uint8Array): Promise<number | null>;
  write(p: Uint8Array): Promise<number>;
  close(): void;
}

/** A connected TCP pair on loopback, secured or not. */
async function connectedPair(key: ServerKey, secure: boolean): Promise<[Conn, Conn]> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepted = listener.accept();
  const client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  const server = await accepted;
  listener.close();
  if (!secure) return [client, server];
  const [a, b] = await Promise.all([
    initiate(client, { prologue: PROLOGUE }),
    respond(server, key, { prologue: PROLOGUE }),
  ]);
  return [a.transport, b.transport];
}

/** A copy's wall-clock rate and the process CPU time it took per MiB (all threads). */
interface Rate {
  megabytesPerSecond: number;
  cpuMsPerMebibyte: number;
}

/** Copies `total` bytes from one end to the other in 64 KiB writes. */
async function copy(from: Conn, to: Conn, total: number): Promise<Rate> {
  const chunk = new Uint8Array(WRITE_BYTES).fill(0x47);
  const sink = new Uint8Array(256 * 1024);
  const cpu = cpuUsage();
  const start = performance.now();
  const writing = (async () => {
    for (let sent = 0; sent < total; sent += WRITE_BYTES) await writeAll(from, chunk);
  })();
  for (let received = 0; received < total;) {
    const count = await to.read(sink);
    if (count === null) throw new Error("The stream ended early");
    received += count;
  }
  await writing;
  const seconds = (performance.now() - start) / 1000;
  const used = cpuUsage(cpu);
  return {
    megabytesPerSecond: total / seconds / 1e6,
    cpuMsPerMebibyte: (used.user + used.system) / 1000 / (total / 1024 / 1024),
  };
}

async function benchHandshakes(key: ServerKey): Promise<void> {
  const overTcp: number[] = [];
  for (let i = 0; i < handshakes; i++) {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const start = performance.now();
    const accepted = listener.accept().then((conn) => respond(conn, key, { prologue: PROLOGUE }));
    const client = await initiate(
      await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }),
      { prologue: PROLOGUE },
    );
    const server = await accepted;
    overTcp.push(performance.now() - start);
    client.transport.close();
    server.transport.close();
    listener.close();
  }
  const inMemory: number[] = [];
  for (let i = 0; i < handshakes; i++) {
    const start = performance.now();
    const client = await HandshakeState.initialize({
      protocolName: PROTOCOL_NAME,
      initiator: true,
      prologue: new Uint8Array(),
    });
    const server = await HandshakeState.initialize({
      protocolName: PROTOCOL_NAME,
      initiator: false,
      prologue: new Uint8Array(),
      s: key,
    });
    await server.readMessage(await client.writeMessage(new Uint8Array()));
    await client.readMessage(await server.writeMessage(new Uint8Array()));
    inMemory.push(performance.now() - start);
  }
  const show = (values: number[]) =>
    `median ${percentile(values, 0.5).toFixed(2)} ms, p90 ${percentile(values, 0.9).toFixed(2)} ms`;
  console.log(`handshake over loopback TCP (connect included), n=${handshakes}: ${show(overTcp)}`);
  console.log(`handshake in memory (both sides' CPU only), n=${handshakes}: ${show(inMemory)}`);
}

async function benchThroughput(key: ServerKey): Promise<void> {
  const total = mebibytes * 1024 * 1024;
  const plain: Rate[] = [];
  const secure: Rate[] = [];
  for (let i = 0; i < repetitions; i++) {
    for (const [secured, results] of [[false, plain], [true, secure]] as const) {
      const [client, server] = await connectedPair(key, secured);
      results.push(await copy(client, server, total));
      client.close();
      server.close();
    }
  }
  const show = (name: string, rates: Rate[]) => {
    const s = summarize(rates.map((rate) => rate.megabytesPerSecond));
    const cpu = summarize(rates.map((rate) => rate.cpuMsPerMebibyte));
    console.log(
      `${name}: median ${s.median.toFixed(0)} MB/s (min ${s.min.toFixed(0)}, max ${
        s.max.toFixed(0)
      }, n=${s.n}); CPU ${cpu.median.toFixed(2)} ms per MiB`,
    );
  };
  console.log(`bulk copy of ${mebibytes} MiB in 64 KiB writes, one process, loopback:`);
  show("  plain TCP", plain);
  show("  SecureConn", secure);
  const rate = (rates: Rate[]) => rates.map((r) => r.megabytesPerSecond);
  const ratio = summarize(ratios(rate(secure), rate(plain)));
  console.log(
    `  ratio SecureConn / plain: median ${ratio.median.toFixed(3)} (min ${
      ratio.min.toFixed(3)
    }, max ${ratio.max.toFixed(3)})`,
  );
}

const key = await ServerKey.generate();
await benchHandshakes(key);
await benchThroughput(key);
