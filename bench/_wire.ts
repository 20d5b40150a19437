/**
 * A bare protocol peer for the benchmarks: one {@linkcode FramedConnection} that joins with a
 * signed hello and then hands every frame to callbacks. No crypto on messages, no event objects,
 * no key pinning, so thousands of them cost the benchmark process little.
 *
 * @module
 */

import { type Identity, newEpoch, signAnnouncement } from "../shared/crypto/mod.ts";
import { decodeStreamPayload, KIND_CONTROL, KIND_STREAM } from "../shared/protocol/frame.ts";
import { FramedConnection } from "../shared/protocol/framed.ts";
import { type ClientMessage, PROTOCOL_VERSION } from "../shared/protocol/messages.ts";

/** A control message as parsed JSON. */
export type Json = Record<string, unknown>;

const textDecoder = new TextDecoder();

/** Bytes of a `"type":"deliver"` marker, to recognise deliveries without parsing them. */
const DELIVER_MARKER = new TextEncoder().encode('{"type":"deliver"');

function startsWith(bytes: Uint8Array, prefix: Uint8Array): boolean {
  if (bytes.length < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (bytes[i] !== prefix[i]) return false;
  return true;
}

/** Callbacks a peer calls for what arrives after its join. */
export interface PeerHandlers {
  /** A control message (parsed); not called for deliveries when `onDeliver` is set. */
  onControl?: (message: Json) => void;
  /** A `deliver` frame arrived (counted without parsing). */
  onDeliver?: () => void;
  /** Stream data arrived: its stream id, segment index and media length. */
  onStream?: (stream: number, segment: number, bytes: number) => void;
}

/** A joined raw peer. */
export class RawPeer {
  readonly name: string;
  readonly framed: FramedConnection;
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
  #joined = Promise.withResolvers<Json>();

  private constructor(name: string, framed: FramedConnection) {
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
    const framed = new FramedConnection(conn, { maxFrameBytes, maxQueueBytes: 64 * 1024 * 1024 });
    const peer = new RawPeer(name, framed);
    framed.sendMessage({ type: "hello", protocol: PROTOCOL_VERSION, ...hello });
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${name}: no welcome within 30 s`)), 30_000);
    });
    try {
      const answer = await Promise.race([peer.#joined.promise, timeout]);
      if (answer.type !== "welcome") {
        throw new Error(`${name} was refused: ${answer.code}: ${answer.message}`);
      }
    } catch (error) {
      await peer.close();
      throw error;
    } finally {
      clearTimeout(timer);
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
      for await (const frame of this.framed.frames()) {
        if (frame.kind === KIND_STREAM) {
          const chunk = decodeStreamPayload(frame.payload);
          this.handlers.onStream?.(chunk.streamId, chunk.segment, chunk.media.length);
          continue;
        }
        if (frame.kind !== KIND_CONTROL) continue;
        if (!joined) {
          const message = JSON.parse(textDecoder.decode(frame.payload)) as Json;
          this.welcomeBytes += frame.payload.length;
          this.largestJoinFrame = Math.max(this.largestJoinFrame, frame.payload.length);
          if (message.type === "welcome" || message.type === "error") {
            joined = true;
            this.#joined.resolve(message);
          }
          continue;
        }
        const { onControl, onDeliver } = this.handlers;
        if (onDeliver && startsWith(frame.payload, DELIVER_MARKER)) {
          onDeliver();
          continue;
        }
        if (onControl) onControl(JSON.parse(textDecoder.decode(frame.payload)) as Json);
      }
    } catch (error) {
      this.#joined.reject(error);
      return;
    }
    this.#joined.reject(new Error(`${this.name}: connection closed`));
  }
}
