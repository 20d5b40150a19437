/**
 * Reads presentation timestamps out of an MPEG-TS byte stream as it passes by, so the client can
 * show a position without decoding anything (the viewing side and the video benchmark use it).
 *
 * @module
 */

const PACKET = 188;
const SYNC = 0x47;
const PTS_WRAP = 2 ** 33;

/**
 * Tracks the newest PTS seen, in seconds since the first one.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { TsClock } from "./ts_clock.ts";
 * const clock = new TsClock();
 * clock.push(new Uint8Array(188));
 * assert.equal(clock.position, 0); // 0 until a PES header with a PTS has passed
 * ```
 */
export class TsClock {
  #carry = new Uint8Array(0);
  #first: number | undefined;
  #latest = 0;

  /** Seconds of media between the first and the newest timestamp seen. */
  get position(): number {
    return this.#latest;
  }

  /** Feeds the next bytes of the stream. */
  push(bytes: Uint8Array): void {
    let data = bytes;
    if (this.#carry.length > 0) {
      data = new Uint8Array(this.#carry.length + bytes.length);
      data.set(this.#carry);
      data.set(bytes, this.#carry.length);
    }
    let offset = 0;
    while (offset + PACKET <= data.length) {
      if (data[offset] !== SYNC) {
        offset++;
        continue;
      }
      this.#packet(data.subarray(offset, offset + PACKET));
      offset += PACKET;
    }
    this.#carry = data.slice(offset);
  }

  #packet(packet: Uint8Array): void {
    const payloadStart = (packet[1] & 0x40) !== 0;
    if (!payloadStart) return;
    const adaptation = (packet[3] >> 4) & 0x3;
    let offset = 4;
    if (adaptation === 2) return;
    if (adaptation === 3) offset += 1 + packet[4];
    if (offset + 14 > PACKET) return;
    const isPes = packet[offset] === 0 && packet[offset + 1] === 0 && packet[offset + 2] === 1;
    if (!isPes || (packet[offset + 7] & 0x80) === 0) return;
    const p = packet.subarray(offset + 9, offset + 14);
    const pts = (p[0] & 0x0e) * 2 ** 29 + p[1] * 2 ** 22 + (p[2] & 0xfe) * 2 ** 14 + p[3] * 2 ** 7 +
      (p[4] >> 1);
    this.#first ??= pts;
    const seconds = ((pts - this.#first + PTS_WRAP) % PTS_WRAP) / 90_000;
    if (seconds > this.#latest && seconds < 24 * 3600) this.#latest = seconds;
  }
}

/**
 * How much less media than planned a stream may cover and still count as complete, in seconds:
 * the last video frame's timestamp is one frame before the end and the last AAC packet's one
 * packet before it, so a whole stream covers its duration minus about a frame; two frames and two
 * AAC frames of slack leave room for rounding, and nothing more. The server checks each part with
 * it, the client the whole stream.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { shortfallTolerance } from "./ts_clock.ts";
 * assert.ok(Math.abs(shortfallTolerance(30) - (2 / 30 + 2048 / 48000)) < 1e-9);
 * ```
 */
export function shortfallTolerance(fps: number): number {
  return 2 / Math.max(fps, 1) + 2048 / 48000;
}
