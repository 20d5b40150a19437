/**
 * Test helpers for hostile peers: a raw TCP client that speaks frames by hand (or not at all),
 * the raw JSON form of messages, and a bounded wait for a condition.
 *
 * @module
 */

import { initiate, type SecureConn } from "../shared/channel/mod.ts";
import { Identity, newEpoch, signAnnouncement, signJoinProof } from "../shared/crypto/mod.ts";
import {
  decodeBodyPayload,
  encodeBodyFrame,
  encodeFrame,
  type Frame,
  FrameDecoder,
  KIND_BODY,
  KIND_CONTROL,
} from "../shared/protocol/frame.ts";
import {
  CHANNEL_PROLOGUE,
  type ClientMessage,
  isDisconnect,
  PROTOCOL_VERSION,
  type ServerMessage,
} from "../shared/protocol/mod.ts";
import { writeAll } from "../shared/io.ts";
import { withTimeout } from "../shared/async.ts";
import { serverTaps } from "../testing/harness.ts";
import { closeQuietly, DelegatingConn } from "./_conn.ts";

/** A message as plain JSON; `envelope` (of `send` and `deliver`) is bytes. */
export type Json = Record<string, unknown>;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * Encodes any JSON value as the frame a peer would send, without validation: a body frame when
 * it has an `envelope` (text is sent as its UTF-8 bytes), else a control frame.
 */
export function controlFrame(value: unknown): Uint8Array<ArrayBuffer> {
  const record = value as Json;
  const envelope = typeof value === "object" && value !== null ? record.envelope : undefined;
  if (typeof envelope === "string" || envelope instanceof Uint8Array) {
    const { envelope: _, ...header } = record;
    const body = typeof envelope === "string" ? encoder.encode(envelope) : envelope;
    return encodeBodyFrame(encoder.encode(JSON.stringify(header)), body);
  }
  return encodeFrame(KIND_CONTROL, encoder.encode(JSON.stringify(value)));
}

/** A control or body frame as JSON (a body frame's envelope as a copy of its bytes). */
export function frameJson(frame: Frame): Json | undefined {
  try {
    if (frame.kind === KIND_BODY) {
      const { header, body } = decodeBodyPayload(frame.payload);
      return { ...JSON.parse(decoder.decode(header)), envelope: body };
    }
    if (frame.kind === KIND_CONTROL) return JSON.parse(decoder.decode(frame.payload));
  } catch {
    // Not a message: the caller keeps it as a frame.
  }
  return undefined;
}

/** The text of a JSON message's envelope (tests send text envelopes to see them arrive). */
export function envelopeText(message: Json): string {
  return decoder.decode(message.envelope as Uint8Array);
}

/** A frame header claiming `length` bytes follow, and nothing else. */
export function frameHeader(length: number, kind = KIND_CONTROL): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(5);
  new DataView(bytes.buffer).setUint32(0, length);
  bytes[4] = kind;
  return bytes;
}

/**
 * A raw client over the secure channel: it runs the handshake like any client, then writes
 * whatever a test wants inside the channel. Incoming frames are read by one background task into
 * a list that tests wait on; nothing is answered automatically unless
 * {@linkcode RawClient.answerPings} is set.
 */
export class RawClient {
  readonly conn: SecureConn;
  /** The handshake hash of this connection (what a join proof signs). */
  readonly handshakeHash: Uint8Array;
  /** Every control message received, in order. */
  readonly messages: Json[] = [];
  /** Frames that were not control frames, or not JSON. */
  readonly otherFrames: Frame[] = [];
  /** Resolves when the server closed the connection (EOF or reset) or we did. */
  readonly ended: Promise<void>;
  /** Whether to answer the server's pings with pongs. */
  answerPings = false;
  #ended = false;
  #waiters: (() => void)[] = [];
  #closedByUs = false;
  #stopReading = false;
  readonly #closing = Promise.withResolvers<void>();
  readonly #stall: WriteStall;

  private constructor(conn: SecureConn, handshakeHash: Uint8Array, stall: WriteStall) {
    this.conn = conn;
    this.handshakeHash = handshakeHash;
    this.#stall = stall;
    this.ended = this.#readLoop();
  }

  /** Connects to `port`, runs the secure handshake (any server key) and starts reading. */
  static async connect(port: number): Promise<RawClient> {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    // Registered before the handshake, which cannot end before this side speaks.
    const stall = new WriteStall(conn.localAddr.port);
    try {
      const channel = await initiate(conn, { prologue: CHANNEL_PROLOGUE });
      return new RawClient(channel.transport, channel.handshakeHash, stall);
    } catch (error) {
      stall.release();
      throw error;
    }
  }

  /**
   * Stops reading for good (a peer whose program hung): after the read already under way, the
   * socket is left alone until {@linkcode RawClient.close}. On a test server (one started with
   * the harness's taps) the server's writes to this connection wait from now on as well, as
   * once the kernel's socket buffers between the two are full: how much those take differs
   * from machine to machine (up to `tcp_rmem`'s maximum, 32 MiB on ours), and a test must not
   * depend on it.
   */
  stopReading(): void {
    this.#stopReading = true;
    this.#stall.stall();
  }

