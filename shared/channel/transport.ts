/**
 * reelay's record layer: after the handshake every byte travels in Noise transport messages.
 *
 * A record is a 2-byte big-endian length `L` (16 to 65535), then `L` bytes: the ChaCha20-Poly1305
 * ciphertext and tag of up to 65519 plaintext bytes (Noise's 65535-byte message limit). The
 * length bytes are the associated data, and the nonce is the record's number in its direction,
 * so a changed, dropped, replayed or reordered record fails authentication. The first failure
 * closes the connection with `channel-tampered`; no byte of a bad record is ever returned.
 *
 * {@linkcode SecureConn} has the shape of a `Deno.Conn`, so framing code runs over it unchanged.
 *
 * @module
 */

import { SerialQueue } from "../async.ts";
import type { Bytes } from "../bytes.ts";
import { ReelayError } from "../errors.ts";
import { writeAll } from "../io.ts";
import type { TransportCiphers } from "./handshake_state.ts";
import { TAGLEN } from "./primitives.ts";

/** Most plaintext bytes in one record: a Noise message is at most 65535 bytes with its tag. */
export const MAX_RECORD_PLAINTEXT = 65535 - TAGLEN;
/** Bytes of a record's length prefix. */
export const RECORD_HEADER_BYTES = 2;

/** Records encrypted or decrypted at once: WebCrypto runs them in parallel on its threads. */
const BATCH_RECORDS = 4;
/** Most the receive buffer grows to: room for a batch of the largest records. */
const RECEIVE_BUFFER_BYTES = BATCH_RECORDS * (RECORD_HEADER_BYTES + 65535);
/**
 * The receive buffer's first size. It grows (doubling) only for a peer that sends large
 * records, so thousands of idle or joining connections cost kilobytes each, not 256 KiB.
 */
const INITIAL_RECEIVE_BYTES = 16 * 1024;

/** What a {@linkcode SecureConn} runs over: a `Deno.Conn`, or anything with the same calls. */
export interface ByteConn {
  /** Reads into `p`; `null` at the end of the stream. */
  read(p: Uint8Array): Promise<number | null>;
  /** Writes some of `p`; resolves to how many bytes were taken. */
  write(p: Uint8Array): Promise<number>;
  /** Closes both directions. */
  close(): void;
  /** Shuts down the write direction, where supported. */
  closeWrite?(): Promise<void>;
  /** The peer's address, where there is one. */
  readonly remoteAddr?: Deno.Addr;
  /** This side's address, where there is one. */
  readonly localAddr?: Deno.Addr;
  /** Keeps the event loop alive while open (the default for sockets). */
  ref?(): void;
  /** Lets the event loop finish while open. */
  unref?(): void;
}

/**
 * The error every detected change in transit ends with.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { tamperedError } from "./transport.ts";
 * const error = tamperedError("a record failed authentication");
 * assert.equal(error.code, "channel-tampered");
 * assert.match(error.message, /altered in transit/);
 * ```
 */
export function tamperedError(detail: string): ReelayError {
  return new ReelayError(
    "channel-tampered",
    `The connection was altered in transit (${detail}), so it was closed`,
  );
}

/**
 * An encrypted, authenticated connection with the calls of a `Deno.Conn`. Made by the handshake
 * (`initiate` / `respond`); it owns the connection it wraps.
 *
 * `write` resolves once every byte is encrypted and handed to the inner connection; concurrent
 * writes are queued, never interleaved. `read` returns plaintext from authenticated records only.
 *
 * @example Two ends sharing keys over an in-memory pipe (normally `initiate` / `respond` make them)
 * ```ts
 * import assert from "node:assert/strict";
 * import { CipherState, SecureConn } from "./mod.ts";
 * const key = new Uint8Array(32).fill(1);
 * const queue: Uint8Array[] = [];
 * const pipe = {
 *   read(p: Uint8Array) {
 *     const chunk = queue.shift();
 *     if (chunk) p.set(chunk);
 *     return Promise.resolve(chunk ? chunk.length : null);
 *   },
 *   write: (p: Uint8Array) => Promise.resolve(queue.push(p.slice()) && p.length),
 *   close() {},
 * };
 * const ciphers = async () => ({
 *   send: await CipherState.withKey(key),
 *   receive: await CipherState.withKey(key),
 * });
 * const sender = new SecureConn(pipe, await ciphers());
 * const receiver = new SecureConn(pipe, await ciphers());
 * await sender.write(new TextEncoder().encode("hello"));
 * assert.equal(queue[0].length, 2 + 5 + 16); // one record: length, ciphertext, tag
 * const buffer = new Uint8Array(16);
 * assert.equal(await receiver.read(buffer), 5);
 * assert.equal(new TextDecoder().decode(buffer.subarray(0, 5)), "hello");
 * ```
 */
