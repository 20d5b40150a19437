/**
 * The catalog: the video files in one folder, each probed once with ffprobe, kept fresh while
 * files are added, replaced or removed.
 *
 * Names are bare file names. Lookups go through a map of probed entries only, so a path, `..` or
 * an unknown name can never reach ffmpeg.
 *
 * @module
 */

import { messageOf, ReelayError } from "../shared/errors.ts";
import { runToEnd } from "./_ffmpeg.ts";

/**
 * File extensions (lower case, without the dot) that the catalog considers.
 *
 * @example
 * ```ts
 * import { VIDEO_EXTENSIONS } from "./catalog.ts";
 * VIDEO_EXTENSIONS.includes("mkv"); // true
 * ```
 */
export const VIDEO_EXTENSIONS: readonly string[] = [
  "mp4",
  "m4v",
  "mkv",
  "webm",
  "mov",
  "avi",
  "ts",
  "m2ts",
  "mts",
  "mpg",
  "mpeg",
  "flv",
  "wmv",
  "ogv",
  "3gp",
];

/**
 * Severity of a catalog log line.
 *
 * @example
 * ```ts
 * import type { LogLevel } from "./catalog.ts";
 * const level: LogLevel = "warn";
 * ```
 */
export type LogLevel = "debug" | "info" | "warn" | "error";

/**
 * Where the catalog reports what it did; it never prints by itself.
 *
 * @example
 * ```ts
 * import type { LogFn } from "./catalog.ts";
 * const log: LogFn = (level, message) => console.error(`[${level}] ${message}`);
 * ```
 */
export type LogFn = (level: LogLevel, message: string) => void;

/**
 * Everything the media pipeline needs to know about one video, measured once by ffprobe.
 *
 * @example
 * ```ts
 * import type { VideoInfo } from "./catalog.ts";
 * const describe = (v: VideoInfo) => `${v.name}: ${v.width}x${v.height}, ${v.duration} s`;
 * ```
 */
export interface VideoInfo {
  /** The file name, which is also the name users play it by. */
  name: string;
  /** Absolute path of the file. */
  path: string;
  /** Size in bytes when probed. */
  size: number;
  /** Modification time (ms since the epoch) when probed, or 0 when unknown. */
  mtimeMs: number;
  /** Playable duration in seconds (of the video stream when known). */
  duration: number;
  /** Coded width of the video in pixels. */
  width: number;
  /** Coded height of the video in pixels. */
  height: number;
  /** Width the picture is shown at (coded width times the sample aspect ratio). */
  displayWidth: number;
  /** Frame rate as a fraction, e.g. 30000/1001. */
  frameRate: { num: number; den: number };
  /** The container as ffprobe names it, e.g. `mov,mp4,m4a,3gp,3g2,mj2` or `mpegts`. */
  formatName: string;
  /** Start of the video stream in seconds on a timeline where the file starts at 0. */
  videoStart: number;
  /** Index of the video stream among all the file's streams. */
  videoStreamIndex: number;
  /** Whether the file has an audio stream. */
  hasAudio: boolean;
  /** Index of the audio stream among all the file's streams, when there is one. */
  audioStreamIndex?: number;
  /** Audio sample rate in Hz, when there is audio. */
  audioSampleRate?: number;
  /** Audio channel count, when there is audio. */
  audioChannels?: number;
  /** Start of the audio stream in seconds on the file's zero-based timeline. */
  audioStart?: number;
  /**
   * Samples per audio frame to snap the first decoded frame's timestamp to, for containers whose
   * timestamps are coarser than one sample (Matroska and FLV count milliseconds); 1 when the
   * container's timestamps are exact enough.
   */
  audioFrameGrid?: number;
}

/**
 * What a refresh changed, by name.
 *
 * @example
 * ```ts
 * import { Catalog, type CatalogChange } from "./catalog.ts";
 * const catalog = await Catalog.open("./videos");
 * catalog.onChange((change: CatalogChange) => console.log(change.added, change.removed));
 * ```
 */
