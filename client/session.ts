/**
 * A client's connection to a reelay server: join, directory with pinned keys, sealed chat, and
 * video streams handed to a sink. It reports everything as {@linkcode ClientEvent}s and never
 * touches the terminal.
 *
 * @module
 */

import {
  type Identity,
  Inbox,
  newEpoch,
  Outbox,
  signAnnouncement,
  verificationCode,
  verifyAnnouncement,
} from "../shared/crypto/mod.ts";
import { fromBase64, toBase64 } from "../shared/bytes.ts";
import { fingerprint } from "../shared/crypto/identity.ts";
import { messageOf, ProtocolError, ReelayError } from "../shared/errors.ts";
import { nameKey } from "../shared/names.ts";
import {
  decodeStreamPayload,
  DEFAULT_MAX_FRAME_BYTES,
  KIND_CONTROL,
  KIND_STREAM,
} from "../shared/protocol/frame.ts";
import { FramedConnection, isDisconnect } from "../shared/protocol/framed.ts";
import {
  type Announcement,
  parseServerMessage,
  PROTOCOL_VERSION,
  type ServerMessage,
  type VideoListing,
} from "../shared/protocol/messages.ts";
import type { ClientEvent, PeerView } from "./events.ts";
import type { KnownPeers } from "./keystore.ts";
import type { SinkFactory } from "./player.ts";
import { Viewing } from "./viewing.ts";

/** How to reach the server and who we are. */
export interface SessionOptions {
  hostname: string;
  port: number;
  name: string;
  identity: Identity;
  knownPeers: KnownPeers;
  /** Where streams go; defaults to discarding them. */
  sinks?: SinkFactory;
  /** Cap on a frame from the server. */
  maxFrameBytes?: number;
  /** Ping the server after this much quiet; give up after three times as long. */
  keepaliveMs?: number;
  /** Give up joining after this long. */
  joinTimeoutMs?: number;
}

interface Peer {
  announcement: Announcement;
  fingerprint: string;
  trust: PeerView["trust"];
}

interface Pending {
  resolve: (message: ServerMessage) => void;
  reject: (error: ReelayError) => void;
}

/** Why a session ended. */
export interface SessionEnd {
  code: string;
  reason: string;
}

const CLIENT_QUEUE_BYTES = 64 * 1024 * 1024;

/**
 * A joined session with a reelay server.
 *
 * @example
 * ```ts ignore
 * const session = await ClientSession.connect({ hostname: "127.0.0.1", port: 9000, name: "alice", identity, knownPeers });
 * session.onEvent((event) => console.log(event));
 * await session.send("bob", "hello");
 * await session.quit();
 * ```
 */
export class ClientSession {
  readonly name: string;
  readonly server: string;
  readonly #options: SessionOptions;
  readonly #framed: FramedConnection;
  readonly #inbox: Inbox;
  readonly #outbox: Outbox;
  readonly #peers = new Map<string, Peer>();
  readonly #pending = new Map<number, Pending>();
  readonly #listeners: ((event: ClientEvent) => void)[] = [];
  readonly #early: ClientEvent[] = [];
  readonly #epochsSeen = new Map<string, Set<string>>();
  readonly #verified = new Map<string, string>();
  readonly #viewing: Viewing;
  #nextRef = 1;
  #inFlight = 0;
  #idleWaiters: (() => void)[] = [];
  #ended: SessionEnd | undefined;
  readonly closed: Promise<SessionEnd>;
  #resolveClosed!: (end: SessionEnd) => void;
  readonly #keepalive: ReturnType<typeof setInterval>;
  #reading: Promise<void> = Promise.resolve();
  #joinWaiter:
    | { resolve: (name: string) => void; reject: (error: ReelayError) => void }
    | undefined;

