/**
 * Test helpers for the media pipeline: temp folders with a marker, broken files, and
 * ffprobe/ffmpeg analysis of a produced stream. (Videos are made by `testing/sample_video.ts`.)
 *
 * @module
 */

import { join } from "node:path";
import type { StreamSink } from "../client/player.ts";
import type { RunningServer } from "../server/mod.ts";
import type { Config } from "../shared/config/mod.ts";
import { startTestServer } from "../testing/harness.ts";
import { run } from "../testing/processes.ts";
import { generateVideo } from "../testing/sample_video.ts";

/**
 * Creates a temp folder whose name carries a unique marker, so processes reading files from it
 * can be found by their command line.
 *
 * @example
 * ```ts
 * import { makeMediaDir } from "./_media.ts";
 * const { dir, marker } = await makeMediaDir("catalog");
 * ```
 */
export async function makeMediaDir(prefix: string): Promise<{ dir: string; marker: string }> {
  const marker = `reelay-${prefix}-${crypto.randomUUID().slice(0, 8)}`;
  const dir = await Deno.makeTempDir({ prefix: `${marker}-` });
  return { dir, marker };
}

/**
 * A marked media folder holding one generated 320x180 clip with sound (`file`, `seconds` long),
 * and a test server over it playing small parts (144p, 160p, 180p, preset ultrafast), with
 * `patch` applied to its config last.
 *
 * @example
 * ```ts ignore
 * const { media, server } = await clipServer("faults", { file: "long.mp4", seconds: 60 });
 * ```
 */
export async function clipServer(
  prefix: string,
  options: { file: string; seconds: number; patch?: (config: Config) => void },
): Promise<{ media: { dir: string; marker: string }; server: RunningServer & { videos: string } }> {
  const media = await makeMediaDir(prefix);
  await generateVideo(join(media.dir, options.file), {
    width: 320,
    height: 180,
    rate: "30",
    seconds: options.seconds,
    audioRate: 48000,
  });
  const server = await startTestServer({
    videos: media.dir,
    patch: (config) => {
      config.stream.heights = [144, 160, 180];
      config.stream.preset = "ultrafast";
      options.patch?.(config);
    },
  });
  return { media, server };
}

/**
 * Writes `size` zero bytes: a file no program can read as a video. (Not random bytes: now and
 * then those hold an MPEG audio sync word, and ffprobe then finds an audio stream in them.)
 *
 * @example
 * ```ts
 * import { makeBroken } from "./_media.ts";
 * await makeBroken("/tmp/x/broken.mp4");
 * ```
 */
export async function makeBroken(path: string, size = 64 * 1024): Promise<void> {
  await Deno.writeFile(path, new Uint8Array(size));
}

/**
 * Runs a program and returns what it printed on stderr (for `ffmpeg -v warning`).
 *
 * @example
 * ```ts
 * import { stderrOf } from "./_media.ts";
 * const warnings = await stderrOf("ffmpeg", ["-v", "warning", "-i", "a.ts", "-f", "null", "-"]);
 * ```
 */
