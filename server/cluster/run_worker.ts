/**
 * `reelay worker`: joins the cluster with the `[cluster]` credentials and takes transcode jobs
 * until SIGINT or SIGTERM, then ends its parts (killing their ffmpeg) and exits 0.
 *
 * @module
 */

import { deferred, onSignals, TERMINATION_SIGNALS } from "../../shared/async.ts";
import { applyFlags, loadConfig, SCHEMA } from "../../shared/config/mod.ts";
import { UsageError } from "../../shared/errors.ts";
import { stderrLogger } from "../../shared/log.ts";
import { checkFfmpeg } from "../media/tools.ts";
import { connectNats } from "./nats.ts";
import { clusterCredentials } from "./node.ts";
import { TranscodeWorker, type WorkerFlags } from "./worker.ts";

/**
 * Runs a worker; returns the exit code.
 *
 * @example
 * ```ts ignore
 * Deno.exit(await runWorker({ cluster: "nats://10.0.0.5:4222", config: "config.ini", configGiven: false }));
 * ```
 */
export async function runWorker(flags: WorkerFlags): Promise<number> {
  const config = applyFlags(
    await loadConfig(flags.config, { explicit: flags.configGiven }),
    { server: { videos: flags.videos } },
  );
  if (flags.cluster !== undefined) {
    config.cluster.url = SCHEMA.cluster.url.read(flags.cluster, "Flag --cluster");
  }
  if (config.cluster.url === "") {
    throw new UsageError("reelay worker needs --cluster nats://HOST:PORT (or [cluster] url)");
  }
  const slots = flags.slots === undefined
    ? config.cluster.workerSlots
    : SCHEMA.cluster.workerSlots.read(flags.slots, "Flag --slots");
  const log = stderrLogger;
  await checkFfmpeg(config.stream.ffmpeg, config.stream.ffprobe);
  const nc = await connectNats({
    url: config.cluster.url,
    credentials: await clusterCredentials(config),
    name: "reelay-worker",
    log,
  });
  const worker = await TranscodeWorker.start(nc, {
    videos: config.server.videos,
    slots,
    ffmpegPath: config.stream.ffmpeg,
    ffprobePath: config.stream.ffprobe,
    id: config.cluster.node || undefined,
    log,
  });
  log(
    "info",
    `Worker ${worker.id} takes up to ${slots} part(s) at once from ${config.cluster.url}`,
  );
  const stopped = deferred<Deno.Signal>();
  const stopListening = onSignals(TERMINATION_SIGNALS, stopped.resolve);
  const signal = await stopped.promise;
  log("info", `Received ${signal}: stopping`);
  await worker.close();
  await nc.close();
  stopListening();
  return 0;
}
