/**
 * The catalog: the video files in one folder, each probed once with ffprobe and cached by size
 * and modification time, kept fresh by watching the folder while files are added, replaced or
 * removed.
 *
 * Names are bare file names. Lookups go through a map of probed entries only, so a path, `..` or
 * an unknown name can never reach ffmpeg. A symbolic link is followed only when its target
 * stays inside the folder (after resolving every link on the way): a link to `/etc/passwd` or
 * to another user's files is left out with a logged reason.
 *
 * @module
 */

import { DEFAULT_CONFIG } from "../../shared/config/mod.ts";
import { messageOf, ReelayError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/log.ts";
import { describeVideo, type VideoInfo } from "./probe.ts";
import { probeVideo } from "./tools.ts";

/**
 * File extensions (lower case, without the dot) that the catalog considers.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { VIDEO_EXTENSIONS } from "./catalog.ts";
 * assert.ok(VIDEO_EXTENSIONS.includes("mkv"));
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
 * What a refresh changed, by name.
 *
 * @example
 * ```ts
 * import { Catalog, type CatalogChange } from "./catalog.ts";
 * const catalog = await Catalog.open(await Deno.makeTempDir(), { watch: false });
 * catalog.onChange((change: CatalogChange) => console.log(change.added, change.removed));
 * await catalog.close();
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
 * const catalog = await Catalog.open(await Deno.makeTempDir(), options);
 * await catalog.close();
 * ```
 */
export interface CatalogOptions {
  /** The ffprobe program; defaults to `[stream] ffprobe`'s default. */
  ffprobePath?: string;
  /** Receives what the catalog did and why files were left out. */
  log?: Logger;
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

/** How many ffprobe processes a refresh runs at once. */
const PROBE_CONCURRENCY = 2;

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
 * import assert from "node:assert/strict";
 * import { Catalog } from "./catalog.ts";
 * const catalog = await Catalog.open(await Deno.makeTempDir(), { watch: false });
 * assert.deepEqual(catalog.list(), []);
 * await catalog.close();
 * ```
 */
export class Catalog {
  /** Absolute path of the folder. */
  readonly dir: string;
  readonly #ffprobePath: string;
  readonly #log: Logger;
  /** Links that point outside the folder, logged once each (until they change or go). */
  readonly #outside = new Set<string>();
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
    this.#ffprobePath = options.ffprobePath ?? DEFAULT_CONFIG.stream.ffprobe;
    this.#log = options.log ?? (() => {});
    this.#debounceMs = options.debounceMs ?? 300;
  }

  /**
   * Scans `dir` (probing every video once) and, unless `watch` is false, starts watching it.
   * Throws a ReelayError with code `videos-folder-missing` if the folder cannot be read.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { Catalog } from "./catalog.ts";
   * const catalog = await Catalog.open(await Deno.makeTempDir(), { watch: false });
   * await catalog.close();
   * await assert.rejects(Catalog.open("/no/such/folder"), /cannot be read/);
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
    const root = await Deno.realPath(this.dir);
    const outside = new Set<string>();
    for await (const entry of Deno.readDir(this.dir)) {
      if (!isVideoName(entry.name) || !(entry.isFile || entry.isSymlink)) continue;
      if (entry.isSymlink && !(await staysInside(root, `${this.dir}/${entry.name}`))) {
        outside.add(entry.name);
        if (!this.#outside.has(entry.name)) {
          this.#log(
            "warn",
            `Left out of the catalog: ${JSON.stringify(entry.name)} is a link to a file ` +
              `outside ${JSON.stringify(this.dir)}`,
          );
        }
        continue;
      }
      try {
        const stat = await Deno.stat(`${this.dir}/${entry.name}`);
        if (stat.isFile) seen.set(entry.name, stat);
      } catch {
        // Deleted between the listing and the stat, or a dangling link: not a video.
      }
    }
    this.#outside.clear();
    for (const name of outside) this.#outside.add(name);
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
      this.#log("info", `Video "${name}" is in the catalog (${describeVideo(entry.info)})`);
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

/** Whether `path`, with every link resolved, is inside the folder whose real path is `root`. */
async function staysInside(root: string, path: string): Promise<boolean> {
  try {
    const target = await Deno.realPath(path);
    return target.startsWith(root.endsWith("/") ? root : `${root}/`);
  } catch {
    return false; // Dangling or unreadable: not a video either way.
  }
}

/**
 * Returns the catalog entry called `name` or throws a ReelayError with code `unknown-video`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Catalog, requireVideo } from "./catalog.ts";
 * const catalog = await Catalog.open(await Deno.makeTempDir(), { watch: false });
 * assert.throws(() => requireVideo(catalog, "../etc/passwd"), /is not in the catalog/);
 * await catalog.close();
 * ```
 */
export function requireVideo(catalog: Pick<Catalog, "get">, name: string): VideoInfo {
  const info = catalog.get(name);
  if (!info) throw new ReelayError("unknown-video", `Video "${name}" is not in the catalog`);
  return info;
}
