/**
 * Video figures: time to the first stream byte, throughput per resolution, the stall at the
 * two resolution switches, and bandwidth against raw frames. reelay is measured end to end
 * (in-process server → ffmpeg → TCP on loopback → {@linkcode ClientSession} → a recording
 * sink); the baseline is bare ffmpeg running the same arguments (`buildFfmpegArgs`) into a pipe.
 *
 * @module
 */

import type { ClientSession } from "../client/session.ts";
import { withTimeout } from "../shared/async.ts";
import { openSession } from "../client/mod.ts";
import type { StreamSink } from "../client/player.ts";
import { TsClock } from "../shared/ts_clock.ts";
import type { RunningServer } from "../server/mod.ts";
import { buildFfmpegArgs, planPlayback } from "../server/media/mod.ts";
import type { Config } from "../shared/config/mod.ts";
import { startTestServer } from "../testing/harness.ts";
import type { BenchContext, SourceVideo } from "./_context.ts";
import { LADDER, PRESET } from "./_setup.ts";
import { summarize } from "./_stats.ts";
import { compared, type Figure, type GroupResult } from "./report.ts";

const START_REPS = 5;
const THROUGHPUT_REPS = 3;
const STALL_REPS = 3;
/** Around each switch, gaps between arrivals this close to it are considered. */
const SWITCH_WINDOW_MS = 1000;

interface Arrival {
  /** performance.now() when the sink got the bytes. */
  t: number;
  /** Seconds of content received so far (newest PTS − first PTS). */
  pos: number;
}

/** What one played stream looked like at the client. */
interface Recording {
  t0: number;
  firstAt: number;
  lastAt: number;
  bytes: number;
  first: PromiseWithResolvers<void>;
  ended: PromiseWithResolvers<{ reason: string; message?: string }>;
  /** Only when tracking: every arrival, and when each segment began. */
  clock?: TsClock;
  arrivals: Arrival[];
  switches: { t: number; index: number; pos: number }[];
}

function newRecording(track: boolean): Recording {
  return {
    t0: 0,
    firstAt: NaN,
    lastAt: NaN,
    bytes: 0,
    first: Promise.withResolvers<void>(),
    ended: Promise.withResolvers<{ reason: string; message?: string }>(),
    clock: track ? new TsClock() : undefined,
    arrivals: [],
    switches: [],
  };
}

/** A client session whose sink records arrival times instead of playing. */
class Viewer {
  readonly session: ClientSession;
  current: Recording | undefined;

  private constructor(session: ClientSession) {
    this.session = session;
    session.onEvent((event) => {
      const recording = this.current;
      if (!recording) return;
      if (event.event === "segment" && recording.clock) {
        recording.switches.push({
          t: performance.now(),
          index: event.index,
          pos: recording.clock.position,
        });
      } else if (event.event === "stream-ended") {
        recording.ended.resolve({ reason: event.reason, message: event.message });
      }
    });
  }

  static async join(port: number, name: string, home: string): Promise<Viewer> {
    const holder: { viewer?: Viewer } = {};
    const session = await openSession({
      hostname: "127.0.0.1",
      port,
      name,
      home,
      sinks: () => holder.viewer!.#sink(),
    });
    holder.viewer = new Viewer(session);
    return holder.viewer;
  }

  #sink(): StreamSink {
    return {
      write: (chunk) => {
        const t = performance.now();
        const recording = this.current;
        if (recording) {
          if (recording.bytes === 0) {
            recording.firstAt = t;
            recording.first.resolve();
          }
          recording.lastAt = t;
          recording.bytes += chunk.length;
          if (recording.clock) {
            recording.clock.push(chunk);
            recording.arrivals.push({ t, pos: recording.clock.position });
          }
        }
        return Promise.resolve();
      },
      finish: () => Promise.resolve(),
      abort: () => Promise.resolve(),
      gone: new Promise<void>(() => {}),
    };
  }

  /** Starts `video`; resolves with the recording once the server started the stream. */
  async play(video: string, track = false): Promise<Recording> {
    const recording = newRecording(track);
    this.current = recording;
    recording.t0 = performance.now();
    await this.session.play(video);
    return recording;
  }

  /** Waits for the stream to end and checks it completed. */
  async complete(recording: Recording, timeoutMs = 180_000): Promise<void> {
    const end = await withTimeout(
      recording.ended.promise,
      timeoutMs,
      () => new Error("Stream did not end in time"),
    );
    if (end.reason !== "complete") {
      throw new Error(`Stream ended with ${end.reason}: ${end.message ?? ""}`);
    }
    await this.session.idle();
  }
}

