/**
 * The server's public face: {@linkcode startServer} for programs and tests, and
 * {@linkcode runServer} for `reelay server`.
 *
 * @module
 */

import { type Config, loadConfig } from "../shared/config.ts";
import { ReelayError, UsageError } from "../shared/errors.ts";
import { verifyAnnouncement } from "../shared/crypto/mod.ts";
import type { Announcement } from "../shared/protocol/messages.ts";
import { Catalog } from "./catalog.ts";
import { type Logger, stderrLogger } from "./log.ts";
import { bindListener, ReelayServer } from "./server.ts";
import { StreamingService } from "./streaming.ts";
import { checkFfmpeg } from "./transcode.ts";

export { ReelayServer } from "./server.ts";
export { type Logger, silentLogger, stderrLogger } from "./log.ts";

/** A started server with its catalog. */
export interface RunningServer {
  readonly server: ReelayServer;
  readonly catalog: Catalog;
  readonly port: number;
  /** Shuts down: tells clients, kills every ffmpeg, closes every socket. */
  close(): Promise<void>;
}

/**
 * Checks ffmpeg, scans the videos folder, and starts listening.
 *
 * @example
 * ```ts ignore
 * import { startServer } from "./mod.ts";
 * import { DEFAULT_CONFIG } from "../shared/config.ts";
 * const running = await startServer(structuredClone(DEFAULT_CONFIG), { log: silentLogger });
 * await running.close();
 * ```
 */
export async function startServer(
  config: Config,
  options: { log: Logger },
): Promise<RunningServer> {
  const { log } = options;
  const listener = bindListener(config);
  let catalog: Catalog;
  try {
    await checkFfmpeg(config.stream.ffmpeg, config.stream.ffprobe);
    await Deno.mkdir(config.server.videos, { recursive: true });
    catalog = await openCatalog(config, log);
  } catch (error) {
    listener.close();
    throw error;
  }
  log("info", `Serving ${catalog.list().length} video(s) from ${catalog.dir}`);
  const streaming = new StreamingService(catalog, config, log);
  const server = ReelayServer.listen(config, {
    log,
    verifyAnnouncement: verifyHello,
    createViewer: (framed) => streaming.viewer(framed),
    onClose: async () => {
      await streaming.close();
      await catalog.close();
    },
  }, listener);
  return { server, catalog, port: server.port, close: () => server.close() };
}

function openCatalog(config: Config, log: Logger): Promise<Catalog> {
  return Catalog.open(config.server.videos, {
    ffprobePath: config.stream.ffprobe,
    log: (level, message) => {
      if (level !== "debug") log(level, message);
    },
  });
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
  config: string;
  configGiven: boolean;
}

/** Applies command-line flags over the config file's values. */
export function applyServerFlags(config: Config, flags: ServerFlags): Config {
  if (flags.host !== undefined) config.server.host = flags.host;
  if (flags.videos !== undefined) config.server.videos = flags.videos;
  if (flags.port !== undefined) {
    const port = Number(flags.port);
    if (!/^\d+$/.test(flags.port) || port > 65535) {
      throw new UsageError(`Port ${JSON.stringify(flags.port)} is not a number from 0 to 65535`);
    }
    config.server.port = port;
  }
  return config;
}

/**
 * `reelay server`: runs until SIGINT or SIGTERM, then shuts down cleanly and returns 0.
 *
 * @example
 * ```ts ignore
 * import { runServer } from "./mod.ts";
 * Deno.exit(await runServer({ config: "config.ini", configGiven: false }));
 * ```
 */
export async function runServer(flags: ServerFlags): Promise<number> {
  const config = applyServerFlags(
    await loadConfig(flags.config, { explicit: flags.configGiven }),
    flags,
  );
  const running = await startServer(config, { log: stderrLogger });
  const stopped = Promise.withResolvers<string>();
  const signals: Deno.Signal[] = Deno.build.os === "windows" ? ["SIGINT"] : ["SIGINT", "SIGTERM"];
  const handlers = signals.map((signal) => {
    const handler = () => stopped.resolve(signal);
    Deno.addSignalListener(signal, handler);
    return () => Deno.removeSignalListener(signal, handler);
  });
  const signal = await stopped.promise;
  stderrLogger("info", `Received ${signal}: shutting down`);
  await running.close();
  for (const remove of handlers) remove();
  return 0;
}
