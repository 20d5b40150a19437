/**
 * The server's public face: {@linkcode startServer} for programs and tests, and
 * {@linkcode runServer} for `reelay server`.
 *
 * @module
 */

import { deferred, onSignals, TERMINATION_SIGNALS } from "../shared/async.ts";
import { ServerKey } from "../shared/channel/mod.ts";
import { applyFlags, type Config, loadConfig, SCHEMA } from "../shared/config/mod.ts";
import { ReelayError } from "../shared/errors.ts";
import { printLine } from "../shared/io.ts";
import { verifyAnnouncement } from "../shared/crypto/mod.ts";
import { type Logger, stderrLogger } from "../shared/log.ts";
import type { Announcement } from "../shared/protocol/mod.ts";
import { Catalog, checkFfmpeg, MediaService } from "./media/mod.ts";
import { bindListener, ReelayServer } from "./server.ts";
import { openSqliteStore } from "./store/sqlite.ts";
import type { Store } from "./store/mod.ts";
import type { PeerConnection } from "./connection.ts";
import type { ClusterNode } from "./cluster/mod.ts";

export { ReelayServer } from "./server.ts";

/** The file in the state folder holding the server's channel key. */
export const SERVER_KEY_FILE = "server_key.json";

/**
 * Loads the server's channel key from `[server] state` (`server_key.json`, owner-only), creating
 * it on the first run.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { defaultConfig } from "../shared/config/mod.ts";
 * import { loadServerKey } from "./mod.ts";
 * const config = defaultConfig();
 * config.server.state = await Deno.makeTempDir();
 * const first = await loadServerKey(config);
 * assert.ok(first.created);
 * assert.equal((await loadServerKey(config)).key.fingerprint, first.key.fingerprint);
 * await Deno.remove(config.server.state, { recursive: true });
 * ```
 */
export async function loadServerKey(
  config: Config,
): Promise<{ key: ServerKey; created: boolean }> {
  return await ServerKey.loadOrCreate(`${config.server.state}/${SERVER_KEY_FILE}`);
}

/** A started server with its catalog. */
export interface RunningServer {
  readonly server: ReelayServer;
  readonly catalog: Catalog;
  readonly port: number;
  /** This node's id, when it runs as part of a cluster (`[cluster] url`). */
  readonly nodeId?: string;
  /** Shuts down: tells clients, kills every ffmpeg, closes every socket. */
  close(): Promise<void>;
}

/**
 * Loads the server key (unless given), checks ffmpeg, scans the videos folder, and starts
 * listening.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { defaultConfig } from "../shared/config/mod.ts";
 * import { silentLogger } from "../shared/log.ts";
 * import { startServer } from "./mod.ts";
 * const config = defaultConfig();
 * config.server.host = "127.0.0.1";
 * config.server.port = 0;
 * config.server.videos = await Deno.makeTempDir();
 * config.server.state = await Deno.makeTempDir(); // channel key and reelay.db
 * const running = await startServer(config, { log: silentLogger });
 * assert.ok(running.port > 0);
 * await running.close();
 * await Deno.remove(config.server.videos, { recursive: true });
 * await Deno.remove(config.server.state, { recursive: true });
 * ```
 */
