/**
 * The people whose messages this client drops without a word (`/ignore`), kept across runs.
 *
 * {@linkcode IgnoreList} is the whole contract the app uses. {@linkcode storedIgnoreList} keeps
 * the names in the client's per-server store (`client/store/`), so they last across runs;
 * {@linkcode MemoryIgnoreList} keeps them for one run (tests).
 *
 * @module
 */

import { nameKey } from "../../shared/names.ts";
import { ReelayError } from "../../shared/errors.ts";

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

/** What {@linkcode storedIgnoreList} needs: the ignore list of the per-server client store. */
export interface IgnoreStorage {
  /** Ignores `name` (any case), stored at once. */
  ignore(name: string): void;
  /** Stops ignoring `name`; whether they were ignored. */
  unignore(name: string): boolean;
  /** Whether `name` (any case) is ignored. */
  isIgnored(name: string): boolean;
  /** The names ignored, as given. */
  ignored(): string[];
}

/**
 * The ignore list kept in the client's store for this server (`client/store/mod.ts`), so it
 * lasts across runs.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { storedIgnoreList } from "./ignore.ts";
 * const names = new Map<string, string>();
 * const list = storedIgnoreList({
 *   ignore: (name) => void names.set(name.toLowerCase(), name),
 *   unignore: (name) => names.delete(name.toLowerCase()),
 *   isIgnored: (name) => names.has(name.toLowerCase()),
 *   ignored: () => [...names.values()],
 * });
 * await list.add("Mallory");
 * assert.deepEqual(list.names(), ["Mallory"]);
 * ```
 */
export function storedIgnoreList(storage: IgnoreStorage): IgnoreList {
  return {
    has: (name) => storage.isIgnored(name),
    add(name) {
      if (!storage.isIgnored(name) && storage.ignored().length >= MAX_IGNORED) {
        return Promise.reject(
          new ReelayError("too-many-ignored", `You ignore ${MAX_IGNORED} people already`),
        );
      }
      storage.ignore(name);
      return Promise.resolve();
    },
    remove: (name) => Promise.resolve(storage.unignore(name)),
    names: () => storage.ignored().sort((a, b) => nameKey(a) < nameKey(b) ? -1 : 1),
  };
}
