/**
 * One peer on the server: the join deadline, the read loop, and what each message does.
 * Writes go through the peer's single connection writer; chat goes through the relay, video
 * through the peer's viewer.
 *
 * @module
 */

import type { Config } from "../shared/config/mod.ts";
import { fingerprintHash } from "../shared/crypto/mod.ts";
import { errorDetail, messageOf, ProtocolError, ReelayError } from "../shared/errors.ts";
import { nameKey, nameProblem } from "../shared/names.ts";
import {
  type Announcement,
  type ClientMessage,
  PROTOCOL_VERSION,
  type ServerConnection,
  type ServerMessage,
} from "../shared/protocol/mod.ts";
import type { Logger } from "../shared/log.ts";
import { verifyJoinProof } from "../shared/crypto/mod.ts";
import type { JoinEpochs } from "./join_epochs.ts";
import type { Viewer } from "./media/mod.ts";
import { InboundChat, TokenBucket } from "./rate_limit.ts";
import type { People } from "./people.ts";
import type { Mailroom, Recipient } from "./mail.ts";
import type { QueueBudget } from "./shares.ts";

/** What a connection needs from the server that owns it. */
export interface ServerContext {
  readonly config: Config;
  readonly log: Logger;
  /** The directory and relay: this server's, or the cluster's. */
  readonly people: People<PeerConnection>;
  /** Conversations: prekeys, sealed messages relayed or held, receipts of held mail. */
  readonly mail: Mailroom<PeerConnection>;
  verifyAnnouncement(announcement: Announcement): Promise<boolean>;
  createViewer(framed: ServerConnection): Viewer;
  /** Whether another client may join now (the total cap). */
  hasRoomForClient(): boolean;
  /** Streams playing now for people joined from `host`. */
  streamsFrom(host: string): number;
  /** The server-wide budget of queued bytes. */
  readonly budget: QueueBudget;
  /**
   * Cuts off the peers holding the most of the budget past their fair part (they are not
   * reading) until `bytes` more fit; false when they still do not.
   */
  makeRoom(bytes: number): boolean;
  /** Epochs of accepted joins: one is never accepted twice. */
  readonly joinEpochs: JoinEpochs;
}

/** What the secure channel established for a connection before it became a peer. */
export interface ChannelFacts {
  /** The Noise handshake hash of this connection (a join proof signs it). */
  handshakeHash: Uint8Array;
  /** When the join must be complete (ms since epoch): the handshake spent part of the time. */
  joinDeadline: number;
  /** The host this connection counts against (`hostOf` its address). */
  host: string;
  /** Counts this connection as joined from its host; false when the host has its whole share. */
  claimHostShare(): boolean;
}

/** Consecutive malformed messages tolerated before a peer is cut off. */
const MAX_BAD_MESSAGES = 16;
/**
 * Sends and acknowledgements of one peer waiting for their commit at most, while the next are
 * read; past it the peer is read again once they were answered.
 */
const MAX_PIPELINED = 32;

/**
 * A connected peer, from accept to close.
 *
 * @example
 * ```ts ignore
 * const peer = new PeerConnection(framed, context, { handshakeHash, joinDeadline });
 * await peer.run(); // returns once the peer is gone and everything it held is released
 * ```
 */
export class PeerConnection implements Recipient {
  readonly framed: ServerConnection;
  /** The host this peer counts against (`hostOf` its address). */
  readonly host: string;
  readonly #context: ServerContext;
  readonly #viewer: Viewer;
  readonly #chat: TokenBucket;
  readonly #inbound: InboundChat;
  readonly #channel: ChannelFacts;
  #announcement: Announcement | undefined;
  #badMessages = 0;
  /** Set once the peer is being told why it is closed: nothing it sends is acted on after. */
  #hangingUp = false;
  #lastFrameAt = Date.now();
  /** The answers to this peer's requests, chained in the order the requests came. */
  #answers: Promise<void> = Promise.resolve();
  #pipelined = 0;
  /** When the server last pinged this peer (keepalive; set by the server's sweep). */
  lastPingAt = 0;

  /** Wraps an accepted connection, framed inside its secure channel. */
  constructor(framed: ServerConnection, context: ServerContext, channel: ChannelFacts) {
    this.framed = framed;
    this.host = channel.host;
    this.#context = context;
    this.#channel = channel;
    this.#viewer = context.createViewer(framed);
    const { chatRate, chatBurst } = context.config.limits;
    this.#chat = new TokenBucket(chatRate, chatBurst);
    this.#inbound = new InboundChat(context.config.limits);
  }

