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

import { applyFlags, DEFAULT_CONFIG, loadConfig, parseHostPort } from "../shared/config/mod.ts";
import { EXIT_FAILURE, ReelayError, UsageError } from "../shared/errors.ts";
import { printError } from "../shared/io.ts";
import { MAX_NAME_LENGTH, nameProblem } from "../shared/names.ts";
import { loadOrCreateIdentity, resolveHome } from "./keystore.ts";
import { sinkFactory } from "./player.ts";
import { ClientSession, type SessionOptions } from "./session.ts";
import { ClientStore, serverFolderName } from "./store/mod.ts";
import { runClientApp } from "./tui/app.ts";
import { FileIgnoreList } from "./tui/ignore.ts";
import { JsonEventWriter } from "./tui/json.ts";

export { ClientSession, type SessionEnd, type SessionOptions } from "./session.ts";
export type { ClientEvent, PeerView } from "./events.ts";
export { discardSink, type SinkFactory, sinkFactory, type StreamSink } from "./player.ts";
export { HELP_TEXT } from "./tui/commands.ts";

/** Flags of `reelay client`. */
export interface ClientFlags {
  server?: string;
  name?: string;
  home?: string;
  json?: boolean;
  player?: string;
  config: string;
  configGiven: boolean;
}

/** Where to connect, as whom, and where that person's keys live. */
export interface OpenOptions extends Omit<SessionOptions, "identity" | "store"> {
  /** The home folder holding `identity.json` and `servers/<server>/client.db`. */
  home: string;
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
  const { home, ...rest } = options;
  const { identity } = await loadOrCreateIdentity(home);
  const server = serverFolderName(`${rest.hostname}:${rest.port}`);
  const store = await ClientStore.open({ home, server, identity });
  try {
    const session = await ClientSession.connect({ ...rest, identity, store });
    void session.closed.then(() => store.close());
    return session;
  } catch (error) {
    store.close();
    throw error;
  }
}

function defaultName(): string {
  const user = Deno.env.get("USER") ?? Deno.env.get("LOGNAME") ?? Deno.env.get("USERNAME") ?? "";
  const cleaned = user.replace(/[^A-Za-z0-9_.-]/g, "").slice(0, MAX_NAME_LENGTH);
  if (!cleaned || nameProblem(cleaned)) {
    throw new UsageError("No name given: pass --name NAME");
  }
  return cleaned;
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
    { client: { server: flags.server, player: flags.player } },
  );
  const address = parseHostPort(config.client.server, DEFAULT_CONFIG.server.port);
  const name = flags.name ?? defaultName();
  const problem = nameProblem(name);
  if (problem) throw new UsageError(problem, "bad-name");
  const sinks = sinkFactory(config.client.player, {
    DISPLAY: Deno.env.get("DISPLAY"),
    WAYLAND_DISPLAY: Deno.env.get("WAYLAND_DISPLAY"),
  });
  const home = resolveHome({ home: flags.home, env: Deno.env });
  let session: ClientSession;
  try {
    session = await openSession({ ...address, name, home, sinks });
  } catch (error) {
    if (!(error instanceof ReelayError) || error instanceof UsageError) throw error;
    await reportFatal(error, flags.json ?? false);
    return EXIT_FAILURE;
  }
  return await runClientApp({
    session,
    json: flags.json ?? false,
    ignore: await FileIgnoreList.load(home),
    bell: config.client.bell,
  });
}

async function reportFatal(error: ReelayError, json: boolean): Promise<void> {
  if (json) {
    const writer = new JsonEventWriter();
    writer.write({ event: "error", code: error.code, message: error.message });
    await writer.flush().catch(() => {});
  }
  await printError(`reelay: ${error.message}`);
}
