/**
 * A bare protocol peer for the benchmarks: one {@linkcode FramedConnection} that joins with a
 * signed hello and then hands every message and stream chunk to callbacks. No crypto on
 * messages, no event objects, no key pinning, so thousands of them cost the benchmark process
 * little.
 *
 * @module
 */

import { withTimeout } from "../shared/async.ts";
import { initiate } from "../shared/channel/mod.ts";
import { type Identity, newEpoch, signAnnouncement, signJoinProof } from "../shared/crypto/mod.ts";
import {
  CHANNEL_PROLOGUE,
  type ClientConnection,
  type ClientMessage,
  encodeMessage,
  FramedConnection,
  PROTOCOL_VERSION,
  type ServerMessage,
} from "../shared/protocol/mod.ts";

/** Bytes of a frame's length and kind, before its payload. */
const FRAME_HEADER_BYTES = 5;

/** Callbacks a peer calls for what arrives after its join. */
export interface PeerHandlers {
  /** A message from the server. */
  onControl?: (message: ServerMessage) => void;
  /** Stream data arrived: its stream id, segment index and media length. */
  onStream?: (stream: number, segment: number, bytes: number) => void;
}

/** A joined raw peer. */
export class RawPeer {
  readonly name: string;
  readonly framed: ClientConnection;
  readonly reading: Promise<void>;
  /** Bytes of the directory pages and the welcome received while joining. */
  welcomeBytes = 0;
  /** The largest single frame received while joining, in bytes. */
  largestJoinFrame = 0;
  /** Every byte received. */
  get bytesReceived(): number {
    return this.framed.bytesReceived;
  }
  handlers: PeerHandlers = {};
  /** The last error the server sent about the connection itself (one without a `ref`). */
  serverError: string | undefined;
  /** Whether the connection is closed. */
  get closed(): boolean {
    return this.framed.closed;
  }
  #joined = Promise.withResolvers<ServerMessage>();

  private constructor(name: string, framed: ClientConnection) {
    this.name = name;
    this.framed = framed;
    this.reading = this.#read();
  }

  /**
   * Connects to `port`, says hello as `name` with a fresh epoch signed by `identity`, and waits
   * for the welcome. `maxFrameBytes` caps frames from the server.
   */
  static async join(
    port: number,
    name: string,
    identity: Identity,
    maxFrameBytes = 64 * 1024 * 1024,
  ): Promise<RawPeer> {
    const hello = await signAnnouncement(identity, name, newEpoch());
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    conn.setNoDelay(true);
    // Any server key: the benchmark's own server, on loopback.
    const channel = await initiate(conn, { prologue: CHANNEL_PROLOGUE });
    const framed = FramedConnection.forClient(channel.transport, {
      maxFrameBytes,
      maxQueueBytes: 64 * 1024 * 1024,
    });
    const peer = new RawPeer(name, framed);
    const proof = await signJoinProof(identity, channel.handshakeHash, hello);
    framed.sendMessage({ type: "hello", protocol: PROTOCOL_VERSION, ...hello, proof });
    try {
      const answer = await withTimeout(
        peer.#joined.promise,
        30_000,
        () => new Error(`${name}: no welcome within 30 s`),
      );
      if (answer.type === "error") {
        throw new Error(`${name} was refused: ${answer.code}: ${answer.message}`);
      }
    } catch (error) {
      await peer.close();
      throw error;
    }
    return peer;
  }

  /** Queues a control message. */
  send(message: ClientMessage): void {
    this.framed.sendMessage(message);
  }

  /** Closes the socket and waits for the reader and writer to stop. */
  async close(): Promise<void> {
    this.framed.close();
    await this.reading;
    await this.framed.done;
  }

  async #read(): Promise<void> {
    let joined = false;
    try {
      for await (const item of this.framed.receive()) {
        if (item.kind === "stream") {
          const { streamId, segment, media } = item.chunk;
          this.handlers.onStream?.(streamId, segment, media.length);
          continue;
        }
        if (item.kind === "malformed") throw item.error;
        const message = item.message;
        if (!joined) {
          const size = encodeMessage(message).length - FRAME_HEADER_BYTES;
          this.welcomeBytes += size;
          this.largestJoinFrame = Math.max(this.largestJoinFrame, size);
          if (message.type === "welcome" || message.type === "error") {
            joined = true;
            this.#joined.resolve(message);
          }
          continue;
        }
        // Answered like the client does: a peer that is quiet while another measurement runs
        // must not be cut off by the server's idle timeout.
        if (message.type === "ping") this.send({ type: "pong" });
        // The server holds every message until it is acknowledged: without this the
        // recipient's mailbox bound would refuse the sender after 1000 messages.
        else if (message.type === "deliver" && message.mail !== undefined) {
          this.send({ type: "ack", mail: [message.mail] });
        } else if (message.type === "error" && message.ref === undefined) {
          this.serverError = `${message.code}: ${message.message}`;
        }
        this.handlers.onControl?.(message);
      }
    } catch (error) {
      this.#joined.reject(error);
      return;
    }
    this.#joined.reject(new Error(`${this.name}: connection closed`));
  }
}
