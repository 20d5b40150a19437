/**
 * A name for a person who gave none: in a terminal, `reelay client` without `--name` asks
 * "Enter your name", suggesting the login name, and keeps the answer in the home (`name`, an
 * owner-only file) so the next run asks nothing. Scripts keep passing `--name`.
 *
 * @module
 */

import { join } from "node:path";
import { UsageError } from "../../shared/errors.ts";
import { MAX_NAME_LENGTH, nameProblem } from "../../shared/names.ts";
import { ensureFolderOf, readTextIfPresent, replaceFile } from "../../shared/files.ts";

/** The file in the home that keeps the name. */
export const NAME_FILE = "name";

/** How many answers are tried before giving up. */
const ATTEMPTS = 5;

/**
 * The name kept in `home`, or `undefined` when there is none (or it is no longer valid).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadSavedName, saveName } from "./name_prompt.ts";
 * const home = await Deno.makeTempDir();
 * assert.equal(await loadSavedName(home), undefined);
 * await saveName(home, "alice");
 * assert.equal(await loadSavedName(home), "alice");
 * ```
 */
export async function loadSavedName(home: string): Promise<string | undefined> {
  const text = await readTextIfPresent(join(home, NAME_FILE));
  const name = text?.trim();
  return name && !nameProblem(name) ? name : undefined;
}

/** Keeps `name` in `home` (owner-only). */
export async function saveName(home: string, name: string): Promise<void> {
  const file = join(home, NAME_FILE);
  await ensureFolderOf(file);
  await replaceFile(file, name + "\n");
}

/**
 * The login name made into a valid name, or `undefined`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { loginName } from "./name_prompt.ts";
 * assert.equal(loginName({ USER: "jo smith" }), "josmith");
 * assert.equal(loginName({}), undefined);
 * ```
 */
export function loginName(env: Record<string, string | undefined>): string | undefined {
  const user = env.USER ?? env.LOGNAME ?? env.USERNAME ?? "";
  const cleaned = user.replace(/[^A-Za-z0-9_.-]/g, "").slice(0, MAX_NAME_LENGTH);
  return cleaned && !nameProblem(cleaned) ? cleaned : undefined;
}

/** How {@linkcode askName} talks to the person. */
export interface NamePromptIo {
  /** One answer line, without its ending; `undefined` at end of input. */
  readLine(): Promise<string | undefined>;
  /** Shows text as it is (no newline added). */
  write(text: string): void;
}

/**
 * Asks for a name until a valid one is given; an empty answer takes `suggestion`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { askName } from "./name_prompt.ts";
 * const answers = ["no spaces please", ""];
 * let shown = "";
 * const name = await askName("alice", {
 *   readLine: () => Promise.resolve(answers.shift()),
 *   write: (text) => void (shown += text),
 * });
 * assert.equal(name, "alice");
 * assert.match(shown, /Enter your name \[alice\]: /);
 * ```
 */
export async function askName(suggestion: string | undefined, io: NamePromptIo): Promise<string> {
  for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
    io.write(suggestion ? `Enter your name [${suggestion}]: ` : "Enter your name: ");
    const answer = await io.readLine();
    if (answer === undefined) break;
    const name = answer.trim() || suggestion || "";
    const problem = name === "" ? "A name is needed" : nameProblem(name);
    if (!problem) return name;
    io.write(`${problem}.\n`);
  }
  throw new UsageError("No name given: pass --name NAME", "bad-name");
}

/**
 * Reads one line from stdin (a terminal in its normal, line-by-line mode) without locking
 * `Deno.stdin.readable`, which the prompt reads next.
 */
export async function readStdinLine(): Promise<string | undefined> {
  const bytes: number[] = [];
  const buffer = new Uint8Array(256);
  while (bytes.length < 4096) {
    const count = await Deno.stdin.read(buffer);
    if (count === null) return bytes.length > 0 ? decode(bytes) : undefined;
    for (const byte of buffer.subarray(0, count)) {
      if (byte === 0x0a) return decode(bytes);
      bytes.push(byte);
    }
  }
  return decode(bytes);
}

function decode(bytes: number[]): string {
  return new TextDecoder().decode(new Uint8Array(bytes)).replace(/\r$/, "");
}
