/**
 * Byte helpers shared by the protocol, the secure channel and the crypto modules: canonical
 * base64, hex, concatenation, the length-prefixed encoding that everything signed, hashed or
 * authenticated goes through, and a bounds-checked reader for parsing untrusted bytes.
 *
 * Ours rather than a library's: the reader and the canonical base64 check are where untrusted
 * bytes are parsed, and they are small enough to read in one sitting.
 *
 * @module
 */

/** Bytes backed by a plain `ArrayBuffer`, as WebCrypto's `BufferSource` requires under TS 6. */
export type Bytes = Uint8Array<ArrayBuffer>;

const encoder = new TextEncoder();
const fatalDecoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * Encodes a string as UTF-8.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { utf8 } from "./bytes.ts";
 * assert.deepEqual([...utf8("hi")], [104, 105]);
 * ```
 */
export function utf8(text: string): Bytes {
  return encoder.encode(text) as Bytes;
}

/**
 * Decodes UTF-8, returning `undefined` for invalid sequences instead of replacing them.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fromUtf8 } from "./bytes.ts";
 * assert.equal(fromUtf8(new Uint8Array([0xff])), undefined);
 * ```
 */
export function fromUtf8(bytes: Uint8Array): string | undefined {
  try {
    return fatalDecoder.decode(bytes);
  } catch {
    return undefined;
  }
}

/**
 * Encodes bytes as standard base64 with padding.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { toBase64 } from "./bytes.ts";
 * assert.equal(toBase64(new Uint8Array([1, 2, 3])), "AQID");
 * ```
 */
export function toBase64(bytes: Uint8Array): string {
  return bytes.toBase64();
}

/**
 * Decodes canonical base64 (standard alphabet, padded, no whitespace), or returns `undefined`.
 * Rejecting non-canonical forms means one byte string has exactly one text form.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fromBase64 } from "./bytes.ts";
 * assert.deepEqual(fromBase64("AQID"), new Uint8Array([1, 2, 3]));
 * assert.equal(fromBase64("AQI D"), undefined);
 * ```
 */
export function fromBase64(text: string): Bytes | undefined {
  try {
    const bytes = Uint8Array.fromBase64(text, { lastChunkHandling: "strict" });
    return bytes.toBase64() === text ? bytes : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Encodes bytes as lowercase hex.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { toHex } from "./bytes.ts";
 * assert.equal(toHex(new Uint8Array([171, 205])), "abcd");
 * ```
 */
export function toHex(bytes: Uint8Array): string {
  return bytes.toHex();
}

/**
 * Returns fresh random bytes from the platform CSPRNG.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { randomBytes } from "./bytes.ts";
 * assert.equal(randomBytes(16).length, 16);
 * ```
 */
export function randomBytes(length: number): Bytes {
  return crypto.getRandomValues(new Uint8Array(length));
}

/**
 * Concatenates byte arrays into one new array.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { concat } from "./bytes.ts";
 * assert.deepEqual([...concat([new Uint8Array([1]), new Uint8Array([2, 3])])], [1, 2, 3]);
 * ```
 */
export function concat(parts: readonly Uint8Array[]): Bytes {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/**
 * Encodes a non-negative safe integer as 8 big-endian bytes.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { u64 } from "./bytes.ts";
 * assert.deepEqual([...u64(258)], [0, 0, 0, 0, 0, 0, 1, 2]);
 * ```
 */
export function u64(value: number): Bytes {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, BigInt(value));
  return out;
}

/** A field of a length-prefixed encoding: strings are taken as UTF-8. */
export type Field = string | Uint8Array;

/**
 * The unambiguous encoding used for everything signed, hashed or used as AAD: each field as a
 * 4-byte big-endian length followed by its bytes. Distinct field lists never encode alike.
 *
 * @example
 * ```ts
 * import { encodeFields } from "./bytes.ts";
 * encodeFields(["ab", new Uint8Array([7])]);
 * // Uint8Array [0, 0, 0, 2, 97, 98, 0, 0, 0, 1, 7]
 * ```
 */
export function encodeFields(fields: readonly Field[]): Bytes {
  const parts: Uint8Array[] = [];
  for (const field of fields) {
    const bytes = typeof field === "string" ? utf8(field) : field;
    const length = new Uint8Array(4);
    new DataView(length.buffer).setUint32(0, bytes.length);
    parts.push(length, bytes);
  }
  return concat(parts);
}

/**
 * Compares two byte arrays in time that depends only on their lengths.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { constantTimeEqual } from "./bytes.ts";
 * assert.equal(constantTimeEqual(new Uint8Array([1]), new Uint8Array([1])), true);
 * ```
 */
export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

/**
 * Reads untrusted bytes front to back; every read is bounds-checked and a failed read throws a
 * plain `RangeError` that callers turn into their own typed error.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ByteReader } from "./bytes.ts";
 * const reader = new ByteReader(new Uint8Array([1, 0, 2, 9, 9]));
 * assert.equal(reader.u8(), 1);
 * assert.deepEqual([...reader.prefixed16(1, 4)], [9, 9]);
 * reader.end();
 * ```
 */
export class ByteReader {
  readonly #bytes: Uint8Array;
  readonly #view: DataView;
  #offset = 0;

  /** Starts reading at the first byte of `bytes`. */
  constructor(bytes: Uint8Array) {
    this.#bytes = bytes;
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  /** Reads one unsigned byte. */
  u8(): number {
    return this.#view.getUint8(this.#take(1));
  }

  /** Reads an 8-byte big-endian unsigned integer that must be a safe JS integer. */
  u64(): number {
    const value = this.#view.getBigUint64(this.#take(8));
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new RangeError("Integer is too large");
    return Number(value);
  }

  /** Reads exactly `length` bytes (copied). */
  fixed(length: number): Bytes {
    const start = this.#take(length);
    return this.#bytes.slice(start, start + length) as Bytes;
  }

  /** Reads a 2-byte length then that many bytes; the length must lie within `[min, max]`. */
  prefixed16(min: number, max: number): Bytes {
    return this.fixed(this.#checked(this.#view.getUint16(this.#take(2)), min, max));
  }

  /** Reads a 4-byte length then that many bytes; the length must lie within `[min, max]`. */
  prefixed32(min: number, max: number): Bytes {
    return this.fixed(this.#checked(this.#view.getUint32(this.#take(4)), min, max));
  }

  /** Throws unless every byte has been read. */
  end(): void {
    const left = this.#bytes.length - this.#offset;
    if (left !== 0) throw new RangeError(`${left} unexpected trailing bytes`);
  }

  #checked(length: number, min: number, max: number): number {
    if (length < min || length > max) {
      throw new RangeError(`Field length ${length} is outside ${min}-${max}`);
    }
    return length;
  }

  #take(length: number): number {
    const start = this.#offset;
    if (start + length > this.#bytes.length) throw new RangeError("Input ends early");
    this.#offset += length;
    return start;
  }
}
