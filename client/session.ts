/**
 * A client's connection to a reelay server: the join, requests and their answers, keepalive and
 * shutdown. The directory copy is `peers.ts`, sealing and opening `chat.ts`, video `watching.ts`
 * (one stream in `viewing.ts`); the session wires them to the connection and reports everything
 * as {@linkcode ClientEvent}s.
 * It never touches the terminal.
 *
 * @module
 */

import { type Deferred, deferred, Wake, withTimeout } from "../shared/async.ts";
import type { ServerPins } from "../shared/channel/mod.ts";
import {
  type Identity,
  newEpoch,
  type RatchetDebugState,
  signAnnouncement,
  signJoinProof,
} from "../shared/crypto/mod.ts";
import { errorDetail, messageOf, ProtocolError, ReelayError } from "../shared/errors.ts";
import { toBase64 } from "../shared/bytes.ts";
import { nameKey } from "../shared/names.ts";
import {
  type Announcement,
  type ClientConnection,
  type ClientMessage,
  DEFAULT_MAX_FRAME_BYTES,
  FramedConnection,
  isDisconnect,
  PROTOCOL_VERSION,
  type ServerMessage,
  type VideoListing,
} from "../shared/protocol/mod.ts";
import { Conversations, type Correspondent } from "./conversations.ts";
import {
  type Address,
  type ReconnectHost,
  Reconnector,
  type ReconnectPolicy,
  type SessionEnd,
} from "./reconnect.ts";
import type { ClientEvent, PeerView } from "./events.ts";
import { Peers } from "./peers.ts";
import type { SinkFactory } from "./player.ts";
import { type SecureDial, secureDial } from "./server_trust.ts";
import type { AuthenticatedServer } from "./server_store.ts";
import type { ClientStore } from "./store/mod.ts";
import { type VideoRequest, Watching, type WatchingHost } from "./watching.ts";

/** How to reach the server and who we are. */
export interface SessionOptions {
  hostname: string;
  port: number;
  name: string;
  identity: Identity;
  /**
   * Opens the client store (pins, conversations, history) of the server whose key the handshake
   * authenticated (see `server_store.ts`); the session closes it when it ends.
   */
  openStore: (server: AuthenticatedServer) => Promise<ClientStore>;
  /** The server keys this client has pinned (`known_servers.json` in its home). */
  serverPins: ServerPins;
  /** A new server key fingerprint the person accepted (`--accept-server-key`). */
  acceptServerKey?: string;
  /** Where streams go; defaults to discarding them. */
  sinks?: SinkFactory;
  /** Cap on a frame from the server. */
  maxFrameBytes?: number;
  /** Ping the server after this much quiet; give up after three times as long. */
  keepaliveMs?: number;
  /** Give up joining after this long. */
  joinTimeoutMs?: number;
  /**
   * Give up on a request the server has not answered after this long (default
   * {@linkcode REQUEST_TIMEOUT_MS}): it fails with `request-timeout` instead of waiting forever.
   */
  requestTimeoutMs?: number;
  /**
   * Dial again when the connection is lost (see `reconnect.ts`), keeping conversations, the
   * directory copy, unanswered requests and the video's position. Without it, a lost connection
   * ends the session.
   */
  reconnect?: ReconnectPolicy;
  /** The clock prekey rotation reads (ms since the epoch); defaults to `Date.now`. */
  now?: () => number;
}

/** How long a request waits for the server's answer unless told otherwise. */
export const REQUEST_TIMEOUT_MS = 30_000;

/**
 * Requests waiting at once (for an answer, or for the server to come back); more fail with
 * `too-many-requests`, so a program sending while the server is away cannot grow the queue
 * without bound.
 */
export const MAX_PENDING_REQUESTS = 1024;

/** A request waiting for its answer; kept across a reconnect and sent again. */
interface Pending {
  message: ClientMessage;
  answer: Deferred<ServerMessage>;
  timer?: ReturnType<typeof setTimeout>;
}

/** Requests the session sends with a `ref`, answered by the server with the same `ref`. */
type Request =
  | Omit<ClientMessage & { type: "send" }, "ref">
  | Omit<ClientMessage & { type: "prekeys" }, "ref">
  | Omit<ClientMessage & { type: "bundle" }, "ref">
  | VideoRequest;

