/**
 * Which H.264 encoder a part uses, and the encoder-specific ffmpeg arguments for it: VA-API,
 * NVENC or Quick Sync when a one-frame trial encode at start shows the hardware works, libx264
 * otherwise; plus the fast-start tuning of a stream's first part.
 *
 * Ours rather than a library's: the npm ffmpeg wrappers (fluent-ffmpeg and its kin) build command
 * lines but neither probe hardware nor know the upload and scaling filters each device needs, and
 * detection here is one trial encode per candidate through the same arguments a part will use,
 * so a machine that lists an encoder it cannot drive falls back instead of failing mid-stream.
 *
 * Everything that builds arguments is pure; only {@link detectEncoder} runs ffmpeg, through an
 * injectable {@link Runner}.
 *
 * @module
 */

import { messageOf, ReelayError, UsageError } from "../../shared/errors.ts";
import { StderrTail, terminate } from "../../shared/process.ts";

/**
 * A hardware encoder family, in the order detection tries them.
 *
 * @example
 * ```ts
 * import type { HardwareEncoder } from "./encoders.ts";
 * const gpu: HardwareEncoder = "nvenc";
 * ```
 */
export type HardwareEncoder = "vaapi" | "nvenc" | "qsv";

/**
 * Every encoder a part can use.
 *
 * @example
 * ```ts
 * import type { EncoderKind } from "./encoders.ts";
 * const kind: EncoderKind = "software";
 * ```
 */
export type EncoderKind = HardwareEncoder | "software";

/**
 * The `encoder` setting: `auto` detects, any other value forces that encoder.
 *
 * @example
 * ```ts
 * import type { EncoderSetting } from "./encoders.ts";
 * const setting: EncoderSetting = "auto";
 * ```
 */
export type EncoderSetting = "auto" | EncoderKind;

/**
 * The hardware candidates, in the order `auto` tries them.
 *
 * @example
 * ```ts
 * import { HARDWARE_ENCODERS } from "./encoders.ts";
 * HARDWARE_ENCODERS; // ["vaapi", "nvenc", "qsv"]
 * ```
 */
export const HARDWARE_ENCODERS: readonly HardwareEncoder[] = Object.freeze([
  "vaapi",
  "nvenc",
  "qsv",
]);

/**
 * Every value the `encoder` setting accepts.
 *
 * @example
 * ```ts
 * import { ENCODER_SETTINGS } from "./encoders.ts";
 * ENCODER_SETTINGS.includes("qsv"); // true
 * ```
 */
export const ENCODER_SETTINGS: readonly EncoderSetting[] = Object.freeze([
  "auto",
  "software",
  ...HARDWARE_ENCODERS,
]);

const CODECS: Readonly<Record<EncoderKind, string>> = {
  software: "libx264",
  vaapi: "h264_vaapi",
  nvenc: "h264_nvenc",
  qsv: "h264_qsv",
};

const FAMILY_NAMES: Readonly<Record<EncoderKind, string>> = {
  software: "software",
  vaapi: "VA-API",
  nvenc: "NVENC",
  qsv: "Quick Sync",
};

/** The name the ffmpeg command gives the VA-API device it opens. */
const VAAPI_DEVICE_NAME = "reelay_va";

/** Where Linux puts GPU render nodes. */
const RENDER_NODE_DIR = "/dev/dri";

/** Keeps a device path from being read as more than one `-init_hw_device` field. */
const SAFE_DEVICE_PATH = /^\/[A-Za-z0-9_./-]+$/;

/**
 * The encoder the parts use: its family and, for VA-API, the render node.
 *
 * @example
 * ```ts
 * import type { Encoder } from "./encoders.ts";
 * const gpu: Encoder = { kind: "vaapi", device: "/dev/dri/renderD128" };
 * ```
 */
export interface Encoder {
  /** The encoder family. */
  kind: EncoderKind;
  /** The render node VA-API opens (required for `vaapi`, ignored otherwise). */
  device?: string;
}

/**
 * Reads the `encoder` setting, throwing a UsageError that quotes a value it does not know.
 *
 * @example
 * ```ts
 * import { parseEncoderSetting } from "./encoders.ts";
 * parseEncoderSetting("NVENC"); // "nvenc"
 * ```
 */