  /** Whether this peer has a stream playing. */
  get streaming(): boolean {
    return this.#viewer.playing;
  }

  /** The signed announcement this peer joined with (only once joined). */
  get announcement(): Announcement {
    if (!this.#announcement) throw new Error("Peer has not joined");
    return this.#announcement;
  }

  /** Whether the peer has completed its join. */
  get joined(): boolean {
    return this.#announcement !== undefined;
  }

  /** When the peer last completed a frame (keepalive and trickle detection). */
  get lastFrameAt(): number {
    return this.#lastFrameAt;
  }

  /** A short label for logs. */
  get label(): string {
    return this.#announcement
      ? `${JSON.stringify(this.#announcement.name)} (${this.framed.remote})`
      : this.framed.remote;
  }

  /** Queues a message on the urgent lane. */
  notify(message: ServerMessage): void {
    this.framed.sendMessage(message);
  }

  /** Queues an already encoded frame on the urgent lane (a notice shared by many peers). */
  sendFrame(frame: Uint8Array): void {
    this.framed.sendUrgent(frame);
  }

  /** Bytes waiting to be written to this peer. */
  get queuedBytes(): number {
    return this.framed.queuedBytes;
  }

  /** Resolves once everything queued for this peer was written. */
  drained(): Promise<void> {
    return this.framed.drained();
  }

  /** Whether the connection is closed. */
  get closed(): boolean {
    return this.framed.closed;
  }

  /**
   * Queues a sealed envelope from `from`; false when this peer is gone (or was just cut off).
   * Throws (to the sender) `rate-limited` past the pair rate, and `recipient-busy` past this
   * peer's inbound rate, when its queue holds half its cap already, or when the server's budget
   * of queued bytes is spent: what others send never gets this peer cut off.
   */
  deliver(from: string, envelope: Uint8Array, id?: string): boolean {
    this.#checkInbound(from, envelope);
    this.framed.sendMessage({
      type: "deliver",
      from,
      ...(id === undefined ? {} : { id }),
      envelope,
    });
    return !this.framed.closed;
  }

  /** See `Recipient.admit` in `mail.ts`: the same limits as {@linkcode PeerConnection.deliver}. */
  admit(from: string, envelope: Uint8Array): void {
    this.#checkInbound(from, envelope);
  }

  /** See `Recipient.hasRoom` in `mail.ts`. */
  hasRoom(bytes: number): boolean {
    return this.#hasShareRoom(bytes) && this.#context.budget.hasRoom(bytes);
  }

  /** Whether `bytes` more stay within this peer's part of the queue (half its cap). */
  #hasShareRoom(bytes: number): boolean {
    return this.framed.queuedBytes + bytes <= this.#context.config.limits.maxQueueBytes / 2;
  }

