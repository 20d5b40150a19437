/**
 * The reelay server: listens, accepts, enforces connection caps and each host's fair share of
 * them (`shares.ts`), keeps peers alive, and shuts everything down (sockets and ffmpeg children)
 * on {@linkcode ReelayServer.close}.
 *
 * @module
 */

import { SerialQueue, settlesWithin, Wake } from "../shared/async.ts";
import { type ByteConn, type Handshake, type KeyPair, respond } from "../shared/channel/mod.ts";
import type { Config } from "../shared/config/mod.ts";
import { errorDetail, messageOf, ReelayError } from "../shared/errors.ts";
import type { Logger } from "../shared/log.ts";
import {
  type Announcement,
  CHANNEL_PROLOGUE,
  FramedConnection,
  isDisconnect,
  type ServerConnection,
} from "../shared/protocol/mod.ts";
import { JoinEpochs } from "./join_epochs.ts";
import { PeerConnection, type ServerContext } from "./connection.ts";
import type { Viewer } from "./media/mod.ts";
import { LocalPeople, type People } from "./people.ts";
import { hostOf, HostShares, QueueBudget } from "./shares.ts";

/**
 * How long an evicted connection may take to be told why. Evictions come in bursts (a flood of
 * connections) when the loop is busiest, so this is longer than a normal hang-up's wait; the
 * connection no longer counts against any share meanwhile.
 */
const EVICTION_FLUSH_MS = 5000;
import { Mailroom } from "./mail.ts";
import type { Store } from "./store/mod.ts";

/** How often held mail is checked for expiry. */
const MAIL_SWEEP_MS = 60_000;

/** Pause after a failed accept (e.g. out of file descriptors) before trying again. */
const ACCEPT_RETRY_MS = 100;
/** Refusals (`host-full`) handshaken at once: each costs a handshake's CPU. */
const REFUSAL_LANES = 2;

const TOO_MANY_PENDING = "Too many connections are joining at once from your host: try again later";

/** A connection from accept to its end, as its host's share counts it. */
interface Joining {
  readonly conn: Deno.TcpConn;
  readonly host: string;
  /** Set once the handshake is done and the connection is served. */
  peer?: PeerConnection;
  /** Pushed out to make room: told `too-many-pending` and closed, never joined. */
  evicted: boolean;
}

/**
 * The connection as the handshake reads it, and whether any byte came yet (the first-byte
 * deadline). Everything else goes straight to `conn`.
 */
function watchFirstByte(conn: Deno.TcpConn): { conn: ByteConn; heard(): boolean } {
  let heard = false;
  const watched: ByteConn = {
    read: async (p) => {
      const count = await conn.read(p);
      if (count) heard = true;
      return count;
    },
    write: (p) => conn.write(p),
    close: () => conn.close(),
    closeWrite: () => conn.closeWrite(),
    remoteAddr: conn.remoteAddr,
  };
  return { conn: watched, heard: () => heard };
}

/** What the server is given besides its config. */
export interface ServerDeps {
  log: Logger;
  /** The durable store (mailbox, prekeys, registry); the server does not close it. */
  store: Store;
  /** The server's static channel key: every connection starts with a handshake under it. */
  serverKey: KeyPair;
  /**
   * Wraps each connection's decrypted side after its handshake: what the server itself could do
   * to frames. For tests that play a hostile server; the product leaves it unset.
   */
  tap?: (conn: Deno.Conn) => Deno.Conn;
  verifyAnnouncement(announcement: Announcement): Promise<boolean>;
  /** Video service for one connection; absent means the server streams nothing. */
  createViewer(framed: ServerConnection): Viewer;
  /** The directory and relay; absent means this server's own ({@linkcode LocalPeople}). */
  people?: People<PeerConnection>;
  /** Called once on close, after every connection ended (stops the catalog watcher etc.). */
  onClose?: () => Promise<void>;
  /**
   * Tells the server when another process held mail for someone (a cluster node's mailbox
   * watch): it calls `wake` with the recipient's key and returns a function that stops it.
   */
  heldMail?: (wake: (recipientKey: string) => void) => () => void;
}