export interface CatalogChange {
  /** Names that became playable. */
  added: string[];
  /** Names that stopped being playable (deleted, or now unreadable). */
  removed: string[];
  /** Names whose file changed and was probed again. */
  updated: string[];
}

/**
 * Options for {@link Catalog.open}.
 *
 * @example
 * ```ts
 * import { Catalog, type CatalogOptions } from "./catalog.ts";
 * const options: CatalogOptions = { ffprobePath: "ffprobe", watch: true, debounceMs: 300 };
 * const catalog = await Catalog.open("./videos", options);
 * ```
 */
export interface CatalogOptions {
  /** The ffprobe program; defaults to `ffprobe`. */
  ffprobePath?: string;
  /** Receives what the catalog did and why files were left out. */
  log?: LogFn;
  /** Watch the folder for changes (default true). */
  watch?: boolean;
  /** Quiet time after the last file system event before rescanning (default 300 ms). */
  debounceMs?: number;
}

interface CacheEntry {
  size: number;
  mtimeMs: number;
  info?: VideoInfo;
}

interface FfprobeStream {
  index?: number;
  codec_type?: string;
  width?: number;
  height?: number;
  sample_aspect_ratio?: string;
  avg_frame_rate?: string;
  r_frame_rate?: string;
  start_time?: string;
  duration?: string;
  sample_rate?: string;
  channels?: number;
  codec_name?: string;
  profile?: string;
  time_base?: string;
  disposition?: { attached_pic?: number };
}

interface FfprobeOutput {
  streams?: FfprobeStream[];
  format?: { duration?: string; start_time?: string; format_name?: string };
}

/** How many ffprobe processes a refresh runs at once. */
const PROBE_CONCURRENCY = 2;

/**
 * Probes one file with ffprobe and returns what the pipeline needs, or throws a ReelayError with
 * code `probe-failed` saying why the file cannot be played.
 *
 * @example
 * ```ts
 * import { probeVideo } from "./catalog.ts";
 * const info = await probeVideo("/srv/videos/cats.mp4");
 * console.log(info.duration, info.width, info.height, info.hasAudio);
 * ```
 */
export async function probeVideo(path: string, ffprobePath = "ffprobe"): Promise<VideoInfo> {
  const name = path.split("/").pop() ?? path;
  // An absolute path can never be mistaken for an option or a protocol by ffmpeg.
  path = await Deno.realPath(path);
  const stat = await Deno.stat(path);
  const result = await runToEnd(ffprobePath, [
    "-v",
    "error",
    "-print_format",
    "json",
    "-show_format",
    "-show_streams",
    path,
  ]);
  if (result.code !== 0) {
    const reason = result.stderr.split("\n").pop() || `ffprobe exited with code ${result.code}`;
    throw new ReelayError("probe-failed", `File "${name}" cannot be read by ffprobe: ${reason}`);
  }
  let parsed: FfprobeOutput;
  try {
    parsed = JSON.parse(new TextDecoder().decode(result.stdout));
  } catch (error) {
    throw new ReelayError(
      "probe-failed",
      `File "${name}" gave unreadable ffprobe output: ${messageOf(error)}`,
    );
  }
  return infoFromProbe(name, path, stat, parsed);
}

