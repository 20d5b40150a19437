/**
 * `config.ini` read with `npm:ini` and checked against the one {@linkcode SCHEMA}.
 *
 * ini hands back strings in null-prototype objects; every value goes through its key's reader,
 * and a bad one is a {@linkcode UsageError} naming the key and the file. Unknown sections and
 * keys are errors too, so a typo never silently falls back to a default.
 *
 * @module
 */

import ini from "ini";
import { UsageError } from "../errors.ts";
import { type Config, defaultConfig, keysOf, SCHEMA, type Section } from "./schema.ts";

function configError(message: string): UsageError {
  return new UsageError(message, "bad-config");
}

function sectionNames(): string {
  return Object.keys(SCHEMA).join(", ");
}

function isSection(name: string): name is Section {
  return Object.hasOwn(SCHEMA, name);
}

/**
 * Validates the text of an ini file over the defaults. `file` names the source in errors.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { configFromIni } from "./ini.ts";
 * const config = configFromIni("[server]\nport = 9100\n", "config.ini");
 * assert.equal(config.server.port, 9100);
 * assert.throws(() => configFromIni("[server]\nprot = 1\n", "config.ini"), /unknown key prot/);
 * ```
 */
export function configFromIni(text: string, file: string): Config {
  checkSectionHeaders(text, file);
  const parsed: Record<string, unknown> = ini.parse(text);
  const config = defaultConfig();
  for (const [section, entries] of Object.entries(parsed)) {
    if (typeof entries !== "object" || entries === null || Array.isArray(entries)) {
      throw configError(
        `Config file ${file} has the key ${section} outside any section: put it under one of ${
          Object.keys(SCHEMA).map((name) => `[${name}]`).join(", ")
        }`,
      );
    }
    if (!isSection(section)) {
      throw configError(
        `Config file ${file} has an unknown section [${section}] (known: ${sectionNames()})`,
      );
    }
    readSection(config, section, entries as Record<string, unknown>, file);
  }
  checkConsistency(config, file);
  return config;
}

function readSection(
  config: Config,
  section: Section,
  entries: Record<string, unknown>,
  file: string,
): void {
  const keys = new Map(keysOf(section).map(([name, field, entry]) => [name, { field, entry }]));
  const target = config[section] as Record<string, unknown>;
  for (const [name, raw] of Object.entries(entries)) {
    const known = keys.get(name);
    if (!known) {
      throw configError(
        `Config file ${file} has an unknown key ${name} in [${section}] (known: ${
          [...keys.keys()].join(", ")
        })`,
      );
    }
    const where = `Config key [${section}] ${name} in ${file}`;
    // ini turns bare true/false into booleans; everything else arrives as a string.
    const text = typeof raw === "boolean" ? String(raw) : raw;
    if (typeof text !== "string") {
      throw configError(
        `Config key ${where} has value ${JSON.stringify(String(raw))}: ` +
          "expected a single value",
      );
    }
    target[known.field] = known.entry.read(text, where);
  }
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
      if (!isSection(section)) {
        throw configError(
          `Config file ${file} has an unknown section [${header[1]}] (known: ${sectionNames()})`,
        );
      }
      continue;
    }
    // ini keeps only the last of two equal keys: a repeated key is almost always a mistake.
    const key = /^\s*([^=;#\s][^=]*?)\s*=/.exec(line)?.[1];
    if (key === undefined) continue;
    const where = `[${section}] ${key}`;
    if (seen.has(where)) throw configError(`Config key ${where} in ${file} is set twice`);
    seen.add(where);
  }
}

/**
 * Checks what no single key can: keys that must agree with each other. Run after the file and
 * again after command-line flags.
 */
export function checkConsistency(config: Config, file: string): void {
  if (config.limits.idleTimeoutMs <= config.limits.keepaliveMs) {
    throw configError(
      `Config key [limits] idle_timeout_ms in ${file} must be larger than keepalive_ms`,
    );
  }
  if (config.limits.maxQueueBytes < config.limits.maxFrameBytes) {
    throw configError(
      `Config key [limits] max_queue_bytes in ${file} must be at least max_frame_bytes ` +
        `(${config.limits.maxFrameBytes}), or one large message would cut its reader off`,
    );
  }
  if (config.client.reconnectMaxMs < config.client.reconnectMinMs) {
    throw configError(
      `Config key [client] reconnect_max_ms in ${file} must be at least reconnect_min_ms`,
    );
  }
}

/**
 * Reads a config file. A missing file is fine when it is the default `config.ini` (the built-in
 * defaults apply) and a usage error when the user named it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadConfig } from "./ini.ts";
 * const config = await loadConfig("no-such-config.ini", { explicit: false });
 * assert.equal(config.server.port, 9000);
 * ```
 */
export async function loadConfig(path: string, options: { explicit: boolean }): Promise<Config> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound && !options.explicit) return defaultConfig();
    throw configError(`Config file ${JSON.stringify(path)} cannot be read: ${String(error)}`);
  }
  return configFromIni(text, path);
}
