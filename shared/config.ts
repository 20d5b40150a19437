/**
 * `config.ini` read with `npm:ini` and checked into one typed {@linkcode Config}.
 *
 * ini hands back strings in null-prototype objects; every value is validated here, and a bad one
 * is a {@linkcode UsageError} naming the key and the file. Unknown sections and keys are errors
 * too, so a typo never silently falls back to a default.
 *
 * @module
 */

import ini from "ini";
import { UsageError } from "./errors.ts";

/** Where the server listens and what it serves. */
export interface ServerSection {
  host: string;
  port: number;
  videos: string;
}

/** How videos are transcoded and streamed. */
export interface StreamSection {
  /** The three heights, in play order. */
  heights: number[];
  capToSource: boolean;
  preset: string;
  ffmpeg: string;
  ffprobe: string;
  maxTranscodes: number;
  /** Stream bytes a client lets the server have in flight before it acknowledges them. */
  windowBytes: number;
}

/** What the server lets any one connection do. */
export interface LimitsSection {
  maxFrameBytes: number;
  joinTimeoutMs: number;
  maxPending: number;
  maxClients: number;
  chatRate: number;
  chatBurst: number;
  maxQueueBytes: number;
  keepaliveMs: number;
  idleTimeoutMs: number;
}

/** Client defaults. */
export interface ClientSection {
  server: string;
  player: string;
}

/** The whole validated configuration. */
export interface Config {
  server: ServerSection;
  stream: StreamSection;
  limits: LimitsSection;
  client: ClientSection;
}

/** The built-in defaults, also written out in the repository's `config.ini`. */
export const DEFAULT_CONFIG: Readonly<Config> = Object.freeze({
  server: { host: "0.0.0.0", port: 9000, videos: "videos" },
  stream: {
    heights: [144, 720, 1440],
    capToSource: true,
    preset: "veryfast",
    ffmpeg: "ffmpeg",
    ffprobe: "ffprobe",
    maxTranscodes: 6,
    windowBytes: 1024 * 1024,
  },
  limits: {
    maxFrameBytes: 1024 * 1024,
    joinTimeoutMs: 5000,
    maxPending: 64,
    maxClients: 1000,
    chatRate: 1000,
    chatBurst: 2000,
    maxQueueBytes: 8 * 1024 * 1024,
    keepaliveMs: 15_000,
    idleTimeoutMs: 45_000,
  },
  client: { server: "127.0.0.1:9000", player: "auto" },
});

type Reader<T> = (text: string, where: string) => T;

