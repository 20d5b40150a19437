/**
 * A server node joining its cluster: credentials from the config's files, a node id, the NATS
 * connection, and the cluster's people and mailbox over it, closed together.
 *
 * @module
 */

import type { Config } from "../../shared/config/mod.ts";
import { errorDetail, messageOf, UsageError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/log.ts";
import { toHex } from "../../shared/bytes.ts";
import { DEFAULT_STORE_LIMITS } from "../store/mod.ts";
import type { Recipient } from "../relay.ts";
import type { PartWorkers } from "../media/part_sources.ts";
import { JetStreamMailbox } from "./mailbox.ts";
import { KvDirectory } from "./directory.ts";
import { RemoteTranscoder } from "./remote_transcode.ts";
import { type ClusterCredentials, connectNats, type NatsConnection } from "./nats.ts";
import { ClusterPeople } from "./people.ts";

/** A node's part in the cluster. */
export interface ClusterNode<M extends Recipient> {
  readonly nodeId: string;
  readonly nc: NatsConnection;
  /** The shared directory and relay, for `ServerDeps.people`. */
  readonly people: ClusterPeople<M>;
  /** Offline mail in JetStream, the store's `Mailbox` contract. */
  readonly mailbox: JetStreamMailbox;
  /** The shared registry and prekey directory, the store's contracts over NATS KV. */
  readonly directory: KvDirectory;
  /** Hands parts to the cluster's transcode workers (for `MediaService`). */
  readonly workers: PartWorkers;
  /** Closes the NATS connection (the server closes `people` itself, after its connections). */
  close(): Promise<void>;
}

async function readSecret(path: string, key: string): Promise<string> {
  try {
    return (await Deno.readTextFile(path)).trim();
  } catch (error) {
    throw new UsageError(
      `Config key [cluster] ${key} names ${JSON.stringify(path)}, which cannot be read: ` +
        messageOf(error),
      "bad-config",
    );
  }
}

/** The credentials `[cluster]` asks for. */
export async function clusterCredentials(config: Config): Promise<ClusterCredentials> {
  const { user, passwordFile, nkeySeedFile } = config.cluster;
  if (nkeySeedFile !== "") {
    if (user !== "") {
      throw new UsageError(
        "Config keys [cluster] user and nkey_seed_file are both set: choose one",
        "bad-config",
      );
    }
    return { kind: "nkey", seed: await readSecret(nkeySeedFile, "nkey_seed_file") };
  }
  if (user !== "") {
    if (passwordFile === "") {
      throw new UsageError(
        "Config key [cluster] user is set without password_file",
        "bad-config",
      );
    }
    return { kind: "password", user, password: await readSecret(passwordFile, "password_file") };
  }
  return { kind: "none" };
}

/**
 * Connects to `[cluster] url` and opens presence, relay and mailbox.
 *
 * @example
 * ```ts ignore
 * const node = await joinCluster<PeerConnection>(config, log);
 * ReelayServer.listen(config, { ...deps, people: node.people, onClose: () => node.close() });
 * ```
 */
export async function joinCluster<M extends Recipient>(
  config: Config,
  log: Logger,
): Promise<ClusterNode<M>> {
  const credentials = await clusterCredentials(config);
  const nodeId = config.cluster.node ||
    `node-${toHex(crypto.getRandomValues(new Uint8Array(4)))}`;
  const nc = await connectNats({
    url: config.cluster.url,
    credentials,
    name: `reelay-${nodeId}`,
    log,
  });
  try {
    const people = await ClusterPeople.open<M>(nc, {
      nodeId,
      presenceTtlMs: config.cluster.presenceTtlMs,
      log,
    });
    let mailbox: JetStreamMailbox;
    let directory: KvDirectory;
    try {
      mailbox = await JetStreamMailbox.open(nc, {
        maxItemsPerRecipient: config.mailbox.maxItemsPerRecipient,
        maxBytesPerRecipient: config.mailbox.maxBytesPerRecipient,
        maxBytesPerSender: config.mailbox.maxBytesPerSender,
        maxTotalBytes: config.mailbox.maxTotalBytes,
        ttlMs: config.mailbox.ttlMs ?? DEFAULT_STORE_LIMITS.ttlMs,
      });
      const held = mailbox;
      directory = await KvDirectory.open(nc, { endMail: (key, reason) => held.end(key, reason) });
    } catch (error) {
      await people.close();
      throw error;
    }
    log("info", `Joined the cluster at ${config.cluster.url} as node ${nodeId}`);
    const transcoder = new RemoteTranscoder(nc, log);
    const workers: PartWorkers = async (request, preset, label) => {
      try {
        return await transcoder.start({
          video: request.info.name,
          size: request.info.size,
          segment: request.segment,
          preset,
          fastStart: request.fastStart !== undefined,
        }, label);
      } catch (error) {
        // A worker that refuses (another file by that name) or NATS away: this node transcodes.
        log("warn", `${errorDetail(error)}: transcoding ${label} here`);
        return undefined;
      }
    };
    return { nodeId, nc, people, mailbox, directory, workers, close: () => nc.close() };
  } catch (error) {
    await nc.close();
    throw error;
  }
}
