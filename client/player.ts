/**
 * Where a received stream goes: a player process reading it on stdin (ffplay or mpv in a
 * window), or nowhere (`none`, which still lets the session report progress). The client never
 * writes the stream to a file by itself.
 *
 * @module
 */

import { ReelayError, UsageError } from "../shared/errors.ts";
import { StderrTail, terminate } from "../shared/process.ts";

/** Receives one stream's bytes in order. */
export interface StreamSink {
  /** Resolves once the bytes are handed on (this is what paces the server). */
  write(chunk: Uint8Array): Promise<void>;
  /** The stream is complete: let the player finish playing, then end it. */
  finish(): Promise<void>;
  /** Stop now: end the player at once. Idempotent. */
  abort(): Promise<void>;
  /** Resolves if the player goes away on its own (window closed, or it failed). */
  readonly gone: Promise<void>;
  /** Why the player failed, once it has (its last lines of error output). */
  readonly failure?: string;
  /**
   * True for a player that shows the stream in real time from its first bytes: what it shows
   * is then known from the time since those bytes, and a resolution change is reported when the
   * picture changes, not when the bytes arrive.
   */
  readonly realtime?: boolean;
}

/**
 * The window a player opens: the largest part's size, scaled down to fit the screen.
 *
 * @example
 * ```ts
 * import type { WindowSize } from "./player.ts";
 * const hd: WindowSize = { width: 1920, height: 1080 };
 * ```
 */
export interface WindowSize {
  /** Width in pixels. */
  width: number;
  /** Height in pixels. */
  height: number;
}

/**
 * The screen a window must fit when the player cannot tell (ffplay sizes its window as told):
 * a terminal program has no portable way to ask the display, and 1920x1080 fits nearly every
 * screen. mpv is told to fit the real screen itself (`--autofit-larger`).
 */
const SCREEN: WindowSize = { width: 1920, height: 1080 };

/**
 * The window for a video whose parts have `sizes`: the largest, scaled down (keeping its aspect
 * ratio, even numbers) to fit within `screen`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { windowFor } from "./player.ts";
 * assert.deepEqual(windowFor([{ width: 256, height: 144 }, { width: 2560, height: 1440 }]), {
 *   width: 1920, height: 1080,
 * });
 * assert.deepEqual(windowFor([{ width: 640, height: 360 }]), { width: 640, height: 360 });
 * ```
 */
export function windowFor(sizes: readonly WindowSize[], screen: WindowSize = SCREEN): WindowSize {
  const largest = sizes.reduce(
    (best, size) => size.width * size.height > best.width * best.height ? size : best,
    { width: 2, height: 2 },
  );
  const scale = Math.min(1, screen.width / largest.width, screen.height / largest.height);
  const even = (value: number) => Math.max(2, Math.floor(value * scale / 2) * 2);
  return { width: even(largest.width), height: even(largest.height) };
}

/** Makes a sink for a video, given its name and the window its largest part needs. */
export type SinkFactory = (video: string, window?: WindowSize) => StreamSink;

/** A known player: options before the user's own, then how it reads stdin. */
interface KnownPlayer {
  options: string[];
  stdin: string[];
}

const KNOWN_PLAYERS: Record<string, KnownPlayer> = {
  // A fixed window (the largest part's size, see windowFor): ffplay would otherwise keep the
  // size of the first third (144p) all along.
  ffplay: {
    options: ["-hide_banner", "-loglevel", "error", "-autoexit", "-window_title", "reelay"],
    stdin: ["-x", "1280", "-y", "720", "-i", "-"],
  },
  mpv: {
    options: ["--really-quiet", "--force-window=yes", "--title=reelay", "--autofit-larger=90%x90%"],
    stdin: ["-"],
  },
};

/** The command with its window set to `window` (ffplay's `-x`/`-y`, mpv's `--geometry`). */
function sized(command: string[], window: WindowSize | undefined): string[] {
  if (!window) return command;
  const { width, height } = window;
  if (command[0] === "ffplay") {
    const at = command.lastIndexOf("-x");
    if (at < 0 || command[at + 2] !== "-y") return command;
    return [
      ...command.slice(0, at),
      "-x",
      String(width),
      "-y",
      String(height),
      ...command.slice(at + 4),
    ];
  }
  if (command[0] === "mpv") {
    return [command[0], `--geometry=${width}x${height}`, ...command.slice(1)];
  }
  return command;
}