export function parseEncoderSetting(text: string): EncoderSetting {
  const value = text.trim().toLowerCase();
  const setting = ENCODER_SETTINGS.find((known) => known === value);
  if (setting === undefined) {
    throw new UsageError(
      `Encoder "${text}" is not one of ${ENCODER_SETTINGS.join(", ")}`,
      "bad-encoder",
    );
  }
  return setting;
}

/**
 * The ffmpeg codec name of an encoder.
 *
 * @example
 * ```ts
 * import { codecOf } from "./encoders.ts";
 * codecOf({ kind: "qsv" }); // "h264_qsv"
 * ```
 */
export function codecOf(encoder: Encoder): string {
  return CODECS[encoder.kind];
}

/**
 * A one-line description for the log and `/videos`.
 *
 * @example
 * ```ts
 * import { describeEncoder } from "./encoders.ts";
 * describeEncoder({ kind: "vaapi", device: "/dev/dri/renderD128" });
 * // "h264_vaapi (VA-API on /dev/dri/renderD128)"
 * ```
 */
export function describeEncoder(encoder: Encoder): string {
  const where = encoder.kind === "vaapi" && encoder.device ? ` on ${encoder.device}` : "";
  return `${codecOf(encoder)} (${FAMILY_NAMES[encoder.kind]}${where})`;
}

/**
 * How the first part of a stream is tuned to start fast: no encoder delay, a short first GOP
 * so the player has a keyframe early, and little input probing.
 *
 * @example
 * ```ts
 * import { DEFAULT_FAST_START, type FastStart } from "./encoders.ts";
 * const quicker: FastStart = { ...DEFAULT_FAST_START, shortGopSeconds: 0.25 };
 * ```
 */
export interface FastStart {
  /** Keyframe interval (s) at the start of the part. */
  shortGopSeconds: number;
  /** How long (s) the short interval lasts before the normal GOP takes over. */
  shortWindowSeconds: number;
  /** Bytes ffmpeg may read to probe each input (`-probesize`). */
  probeBytes: number;
}

/**
 * The defaults for {@link FastStart}: a keyframe every 0.5 s for the first second.
 *
 * @example
 * ```ts
 * import { DEFAULT_FAST_START } from "./encoders.ts";
 * DEFAULT_FAST_START.shortGopSeconds; // 0.5
 * ```
 */
export const DEFAULT_FAST_START: Readonly<FastStart> = Object.freeze({
  shortGopSeconds: 0.5,
  shortWindowSeconds: 1,
  probeBytes: 65_536,
});

/**
 * What one part asks of the encoder.
 *
 * @example
 * ```ts
 * import type { EncodeOptions } from "./encoders.ts";
 * const part: EncodeOptions = { width: 1280, height: 720, fps: 30, maxrate: 3_317_760 };
 * ```
 */
export interface EncodeOptions {
  /** Output width in pixels (even). */
  width: number;
  /** Output height in pixels (even). */
  height: number;
  /** The source's frame rate, for the GOP length in frames. */
  fps: number;
  /** Bitrate cap in bits per second; the VBV buffer holds two seconds of it. */
  maxrate: number;
  /** libx264 preset (software only; default `veryfast`). */
  preset?: string;
  /** Constant-quality level as x264's CRF (default 23); hardware maps it to its own scale. */
  quality?: number;
  /** GOP length in seconds (default 2). */
  gopSeconds?: number;
  /** Tune for a fast first frame (the first part of a stream); omit for the others. */
  fastStart?: FastStart;
}

/**
 * The encoder-specific pieces of one part's ffmpeg command, for the part's argument builder to
 * splice in: `deviceArgs` before the first input, `perInputArgs` before every `-i`, `filterTail`
 * at the end of the video filter chain (after any trim), and `outputArgs` among the output
 * options.
 *
 * @example
 * ```ts
 * import { type EncoderArgs, encoderArgs } from "./encoders.ts";
 * const parts: EncoderArgs = encoderArgs({ kind: "software" }, {
 *   width: 256, height: 144, fps: 30, maxrate: 300_000,
 * });
 * const args = [...parts.deviceArgs, ...parts.perInputArgs, "-i", "in.mp4",
 *   "-vf", `trim=end=5,${parts.filterTail}`, ...parts.outputArgs, "-f", "mpegts", "pipe:1"];
 * ```
 */
