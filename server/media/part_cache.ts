/**
 * The opt-in `chunks/` cache of finished parts: a part that was transcoded to its end is kept as
 * `chunks/<key>.ts`, so the next viewer of the same part reads a file instead of starting ffmpeg.
 *
 * The key hashes everything that decides the part's bytes: the source's path, size and mtime,
 * and the part's own description (frames, samples, size, encoder, argument version). A part is
 * written to a temp file while it streams and becomes visible only by an atomic link once its
 * owner says it ended complete, so a partial part is never served; two writers of one key race
 * on that link and only one wins. The folder is bounded by total bytes and by age since last
 * use, evicting least recently used parts first after every commit and at open. Nothing follows
 * a symlink: entries are inspected with lstat, and an opened file must be the inode that lstat saw.
 *
 * Ours rather than a library's: the npm disk caches (cacache and its kin) are content-addressed
 * stores with their own index format and Node dependencies; this needs a few dozen lines on Deno's
 * file API, with the tee and the commit rule tied to how a part ends.
 *
 * @module
 */

import { ReelayError } from "../../shared/errors.ts";
import { encodeFields, toHex } from "../../shared/bytes.ts";

/** A cache key: a SHA-256 in lowercase hex. */
const KEY = /^[0-9a-f]{64}$/;
const PART_FILE = /^([0-9a-f]{64})\.ts$/;
const TEMP_FILE = /^[0-9a-f]{64}\.[0-9a-f]{16}\.tmp$/;

/**
 * What identifies a source file's content without reading it.
 *
 * @example
 * ```ts
 * import type { SourceIdentity } from "./part_cache.ts";
 * const source: SourceIdentity = { path: "/srv/videos/cats.mp4", size: 1234, mtimeMs: 1.7e12 };
 * ```
 */
export interface SourceIdentity {
  /** The source's path as the catalog names it. */
  path: string;
  /** Size in bytes. */
  size: number;
  /** Last modification, in ms since the epoch. */
  mtimeMs: number;
}

/**
 * Reads a source's {@link SourceIdentity} from the file system.
 *
 * @example
 * ```ts
 * import { sourceIdentity } from "./part_cache.ts";
 * const path = await Deno.makeTempFile();
 * (await sourceIdentity(path)).size; // 0
 * await Deno.remove(path);
 * ```
 */
export async function sourceIdentity(path: string): Promise<SourceIdentity> {
  const info = await Deno.stat(path);
  if (!info.mtime) {
    throw new ReelayError("cache-unusable", `File "${path}" has no modification time to key on`);
  }
  return { path, size: info.size, mtimeMs: info.mtime.getTime() };
}

/**
 * Everything else that changes a part's bytes: frames, samples, size, encoder, args version.
 *
 * @example
 * ```ts
 * import type { PartFields } from "./part_cache.ts";
 * const part: PartFields = { startFrame: 0, endFrame: 300, height: 144, encoder: "libx264", args: 3 };
 * ```
 */
export type PartFields = Readonly<Record<string, string | number | boolean>>;

/**
 * The cache key of one part: SHA-256 over the source's identity and the part's fields (in key
 * order, length-prefixed, so distinct inputs never encode alike).
 *
 * @example
 * ```ts
 * import { partKey } from "./part_cache.ts";
 * const source = { path: "/srv/videos/cats.mp4", size: 1234, mtimeMs: 1_700_000_000_000 };
 * const key = await partKey(source, { startFrame: 0, endFrame: 300, height: 144 });
 * key.length; // 64
 * ```
 */
export async function partKey(source: SourceIdentity, part: PartFields): Promise<string> {
  const fields = ["reelay-part-v1", source.path, String(source.size), String(source.mtimeMs)];
  for (const name of Object.keys(part).sort()) {
    const value = part[name];
    if (typeof value === "number" && !Number.isFinite(value)) {
      throw new RangeError(`Part field "${name}" is "${value}", not a finite number`);
    }
    fields.push(name, JSON.stringify(value));
  }
  const digest = await crypto.subtle.digest("SHA-256", encodeFields(fields));
  return toHex(new Uint8Array(digest));
}

/**
 * Bounds and place of a {@link PartCache}.
 *
 * @example
 * ```ts
 * import type { PartCacheOptions } from "./part_cache.ts";
 * const options: PartCacheOptions = {
 *   dir: "chunks",
 *   maxBytes: 10 * 2 ** 30,
 *   maxAgeMs: 7 * 86_400_000,
 * };
 * ```
 */
export interface PartCacheOptions {
  /** The cache folder (created if missing). */
  dir: string;
  /** Total bytes of committed parts. */
  maxBytes: number;
  /** A part not used for this long is removed. */
  maxAgeMs: number;
  /** The clock, in ms since the epoch (default `Date.now`). */
  now?: () => number;
}