  /** Whether the connection has ended (only tracked while reading). */
  get isEnded(): boolean {
    return this.#ended;
  }

  /** Writes bytes; returns false when the server has already gone. */
  async write(bytes: Uint8Array): Promise<boolean> {
    try {
      await writeAll(this.conn, bytes);
      return true;
    } catch (error) {
      if (isDisconnect(error) || this.#ended) return false;
      throw error;
    }
  }

  /** Sends one control message (any JSON, valid or not). */
  send(value: unknown): Promise<boolean> {
    return this.write(controlFrame(value));
  }

  /**
   * Sends a correctly signed hello for `name` (a fresh epoch unless given, and the join proof
   * for this connection) and waits for `welcome` or `error`.
   */
  async join(name: string, identity: Identity, epoch = newEpoch()): Promise<Json> {
    await this.send(await this.hello(name, identity, epoch));
    return await this.waitFor((message) => message.type === "welcome" || message.type === "error");
  }

  /** A correctly signed hello for `name` with the join proof for this connection. */
  async hello(name: string, identity: Identity, epoch = newEpoch()): Promise<Json> {
    const announcement = await signAnnouncement(identity, name, epoch);
    const proof = await signJoinProof(identity, this.handshakeHash, announcement);
    return { type: "hello", protocol: PROTOCOL_VERSION, ...announcement, proof };
  }

  /**
   * Resolves with the first message (already received or future) matching `match`. Rejects
   * when the connection ends first or after `timeoutMs`, naming `what` (the matcher's source
   * unless given).
   */
  waitFor(
    match: (message: Json) => boolean,
    timeoutMs = 45_000,
    what = `a message matching ${match}`,
  ): Promise<Json> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((other) => other !== waiter);
        reject(
          new Error(
            `Timed out after ${timeoutMs} ms waiting for ${what}; got ${this.#recent()}`,
          ),
        );
      }, timeoutMs);
      const check = (): boolean => {
        const found = this.messages.find(match);
        if (found) {
          clearTimeout(timer);
          resolve(found);
          return true;
        }
        if (this.#ended) {
          clearTimeout(timer);
          reject(
            new Error(`Connection ended before ${what}; got ${this.#recent()}`),
          );
          return true;
        }
        return false;
      };
      const waiter = () => {
        if (!check()) this.#waiters.push(waiter);
      };
      if (!check()) this.#waiters.push(waiter);
    });
  }

  /** The last messages received, short enough for an error message. */
  #recent(): string {
    const last = JSON.stringify(this.messages.slice(-10));
    const text = last.length > 2000 ? `${last.slice(0, 2000)}...` : last;
    return `${this.messages.length} messages, the last: ${text}`;
  }

  /** Waits for an `error` message with `code` (and `ref`, when given). */
  waitForError(code: string, ref?: number, timeoutMs?: number): Promise<Json> {
    return this.waitFor(
      (message) =>
        message.type === "error" && message.code === code &&
        (ref === undefined || message.ref === ref),
      timeoutMs,
      `error ${code}${ref === undefined ? "" : ` for ref ${ref}`}`,
    );
  }

  /** Waits until the server closes the connection; fails after `timeoutMs`. */
  waitEnded(timeoutMs = 45_000): Promise<void> {
    return withTimeout(
      this.ended,
      timeoutMs,
      () => new Error(`Server did not close the connection within ${timeoutMs} ms`),
    );
  }

  /** Closes our side (idempotent) and waits for the reader to stop. */
  async close(): Promise<void> {
    if (!this.#closedByUs) {
      this.#closedByUs = true;
      this.#stall.release();
      this.#closing.resolve();
      closeQuietly(this.conn);
    }
    await this.ended;
  }

  async #readLoop(): Promise<void> {
    const frames = new FrameDecoder(64 * 1024 * 1024);
    try {
      while (true) {
        if (this.#stopReading) await this.#closing.promise;
        if (this.#closedByUs) break;
        const count = await this.conn.read(frames.writable());
        if (count === null) break;
        frames.commit(count);
        for (let frame = frames.next(); frame; frame = frames.next()) {
          this.#take(frame);
        }
      }
    } catch (error) {
      if (!this.#closedByUs && !isDisconnect(error)) throw error;
    } finally {
      this.#ended = true;
      this.#wake();
    }
  }

  #take(frame: Frame): void {
    const message = frameJson(frame);
    if (message === undefined || typeof message !== "object" || message === null) {
      this.otherFrames.push({ kind: frame.kind, payload: frame.payload.slice() });
      return;
    }
    this.messages.push(message);
    if (this.answerPings && message.type === "ping") void this.send({ type: "pong" });
    this.#wake();
  }

  #wake(): void {
    for (const waiter of this.#waiters.splice(0)) waiter();
  }
}

/**
 * The server's side of one raw client's connection, as the test server's tap (`serverTaps`, by
 * the client's port): its writes pass through until {@linkcode WriteStall.stall}, then wait
 * until {@linkcode WriteStall.release} (the client or the server closing).
 */
