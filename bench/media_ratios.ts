/**
 * Issue 14's ratios, each against its baseline in the same run: CPU time of ten viewers of one
 * video against one viewer (sharing: aim <= 1.3), `/play` to the first complete video frame
 * against tuned bare ffmpeg's first frame (aim <= 1.1), and a seek's first frame against the
 * same. reelay runs in process (server, loopback TCP, client session into a recording sink);
 * CPU is this process plus its reaped children (ffmpeg), from /proc/self/stat.
 *
 * Run: `deno run --allow-all bench/media_ratios.ts [REPS]`; prints a Markdown table.
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
import { TsClock } from "../shared/ts_clock.ts";
import { startTestServer } from "../testing/harness.ts";
import { generateVideo } from "../testing/sample_video.ts";

const REPS = Number(Deno.args[0] ?? 5);
const HEIGHTS = [144, 720, 1440];
const TICKS = 100; // USER_HZ

/** CPU seconds of this process and its reaped children. */
function cpuSeconds(): number {
  const stat = Deno.readTextFileSync("/proc/self/stat");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // utime, stime, cutime, cstime are fields 14-17 (1-based); fields[] starts at field 3.
  return fields.slice(11, 15).map(Number).reduce((a, b) => a + b, 0) / TICKS;
}

/** Resolves when the first video frame is complete in `bytes` fed so far (a second video PES). */
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

interface Watch {
  session: ClientSession;
  /** Milliseconds from `mark()` to the first complete frame of the next stream. */
  next(): Promise<number>;
  ended(): Promise<void>;
}

async function watcher(port: number, name: string): Promise<Watch> {
  let started = 0;
  let got = Promise.withResolvers<number>();
  let end = Promise.withResolvers<void>();
  const sink = (): StreamSink => {
    // Only the stream whose player starts after the mark counts.
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
  const home = await Deno.makeTempDir({ prefix: "reelay-bench-" });
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

/** Bare ffmpeg with the first part's own tuned arguments: ms to its first complete frame. */
async function bareFirstFrame(args: string[]): Promise<number> {
  const t0 = performance.now();
  const child = new Deno.Command("ffmpeg", { args, stdout: "piped", stderr: "null" }).spawn();
  const frame = new FirstFrame();
  let ms = NaN;
  for await (const chunk of child.stdout) {
    if (frame.push(chunk)) {
      ms = performance.now() - t0;
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

const median = (values: number[]) => values.toSorted((a, b) => a - b)[values.length >> 1];

let copies = 0;
/**
 * A fresh copy of the sample under a new name: nothing of it is shared, lingering or cached, so
 * every measurement starts cold.
 */
async function freshCopy(): Promise<string> {
  const name = `copy${++copies}.mp4`;
  await Deno.copyFile(path, `${dir}/${name}`);
  await until(() => server.catalog.list().some((video) => video.name === name));
  return name;
}

async function until(check: () => boolean): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error("The catalog did not pick up a copy in 30 s");
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const dir = await Deno.makeTempDir({ prefix: "reelay-bench-media-" });
const path = `${dir}/clip.mp4`;
await generateVideo(path, { width: 1280, height: 720, rate: "30", seconds: 12, audioRate: 48000 });
const info = await probeVideo(path);
const plan = planPlayback(info, { heights: HEIGHTS, capToSource: true });
const server = await startTestServer({
  videos: dir,
  patch: (config) => {
    config.stream.heights = HEIGHTS;
    config.stream.maxTranscodes = 12;
    config.stream.maxStreamsPerHost = 20;
    config.limits.maxClientsPerHost = 50;
    config.media.encoder = "software";
  },
});
const viewers = await Promise.all(
  Array.from({ length: 10 }, (_, i) => watcher(server.port, `v${i}`)),
);
const rows: string[] = [];
try {
  // CPU: one viewer, then ten viewers of the same video (one transcode per part, shared).
  const cpu = async (count: number) => {
    const video = await freshCopy();
    const before = cpuSeconds();
    const group = viewers.slice(0, count);
    await Promise.all(group.map(async (viewer) => {
      const ended = viewer.next().then(() => viewer.ended());
      await viewer.session.play(video);
      await ended;
    }));
    return cpuSeconds() - before;
  };
  const one: number[] = [];
  const ten: number[] = [];
  for (let rep = 0; rep < Math.max(2, Math.ceil(REPS / 2)); rep++) {
    one.push(await cpu(1));
    ten.push(await cpu(10));
  }
  const cpuOne = median(one);
  const cpuTen = median(ten);
  rows.push(
    `| CPU, ten viewers of one video / one viewer | ${cpuTen.toFixed(2)} s / ${
      cpuOne.toFixed(2)
    } s | **${(cpuTen / cpuOne).toFixed(2)}** | <= 1.3 |`,
  );

  // First frame after /play, against bare ffmpeg with the same tuned first-part arguments.
  const firstArgs = buildFfmpegArgs(info, plan.segments[0], {
    preset: "veryfast",
    fastStart: DEFAULT_FAST_START,
  });
  const play: number[] = [];
  const bare: number[] = [];
  const [viewer] = viewers;
  for (let rep = 0; rep < REPS; rep++) {
    bare.push(await bareFirstFrame(firstArgs));
    const video = await freshCopy();
    const first = viewer.next();
    await viewer.session.play(video);
    play.push(await first);
    await viewer.session.stop();
  }
  rows.push(
    `| /play to first complete frame / tuned bare ffmpeg | ${median(play).toFixed(0)} ms / ${
      median(bare).toFixed(0)
    } ms | **${(median(play) / median(bare)).toFixed(2)}** | <= 1.1 |`,
  );

  // A seek into the second third, against bare ffmpeg starting that part there.
  const seekPlan = planFrom(plan, info, startPointAt(info, 6));
  const seekArgs = buildFfmpegArgs(info, seekPlan.segments[0], {
    preset: "veryfast",
    fastStart: DEFAULT_FAST_START,
  });
  const seek: number[] = [];
  const bareSeek: number[] = [];
  for (let rep = 0; rep < REPS; rep++) {
    bareSeek.push(await bareFirstFrame(seekArgs));
    await viewer.session.play(await freshCopy());
    const first = viewer.next();
    await viewer.session.seek(6);
    seek.push(await first);
    await viewer.session.stop();
  }
  rows.push(
    `| /seek to first complete frame / bare ffmpeg from there | ${median(seek).toFixed(0)} ms / ${
      median(bareSeek).toFixed(0)
    } ms | **${(median(seek) / median(bareSeek)).toFixed(2)}** | — |`,
  );
} finally {
  for (const viewer of viewers) await viewer.session.quit();
  await server.close();
  await Deno.remove(dir, { recursive: true });
}
const table = [
  "| measure | reelay / baseline | ratio | aim |",
  "| --- | --- | --- | --- |",
  ...rows,
];
Deno.stdout.writeSync(new TextEncoder().encode(`${table.join("\n")}\n`));
