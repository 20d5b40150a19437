/**
 * The one schema of reelay's configuration: every key's reader (validation with a message that
 * says what was expected) and default, in one table. The {@linkcode Config} type and
 * {@linkcode DEFAULT_CONFIG} are derived from it, and `config.ini` keys are its field names in
 * snake case (`capToSource` is `cap_to_source`).
 *
 * Ours rather than a schema library's: ini and command-line flags hand over text, every key needs
 * its own "expected ..." wording, and a table of small readers reads in one sitting.
 *
 * @module
 */

import { UsageError } from "../errors.ts";

/**
 * Reads one key's text; `where` names what was read in the error, e.g. `Config key [server] port
 * in config.ini` or `Flag --port`.
 */
export type Reader<T> = (text: string, where: string) => T;

/** One key: how its text is read, and its value when it is not set. */
export interface Key<T> {
  readonly read: Reader<T>;
  readonly default: T;
}

function key<T>(read: Reader<T>, value: T): Key<T> {
  return { read, default: value };
}

function bad(where: string, text: string, expected: string): never {
  throw new UsageError(
    `${where} has value ${JSON.stringify(text)}: expected ${expected}`,
    "bad-config",
  );
}

function intIn(min: number, max: number): Reader<number> {
  return (text, where) => {
    const value = Number(text.trim());
    if (!/^\s*\d+\s*$/.test(text) || value < min || value > max) {
      bad(where, text, `a whole number from ${min} to ${max}`);
    }
    return value;
  };
}

function numberIn(min: number, max: number): Reader<number> {
  return (text, where) => {
    const value = Number(text.trim());
    if (text.trim() === "" || !Number.isFinite(value) || value < min || value > max) {
      bad(where, text, `a number from ${min} to ${max}`);
    }
    return value;
  };
}

/**
 * A TCP port: from 1 (0 too when `listening`, where it picks a free port) to 65535. The one port
 * check: the config file, `--port` and the port of `--server HOST:PORT` all go through it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readPort } from "./schema.ts";
 * assert.equal(readPort({ listening: true })("0", "Flag --port"), 0);
 * assert.throws(() => readPort({ listening: false })("0", "Flag --server"), /from 1 to 65535/);
 * ```
 */
export function readPort(options: { listening: boolean }): Reader<number> {
  return intIn(options.listening ? 0 : 1, 65535);
}

const bool: Reader<boolean> = (text, where) => {
  const value = text.trim().toLowerCase();
  if (["true", "yes", "on", "1"].includes(value)) return true;
  if (["false", "no", "off", "0"].includes(value)) return false;
  return bad(where, text, "true or false");
};

function nonEmpty(max = 4096): Reader<string> {
  return (text, where) => {
    const value = text.trim();
    if (value === "" || value.length > max) {
      bad(where, text, `a non-empty value of at most ${max} characters`);
    }
    return value;
  };
}

const PRESETS = [
  "ultrafast",
  "superfast",
  "veryfast",
  "faster",
  "fast",
  "medium",
  "slow",
  "slower",
  "veryslow",
];

const preset: Reader<string> = (text, where) => {
  const value = text.trim();
  if (!PRESETS.includes(value)) bad(where, text, `one of ${PRESETS.join(", ")}`);
  return value;
};

/**
 * Parses a list of three heights such as `144p, 720p, 1440p` (the `p` is optional).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseHeights } from "./schema.ts";
 * assert.deepEqual(parseHeights("144p,720p,1440p", "[stream] heights"), [144, 720, 1440]);
 * ```
 */
export function parseHeights(text: string, where: string): number[] {
  const parts = text.split(",").map((part) => part.trim().replace(/p$/i, ""));
  const heights = parts.map(Number);
  const valid = heights.length === 3 &&
    heights.every((height, i) => /^\d+$/.test(parts[i]) && height >= 16 && height <= 4320);
  if (!valid) bad(where, text, "three heights from 16 to 4320, such as 144p,720p,1440p");
  return heights;
}

function oneOf(values: readonly string[]): Reader<string> {
  return (text, where) => {
    const value = text.trim().toLowerCase();
    if (!values.includes(value)) bad(where, text, `one of ${values.join(", ")}`);
    return value;
  };
}

/** Empty, or text of at most `max` characters (an optional path or name). */
function optionalText(max = 4096): Reader<string> {
  return (text, where) => {
    const value = text.trim();
    if (value.length > max) bad(where, text, `at most ${max} characters`);
    return value;
  };
}

/** Empty (no cluster), or `nats://HOST:PORT` addresses separated by commas. */
const clusterUrl: Reader<string> = (text, where) => {
  const value = text.trim();
  const parts = value.split(",").map((part) => part.trim());
  if (value !== "" && !parts.every((part) => /^nats:\/\/[^\s/]+$/.test(part))) {
    bad(where, text, "nats://HOST:PORT (several separated by commas), or nothing");
  }
  return value;
};

