/**
 * Cluster figures, with a real `nats-server` on loopback and nodes in this process:
 *
 * - chat one-way latency and messages/s between two clients on two nodes, against the same two
 *   clients on one node of the same cluster, alternating in the same run;
 * - how many parts transcode at once in real time on one worker, and on two;
 * - how long the people of a killed node (`reelay server` in its own process, SIGKILL) wait
 *   before they can join another node under their own name.
 *
 * @module
 */

import type { ClientSession } from "../client/mod.ts";
import { connectNats, type NatsConnection } from "../server/cluster/nats.ts";
import { type RemoteTranscode, RemoteTranscoder } from "../server/cluster/remote_transcode.ts";
import { TranscodeWorker } from "../server/cluster/worker.ts";
import { planPlayback } from "../server/media/plan.ts";
import { type RunningServer, startServer } from "../server/mod.ts";
import { silentLogger } from "../shared/log.ts";
import { type EventLog, joinClient, testConfig } from "../testing/harness.ts";
import { TestNats } from "../testing/nats_server.ts";
import type { BenchContext } from "./_context.ts";
import { type ServerProcess, spawnServer } from "./_procs.ts";
import { percentile, summarize } from "./_stats.ts";
import { compared, type Figure, type GroupResult } from "./report.ts";

const REPS = 3;
const LATENCY_MESSAGES = 100;
const RATE_MESSAGES = 500;
const WINDOW = 32;
const PART_COUNTS = [1, 2, 4];
const KILL_TTL_MS = 6000;

interface Pair {
  alice: { session: ClientSession; log: EventLog };
  bob: { session: ClientSession; log: EventLog };
}

async function pair(portA: number, portB: number, run: number): Promise<Pair> {
  const alice = await joinClient(portA, `alice${run}`);
  const bob = await joinClient(portB, `bob${run}`);
  await alice.log.waitFor("joined", (event) => event.name === `bob${run}`, 30_000);
  return { alice, bob };
}

/** One-way latencies (ms) of messages sent one at a time, each after the last arrived. */
async function latencies(p: Pair, run: number): Promise<number[]> {
  const to = `bob${run}`;
  const values: number[] = [];
  for (let i = 0; i < LATENCY_MESSAGES; i++) {
    const text = `l${i}`;
    const arrived = p.bob.log.waitFor("message", (event) => event.text === text, 30_000);
    const t0 = performance.now();
    await p.alice.session.send(to, text);
    await arrived;
    values.push(performance.now() - t0);
  }
  return values;
}

/** Messages per second with up to WINDOW sends in flight. */
async function rate(p: Pair, run: number): Promise<number> {
  const to = `bob${run}`;
  const last = `r${RATE_MESSAGES - 1}`;
  const arrived = p.bob.log.waitFor("message", (event) => event.text === last, 120_000);
  const t0 = performance.now();
  const inFlight = new Set<Promise<void>>();
  for (let i = 0; i < RATE_MESSAGES; i++) {
    const sending = p.alice.session.send(to, `r${i}`);
    inFlight.add(sending);
    void sending.finally(() => inFlight.delete(sending));
    if (inFlight.size >= WINDOW) await Promise.race(inFlight);
  }
  await Promise.all(inFlight);
  await arrived;
  return RATE_MESSAGES / ((performance.now() - t0) / 1000);
}

async function startNode(nats: TestNats, videos: string, node: string): Promise<RunningServer> {
  return await startServer(
    testConfig(videos, (config) => {
      config.cluster.url = `nats://${nats.user}:${nats.password}@127.0.0.1:${nats.port}`;
      config.cluster.node = node;
      config.limits.chatRate = 1_000_000;
      config.limits.chatBurst = 1_000_000;
    }),
    { log: silentLogger },
  );
}

