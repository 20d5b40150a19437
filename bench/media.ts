/**
 * Issue 14's ratios, each against its baseline in the same run: CPU time of ten viewers of one
 * video against one viewer (sharing: aim ≤ 1.3), `/play` to the first complete video frame
 * against tuned bare ffmpeg's first frame (aim ≤ 1.1), and a seek's first frame against bare
 * ffmpeg starting that part there. reelay runs in this process (server, loopback TCP, client
 * sessions into recording sinks); CPU is this process plus its reaped children (the server's
 * ffmpeg), from `/proc/PID/stat`. (The most concurrent streams is `streams.ts`.)
 *
 * @module
 */

import { openSession } from "../client/mod.ts";
import type { StreamSink } from "../client/player.ts";
import type { ClientSession } from "../client/session.ts";
import { DEFAULT_FAST_START } from "../server/media/encoders.ts";
import { buildFfmpegArgs } from "../server/media/ffmpeg_args.ts";
import { planFrom, planPlayback, startPointAt } from "../server/media/plan.ts";
import { probeVideo } from "../server/media/tools.ts";
import { withTimeout } from "../shared/async.ts";
import { TsClock } from "../shared/ts_clock.ts";
import { startTestServer } from "../testing/harness.ts";
import { generateVideo } from "../testing/sample_video.ts";
import type { BenchContext } from "./_context.ts";
import { readProc, sleep } from "./_procs.ts";
import { LADDER, PRESET, sourceSpec } from "./_setup.ts";
import { compared, type Figure, type GroupResult } from "./report.ts";

const SOURCE = sourceSpec(1280, 720, 12);
const VIEWERS = 10;
const CPU_REPS = 2;
const FRAME_REPS = 5;
/** Where the seek lands: in the second third. */
const SEEK_TO = 6;
const TICKS = 100; // USER_HZ
const STREAM_TIMEOUT_MS = 300_000;

/** CPU seconds of this process and its reaped children. */
async function cpuSeconds(): Promise<number> {
  const stat = await readProc(`/proc/${Deno.pid}/stat`);
  if (stat === null) throw new Error("Cannot read this process's CPU time from /proc");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // utime, stime, cutime, cstime are fields 14-17 (1-based); fields[] starts at field 3.
  return fields.slice(11, 15).map(Number).reduce((a, b) => a + b, 0) / TICKS;
}

/** Tells when the first video frame is complete in the bytes fed so far (a second video PES). */
class FirstFrame {
  readonly #clock = new TsClock();
  #firstPts: number | undefined;
  done = false;

  push(bytes: Uint8Array): boolean {
    if (this.done) return true;
    this.#clock.push(bytes);
    const pts = this.#clock.lastVideoPts;
    if (pts === undefined) return false;
    this.#firstPts ??= pts;
    this.done = pts !== this.#firstPts;
    return this.done;
  }
}

/** A client session whose sink tells when the next stream's first frame is complete. */
interface Watch {
  session: ClientSession;
  /** Milliseconds from this call to the first complete frame of the next stream. */
  next(): Promise<number>;
  /** Resolves when the stream asked for by the last `next()` ended. */
  ended(): Promise<void>;
}

async function watcher(port: number, name: string, home: string): Promise<Watch> {
  let started = 0;
  let got = Promise.withResolvers<number>();
  let end = Promise.withResolvers<void>();
  const sink = (): StreamSink => {
    const frame = new FirstFrame();
    const mine = got;
    return {
      write: (chunk) => {
        if (!frame.done && frame.push(chunk)) mine.resolve(performance.now() - started);
        return Promise.resolve();
      },
      finish: () => Promise.resolve(),
      abort: () => Promise.resolve(),
      gone: new Promise<void>(() => {}),
    };
  };
  const session = await openSession({ hostname: "127.0.0.1", port, name, home, sinks: sink });
  session.onEvent((event) => {
    if (event.event === "stream-ended") end.resolve();
  });
  return {
    session,
    next: () => {
      started = performance.now();
      got = Promise.withResolvers<number>();
      end = Promise.withResolvers<void>();
      return got.promise;
    },
    ended: () => end.promise,
  };
}

/** Bare ffmpeg with `args`: ms from spawn to its first complete frame; then it is killed. */
async function bareFirstFrame(args: string[]): Promise<number> {
  const started = performance.now();
  const child = new Deno.Command("ffmpeg", { args, stdout: "piped", stderr: "null" }).spawn();
  const frame = new FirstFrame();
  let ms = NaN;
  for await (const chunk of child.stdout) {
    if (frame.push(chunk)) {
      ms = performance.now() - started;
      break;
    }
  }
  try {
    child.kill("SIGKILL");
  } catch {
    // Already gone.
  }
  await child.status;
  return ms;
}

