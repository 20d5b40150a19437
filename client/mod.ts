/**
 * The client's public face: {@linkcode openSession} and {@linkcode ClientSession} for programs
 * and tests, and {@linkcode runClient} for `reelay client`.
 *
 * Where things are: the connection, requests and keepalive are `session.ts`; the directory copy,
 * pinned keys and trust `peers.ts` (pins on disk: `keystore.ts`); sealing and opening `chat.ts`;
 * video `viewing.ts` and `player.ts`; the terminal and `--json` output `tui/`.
 *
 * @module
 */

import {
  applyFlags,
  type Config,
  DEFAULT_CONFIG,
  loadConfig,
  parseServerList,
} from "../shared/config/mod.ts";
import { EXIT_FAILURE, ReelayError, UsageError } from "../shared/errors.ts";
import { printError, writeAllSync } from "../shared/io.ts";
import { nameProblem } from "../shared/names.ts";
import { loadOrCreateIdentity, resolveHome } from "./keystore.ts";
import { sinkFactory } from "./player.ts";
import { AddressRing } from "./failover.ts";
import { type Address, DEFAULT_RECONNECT, type ReconnectPolicy } from "./reconnect.ts";
import { knownServers } from "./server_trust.ts";
import { ClientSession, type SessionOptions } from "./session.ts";
import { openServerStore } from "./server_store.ts";
import { runClientApp } from "./tui/app.ts";
import { storedIgnoreList } from "./tui/ignore.ts";
import { InputHistoryFile } from "./tui/input_history_file.ts";
import { askName, loadSavedName, loginName, readStdinLine, saveName } from "./tui/name_prompt.ts";
import { isInteractive } from "./tui/terminal.ts";
import { JsonEventWriter } from "./tui/json.ts";

export { ClientSession, type SessionOptions } from "./session.ts";
export { DEFAULT_RECONNECT, type ReconnectPolicy, type SessionEnd } from "./reconnect.ts";
export type { ClientEvent, PeerView } from "./events.ts";
export { discardSink, type SinkFactory, sinkFactory, type StreamSink } from "./player.ts";
export { HELP_TEXT } from "./tui/commands.ts";
export { formatWait } from "./tui/format.ts";
export { KNOWN_SERVERS_FILE, knownServers, type ServerKeyStatus } from "./server_trust.ts";

/** Flags of `reelay client`. */
export interface ClientFlags {
  server?: string;
  name?: string;
  home?: string;
  json?: boolean;
  /** `false` with `--no-history`: no message is kept in this run. */
  history?: boolean;
  player?: string;
  /** A server key fingerprint to accept in place of the pinned one. */
  acceptServerKey?: string;
  /** `--no-reconnect` sets it false: a lost connection exits 4 instead of dialing again. */
  reconnect?: boolean;
  config: string;
  configGiven: boolean;
}

/** Where to connect, as whom, and where that person's keys live. */
export interface OpenOptions extends Omit<SessionOptions, "identity" | "openStore" | "serverPins"> {
  /**
   * The home folder holding `identity.json`, `known_servers.json` and, per server key,
   * `servers/<key>/client.db`.
   */
  home: string;
  /** `false`: keep no message history (`--no-history`). Default true. */
  keepHistory?: boolean;
  /**
   * Other addresses of the same server (cluster nodes sharing its key, `docs/cluster.md`):
   * tried in turn when the first does not answer, and by the reconnect after a loss (see
   * `failover.ts`).
   */
  fallbacks?: Address[];
}

/**
 * Loads (or on first use creates) the identity in `home` and joins the server with it.
 *
 * @example
 * ```ts ignore
 * import { openSession } from "./mod.ts";
 * const session = await openSession({ hostname: "127.0.0.1", port: 9000, name: "alice", home: "/tmp/alice" });
 * await session.send("bob", "hello");
 * await session.quit();
 * ```
 */