export async function stderrOf(program: string, args: string[]): Promise<string> {
  const output = await new Deno.Command(program, {
    args,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).output();
  return new TextDecoder().decode(output.stderr).trim();
}

/** One packet of a stream as ffprobe reports it (timestamps in the stream's time base). */
export interface Packet {
  /** `video` or `audio`. */
  type: string;
  /** Presentation timestamp. */
  pts: number;
  /** Decoding timestamp. */
  dts: number;
  /** True for a keyframe. */
  key: boolean;
}

/** One decoded video frame. */
export interface Frame {
  /** Presentation timestamp (90 kHz in MPEG-TS). */
  pts: number;
  /** Width in pixels. */
  width: number;
  /** Height in pixels. */
  height: number;
}

/**
 * Packets of every stream of `path`, in file order.
 *
 * @example
 * ```ts
 * import { packetsOf } from "./_media.ts";
 * const audio = (await packetsOf("out.ts")).filter((p) => p.type === "audio");
 * ```
 */
export async function packetsOf(path: string): Promise<Packet[]> {
  const json = await probeJson(path, [
    "-show_entries",
    "packet=codec_type,pts,dts,flags",
    "-show_entries",
    "stream=index,codec_type",
  ]);
  const packets = (json.packets ?? []) as {
    codec_type?: string;
    pts?: number;
    dts?: number;
    flags?: string;
  }[];
  return packets.map((p) => ({
    type: p.codec_type ?? "",
    pts: p.pts ?? NaN,
    dts: p.dts ?? NaN,
    key: (p.flags ?? "").startsWith("K"),
  }));
}

/**
 * Decoded video frames of `path` in presentation order.
 *
 * @example
 * ```ts
 * import { framesOf } from "./_media.ts";
 * const heights = new Set((await framesOf("out.ts")).map((f) => f.height));
 * ```
 */
export async function framesOf(path: string): Promise<Frame[]> {
  const json = await probeJson(path, [
    "-select_streams",
    "v:0",
    "-show_entries",
    "frame=pts,width,height",
  ]);
  const frames = (json.frames ?? []) as { pts?: number; width?: number; height?: number }[];
  return frames.map((f) => ({ pts: f.pts ?? NaN, width: f.width ?? 0, height: f.height ?? 0 }))
    .sort((a, b) => a.pts - b.pts);
}

/**
 * Streams of `path` as ffprobe reports them.
 *
 * @example
 * ```ts
 * import { streamsOf } from "./_media.ts";
 * const hasAudio = (await streamsOf("out.ts")).some((s) => s.codec_type === "audio");
 * ```
 */
export async function streamsOf(path: string): Promise<Record<string, unknown>[]> {
  const json = await probeJson(path, ["-show_streams"]);
  return (json.streams ?? []) as Record<string, unknown>[];
}

async function probeJson(path: string, args: string[]): Promise<Record<string, unknown[]>> {
  const stdout = await run("ffprobe", ["-v", "error", "-of", "json", ...args, path]);
  return JSON.parse(new TextDecoder().decode(stdout));
}

/**
 * Decodes the first audio stream of `path` to mono 32-bit float samples.
 *
 * @example
 * ```ts
 * import { decodeAudio } from "./_media.ts";
 * const samples = await decodeAudio("out.ts");
 * ```
 */
export async function decodeAudio(path: string): Promise<Float32Array> {
  const bytes = await run("ffmpeg", [
    "-v",
    "error",
    "-i",
    path,
    "-map",
    "0:a:0",
    "-ac",
    "1",
    "-f",
    "f32le",
    "pipe:1",
  ]);
  return new Float32Array(bytes.buffer, bytes.byteOffset, Math.floor(bytes.length / 4));
}

/**
 * What a process is blocked in (its /proc wchan), e.g. `anon_pipe_write` when it waits for a
 * full pipe to be read; empty when it no longer exists.
 *
 * @example
 * ```ts
 * import { waitChannelOf } from "./_media.ts";
 * console.log(await waitChannelOf(1234));
 * ```
 */
export async function waitChannelOf(pid: number): Promise<string> {
  const code =
    `try { console.log(Deno.readTextFileSync("/proc/${pid}/wchan")); } catch { console.log(""); }`;
  const stdout = await run("deno", ["eval", code]);
  return new TextDecoder().decode(stdout).trim();
}

/**
 * The state letter of a process from /proc (`R` running, `S` sleeping, `T` stopped), or "" when
 * it is gone.
 *
 * @example
 * ```ts ignore
 * import { processStateOf } from "./_media.ts";
 * const stopped = (await processStateOf(pid)) === "T";
 * ```
 */
export async function processStateOf(pid: number): Promise<string> {
  const code = `try { const s = Deno.readTextFileSync("/proc/${pid}/stat"); ` +
    `console.log(s.slice(s.lastIndexOf(")") + 2).split(" ")[0]); } catch { console.log(""); }`;
  const stdout = await run("deno", ["eval", code]);
  return new TextDecoder().decode(stdout).trim();
}

/**
 * Sinks for a test viewer (its `sinks` option is `make`) that keep every stream they are given:
 * `streams` holds one array of chunks per stream, in order. Each write first waits for `before`,
 * when given (a stream waits on its credit meanwhile).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { recordingSinks } from "./_media.ts";
 * const { streams, make } = recordingSinks();
 * await make().write(new Uint8Array([1]));
 * assert.deepEqual(streams, [[new Uint8Array([1])]]);
 * ```
 */
export function recordingSinks(
  before?: () => Promise<void>,
): { streams: Uint8Array[][]; make: () => StreamSink } {
  const streams: Uint8Array[][] = [];
  const make = (): StreamSink => {
    const chunks: Uint8Array[] = [];
    streams.push(chunks);
    return {
      write: async (chunk) => {
        await before?.();
        chunks.push(chunk.slice());
      },
      finish: () => Promise.resolve(),
      abort: () => Promise.resolve(),
      gone: new Promise<void>(() => {}),
    };
  };
  return { streams, make };
}

/** {@linkcode recordingSinks} that take nothing until `open()` (or never, when it is not called). */
export function gatedSinks(): ReturnType<typeof recordingSinks> & { open: () => void } {
  const gate = Promise.withResolvers<void>();
  return { ...recordingSinks(() => gate.promise), open: () => gate.resolve() };
}

/** A sink that keeps the stream in memory (the test writes it out only to run ffprobe). */
export function memorySink(): { sink: StreamSink; chunks: Uint8Array[] } {
  const { streams, make } = recordingSinks();
  const sink = make();
  return { sink, chunks: streams[0] };
}
