/**
 * The one way reelay writes owner-only files (the server key, the client's identity, its server
 * pins, its remembered name and input history): folders 0700, files 0600 whatever the umask,
 * whole-file writes through a temporary file and a rename (so a reader never sees half a file),
 * creation that never replaces an existing file, and the checks that refuse files or folders
 * others can read or write.
 *
 * @module
 */

import { dirname } from "node:path";
import { messageOf, ReelayError } from "./errors.ts";

const FOLDER_MODE = 0o700;
const FILE_MODE = 0o600;
const POSIX = Deno.build.os !== "windows";

/** Creates the folder holding `file` (0700) when it is missing; an existing one is left alone. */
export async function ensureFolderOf(file: string): Promise<void> {
  const folder = dirname(file);
  try {
    await Deno.mkdir(folder, { recursive: true, mode: FOLDER_MODE });
  } catch (error) {
    throw new ReelayError(
      "state-unusable",
      `Cannot create folder "${folder}": ${messageOf(error)}`,
      { cause: error },
    );
  }
}

/** The file's text, or `undefined` when it does not exist. */
export async function readTextIfPresent(file: string): Promise<string | undefined> {
  try {
    return await Deno.readTextFile(file);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw new ReelayError("state-unusable", `Cannot read "${file}": ${messageOf(error)}`, {
      cause: error,
    });
  }
}

/**
 * The user this process runs as. `Deno.uid()` needs `--allow-sys` (and would prompt on a
 * terminal without it); without it, the owner of a file we create in `folder` is us (and a
 * folder we cannot create in is not ours to trust).
 */
async function ourUid(folder: string): Promise<number | undefined> {
  try {
    // Asked first: on a terminal, calling Deno.uid() without the permission would prompt.
    if (Deno.permissions.querySync({ name: "sys", kind: "uid" }).state !== "granted") {
      throw new Deno.errors.NotCapable("no --allow-sys=uid");
    }
    return Deno.uid() ?? undefined;
  } catch {
    let probe: string | undefined;
    try {
      probe = await Deno.makeTempFile({ dir: folder, prefix: ".reelay-owner-" });
      return (await Deno.stat(probe)).uid ?? undefined;
    } catch {
      return undefined;
    } finally {
      if (probe) await Deno.remove(probe).catch(() => {});
    }
  }
}

/** A problem with who owns `path`, with the command that fixes it; undefined when it is ours. */
async function ownerProblem(
  path: string,
  info: Deno.FileInfo,
  folder: string,
): Promise<string | undefined> {
  const uid = await ourUid(folder);
  if (uid === undefined || info.uid === null || info.uid === uid) return undefined;
  return `"${path}" belongs to another user (uid ${info.uid}, you are ${uid}): if it is yours, ` +
    `run "chown ${uid} ${path}" and start again`;
}

/**
 * Throws `code` unless `file` is ours and only we may read or write it, as ssh checks its keys
 * (on systems with POSIX modes). The message names the command that fixes it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { assertOwnerOnly } from "./files.ts";
 * const file = await Deno.makeTempFile();
 * await Deno.chmod(file, 0o644);
 * await assert.rejects(assertOwnerOnly(file), /chmod 600/);
 * await Deno.chmod(file, 0o600);
 * await assertOwnerOnly(file);
 * ```
 */
export async function assertOwnerOnly(file: string, code = "state-unprotected"): Promise<void> {
  if (!POSIX) return;
  const info = await Deno.stat(file);
  const owner = await ownerProblem(file, info, dirname(file));
  if (owner) throw new ReelayError(code, `File ${owner}`);
  const { mode } = info;
  if (mode !== null && (mode & 0o077) !== 0) {
    throw new ReelayError(
      code,
      `File "${file}" can be read by other users (mode ${(mode & 0o777).toString(8)}): ` +
        `run "chmod 600 ${file}" and start again`,
    );
  }
}

/**
 * Throws `code` unless `folder` is ours and nobody else may write in it (where another user
 * could swap the files we trust), as ssh checks `~/.ssh`. The message names the fix.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { assertPrivateFolder } from "./files.ts";
 * const folder = await Deno.makeTempDir();
 * await Deno.chmod(folder, 0o777);
 * await assert.rejects(assertPrivateFolder(folder), /chmod 700/);
 * await Deno.chmod(folder, 0o700);
 * await assertPrivateFolder(folder);
 * ```
 */
export async function assertPrivateFolder(
  folder: string,
  code = "state-unprotected",
): Promise<void> {
  if (!POSIX) return;
  const info = await Deno.stat(folder);
  const owner = await ownerProblem(folder, info, folder);
  if (owner) throw new ReelayError(code, `Folder ${owner}`);
  const { mode } = info;
  if (mode !== null && (mode & 0o022) !== 0) {
    throw new ReelayError(
      code,
      `Folder "${folder}" can be written by other users (mode ${(mode & 0o777).toString(8)}), ` +
        `who could replace the files in it: run "chmod 700 ${folder}" and start again`,
    );
  }
}

/** Replaces `file` with `text` in one step: readers see the old file or the new one. */
export async function replaceFile(file: string, text: string): Promise<void> {
  const temp = await writeTemporary(file, text);
  try {
    await Deno.rename(temp, file);
  } catch (error) {
    await Deno.remove(temp).catch(() => {});
    throw error;
  }
}

/**
 * Creates `file` with `text` unless it exists; resolves to false when it already did. Linking
 * a finished temporary file never overwrites, so two first runs cannot replace each other's.
 */
export async function createFile(file: string, text: string): Promise<boolean> {
  const temp = await writeTemporary(file, text);
  try {
    await Deno.link(temp, file);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.AlreadyExists) return false;
    if (await exists(file)) return false;
    // A file system without hard links: a rename, after checking nothing is there.
    await Deno.rename(temp, file);
    return true;
  } finally {
    await Deno.remove(temp).catch(() => {});
  }
}

/**
 * Whether anything (a file, a folder, a link) is at `path`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { exists } from "./files.ts";
 * assert.equal(await exists("/"), true);
 * ```
 */
export async function exists(file: string): Promise<boolean> {
  try {
    await Deno.lstat(file);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

async function writeTemporary(file: string, text: string): Promise<string> {
  const temp = `${file}.${crypto.randomUUID()}.tmp`;
  const handle = await Deno.open(temp, { write: true, createNew: true, mode: FILE_MODE });
  try {
    const bytes = new TextEncoder().encode(text);
    for (let done = 0; done < bytes.length;) done += await handle.write(bytes.subarray(done));
    await handle.syncData();
  } finally {
    handle.close();
  }
  // The mode given to open is reduced by the umask; owner-only must not depend on it.
  if (POSIX) await Deno.chmod(temp, FILE_MODE);
  return temp;
}