  private constructor(options: SessionOptions, conn: Deno.TcpConn, epoch: string) {
    this.#options = options;
    this.name = options.name;
    this.server = `${options.hostname}:${options.port}`;
    this.#framed = new FramedConnection(conn, {
      maxFrameBytes: options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES,
      maxQueueBytes: CLIENT_QUEUE_BYTES,
    });
    this.#inbox = new Inbox(options.identity, options.name, epoch);
    this.#outbox = new Outbox(options.identity, options.name, epoch);
    this.closed = new Promise((resolve) => this.#resolveClosed = resolve);
    this.#viewing = new Viewing(
      this.#framed,
      (event) => this.#emit(event),
      () => this.#settleIdle(),
    );
    const keepaliveMs = options.keepaliveMs ?? 15_000;
    this.#keepalive = setInterval(
      () => this.#checkAlive(keepaliveMs),
      Math.min(1000, keepaliveMs / 2),
    );
  }

  /**
   * Connects, signs and sends the hello, and waits for the welcome. Throws a
   * {@linkcode ReelayError} with the server's code (e.g. `name-taken`) when the join is refused.
   */
  static async connect(options: SessionOptions): Promise<ClientSession> {
    const conn = await dial(options.hostname, options.port);
    conn.setNoDelay(true);
    const epoch = newEpoch();
    const session = new ClientSession(options, conn, epoch);
    try {
      await session.#join(await signAnnouncement(options.identity, options.name, epoch));
    } catch (error) {
      await session.#shutdown({ code: "join-failed", reason: messageOf(error) });
      throw error;
    }
    return session;
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
    return [...this.#peers.values()].map((peer) => ({
      name: peer.announcement.name,
      fingerprint: peer.fingerprint,
      trust: peer.trust,
    }));
  }

  /** Seals `text` for `to` and resolves once the server relayed it. */
  async send(to: string, text: string): Promise<void> {
    const peer = this.#peerFor(to);
    if (peer.trust === "changed") {
      throw new ReelayError(
        "key-changed",
        `Key of ${
          JSON.stringify(peer.announcement.name)
        } changed: compare /verify ${peer.announcement.name} ` +
          `with them, then /trust ${peer.announcement.name} to send again`,
      );
    }
    const { name, keys, epoch } = peer.announcement;
    await this.#tracked(async () => {
      const sealed = await this.#outbox.seal(name, keys, epoch, text);
      await this.#request({ type: "send", to: name, envelope: toBase64(sealed.bytes) });
      this.#emit({ event: "sent", to: name, id: sealed.id });
    });
  }

  /** The verification code both people compare out of band. */
  async verify(
    name: string,
  ): Promise<{ code: string; fingerprint: string; yourFingerprint: string }> {
    const peer = this.#peerFor(name);
    const code = await verificationCode(
      this.name,
      this.#options.identity.public,
      peer.announcement.name,
      peer.announcement.keys,
    );
    this.#verified.set(nameKey(name), peer.fingerprint);
    return {
      code,
      fingerprint: peer.fingerprint,
      yourFingerprint: this.#options.identity.fingerprint,
    };
  }

  /**
   * Accepts the key `name` shows, replacing the pinned one: only the key whose code `/verify`
   * showed, so a key swapped in between the two commands is never the one trusted.
   */
  async trust(name: string): Promise<void> {
    const peer = this.#peerFor(name);
    const verified = this.#verified.get(nameKey(name));
    if (verified !== peer.fingerprint) {
      throw new ReelayError(
        "verify-first",
        verified === undefined
          ? `Run /verify ${name} and compare the code with them before /trust ${name}`
          : `The key of ${JSON.stringify(name)} changed since /verify: run /verify ${name} again`,
      );
    }
    await this.#options.knownPeers.trust(peer.announcement.name, peer.announcement.keys);
    peer.trust = "pinned";
    this.#emit({ event: "trusted", name: peer.announcement.name, fingerprint: peer.fingerprint });
  }

  /** Asks the server for its catalog. */
  async listVideos(): Promise<VideoListing[]> {
    return await this.#tracked(async () => {
      const answer = await this.#request({ type: "videos" });
      return answer.type === "videos" ? answer.videos : [];
    });
  }

  /** Starts playing `video` (stopping any current stream); resolves once it started. */
  async play(video: string): Promise<void> {
    await this.#viewing.stop();
    const sink = (this.#options.sinks ?? (() => undefined))(video);
    await this.#tracked(async () => {
      const ref = this.#nextRef++;
      this.#viewing.expect(ref, sink);
      try {
        await this.#request({ type: "play", video }, ref);
      } catch (error) {
        await this.#viewing.cancel(ref);
        throw error;
      }
    });
  }

  /** Stops the current stream; `not-playing` when nothing plays. */
  async stop(): Promise<void> {
    if (!this.#viewing.active) throw new ReelayError("not-playing", "Nothing is playing");
    await this.#viewing.stop();
  }

  /** Resolves when no request is waiting for an answer and no stream is running. */
  idle(): Promise<void> {
    if (this.#isIdle()) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  /** Says goodbye and closes. Idempotent. */
  async quit(): Promise<void> {
    if (!this.#ended && !this.#framed.closed) {
      this.#framed.sendMessage({ type: "bye" });
      await this.#framed.flushAndClose(undefined, 1000);
    }
    await this.#shutdown({ code: "quit", reason: "You left" });
  }

  async #join(hello: Announcement): Promise<void> {
    const timeoutMs = this.#options.joinTimeoutMs ?? 10_000;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const welcome = new Promise<string>((resolve, reject) => {
      this.#joinWaiter = { resolve, reject };
      timer = setTimeout(
        () =>
          reject(
            new ReelayError(
              "join-timeout",
              `Server ${this.server} did not answer the join within ${timeoutMs / 1000} s: ` +
                `is it a reelay server?`,
            ),
          ),
        timeoutMs,
      );
    });
    this.#reading = this.#readLoop();
    this.#framed.sendMessage({ type: "hello", protocol: PROTOCOL_VERSION, ...hello });
    try {
      const name = await welcome;
      this.#emit({
        event: "welcome",
        server: this.server,
        name,
        fingerprint: this.#options.identity.fingerprint,
        online: this.#peers.size + 1,
      });
    } finally {
      clearTimeout(timer);
      this.#joinWaiter = undefined;
    }
  }

  async #readLoop(): Promise<void> {
    let end: SessionEnd = {
      code: "server-closed",
      reason: `Server ${this.server} closed the connection`,
    };
    try {
      for await (const frame of this.#framed.frames()) {
        if (frame.kind === KIND_STREAM) {
          this.#viewing.data(decodeStreamPayload(frame.payload));
        } else if (frame.kind === KIND_CONTROL) {
          const ended = await this.#handle(parseServerMessage(frame.payload));
          if (ended) end = ended;
        } else {
          throw new ProtocolError("unexpected-frame", `Frame kind ${frame.kind} is unknown`);
        }
      }
    } catch (error) {
      end = error instanceof ProtocolError && this.#joinWaiter
        ? {
          code: "not-reelay",
          reason: `${this.server} is not a reelay server (it does not speak reelay's protocol: ` +
            `${error.message})`,
        }
        : error instanceof ReelayError
        ? { code: error.code, reason: error.message }
        : isDisconnect(error)
        ? { code: "server-lost", reason: `Connection to ${this.server} was lost` }
        : { code: "bug", reason: (error as Error)?.stack ?? String(error) };
    }
    if (this.#framed.closeReason) {
      end = { code: this.#framed.closeReason.code, reason: this.#framed.closeReason.message };
    }
    await this.#shutdown(end);
  }

  /** Handles one server message; returns why the session ends when it is a goodbye. */
  async #handle(message: ServerMessage): Promise<SessionEnd | undefined> {
    switch (message.type) {
      case "directory":
        for (const peer of message.peers) await this.#addPeer(peer, this.#joinWaiter === undefined);
        break;
      case "welcome":
        this.#viewing.windowBytes = message.limits.windowBytes;
        this.#joinWaiter?.resolve(message.name);
        break;
      case "joined":
        await this.#addPeer(message.peer, true);
        break;
      case "left":
        this.#removePeer(message.name);
        break;
      case "deliver":
        await this.#receive(message.from, message.envelope);
        break;
      case "stream-start":
        // Started here, in frame order, so no stream byte can arrive before the stream is known.
        this.#viewing.started(message);
        this.#answer(message.ref, message);
        break;
      case "relayed":
      case "videos":
        this.#answer(message.ref, message);
        break;
      case "stream-end":
        this.#viewing.ended(message);
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

  #serverError(message: ServerMessage & { type: "error" }): SessionEnd | undefined {
    if (this.#joinWaiter && message.ref === undefined) {
      this.#joinWaiter.reject(new ReelayError(message.code, message.message));
      return { code: message.code, reason: message.message };
    }
    if (message.ref !== undefined && this.#pending.has(message.ref)) {
      const pending = this.#pending.get(message.ref)!;
      this.#pending.delete(message.ref);
      pending.reject(new ReelayError(message.code, message.message));
      return;
    }
    this.#emit({ event: "error", code: message.code, message: message.message });
  }

  #answer(ref: number | undefined, message: ServerMessage): void {
    const pending = ref === undefined ? undefined : this.#pending.get(ref);
    if (!pending || ref === undefined) return;
    this.#pending.delete(ref);
    pending.resolve(message);
  }

  async #addPeer(value: Announcement, announce: boolean): Promise<void> {
    let announcement: Announcement;
    try {
      announcement = await verifyAnnouncement(value);
    } catch (error) {
      return this.#emit({ event: "error", code: "bad-announcement", message: messageOf(error) });
    }
    const refused = this.#refuseAnnouncement(announcement);
    if (refused) return this.#emit({ event: "error", ...refused });
    const check = await this.#options.knownPeers.check(announcement.name, announcement.keys);
    const print = await fingerprint(announcement.keys);
    const peer: Peer = {
      announcement,
      fingerprint: print,
      trust: check === "changed" ? "changed" : check === "new" ? "new" : "pinned",
    };
    this.#peers.set(nameKey(announcement.name), peer);
    if (announce) {
      this.#emit({
        event: "joined",
        name: announcement.name,
        fingerprint: print,
        trust: peer.trust,
      });
    }
    if (check === "changed") {
      const pinned = this.#options.knownPeers.get(announcement.name);
      this.#emit({
        event: "key-changed",
        name: announcement.name,
        fingerprint: print,
        pinnedFingerprint: pinned ? await fingerprint(pinned) : "unknown",
      });
    }
  }

  /**
   * Why a verified announcement must still be ignored: it claims our own name, or it brings back
   * an epoch this person already replaced (a server replaying an old connection to replay its
   * sessions). Epochs are remembered for the whole connection.
   */
  #refuseAnnouncement(announcement: Announcement): { code: string; message: string } | undefined {
    const key = nameKey(announcement.name);
    if (key === nameKey(this.name)) {
      return {
        code: "impersonation",
        message: `The server announced someone else as you (${
          JSON.stringify(announcement.name)
        }): ignored`,
      };
    }
    const seen = this.#epochsSeen.get(key) ?? new Set<string>();
    const current = this.#peers.get(key)?.announcement.epoch;
    if (seen.has(announcement.epoch) && current !== announcement.epoch) {
      return {
        code: "replayed-announcement",
        message: `An old announcement of ${
          JSON.stringify(announcement.name)
        } was replayed: ignored`,
      };
    }
    seen.add(announcement.epoch);
    this.#epochsSeen.set(key, seen);
    return undefined;
  }

  #removePeer(name: string): void {
    const peer = this.#peers.get(nameKey(name));
    if (!peer) return;
    this.#peers.delete(nameKey(name));
    this.#emit({ event: "left", name: peer.announcement.name });
  }

  async #receive(from: string, envelope: string): Promise<void> {
    const peer = this.#peers.get(nameKey(from));
    const bytes = fromBase64(envelope);
    try {
      if (!peer) {
        throw new ReelayError(
          "unknown-sender",
          `Message from ${JSON.stringify(from)}, who is not online`,
        );
      }
      if (peer.trust === "changed") {
        throw new ReelayError(
          "key-changed",
          `Message from ${JSON.stringify(from)} ignored: their key changed (see /verify ${from})`,
        );
      }
      if (!bytes) {
        throw new ReelayError("bad-envelope", `Message from ${JSON.stringify(from)} is not base64`);
      }
      const opened = await this.#inbox.open(
        peer.announcement.name,
        peer.announcement.keys,
        peer.announcement.epoch,
        bytes,
      );
      this.#emit({
        event: "message",
        from: opened.from,
        text: opened.text,
        id: opened.id,
        sentAt: opened.sentAt,
        missing: opened.missing,
      });
    } catch (error) {
      if (!(error instanceof ReelayError)) throw error;
      this.#emit({
        event: "error",
        code: error.code,
        message: `Rejected a message: ${error.message}`,
      });
    }
  }

  #peerFor(name: string): Peer {
    if (nameKey(name) === nameKey(this.name)) {
      throw new ReelayError("self", `${JSON.stringify(name)} is you: name someone else`);
    }
    const peer = this.#peers.get(nameKey(name));
    if (!peer) {
      throw new ReelayError(
        "unknown-recipient",
        `Nobody called ${JSON.stringify(name)} is online (see /who)`,
      );
    }
    return peer;
  }

  #request(
    message: { type: "send"; to: string; envelope: string } | { type: "videos" } | {
      type: "play";
      video: string;
    },
    ref = this.#nextRef++,
  ): Promise<ServerMessage> {
    if (this.#ended) return Promise.reject(new ReelayError(this.#ended.code, this.#ended.reason));
    return new Promise((resolve, reject) => {
      this.#pending.set(ref, { resolve, reject });
      this.#framed.sendMessage({ ...message, ref });
    });
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
    return this.#ended !== undefined || (this.#inFlight === 0 && !this.#viewing.active);
  }

  #settleIdle(): void {
    if (!this.#isIdle()) return;
    for (const resolve of this.#idleWaiters.splice(0)) resolve();
  }

  #checkAlive(keepaliveMs: number): void {
    const quiet = Date.now() - this.#framed.lastReceived;
    if (quiet > keepaliveMs * 3) {
      this.#framed.close(
        new ReelayError("server-timeout", `Server ${this.server} stopped answering`),
      );
    } else if (quiet > keepaliveMs) {
      this.#framed.sendMessage({ type: "ping" });
    }
  }

  async #shutdown(end: SessionEnd): Promise<void> {
    if (this.#ended) return await this.#reading;
    this.#ended = end;
    clearInterval(this.#keepalive);
    this.#framed.close();
    const error = new ReelayError(end.code, end.reason);
    this.#joinWaiter?.reject(error);
    for (const pending of this.#pending.values()) pending.reject(error);
    this.#pending.clear();
    await this.#viewing.abort(end.reason, end.code === "quit" ? "stopped" : "error");
    if (end.code !== "quit" && end.code !== "join-failed") {
      this.#emit({ event: "disconnected", code: end.code, reason: end.reason });
    }
    this.#resolveClosed(end);
    this.#settleIdle();
    await this.#framed.done;
  }

  #emit(event: ClientEvent): void {
    if (this.#listeners.length === 0) this.#early.push(event);
    for (const listener of this.#listeners) listener(event);
  }
}

async function dial(hostname: string, port: number): Promise<Deno.TcpConn> {
  try {
    return await Deno.connect({ hostname, port });
  } catch (error) {
    throw new ReelayError(
      "server-unreachable",
      `Cannot reach a reelay server at ${hostname}:${port}: ${messageOf(error)}`,
      { cause: error },
    );
  }
}