/**
 * A committed part opened for reading.
 *
 * @example
 * ```ts
 * import type { CachedPart } from "./part_cache.ts";
 * const drain = async (part: CachedPart) => { for await (const _ of part.stream); };
 * ```
 */
export interface CachedPart {
  /** The part's bytes; the file closes when the stream ends or is cancelled. */
  stream: ReadableStream<Uint8Array>;
  /** Its size in bytes. */
  size: number;
}

/**
 * Bytes and files held by the cache.
 *
 * @example
 * ```ts
 * import type { CacheUsage } from "./part_cache.ts";
 * const line = (u: CacheUsage) => `${u.files} parts, ${u.bytes} bytes`;
 * ```
 */
export interface CacheUsage {
  /** Committed parts. */
  files: number;
  /** Their total size. */
  bytes: number;
}

interface Entry {
  path: string;
  size: number;
  usedMs: number;
}

/**
 * The cache folder. See the module documentation for the rules.
 *
 * @example Write a part, then read it back
 * ```ts
 * import { PartCache, partKey } from "./part_cache.ts";
 * const dir = await Deno.makeTempDir();
 * const cache = await PartCache.open({ dir, maxBytes: 1 << 20, maxAgeMs: 3_600_000 });
 * const key = await partKey({ path: "/v/a.mp4", size: 1, mtimeMs: 2 }, { height: 144 });
 * const writer = (await cache.write(key))!;
 * for await (const _ of writer.tee(ReadableStream.from([new Uint8Array([1, 2, 3])]))) {
 *   // ...each chunk also goes to the viewer
 * }
 * await writer.commit(); // true: the part ended complete
 * const part = await cache.read(key);
 * part?.size; // 3
 * await part?.stream.cancel();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class PartCache {
  /** The cache folder, symlinks resolved. */
  readonly dir: string;
  readonly #options: Required<PartCacheOptions>;
  readonly #writing = new Set<string>();
  #evicting: Promise<void> = Promise.resolve();

  private constructor(dir: string, options: Required<PartCacheOptions>) {
    this.dir = dir;
    this.#options = options;
  }

  /**
   * Opens (creating) the folder, removes temp files a crash left behind, and evicts what is over
   * the bounds.
   *
   * @example
   * ```ts
   * import { PartCache } from "./part_cache.ts";
   * const dir = await Deno.makeTempDir();
   * const cache = await PartCache.open({ dir, maxBytes: 1 << 20, maxAgeMs: 60_000 });
   * (await cache.usage()).files; // 0
   * await Deno.remove(dir, { recursive: true });
   * ```
   */
  static async open(options: PartCacheOptions): Promise<PartCache> {
    for (const name of ["maxBytes", "maxAgeMs"] as const) {
      if (!(options[name] > 0)) {
        throw new RangeError(`Cache ${name} "${options[name]}" is not positive`);
      }
    }
    await Deno.mkdir(options.dir, { recursive: true });
    const dir = await Deno.realPath(options.dir);
    const cache = new PartCache(dir, { now: Date.now, ...options, dir });
    for await (const entry of Deno.readDir(dir)) {
      if (TEMP_FILE.test(entry.name)) await removeQuietly(`${dir}/${entry.name}`);
    }
    await cache.evict();
    return cache;
  }

  /**
   * Opens a committed part, or returns undefined on a miss (never cached, evicted, expired, or
   * not a regular file). A hit counts as a use for eviction.
   *
   * @example
   * ```ts
   * import { PartCache } from "./part_cache.ts";
   * const dir = await Deno.makeTempDir();
   * const cache = await PartCache.open({ dir, maxBytes: 1 << 20, maxAgeMs: 60_000 });
   * await cache.read("0".repeat(64)); // undefined
   * await Deno.remove(dir, { recursive: true });
   * ```
   */
  async read(key: string): Promise<CachedPart | undefined> {
    const path = this.#partPath(key);
    const seen = await lstatOrUndefined(path);
    if (!seen) return undefined;
    if (!seen.isFile) {
      // Something planted there (a symlink, a folder): not ours to serve, and in the way.
      if (seen.isSymlink) await removeQuietly(path);
      return undefined;
    }
    if (this.#expired(seen)) {
      await removeQuietly(path);
      return undefined;
    }
    let file: Deno.FsFile;
    try {
      file = await Deno.open(path, { read: true });
    } catch {
      return undefined; // Evicted between the lstat and the open.
    }
    const opened = await file.stat();
    if (opened.ino !== seen.ino || opened.dev !== seen.dev || !opened.isFile) {
      file.close();
      return undefined;
    }
    const now = new Date(this.#options.now());
    await file.utime(now, now).catch(() => {});
    return { stream: file.readable, size: opened.size };
  }

  /**
   * Starts writing a part; undefined when it is already cached or this cache is writing it now.
   * Feed the part through {@link PartWriter.tee}, then call {@link PartWriter.commit} if it ended
   * complete, or {@link PartWriter.abort} if not.
   *
   * @example
   * ```ts
   * import { PartCache } from "./part_cache.ts";
   * const dir = await Deno.makeTempDir();
   * const cache = await PartCache.open({ dir, maxBytes: 1 << 20, maxAgeMs: 60_000 });
   * const writer = await cache.write("a".repeat(64));
   * await writer?.abort(); // nothing is left
   * await Deno.remove(dir, { recursive: true });
   * ```
   */
  async write(key: string): Promise<PartWriter | undefined> {
    const path = this.#partPath(key);
    if (this.#writing.has(key)) return undefined;
    this.#writing.add(key);
    const suffix = toHex(crypto.getRandomValues(new Uint8Array(8)));
    const tempPath = `${this.dir}/${key}.${suffix}.tmp`;
    let file: Deno.FsFile;
    try {
      if (await lstatOrUndefined(path)) throw new Deno.errors.AlreadyExists(path);
      // createNew is O_EXCL: it fails rather than follow anything already at that name.
      file = await Deno.open(tempPath, { write: true, createNew: true });
    } catch (error) {
      this.#writing.delete(key);
      if (error instanceof Deno.errors.AlreadyExists) return undefined;
      throw error;
    }
    return new PartWriter({
      file,
      tempPath,
      path,
      maxBytes: this.#options.maxBytes,
      now: this.#options.now,
      publish: (published) => this.#afterWrite(key, published),
    });
  }

  /**
   * Removes parts unused for longer than `maxAgeMs`, then the least recently used until the total
   * is within `maxBytes`. Runs after every commit and at open; safe to call at any time.
   *
   * @example
   * ```ts
   * import { PartCache } from "./part_cache.ts";
   * const dir = await Deno.makeTempDir();
   * const cache = await PartCache.open({ dir, maxBytes: 1 << 20, maxAgeMs: 60_000 });
   * await cache.evict();
   * await Deno.remove(dir, { recursive: true });
   * ```
   */
  evict(): Promise<void> {
    // One eviction at a time, so two commits never count the same files against each other.
    this.#evicting = this.#evicting.then(() => this.#evictNow());
    return this.#evicting;
  }

  /**
   * What the cache holds now.
   *
   * @example
   * ```ts
   * import { PartCache } from "./part_cache.ts";
   * const dir = await Deno.makeTempDir();
   * const cache = await PartCache.open({ dir, maxBytes: 1 << 20, maxAgeMs: 60_000 });
   * (await cache.usage()).bytes; // 0
   * await Deno.remove(dir, { recursive: true });
   * ```
   */
  async usage(): Promise<CacheUsage> {
    const entries = await this.#entries();
    return { files: entries.length, bytes: entries.reduce((sum, entry) => sum + entry.size, 0) };
  }

  async #afterWrite(key: string, published: boolean): Promise<void> {
    this.#writing.delete(key);
    if (published) await this.evict();
  }

  async #evictNow(): Promise<void> {
    const entries = (await this.#entries()).sort((a, b) => a.usedMs - b.usedMs);
    let total = entries.reduce((sum, entry) => sum + entry.size, 0);
    for (const entry of entries) {
      const expired = this.#options.now() - entry.usedMs > this.#options.maxAgeMs;
      if (!expired && total <= this.#options.maxBytes) continue;
      await removeQuietly(entry.path);
      total -= entry.size;
    }
  }

  /** Committed parts: regular files named `<key>.ts`, never what a symlink points at. */
  async #entries(): Promise<Entry[]> {
    const entries: Entry[] = [];
    for await (const item of Deno.readDir(this.dir)) {
      if (!PART_FILE.test(item.name)) continue;
      const path = `${this.dir}/${item.name}`;
      const info = await lstatOrUndefined(path);
      if (!info?.isFile) continue;
      entries.push({ path, size: info.size, usedMs: info.mtime?.getTime() ?? 0 });
    }
    return entries;
  }

  #expired(info: Deno.FileInfo): boolean {
    return this.#options.now() - (info.mtime?.getTime() ?? 0) > this.#options.maxAgeMs;
  }

  #partPath(key: string): string {
    if (!KEY.test(key)) throw new RangeError(`Cache key "${key}" is not 64 lowercase hex digits`);
    return `${this.dir}/${key}.ts`;
  }
}