function infoFromProbe(
  name: string,
  path: string,
  stat: Deno.FileInfo,
  probe: FfprobeOutput,
): VideoInfo {
  const fail = (why: string) => new ReelayError("probe-failed", `File "${name}" ${why}`);
  const streams = probe.streams ?? [];
  const video = streams.find((s) =>
    s.codec_type === "video" && !s.disposition?.attached_pic && (s.width ?? 0) > 0 &&
    (s.height ?? 0) > 0
  );
  if (!video || video.index === undefined) throw fail("has no video stream");
  const frameRate = parseRate(video.avg_frame_rate) ?? parseRate(video.r_frame_rate);
  if (!frameRate) throw fail("has no usable frame rate");
  const formatStart = parseNumber(probe.format?.start_time) ?? 0;
  const videoStart = Math.max(0, (parseNumber(video.start_time) ?? formatStart) - formatStart);
  const streamDuration = parseNumber(video.duration);
  const formatDuration = parseNumber(probe.format?.duration);
  const duration = streamDuration ??
    (formatDuration === undefined ? undefined : formatDuration - videoStart);
  if (duration === undefined || !(duration > 0)) throw fail("has no known duration");
  const sar = parseRate(video.sample_aspect_ratio?.replace(":", "/"));
  const width = video.width ?? 0;
  const info: VideoInfo = {
    name,
    path,
    size: stat.size,
    mtimeMs: stat.mtime?.getTime() ?? 0,
    duration,
    width,
    height: video.height ?? 0,
    displayWidth: sar ? width * sar.num / sar.den : width,
    frameRate,
    formatName: probe.format?.format_name ?? "",
    videoStart,
    videoStreamIndex: video.index,
    hasAudio: false,
  };
  const audio = streams.find((s) => s.codec_type === "audio" && s.index !== undefined);
  const sampleRate = parseNumber(audio?.sample_rate);
  if (audio && sampleRate && sampleRate > 0) {
    info.hasAudio = true;
    info.audioStreamIndex = audio.index;
    info.audioSampleRate = sampleRate;
    info.audioChannels = audio.channels ?? 2;
    info.audioStart = Math.max(0, (parseNumber(audio.start_time) ?? formatStart) - formatStart);
    const timeBase = parseRate(audio.time_base);
    const coarse = !timeBase || timeBase.den / timeBase.num < sampleRate;
    info.audioFrameGrid = coarse ? codecFrameSize(audio, sampleRate) : 1;
  }
  return info;
}

/** Samples per frame of common fixed-frame audio codecs; 1 when unknown or variable. */
function codecFrameSize(stream: FfprobeStream, sampleRate: number): number {
  switch (stream.codec_name) {
    case "aac":
      return /HE/.test(stream.profile ?? "") ? 2048 : 1024;
    case "mp3":
    case "mp2":
      return sampleRate < 32000 ? 576 : 1152;
    case "ac3":
    case "eac3":
      return 1536;
    case "opus":
      return 960;
    default:
      return 1;
  }
}

function parseNumber(text: string | undefined): number | undefined {
  if (text === undefined || text === "N/A") return undefined;
  const value = Number(text);
  return Number.isFinite(value) ? value : undefined;
}

function parseRate(text: string | undefined): { num: number; den: number } | undefined {
  const match = /^(\d+)\/(\d+)$/.exec(text ?? "");
  if (!match) return undefined;
  const num = Number(match[1]);
  const den = Number(match[2]);
  return num > 0 && den > 0 ? { num, den } : undefined;
}

function isVideoName(name: string): boolean {
  if (name.startsWith(".")) return false;
  const dot = name.lastIndexOf(".");
  return dot > 0 && VIDEO_EXTENSIONS.includes(name.slice(dot + 1).toLowerCase());
}

/**
 * The videos in one folder. Open it with {@link Catalog.open}; close it with `close()`.
 *
 * @example
 * ```ts
 * import { Catalog } from "./catalog.ts";
 * const catalog = await Catalog.open("./videos", { log: (level, msg) => console.log(level, msg) });
 * for (const video of catalog.list()) console.log(video.name, video.duration);
 * await catalog.close();
 * ```
 */