/** A chat node: `reelay server --cluster` in its own process, as it runs in production. */
async function spawnNode(ctx: BenchContext, nats: TestNats, node: string): Promise<ServerProcess> {
  const videos = await Deno.makeTempDir({ dir: ctx.tempDir, prefix: `cluster-${node}-` });
  const passwordFile = `${videos}/nats-password`;
  await Deno.writeTextFile(passwordFile, nats.password);
  return await spawnServer({
    videos,
    tempDir: ctx.tempDir,
    configIni: `[cluster]\nurl = ${nats.url}\nuser = ${nats.user}\n` +
      `password_file = ${passwordFile}\nnode = ${node}\n` +
      `[limits]\nchat_rate = 1000000\nchat_burst = 1000000\n`,
  });
}

async function chatFigures(ctx: BenchContext, nats: TestNats): Promise<Figure[]> {
  // Not in this process: the clients' store commits (synchronous SQLite) would hold up the
  // nodes' every NATS round trip, which a node in production never shares a thread with.
  const nodeA = await spawnNode(ctx, nats, "bench-a");
  const nodeB = await spawnNode(ctx, nats, "bench-b").catch(async (error) => {
    await nodeA.stop();
    throw error;
  });
  const sameLat: number[] = [];
  const crossLat: number[] = [];
  const sameP50: number[] = [];
  const crossP50: number[] = [];
  const sameRate: number[] = [];
  const crossRate: number[] = [];
  try {
    for (let rep = 0; rep < REPS; rep++) {
      for (const cross of rep % 2 === 0 ? [false, true] : [true, false]) {
        const run = rep * 2 + (cross ? 1 : 0);
        const p = await pair(nodeA.port, cross ? nodeB.port : nodeA.port, run);
        try {
          const lat = await latencies(p, run);
          const msgs = await rate(p, run);
          (cross ? crossLat : sameLat).push(...lat);
          (cross ? crossP50 : sameP50).push(percentile(lat, 50));
          (cross ? crossRate : sameRate).push(msgs);
        } finally {
          await p.alice.session.quit();
          await p.bob.session.quit();
        }
      }
      ctx.log(`cluster chat: rep ${rep + 1} of ${REPS}`);
    }
  } finally {
    await nodeA.stop();
    await nodeB.stop();
  }
  return [
    compared({
      name: "chat one-way latency, median (alice and bob on two nodes)",
      unit: "ms",
      values: crossP50,
      baseline: { label: "both on one node", values: sameP50 },
      ratioLabel: "two nodes ÷ one",
      aim: { on: "ratio", op: "<=", target: 1.5 },
      whyMissed: "Across nodes a message is held in JetStream by one node and read back by the " +
        "other after a wake-up (more NATS round trips and process switches) on a machine whose " +
        "two cores are shared.",
    }),
    {
      name: "chat one-way latency, p99 (two nodes)",
      value: summarize([percentile(crossLat, 99)]),
      unit: "ms",
      baseline: {
        label: "both on one node",
        value: summarize([percentile(sameLat, 99)]),
        unit: "ms",
      },
    },
    compared({
      name: "chat messages/s, 32 in flight (two nodes)",
      unit: "msg/s",
      values: crossRate,
      baseline: { label: "both on one node", values: sameRate },
      ratioLabel: "two nodes ÷ one",
      aim: { on: "ratio", op: ">=", target: 0.7 },
      whyMissed: "A sender's messages are held one after the other (counts, publish and id: " +
        "four NATS round trips each) and each is answered before the next is read.",
    }),
  ];
}

/** Starts `count` parts at once and reads each as fast as it comes; true if all were real time. */
async function partsInRealTime(
  transcoder: RemoteTranscoder,
  offer: Parameters<RemoteTranscoder["start"]>[0],
  count: number,
): Promise<{ realTime: boolean; slowest: number; workers: Set<string> }> {
  const seconds = offer.segment.end - offer.segment.start;
  const t0 = performance.now();
  const parts: RemoteTranscode[] = [];
  for (let i = 0; i < count; i++) {
    const part = await transcoder.start(offer, `bench part ${i}`);
    if (!part) throw new Error(`No worker took part ${i + 1} of ${count}`);
    parts.push(part);
  }
  const times = await Promise.all(parts.map(async (part) => {
    for await (const _ of part.stdout) { /* read as fast as it comes */ }
    return (performance.now() - t0) / 1000;
  }));
  const slowest = Math.max(...times);
  return { realTime: slowest <= seconds, slowest, workers: new Set(parts.map((p) => p.worker)) };
}