export async function startServer(
  config: Config,
  options: {
    log: Logger;
    /** The channel key to use instead of the one in `[server] state`. */
    serverKey?: ServerKey;
    /** Test hook: wraps each connection's decrypted side (see `ServerDeps.tap`). */
    tap?: (conn: Deno.Conn) => Deno.Conn;
  },
): Promise<RunningServer> {
  const { log } = options;
  const listener = bindListener(config);
  let catalog: Catalog | undefined;
  let cluster: ClusterNode<PeerConnection> | undefined;
  let media: MediaService;
  let serverKey: ServerKey;
  let store: Store | undefined;
  try {
    await checkFfmpeg(config.stream.ffmpeg, config.stream.ffprobe);
    serverKey = options.serverKey ?? await loadKeyLogged(config, log);
    await Deno.mkdir(config.server.videos, { recursive: true });
    store = await openSqliteStore(config.server.state, {
      maxItemsPerRecipient: config.mailbox.maxItemsPerRecipient,
      maxBytesPerRecipient: config.mailbox.maxBytesPerRecipient,
      maxTotalBytes: config.mailbox.maxTotalBytes,
      maxBytesPerSender: config.mailbox.maxBytesPerSender,
      ttlMs: config.mailbox.ttlMs,
    });
    catalog = await openCatalog(config, log);
    cluster = await openCluster(config, log);
    media = await MediaService.open(catalog, config, log, { workers: cluster?.workers });
  } catch (error) {
    listener.close();
    await store?.close();
    await catalog?.close();
    await cluster?.people.close();
    await cluster?.close();
    throw error;
  }
  const local = store;
  const joined = cluster;
  // In a cluster the mail, registry and prekeys are the cluster's, so every node sees them.
  const opened: Store = joined === undefined ? local : {
    mailbox: joined.mailbox,
    prekeys: joined.directory.prekeys,
    registry: joined.directory.registry,
    close: () => local.close(),
    [Symbol.asyncDispose]: () => local.close(),
  };
  log("info", `Serving ${catalog.list().length} video(s) from ${catalog.dir}`);
  log("info", `Server key fingerprint ${serverKey.fingerprint}`);
  const server = ReelayServer.listen(config, {
    log,
    store: opened,
    serverKey,
    tap: options.tap,
    verifyAnnouncement: verifyHello,
    createViewer: (framed) => media.viewer(framed),
    people: cluster?.people,
    heldMail: joined && ((wake) => joined.mailbox.watch(wake)),
    onClose: async () => {
      await media.close();
      await catalog.close();
      await opened.close();
      await cluster?.close();
    },
  }, listener);
  return {
    server,
    catalog,
    port: server.port,
    nodeId: cluster?.nodeId,
    close: () => server.close(),
  };
}

/**
 * Joins the cluster when `[cluster] url` is set. The NATS client is imported only then, so a
 * single server (and the compiled binary's start) never loads it.
 */
async function openCluster(
  config: Config,
  log: Logger,
): Promise<ClusterNode<PeerConnection> | undefined> {
  if (config.cluster.url === "") return undefined;
  const { joinCluster } = await import("./cluster/mod.ts");
  return await joinCluster<PeerConnection>(config, log);
}

async function loadKeyLogged(config: Config, log: Logger): Promise<ServerKey> {
  const { key, created } = await loadServerKey(config);
  if (created) {
    log("info", `Created a new server key in ${config.server.state}/${SERVER_KEY_FILE}`);
  }
  return key;
}

function openCatalog(config: Config, log: Logger): Promise<Catalog> {
  return Catalog.open(config.server.videos, { ffprobePath: config.stream.ffprobe, log });
}

async function verifyHello(announcement: Announcement): Promise<boolean> {
  try {
    await verifyAnnouncement(announcement);
    return true;
  } catch (error) {
    if (error instanceof ReelayError && error.code === "bad-signature") return false;
    throw error;
  }
}

/** Flags of `reelay server`. */
export interface ServerFlags {
  host?: string;
  port?: string;
  videos?: string;
  state?: string;
  /** Print the server key's fingerprint and exit. */
  fingerprint?: boolean;
  cluster?: string;
  config: string;
  configGiven: boolean;
}

/**
 * `reelay server`: runs until SIGINT or SIGTERM, then shuts down cleanly and returns 0.
 * With `--fingerprint`, prints the server key's fingerprint (creating the key) and returns 0.
 *
 * @example
 * ```ts ignore
 * import { runServer } from "./mod.ts";
 * Deno.exit(await runServer({ config: "config.ini", configGiven: false }));
 * ```
 */
export async function runServer(flags: ServerFlags): Promise<number> {
  const { host, port, videos, state } = flags;
  const config = applyFlags(
    await loadConfig(flags.config, { explicit: flags.configGiven }),
    { server: { host, port, videos, state } },
  );
  if (flags.fingerprint) {
    const { key } = await loadServerKey(config);
    await printLine(key.fingerprint);
    return 0;
  }
  if (flags.cluster !== undefined) {
    config.cluster.url = SCHEMA.cluster.url.read(flags.cluster, "Flag --cluster");
  }
  const running = await startServer(config, { log: stderrLogger });
  const stopped = deferred<Deno.Signal>();
  const stopListening = onSignals(TERMINATION_SIGNALS, stopped.resolve);
  const signal = await stopped.promise;
  stderrLogger("info", `Received ${signal}: shutting down`);
  await running.close();
  stopListening();
  return 0;
}
