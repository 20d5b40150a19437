/**
 * The client's way into a server: TCP, the secure handshake, and the server key checked against
 * the pin for the server's address (`known_servers.json` in the client's home, like ssh's
 * `known_hosts`). The first connection pins the key; a different key later is refused with
 * `server-key-changed` naming both fingerprints, unless the person accepts exactly that new key
 * (`reelay client --accept-server-key FINGERPRINT`). There is no unencrypted way in.
 *
 * @module
 */

import {
  type ClientHandshake,
  initiate,
  serverFingerprint,
  ServerPins,
} from "../shared/channel/mod.ts";
import { abortAfter } from "../shared/async.ts";
import { messageOf, ReelayError } from "../shared/errors.ts";
import { CHANNEL_PROLOGUE } from "../shared/protocol/mod.ts";

/** The pins file in a client's home. */
export const KNOWN_SERVERS_FILE = "known_servers.json";

/** How the server's key compared with what this client knew. */
export type ServerKeyStatus = "pinned" | "new" | "accepted";

/** Where to connect and what to trust. */
export interface SecureDialOptions {
  hostname: string;
  port: number;
  /** The client's pins (see {@linkcode knownServers}). */
  pins: ServerPins;
  /** The fingerprint the person accepts for this server in place of the pinned one. */
  acceptServerKey?: string;
  /** Deadline of the TCP connect, and again of the handshake (default 10 s each). */
  timeoutMs?: number;
  /** Calls the dial off (the person left): the connection is closed and its reason thrown. */
  signal?: AbortSignal;
  /**
   * On a reconnect: the fingerprint of the server the session joined. Another key is refused
   * before any pin is written, so an address tried for the first time is not pinned to it.
   */
  sessionFingerprint?: string;
}

/** How long a connect or a handshake may take unless told otherwise. */
export const DIAL_TIMEOUT_MS = 10_000;

/** A connection whose server key matched (or was just pinned). */
export interface SecureDial extends ClientHandshake {
  /** How the key compared with the pin. */
  serverKeyStatus: ServerKeyStatus;
}

/**
 * The pins kept in `home`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { knownServers } from "./server_trust.ts";
 * assert.ok(knownServers("/home/alice/.reelay").file.endsWith("/known_servers.json"));
 * ```
 */
export function knownServers(home: string): ServerPins {
  return new ServerPins(`${home}/${KNOWN_SERVERS_FILE}`);
}

/**
 * Connects, runs the handshake and checks the server's key against the pin for
 * `hostname:port`. Throws `server-unreachable`, the handshake's errors (`not-reelay`,
 * `handshake-failed`, `handshake-timeout`) or `server-key-changed`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { respond, ServerKey } from "../shared/channel/mod.ts";
 * import { CHANNEL_PROLOGUE } from "../shared/protocol/mod.ts";
 * import { knownServers, secureDial } from "./server_trust.ts";
 * const home = await Deno.makeTempDir();
 * const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const key = await ServerKey.generate();
 * const serve = async () => {
 *   const server = await respond(await listener.accept(), key, { prologue: CHANNEL_PROLOGUE });
 *   server.transport.close();
 * };
 * const options = { hostname: "127.0.0.1", port: listener.addr.port, pins: knownServers(home) };
 * const [first] = await Promise.all([secureDial(options), serve()]);
 * assert.equal(first.serverKeyStatus, "new");
 * first.transport.close();
 * const [second] = await Promise.all([secureDial(options), serve()]);
 * assert.equal(second.serverKeyStatus, "pinned");
 * second.transport.close();
 * listener.close();
 * await Deno.remove(home, { recursive: true });
 * ```
 */
export async function secureDial(options: SecureDialOptions): Promise<SecureDial> {
  const address = `${options.hostname}:${options.port}`;
  const conn = await connect(options);
  // Leaving during the handshake closes the connection, which ends the handshake at once.
  const leave = () => {
    try {
      conn.close();
    } catch {
      // The handshake closed it already.
    }
  };
  options.signal?.addEventListener("abort", leave, { once: true });
  let handshake: ClientHandshake;
  try {
    handshake = await initiate(conn, {
      prologue: CHANNEL_PROLOGUE,
      timeoutMs: options.timeoutMs ?? DIAL_TIMEOUT_MS,
      peer: address,
    });
  } catch (error) {
    options.signal?.throwIfAborted();
    throw error;
  } finally {
    options.signal?.removeEventListener("abort", leave);
  }
  try {
    options.signal?.throwIfAborted();
    checkSessionKey(address, handshake, options.sessionFingerprint);
    const status = await checkPin(address, handshake, options);
    return { ...handshake, serverKeyStatus: status };
  } catch (error) {
    handshake.transport.close();
    throw error;
  }
}

/**
 * TCP to the server, within the deadline: without one a host that drops packets holds the dial
 * for the kernel's connect timeout (about two minutes on Linux).
 */
async function connect(options: SecureDialOptions): Promise<Deno.TcpConn> {
  const { hostname, port, signal } = options;
  const timeoutMs = options.timeoutMs ?? DIAL_TIMEOUT_MS;
  const deadline = abortAfter(timeoutMs, signal);
  let conn: Deno.TcpConn;
  try {
    conn = await Deno.connect({ hostname, port, signal: deadline.signal });
  } catch (error) {
    signal?.throwIfAborted();
    const why = deadline.expired ? `no answer within ${timeoutMs / 1000} s` : messageOf(error);
    throw new ReelayError(
      "server-unreachable",
      `Cannot reach a reelay server at ${hostname}:${port}: ${why}`,
      { cause: error },
    );
  } finally {
    deadline.clear();
  }
  try {
    conn.setNoDelay(true);
  } catch {
    // Gone already: the handshake will say so.
  }
  return conn;
}

function checkSessionKey(address: string, handshake: ClientHandshake, expected?: string): void {
  if (expected === undefined || handshake.serverFingerprint === expected) return;
  // The session's store and conversations belong to one server key (`server_store.ts`).
  throw new ReelayError(
    "server-key-changed",
    `${address} presented ${handshake.serverFingerprint}, not the key of the server this ` +
      `session joined (${expected}): not reconnecting there`,
  );
}

async function checkPin(
  address: string,
  handshake: ClientHandshake,
  options: SecureDialOptions,
): Promise<ServerKeyStatus> {
  const { pins, acceptServerKey } = options;
  const presented = handshake.remoteStatic;
  const check = await pins.check(address, presented);
  if (acceptServerKey !== undefined) {
    if (acceptServerKey.trim() !== handshake.serverFingerprint) {
      throw new ReelayError(
        "server-key-changed",
        `WARNING: the server at ${address} presented ${handshake.serverFingerprint}, not the ` +
          `key you accepted (${acceptServerKey.trim()}). The connection was refused`,
      );
    }
    if (check === "match") return "pinned";
    await pins.replace(address, presented);
    return "accepted";
  }
  if (check === "match") return "pinned";
  if (check === "new") {
    await pins.pin(address, presented);
    return "new";
  }
  const pinned = (await pins.pinned(address))!;
  throw new ReelayError(
    "server-key-changed",
    `WARNING: the server at ${address} presented a different key than the one pinned for it ` +
      `(pinned ${await serverFingerprint(pinned)}, presented ${handshake.serverFingerprint}). ` +
      `Someone may be intercepting the connection, or the server's key was replaced. The ` +
      `connection was refused. Only after the server's owner confirms the new fingerprint ` +
      `(reelay server --fingerprint) another way, run: reelay client --accept-server-key ` +
      `${handshake.serverFingerprint}`,
  );
}