export interface EncoderArgs {
  /** Global options that open the hardware device. */
  deviceArgs: string[];
  /** Options for each input (probing limits when starting fast). */
  perInputArgs: string[];
  /** Scaling, pixel format and upload filters, ending in frames the encoder takes. */
  filterTail: string;
  /** Codec, rate control, GOP, latency and colour options. */
  outputArgs: string[];
}

const COLOUR_TAGS = [
  "-colorspace",
  "bt709",
  "-color_primaries",
  "bt709",
  "-color_trc",
  "bt709",
  "-color_range",
  "tv",
];

/**
 * Builds the encoder-specific ffmpeg arguments for one part. Pure.
 *
 * Decoding stays on the CPU for every encoder, so any source the catalog accepts works and the
 * part's trim filters see ordinary frames; only scaling (VA-API) and encoding move to the GPU.
 *
 * Rate control matches libx264's CRF 23 with a `-maxrate`/`-bufsize` cap: NVENC uses its
 * constant-quality VBR with the same cap; VA-API and Quick Sync, whose quality modes are not
 * available on every driver, use VBR at half the cap with the cap as maximum.
 *
 * @example
 * ```ts
 * import { encoderArgs } from "./encoders.ts";
 * const parts = encoderArgs({ kind: "vaapi", device: "/dev/dri/renderD128" }, {
 *   width: 1280, height: 720, fps: 30, maxrate: 3_317_760,
 * });
 * parts.filterTail.endsWith("out_range=tv"); // true: scaled on the GPU
 * ```
 */
export function encoderArgs(encoder: Encoder, options: EncodeOptions): EncoderArgs {
  checkEncodeOptions(options);
  const fastStart = options.fastStart;
  return {
    deviceArgs: deviceArgs(encoder),
    perInputArgs: fastStart
      ? ["-probesize", String(fastStart.probeBytes), "-analyzeduration", "0"]
      : [],
    filterTail: filterTail(encoder, options),
    outputArgs: [
      "-c:v",
      codecOf(encoder),
      ...rateControl(encoder.kind, options),
      ...gopArgs(encoder.kind, options),
      ...(fastStart ? latencyArgs(encoder.kind) : []),
      ...COLOUR_TAGS,
    ],
  };
}

function checkEncodeOptions(options: EncodeOptions): void {
  const { width, height, fps, maxrate } = options;
  const even = (value: number) => Number.isInteger(value) && value >= 2 && value % 2 === 0;
  if (!even(width) || !even(height)) {
    throw new RangeError(`Output size "${width}x${height}" is not two even positive integers`);
  }
  if (!(fps > 0) || !Number.isFinite(fps)) throw new RangeError(`Frame rate "${fps}" is invalid`);
  if (!(maxrate > 0)) throw new RangeError(`Bitrate cap "${maxrate}" is not positive`);
}

function deviceArgs(encoder: Encoder): string[] {
  if (encoder.kind !== "vaapi") return [];
  const device = encoder.device ?? "";
  if (!SAFE_DEVICE_PATH.test(device)) {
    throw new UsageError(`VA-API device "${device}" is not an absolute path to a render node`);
  }
  return [
    "-init_hw_device",
    `vaapi=${VAAPI_DEVICE_NAME}:${device}`,
    "-filter_hw_device",
    VAAPI_DEVICE_NAME,
  ];
}

/** Scales on the CPU into bt709 and the pixel format the encoder reads from system memory. */
function cpuScale(width: number, height: number, format: string): string {
  return `scale=${width}:${height}:out_color_matrix=bt709:out_range=tv,format=${format},setsar=1`;
}