  #checkInbound(from: string, envelope: Uint8Array): void {
    const { limits } = this.#context.config;
    const name = JSON.stringify(this.announcement.name);
    const refusal = this.#inbound.take(nameKey(from));
    if (refusal === "pair") {
      throw new ReelayError(
        "rate-limited",
        `Too many messages to ${name}: the limit is ${limits.chatPairRate} a second to one person`,
      );
    }
    if (refusal === "recipient") {
      throw new ReelayError(
        "recipient-busy",
        `${name} is receiving more than ${limits.chatInboundRate} messages a second: ` +
          "try again shortly",
      );
    }
    // Room for the frame's header and fields besides the envelope itself.
    const bytes = envelope.length + 256;
    if (!this.#hasShareRoom(bytes)) {
      throw new ReelayError(
        "recipient-busy",
        `${name} is not taking messages as fast as they come: try again shortly`,
      );
    }
    if (!this.#context.budget.hasRoom(bytes) && !this.#makeRoomAsReader(bytes)) {
      throw new ReelayError(
        "recipient-busy",
        `The server has ${this.#context.budget.limit} bytes queued for people who are not ` +
          `reading: try ${name} again shortly`,
      );
    }
  }

  /**
   * A peer that reads (it holds no more than its fair part of the budget) is not refused its
   * messages because others do not read: those holding the most are cut off instead, as
   * nats-server does with slow consumers. A peer over its part is refused, and stays.
   */
  #makeRoomAsReader(bytes: number): boolean {
    const { budget } = this.#context;
    return this.framed.queuedBytes <= budget.fairPart() && this.#context.makeRoom(bytes);
  }

  /** Closes this peer at once as a slow consumer: what was queued for it is freed. */
  cutOff(reason: string): void {
    this.framed.close(new ReelayError("slow-consumer", reason));
  }

  /** Runs the read loop until the peer leaves; always releases the name and any stream. */
  async run(): Promise<void> {
    const { joinTimeoutMs } = this.#context.config.limits;
    const joinTimer = setTimeout(() => {
      if (!this.joined) {
        this.hangUp(
          new ReelayError("join-timeout", `Join did not complete within ${joinTimeoutMs} ms`),
        ).catch(() => this.framed.close());
      }
    }, Math.max(0, this.#channel.joinDeadline - Date.now()));
    try {
      await this.#readLoop();
    } catch (error) {
      if (error instanceof ReelayError) {
        await this.hangUp(error);
      } else {
        this.#bug(error);
      }
    } finally {
      clearTimeout(joinTimer);
      // Release the name at once so nobody waits on the stream's teardown to see "left".
      this.framed.close();
      if (this.#announcement) this.#context.people.leave(this);
      try {
        await this.#viewer.close();
      } catch (error) {
        this.#context.log(
          "error",
          `Bug while stopping the stream of ${this.label}: ${errorDetail(error)}`,
        );
      }
      await this.#answers;
      await this.framed.done;
      const why = this.framed.closeReason ? ` (${this.framed.closeReason.code})` : "";
      this.#context.log("info", `${this.label} disconnected${why}`);
    }
  }

  /** Our own failure while serving this peer: logged as a bug, and the connection ends. */
  #bug(error: unknown): void {
    this.#context.log("error", `Bug while serving ${this.label}: ${errorDetail(error)}`);
    this.framed.close();
  }

  /**
   * Sends an error (when the socket still takes it, waiting at most `flushMs` for it to be
   * written) and closes the connection.
   */
  async hangUp(error: ReelayError, flushMs = 500): Promise<void> {
    if (this.framed.closed || this.#hangingUp) return;
    this.#hangingUp = true;
    this.#context.log("warn", `Closing ${this.label}: ${error.message}`);
    this.framed.sendMessage({ type: "error", code: error.code, message: error.message });
    await this.framed.flushAndClose(error, flushMs);
  }

  async #readLoop(): Promise<void> {
    for await (const item of this.framed.receive()) {
      this.#lastFrameAt = Date.now();
      if (this.#hangingUp) continue;
      if (item.kind === "malformed") {
        if (!this.joined) throw item.error;
        this.#rejectMalformed(item.error);
        continue;
      }
      if (item.kind !== "message") continue; // fromClient refuses stream data
      this.#badMessages = 0;
      await this.#dispatch(item.message);
      // The server's own work on a request (checking prekey signatures) is not the peer's silence.
      this.#lastFrameAt = Date.now();
    }
  }

  #rejectMalformed(error: ProtocolError): void {
    this.#badMessages++;
    if (this.#badMessages > MAX_BAD_MESSAGES) {
      throw new ProtocolError(
        "too-many-errors",
        `More than ${MAX_BAD_MESSAGES} malformed messages in a row`,
      );
    }
    this.notify({ type: "error", code: error.code, message: error.message });
  }

  async #dispatch(message: ClientMessage): Promise<void> {
    if (!this.joined) {
      if (message.type === "ping") return this.notify({ type: "pong" });
      if (message.type === "pong") return;
      if (message.type !== "hello") {
        throw new ProtocolError(
          "not-joined",
          `Message ${JSON.stringify(message.type)} came before hello`,
        );
      }
      return await this.#join(message);
    }
    if (message.type === "send" || message.type === "ack") return await this.#pipeline(message);
    // Anything else is handled once every earlier request was answered, one at a time.
    await this.#answers;
    if (message.type === "ping") return this.notify({ type: "pong" });
    if (message.type === "pong") return;
    const ref = "ref" in message ? message.ref : undefined;
    try {
      await this.#handleJoined(message);
    } catch (error) {
      if (!answerable(error)) throw error;
      this.notify(errorAnswer(error, ref));
    }
  }

  /**
   * A send or an acknowledgement is checked now, in the order they came, and answered once the
   * commit that holds it is done; meanwhile the next request is read, so the requests of one
   * turn of the event loop, from this peer and others, share one commit. Answers, refusals
   * included, go out in the order of the requests.
   */
  async #pipeline(message: ClientMessage & { type: "send" | "ack" }): Promise<void> {
    if (this.#pipelined >= MAX_PIPELINED) await this.#answers;
    const ref = message.type === "send" ? message.ref : undefined;
    let outcome: Promise<ServerMessage | undefined>;
    try {
      outcome = message.type === "send"
        ? (await this.#send(message)).answer
        : this.#context.mail.ack(this, message.mail).then(() => undefined);
    } catch (error) {
      outcome = Promise.reject(error);
    }
    outcome.catch(() => {}); // answered in turn below
    this.#pipelined++;
    this.#answers = this.#answers.then(async () => {
      try {
        const answer = await outcome;
        if (answer) this.notify(answer);
      } catch (error) {
        if (answerable(error)) return this.notify(errorAnswer(error, ref));
        this.#bug(error);
      } finally {
        this.#pipelined--;
      }
    });
    // A cluster's mailbox (JetStream) does not group puts, and two of one sender at once could
    // be held out of order: there each is answered before the next is read, as before.
    if (this.#context.config.cluster.url !== "") await this.#answers;
  }

  async #handleJoined(
    message: Exclude<ClientMessage, { type: "send" | "ack" | "ping" | "pong" }>,
  ): Promise<void> {
    switch (message.type) {
      case "hello":
        throw new ReelayError("already-joined", "Hello was already received on this connection");
      case "prekeys": {
        const counts = await this.#context.mail.publish(this, message.published);
        return this.notify({ type: "prekeys-stored", ...refOf(message.ref), ...counts });
      }
      case "bundle": {
        const bundle = await this.#context.mail.bundle(message.name);
        return this.notify({ type: "bundle", ...refOf(message.ref), ...bundle });
      }
      case "refuse":
        // A refusal is held like a message (a synced write): it takes from the same rate.
        this.#takeChatToken();
        return await this.#context.mail.refuse(this, message);
      case "videos":
        return this.#viewer.list(message.ref);
      case "play":
        this.#checkStreamShare();
        return await this.#viewer.play(message.ref, message.video, message.from);
      case "stop":
        return await this.#viewer.stop(message.ref);
      case "pause":
        return this.#viewer.pause(message.ref);
      case "resume":
        return this.#viewer.resume(message.ref);
      case "credit":
        return this.#viewer.credit(message.stream, message.bytes);
      case "bye":
        this.framed.close();
        return;
    }
  }

  async #join(hello: ClientMessage & { type: "hello" }): Promise<void> {
    if (hello.protocol !== PROTOCOL_VERSION) {
      throw new ProtocolError(
        "unsupported-protocol",
        `Protocol version ${hello.protocol} is not supported (this server speaks ${PROTOCOL_VERSION})`,
      );
    }
    const problem = nameProblem(hello.name);
    if (problem) throw new ReelayError("bad-name", problem);
    const announcement: Announcement = {
      name: hello.name,
      keys: hello.keys,
      epoch: hello.epoch,
      signature: hello.signature,
    };
    if (!(await this.#verify(announcement))) {
      throw new ReelayError("bad-signature", "Hello is not signed by the keys it announces");
    }
    const fingerprint = await fingerprintHash(announcement.keys);
    if (!(await verifyJoinProof(announcement, this.#channel.handshakeHash, hello.proof))) {
      throw new ReelayError(
        "bad-join-proof",
        "Hello's join proof is not signed for this connection: a hello recorded elsewhere " +
          "cannot join",
      );
    }
    if (this.framed.closed || this.#hangingUp) return;
    if (!this.#context.joinEpochs.accept(announcement.epoch)) {
      throw new ReelayError(
        "replayed-join",
        `Epoch ${JSON.stringify(announcement.epoch)} already joined this server once: ` +
          "each connection announces a fresh one",
      );
    }
    if (!this.#context.hasRoomForClient()) {
      throw new ReelayError("server-full", "Server is full: try again later");
    }
    if (!this.#channel.claimHostShare()) {
      throw new ReelayError(
        "host-full",
        `Too many people are connected from ${this.host} (the limit is ` +
          `${this.#context.config.limits.maxClientsPerHost} per host): try again when someone ` +
          "there leaves",
      );
    }
    this.#announcement = announcement;
    let directory: Uint8Array[];
    try {
      await this.#replaceEarlier(announcement);
      directory = await this.#context.people.join(this);
    } catch (error) {
      this.#announcement = undefined;
      throw error;
    }
    // The people present go first, in pages, so the welcome itself stays small at any size.
    for (const page of directory) this.sendFrame(page);
    const { maxFrameBytes, chatRate, chatBurst } = this.#context.config.limits;
    this.notify({
      type: "welcome",
      protocol: PROTOCOL_VERSION,
      name: announcement.name,
      limits: {
        maxFrameBytes,
        chatRate,
        chatBurst,
        windowBytes: this.#context.config.stream.windowBytes,
      },
    });
    this.#context.mail.joined(this, fingerprint);
    this.#context.log("info", `${this.label} joined`);
  }

  /**
   * An earlier connection on this node under the same name and the same keys is most likely
   * dead and not noticed yet (a laptop that changed networks reconnects at once): the new join,
   * which proved it holds the keys, replaces it rather than waiting for its idle timeout. A
   * client told `replaced` does not reconnect, so two live clients of one person do not take
   * turns.
   */
  async #replaceEarlier(announcement: Announcement): Promise<void> {
    const earlier = this.#context.people.here(announcement.name);
    if (!earlier || earlier === this || !sameKeys(earlier.announcement, announcement)) return;
    this.#context.log("info", `${earlier.label} is replaced by a new connection with its keys`);
    await Promise.all([
      earlier.hangUp(
        new ReelayError(
          "replaced",
          `Another connection with your keys joined as ${JSON.stringify(announcement.name)}: ` +
            "this one is closed",
        ),
      ),
      this.#context.people.leave(earlier),
    ]);
  }

  async #verify(announcement: Announcement): Promise<boolean> {
    try {
      return await this.#context.verifyAnnouncement(announcement);
    } catch (error) {
      throw new ReelayError("bad-key", `Announced keys are not usable: ${messageOf(error)}`);
    }
  }

  /** A new stream from this host must fit its share (replacing this peer's own stream does). */
  #checkStreamShare(): void {
    const { maxStreamsPerHost } = this.#context.config.stream;
    const others = this.#context.streamsFrom(this.host) - (this.streaming ? 1 : 0);
    if (others >= maxStreamsPerHost) {
      throw new ReelayError(
        "host-busy",
        `${others} videos are already playing from ${this.host} (the limit is ` +
          `${maxStreamsPerHost} per host): stop one first`,
      );
    }
  }

  /** Throws `rate-limited` past `chat_rate` messages (and refusals) a second. */
  #takeChatToken(): void {
    if (!this.#chat.take()) {
      throw new ReelayError(
        "rate-limited",
        `Too many messages: the limit is ${this.#context.config.limits.chatRate} a second`,
      );
    }
  }

  /** Checks and stages a send; `answer` resolves once it is held (or rejects: refused). */
  async #send(
    message: ClientMessage & { type: "send" },
  ): Promise<{ answer: Promise<ServerMessage> }> {
    this.#takeChatToken();
    const { routed } = await this.#context.mail.accept(this, message);
    const answer = routed.then(({ status: type, to, id }): ServerMessage => ({
      type,
      ...refOf(message.ref),
      to,
      id,
    }));
    return { answer };
  }
}

/** Whether `error` is told to the peer (a refusal of one request) rather than ending it. */
function answerable(error: unknown): error is ReelayError {
  return error instanceof ReelayError && !(error instanceof ProtocolError);
}

function errorAnswer(error: ReelayError, ref: number | undefined): ServerMessage {
  return { type: "error", ...refOf(ref), code: error.code, message: error.message };
}

function refOf(ref: number | undefined): { ref?: number } {
  return ref === undefined ? {} : { ref };
}

/** Whether two announcements carry the same identity keys. */
function sameKeys(a: Announcement, b: Announcement): boolean {
  return a.keys.encryptionKey === b.keys.encryptionKey && a.keys.signingKey === b.keys.signingKey;
}
