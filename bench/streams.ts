/**
 * Issue 14's capacity ratio: the most streams of different videos this machine keeps in real
 * time at once through reelay, against bare ffmpeg running the same parts with the same
 * arguments. Both are ramped 1, 2, 3, … streams at once, level by level and side by side
 * (reelay at N, then ffmpeg at N), until a level has a stream that falls behind real time.
 *
 * A stream is read the way a player reads it: a {@link Pacer} takes bytes no faster than their
 * timestamps (keeping {@link LEAD_S} ahead), and starts "playing" {@link PREROLL_S} after its
 * first byte; it fell behind if it ever needed media that had not arrived, or did not end
 * complete.
 *
 * @module
 */

import { openSession } from "../client/mod.ts";
import type { StreamSink } from "../client/player.ts";
import type { ClientSession } from "../client/session.ts";
import { DEFAULT_FAST_START } from "../server/media/encoders.ts";
import { buildFfmpegArgs, planPlayback, probeVideo } from "../server/media/mod.ts";
import type { VideoInfo } from "../server/media/mod.ts";
import { withTimeout } from "../shared/async.ts";
import { TsClock } from "../shared/ts_clock.ts";
import { generateVideo } from "../testing/sample_video.ts";
import type { BenchContext } from "./_context.ts";
import { type ServerProcess, sleep, spawnServer } from "./_procs.ts";
import { LADDER, PRESET, sourceSpec } from "./_setup.ts";
import { summarize } from "./_stats.ts";
import type { GroupResult } from "./report.ts";

/** The sources: small enough that a busy 2-core machine keeps a few in real time. */
const SOURCE = sourceSpec(640, 360, 8);
/** Media a reader keeps in hand ahead of the clock, as a player's buffer does. */
const LEAD_S = 2;
/** A player starts this long after its first byte; a stream later than that has stalled. */
const PREROLL_S = 1;
/** The ramp stops here even when nothing fell behind. */
const MAX_LEVEL = 12;
/** Ramps run, alternating which side goes first at each level. */
const RAMPS = 2;
/** Past this, a level's streams are given up on (and count as behind). */
const LEVEL_TIMEOUT_MS = (SOURCE.seconds * 4 + 60) * 1000;

const CONFIG = `; deno task bench: streams
[stream]
max_transcodes = ${3 * MAX_LEVEL}
max_streams_per_host = ${MAX_LEVEL}
preset = ${PRESET}
[limits]
max_clients_per_host = ${MAX_LEVEL + 4}
[media]
encoder = software
`;

/**
 * Takes a stream's bytes at a player's pace and notes whether it ever ran dry: `late` is the
 * most the playing clock got ahead of the media in hand (≤ 0 when it never stalled).
 */
class Pacer {
  readonly #clock = new TsClock();
  #first: number | undefined;
  late = -Infinity;