function filterTail(encoder: Encoder, { width, height }: EncodeOptions): string {
  switch (encoder.kind) {
    case "software":
      return cpuScale(width, height, "yuv420p");
    case "nvenc":
      // NVENC reads system-memory frames; scale_cuda is missing from many ffmpeg builds.
      return cpuScale(width, height, "yuv420p");
    case "qsv":
      // Quick Sync reads NV12 from system memory, which needs no second device setup.
      return cpuScale(width, height, "nv12");
    case "vaapi":
      // Upload the decoded frame as is and let the GPU scale and convert to bt709.
      return "setsar=1,format=nv12,hwupload," +
        `scale_vaapi=w=${width}:h=${height}:format=nv12:out_color_matrix=bt709:out_range=tv`;
  }
}

function rateControl(kind: EncoderKind, options: EncodeOptions): string[] {
  const quality = options.quality ?? 23;
  const cap = [
    "-maxrate",
    String(Math.round(options.maxrate)),
    "-bufsize",
    String(Math.round(options.maxrate * 2)),
  ];
  const halfCap = String(Math.round(options.maxrate / 2));
  switch (kind) {
    case "software":
      return ["-preset", options.preset ?? "veryfast", "-crf", String(quality), ...cap];
    case "nvenc":
      return ["-preset", "p4", "-rc", "vbr", "-cq", String(quality), "-b:v", "0", ...cap];
    case "vaapi":
      return ["-rc_mode", "VBR", "-b:v", halfCap, ...cap];
    case "qsv":
      return ["-preset", "veryfast", "-b:v", halfCap, ...cap];
  }
}

function gopArgs(kind: EncoderKind, options: EncodeOptions): string[] {
  const gopSeconds = options.gopSeconds ?? 2;
  const args = ["-g", String(Math.max(1, Math.round(gopSeconds * options.fps)))];
  if (options.fastStart) {
    args.push("-force_key_frames", keyframeExpression(options.fps, gopSeconds, options.fastStart));
    // Forced keyframes must be IDR frames, or a player joining there cannot start decoding.
    if (kind === "nvenc") args.push("-forced-idr", "1");
    if (kind === "qsv") args.push("-forced_idr", "1");
  }
  return args;
}

/** Options that remove the encoder's look-ahead and reordering delay. */
function latencyArgs(kind: EncoderKind): string[] {
  switch (kind) {
    case "software":
      return ["-tune", "zerolatency"];
    case "nvenc":
      return ["-tune", "ll", "-zerolatency", "1", "-delay", "0", "-bf", "0"];
    case "vaapi":
      return ["-bf", "0", "-async_depth", "1"];
    case "qsv":
      return ["-bf", "0", "-async_depth", "1", "-look_ahead", "0"];
  }
}

/**
 * The `-force_key_frames` expression for a fast start: a keyframe on the first frame, then every
 * `shortGopSeconds` while `shortWindowSeconds` lasts, then every `gopSeconds`. It counts from the
 * part's first frame, so it works whatever timestamp base the part's frames carry; half a frame
 * of tolerance keeps rounding from pushing a keyframe one frame late.
 *
 * @example
 * ```ts
 * import { keyframeExpression } from "./encoders.ts";
 * keyframeExpression(30, 2, { shortGopSeconds: 0.5, shortWindowSeconds: 1 });
 * // "expr:if(isnan(prev_forced_t),1,gte(t-prev_forced_t,if(lte(n_forced,2),0.5,2)-0.016667))"
 * ```
 */
export function keyframeExpression(
  fps: number,
  gopSeconds: number,
  fastStart: Pick<FastStart, "shortGopSeconds" | "shortWindowSeconds">,
): string {
  const { shortGopSeconds, shortWindowSeconds } = fastStart;
  if (!(shortGopSeconds > 0) || !(shortWindowSeconds >= 0) || !(gopSeconds > 0)) {
    throw new RangeError(
      `Keyframe intervals "${shortGopSeconds}/${shortWindowSeconds}/${gopSeconds}" are invalid`,
    );
  }
  const shortCount = Math.round(shortWindowSeconds / shortGopSeconds);
  const tolerance = Number((0.5 / fps).toFixed(6));
  return `expr:if(isnan(prev_forced_t),1,gte(t-prev_forced_t,` +
    `if(lte(n_forced,${shortCount}),${shortGopSeconds},${gopSeconds})-${tolerance}))`;
}

