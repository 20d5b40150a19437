/**
 * Connecting a node or a worker to NATS: the cluster address, the credentials every member
 * presents (user and password, or an nkey seed), reconnecting for as long as the process runs,
 * and errors that say what to fix.
 *
 * @module
 */

import {
  connect,
  type ConnectionOptions,
  type NatsConnection,
  nkeyAuthenticator,
} from "@nats-io/transport-node";
import { utf8 } from "../../shared/bytes.ts";
import { messageOf, ReelayError, UsageError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/log.ts";

export type { NatsConnection };

/** How a member proves itself to NATS (see docs/cluster.md for the server side). */
export type ClusterCredentials =
  | { kind: "none" }
  | { kind: "password"; user: string; password: string }
  | { kind: "nkey"; seed: string };

/** Where the cluster is and how to join it. */
export interface NatsOptions {
  /** One or more `nats://HOST:PORT` addresses, comma-separated (user:password@ allowed). */
  url: string;
  /** Credentials; user and password in `url` are used when this is `none` or absent. */
  credentials?: ClusterCredentials;
  /** How this member shows in NATS monitoring, e.g. `reelay-node-1a2b`. */
  name: string;
  /** How long the first connection may take before giving up. */
  connectTimeoutMs?: number;
  log: Logger;
}

/** The default NATS port. */
export const DEFAULT_NATS_PORT = 4222;

/** An address split into what the client library takes. */
export interface ParsedClusterUrl {
  /** `host:port` of each server. */
  servers: string[];
  /** User and password given in the address, if any. */
  user?: string;
  password?: string;
}

/**
 * Reads `nats://[user:password@]HOST[:PORT][,nats://...]`. A usage error names what is wrong.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseClusterUrl } from "./nats.ts";
 * assert.deepEqual(parseClusterUrl("nats://10.0.0.5"), { servers: ["10.0.0.5:4222"] });
 * assert.deepEqual(parseClusterUrl("nats://node:s3cret@127.0.0.1:4300"), {
 *   servers: ["127.0.0.1:4300"],
 *   user: "node",
 *   password: "s3cret",
 * });
 * assert.throws(() => parseClusterUrl("http://x"), /nats:\/\/HOST:PORT/);
 * ```
 */
export function parseClusterUrl(text: string): ParsedClusterUrl {
  const result: ParsedClusterUrl = { servers: [] };
  for (const part of text.split(",").map((piece) => piece.trim())) {
    let url: URL | undefined;
    try {
      url = new URL(part);
    } catch {
      url = undefined;
    }
    if (!url || url.protocol !== "nats:" || url.hostname === "" || url.pathname !== "") {
      throw new UsageError(
        `Cluster address ${JSON.stringify(part)} is not nats://HOST:PORT`,
        "bad-config",
      );
    }
    const port = url.port === "" ? DEFAULT_NATS_PORT : Number(url.port);
    result.servers.push(`${url.hostname}:${port}`);
    if (url.username !== "") {
      result.user = decodeURIComponent(url.username);
      result.password = decodeURIComponent(url.password);
    }
  }
  return result;
}

/**
 * Connects to NATS, reconnecting without end after a loss (nodes and workers outlive a NATS
 * restart); losses and returns are logged. Throws `cluster-auth` for refused credentials and
 * `cluster-unreachable` when no server answers in time.
 *
 * @example
 * ```ts ignore
 * const nc = await connectNats({ url: "nats://127.0.0.1:4222", name: "reelay-node", log });
 * ```
 */
export async function connectNats(options: NatsOptions): Promise<NatsConnection> {
  const parsed = parseClusterUrl(options.url);
  const connection: ConnectionOptions = {
    servers: parsed.servers,
    name: options.name,
    timeout: options.connectTimeoutMs ?? 5000,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    pingInterval: 10_000,
  };
  const credentials = options.credentials ?? { kind: "none" };
  if (credentials.kind === "password") {
    connection.user = credentials.user;
    connection.pass = credentials.password;
  } else if (credentials.kind === "nkey") {
    connection.authenticator = nkeyAuthenticator(utf8(credentials.seed.trim()));
  } else if (parsed.user !== undefined) {
    connection.user = parsed.user;
    connection.pass = parsed.password;
  }
  guardSocketResets(options.log);
  let nc: NatsConnection;
  try {
    nc = await connect(connection);
  } catch (error) {
    const detail = messageOf(error);
    if (/auth/i.test(detail)) {
      throw new ReelayError(
        "cluster-auth",
        `NATS at ${options.url} refused this member's credentials (${detail}): check ` +
          "[cluster] user and password_file, or nkey_seed_file",
        { cause: error },
      );
    }
    throw new ReelayError(
      "cluster-unreachable",
      `Cannot reach NATS at ${options.url} (${detail}): is nats-server running with -js?`,
      { cause: error },
    );
  }
  void logStatus(nc, options.log);
  return nc;
}

async function logStatus(nc: NatsConnection, log: Logger): Promise<void> {
  for await (const status of nc.status()) {
    if (status.type === "disconnect") log("warn", "Lost the connection to NATS: reconnecting");
    else if (status.type === "reconnect") log("info", "Reconnected to NATS");
  }
}

let guarded = false;

/**
 * The client library leaves a socket without an error listener for a moment around closing
 * and connecting, and Node's rule makes an error there uncaught, which would end the whole
 * node. A reset or broken pipe of a NATS socket is already handled by the library's reconnect,
 * so it is logged and the process goes on; any other uncaught error is left alone.
 */
function guardSocketResets(log: Logger): void {
  if (guarded) return;
  guarded = true;
  globalThis.addEventListener("error", (event) => {
    const code = (event.error as { code?: unknown } | undefined)?.code;
    if (code !== "ECONNRESET" && code !== "EPIPE") return;
    if (!/onStreamRead|afterWrite|stream_base_commons/.test(String(event.error?.stack))) return;
    event.preventDefault();
    log("warn", `A NATS socket was reset (${code}): the client reconnects if it needs to`);
  });
}
