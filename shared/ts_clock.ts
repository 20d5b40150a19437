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
  #lastVideo: number | undefined;
  #lastAudio: number | undefined;

  /** Seconds of media between the first and the newest timestamp seen. */
  get position(): number {
    return this.#latest;
  }

  /** The raw 90 kHz PTS of the last video PES header seen (stream ids 0xE0 to 0xEF). */
  get lastVideoPts(): number | undefined {
    return this.#lastVideo;
  }

  /** The raw 90 kHz PTS of the last audio PES header seen (stream ids 0xC0 to 0xDF). */
  get lastAudioPts(): number | undefined {
    return this.#lastAudio;
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
    const streamId = packet[offset + 3];
    if (streamId >= 0xe0 && streamId <= 0xef) this.#lastVideo = pts;
    if (streamId >= 0xc0 && streamId <= 0xdf) this.#lastAudio = pts;
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

/**
 * Where `bytes` may be cut so that every PES packet before the cut is whole: the offset of the
 * first transport packet at or after `from` that starts a PES (its payload-unit-start flag set),
 * or undefined when there is none. `aligned` is the offset in `bytes` of some packet start (the
 * stream's bytes before `bytes`, modulo 188, tell where the first whole packet is). ffmpeg's
 * MPEG-TS muxer writes each PES in one run of packets, so such a cut is clean for every stream.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { pesBoundary } from "./ts_clock.ts";
 * const bytes = new Uint8Array(3 * 188);
 * for (let i = 0; i < 3; i++) bytes[i * 188] = 0x47;
 * bytes[2 * 188 + 1] = 0x40; // the third packet starts a PES
 * assert.equal(pesBoundary(bytes, 0, 1), 376);
 * assert.equal(pesBoundary(bytes, 0, 377), undefined);
 * ```
 */
export function pesBoundary(bytes: Uint8Array, aligned: number, from = 0): number | undefined {
  let offset = aligned % PACKET;
  while (offset < from) offset += PACKET;
  for (; offset + 2 <= bytes.length; offset += PACKET) {
    if (bytes[offset] === SYNC && (bytes[offset + 1] & 0x40) !== 0) return offset;
  }
  return undefined;
}