export class SecureConn implements Deno.Conn {
  readonly #inner: ByteConn;
  readonly #ciphers: TransportCiphers;
  #raw = new Uint8Array(INITIAL_RECEIVE_BYTES);
  #rawStart = 0;
  #rawEnd = 0;
  readonly #plain: Bytes[] = [];
  #plainOffset = 0;
  readonly #reads = new SerialQueue();
  readonly #writes = new SerialQueue();
  #ended = false;
  #closed = false;
  #failure: ReelayError | undefined;
  #writeFailure: unknown;
  #readable: ReadableStream<Uint8Array<ArrayBuffer>> | undefined;
  #writable: WritableStream<Uint8Array> | undefined;

  /**
   * Wraps `inner` with the handshake's transport ciphers. `received` holds bytes that arrived
   * right after the handshake and belong to the first records.
   */
  constructor(inner: ByteConn, ciphers: TransportCiphers, received?: Uint8Array) {
    this.#inner = inner;
    this.#ciphers = ciphers;
    if (received && received.length > 0) {
      if (received.length > RECEIVE_BUFFER_BYTES) throw new RangeError("Too many early bytes");
      if (received.length > this.#raw.length) this.#raw = new Uint8Array(RECEIVE_BUFFER_BYTES);
      this.#raw.set(received);
      this.#rawEnd = received.length;
    }
  }

  /** The peer's address (from the inner connection). */
  get remoteAddr(): Deno.Addr {
    return this.#address(this.#inner.remoteAddr, "remote");
  }

  /** This side's address (from the inner connection). */
  get localAddr(): Deno.Addr {
    return this.#address(this.#inner.localAddr, "local");
  }

  /**
   * Reads plaintext into `p`: resolves to the byte count, or `null` once the peer has closed at
   * a record boundary. Throws `channel-tampered` for a record that fails authentication, is
   * shorter than a tag, or is cut off by the end of the stream.
   */
  read(p: Uint8Array): Promise<number | null> {
    return this.#reads.run(() => this.#read(p));
  }

  /** Encrypts and sends all of `p` in as few records as the size limit allows. */
  write(p: Uint8Array): Promise<number> {
    return this.#writes.run(() => this.#write(p));
  }

  /** Closes the inner connection at once. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#inner.close();
    } catch {
      // Already closed by the runtime after an error: nothing left to release.
    }
  }

  /** Sends what is queued, then shuts down the write direction of the inner connection. */
  async closeWrite(): Promise<void> {
    await this.#writes.idle();
    if (!this.#inner.closeWrite) throw new TypeError("The inner connection cannot close writes");
    await this.#inner.closeWrite();
  }

  /** Keeps the event loop alive while open. */
  ref(): void {
    this.#inner.ref?.();
  }

  /** Lets the event loop finish while open. */
  unref(): void {
    this.#inner.unref?.();
  }

  /** Closes the connection. */
  [Symbol.dispose](): void {
    this.close();
  }

  /** The plaintext as a stream; cancelling it closes the connection. */
  get readable(): ReadableStream<Uint8Array<ArrayBuffer>> {
    this.#readable ??= new ReadableStream<Uint8Array<ArrayBuffer>>({
      pull: async (controller) => {
        const buffer = new Uint8Array(MAX_RECORD_PLAINTEXT);
        const count = await this.read(buffer);
        if (count === null) controller.close();
        else controller.enqueue(buffer.subarray(0, count));
      },
      cancel: () => this.close(),
    });
    return this.#readable;
  }