async function workerFigures(
  ctx: BenchContext,
  nats: TestNats,
): Promise<{ figures: Figure[]; detail: string[] }> {
  const source = await ctx.source();
  const plan = planPlayback(source.info, { heights: [144, 720, 1080], capToSource: true });
  const segment = plan.segments[1]; // the 720p third
  const offer = {
    video: source.name,
    size: source.info.size,
    segment,
    preset: "ultrafast",
    fastStart: false,
  };
  const connections: NatsConnection[] = [];
  const connect = async (name: string) => {
    const nc = await connectNats({
      url: nats.url,
      credentials: nats.credentials,
      name,
      log: silentLogger,
    });
    connections.push(nc);
    return nc;
  };
  const transcoder = new RemoteTranscoder(await connect("bench-node"), silentLogger);
  const most: Record<number, number> = { 1: 0, 2: 0 };
  const speed: Record<number, number[]> = { 1: [], 2: [] };
  const detail: string[] = [];
  const seconds = segment.end - segment.start;
  try {
    for (const workerCount of [1, 2]) {
      for (const count of PART_COUNTS) {
        const workers: TranscodeWorker[] = [];
        for (let w = 0; w < workerCount; w++) {
          workers.push(
            await TranscodeWorker.start(await connect(`bench-worker-${w}`), {
              videos: source.dir,
              slots: Math.ceil(count / workerCount),
              ffmpegPath: "ffmpeg",
              ffprobePath: "ffprobe",
              log: silentLogger,
            }),
          );
        }
        try {
          const result = await partsInRealTime(transcoder, offer, count);
          detail.push(
            `${workerCount} worker(s), ${count} part(s): slowest ${result.slowest.toFixed(1)} s ` +
              `for ${seconds.toFixed(1)} s of video, on ${result.workers.size} worker(s)`,
          );
          ctx.log(`cluster workers: ${detail.at(-1)}`);
          speed[workerCount].push(count * seconds / result.slowest);
          if (result.realTime) most[workerCount] = Math.max(most[workerCount], count);
        } finally {
          for (const worker of workers) await worker.close();
        }
      }
    }
  } finally {
    for (const nc of connections) await nc.close();
  }
  const best = (values: number[]) => Math.max(...values);
  return {
    detail,
    figures: [{
      name: "720p parts at once in real time, two workers (on one 2-core machine)",
      value: summarize([most[2]]),
      unit: "parts",
      baseline: { label: "one worker", value: summarize([most[1]]), unit: "parts" },
      ratio: summarize([most[1] > 0 ? most[2] / most[1] : 0]),
      ratioLabel: "two ÷ one",
      aim: { on: "ratio", op: ">=", target: 1.8 },
      whyMissed: "Both workers run on the same two shared cores as the node, NATS and the bench, " +
        "so a second worker adds no CPU: the figure shows the parts spread over both workers " +
        "(see the method), not a second machine's capacity. On two machines it is the sum.",
    }, {
      name: "720p video transcoded per second of wall time, best of 1, 2, 4 parts, two workers",
      value: summarize([best(speed[2])]),
      unit: "s/s",
      baseline: { label: "one worker", value: summarize([best(speed[1])]), unit: "s/s" },
      ratio: summarize([best(speed[2]) / best(speed[1])]),
      ratioLabel: "two ÷ one",
    }],
  };
}