/** How long a player may take to exit after SIGTERM before it is killed. */
const KILL_GRACE_MS = 2000;
/** How much of a player's error output is kept to explain a failure. */
const STDERR_TAIL_BYTES = 2000;

/**
 * The player commands to try, in order, for a `--player` choice: `auto` means ffplay in a window
 * (or mpv when ffplay is missing) when a display is available, and nothing otherwise; `none`
 * means nothing. `ffplay` and `mpv` get the options to read stdin around any options given
 * (`--player "mpv --fs"`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { resolvePlayer } from "./player.ts";
 * assert.deepEqual(resolvePlayer("none", {}), []);
 * const [mpv] = resolvePlayer("mpv --fs", {});
 * assert.deepEqual([mpv[0], ...mpv.slice(-2)], ["mpv", "--fs", "-"]);
 * ```
 */
export function resolvePlayer(
  choice: string,
  env: { DISPLAY?: string; WAYLAND_DISPLAY?: string },
): string[][] {
  const [program, ...extra] = choice.trim().split(/\s+/).filter((word) => word !== "");
  if (program === undefined) throw new UsageError(`Player ${JSON.stringify(choice)} is empty`);
  if (program === "none" && extra.length === 0) return [];
  if (program === "auto" && extra.length === 0) {
    const hasDisplay = Deno.build.os !== "linux" || Boolean(env.DISPLAY || env.WAYLAND_DISPLAY);
    return hasDisplay ? Object.keys(KNOWN_PLAYERS).map((name) => withStdin(name, [])) : [];
  }
  return [withStdin(program, extra)];
}

function withStdin(program: string, extra: string[]): string[] {
  const known = KNOWN_PLAYERS[program];
  return known ? [program, ...known.options, ...extra, ...known.stdin] : [program, ...extra];
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
 * Its error output is kept (not printed over the prompt) to explain a failure. The process is
 * ended on abort (SIGTERM, then SIGKILL if it lingers) and awaited on every path.
 *
 * @example
 * ```ts ignore
 * import { playerSink } from "./player.ts";
 * const sink = playerSink([["ffplay", "-autoexit", "-i", "-"]]);
 * ```
 */
export function playerSink(candidates: string[][], window?: WindowSize): StreamSink {
  const child = spawnFirst(candidates.map((command) => sized(command, window)));
  const writer = child.stdin.getWriter();
  const stderr = new StderrTail(STDERR_TAIL_BYTES);
  const drained = stderr.drain(child.stderr);
  const exited = Promise.all([child.status, drained]).then(([status]) => status);
  let ending: Promise<void> | undefined;
  let failure: string | undefined;
  const sink: StreamSink = {
    write: async (chunk) => {
      try {
        await writer.write(chunk);
      } catch {
        throw new ReelayError("player-closed", "Player closed its input");
      }
    },
    finish: () => ending ??= finishPlaying(),
    abort: () => {
      // Kill first: closing the input would wait for a player that stopped reading.
      void terminate(child, exited, KILL_GRACE_MS);
      void writer.abort().catch(() => {});
      return ending ??= exited.then(() => {});
    },
    realtime: true,
    gone: exited.then((status) => {
      if (!status.success && !ending) failure = lastLines(stderr) || `exit code ${status.code}`;
    }),
    get failure() {
      return failure;
    },
  };
  async function finishPlaying(): Promise<void> {
    await writer.close().catch(() => {});
    await exited;
  }
  return sink;
}

/** The player's last few error lines, without the sound-device noise of a machine without one. */
function lastLines(tail: StderrTail): string {
  return tail.lastLines(12).split("\n").filter((line) => !line.startsWith("ALSA lib")).slice(-3)
    .join("; ");
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
  return (_video, window) =>
    candidates.length === 0 ? discardSink() : playerSink(candidates, window);
}

function spawnFirst(candidates: string[][]): Deno.ChildProcess {
  for (const [program, ...args] of candidates) {
    try {
      return new Deno.Command(program, { args, stdin: "piped", stdout: "null", stderr: "piped" })
        .spawn();
    } catch (error) {
      if (error instanceof Deno.errors.NotCapable) {
        throw new ReelayError(
          "player-not-allowed",
          `Player ${JSON.stringify(program)} is not allowed: reelay may run only ffplay or mpv ` +
            `(with options of your own, e.g. --player "mpv --fs"), or --player none`,
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
