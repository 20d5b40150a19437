/**
 * Where the client keeps its secrets: the home folder and the identity file (created once,
 * never silently replaced), written owner-only through a temporary file and a rename. What the
 * client keeps per server (pins, conversations, history) is `store/`.
 *
 * @module
 */

import { posix, win32 } from "node:path";
import { messageOf, ReelayError, UsageError } from "../shared/errors.ts";
import { Identity } from "../shared/crypto/mod.ts";
import { assertOwnerOnly, assertPrivateFolder, createFile, exists } from "../shared/files.ts";

/** Name of the identity file inside the home folder. */
export const IDENTITY_FILE = "identity.json";

const DIR_MODE = 0o700;

/** Where to look for the home folder; `env` is usually `Deno.env`. */
export interface HomeOptions {
  /** The `--home` flag, if given. */
  home?: string;
  /** Environment lookup, e.g. `Deno.env`. */
  env: { get(name: string): string | undefined };
  /** Operating system; defaults to `Deno.build.os`. */
  os?: typeof Deno.build.os;
}

/**
 * Resolves the home folder: `--home`, else `$REELAY_HOME`, else the user's config folder
 * (`%APPDATA%\reelay` on Windows, `~/Library/Application Support/reelay` on macOS,
 * `$XDG_CONFIG_HOME/reelay` or `~/.config/reelay` elsewhere). Throws a usage error if none.
 *
 * @example
 * ```ts
 * import { resolveHome } from "./keystore.ts";
 * const home = resolveHome({ home: undefined, env: Deno.env });
 * ```
 */
export function resolveHome(options: HomeOptions): string {
  const given = options.home || options.env.get("REELAY_HOME");
  if (given) return given;
  const os = options.os ?? Deno.build.os;
  const env = (name: string) => options.env.get(name) || undefined;
  if (os === "windows") {
    const appData = env("APPDATA");
    if (appData) return win32.join(appData, "reelay");
  } else {
    const xdg = env("XDG_CONFIG_HOME");
    if (os !== "darwin" && xdg && posix.isAbsolute(xdg)) return posix.join(xdg, "reelay");
    const home = env("HOME");
    if (home && os === "darwin") {
      return posix.join(home, "Library", "Application Support", "reelay");
    }
    if (home) return posix.join(home, ".config", "reelay");
  }
  throw new UsageError("Cannot find a folder for reelay's keys: pass --home or set REELAY_HOME");
}

function isWindows(): boolean {
  return Deno.build.os === "windows";
}

function join(home: string, file: string): string {
  return isWindows() ? win32.join(home, file) : posix.join(home, file);
}

/** Creates `home` (owner-only) if it does not exist yet; an existing folder is left as is. */
async function ensureHome(home: string): Promise<void> {
  if (await exists(home)) return;
  try {
    await Deno.mkdir(home, { recursive: true, mode: DIR_MODE });
    if (!isWindows()) await Deno.chmod(home, DIR_MODE);
  } catch (error) {
    throw new ReelayError("home-unusable", `Cannot create folder "${home}": ${messageOf(error)}`, {
      cause: error,
    });
  }
}

/** Reads a file, returning `undefined` only when it does not exist. */
async function readIfExists(path: string, code: string, what: string): Promise<string | undefined> {
  try {
    return await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw new ReelayError(code, `Cannot read ${what} "${path}": ${messageOf(error)}`, {
      cause: error,
    });
  }
}

/** The identity in use, and whether it was just created. */
export interface LoadedIdentity {
  /** The long-term identity. */
  identity: Identity;
  /** True on the first run, when the identity was generated and saved. */
  created: boolean;
  /** Path of the identity file. */
  file: string;
}

/**
 * Loads `identity.json` from `home`, or on the very first run generates and saves it
 * (folder 0o700, file 0o600). An existing file that cannot be read or parsed throws
 * `identity-unreadable`; it is never replaced. A home others may write in is refused as
 * `home-unprotected`, an identity others may read or someone else owns as
 * `identity-unprotected`, each naming the command that fixes it.
 *
 * @example
 * ```ts
 * import { loadOrCreateIdentity } from "./keystore.ts";
 * const { identity, created } = await loadOrCreateIdentity(await Deno.makeTempDir());
 * ```
 */
export async function loadOrCreateIdentity(home: string): Promise<LoadedIdentity> {
  await ensureHome(home);
  // As ssh does: a home others may write in, or an identity others may read or that someone
  // else owns, is refused (with the command that fixes it) rather than used.
  await assertPrivateFolder(home, "home-unprotected");
  const file = join(home, IDENTITY_FILE);
  const text = await readIfExists(file, "identity-unreadable", "identity file");
  if (text !== undefined) {
    await assertOwnerOnly(file, "identity-unprotected");
    return { identity: await parseIdentity(file, text), created: false, file };
  }
  const identity = await Identity.generate();
  if (await createFile(file, JSON.stringify(identity, null, 2) + "\n")) {
    return { identity, created: true, file };
  }
  return loadOrCreateIdentity(home); // another process created it first: use theirs
}

async function parseIdentity(file: string, text: string): Promise<Identity> {
  try {
    return await Identity.fromJSON(JSON.parse(text));
  } catch (error) {
    throw new ReelayError(
      "identity-unreadable",
      `Identity file "${file}" is corrupt (${messageOf(error)}); reelay will not replace it. ` +
        `Restore it from a backup, or move it away to create a new identity`,
      { cause: error },
    );
  }
}