/**
 * The complete ffmpeg arguments of a trial encode: one black 256x144 frame through exactly the
 * device, filter and encoder options a part would use, into nothing.
 *
 * @example
 * ```ts
 * import { trialArgs } from "./encoders.ts";
 * trialArgs({ kind: "nvenc" }).includes("h264_nvenc"); // true
 * ```
 */
export function trialArgs(encoder: Encoder): string[] {
  const parts = encoderArgs(encoder, { width: 256, height: 144, fps: 25, maxrate: 300_000 });
  return [
    "-hide_banner",
    "-nostdin",
    "-nostats",
    "-loglevel",
    "error",
    ...parts.deviceArgs,
    "-f",
    "lavfi",
    "-i",
    "color=black:s=256x144:r=25:d=0.2",
    "-frames:v",
    "1",
    "-vf",
    parts.filterTail,
    ...parts.outputArgs,
    "-f",
    "null",
    "-",
  ];
}

/**
 * How a short command ended.
 *
 * @example
 * ```ts
 * import type { RunResult } from "./encoders.ts";
 * const failed = (result: RunResult) => result.code !== 0 || result.timedOut;
 * ```
 */
export interface RunResult {
  /** Exit code; -1 when the program could not be started. */
  code: number;
  /** The last lines of its error output (or why it could not start). */
  stderr: string;
  /** True when it was killed for running past its deadline. */
  timedOut: boolean;
}

/**
 * Runs a program to its end within `timeoutMs`, killing it (and awaiting its exit) past that.
 *
 * @example
 * ```ts
 * import type { Runner } from "./encoders.ts";
 * const alwaysFails: Runner = () =>
 *   Promise.resolve({ code: 1, stderr: "No device", timedOut: false });
 * ```
 */
export type Runner = (program: string, args: string[], timeoutMs: number) => Promise<RunResult>;

/** How long a trial may take after SIGTERM before SIGKILL. */
const KILL_GRACE_MS = 500;

/**
 * The default {@link Runner}: spawns the program with stdin and stdout closed, keeps the tail of
 * stderr, and on the deadline sends SIGTERM, then SIGKILL, and awaits the exit, so a hung driver
 * leaves no process behind.
 *
 * @example
 * ```ts ignore
 * import { runProgram } from "./encoders.ts";
 * const result = await runProgram("ffmpeg", ["-version"], 5000);
 * console.log(result.code);
 * ```
 */
export async function runProgram(
  program: string,
  args: string[],
  timeoutMs: number,
): Promise<RunResult> {
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(program, { args, stdin: "null", stdout: "null", stderr: "piped" })
      .spawn();
  } catch (error) {
    return {
      code: -1,
      stderr: `Program "${program}" could not start: ${messageOf(error)}`,
      timedOut: false,
    };
  }
  const tail = new StderrTail();
  const drained = tail.drain(child.stderr);
  let killing: Promise<void> | undefined;
  const timer = setTimeout(
    () => killing = terminate(child, child.status, KILL_GRACE_MS),
    timeoutMs,
  );
  const [status] = await Promise.all([child.status, drained]);
  clearTimeout(timer);
  await killing;
  return { code: status.code, stderr: tail.lastLines(5), timedOut: killing !== undefined };
}

/**
 * What detection was told.
 *
 * @example
 * ```ts
 * import type { DetectOptions } from "./encoders.ts";
 * const options: DetectOptions = { setting: "auto", trialTimeoutMs: 5000 };
 * ```
 */
export interface DetectOptions {
  /** `auto` (default) tries hardware in order; any other value forces that encoder. */
  setting?: EncoderSetting;
  /** The ffmpeg program (default `ffmpeg`). */
  ffmpegPath?: string;
  /** VA-API render node; by default the first `/dev/dri/renderD*`. */
  vaapiDevice?: string;
  /** Deadline of each trial encode (default 5000 ms). */
  trialTimeoutMs?: number;
  /** Runs ffmpeg (default {@link runProgram}). */
  run?: Runner;
}

/**
 * The outcome of one hardware candidate.
 *
 * @example
 * ```ts
 * import type { Trial } from "./encoders.ts";
 * const line = (t: Trial) => `${t.kind}: ${t.ok ? "works" : t.detail}`;
 * ```
 */