const nodeId: Reader<string> = (text, where) => {
  const value = text.trim();
  if (!/^[A-Za-z0-9_-]{0,64}$/.test(value)) {
    bad(where, text, "up to 64 letters, digits, _ and -, or nothing for a random id");
  }
  return value;
};

/** Every section and key, with its reader and default. The repository's config.ini lists them. */
export const SCHEMA = {
  server: {
    host: key(nonEmpty(255), "0.0.0.0"),
    port: key(readPort({ listening: true }), 9000),
    videos: key(nonEmpty(), "videos"),
    /** The server's private state: its channel key, and the store (mailbox, prekeys, registry). */
    state: key(nonEmpty(), "state"),
  },
  chat: {
    /** Send every sealed message to every other client too (they see who writes to whom). */
    broadcast: key(bool, true),
  },
  mailbox: {
    /** Messages held for one person, not acknowledged yet (online or not). */
    maxItemsPerRecipient: key(intIn(1, 1_000_000), 1000),
    /** Bytes held for one person, not acknowledged yet. */
    maxBytesPerRecipient: key(intIn(1024, 2 ** 40), 16 * 1024 * 1024),
    /** Bytes held for everyone together. */
    maxTotalBytes: key(intIn(1024, 2 ** 44), 512 * 1024 * 1024),
    /** Bytes of one sender's messages held (by key), so one sender cannot fill the total. */
    maxBytesPerSender: key(intIn(1024, 2 ** 44), 32 * 1024 * 1024),
    /** How long a message is held before it expires and its sender is told. */
    ttlMs: key(intIn(1000, 365 * 24 * 3600 * 1000), 7 * 24 * 3600 * 1000),
  },
  stream: {
    heights: key(parseHeights, [144, 720, 1440]),
    capToSource: key(bool, true),
    preset: key(preset, "veryfast"),
    ffmpeg: key(nonEmpty(), "ffmpeg"),
    ffprobe: key(nonEmpty(), "ffprobe"),
    maxTranscodes: key(intIn(1, 256), 6),
    /** Streams one host may have playing at once (each runs one transcode, two briefly). */
    maxStreamsPerHost: key(intIn(1, 256), 3),
    /** Stream bytes a client lets the server have in flight before it acknowledges them. */
    // At most what a client grants at all (`MAX_WINDOW_BYTES` in client/viewing.ts).
    windowBytes: key(intIn(64 * 1024, 16 * 1024 * 1024), 1024 * 1024),
  },
  limits: {
    maxFrameBytes: key(intIn(64 * 1024, 64 * 1024 * 1024), 1024 * 1024),
    joinTimeoutMs: key(intIn(100, 600_000), 5000),
    maxPending: key(intIn(1, 100_000), 64),
    /** Connections one host may have joining at once; a new one pushes out its oldest. */
    maxPendingPerHost: key(intIn(1, 100_000), 16),
    /** A connection that has sent no byte this long is closed (well before join_timeout_ms). */
    firstByteTimeoutMs: key(intIn(100, 600_000), 3000),
    maxClients: key(intIn(1, 1_000_000), 1000),
    /** People one host (an IPv4 address or an IPv6 /64) may have joined at once. */
    maxClientsPerHost: key(intIn(1, 1_000_000), 100),
    chatRate: key(numberIn(0.1, 1_000_000), 1000),
    chatBurst: key(numberIn(1, 1_000_000), 2000),
    /** Messages one person may receive a second from everyone together, and in one burst. */
    chatInboundRate: key(numberIn(0.1, 1_000_000), 2000),
    chatInboundBurst: key(numberIn(1, 1_000_000), 4000),
    /** Messages one person may receive a second from one sender, and in one burst. */
    chatPairRate: key(numberIn(0.1, 1_000_000), 1000),
    chatPairBurst: key(numberIn(1, 1_000_000), 2000),
    maxQueueBytes: key(intIn(64 * 1024, 4 * 1024 * 1024 * 1024), 8 * 1024 * 1024),
    /** Bytes queued to send over all connections together (chat past it: recipient-busy). */
    maxTotalQueueBytes: key(intIn(1024 * 1024, 64 * 1024 * 1024 * 1024), 128 * 1024 * 1024),
    keepaliveMs: key(intIn(100, 3_600_000), 15_000),
    idleTimeoutMs: key(intIn(200, 7_200_000), 45_000),
  },
  client: {
    /** `HOST:PORT`, or a comma-separated list of one cluster's nodes (`a:9000,b:9000`). */
    server: key(nonEmpty(300), "127.0.0.1:9000"),
    player: key(nonEmpty(), "auto"),
    /** Ring the terminal bell when a message arrives. */
    bell: key(bool, true),
    /** Keep typed commands in the home for Up-arrow and Ctrl-R in later runs. */
    inputHistory: key(bool, true),
    /** Keep messages (encrypted) in the per-server store for /history; false keeps none. */
    history: key(bool, true),
    /** A request the server has not answered in this long fails with request-timeout. */
    requestTimeoutMs: key(intIn(100, 3_600_000), 30_000),
    /** Dial again when the connection is lost (`--no-reconnect`: exit 4 instead). */
    reconnect: key(bool, true),
    /** The first reconnect attempt waits up to this long; each further one up to twice as long. */
    reconnectMinMs: key(intIn(10, 3_600_000), 500),
    /** No reconnect attempt waits longer than this. */
    reconnectMaxMs: key(intIn(10, 3_600_000), 30_000),
    /** Stop reconnecting (exit 5) once the connection has been down this long. */
    reconnectGiveUpMs: key(intIn(0, 30 * 86_400_000), 3_600_000),
  },
  cluster: {
    /** NATS addresses; empty runs a single server, which never loads the NATS client. */
    url: key(clusterUrl, ""),
    /** This node's id in the cluster; empty picks a random one at each start. */
    node: key(nodeId, ""),
    /** NATS user, with the password in `password_file`. */
    user: key(optionalText(256), ""),
    passwordFile: key(optionalText(), ""),
    /** A file holding an nkey seed (`SU...`), instead of user and password. */
    nkeySeedFile: key(optionalText(), ""),
    /** A dead node's people leave everyone's list within this time. */
    presenceTtlMs: key(intIn(300, 600_000), 6000),
    /** Parts a `reelay worker` runs at once (as many as it transcodes in real time). */
    workerSlots: key(intIn(1, 256), 2),
  },
  media: {
    /** The H.264 encoder: `auto` tries VA-API, NVENC, Quick Sync at start, else software. */
    encoder: key(oneOf(["auto", "software", "vaapi", "nvenc", "qsv"]), "auto"),
    /** Keep finished parts in `cache_dir` so the next viewer reads a file, not a new ffmpeg. */
    cache: key(bool, false),
    cacheDir: key(nonEmpty(), "chunks"),
    cacheMaxBytes: key(intIn(1024 * 1024, 2 ** 50), 10 * 1024 ** 3),
    cacheMaxAgeMs: key(intIn(1000, 10 * 365 * 86_400_000), 7 * 86_400_000),
    /** Bytes of a shared part kept for viewers who join late or read slower than others. */
    shareBufferBytes: key(intIn(1024 * 1024, 4 * 1024 ** 3), 32 * 1024 * 1024),
    /** A paused stream's ffmpeg is stopped at once and ended after this long. */
    pauseGraceMs: key(intIn(0, 3_600_000), 10_000),
  },
};