/** Runs the media group. */
export async function runMedia(ctx: BenchContext): Promise<GroupResult> {
  const began = performance.now();
  const dir = await Deno.makeTempDir({ dir: ctx.tempDir, prefix: "media-" });
  const path = `${dir}/clip.mp4`;
  await generateVideo(path, SOURCE);
  const info = await probeVideo(path);
  const plan = planPlayback(info, { heights: LADDER, capToSource: true });
  const server = await startTestServer({
    videos: dir,
    patch: (config) => {
      config.stream.heights = LADDER;
      config.stream.preset = PRESET;
      config.stream.maxTranscodes = 12;
      config.stream.maxStreamsPerHost = VIEWERS * 2;
      config.limits.maxClientsPerHost = VIEWERS * 5;
      config.media.encoder = "software";
    },
  });
  let copies = 0;
  /** A fresh copy of the clip under a new name: nothing of it is shared, lingering or cached. */
  const freshCopy = async (): Promise<string> => {
    const name = `copy${++copies}.mp4`;
    await Deno.copyFile(path, `${dir}/${name}`);
    const deadline = Date.now() + 30_000;
    while (!server.catalog.list().some((video) => video.name === name)) {
      if (Date.now() > deadline) throw new Error("The catalog did not pick up a copy in 30 s");
      await sleep(50);
    }
    return name;
  };
  const homes = await Deno.makeTempDir({ dir: ctx.tempDir, prefix: "media-homes-" });
  const viewers = await Promise.all(
    Array.from({ length: VIEWERS }, (_, i) => watcher(server.port, `v${i}`, `${homes}/v${i}`)),
  );
  const figures: Figure[] = [];
  try {
    ctx.log(`media: CPU of one viewer and of ${VIEWERS} viewers of one video`);
    const cpu = async (count: number) => {
      const video = await freshCopy();
      const before = await cpuSeconds();
      await Promise.all(
        viewers.slice(0, count).map(async (viewer) => {
          const ended = viewer.next().then(() => viewer.ended());
          await viewer.session.play(video);
          await withTimeout(ended, STREAM_TIMEOUT_MS, () => new Error("A stream did not end"));
        }),
      );
      return await cpuSeconds() - before;
    };
    const one: number[] = [];
    const ten: number[] = [];
    for (let rep = 0; rep < CPU_REPS; rep++) {
      one.push(await cpu(1));
      ten.push(await cpu(VIEWERS));
    }
    figures.push(compared({
      name: `CPU, ${VIEWERS} viewers of one video`,
      unit: "s",
      values: ten,
      baseline: { label: "one viewer", values: one },
      ratioLabel: `${VIEWERS} ÷ 1`,
      aim: { on: "ratio", op: "<=", target: 1.3 },
      whyMissed: "Viewers of the same part share one ffmpeg; what each adds is its own TCP " +
        "stream through the secure channel and its client. A miss means parts were not " +
        "shared (look at the server's transcodes) or the machine's load moved between runs",
    }));

    ctx.log("media: /play to the first complete frame");
    const fast = { preset: PRESET, fastStart: DEFAULT_FAST_START };
    const firstArgs = buildFfmpegArgs(info, plan.segments[0], fast);
    const [viewer] = viewers;
    const play: number[] = [];
    const bare: number[] = [];
    for (let rep = 0; rep < FRAME_REPS; rep++) {
      bare.push(await bareFirstFrame(firstArgs));
      const video = await freshCopy();
      const first = viewer.next();
      await viewer.session.play(video);
      play.push(await withTimeout(first, 60_000, () => new Error("No first frame")));
      await viewer.session.stop();
    }
    figures.push(compared({
      name: "/play → first complete frame",
      unit: "ms",
      values: play,
      baseline: { label: "tuned bare ffmpeg → first frame", values: bare },
      ratioLabel: "reelay ÷ ffmpeg",
      aim: { on: "ratio", op: "<=", target: 1.1 },
      whyMissed: "What reelay adds to ffmpeg's start is the play request's round trip, the " +
        "stream setup and the first bytes' trip through the channel; on a busy machine the " +
        "spawn time alone varies by more than the margin",
    }));

    ctx.log("media: /seek to the first complete frame");
    const seekPlan = planFrom(plan, info, startPointAt(info, SEEK_TO));
    const seekArgs = buildFfmpegArgs(info, seekPlan.segments[0], fast);
    const seek: number[] = [];
    const bareSeek: number[] = [];
    for (let rep = 0; rep < FRAME_REPS; rep++) {
      bareSeek.push(await bareFirstFrame(seekArgs));
      await viewer.session.play(await freshCopy());
      const first = viewer.next();
      await viewer.session.seek(SEEK_TO);
      seek.push(await withTimeout(first, 60_000, () => new Error("No first frame")));
      await viewer.session.stop();
    }
    figures.push(compared({
      name: `/seek to ${SEEK_TO} s → first complete frame`,
      unit: "ms",
      values: seek,
      baseline: { label: "bare ffmpeg from there", values: bareSeek },
      ratioLabel: "reelay ÷ ffmpeg",
    }));
  } finally {
    for (const viewer of viewers) await viewer.session.quit();
    await server.close();
  }
  return {
    title: "Video: sharing, first frame and seek (issue 14)",
    method: [
      `Source: a ${SOURCE.width}x${SOURCE.height} ${SOURCE.rate} fps testsrc2 clip of ` +
      `${SOURCE.seconds} s with 48 kHz stereo sound; ladder ${LADDER.join("/")}p capped at ` +
      `720p; libx264 ${PRESET}. Server in this process, client sessions over loopback TCP into ` +
      `sinks that take every byte at once. Every measurement plays a fresh copy of the file ` +
      `under a new name, so nothing is shared, lingering or cached from an earlier one.`,
      `**CPU**: this process plus its reaped children (the server's ffmpeg) from ` +
      `\`/proc/PID/stat\`, over one whole play by one viewer, then by ${VIEWERS} viewers of ` +
      `one video at once (${CPU_REPS} repetitions each, alternating).`,
      `**First frame**: from \`play()\` to the end of the first video PES (a second one began) ` +
      `at the client's sink; the baseline is bare ffmpeg with the first part's own tuned ` +
      `arguments (\`-tune zerolatency\`, a small probe size, \`-analyzeduration 0\`, a short ` +
      `first GOP) into a pipe. **Seek**: a playing viewer seeks to ${SEEK_TO} s (second ` +
      `third); the baseline is bare ffmpeg with that cut part's arguments. (${FRAME_REPS} ` +
      `repetitions, alternating.)`,
    ],
    figures,
    findings: [],
    seconds: (performance.now() - began) / 1000,
  };
}