export interface Trial {
  /** The candidate. */
  kind: HardwareEncoder;
  /** True when its trial encode succeeded. */
  ok: boolean;
  /** Why it was skipped or failed (ffmpeg's last lines), or `trial encode succeeded`. */
  detail: string;
}

/**
 * The encoder chosen at start, and what was tried on the way.
 *
 * @example
 * ```ts
 * import type { Detection } from "./encoders.ts";
 * const log = (d: Detection) => d.trials.map((t) => `${t.kind}: ${t.detail}`).join("; ");
 * ```
 */
export interface Detection {
  /** The encoder every part uses. */
  encoder: Encoder;
  /** Hardware candidates in the order tried (empty when the setting forces software). */
  trials: Trial[];
}

/**
 * Chooses the encoder at start. With `auto`, each hardware candidate gets a one-frame trial
 * encode in the order VA-API, NVENC, Quick Sync; the first that succeeds wins, and software is
 * the fallback. A forced hardware encoder that fails its trial is a ReelayError (code
 * `encoder-unavailable`) naming the encoder and quoting ffmpeg; forced software runs no trial.
 *
 * @example
 * ```ts
 * import { detectEncoder, type Runner } from "./encoders.ts";
 * // Stand-in for a machine whose only working hardware is NVENC.
 * const run: Runner = (_program, args) =>
 *   Promise.resolve(args.includes("h264_nvenc")
 *     ? { code: 0, stderr: "", timedOut: false }
 *     : { code: 1, stderr: "No device available", timedOut: false });
 * const { encoder, trials } = await detectEncoder({ vaapiDevice: "/dev/dri/renderD128", run });
 * encoder.kind; // "nvenc"
 * trials.map((t) => t.kind); // ["vaapi", "nvenc"]
 * ```
 */
export async function detectEncoder(options: DetectOptions = {}): Promise<Detection> {
  const setting = options.setting ?? "auto";
  if (setting === "software") return { encoder: { kind: "software" }, trials: [] };
  const candidates = setting === "auto" ? HARDWARE_ENCODERS : [setting];
  const trials: Trial[] = [];
  for (const kind of candidates) {
    const device = kind === "vaapi" ? options.vaapiDevice ?? await findRenderNode() : undefined;
    const trial = kind === "vaapi" && device === undefined
      ? { kind, ok: false, detail: `no render node in ${RENDER_NODE_DIR}` }
      : await runTrial({ kind, device }, options);
    trials.push(trial);
    if (trial.ok) return { encoder: { kind, device }, trials };
  }
  if (setting !== "auto") {
    const failed = trials[0];
    throw new ReelayError(
      "encoder-unavailable",
      `Encoder "${setting}" (${CODECS[setting]}) failed its trial encode: ${failed.detail}`,
    );
  }
  return { encoder: { kind: "software" }, trials };
}

async function runTrial(encoder: Encoder, options: DetectOptions): Promise<Trial> {
  const kind = encoder.kind as HardwareEncoder;
  const timeoutMs = options.trialTimeoutMs ?? 5000;
  const run = options.run ?? runProgram;
  const result = await run(options.ffmpegPath ?? "ffmpeg", trialArgs(encoder), timeoutMs);
  if (result.timedOut) {
    return { kind, ok: false, detail: `ffmpeg did not finish within ${timeoutMs} ms` };
  }
  if (result.code !== 0) {
    const how = result.code === -1 ? "" : `ffmpeg exited with code ${result.code}`;
    const lines = result.stderr ? `${how ? ":\n" : ""}${result.stderr}` : "";
    return { kind, ok: false, detail: `${how}${lines}` };
  }
  return { kind, ok: true, detail: "trial encode succeeded" };
}

/** The first render node, or undefined when there is none (or it cannot be listed). */
async function findRenderNode(): Promise<string | undefined> {
  const nodes: string[] = [];
  try {
    for await (const entry of Deno.readDir(RENDER_NODE_DIR)) {
      if (/^renderD\d+$/.test(entry.name)) nodes.push(`${RENDER_NODE_DIR}/${entry.name}`);
    }
  } catch {
    // No /dev/dri (no GPU, a container) or not allowed to look: no VA-API.
  }
  return nodes.sort()[0];
}
