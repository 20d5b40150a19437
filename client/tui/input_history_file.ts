/**
 * The lines typed at the prompt, kept across runs for Up-arrow and Ctrl-R: one owner-only file
 * in the client's home (`input_history`), one line per entry, oldest first, rewritten whole
 * (through a temporary file and a rename) after each line typed.
 *
 * What is kept: valid commands only, and not the ones that carry a message's text (`/msg`,
 * `/reply`, a plain chat line, a mistyped command), because messages are end-to-end encrypted and their text must
 * not end up readable in a file. `/query bob` is kept, what you then said to bob is not (it is
 * in Up-arrow for the run only). `[client] input_history = false` turns the file off (nothing
 * read or written); `/forget-input` deletes it.
 *
 * @module
 */

import { join } from "node:path";
import { SerialQueue } from "../../shared/async.ts";
import { messageOf, ReelayError } from "../../shared/errors.ts";
import { readTextIfPresent, replaceFile } from "../../shared/files.ts";
import { isPlainCommand } from "./commands.ts";
import { InputHistory } from "./history.ts";

/** The file's name in the client's home. */
export const INPUT_HISTORY_FILE = "input_history";

/** Where typed lines are kept between runs. */
export interface InputHistoryStore {
  /** The lines kept, oldest first. */
  load(): Promise<string[]>;
  /** Keeps the keepable ones of `lines` (oldest first), replacing what was kept. */
  save(lines: readonly string[]): Promise<void>;
  /** Deletes what was kept. */
  forget(): Promise<void>;
  /** Resolves when every save and delete asked for so far is done. */
  flush(): Promise<void>;
}

/**
 * Whether a typed line may be kept in the file: a valid command that carries no message text
 * (`isPlainCommand`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { keptAcrossRuns } from "./input_history_file.ts";
 * assert.equal(keptAcrossRuns("/play cats.mp4"), true);
 * assert.equal(keptAcrossRuns("/msg bob my pin is 1234"), false);
 * assert.equal(keptAcrossRuns("see you at 8"), false);
 * assert.equal(keptAcrossRuns("//shrug"), false);
 * assert.equal(keptAcrossRuns("/mgs bob my pin"), false);
 * ```
 */
export function keptAcrossRuns(line: string): boolean {
  return isPlainCommand(line);
}

/**
 * The input history in `HOME/input_history`. Saves run one after another; a failed save is
 * reported once through `onError` and the next save tries again.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { InputHistoryFile } from "./input_history_file.ts";
 * const store = new InputHistoryFile(await Deno.makeTempDir());
 * await store.save(["/who", "/msg bob secret", "/videos"]);
 * assert.deepEqual(await store.load(), ["/who", "/videos"]);
 * await store.forget();
 * assert.deepEqual(await store.load(), []);
 * ```
 */
export class InputHistoryFile implements InputHistoryStore {
  readonly #file: string;
  readonly #queue = new SerialQueue();

  /** The store in `home`. */
  constructor(home: string) {
    this.#file = join(home, INPUT_HISTORY_FILE);
  }

  /** The lines kept, oldest first (none when there is no file). */
  async load(): Promise<string[]> {
    const text = await readTextIfPresent(this.#file);
    if (text === undefined) return [];
    return InputHistory.fromLines(text.split("\n")).entries.filter(keptAcrossRuns);
  }

  /** Replaces the file with the keepable lines. */
  save(lines: readonly string[]): Promise<void> {
    const kept = new InputHistory(lines.filter(keptAcrossRuns)).toLines();
    return this.#queue.run(() => replaceFile(this.#file, kept.map((line) => line + "\n").join("")));
  }

  /** Resolves when every save and delete asked for so far is done. */
  flush(): Promise<void> {
    return this.#queue.idle();
  }

  /** Deletes the file (after any save in progress). */
  forget(): Promise<void> {
    return this.#queue.run(async () => {
      try {
        await Deno.remove(this.#file);
      } catch (error) {
        if (error instanceof Deno.errors.NotFound) return;
        throw new ReelayError(
          "home-unusable",
          `Cannot delete "${this.#file}": ${messageOf(error)}`,
          { cause: error },
        );
      }
    });
  }
}