function bad(where: string, text: string, expected: string): never {
  throw new UsageError(
    `Config key ${where} has value ${JSON.stringify(text)}: expected ${expected}`,
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
 * import { parseHeights } from "./config.ts";
 * parseHeights("144p,720p,1440p", "[stream] heights"); // [144, 720, 1440]
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

const SCHEMA = {
  server: {
    host: ["host", nonEmpty(255)],
    port: ["port", intIn(0, 65535)],
    videos: ["videos", nonEmpty()],
  },
  stream: {
    heights: ["heights", parseHeights],
    cap_to_source: ["capToSource", bool],
    preset: ["preset", preset],
    ffmpeg: ["ffmpeg", nonEmpty()],
    ffprobe: ["ffprobe", nonEmpty()],
    max_transcodes: ["maxTranscodes", intIn(1, 256)],
    window_bytes: ["windowBytes", intIn(64 * 1024, 256 * 1024 * 1024)],
  },
  limits: {
    max_frame_bytes: ["maxFrameBytes", intIn(64 * 1024, 64 * 1024 * 1024)],
    join_timeout_ms: ["joinTimeoutMs", intIn(100, 600_000)],
    max_pending: ["maxPending", intIn(1, 100_000)],
    max_clients: ["maxClients", intIn(1, 1_000_000)],
    chat_rate: ["chatRate", numberIn(0.1, 1_000_000)],
    chat_burst: ["chatBurst", numberIn(1, 1_000_000)],
    max_queue_bytes: ["maxQueueBytes", intIn(64 * 1024, 4 * 1024 * 1024 * 1024)],
    keepalive_ms: ["keepaliveMs", intIn(100, 3_600_000)],
    idle_timeout_ms: ["idleTimeoutMs", intIn(200, 7_200_000)],
  },
  client: {
    server: ["server", nonEmpty(300)],
    player: ["player", nonEmpty()],
  },
} as const satisfies Record<keyof Config, Record<string, readonly [string, Reader<unknown>]>>;

/**
 * Validates parsed ini sections over the defaults. `file` names the source in errors.
 *
 * @example
 * ```ts
 * import { configFromIni } from "./config.ts";
 * const config = configFromIni("[server]\nport = 9100\n", "config.ini");
 * config.server.port; // 9100
 * ```
 */
export function configFromIni(text: string, file: string): Config {
  checkSectionHeaders(text, file);
  const parsed: Record<string, unknown> = ini.parse(text);
  const config = structuredClone(DEFAULT_CONFIG) as Config;
  for (const [section, entries] of Object.entries(parsed)) {
    if (typeof entries !== "object" || entries === null || Array.isArray(entries)) {
      throw new UsageError(
        `Config file ${file} has the key ${section} outside any section: put it under one of ${
          Object.keys(SCHEMA).map((name) => `[${name}]`).join(", ")
        }`,
        "bad-config",
      );
    }
    if (!Object.hasOwn(SCHEMA, section)) {
      throw new UsageError(
        `Config file ${file} has an unknown section [${section}] (known: ${
          Object.keys(SCHEMA).join(", ")
        })`,
        "bad-config",
      );
    }
    const schema: Record<string, readonly [string, Reader<unknown>]> =
      SCHEMA[section as keyof Config];
    const target = config[section as keyof Config] as unknown as Record<string, unknown>;
    for (const [key, raw] of Object.entries(entries as Record<string, unknown>)) {
      const where = `[${section}] ${key} in ${file}`;
      if (!Object.hasOwn(schema, key)) {
        throw new UsageError(
          `Config file ${file} has an unknown key ${key} in [${section}] (known: ${
            Object.keys(schema).join(", ")
          })`,
          "bad-config",
        );
      }
      // ini turns bare true/false into booleans; everything else arrives as a string.
      const text = typeof raw === "boolean" ? String(raw) : raw;
      if (typeof text !== "string") bad(where, String(raw), "a single value");
      const [field, read] = schema[key];
      target[field] = read(text, where);
    }
  }
  checkConsistency(config, file);
  return config;
}

/**
 * ini silently drops some sections (`[__proto__]`) and nests dotted ones; every header is
 * checked against the known sections first, so none is ever ignored.
 */
function checkSectionHeaders(text: string, file: string): void {
  let section = "";
  const seen = new Set<string>();
  for (const line of text.split(/\r?\n/)) {
    const header = /^\s*\[(.*)\]\s*(?:[;#].*)?$/.exec(line);
    if (header) {
      section = header[1].trim();
      if (!Object.hasOwn(SCHEMA, section)) {
        throw new UsageError(
          `Config file ${file} has an unknown section [${header[1]}] (known: ${
            Object.keys(SCHEMA).join(", ")
          })`,
          "bad-config",
        );
      }
      continue;
    }
    // ini keeps only the last of two equal keys: a repeated key is almost always a mistake.
    const key = /^\s*([^=;#\s][^=]*?)\s*=/.exec(line)?.[1];
    if (key === undefined) continue;
    const where = `[${section}] ${key}`;
    if (seen.has(where)) {
      throw new UsageError(`Config key ${where} in ${file} is set twice`, "bad-config");
    }
    seen.add(where);
  }
}

function checkConsistency(config: Config, file: string): void {
  if (config.limits.idleTimeoutMs <= config.limits.keepaliveMs) {
    throw new UsageError(
      `Config key [limits] idle_timeout_ms in ${file} must be larger than keepalive_ms`,
      "bad-config",
    );
  }
  if (config.limits.maxQueueBytes < config.limits.maxFrameBytes) {
    throw new UsageError(
      `Config key [limits] max_queue_bytes in ${file} must be at least max_frame_bytes ` +
        `(${config.limits.maxFrameBytes}), or one large message would cut its reader off`,
      "bad-config",
    );
  }
}

/**
 * Reads a config file. A missing file is fine when it is the default `config.ini` (the built-in
 * defaults apply) and a usage error when the user named it.
 *
 * @example
 * ```ts ignore
 * import { loadConfig } from "./config.ts";
 * const config = await loadConfig("config.ini", { explicit: false });
 * ```
 */
export async function loadConfig(path: string, options: { explicit: boolean }): Promise<Config> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound && !options.explicit) {
      return structuredClone(DEFAULT_CONFIG) as Config;
    }
    throw new UsageError(
      `Config file ${JSON.stringify(path)} cannot be read: ${String(error)}`,
      "bad-config",
    );
  }
  return configFromIni(text, path);
}

/**
 * Splits `HOST:PORT` (IPv6 as `[::1]:9000`); a bare host gets `defaultPort`.
 *
 * @example
 * ```ts
 * import { parseHostPort } from "./config.ts";
 * parseHostPort("10.0.0.2:9100", 9000); // { hostname: "10.0.0.2", port: 9100 }
 * ```
 */
export function parseHostPort(
  text: string,
  defaultPort: number,
): { hostname: string; port: number } {
  const match = /^\[([^\]]+)\](?::(\d+))?$/.exec(text) ?? /^([^:]+)(?::(\d+))?$/.exec(text);
  const port = match?.[2] === undefined ? defaultPort : Number(match[2]);
  if (!match || !match[1] || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new UsageError(`Server address ${JSON.stringify(text)} is not HOST:PORT`);
  }
  return { hostname: match[1], port };
}