const CLIENT_QUEUE_BYTES = 64 * 1024 * 1024;

/**
 * A joined session with a reelay server.
 *
 * @example
 * ```ts ignore
 * const session = await ClientSession.connect({ hostname: "127.0.0.1", port: 9000, name: "alice", identity, openStore });
 * session.onEvent((event) => console.log(event));
 * await session.send("bob", "hello");
 * await session.quit();
 * ```
 */
export class ClientSession {
  readonly name: string;
  /** `host:port` of the connection of the moment (another address after a failover). */
  #server: string;
  readonly #options: SessionOptions;
  #framed!: ClientConnection;
  #channel!: SecureDial;
  readonly #conversations: Conversations;
  readonly #peers: Peers;
  readonly #pending = new Map<number, Pending>();
  readonly #listeners: ((event: ClientEvent) => void)[] = [];
  readonly #early: ClientEvent[] = [];
  readonly #watching: Watching;
  readonly #idle = new Wake();
  readonly #closed = deferred<SessionEnd>();
  /** Resolves once a shutdown is over, the store closed. */
  readonly #stopped = deferred<void>();
  /** Dials again when the connection is lost (`reconnect.ts`). */
  readonly #reconnector: Reconnector;
  readonly #hinted = new Set<string>();
  #nextRef = 1;
  #inFlight = 0;
  #ended: SessionEnd | undefined;
  #keepalive: ReturnType<typeof setInterval> | undefined;
  #reading: Promise<void> = Promise.resolve();
  #welcome: Deferred<string> | undefined;
  /** Whether the current connection completed its join. */
  #joined = false;
  /** During a rejoin: the people the new directory lists (the others left meanwhile). */
  #listed: Set<string> | undefined;
  /** This server key's client store, closed when the session ends. */
  readonly store: ClientStore;