interface WriterParts {
  file: Deno.FsFile;
  tempPath: string;
  path: string;
  maxBytes: number;
  now: () => number;
  publish: (published: boolean) => Promise<void>;
}

/**
 * One part being written to the cache, from {@link PartCache.write}. A failing disk or a part
 * larger than the whole cache only stops the writing: the bytes still flow to the viewer.
 *
 * @example
 * ```ts
 * import { PartCache } from "./part_cache.ts";
 * const dir = await Deno.makeTempDir();
 * const cache = await PartCache.open({ dir, maxBytes: 1 << 20, maxAgeMs: 60_000 });
 * const writer = (await cache.write("b".repeat(64)))!;
 * const viewer = writer.tee(ReadableStream.from([new Uint8Array(10)]));
 * await viewer.cancel(); // the viewer left: the part is incomplete and is dropped
 * await writer.commit(); // false
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class PartWriter {
  readonly #parts: WriterParts;
  #written = 0;
  #state: "open" | "dropped" | "done" = "open";
  #ops: Promise<void> = Promise.resolve();
  #result?: Promise<boolean>;

  /** Made by {@link PartCache.write}. */
  constructor(parts: WriterParts) {
    this.#parts = parts;
  }

  /** Bytes written so far. */
  get bytesWritten(): number {
    return this.#written;
  }

  /**
   * Passes `source` through to the returned stream, writing each chunk to the cache first. An
   * error or a cancel on the way drops the part; a clean end leaves the decision to the caller.
   */
  tee(source: ReadableStream<Uint8Array>): ReadableStream<Uint8Array> {
    const reader = source.getReader();
    return new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        let read: ReadableStreamReadResult<Uint8Array>;
        try {
          read = await reader.read();
        } catch (error) {
          await this.abort();
          return controller.error(error);
        }
        if (read.done) return controller.close();
        await this.#store(read.value);
        controller.enqueue(read.value);
      },
      cancel: async (reason) => {
        await this.abort();
        await reader.cancel(reason);
      },
    }, new ByteLengthQueuingStrategy({ highWaterMark: 0 }));
  }

  /**
   * Publishes the part if it was written whole: true when this writer's part is now in the cache,
   * false when it was dropped or another writer of the same key committed first. The cache is
   * within `maxBytes` when this resolves. Call it only for a part that ended complete.
   */
  commit(): Promise<boolean> {
    this.#result ??= this.#finish(true);
    return this.#result;
  }

  /** Drops the part: the temp file is removed and nothing is published. Idempotent. */
  async abort(): Promise<void> {
    this.#result ??= this.#finish(false);
    await this.#result;
  }

  #store(chunk: Uint8Array): Promise<void> {
    this.#ops = this.#ops.then(async () => {
      if (this.#state !== "open") return;
      if (this.#written + chunk.length > this.#parts.maxBytes) return this.#drop();
      try {
        for (let offset = 0; offset < chunk.length;) {
          offset += await this.#parts.file.write(chunk.subarray(offset));
        }
        this.#written += chunk.length;
      } catch {
        // A full or failing disk: the viewer goes on, the cache just does not get this part.
        await this.#drop();
      }
    });
    return this.#ops;
  }

  async #drop(): Promise<void> {
    this.#state = "dropped";
    closeQuietly(this.#parts.file);
    await removeQuietly(this.#parts.tempPath);
  }

  async #finish(publish: boolean): Promise<boolean> {
    await this.#ops;
    let published = false;
    if (this.#state === "open") {
      if (publish) published = await this.#publish();
      else await this.#drop();
    }
    this.#state = "done";
    await this.#parts.publish(published);
    return published;
  }

  async #publish(): Promise<boolean> {
    const { file, tempPath, path } = this.#parts;
    try {
      // On disk before it is visible, so a crash cannot leave a visible part with holes.
      await file.syncData();
      const now = new Date(this.#parts.now());
      await file.utime(now, now);
      closeQuietly(file);
      // link() refuses an existing name, symlink included: exactly one writer of a key wins.
      await Deno.link(tempPath, path);
      return true;
    } catch {
      // AlreadyExists: another writer won. Anything else (disk full, permissions) only means
      // this part is not cached; the viewer has its bytes either way.
      return false;
    } finally {
      closeQuietly(file);
      await removeQuietly(tempPath);
    }
  }
}

async function lstatOrUndefined(path: string): Promise<Deno.FileInfo | undefined> {
  try {
    return await Deno.lstat(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
}

/** Removes a file or a symlink itself (never its target); a missing one is fine. */
async function removeQuietly(path: string): Promise<void> {
  await Deno.remove(path).catch(() => {});
}

function closeQuietly(file: Deno.FsFile): void {
  try {
    file.close();
  } catch {
    // Already closed.
  }
}