export class Catalog {
  /** Absolute path of the folder. */
  readonly dir: string;
  readonly #ffprobePath: string;
  readonly #log: LogFn;
  readonly #debounceMs: number;
  #cache = new Map<string, CacheEntry>();
  #listeners = new Set<(change: CatalogChange) => void>();
  #watcher?: Deno.FsWatcher;
  #watchLoop?: Promise<void>;
  #timer?: ReturnType<typeof setTimeout>;
  #running?: Promise<CatalogChange>;
  #again = false;
  #closed = false;

  private constructor(dir: string, options: CatalogOptions) {
    this.dir = dir;
    this.#ffprobePath = options.ffprobePath ?? "ffprobe";
    this.#log = options.log ?? (() => {});
    this.#debounceMs = options.debounceMs ?? 300;
  }

  /**
   * Scans `dir` (probing every video once) and, unless `watch` is false, starts watching it.
   * Throws a ReelayError with code `videos-folder-missing` if the folder cannot be read.
   *
   * @example
   * ```ts
   * import { Catalog } from "./catalog.ts";
   * const catalog = await Catalog.open("./videos", { watch: false });
   * await catalog.close();
   * ```
   */
  static async open(dir: string, options: CatalogOptions = {}): Promise<Catalog> {
    let absolute: string;
    try {
      absolute = await Deno.realPath(dir);
      if (!(await Deno.stat(absolute)).isDirectory) throw new Error("not a folder");
    } catch (error) {
      throw new ReelayError(
        "videos-folder-missing",
        `Videos folder "${dir}" cannot be read: ${messageOf(error)}`,
        { cause: error },
      );
    }
    const catalog = new Catalog(absolute, options);
    await catalog.refresh();
    if (options.watch ?? true) catalog.#startWatching();
    return catalog;
  }

