/**
 * The people whose messages this client drops without a word (`/ignore`), kept across runs.
 *
 * {@linkcode IgnoreList} is the whole contract the app uses, so the storage can move (into the
 * per-server client store of issue 11) without touching the app. {@linkcode FileIgnoreList}
 * keeps the names in one owner-only JSON file in the client's home for now;
 * {@linkcode MemoryIgnoreList} keeps them for one run (tests, `--json` scripts without a home).
 *
 * @module
 */

import { join } from "node:path";
import { nameKey } from "../../shared/names.ts";
import { ReelayError } from "../../shared/errors.ts";
import { readTextIfPresent, replaceFile } from "../../shared/channel/_files.ts";

/** The names ignored, case-insensitive as names are. */
export interface IgnoreList {
  /** Whether messages from `name` are dropped. */
  has(name: string): boolean;
  /** Ignores `name`; resolves once that is stored. */
  add(name: string): Promise<void>;
  /** Stops ignoring `name`; resolves to false when `name` was not ignored. */
  remove(name: string): Promise<boolean>;
  /** The names ignored, as first spelled, sorted. */
  names(): string[];
}

/** The most names an ignore list holds. */
export const MAX_IGNORED = 1000;

/**
 * An ignore list for one run.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MemoryIgnoreList } from "./ignore.ts";
 * const ignored = new MemoryIgnoreList();
 * await ignored.add("Mallory");
 * assert.equal(ignored.has("mallory"), true);
 * assert.equal(await ignored.remove("MALLORY"), true);
 * assert.deepEqual(ignored.names(), []);
 * ```
 */
export class MemoryIgnoreList implements IgnoreList {
  protected readonly entries = new Map<string, string>();

  /** A list holding `names`. */
  constructor(names: Iterable<string> = []) {
    for (const name of names) this.entries.set(nameKey(name), name);
  }

  /** Whether messages from `name` are dropped. */
  has(name: string): boolean {
    return this.entries.has(nameKey(name));
  }

  /** Ignores `name`. */
  add(name: string): Promise<void> {
    if (!this.has(name) && this.entries.size >= MAX_IGNORED) {
      return Promise.reject(
        new ReelayError("too-many-ignored", `You ignore ${MAX_IGNORED} people already`),
      );
    }
    this.entries.set(nameKey(name), name);
    return this.saved();
  }

  /** Stops ignoring `name`. */
  async remove(name: string): Promise<boolean> {
    if (!this.entries.delete(nameKey(name))) return false;
    await this.saved();
    return true;
  }

  /** The names ignored, sorted. */
  names(): string[] {
    return [...this.entries.values()].sort((a, b) => nameKey(a) < nameKey(b) ? -1 : 1);
  }

  /** Called after every change; stores nothing here. */
  protected saved(): Promise<void> {
    return Promise.resolve();
  }
}

/** The file of {@linkcode FileIgnoreList} in the client's home. */
export const IGNORE_FILE = "ignored.json";

/**
 * An ignore list stored as `HOME/ignored.json` (owner-only, replaced whole on each change).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { FileIgnoreList } from "./ignore.ts";
 * const home = await Deno.makeTempDir();
 * await (await FileIgnoreList.load(home)).add("mallory");
 * assert.equal((await FileIgnoreList.load(home)).has("Mallory"), true);
 * ```
 */
export class FileIgnoreList extends MemoryIgnoreList {
  readonly #file: string;

  private constructor(file: string, names: string[]) {
    super(names);
    this.#file = file;
  }

  /** Reads the list from `home` (empty when there is no file yet). */
  static async load(home: string): Promise<FileIgnoreList> {
    const file = join(home, IGNORE_FILE);
    const text = await readTextIfPresent(file);
    return new FileIgnoreList(file, text === undefined ? [] : parseNames(file, text));
  }

  /** Writes the whole list. */
  protected override async saved(): Promise<void> {
    await replaceFile(this.#file, JSON.stringify({ ignored: this.names() }, null, 2) + "\n");
  }
}

function parseNames(file: string, text: string): string[] {
  try {
    const value = JSON.parse(text);
    const names = value?.ignored;
    if (Array.isArray(names) && names.every((name) => typeof name === "string")) {
      return names.slice(0, MAX_IGNORED);
    }
  } catch {
    // reported below
  }
  throw new ReelayError(
    "home-unusable",
    `Ignore list "${file}" is damaged: fix it or delete it to start with an empty list`,
  );
}