  private constructor(options: SessionOptions, channel: SecureDial, store: ClientStore) {
    this.#options = options;
    this.store = store;
    this.name = options.name;
    this.#server = `${options.hostname}:${options.port}`;
    this.#conversations = new Conversations({
      identity: options.identity,
      name: options.name,
      store,
      now: options.now,
      emit: (event) => this.#emit(event),
      link: {
        request: (message) => this.#request(message as Request),
        post: (message) => {
          if (!this.#ended && !this.#reconnector.down) this.#framed.sendMessage(message);
        },
      },
    });
    const emit = (event: ClientEvent) => this.#emit(event);
    this.#peers = new Peers(options, store, emit);
    // The viewer always talks over the connection of the moment.
    const current = () => this.#framed;
    const link = {
      sendMessage: (message: ClientMessage) => current().sendMessage(message),
      get closed(): boolean {
        return current().closed;
      },
    };
    this.#watching = new Watching(this.#watchingHost(), link, options.sinks);
    this.#reconnector = new Reconnector(this.#reconnectHost(), options.reconnect);
    this.#attach(channel);
  }

  /**
   * Connects, runs the secure handshake and checks the server's key against its pin, signs and
   * sends the hello, and waits for the welcome. Throws a {@linkcode ReelayError} with the
   * server's code (e.g. `name-taken`) when the join is refused, and `server-key-changed` when
   * the server's key is not the pinned one.
   */
  static async connect(options: SessionOptions): Promise<ClientSession> {
    const channel = await ClientSession.#dial(options, options);
    let store: ClientStore;
    try {
      store = await options.openStore({
        address: `${options.hostname}:${options.port}`,
        fingerprint: channel.serverFingerprint,
        keyStatus: channel.serverKeyStatus,
      });
    } catch (error) {
      channel.transport.close();
      throw error;
    }
    const session = new ClientSession(options, channel, store);
    try {
      await session.#join();
      // Before anything else leaves: the receipts owed since the last session come first.
      session.#conversations.resendReceipts();
      await session.#conversations.publishPrekeys();
    } catch (error) {
      await session.#shutdown({ code: "join-failed", reason: messageOf(error) });
      throw error;
    }
    return session;
  }

  static #dial(
    options: SessionOptions,
    address: Address,
    rejoin?: { signal: AbortSignal; sessionFingerprint: string },
  ): Promise<SecureDial> {
    return secureDial({
      hostname: address.hostname,
      port: address.port,
      pins: options.serverPins,
      acceptServerKey: options.acceptServerKey,
      timeoutMs: options.joinTimeoutMs,
      ...rejoin,
    });
  }

  /** Makes `channel` the connection of the session and starts reading it. */
  #attach(channel: SecureDial): void {
    this.#channel = channel;
    const framed = FramedConnection.forClient(channel.transport, {
      maxFrameBytes: this.#options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES,
      maxQueueBytes: CLIENT_QUEUE_BYTES,
    });
    this.#framed = framed;
    this.#joined = false;
    const keepaliveMs = this.#options.keepaliveMs ?? 15_000;
    clearInterval(this.#keepalive);
    this.#keepalive = setInterval(
      () => this.#checkAlive(keepaliveMs),
      Math.min(1000, keepaliveMs / 2),
    );
    const reading = this.#readLoop(framed);
    this.#reading = reading.then(() => {});
    void reading.then((end) => this.#connectionEnded(framed, end)).catch((error) =>
      this.#shutdown({ code: "bug", reason: errorDetail(error) })
    );
  }

  /** `host:port` of the server as dialled, the address of the connection of the moment. */
  get server(): string {
    return this.#server;
  }

  /** Resolves when the connection ended, for any reason. */
  get closed(): Promise<SessionEnd> {
    return this.#closed.promise;
  }

  /**
   * Subscribes to every event. Events from before the first subscription (the welcome and the
   * people already online) are replayed to it, so nothing said during the join is lost.
   */
  onEvent(listener: (event: ClientEvent) => void): void {
    this.#listeners.push(listener);
    for (const event of this.#early.splice(0)) listener(event);
  }

  /** The people online (a local copy kept current by join and leave notices). */
  who(): PeerView[] {
    return this.#peers.who();
  }

  /**
   * Seals `text` for `to` (online, or offline but talked with before) and resolves once the
   * server relayed it (`sent`) or held it for them (`queued`); `delivered` follows when their
   * client took it.
   */
  async send(to: string, text: string): Promise<void> {
    const target = this.#correspondent(to);
    await this.#tracked(() => this.#conversations.send(target, text));
  }

  /** Whom `to` names: someone online (pinned now if not yet), or someone pinned before. */
  #correspondent(to: string): Correspondent {
    const online = this.#peers.find(to);
    if (online || nameKey(to) === nameKey(this.name)) {
      const peer = this.#peers.sendable(to);
      this.#peers.interact(peer);
      this.#hintVerify(peer.announcement.name, peer.trust);
      return {
        name: peer.announcement.name,
        keys: peer.announcement.keys,
        fingerprint: peer.fullFingerprint,
      };
    }
    const pin = this.store.pinned(to);
    if (!pin) {
      throw new ReelayError(
        "unknown-recipient",
        `Nobody called ${JSON.stringify(to)} is online, and you never talked with them (see /who)`,
      );
    }
    this.#hintVerify(pin.name, pin.state);
    return { name: pin.name, keys: pin.keys, fingerprint: pin.fingerprint };
  }

  /**
   * Test hook: what a test may see of the ratchet with `name` (hashes of chain keys, public
   * ratchet keys, counters; never a key), if a conversation is open.
   */
  ratchetState(name: string): Promise<RatchetDebugState | undefined> {
    return this.#conversations.ratchetWith(name)?.debugState() ?? Promise.resolve(undefined);
  }

  /** The 60-digit safety number both people compare out of band. */
  verify(name: string): Promise<{ code: string; fingerprint: string; yourFingerprint: string }> {
    return this.#peers.verify(name);
  }

  /** Accepts the key `name` shows (the one `/verify` showed); emits `trusted`. */
  trust(name: string): Promise<void> {
    return this.#peers.trust(name);
  }

  /** Asks the server for its catalog. */
  listVideos(): Promise<VideoListing[]> {
    return this.#watching.listVideos();
  }

  /**
   * Starts playing `video` (stopping any current stream), from `from` seconds into it when
   * given; resolves once it started.
   */
  play(video: string, options: { from?: number } = {}): Promise<void> {
    return this.#watching.play(video, options);
  }

  /**
   * Pauses the current stream; `not-playing` when nothing plays. While the server is away, the
   * video waiting to resume comes back paused.
   */
  pause(): void {
    this.#watching.pause();
  }

  /** Resumes the paused stream where it was; `not-playing` when nothing plays. */
  resume(): void {
    this.#watching.resume();
  }

  /**
   * Moves to `seconds` into the video, or by `seconds` from the current position when
   * `relative`: the player restarts cleanly on a new stream that starts at the frame shown then,
   * at that third's resolution. A position before the start is the start; one at or past the end
   * is refused with `bad-position` and the stream goes on. `not-playing` when nothing plays.
   */
  seek(seconds: number, relative = false): Promise<void> {
    return this.#watching.seek(seconds, relative);
  }

  /** Stops the current stream; `not-playing` when nothing plays. */
  stop(): Promise<void> {
    return this.#watching.stop();
  }

  /** Resolves when no request is waiting for an answer and no stream is running. */
  async idle(): Promise<void> {
    while (!this.#isIdle()) await this.#idle.wait();
  }

  /** Says goodbye and closes (also while reconnecting: the next attempt is called off). Idempotent. */
  async quit(): Promise<void> {
    this.#reconnector.stop(new ReelayError("quit", "You left"));
    if (!this.#ended && !this.#reconnector.down && !this.#framed.closed) {
      this.#framed.sendMessage({ type: "bye" });
      await this.#framed.flushAndClose(undefined, 1000);
    }
    await this.#shutdown({ code: "quit", reason: "You left" });
    await this.#reconnector.settled();
  }

  /** Says once per person and session how to verify someone who is not verified yet. */
  #hintVerify(name: string, trust: string): void {
    if (trust !== "new" || this.#hinted.has(nameKey(name))) return;
    this.#hinted.add(nameKey(name));
    this.#emit({
      event: "verify-hint",
      name,
      message: `${name} is not verified: compare /verify ${name} with them in person or by ` +
        `phone, then /trust ${name}`,
    });
  }

  /** Signs a new hello, sends it with its proof and waits for the welcome. */
  async #join(rejoin = false): Promise<void> {
    const options = this.#options;
    const hello = await signAnnouncement(options.identity, options.name, newEpoch());
    const timeoutMs = options.joinTimeoutMs ?? 10_000;
    this.#welcome = deferred<string>();
    // Ended while the proof is signed (the person left, the line dropped): rejected before it is
    // awaited below, which still sees it; not an unhandled rejection meanwhile.
    this.#welcome.promise.catch(() => {});
    // The proof binds this hello to this connection: recorded, it joins nowhere else.
    const proof = await signJoinProof(options.identity, this.#channel.handshakeHash, hello);
    this.#framed.sendMessage({ type: "hello", protocol: PROTOCOL_VERSION, ...hello, proof });
    try {
      const name = await withTimeout(this.#welcome.promise, timeoutMs, () =>
        new ReelayError(
          "join-timeout",
          `Server ${this.server} did not answer the join within ${timeoutMs / 1000} s: ` +
            `is it a reelay server?`,
        ));
      this.#joined = true;
      if (!rejoin) this.#emit(this.#welcomeEvent(name));
    } finally {
      this.#welcome = undefined;
    }
  }

  #welcomeEvent(name: string): ClientEvent {
    const who = this.#peers.who();
    return {
      event: "welcome",
      server: this.server,
      name,
      fingerprint: this.#options.identity.fingerprint,
      online: this.#peers.size + 1,
      serverFingerprint: this.#channel.serverFingerprint,
      serverKey: this.#channel.serverKeyStatus,
      names: who.map((peer) => peer.name),
      verified: who.filter((peer) => peer.trust === "verified").length,
      changed: who.filter((peer) => peer.trust === "changed").length,
    };
  }

  /** Reads `framed` until it ends; resolves with why. */
  async #readLoop(framed: ClientConnection): Promise<SessionEnd> {
    let end: SessionEnd = {
      code: "server-closed",
      reason: `Server ${this.server} closed the connection`,
    };
    try {
      for await (const item of framed.receive()) {
        if (item.kind === "stream") this.#watching.streamData(item.chunk);
        else if (item.kind === "malformed") throw item.error;
        else end = await this.#handle(item.message) ?? end;
      }
    } catch (error) {
      end = this.#endFor(error);
    }
    if (framed.closeReason) {
      end = { code: framed.closeReason.code, reason: framed.closeReason.message };
    }
    framed.close();
    return end;
  }

  /**
   * A connection ended. During its join, the join fails (whoever joins decides what next);
   * after it, the session reconnects, or ends when it cannot or should not.
   */
  async #connectionEnded(framed: ClientConnection, end: SessionEnd): Promise<void> {
    if (framed !== this.#framed || this.#ended) return;
    if (!this.#joined) {
      this.#welcome?.reject(new ReelayError(end.code, end.reason));
      if (!this.#reconnector.down) await this.#shutdown(end);
      return;
    }
    if (!this.#reconnector.retries(end)) return await this.#shutdown(end);
    // Its failure ends the session (see `#attach`); quit() only waits for it to be over.
    await this.#reconnector.run(end);
  }

  /** What the reconnect loop borrows from the session. */
  #reconnectHost(): ReconnectHost {
    return {
      server: () => this.server,
      ended: () => this.#ended !== undefined,
      emit: (event) => this.#emit(event),
      hold: (lost) => this.#holdWork(lost),
      rejoin: (address, signal) => this.#rejoin(address ?? this.#options, signal),
      back: (downMs, attempts) => this.#back(downMs, attempts),
      end: (ending, tell) => this.#shutdown(ending, tell),
      endingOf: (error) => this.#endFor(error),
    };
  }

  /** What the video side borrows from the session. */
  #watchingHost(): WatchingHost {
    return {
      request: (request, ref) => this.#request(request, ref),
      nextRef: () => this.#nextRef++,
      tracked: (task) => this.#tracked(task),
      emit: (event) => this.#emit(event),
      ended: () => this.#ended !== undefined,
      settleIdle: () => this.#settleIdle(),
    };
  }

  /**
   * The connection is down: fail a video not started, note the video. Requests sent keep their
   * deadline, so a server that cuts the line before it answers cannot hold them for ever.
   */
  async #holdWork(lost: SessionEnd): Promise<void> {
    for (const [ref, pending] of this.#pending) {
      if (pending.message.type === "play") {
        clearTimeout(pending.timer);
        this.#pending.delete(ref);
        pending.answer.reject(
          new ReelayError("connection-lost", `${lost.reason} before the video started`),
        );
      }
    }
    clearInterval(this.#keepalive);
    await this.#watching.lost(lost);
  }

  /** Dials `address`, joins again and brings the directory copy up to date. */
  async #rejoin(address: Address, signal: AbortSignal): Promise<void> {
    const channel = await ClientSession.#dial(this.#options, address, {
      signal,
      sessionFingerprint: this.#channel.serverFingerprint,
    });
    if (this.#ended) {
      channel.transport.close();
      throw new ReelayError(this.#ended.code, this.#ended.reason);
    }
    this.#server = `${address.hostname}:${address.port}`;
    this.#attach(channel);
    this.#listed = new Set();
    try {
      await this.#join(true);
    } catch (error) {
      this.#framed.close();
      await this.#reading;
      throw error;
    } finally {
      const listed = this.#listed;
      this.#listed = undefined;
      if (this.#joined) {
        for (const peer of this.#peers.who()) {
          if (!listed.has(nameKey(peer.name))) this.#peers.remove(peer.name);
        }
      }
    }
  }

  /** Joined again: says so, sends what was unanswered, publishes prekeys, resumes the video. */
  async #back(downMs: number, attempts: number): Promise<void> {
    this.#emit({
      event: "reconnected",
      server: this.server,
      afterMs: downMs,
      attempts,
      online: this.#peers.size + 1,
      names: this.#peers.who().map((peer) => peer.name),
    });
    // The receipts whose request failed meanwhile go before the requests that waited, which are
    // newer (each request's deadline runs from when it was first sent).
    const waiting = [...this.#pending];
    this.#conversations.resendReceipts();
    for (const [ref, pending] of waiting) this.#transmit(ref, pending);
    try {
      await this.#tracked(() => this.#conversations.publishPrekeys());
    } catch (error) {
      if (!this.#ended) this.#emit({ event: "error", code: "prekeys", message: messageOf(error) });
    }
    await this.#watching.back();
    this.#settleIdle();
  }

  #endFor(error: unknown): SessionEnd {
    if (error instanceof ProtocolError && this.#welcome) {
      return {
        code: "not-reelay",
        reason: `${this.server} is not a reelay server (it does not speak reelay's protocol: ` +
          `${error.message})`,
      };
    }
    if (error instanceof ReelayError) return { code: error.code, reason: error.message };
    if (isDisconnect(error)) {
      return { code: "server-lost", reason: `Connection to ${this.server} was lost` };
    }
    return { code: "bug", reason: errorDetail(error) };
  }

  /** Handles one server message; returns why the session ends when it is a goodbye. */
  async #handle(message: ServerMessage): Promise<SessionEnd | undefined> {
    switch (message.type) {
      case "directory":
        for (const peer of message.peers) await this.#listPeer(peer);
        break;
      case "welcome":
        this.#watching.windowBytes = message.limits.windowBytes;
        this.#welcome?.resolve(message.name);
        break;
      case "joined":
        await this.#peers.add(message.peer, true);
        break;
      case "left":
        this.#peers.remove(message.name);
        break;
      case "deliver": {
        const online = this.#peers.find(message.from);
        const pin = this.store.pinned(message.from);
        // The keys the client verified in an announcement come first; the server's claim after.
        const keys = online?.announcement.keys ?? message.fromKeys ?? pin?.keys;
        // Taking a message from someone is an interaction: their key is pinned from now on. Only
        // once it opened: bytes the server made up (or an ignored sender's) pin nothing.
        const pinSender = () => {
          if (online && !pin && online.trust !== "changed") this.#peers.interact(online);
        };
        await this.#conversations.receive(message, keys, pin?.fingerprint, pinSender);
        break;
      }
      case "refused": {
        const pin = this.store.pinned(message.from);
        const keys = pin?.keys ?? this.#peers.find(message.from)?.announcement.keys;
        await this.#conversations.refused(message, keys);
        break;
      }
      case "failed":
        this.#conversations.failed(message);
        break;
      case "sealed":
        this.#emit({
          event: "sealed",
          from: message.from,
          to: message.to,
          bytes: message.envelope.length,
          envelope: toBase64(message.envelope),
        });
        break;
      case "stream-start":
        // Started here, in frame order, so no stream byte can arrive before the stream is known.
        this.#watching.streamStarted(message);
        this.#answer(message.ref, message);
        break;
      case "relayed":
      case "queued":
      case "bundle":
      case "prekeys-stored":
      case "videos":
        this.#answer(message.ref, message);
        break;
      case "stream-end":
        this.#watching.streamEnded(message);
        break;
      case "error":
        return this.#serverError(message);
      case "ping":
        this.#framed.sendMessage({ type: "pong" });
        break;
      case "shutdown":
        return { code: "server-shutdown", reason: message.message };
    }
    return undefined;
  }

  /**
   * A person the server lists before its welcome. After a reconnect, only those who were not
   * online before are news (`joined`); whoever the new list leaves out has left meanwhile.
   */
  async #listPeer(peer: Announcement): Promise<void> {
    const rejoin = this.#listed;
    rejoin?.add(nameKey(peer.name));
    const news = rejoin !== undefined && this.#peers.find(peer.name) === undefined;
    await this.#peers.add(peer, this.#welcome === undefined || news);
  }

  #serverError(message: ServerMessage & { type: "error" }): SessionEnd | undefined {
    const error = new ReelayError(message.code, message.message);
    if (this.#welcome && message.ref === undefined) {
      this.#welcome.reject(error);
      return { code: message.code, reason: message.message };
    }
    const pending = message.ref === undefined ? undefined : this.#pending.get(message.ref);
    if (pending && message.ref !== undefined) {
      this.#pending.delete(message.ref);
      clearTimeout(pending.timer);
      pending.answer.reject(error);
      return;
    }
    this.#emit({ event: "error", code: message.code, message: message.message });
    // The server closes right after: this is why, and it is not worth reconnecting over.
    if (message.code === "replaced") return { code: message.code, reason: message.message };
  }

  #answer(ref: number | undefined, message: ServerMessage): void {
    const pending = ref === undefined ? undefined : this.#pending.get(ref);
    if (!pending || ref === undefined) return;
    this.#pending.delete(ref);
    clearTimeout(pending.timer);
    pending.answer.resolve(message);
  }

  /**
   * Sends a request and resolves with its answer. While the connection is down the request
   * waits and goes out once it is back; an unanswered one is sent again after a reconnect (the
   * server answers it again; a message sent twice is dropped by id at its recipient). Its
   * timeout runs from when it was first sent, through any reconnect: it is not restarted.
   */
  #request(request: Request, ref = this.#nextRef++): Promise<ServerMessage> {
    if (this.#ended) return Promise.reject(new ReelayError(this.#ended.code, this.#ended.reason));
    if (this.#pending.size >= MAX_PENDING_REQUESTS) {
      return Promise.reject(
        new ReelayError(
          "too-many-requests",
          `${this.#pending.size} requests already wait for ${this.server}` +
            (this.#reconnector.down ? " to come back" : " to answer") + ": try again later",
        ),
      );
    }
    const pending: Pending = { message: { ...request, ref } as ClientMessage, answer: deferred() };
    this.#pending.set(ref, pending);
    if (!this.#reconnector.down) this.#transmit(ref, pending);
    return pending.answer.promise;
  }

  #transmit(ref: number, pending: Pending): void {
    this.#framed.sendMessage(pending.message);
    if (pending.timer !== undefined) return; // sent again: the first deadline holds
    const timeoutMs = this.#options.requestTimeoutMs ?? REQUEST_TIMEOUT_MS;
    pending.timer = setTimeout(() => {
      this.#pending.delete(ref);
      pending.answer.reject(
        new ReelayError(
          "request-timeout",
          `Server ${this.server} did not answer "${pending.message.type}" within ` +
            `${timeoutMs / 1000} s`,
        ),
      );
    }, timeoutMs);
  }

  async #tracked<T>(task: () => Promise<T>): Promise<T> {
    this.#inFlight++;
    try {
      return await task();
    } finally {
      this.#inFlight--;
      this.#settleIdle();
    }
  }

  #isIdle(): boolean {
    if (this.#ended !== undefined) return true;
    return this.#inFlight === 0 && !this.#watching.busy;
  }

  #settleIdle(): void {
    if (this.#isIdle()) this.#idle.wake();
  }

  #checkAlive(keepaliveMs: number): void {
    if (!this.#joined) return;
    const quiet = Date.now() - this.#framed.lastReceived;
    if (quiet > keepaliveMs * 3) {
      this.#framed.close(
        new ReelayError("server-timeout", `Server ${this.server} stopped answering`),
      );
    } else if (quiet > keepaliveMs) {
      this.#framed.sendMessage({ type: "ping" });
    }
  }

  async #shutdown(end: SessionEnd, tell = true): Promise<void> {
    if (this.#ended) return await this.#stopped.promise;
    this.#ended = end;
    const error = new ReelayError(end.code, end.reason);
    this.#reconnector.stop(error);
    clearInterval(this.#keepalive);
    this.#framed.close();
    this.#welcome?.reject(error);
    for (const pending of this.#pending.values()) {
      clearTimeout(pending.timer);
      pending.answer.reject(error);
    }
    this.#pending.clear();
    try {
      await this.#watching.end(end);
      if (tell && end.code !== "quit" && end.code !== "join-failed") {
        this.#emit({ event: "disconnected", code: end.code, reason: end.reason });
      }
    } finally {
      // Whatever failed above (a listener that throws), the session still ends.
      this.#closed.resolve(end);
      this.#settleIdle();
      await this.#closeStore();
    }
    await this.#framed.done;
  }

  /**
   * Closes the store once nothing writes to it any more: a message being handled by the reader,
   * or a send, a play or the prekeys in the conversations' queue, which all fail or finish now
   * that the session ended.
   */
  async #closeStore(): Promise<void> {
    try {
      await this.#reading; // the message being handled is kept before the store closes
      while (this.#inFlight > 0) await this.#idle.wait();
    } finally {
      // What is staged for the store goes in first, with the receipts still owed.
      await this.#conversations.close().catch(() => {});
      this.store.close();
      this.#stopped.resolve();
    }
  }

  #emit(event: ClientEvent): void {
    if (this.#listeners.length === 0) this.#early.push(event);
    for (const listener of this.#listeners) listener(event);
  }
}