export async function openSession(options: OpenOptions): Promise<ClientSession> {
  const { home, keepHistory, fallbacks = [], ...rest } = options;
  const { identity } = await loadOrCreateIdentity(home);
  const ring = new AddressRing([{ hostname: rest.hostname, port: rest.port }, ...fallbacks]);
  const reconnect = rest.reconnect && fallbacks.length > 0
    ? { ...rest.reconnect, address: () => ring.next() }
    : rest.reconnect;
  return await ring.connect((address) =>
    ClientSession.connect({
      ...rest,
      ...address,
      reconnect,
      identity,
      openStore: (server) => openServerStore({ home, identity, server, keepHistory }),
      serverPins: knownServers(home),
    })
  );
}

/**
 * The name to join as without `--name`: the one kept in the home; else, for a person at a
 * terminal, the answer to "Enter your name" (then kept); else (scripts) the login name.
 */
async function chooseName(home: string, json: boolean): Promise<string> {
  const saved = await loadSavedName(home);
  if (saved) return saved;
  const login = loginName(Deno.env.toObject());
  if (!json && isInteractive()) {
    const name = await askName(login, {
      readLine: readStdinLine,
      write: (text) => writeAllSync(Deno.stdout, new TextEncoder().encode(text)),
    });
    await saveName(home, name);
    return name;
  }
  if (!login) throw new UsageError("No name given: pass --name NAME");
  return login;
}

/**
 * `reelay client`: joins, runs the interactive or scripted command loop, returns the exit code.
 *
 * @example
 * ```ts ignore
 * import { runClient } from "./mod.ts";
 * Deno.exit(await runClient({ name: "alice", config: "config.ini", configGiven: false }));
 * ```
 */
export async function runClient(flags: ClientFlags): Promise<number> {
  const config = applyFlags(
    await loadConfig(flags.config, { explicit: flags.configGiven }),
    {
      client: {
        server: flags.server,
        player: flags.player,
        reconnect: flags.reconnect === false ? "false" : undefined,
      },
    },
  );
  const [address, ...fallbacks] = parseServerList(config.client.server, DEFAULT_CONFIG.server.port);
  const home = resolveHome({ home: flags.home, env: Deno.env });
  const name = flags.name ?? await chooseName(home, flags.json ?? false);
  const problem = nameProblem(name);
  if (problem) throw new UsageError(problem, "bad-name");
  const sinks = sinkFactory(config.client.player, {
    DISPLAY: Deno.env.get("DISPLAY"),
    WAYLAND_DISPLAY: Deno.env.get("WAYLAND_DISPLAY"),
  });
  let session: ClientSession;
  try {
    session = await openSession({
      ...address,
      fallbacks,
      name,
      home,
      sinks,
      acceptServerKey: flags.acceptServerKey,
      requestTimeoutMs: config.client.requestTimeoutMs,
      reconnect: config.client.reconnect ? reconnectPolicy(config.client) : undefined,
      keepHistory: flags.history !== false && config.client.history,
    });
  } catch (error) {
    if (!(error instanceof ReelayError) || error instanceof UsageError) throw error;
    await reportFatal(error, flags.json ?? false);
    return EXIT_FAILURE;
  }
  return await runClientApp({
    session,
    json: flags.json ?? false,
    ignore: storedIgnoreList(session.store),
    bell: config.client.bell,
    inputHistory: new InputHistoryFile(home),
    history: session.store,
    keepInputHistory: config.client.inputHistory,
    noReconnect: !config.client.reconnect,
  });
}

/** The reconnect policy `[client]` asks for. */
function reconnectPolicy(client: Config["client"]): ReconnectPolicy {
  return {
    ...DEFAULT_RECONNECT,
    minDelayMs: client.reconnectMinMs,
    maxDelayMs: client.reconnectMaxMs,
    giveUpMs: client.reconnectGiveUpMs,
  };
}

async function reportFatal(error: ReelayError, json: boolean): Promise<void> {
  if (json) {
    const writer = new JsonEventWriter();
    writer.write({ event: "error", code: error.code, message: error.message });
    await writer.flush().catch(() => {});
  }
  await printError(`reelay: ${error.message}`);
}