/**
 * Binds the configured host and port, with clear errors for a port in use or a host that is not
 * this machine's. Done first, so a server that cannot listen says so before any other work.
 *
 * @example
 * ```ts ignore
 * const listener = bindListener(config);
 * ```
 */
export function bindListener(config: Config): Deno.TcpListener {
  try {
    return Deno.listen({ hostname: config.server.host, port: config.server.port });
  } catch (error) {
    if (error instanceof Deno.errors.AddrInUse) {
      throw new ReelayError(
        "port-in-use",
        `Port ${config.server.port} on ${config.server.host} is in use: stop the other server or pass --port`,
      );
    }
    // A host that does not resolve or is not this machine's, a port needing privileges, ...
    throw new ReelayError(
      "listen-failed",
      `Cannot listen on ${config.server.host}:${config.server.port} (${messageOf(error)}): ` +
        "check [server] host and port in the config, or pass --host and --port",
      { cause: error },
    );
  }
}

/**
 * A running server.
 *
 * @example
 * ```ts ignore
 * const server = ReelayServer.listen(config, deps);
 * console.log(server.port);
 * await server.close();
 * ```
 */
export class ReelayServer {
  readonly #listener: Deno.TcpListener;
  readonly #context: ServerContext;
  readonly #peers = new Set<PeerConnection>();
  readonly #shares: HostShares<Joining>;
  readonly #budget: QueueBudget;
  /** Connections in their secure handshake that count as joining (against `max_pending`). */
  readonly #handshaking = new Set<Deno.TcpConn>();
  /** Connections refused (`host-full`): handshaken only to be told so, then closed. */
  readonly #refusing = new Set<Deno.TcpConn>();
  readonly #refusalLanes = Array.from({ length: REFUSAL_LANES }, () => new SerialQueue());
  #nextRefusalLane = 0;
  readonly #running = new Set<Promise<void>>();
  readonly #deps: ServerDeps;
  readonly #accepting: Promise<void>;
  readonly #sweeper: ReturnType<typeof setInterval>;
  readonly #stopHeldMail: (() => void) | undefined;
  #closing: Promise<void> | undefined;
  #lastMailSweep = Date.now();
  #mailSweep: Promise<unknown> = Promise.resolve();
  /** Wakes the accept loop early from an accept-failure pause (on close). */
  readonly #closeWake = new Wake();

