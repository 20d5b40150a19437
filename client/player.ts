/**
 * Where a received stream goes: a player process reading it on stdin (ffplay or mpv in a
 * window), or nowhere (`none`, which still lets the session report progress). The client never
 * writes the stream to a file by itself.
 *
 * @module
 */

import { ReelayError, UsageError } from "../shared/errors.ts";

/** Receives one stream's bytes in order. */
export interface StreamSink {
  /** Resolves once the bytes are handed on (this is what paces the server). */
  write(chunk: Uint8Array): Promise<void>;
  /** The stream is complete: let the player finish playing, then end it. */
  finish(): Promise<void>;
  /** Stop now: end the player at once. Idempotent. */
  abort(): Promise<void>;
  /** Resolves if the player goes away on its own (window closed). */
  readonly gone: Promise<void>;
}

/** Makes a sink for a video, given its name. */
export type SinkFactory = (video: string) => StreamSink;

const KNOWN_PLAYERS: Record<string, string[]> = {
  // A fixed window: ffplay would otherwise keep the size of the first third (144p) all along.
  ffplay: [
    "-hide_banner",
    "-loglevel",
    "error",
    "-autoexit",
    "-window_title",
    "reelay",
    "-x",
    "1280",
    "-y",
    "720",
    "-i",
    "-",
  ],
  mpv: ["--really-quiet", "--force-window=yes", "--title=reelay", "-"],
};

/**
 * The player commands to try, in order, for a `--player` choice: `auto` means ffplay in a window
 * (or mpv when ffplay is missing) when a display is available, and nothing otherwise; `none`
 * means nothing. A bare `ffplay` or `mpv` gets the arguments to read stdin.
 *
 * @example
 * ```ts
 * import { resolvePlayer } from "./player.ts";
 * resolvePlayer("none", {}); // []
 * resolvePlayer("mpv", {}); // [["mpv", "--really-quiet", ...]]
 * ```
 */
export function resolvePlayer(
  choice: string,
  env: { DISPLAY?: string; WAYLAND_DISPLAY?: string },
): string[][] {
  const words = choice.trim().split(/\s+/).filter((word) => word !== "");
  if (words.length === 0) throw new UsageError(`Player ${JSON.stringify(choice)} is empty`);
  if (words.length === 1 && words[0] === "none") return [];
  if (words.length === 1 && words[0] === "auto") {
    const hasDisplay = Deno.build.os !== "linux" || Boolean(env.DISPLAY || env.WAYLAND_DISPLAY);
    return hasDisplay ? Object.entries(KNOWN_PLAYERS).map(([name, args]) => [name, ...args]) : [];
  }
  const known = words.length === 1 ? KNOWN_PLAYERS[words[0]] : undefined;
  return [known ? [words[0], ...known] : words];
}

/**
 * A sink that drops every byte (for `--player none` and scripts).
 *
 * @example
 * ```ts
 * import { discardSink } from "./player.ts";
 * const sink = discardSink();
 * await sink.write(new Uint8Array(10));
 * ```
 */
export function discardSink(): StreamSink {
  return {
    write: () => Promise.resolve(),
    finish: () => Promise.resolve(),
    abort: () => Promise.resolve(),
    gone: new Promise<void>(() => {}),
  };
}

/**
 * A sink that spawns the first of `candidates` that exists and pipes the stream into its stdin.
 * The process is killed on abort and awaited on every path.
 *
 * @example
 * ```ts ignore
 * import { playerSink } from "./player.ts";
 * const sink = playerSink([["ffplay", "-autoexit", "-i", "-"]]);
 * ```
 */
export function playerSink(candidates: string[][]): StreamSink {
  const child = spawnFirst(candidates);
  const writer = child.stdin.getWriter();
  let ended = false;
  const gone = child.status.then(() => {});
  const end = async (kill: boolean) => {
    if (ended) return await child.status.then(() => {});
    ended = true;
    await writer.close().catch(() => {});
    if (kill) {
      try {
        child.kill("SIGTERM");
      } catch {
        // Already exited.
      }
    }
    await child.status;
  };
  return {
    write: async (chunk) => {
      try {
        await writer.write(chunk);
      } catch {
        throw new ReelayError("player-closed", "Player closed its input");
      }
    },
    finish: () => end(false),
    abort: () => end(true),
    gone,
  };
}

/**
 * The sink factory for a `--player` choice.
 *
 * @example
 * ```ts
 * import { sinkFactory } from "./player.ts";
 * const make = sinkFactory("none", {});
 * ```
 */
export function sinkFactory(
  choice: string,
  env: { DISPLAY?: string; WAYLAND_DISPLAY?: string },
): SinkFactory {
  const candidates = resolvePlayer(choice, env);
  return () => candidates.length === 0 ? discardSink() : playerSink(candidates);
}

function spawnFirst(candidates: string[][]): Deno.ChildProcess {
  for (const [program, ...args] of candidates) {
    try {
      return new Deno.Command(program, { args, stdin: "piped", stdout: "null", stderr: "inherit" })
        .spawn();
    } catch (error) {
      if (error instanceof Deno.errors.NotCapable) {
        throw new ReelayError(
          "player-not-allowed",
          `Player ${JSON.stringify(program)} is not allowed: reelay may run only ffplay or mpv ` +
            `(with any arguments, e.g. --player "mpv --fs"), or --player none`,
        );
      }
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
  }
  const names = candidates.map(([program]) => JSON.stringify(program)).join(" or ");
  throw new ReelayError(
    "player-missing",
    `Player ${names} was not found: install it (ffplay comes with ffmpeg) or pass --player none`,
  );
}