async function killFigures(ctx: BenchContext, nats: TestNats): Promise<Figure[]> {
  const videos = await Deno.makeTempDir({ dir: ctx.tempDir, prefix: "cluster-kill-" });
  const passwordFile = `${videos}/nats-password`;
  await Deno.writeTextFile(passwordFile, nats.password);
  const nodeA = await startNode(nats, videos, "bench-survivor");
  const backMs: number[] = [];
  const leftMs: number[] = [];
  try {
    for (let rep = 0; rep < REPS; rep++) {
      const nodeB = await spawnServer({
        videos,
        tempDir: ctx.tempDir,
        configIni: `[cluster]\nurl = ${nats.url}\nuser = ${nats.user}\n` +
          `password_file = ${passwordFile}\npresence_ttl_ms = ${KILL_TTL_MS}\n`,
      });
      const name = `carol${rep}`;
      const watcher = await joinClient(nodeA.port, `dave${rep}`);
      const carol = await joinClient(nodeB.port, name);
      await watcher.log.waitFor("joined", (event) => event.name === name, 30_000);
      const t0 = performance.now();
      await nodeB.kill();
      await carol.log.waitFor("disconnected", () => true, 30_000);
      const left = watcher.log.waitFor("left", (event) => event.name === name, 60_000)
        .then(() => performance.now() - t0);
      // carol comes back on the surviving node as soon as her name is free.
      let back: { session: ClientSession } | undefined;
      while (!back) {
        try {
          back = await joinClient(nodeA.port, name, { home: carol.home });
        } catch {
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
      }
      backMs.push(performance.now() - t0);
      leftMs.push(await left);
      await back.session.quit();
      await carol.session.quit().catch(() => {});
      await watcher.session.quit();
      ctx.log(`cluster kill: rep ${rep + 1}: back after ${(backMs.at(-1)! / 1000).toFixed(1)} s`);
    }
  } finally {
    await nodeA.close();
    await Deno.remove(videos, { recursive: true });
  }
  return [
    {
      name: `killed node: its people back on another node (presence_ttl_ms ${KILL_TTL_MS})`,
      value: summarize(backMs.map((ms) => ms / 1000)),
      unit: "s",
      aim: { on: "value", op: "<=", target: (KILL_TTL_MS * 4 / 3) / 1000 + 1 },
    },
    {
      name: "killed node: others told they left",
      value: summarize(leftMs.map((ms) => ms / 1000)),
      unit: "s",
    },
  ];
}

/** Runs the cluster group. */
export async function runCluster(ctx: BenchContext): Promise<GroupResult> {
  const began = performance.now();
  await using nats = await TestNats.start();
  const chat = await chatFigures(ctx, nats);
  const workers = await workerFigures(ctx, nats);
  const kill = await killFigures(ctx, nats);
  const figures = [...chat, ...workers.figures, ...kill];
  return {
    title: "Cluster (NATS on loopback)",
    method: [
      `A real nats-server 2.9 with JetStream on loopback (user and password). Chat: two ` +
      `\`reelay server --cluster\` nodes, each in its own process (in this process, the ` +
      `clients' synchronous store commits would hold up the nodes' NATS round trips); alice ` +
      `and bob (real client sessions in this process: ratchet seal and open, secure channel, ` +
      `their stores) on two nodes against both on one node of the same cluster, ` +
      `alternating, ${REPS} repetitions; latency is ${LATENCY_MESSAGES} messages sent one ` +
      `after the other arrived, rate is ${RATE_MESSAGES} messages with ${WINDOW} in flight.`,
      `Workers: the 720p third of the 1080p source, at preset ultrafast, started N (1, 2, 4) at a time ` +
      `on one worker (N slots) and on two (N/2 slots each, so the second half goes to the ` +
      `other worker by back-pressure), read as fast as they come: the most N whose slowest part ends within the part's own ` +
      `length, and the video seconds transcoded per wall second (N × length ÷ slowest). ${
        workers.detail.join("; ")
      }.`,
      `Killed node: \`reelay server --cluster\` in its own process with carol on it and dave ` +
      `watching from the surviving node; SIGKILL, then carol tries to join the surviving ` +
      `node every 100 ms under her name until it is free. ${REPS} repetitions.`,
    ],
    figures,
    findings: [],
    seconds: (performance.now() - began) / 1000,
  };
}