class WriteStall {
  readonly #port: number;
  #stalled = false;
  readonly #released = Promise.withResolvers<void>();

  constructor(port: number) {
    this.#port = port;
    serverTaps.set(port, (conn) => {
      serverTaps.delete(port);
      return new StallableConn(conn, this);
    });
  }

  /** From now on the server's writes wait. */
  stall(): void {
    this.#stalled = true;
  }

  /** Lets every write through again, and forgets the tap if the server never took it. */
  release(): void {
    if (serverTaps.has(this.#port)) serverTaps.delete(this.#port);
    this.#released.resolve();
  }

  /** Resolves when a write may go on. */
  async passage(): Promise<void> {
    if (this.#stalled) await this.#released.promise;
  }
}

/** A server's connection whose writes wait while its {@linkcode WriteStall} is stalled. */
class StallableConn extends DelegatingConn {
  readonly #stall: WriteStall;

  constructor(inner: Deno.Conn, stall: WriteStall) {
    super(inner);
    this.#stall = stall;
  }

  override async write(p: Uint8Array): Promise<number> {
    await this.#stall.passage();
    return await super.write(p);
  }

  override close(): void {
    // A write waiting here goes on to find the connection closed, and the writer ends.
    this.#stall.release();
    super.close();
  }
}

/** One identity for every raw client of a test file (generating one costs up to half a second). */
let shared: Promise<Identity> | undefined;

/** A lazily generated identity shared by the raw clients of one test file. */
export function rawIdentity(): Promise<Identity> {
  shared ??= Identity.generate();
  return shared;
}

/**
 * Polls `condition` every few milliseconds until it holds; fails with `what` after
 * `timeoutMs` (a function is asked at that moment, so it can say what was last seen). For
 * states no event announces (counts, process tables).
 */
export async function waitUntil(
  condition: () => boolean | Promise<boolean>,
  what: string | (() => string),
  timeoutMs = 45_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) {
      const said = typeof what === "string" ? what : what();
      throw new Error(`Timed out after ${timeoutMs} ms: ${said}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** A seeded PRNG (mulberry32): the same seed gives the same sequence. */
export function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `count` pseudo-random bytes from `random`. */
export function randomBytes(random: () => number, count: number): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(count);
  for (let i = 0; i < count; i++) bytes[i] = Math.floor(random() * 256);
  return bytes;
}

/** A well-formed (unsigned) announcement for message tests. */
export const announcement = {
  name: "alice",
  keys: { encryptionKey: "QUJD", signingKey: "REVG" },
  epoch: "AAAAAAAAAAAAAAAAAAAAAA==",
  signature: "c2ln",
};

/** A well-formed segment plan. */
export const segment = {
  index: 0,
  start: 0,
  end: 3.5,
  width: 256,
  height: 144,
  requestedHeight: 144,
  capped: false,
};

/** A well-formed video listing. */
export const listing = {
  name: "cats.mp4",
  duration: 10.5,
  width: 1920,
  height: 1080,
  fps: 29.97,
  hasAudio: true,
  segments: [segment, { ...segment, index: 1 }, { ...segment, index: 2, capped: true }],
};

/** One valid example of every client message. */
export const CLIENT_EXAMPLES: ClientMessage[] = [
  { type: "hello", protocol: PROTOCOL_VERSION, ...announcement, proof: "cHJvb2Y=" },
  { type: "send", ref: 3, to: "bob", envelope: new Uint8Array([1, 2, 3]) },
  { type: "send", to: "bob", envelope: new Uint8Array(0) },
  { type: "videos", ref: 0 },
  { type: "videos" },
  { type: "play", ref: 9, video: "cats.mp4" },
  { type: "stop", ref: 4 },
  { type: "stop" },
  { type: "credit", stream: 1, bytes: 65536 },
  { type: "ping" },
  { type: "pong" },
  { type: "bye" },
];

/** One valid example of every server message. */
export const SERVER_EXAMPLES: ServerMessage[] = [
  { type: "directory", peers: [announcement] },
  {
    type: "welcome",
    protocol: PROTOCOL_VERSION,
    name: "alice",
    limits: { maxFrameBytes: 1048576, chatRate: 10, chatBurst: 20, windowBytes: 1048576 },
  },
  { type: "joined", peer: announcement },
  { type: "left", name: "bob" },
  { type: "deliver", from: "bob", envelope: new Uint8Array([1, 2, 3]) },
  { type: "relayed", ref: 2, to: "bob" },
  { type: "relayed", to: "bob" },
  { type: "videos", ref: 1, videos: [listing] },
  { type: "videos", videos: [] },
  { type: "stream-start", ref: 5, stream: 7, video: listing },
  { type: "stream-end", stream: 7, bytes: 123456, reason: "complete" },
  { type: "stream-end", stream: 7, bytes: 0, reason: "error", message: "ffmpeg failed" },
  { type: "error", ref: 3, code: "rate-limited", message: "slow down" },
  { type: "error", code: "name-taken", message: "taken" },
  { type: "ping" },
  { type: "pong" },
  { type: "shutdown", message: "bye" },
];