  /** Every playable video, sorted by name. */
  list(): VideoInfo[] {
    const infos: VideoInfo[] = [];
    for (const entry of this.#cache.values()) if (entry.info) infos.push(entry.info);
    return infos.sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
  }

  /** The catalog entry called exactly `name`, or undefined (paths and unknown names). */
  get(name: string): VideoInfo | undefined {
    return this.#cache.get(name)?.info;
  }

  /**
   * Calls `listener` after every refresh that changed something; returns a function that
   * unsubscribes it.
   */
  onChange(listener: (change: CatalogChange) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Rescans the folder now: probes new files and files whose size or mtime changed, forgets
   * deleted ones. Concurrent calls are merged; the promise says what changed.
   */
  refresh(): Promise<CatalogChange> {
    if (this.#running) {
      this.#again = true;
      return this.#running;
    }
    const run = (async () => {
      try {
        let change = await this.#scan();
        while (this.#again && !this.#closed) {
          this.#again = false;
          change = mergeChanges(change, await this.#scan());
        }
        return change;
      } finally {
        this.#running = undefined;
      }
    })();
    this.#running = run;
    return run;
  }

  /** Stops watching and waits for any scan in progress. Safe to call twice. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    try {
      this.#watcher?.close();
    } catch {
      // Already closed.
    }
    await this.#watchLoop;
    await this.#running?.catch(() => {});
  }

  async #scan(): Promise<CatalogChange> {
    const seen = new Map<string, Deno.FileInfo>();
    for await (const entry of Deno.readDir(this.dir)) {
      if (!isVideoName(entry.name) || !(entry.isFile || entry.isSymlink)) continue;
      try {
        const stat = await Deno.stat(`${this.dir}/${entry.name}`);
        if (stat.isFile) seen.set(entry.name, stat);
      } catch {
        // Deleted between the listing and the stat, or a dangling link: not a video.
      }
    }
    const change: CatalogChange = { added: [], removed: [], updated: [] };
    for (const [name, entry] of this.#cache) {
      if (seen.has(name)) continue;
      this.#cache.delete(name);
      if (entry.info) {
        change.removed.push(name);
        this.#log("info", `Video "${name}" was removed from the catalog`);
      }
    }
    const toProbe = [...seen].filter(([name, stat]) => {
      const cached = this.#cache.get(name);
      return !cached || cached.size !== stat.size ||
        cached.mtimeMs !== (stat.mtime?.getTime() ?? 0);
    });
    const worker = async () => {
      for (let next = toProbe.shift(); next; next = toProbe.shift()) {
        await this.#probeOne(next[0], next[1], change);
      }
    };
    await Promise.all(Array.from({ length: PROBE_CONCURRENCY }, worker));
    const changed = change.added.length + change.removed.length + change.updated.length > 0;
    if (changed) {
      for (const listener of [...this.#listeners]) listener(change);
    }
    return change;
  }

  async #probeOne(name: string, stat: Deno.FileInfo, change: CatalogChange): Promise<void> {
    const before = this.#cache.get(name)?.info;
    const entry: CacheEntry = { size: stat.size, mtimeMs: stat.mtime?.getTime() ?? 0 };
    try {
      entry.info = await probeVideo(`${this.dir}/${name}`, this.#ffprobePath);
      // Keep the size and mtime the decision was made on, so a file still being written is
      // probed again once it changes.
      entry.info.size = entry.size;
      entry.info.mtimeMs = entry.mtimeMs;
      (before ? change.updated : change.added).push(name);
      this.#log("info", `Video "${name}" is in the catalog (${describe(entry.info)})`);
    } catch (error) {
      if (error instanceof ReelayError && error.code === "ffmpeg-missing") throw error;
      if (before) change.removed.push(name);
      this.#log("warn", `Left out of the catalog: ${messageOf(error)}`);
    }
    this.#cache.set(name, entry);
  }

  #startWatching(): void {
    try {
      this.#watcher = Deno.watchFs(this.dir, { recursive: false });
    } catch (error) {
      this.#log("warn", `Folder "${this.dir}" cannot be watched: ${messageOf(error)}`);
      return;
    }
    const watcher = this.#watcher;
    this.#watchLoop = (async () => {
      try {
        for await (const event of watcher) {
          if (this.#closed) break;
          if (event.kind === "access") continue;
          if (this.#timer !== undefined) clearTimeout(this.#timer);
          this.#timer = setTimeout(() => {
            this.#timer = undefined;
            if (this.#closed) return;
            this.refresh().catch((error) =>
              this.#log("error", `Rescanning "${this.dir}" failed: ${messageOf(error)}`)
            );
          }, this.#debounceMs);
        }
      } catch (error) {
        if (!this.#closed) this.#log("warn", `Watching "${this.dir}" stopped: ${messageOf(error)}`);
      }
    })();
  }
}

function mergeChanges(a: CatalogChange, b: CatalogChange): CatalogChange {
  return {
    added: [...a.added, ...b.added],
    removed: [...a.removed, ...b.removed],
    updated: [...a.updated, ...b.updated],
  };
}

function describe(info: VideoInfo): string {
  const fps = info.frameRate.num / info.frameRate.den;
  const audio = info.hasAudio ? `audio ${info.audioSampleRate} Hz` : "no audio";
  return `${info.width}x${info.height}, ${fps.toFixed(3)} fps, ${
    info.duration.toFixed(2)
  } s, ${audio}`;
}

/**
 * Returns the catalog entry called `name` or throws a ReelayError with code `unknown-video`.
 *
 * @example
 * ```ts
 * import { Catalog, requireVideo } from "./catalog.ts";
 * const catalog = await Catalog.open("./videos", { watch: false });
 * try {
 *   requireVideo(catalog, "../etc/passwd");
 * } catch (error) {
 *   console.log((error as Error).message); // Video "../etc/passwd" is not in the catalog
 * }
 * await catalog.close();
 * ```
 */
export function requireVideo(catalog: Pick<Catalog, "get">, name: string): VideoInfo {
  const info = catalog.get(name);
  if (!info) throw new ReelayError("unknown-video", `Video "${name}" is not in the catalog`);
  return info;
}