type Schema = typeof SCHEMA;

/** The name of a config section. */
export type Section = keyof Schema;

/** The whole validated configuration, typed from {@linkcode SCHEMA}. */
export type Config = {
  -readonly [S in Section]: {
    -readonly [K in keyof Schema[S]]: Schema[S][K] extends Key<infer T> ? T : never;
  };
};

/**
 * The ini name of a field: `capToSource` is `cap_to_source`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { iniKey } from "./schema.ts";
 * assert.equal(iniKey("maxFrameBytes"), "max_frame_bytes");
 * ```
 */
export function iniKey(field: string): string {
  return field.replace(/[A-Z]/g, (letter) => `_${letter.toLowerCase()}`);
}

/** The keys of a section as `[ini name, field, key]`. */
export function keysOf(section: Section): [string, string, Key<unknown>][] {
  return Object.entries(SCHEMA[section] as Record<string, Key<unknown>>)
    .map(([field, entry]) => [iniKey(field), field, entry]);
}

function defaults(): Config {
  const config: Record<string, Record<string, unknown>> = {};
  for (const section of Object.keys(SCHEMA) as Section[]) {
    config[section] = {};
    for (const [, field, entry] of keysOf(section)) {
      config[section][field] = structuredClone(entry.default);
    }
  }
  return config as Config;
}

/**
 * The built-in defaults, also written out in the repository's `config.ini`. Frozen: copy it
 * with `structuredClone` (or {@linkcode defaultConfig}) to change a value.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { DEFAULT_CONFIG } from "./schema.ts";
 * assert.equal(DEFAULT_CONFIG.server.port, 9000);
 * assert.equal(DEFAULT_CONFIG.stream.capToSource, true);
 * ```
 */
export const DEFAULT_CONFIG: Readonly<Config> = Object.freeze(defaults());

/**
 * A fresh, changeable copy of the defaults.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { defaultConfig } from "./schema.ts";
 * const config = defaultConfig();
 * config.server.port = 0;
 * assert.equal(defaultConfig().server.port, 9000);
 * ```
 */
export function defaultConfig(): Config {
  return defaults();
}