  /** Takes one chunk: resolves once a player would have room for more. */
  async push(chunk: Uint8Array): Promise<void> {
    const now = performance.now();
    this.#first ??= now;
    const inHand = this.#clock.position;
    this.late = Math.max(this.late, (now - this.#first) / 1000 - PREROLL_S - inHand);
    this.#clock.push(chunk);
    const ahead = this.#clock.position - (performance.now() - this.#first) / 1000;
    if (ahead > LEAD_S) await sleep((ahead - LEAD_S) * 1000);
  }

  /** Seconds of media taken. */
  get seconds(): number {
    return this.#clock.position;
  }
}

/** What one level of one side did. */
interface Level {
  streams: number;
  /** Every stream kept real time and ended complete. */
  kept: boolean;
  /** The worst stream's lateness in seconds (≤ 0: never stalled). */
  worstLate: number;
  /** Why a stream failed, if one did. */
  failure?: string;
}

function judge(streams: number, results: { late: number; failure?: string }[]): Level {
  const worstLate = Math.max(...results.map((result) => result.late));
  const failure = results.find((result) => result.failure)?.failure;
  return { streams, kept: worstLate <= 0 && failure === undefined, worstLate, failure };
}

/** One client session, its current stream's pacer and the end of that stream. */
interface Viewer {
  session: ClientSession;
  pacer?: Pacer;
  ended?: PromiseWithResolvers<{ reason: string; message?: string }>;
}

/** Viewers of a spawned `reelay server`, one session per stream, joined as the ramp needs. */
class ReelaySide {
  readonly #server: ServerProcess;
  readonly #home: string;
  readonly #viewers: Viewer[] = [];

  constructor(server: ServerProcess, home: string) {
    this.#server = server;
    this.#home = home;
  }

  async #viewer(index: number) {
    while (this.#viewers.length <= index) {
      const n = this.#viewers.length;
      const holder: Omit<Viewer, "session"> = {};
      const sink = (): StreamSink => ({
        write: (chunk) => holder.pacer!.push(chunk),
        finish: () => Promise.resolve(),
        abort: () => Promise.resolve(),
        gone: new Promise<void>(() => {}),
      });
      const session = await openSession({
        hostname: "127.0.0.1",
        port: this.#server.port,
        name: `stream${n}`,
        home: `${this.#home}/stream${n}`,
        sinks: sink,
      });
      session.onEvent((event) => {
        if (event.event === "stream-ended") holder.ended?.resolve(event);
      });
      this.#viewers.push(Object.assign(holder, { session }));
    }
    return this.#viewers[index];
  }

  /** Plays `videos[i]` on viewer i, all at once; how each stream went. */
  async level(videos: string[]): Promise<Level> {
    const viewers = await Promise.all(videos.map((_, i) => this.#viewer(i)));
    const results = await Promise.all(viewers.map(async (viewer, i) => {
      const pacer = new Pacer();
      viewer.pacer = pacer;
      const ended = Promise.withResolvers<{ reason: string; message?: string }>();
      viewer.ended = ended;
      try {
        await viewer.session.play(videos[i]);
        const end = await withTimeout(
          ended.promise,
          LEVEL_TIMEOUT_MS,
          () => new Error("did not end in time"),
        );
        const failure = end.reason === "complete" ? undefined : `${end.reason}: ${end.message}`;
        return { late: pacer.late, failure };
      } catch (error) {
        await viewer.session.stop().catch(() => {});
        return { late: pacer.late, failure: String(error) };
      } finally {
        await viewer.session.idle();
      }
    }));
    return judge(videos.length, results);
  }

  async close(): Promise<void> {
    await Promise.all(this.#viewers.map((viewer) => viewer.session.quit()));
  }
}

/**
 * One stream of bare ffmpeg: the plan's parts with the server's own arguments, the next part
 * started as soon as the current one wrote its first byte (as reelay does), every part's stdout
 * read at once into memory (reelay reads ahead too), and the whole taken by a {@link Pacer}.
 */
async function bareStream(info: VideoInfo): Promise<{ late: number; failure?: string }> {
  const plan = planPlayback(info, { heights: LADDER, capToSource: true });
  const jobs = plan.segments.map((segment, index) =>
    buildFfmpegArgs(info, segment, {
      preset: PRESET,
      fastStart: index === 0 ? DEFAULT_FAST_START : undefined,
    })
  );
  const parts: { chunks: Uint8Array[]; done: boolean; ok: boolean; wake?: () => void }[] = [];
  const children: Deno.ChildProcess[] = [];
  const start = (index: number): Promise<void> => {
    const part = {
      chunks: [] as Uint8Array[],
      done: false,
      ok: false,
      wake: undefined as (() => void) | undefined,
    };
    parts.push(part);
    const child = new Deno.Command("ffmpeg", {
      args: jobs[index],
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).spawn();
    children.push(child);
    return (async () => {
      let next: Promise<void> | undefined;
      for await (const chunk of child.stdout) {
        part.chunks.push(chunk);
        part.wake?.();
        if (!next && index + 1 < jobs.length) next = start(index + 1);
      }
      part.ok = (await child.status).success;
      part.done = true;
      part.wake?.();
      await next;
    })();
  };
  const pacer = new Pacer();
  const producing = start(0);
  try {
    for (let index = 0; index < jobs.length; index++) {
      while (parts.length <= index) await sleep(5);
      const part = parts[index];
      while (true) {
        const chunk = part.chunks.shift();
        if (chunk) {
          await pacer.push(chunk);
          continue;
        }
        if (part.done) break;
        await new Promise<void>((resolve) => part.wake = resolve);
        part.wake = undefined;
      }
      if (!part.ok) return { late: pacer.late, failure: `part ${index + 1} failed` };
    }
    const short = info.duration - 1 - pacer.seconds;
    return short > 0
      ? { late: pacer.late, failure: `${short.toFixed(1)} s short` }
      : { late: pacer.late };
  } finally {
    for (const child of children) {
      try {
        child.kill("SIGKILL");
      } catch {
        // Already exited.
      }
    }
    await producing.catch(() => {});
  }
}

async function bareLevel(infos: VideoInfo[]): Promise<Level> {
  const results = await Promise.all(
    infos.map((info) =>
      withTimeout(bareStream(info), LEVEL_TIMEOUT_MS, () => new Error("did not end in time"))
        .catch((error) => ({ late: Infinity, failure: String(error) }))
    ),
  );
  return judge(infos.length, results);
}

/**
 * The source videos, each different (its own tone and file), made as the ramp needs them, and
 * the copies each level plays.
 */
class Sources {
  readonly #dir: string;
  readonly #served: string;
  readonly #log: (line: string) => void;
  readonly infos: VideoInfo[] = [];
  #runs = 0;

  /** Makes clips in `dir`; copies them into `served`, the server's folder. */
  constructor(dir: string, served: string, log: (line: string) => void) {
    this.#dir = dir;
    this.#served = served;
    this.#log = log;
  }

  /**
   * Copies of the first `count` clips under names never played before, so no part of them is
   * still kept from an earlier level (a complete part lingers for later viewers).
   */
  async fresh(count: number): Promise<VideoInfo[]> {
    const infos = await this.ensure(count);
    const run = ++this.#runs;
    return await Promise.all(infos.map(async (info, i) => {
      const name = `run${run}-clip${i}.mp4`;
      const path = `${this.#served}/${name}`;
      await Deno.copyFile(info.path, path);
      return { ...info, name, path };
    }));
  }

  async ensure(count: number): Promise<VideoInfo[]> {
    while (this.infos.length < count) {
      const n = this.infos.length;
      const path = `${this.#dir}/clip${n}.mp4`;
      const began = performance.now();
      await generateVideo(path, { ...SOURCE, frequency: 300 + 40 * n });
      this.infos.push(await probeVideo(path));
      this.#log(`generated clip${n}.mp4 in ${((performance.now() - began) / 1000).toFixed(1)} s`);
    }
    return this.infos.slice(0, count);
  }
}

/** Waits until the server lists every one of `names`. */
async function listed(session: ClientSession, names: string[]): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (true) {
    const videos = new Set((await session.listVideos()).map((video) => video.name));
    if (names.every((name) => videos.has(name))) return;
    if (Date.now() > deadline) throw new Error(`The server did not list ${names} in 30 s`);
    await sleep(100);
  }
}

function describe(level: Level): string {
  const late = Number.isFinite(level.worstLate) ? `${level.worstLate.toFixed(2)} s` : "—";
  return `${level.streams}: ${level.kept ? "kept" : "behind"} (worst lateness ${late}` +
    `${level.failure ? `; ${level.failure}` : ""})`;
}

/** Ramps both sides once, level by level, `reelayFirst` deciding which side goes first. */
async function ramp(
  ctx: BenchContext,
  sources: Sources,
  reelay: ReelaySide,
  listing: ClientSession,
  reelayFirst: boolean,
): Promise<{ reelay: Level[]; ffmpeg: Level[] }> {
  const levels = { reelay: [] as Level[], ffmpeg: [] as Level[] };
  const going = { reelay: true, ffmpeg: true };
  const sides = reelayFirst ? ["reelay", "ffmpeg"] as const : ["ffmpeg", "reelay"] as const;
  for (let n = 1; n <= MAX_LEVEL && (going.reelay || going.ffmpeg); n++) {
    for (const side of sides) {
      if (!going[side]) continue;
      const run = async () => {
        const infos = await sources.fresh(n);
        try {
          if (side === "ffmpeg") return await bareLevel(infos);
          const names = infos.map((info) => info.name);
          await listed(listing, names);
          return await reelay.level(names);
        } finally {
          await Promise.all(infos.map((info) => Deno.remove(info.path)));
        }
      };
      // A level that falls behind gets one more try: a moment of someone else's load on a
      // shared machine should not end the ramp.
      for (let attempt = 0; attempt < 2; attempt++) {
        const level = await run();
        levels[side].push(level);
        going[side] = level.kept;
        ctx.log(`streams: ${side} ${describe(level)}`);
        if (level.kept) break;
      }
    }
  }
  return levels;
}

/** Runs the streams group. */
export async function runStreams(ctx: BenchContext): Promise<GroupResult> {
  const began = performance.now();
  const dir = await Deno.makeTempDir({ dir: ctx.tempDir, prefix: "streams-" });
  const videos = `${dir}/videos`;
  await Deno.mkdir(videos);
  const sources = new Sources(dir, videos, ctx.log);
  await sources.ensure(1);
  const server = await spawnServer({ videos, configIni: CONFIG, tempDir: ctx.tempDir });
  const reelay = new ReelaySide(server, dir);
  const findings: string[] = [];
  const counts = { reelay: [] as number[], ffmpeg: [] as number[] };
  let listing: ClientSession | undefined;
  try {
    listing = await openSession({
      hostname: "127.0.0.1",
      port: server.port,
      name: "lister",
      home: `${dir}/lister`,
    });
    for (let rep = 0; rep < RAMPS; rep++) {
      const levels = await ramp(ctx, sources, reelay, listing, rep % 2 === 0);
      const most = (side: Level[]) =>
        Math.max(0, ...side.filter((level) => level.kept).map((level) => level.streams));
      counts.reelay.push(most(levels.reelay));
      counts.ffmpeg.push(most(levels.ffmpeg));
      findings.push(
        `Ramp ${rep + 1} (${rep % 2 === 0 ? "reelay" : "ffmpeg"} first at each level): reelay ` +
          `${levels.reelay.map(describe).join("; ")}. ffmpeg ` +
          `${levels.ffmpeg.map(describe).join("; ")}.`,
      );
    }
  } finally {
    await listing?.quit();
    await reelay.close();
    const status = await server.stop();
    if (status.code !== 0) findings.push(`Server exited with ${status.code}: ${server.tail()}`);
  }
  if ([...counts.reelay, ...counts.ffmpeg].includes(MAX_LEVEL)) {
    findings.push(`The ramp stops at ${MAX_LEVEL}: a count of ${MAX_LEVEL} means "at least".`);
  }
  return {
    title: "Concurrent streams (issue 14)",
    method: [
      `Sources: ${sources.infos.length} different ${SOURCE.width}x${SOURCE.height} ` +
      `${SOURCE.rate} fps testsrc2 clips of ${SOURCE.seconds} s with a 48 kHz stereo tone (each ` +
      `its own file and pitch, so nothing is shared), generated as the ramp needs them; each ` +
      `level plays copies under new names, as nothing of a video played a moment ago may be ` +
      `kept (a complete part lingers in memory for later viewers). reelay: ` +
      `\`reelay server\` in its own process (default ladder ${LADDER.join("/")}p, capped to ` +
      `144p, 360p, 360p; preset ${PRESET}; software encoder), one client session per stream in ` +
      `the bench process (the clients' decryption shares the machine too). ffmpeg: the same ` +
      `three parts with the arguments \`buildFfmpegArgs\` gives the server (the first tuned ` +
      `to start fast), the next started at the current one's first byte, as reelay does, every ` +
      `part's output read into memory as it comes.`,
      `Each stream is read as a player reads: no faster than its timestamps allow (${LEAD_S} s ` +
      `kept in hand), playing from ${PREROLL_S} s after its first byte. A stream fell behind if ` +
      `it ever needed media that had not arrived, or did not end complete. A ramp runs levels ` +
      `1, 2, 3, … streams at once, both sides at each level one after the other, until a level ` +
      `has a stream behind in two tries (at most ${MAX_LEVEL}); the count is the last level ` +
      `that kept up. ` +
      `${RAMPS} ramps, alternating which side goes first. The counts are small, so the ratio ` +
      `moves in large steps; on a shared machine they follow its load from minute to minute.`,
    ],
    figures: [{
      name: "most real-time streams of different videos at once",
      value: summarize(counts.reelay),
      unit: "streams",
      baseline: {
        label: "bare ffmpeg, same parts",
        value: summarize(counts.ffmpeg),
        unit: "streams",
      },
      // A ramp where ffmpeg kept up with none has no ratio (the findings show it).
      ratio: summarize(
        counts.reelay.flatMap((count, i) => counts.ffmpeg[i] > 0 ? [count / counts.ffmpeg[i]] : []),
      ),
      ratioLabel: "reelay ÷ ffmpeg",
    }],
    findings,
    seconds: (performance.now() - began) / 1000,
  };
}