  /** A stream to write plaintext to; closing it closes the connection, as with `Deno.Conn`. */
  get writable(): WritableStream<Uint8Array> {
    this.#writable ??= new WritableStream<Uint8Array>({
      write: (chunk) => writeAll(this, chunk),
      close: () => this.close(),
      abort: () => this.close(),
    });
    return this.#writable;
  }

  async #read(p: Uint8Array): Promise<number | null> {
    if (this.#failure) throw this.#failure;
    if (this.#closed) throw new Deno.errors.BadResource("The secure connection is closed");
    if (p.length === 0) return 0;
    while (this.#plain.length === 0) {
      if (this.#ended) return null;
      const records = this.#completeRecords();
      if (records.length > 0) await this.#open(records);
      else await this.#fill();
    }
    return this.#copyPlain(p);
  }

  /** Cuts complete records (header and body) off the front of the receive buffer. */
  #completeRecords(): { header: Bytes; body: Bytes }[] {
    const records: { header: Bytes; body: Bytes }[] = [];
    while (records.length < BATCH_RECORDS && this.#rawEnd - this.#rawStart >= RECORD_HEADER_BYTES) {
      const start = this.#rawStart;
      const length = (this.#raw[start] << 8) | this.#raw[start + 1];
      if (length < TAGLEN) this.#fail(`a record of ${length} bytes is shorter than its tag`);
      const end = start + RECORD_HEADER_BYTES + length;
      if (end > this.#rawEnd) break;
      records.push({
        header: this.#raw.subarray(start, start + RECORD_HEADER_BYTES),
        body: this.#raw.subarray(start + RECORD_HEADER_BYTES, end),
      });
      this.#rawStart = end;
    }
    return records;
  }

  async #open(records: { header: Bytes; body: Bytes }[]): Promise<void> {
    const receive = this.#ciphers.receive;
    const first = receive.reserve(records.length);
    // WebCrypto copies its inputs when called, so the buffer may be reused while these run.
    const opened = records.map(({ header, body }, i) =>
      receive.decryptAt(first + i, header, body).then((plain) => plain, () => undefined)
    );
    const plains = await Promise.all(opened);
    if (plains.some((plain) => plain === undefined)) this.#fail("a record failed authentication");
    for (const plain of plains as Bytes[]) if (plain.length > 0) this.#plain.push(plain);
  }

  async #fill(): Promise<void> {
    if (this.#rawStart === this.#rawEnd) this.#rawStart = this.#rawEnd = 0;
    else if (this.#rawEnd === this.#raw.length || this.#rawStart > this.#raw.length / 2) {
      this.#raw.copyWithin(0, this.#rawStart, this.#rawEnd);
      this.#rawEnd -= this.#rawStart;
      this.#rawStart = 0;
    }
    if (this.#rawEnd === this.#raw.length) this.#grow();
    const count = await this.#inner.read(this.#raw.subarray(this.#rawEnd));
    if (count === null) {
      if (this.#rawEnd > this.#rawStart) this.#fail("the stream ended inside a record");
      this.#ended = true;
      return;
    }
    this.#rawEnd += count;
  }

  /** Doubles the full receive buffer (up to its cap): an incomplete record needs more room. */
  #grow(): void {
    const grown = new Uint8Array(Math.min(this.#raw.length * 2, RECEIVE_BUFFER_BYTES));
    grown.set(this.#raw.subarray(0, this.#rawEnd));
    this.#raw = grown;
  }

  #copyPlain(p: Uint8Array): number {
    let copied = 0;
    while (copied < p.length && this.#plain.length > 0) {
      const chunk = this.#plain[0];
      const count = Math.min(p.length - copied, chunk.length - this.#plainOffset);
      p.set(chunk.subarray(this.#plainOffset, this.#plainOffset + count), copied);
      copied += count;
      this.#plainOffset += count;
      if (this.#plainOffset === chunk.length) {
        this.#plain.shift();
        this.#plainOffset = 0;
      }
    }
    return copied;
  }

  async #write(p: Uint8Array): Promise<number> {
    if (this.#failure) throw this.#failure;
    if (this.#writeFailure !== undefined) throw this.#writeFailure;
    if (this.#closed) throw new Deno.errors.BadResource("The secure connection is closed");
    if (p.length === 0) return 0;
    // Equal records rather than full ones and a runt: the same count, encrypted in parallel.
    const count = Math.ceil(p.length / MAX_RECORD_PLAINTEXT);
    const size = Math.ceil(p.length / count);
    let next = this.#seal(p, 0, Math.min(count, BATCH_RECORDS), size);
    for (let done = 0; done < count;) {
      const batch = await next;
      done += batch.records;
      // Encrypt the next batch while this one goes out.
      if (done < count) {
        next = this.#seal(p, done, Math.min(count - done, BATCH_RECORDS), size);
        next.catch(() => {}); // Awaited below; this only keeps an early failure from going unhandled.
      }
      try {
        await writeAll(this.#inner, batch.bytes);
      } catch (error) {
        // Records are numbered: after a lost one, nothing this side sends can be read.
        this.#writeFailure = error;
        await next.catch(() => {});
        throw error;
      }
    }
    return p.length;
  }

  /** Encrypts `records` records of `size` bytes from record `first` on, into one buffer. */
  async #seal(
    p: Uint8Array,
    first: number,
    records: number,
    size: number,
  ): Promise<{ bytes: Bytes; records: number }> {
    const send = this.#ciphers.send;
    const nonce = send.reserve(records);
    const headers: Bytes[] = [];
    const sealed: Promise<Bytes>[] = [];
    for (let i = 0; i < records; i++) {
      const start = (first + i) * size;
      const plain = p.subarray(start, Math.min(start + size, p.length));
      const header = new Uint8Array(RECORD_HEADER_BYTES);
      new DataView(header.buffer).setUint16(0, plain.length + TAGLEN);
      headers.push(header);
      sealed.push(send.encryptAt(nonce + i, header, plain));
    }
    const bodies = await Promise.all(sealed);
    const bytes = new Uint8Array(
      bodies.reduce((sum, body) => sum + RECORD_HEADER_BYTES + body.length, 0),
    );
    let offset = 0;
    for (let i = 0; i < records; i++) {
      bytes.set(headers[i], offset);
      bytes.set(bodies[i], offset + RECORD_HEADER_BYTES);
      offset += RECORD_HEADER_BYTES + bodies[i].length;
    }
    return { bytes, records };
  }

  #fail(detail: string): never {
    this.#failure ??= tamperedError(detail);
    this.close();
    throw this.#failure;
  }

  #address(address: Deno.Addr | undefined, which: string): Deno.Addr {
    if (!address) throw new TypeError(`The inner connection has no ${which} address`);
    return address;
  }
}
