/**
 * Owner-only files for the channel's secrets and trust decisions: folders 0700, files 0600,
 * whole-file writes through a temporary file and a rename (so a reader never sees half a file),
 * and creation that never replaces an existing file.
 *
 * @module
 */

import { dirname } from "node:path";
import { messageOf, ReelayError } from "../errors.ts";

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

/** Throws unless only the owner may read `file` (on systems with POSIX modes). */
export async function assertOwnerOnly(file: string): Promise<void> {
  if (!POSIX) return;
  const { mode } = await Deno.stat(file);
  if (mode !== null && (mode & 0o077) !== 0) {
    throw new ReelayError(
      "state-unprotected",
      `File "${file}" can be read by other users (mode ${(mode & 0o777).toString(8)}): ` +
        `run "chmod 600 ${file}" and start again`,
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
    throw error;
  } finally {
    await Deno.remove(temp).catch(() => {});
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
