/**
 * reelay's configuration: one schema ({@linkcode SCHEMA}) gives the defaults, the validation and
 * the {@linkcode Config} type; `config.ini` is read over the defaults ({@linkcode loadConfig}),
 * then command-line flags over the file ({@linkcode applyFlags}), each through the same readers.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { applyFlags, configFromIni } from "./mod.ts";
 * const config = applyFlags(configFromIni("[server]\nport = 9100\n", "config.ini"), {
 *   server: { port: "9200" },
 * });
 * assert.equal(config.server.port, 9200);
 * ```
 *
 * @module
 */

import { UsageError } from "../errors.ts";
import { checkConsistency } from "./ini.ts";
import { type Config, iniKey, readPort, SCHEMA, type Section } from "./schema.ts";

export { checkConsistency, configFromIni, loadConfig } from "./ini.ts";
export {
  type Config,
  DEFAULT_CONFIG,
  defaultConfig,
  parseHeights,
  readPort,
  SCHEMA,
  type Section,
} from "./schema.ts";

/** Flag values by section and field: the text given on the command line, or undefined. */
export type Flags = {
  [S in Section]?: { [K in keyof Config[S]]?: string };
};

/**
 * Applies command-line flags over a config, each read by its key's reader (so `--port` is
 * checked exactly as `[server] port` is), then checks the result as a whole. The one place
 * flags meet the config. Errors name the flag, e.g. `--port`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { applyFlags, defaultConfig } from "./mod.ts";
 * assert.equal(applyFlags(defaultConfig(), { server: { videos: "films" } }).server.videos, "films");
 * assert.throws(() => applyFlags(defaultConfig(), { server: { port: "x" } }), /--port/);
 * ```
 */
export function applyFlags(config: Config, flags: Flags): Config {
  for (const [section, values] of Object.entries(flags) as [Section, Record<string, string>][]) {
    const keys = SCHEMA[section] as Record<
      string,
      { read: (text: string, where: string) => unknown }
    >;
    const target = config[section] as Record<string, unknown>;
    for (const [field, text] of Object.entries(values ?? {})) {
      if (text === undefined) continue;
      const where = `Flag --${iniKey(field).replaceAll("_", "-")}`;
      target[field] = keys[field].read(text, where);
    }
  }
  checkConsistency(config, "the flags");
  return config;
}

/**
 * Splits a comma-separated list of server addresses (`a:9000,b:9000`: the nodes of one
 * cluster), each as {@linkcode parseHostPort} reads it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseServerList } from "./mod.ts";
 * assert.deepEqual(parseServerList("a:9100, b", 9000), [
 *   { hostname: "a", port: 9100 },
 *   { hostname: "b", port: 9000 },
 * ]);
 * assert.throws(() => parseServerList("a:9000,,b", 9000), /not HOST:PORT/);
 * ```
 */
export function parseServerList(
  text: string,
  defaultPort: number,
): { hostname: string; port: number }[] {
  return text.split(",").map((each) => parseHostPort(each.trim(), defaultPort));
}

/**
 * Splits `HOST:PORT` (IPv6 as `[::1]:9000`); a bare host gets `defaultPort`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseHostPort } from "./mod.ts";
 * assert.deepEqual(parseHostPort("10.0.0.2:9100", 9000), { hostname: "10.0.0.2", port: 9100 });
 * assert.deepEqual(parseHostPort("[::1]", 9000), { hostname: "::1", port: 9000 });
 * ```
 */
export function parseHostPort(
  text: string,
  defaultPort: number,
): { hostname: string; port: number } {
  const match = /^\[([^\]]+)\](?::([^:]*))?$/.exec(text) ?? /^([^:]+)(?::([^:]*))?$/.exec(text);
  if (!match || !match[1]) {
    throw new UsageError(`Server address ${JSON.stringify(text)} is not HOST:PORT`);
  }
  const port = match[2] === undefined
    ? defaultPort
    : readPort({ listening: false })(match[2], `Port of server address ${JSON.stringify(text)}`);
  return { hostname: match[1], port };
}