  private constructor(listener: Deno.TcpListener, config: Config, deps: ServerDeps) {
    this.#listener = listener;
    this.#deps = deps;
    const people = deps.people ?? new LocalPeople<PeerConnection>();
    this.#shares = new HostShares(config.limits);
    this.#budget = new QueueBudget(config.limits.maxTotalQueueBytes, () => this.#peers.size);
    const shares = this.#shares;
    this.#context = {
      config,
      log: deps.log,
      people,
      mail: new Mailroom(
        people instanceof LocalPeople ? people.directory : undefined,
        deps.store,
        {
          broadcast: config.chat.broadcast,
          log: deps.log,
          route: people instanceof LocalPeople
            ? undefined
            : (sender: never, to, envelope, id) => people.route(sender, to, envelope, id),
          online: people instanceof LocalPeople ? undefined : (to) => people.present(to),
          expireRegistry: people instanceof LocalPeople,
        },
      ),
      verifyAnnouncement: deps.verifyAnnouncement,
      createViewer: deps.createViewer,
      hasRoomForClient: () => people.size < config.limits.maxClients,
      streamsFrom: (host) => {
        let playing = 0;
        for (const joining of shares.joinedFrom(host)) if (joining.peer?.streaming) playing++;
        return playing;
      },
      budget: this.#budget,
      makeRoom: (bytes) => this.#makeRoom(bytes),
      joinEpochs: new JoinEpochs(),
    };
    const mail = this.#context.mail;
    this.#stopHeldMail = deps.heldMail?.((recipientKey) => mail.wake(recipientKey));
    this.#accepting = this.#acceptLoop();
    const { keepaliveMs } = config.limits;
    this.#sweeper = setInterval(() => {
      try {
        this.#sweep();
      } catch (error) {
        deps.log("error", `Keepalive sweep failed: ${errorDetail(error)}`);
      }
    }, Math.min(1000, keepaliveMs / 2));
  }

  /** See `ServerContext.makeRoom`: the largest holders past their fair part go first. */
  #makeRoom(bytes: number): boolean {
    while (!this.#budget.hasRoom(bytes)) {
      let hog: PeerConnection | undefined;
      for (const peer of this.#peers) {
        if (!peer.closed && peer.queuedBytes > (hog?.queuedBytes ?? 0)) hog = peer;
      }
      if (!hog || hog.queuedBytes <= this.#budget.fairPart()) return false;
      hog.cutOff(
        `Outbound queue of ${hog.queuedBytes} bytes is over its share of the server's budget, ` +
          "which people who read need: the peer is not reading",
      );
    }
    return true;
  }

  /** Starts listening on the configured host and port (port 0 picks a free one). */
  static listen(
    config: Config,
    deps: ServerDeps,
    listener: Deno.TcpListener = bindListener(config),
  ): ReelayServer {
    const server = new ReelayServer(listener, config, deps);
    deps.log("info", `Listening on ${config.server.host}:${server.port}`);
    return server;
  }

  /** The port actually listened on. */
  get port(): number {
    return this.#listener.addr.port;
  }

  /** How many peers are connected (joined or not). */
  get connections(): number {
    return this.#peers.size;
  }

  /** How many peers have joined. */
  get members(): number {
    return this.#context.people.size;
  }

  /**
   * How many connections are still joining, from the first byte of their handshake to their
   * welcome (counted against `[limits] max_pending`).
   */
  get pending(): number {
    return this.#shares.pending;
  }

  /** How many connections from `address`'s host are still joining. */
  pendingFrom(address: string): number {
    return this.#shares.pendingOf(hostOf(address));
  }

  /** How many people from `address`'s host have joined. */
  joinedFrom(address: string): number {
    return this.#shares.joinedOf(hostOf(address));
  }

  /** Bytes queued to send over every connection (counted against `max_total_queue_bytes`). */
  get queuedBytes(): number {
    return this.#budget.queued;
  }

  /**
   * Tells every client, ends every stream (killing ffmpeg), closes every socket. Idempotent.
   */
  close(message = "Server is shutting down"): Promise<void> {
    this.#closing ??= this.#shutdown(message);
    return this.#closing;
  }

  async #shutdown(message: string): Promise<void> {
    clearInterval(this.#sweeper);
    this.#stopHeldMail?.();
    this.#listener.close();
    this.#closeWake.wake();
    await this.#accepting;
    // Closing the socket ends a handshake at once; it then never becomes a peer.
    for (const conn of [...this.#handshaking, ...this.#refusing]) closeQuietly(conn);
    for (const peer of this.#peers) {
      peer.notify({ type: "shutdown", message });
      void peer.framed.flushAndClose(new ReelayError("shutdown", message), 500);
    }
    await Promise.all(this.#running);
    await this.#context.mail.idle();
    await this.#mailSweep;
    await this.#context.people.close();
    await this.#deps.onClose?.();
    this.#deps.log("info", "Server stopped");
  }

  async #acceptLoop(): Promise<void> {
    while (true) {
      let conn: Deno.TcpConn;
      try {
        conn = await this.#listener.accept();
      } catch (error) {
        if (error instanceof Deno.errors.BadResource || this.#closing) return;
        if (isDisconnect(error)) continue;
        // Typically out of file descriptors: pause instead of spinning on a failing accept.
        this.#deps.log("error", `Accept failed: ${String(error)}`);
        await settlesWithin(this.#closeWake.wait(), ACCEPT_RETRY_MS);
        if (this.#closing) return;
        continue;
      }
      try {
        this.#admit(conn);
      } catch (error) {
        this.#deps.log("error", `Could not admit a connection: ${String(error)}`);
        try {
          conn.close();
        } catch {
          // Already closed.
        }
      }
    }
  }

  #admit(conn: Deno.TcpConn): void {
    const { limits } = this.#context.config;
    try {
      conn.setNoDelay(true);
    } catch {
      // The peer may already be gone; the handshake will notice.
    }
    const acceptedAt = Date.now();
    const host = hostOf(conn.remoteAddr.hostname);
    if (this.#shares.hostFull(host)) {
      this.#refusing.add(conn);
      const lane = this.#refusalLanes[this.#nextRefusalLane++ % this.#refusalLanes.length];
      const message = `Too many people are connected from ${host} (the limit is ` +
        `${limits.maxClientsPerHost} per host): try again when someone there leaves`;
      this.#track(
        lane.run(() => this.#refuse(conn, acceptedAt + limits.joinTimeoutMs, "host-full", message)),
      );
      return;
    }
    const joining: Joining = { conn, host, evicted: false };
    this.#handshaking.add(conn);
    // Room is made by pushing out the oldest joining connection of this host (or, when the
    // server as a whole is full, of the host holding the most): a flood only displaces itself,
    // and a newcomer is never the one refused.
    for (const old of this.#shares.admit(host, joining).evict) this.#evict(old);
    this.#track(this.#serve(joining, acceptedAt));
  }

  /**
   * Pushes out a joining connection: one past its handshake is told why inside its channel; one
   * still in its handshake is closed at once (there is no channel to say it in, and finishing
   * handshakes only to refuse them would let a flood cost a handshake each).
   */
  #evict(joining: Joining): void {
    joining.evicted = true;
    if (joining.peer) {
      void joining.peer.hangUp(
        new ReelayError("too-many-pending", TOO_MANY_PENDING),
        EVICTION_FLUSH_MS,
      );
    } else {
      closeQuietly(joining.conn);
    }
  }

  /**
   * Runs the secure handshake (within the join deadline, and with a first byte within
   * `first_byte_timeout_ms`), then serves the peer inside the channel. A connection evicted
   * just as its handshake completed is told `too-many-pending`, then closed.
   */
  async #serve(joining: Joining, acceptedAt: number): Promise<void> {
    const { conn, host } = joining;
    const { limits } = this.#context.config;
    let handshake: Handshake | undefined;
    try {
      handshake = await this.#handshake(conn, acceptedAt + limits.joinTimeoutMs);
    } finally {
      // Still joining: it leaves #handshaking in the same step it becomes a peer.
      this.#handshaking.delete(conn);
    }
    if (!handshake || this.#closing) {
      if (handshake) closeQuietly(conn);
      this.#shares.release(host, joining);
      return;
    }
    const inner = this.#deps.tap?.(handshake.transport) ?? handshake.transport;
    const { maxFrameBytes, maxQueueBytes } = limits;
    const framed = FramedConnection.forServer(inner, {
      maxFrameBytes,
      maxQueueBytes,
      budget: this.#budget,
    });
    if (joining.evicted) {
      framed.sendMessage({ type: "error", code: "too-many-pending", message: TOO_MANY_PENDING });
      return await framed.flushAndClose(undefined, EVICTION_FLUSH_MS);
    }
    const peer = new PeerConnection(framed, this.#context, {
      handshakeHash: handshake.handshakeHash,
      joinDeadline: acceptedAt + limits.joinTimeoutMs,
      host,
      claimHostShare: () => this.#shares.join(host, joining),
    });
    joining.peer = peer;
    this.#peers.add(peer);
    this.#deps.log("info", `Connection from ${framed.remote}`);
    try {
      await peer.run();
    } finally {
      this.#peers.delete(peer);
      this.#shares.release(host, joining);
    }
  }

  /** Tells a refused connection why inside the channel, then closes it. */
  async #refuse(conn: Deno.TcpConn, deadline: number, code: string, message: string) {
    let handshake: Handshake | undefined;
    try {
      handshake = await this.#handshake(conn, deadline);
    } finally {
      this.#refusing.delete(conn);
    }
    if (!handshake) return;
    const framed = FramedConnection.forServer(handshake.transport, this.#context.config.limits);
    framed.sendMessage({ type: "error", code, message });
    await framed.flushAndClose(undefined, 200);
  }

  /**
   * The server's side of the secure handshake, finished by `deadline`, its first byte within
   * `first_byte_timeout_ms`; undefined (logged, the connection closed) when it fails, times out,
   * or the server is closing. A socket that sends nothing cannot be told why: there is no
   * channel yet, so it is just closed (and logged).
   */
  async #handshake(conn: Deno.TcpConn, deadline: number): Promise<Handshake | undefined> {
    const remote = addressOf(conn);
    const { firstByteTimeoutMs } = this.#context.config.limits;
    const watched = watchFirstByte(conn);
    const silence = setTimeout(() => {
      if (watched.heard()) return;
      this.#deps.log(
        "info",
        `Connection from ${remote} sent nothing within ${firstByteTimeoutMs} ms: closed ` +
          "(first-byte-timeout)",
      );
      closeQuietly(conn);
    }, firstByteTimeoutMs);
    try {
      if (this.#closing) throw new Error("the server is shutting down");
      return await respond(watched.conn, this.#deps.serverKey, {
        prologue: CHANNEL_PROLOGUE,
        timeoutMs: Math.max(1, deadline - Date.now()),
        peer: remote,
      });
    } catch (error) {
      closeQuietly(conn);
      this.#deps.log(
        "info",
        `Connection from ${remote} ended in the handshake: ${messageOf(error)}`,
      );
      return undefined;
    } finally {
      clearTimeout(silence);
    }
  }

  /** Keeps a connection's task until it ends; a failure in it is logged, never fatal. */
  #track(task: Promise<void>): void {
    const tracked = task.catch((error) => {
      this.#deps.log("error", `Connection task failed: ${errorDetail(error)}`);
    });
    this.#running.add(tracked);
    tracked.finally(() => this.#running.delete(tracked));
  }

  /**
   * Ends held mail whose time is up and tells the senders; returns how many items ended. The
   * server does this once a minute by itself.
   */
  sweepMail(now: number = Date.now()): Promise<number> {
    const run = this.#mailSweep.then(() => this.#context.mail.sweep(now));
    this.#mailSweep = run.catch((error) => {
      this.#deps.log("error", `Mailbox sweep failed: ${errorDetail(error)}`);
    });
    return run;
  }

  /** Pings quiet peers and cuts off those silent past the idle timeout. */
  #sweep(): void {
    const { keepaliveMs, idleTimeoutMs } = this.#context.config.limits;
    const now = Date.now();
    if (now - this.#lastMailSweep > MAIL_SWEEP_MS && !this.#closing) {
      this.#lastMailSweep = now;
      this.sweepMail(now).catch(() => {});
    }
    for (const peer of this.#peers) {
      const quiet = now - peer.lastFrameAt;
      if (quiet > idleTimeoutMs) {
        void peer.hangUp(
          new ReelayError("idle-timeout", `No frame received for ${Math.round(quiet / 1000)} s`),
        );
      } else if (quiet > keepaliveMs && peer.joined && now - peer.lastPingAt > keepaliveMs) {
        peer.lastPingAt = now;
        peer.notify({ type: "ping" });
      }
    }
  }
}

function addressOf(conn: Deno.Conn): string {
  const address = conn.remoteAddr;
  return address.transport === "tcp" ? `${address.hostname}:${address.port}` : "unknown";
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // Already closed.
  }
}