/** ms from spawning ffmpeg with `args` to its first stdout byte; then it is killed. */
async function bareFirstByte(args: string[]): Promise<number> {
  const t0 = performance.now();
  const child = new Deno.Command("ffmpeg", { args, stdin: "null", stdout: "piped", stderr: "null" })
    .spawn();
  const reader = child.stdout.getReader();
  const first = await reader.read();
  const elapsed = performance.now() - t0;
  if (first.done) throw new Error("ffmpeg wrote nothing");
  try {
    child.kill("SIGTERM");
  } catch {
    // Already exited.
  }
  await reader.cancel().catch(() => {});
  await child.status;
  return elapsed;
}

/** Runs each job in turn, reading its stdout as fast as possible; total bytes and ms. */
async function bareRun(jobs: string[][]): Promise<{ bytes: number; ms: number }> {
  const t0 = performance.now();
  let bytes = 0;
  for (const args of jobs) {
    const child = new Deno.Command("ffmpeg", {
      args,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const stderr = new Response(child.stderr).text();
    for await (const chunk of child.stdout) bytes += chunk.length;
    const status = await child.status;
    if (!status.success) throw new Error(`ffmpeg failed: ${await stderr}`);
    await stderr;
  }
  return { bytes, ms: performance.now() - t0 };
}

/** Largest arrival gap near each switch and the content lead at its start. */
function switchStalls(recording: Recording): { index: number; gapMs: number; leadMs: number }[] {
  const { arrivals } = recording;
  const first = arrivals[0]?.t ?? NaN;
  return recording.switches.filter((s) => s.index > 0).map((s) => {
    let worst = { gapMs: 0, leadMs: Infinity };
    for (let i = 1; i < arrivals.length; i++) {
      const b = arrivals[i];
      if (Math.abs(b.t - s.t) > SWITCH_WINDOW_MS) continue;
      const a = arrivals[i - 1];
      const gapMs = b.t - a.t;
      const leadMs = a.pos * 1000 - (a.t - first);
      if (gapMs > worst.gapMs) worst = { gapMs, leadMs };
    }
    return { index: s.index, ...worst };
  });
}

function label(source: SourceVideo, height: number): string {
  const plan = planPlayback(source.info, { heights: [height], capToSource: true });
  const segment = plan.segments[0];
  return segment.capped ? `${height}p (capped to ${segment.height}p)` : `${height}p`;
}

async function withServer<T>(
  source: SourceVideo,
  patch: (config: Config) => void,
  task: (server: RunningServer) => Promise<T>,
): Promise<T> {
  const server = await startTestServer({ videos: source.dir, patch });
  try {
    return await task(server);
  } finally {
    await server.close();
  }
}

/** Runs the video group. */
export async function runVideo(ctx: BenchContext): Promise<GroupResult> {
  const began = performance.now();
  const source = await ctx.source();
  const home = await Deno.makeTempDir({ dir: ctx.tempDir, prefix: "viewer-home-" });
  const figures: Figure[] = [];
  const findings: string[] = [];
  const { info } = source;
  const ladderPlan = planPlayback(info, { heights: LADDER, capToSource: true });
  const fps = info.frameRate.num / info.frameRate.den;

  // Start and boundary stall: one server with the default ladder.
  await withServer(source, () => {}, async (server) => {
    const viewer = await Viewer.join(server.port, "viewer", home);
    try {
      const part0 = buildFfmpegArgs(info, ladderPlan.segments[0], { preset: PRESET });
      // Warm-up (page cache, JIT), not measured.
      await bareFirstByte(part0);
      const warm = await viewer.play(source.name);
      await warm.first.promise;
      await viewer.session.stop();
      await viewer.session.idle();

      ctx.log("video start");
      const reelay: number[] = [];
      const bare: number[] = [];
      for (let rep = 0; rep < START_REPS; rep++) {
        const measureReelay = async () => {
          const recording = await viewer.play(source.name);
          await recording.first.promise;
          reelay.push(recording.firstAt - recording.t0);
          await viewer.session.stop();
          await viewer.session.idle();
        };
        const measureBare = async () => bare.push(await bareFirstByte(part0));
        if (rep % 2 === 0) {
          await measureBare();
          await measureReelay();
        } else {
          await measureReelay();
          await measureBare();
        }
      }
      figures.push(compared({
        name: "start: play() → first stream byte",
        unit: "ms",
        values: reelay,
        baseline: { label: "ffmpeg spawn → first stdout byte", values: bare },
        ratioLabel: "reelay ÷ ffmpeg",
        aim: { on: "ratio", op: "<=", target: 1.2 },
        whyMissed:
          "What reelay adds to ffmpeg's own start is the play request's round trip, the stream " +
          "setup and spawning ffmpeg through `Transcode`; on a busy machine the spawn time " +
          "alone varies by more than the margin. To start sooner than ffmpeg itself allows, " +
          "encode part 0 with `-tune zerolatency` (first byte in 0.10–0.14 s in the media " +
          "notes) or keep a warm ffmpeg ready",
      }));

      ctx.log("boundary stall (default ladder, read as fast as possible)");
      const stalls = new Map<number, { gap: number[]; lead: number[] }>();
      const ladderMs: number[] = [];
      for (let rep = 0; rep < STALL_REPS; rep++) {
        const recording = await viewer.play(source.name, true);
        await viewer.complete(recording);
        ladderMs.push(recording.lastAt - recording.t0);
        for (const stall of switchStalls(recording)) {
          const entry = stalls.get(stall.index) ?? { gap: [], lead: [] };
          entry.gap.push(stall.gapMs);
          entry.lead.push(stall.leadMs);
          stalls.set(stall.index, entry);
        }
      }
      for (const [index, entry] of [...stalls.entries()].sort((a, b) => a[0] - b[0])) {
        const from = ladderPlan.segments[index - 1].height;
        const to = ladderPlan.segments[index].height;
        figures.push(compared({
          name: `switch ${index} (${from}p → ${to}p): largest arrival gap`,
          unit: "ms",
          values: entry.gap,
          baseline: { label: "content lead at that moment", values: entry.lead },
          ratioLabel: "gap ÷ lead",
          aim: { on: "ratio", op: "<=", target: 1 },
          whyMissed:
            "The next part could not deliver its first bytes before the content already received " +
            "ran out. The next part starts when the current one has produced its first bytes " +
            "and reads ahead 4 MiB; start it earlier, or make the current part's read-ahead " +
            "larger so more content is buffered at the switch",
        }));
      }
      findings.push(
        `Whole default-ladder stream (${info.duration.toFixed(0)} s of content, ` +
          `${ladderPlan.segments.map((s) => `${s.height}p`).join(" → ")}) delivered in ` +
          `${(summarize(ladderMs).median / 1000).toFixed(2)} s (median of ${STALL_REPS}).`,
      );
    } finally {
      await viewer.session.quit();
    }
  });

  // Throughput and bandwidth: one server per height, playing the same height in all three parts.
  for (const height of LADDER) {
    const name = label(source, height);
    ctx.log(`throughput ${name}`);
    const plan = planPlayback(info, { heights: [height, height, height], capToSource: true });
    const jobs = plan.segments.map((segment) => buildFfmpegArgs(info, segment, { preset: PRESET }));
    const frames = plan.frameCount;
    const { width, height: outHeight } = plan.segments[0];
    await withServer(source, (config) => {
      config.stream.heights = [height, height, height];
    }, async (server) => {
      const viewer = await Viewer.join(server.port, "viewer", home);
      const reelay: { bytes: number; ms: number }[] = [];
      const bare: { bytes: number; ms: number }[] = [];
      try {
        for (let rep = 0; rep < THROUGHPUT_REPS; rep++) {
          const measureReelay = async () => {
            const recording = await viewer.play(source.name);
            await viewer.complete(recording);
            reelay.push({ bytes: recording.bytes, ms: recording.lastAt - recording.t0 });
          };
          const measureBare = async () => bare.push(await bareRun(jobs));
          if (rep % 2 === 0) {
            await measureBare();
            await measureReelay();
          } else {
            await measureReelay();
            await measureBare();
          }
        }
      } finally {
        await viewer.session.quit();
      }
      const fpsOf = (runs: { ms: number }[]) => runs.map((run) => frames / (run.ms / 1000));
      const mbps = (runs: { bytes: number; ms: number }[]) =>
        runs.map((run) => run.bytes / (run.ms / 1000) / 1e6);
      figures.push(compared({
        name: `${name} frames/s`,
        unit: "fps",
        values: fpsOf(reelay),
        baseline: { label: "ffmpeg → pipe", values: fpsOf(bare) },
        ratioLabel: "reelay ÷ ffmpeg",
        aim: { on: "ratio", op: ">=", target: 0.95 },
        whyMissed:
          "reelay runs the next part's ffmpeg alongside the current one (read-ahead), so the " +
          "parts compete for the 2 cores, and on a shared machine the spread between " +
          "repetitions exceeds the 5 % margin; compare the min–max ranges before concluding, " +
          "and re-run on an idle machine",
      }));
      figures.push(compared({
        name: `${name} bytes/s`,
        unit: "MB/s",
        values: mbps(reelay),
        baseline: { label: "ffmpeg → pipe", values: mbps(bare) },
        ratioLabel: "reelay ÷ ffmpeg",
        aim: { on: "ratio", op: ">=", target: 0.95 },
        whyMissed:
          "Bytes/s follows frames/s (the same bytes in the same time); see the frames/s row",
      }));
      // Bandwidth: bytes per second of content, against raw decoded frames of that size.
      const contentKBps = reelay.map((run) => run.bytes / info.duration / 1000);
      const yuv = width * outHeight * 1.5 * fps / 1000;
      const bgr = width * outHeight * 3 * fps / 1000;
      figures.push({
        name: `${name} bandwidth (${width}x${outHeight})`,
        value: summarize(contentKBps),
        unit: "kB/s",
        baseline: { label: "raw yuv420p frames", value: summarize([yuv]), unit: "kB/s" },
        ratio: summarize(contentKBps.map((value) => value / yuv)),
        ratioLabel: "reelay ÷ raw",
      });
      findings.push(
        `${name}: ${(summarize(contentKBps).median * 8).toFixed(0)} kbit/s of content is ` +
          `1/${Math.round(yuv / summarize(contentKBps).median)} of raw yuv420p and ` +
          `1/${Math.round(bgr / summarize(contentKBps).median)} of raw BGR frames ` +
          `(${(bgr * 8 / 1000).toFixed(0)} Mbit/s, what pickling raw frames sent).`,
      );
    });
  }

  return {
    title: "Video",
    method: [
      `Source: ${source.description}. Server in this process (\`startServer\`, default config ` +
      `but for the heights), one \`ClientSession\` over TCP on loopback whose sink records ` +
      `arrival times and discards the bytes (it acknowledges at once, so the credit window ` +
      `never holds the server back). Baseline: bare \`ffmpeg\` with the very arguments ` +
      `\`buildFfmpegArgs\` gives the server, its stdout read as fast as possible. Runs ` +
      `alternate reelay/ffmpeg; one warm-up of each is not counted.`,
      `**Start**: \`play()\` call to the first byte in the sink, against ffmpeg spawn to its ` +
      `first stdout byte for part 0 of the default ladder (${START_REPS} repetitions).`,
      `**Throughput**: the server is configured with the same height for all three parts ` +
      `(\`heights = h,h,h\`), so a whole play is ${ladderPlan.frameCount} frames at one size; ` +
      `time from \`play()\` to the last byte. The baseline runs the same three ffmpeg jobs one ` +
      `after the other. reelay starts the next part as soon as the current one has produced ` +
      `its first bytes, so two ffmpeg overlap; the baseline does not. (${THROUGHPUT_REPS} ` +
      `repetitions.)`,
      `**Switch stall**: the default ladder played through, read as fast as possible. For each ` +
      `switch, the largest gap between consecutive arrivals within ±${SWITCH_WINDOW_MS} ms of ` +
      `the first byte of the new part, against the lead at the start of that gap: content ` +
      `received (PTS span) minus wall time since the first byte. A player started at the ` +
      `first byte waits only if the gap exceeds the lead (ratio > 1). (${STALL_REPS} ` +
      `repetitions.)`,
      `**Bandwidth**: stream bytes per second of content at each height (from the throughput ` +
      `runs), against sending raw decoded frames: width × height × 1.5 bytes per frame ` +
      `(yuv420p) at ${fps} fps.`,
    ],
    figures,
    findings,
    seconds: (performance.now() - began) / 1000,
  };
}
