/**
 * `deno task bench`: measures reelay against baselines taken in the same run, prints a table and
 * writes the figures into docs/benchmarks.md.
 *
 * Flags: `--only=video,media,streams,relay,chat,channel,scale,cluster` runs some groups (and
 * writes no report unless `--out` is given); `--out=<file>` writes the report elsewhere;
 * `--no-write` only prints.
 *
 * @module
 */

import { createContext } from "./_context.ts";
import { closeProcReader, machineInfo, readProc, REPO_ROOT } from "./_procs.ts";
import { runChannel } from "./channel.ts";
import { runChat } from "./chat.ts";
import { runMedia } from "./media.ts";
import { runCluster } from "./cluster.ts";
import { runRelay } from "./relay.ts";
import { type GroupResult, type RunReport, textTable, writeMarkdown } from "./report.ts";
import { runScale } from "./scale.ts";
import { runStreams } from "./streams.ts";
import { runVideo } from "./video.ts";
import type { BenchContext } from "./_context.ts";

const GROUPS: Record<string, (ctx: BenchContext) => Promise<GroupResult>> = {
  video: runVideo,
  media: runMedia,
  streams: runStreams,
  relay: runRelay,
  chat: runChat,
  channel: runChannel,
  scale: runScale,
  cluster: runCluster,
};

const COMMAND = "deno task bench";

function flag(name: string): string | undefined {
  const prefix = `--${name}=`;
  const found = Deno.args.find((arg) => arg === `--${name}` || arg.startsWith(prefix));
  if (found === undefined) return undefined;
  return found.startsWith(prefix) ? found.slice(prefix.length) : "";
}

async function loadAverage(): Promise<string> {
  const text = await readProc("/proc/loadavg");
  return text?.split(" ").slice(0, 3).join(", ") ?? "unknown";
}

async function main(): Promise<number> {
  const only = flag("only")?.split(",").filter((name) => name !== "");
  for (const name of only ?? []) {
    if (!(name in GROUPS)) throw new Error(`Unknown group ${name}: use ${Object.keys(GROUPS)}`);
  }
  const out = flag("out") ?? (only ? undefined : `${REPO_ROOT}docs/benchmarks.md`);
  const began = performance.now();
  const tempDir = await Deno.makeTempDir({ prefix: "reelay-bench-" });
  const ctx = createContext(tempDir);
  const groups: GroupResult[] = [];
  try {
    const machine = await machineInfo();
    const loadStart = await loadAverage();
    ctx.log(`${machine.cpuModel}, ${machine.cores} cores, Deno ${machine.deno}`);
    for (const [name, run] of Object.entries(GROUPS)) {
      if (only && !only.includes(name)) continue;
      ctx.log(`== ${name}`);
      groups.push(await run(ctx));
    }
    const report: RunReport = {
      machine,
      date: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
      command: COMMAND,
      totalSeconds: (performance.now() - began) / 1000,
      load: { start: loadStart, end: await loadAverage() },
      groups,
    };
    await Deno.stdout.write(new TextEncoder().encode(textTable(report) + "\n"));
    if (out && flag("no-write") === undefined) {
      await writeMarkdown(out, report);
      ctx.log(`wrote ${out}`);
    }
    return 0;
  } finally {
    await closeProcReader();
    await Deno.remove(tempDir, { recursive: true }).catch(() => {});
  }
}

if (import.meta.main) Deno.exit(await main());
