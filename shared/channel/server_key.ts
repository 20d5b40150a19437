/**
 * The server's identity on the secure channel and the client's trust in it.
 *
 * - {@linkcode ServerKey}: the server's static X25519 key pair, kept as JSON (file 0600, folder
 *   0700), created on the first run and never silently replaced.
 * - {@linkcode serverFingerprint}: how a server key is shown to people, always in one format,
 *   `SHA256:` and the unpadded base64 of the key's SHA-256 (as ssh shows host keys).
 * - {@linkcode ServerPins}: the keys a client has pinned per server address, like ssh's
 *   `known_hosts`; a different key is `"changed"` until the person explicitly replaces the pin.
 *
 * File locations are the caller's choice: every path is a parameter.
 *
 * @module
 */

import { SerialQueue } from "../async.ts";
import { type Bytes, constantTimeEqual, fromBase64, randomBytes, toBase64 } from "../bytes.ts";
import { messageOf, ReelayError } from "../errors.ts";
import {
  assertOwnerOnly,
  createFile,
  ensureFolderOf,
  readTextIfPresent,
  replaceFile,
} from "../files.ts";
import { DHLEN, type KeyPair, keyPairFromPrivate, sha256 } from "./primitives.ts";

const KEY_FORMAT = "reelay-server-key-v1";
const PINS_FORMAT = "reelay-server-pins-v1";
const MAX_ADDRESS_LENGTH = 300;

/** The stored form of a {@linkcode ServerKey}. */
export interface StoredServerKey {
  /** Always `reelay-server-key-v1`. */
  format: typeof KEY_FORMAT;
  /** The X25519 private key, 32 bytes as base64. */
  privateKey: string;
  /** The public key, 32 bytes as base64 (checked against the private key on load). */
  publicKey: string;
}

/**
 * The fingerprint people compare out of band: `SHA256:` and the unpadded base64 of the SHA-256
 * of the 32-byte public key, 50 characters in all.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { serverFingerprint } from "./server_key.ts";
 * const fingerprint = await serverFingerprint(new Uint8Array(32).fill(1));
 * assert.match(fingerprint, /^SHA256:[A-Za-z0-9+/]{43}$/);
 * ```
 */
export async function serverFingerprint(publicKey: Uint8Array): Promise<string> {
  return `SHA256:${toBase64(await sha256(publicKey)).replace(/=+$/, "")}`;
}

/**
 * The server's static key pair; usable wherever a Noise {@linkcode KeyPair} is.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ServerKey } from "./server_key.ts";
 * const dir = await Deno.makeTempDir();
 * const first = await ServerKey.loadOrCreate(`${dir}/state/server_key.json`);
 * const again = await ServerKey.loadOrCreate(`${dir}/state/server_key.json`);
 * assert.ok(first.created && !again.created);
 * assert.equal(again.key.fingerprint, first.key.fingerprint);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class ServerKey implements KeyPair {
  /** The 32-byte X25519 public key that clients pin. */
  readonly publicKey: Bytes;
  /** The private key, inside WebCrypto. */
  readonly privateKey: CryptoKey;
  /** The public key's fingerprint, from {@linkcode serverFingerprint}. */
  readonly fingerprint: string;
  readonly #stored: StoredServerKey;

  private constructor(pair: KeyPair, fingerprint: string, stored: StoredServerKey) {
    this.publicKey = pair.publicKey;
    this.privateKey = pair.privateKey;
    this.fingerprint = fingerprint;
    this.#stored = stored;
  }

  /** A new random key (not saved anywhere; see {@linkcode loadOrCreate}). */
  static async generate(): Promise<ServerKey> {
    return await ServerKey.#fromPrivate(randomBytes(DHLEN));
  }

  /**
   * Loads the key stored in `file`, or on the first run creates it (and its folder). A file
   * that exists but cannot be used is an error naming the file and the way out; it is never
   * replaced.
   */
  static async loadOrCreate(file: string): Promise<{ key: ServerKey; created: boolean }> {
    await ensureFolderOf(file);
    const text = await readTextIfPresent(file);
    if (text !== undefined) {
      await assertOwnerOnly(file);
      return { key: await ServerKey.#parse(file, text), created: false };
    }
    const key = await ServerKey.generate();
    if (await createFile(file, JSON.stringify(key.toJSON(), null, 2) + "\n")) {
      return { key, created: true };
    }
    return { key: await ServerKey.#parse(file, await Deno.readTextFile(file)), created: false };
  }

  /** The stored form, private key included: write it only to an owner-only file. */
  toJSON(): StoredServerKey {
    return { ...this.#stored };
  }

  static async #fromPrivate(privateBytes: Uint8Array): Promise<ServerKey> {
    const pair = await keyPairFromPrivate(privateBytes);
    return new ServerKey(pair, await serverFingerprint(pair.publicKey), {
      format: KEY_FORMAT,
      privateKey: toBase64(privateBytes),
      publicKey: toBase64(pair.publicKey),
    });
  }

  static async #parse(file: string, text: string): Promise<ServerKey> {
    try {
      const stored = JSON.parse(text) as Partial<StoredServerKey>;
      if (stored?.format !== KEY_FORMAT) throw new Error(`its format is not "${KEY_FORMAT}"`);
      const privateBytes = keyField(stored.privateKey, "privateKey");
      const key = await ServerKey.#fromPrivate(privateBytes);
      if (!constantTimeEqual(key.publicKey, keyField(stored.publicKey, "publicKey"))) {
        throw new Error("its public key does not belong to its private key");
      }
      return key;
    } catch (error) {
      throw new ReelayError(
        "server-key-unreadable",
        `Server key file "${file}" is damaged (${messageOf(error)}); reelay will not replace it. ` +
          `Restore it from a backup, or move it away to give the server a new key (every client ` +
          `will then see "server-key-changed" and must accept the new key)`,
        { cause: error },
      );
    }
  }
}

function keyField(value: unknown, name: string): Bytes {
  const bytes = typeof value === "string" ? fromBase64(value) : undefined;
  if (!bytes || bytes.length !== DHLEN) throw new Error(`"${name}" is not 32 bytes of base64`);
  return bytes;
}

/**
 * Throws `server-key-changed`, naming both fingerprints, unless `presented` is `pinned`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { assertServerKey, ServerKey } from "./server_key.ts";
 * const [pinned, other] = [await ServerKey.generate(), await ServerKey.generate()];
 * await assertServerKey("10.0.0.5:9000", pinned.publicKey, pinned.publicKey);
 * await assert.rejects(
 *   assertServerKey("10.0.0.5:9000", pinned.publicKey, other.publicKey),
 *   { code: "server-key-changed" },
 * );
 * ```
 */
export async function assertServerKey(
  address: string,
  pinned: Uint8Array,
  presented: Uint8Array,
): Promise<void> {
  if (constantTimeEqual(pinned, presented)) return;
  const [was, now] = [await serverFingerprint(pinned), await serverFingerprint(presented)];
  throw new ReelayError(
    "server-key-changed",
    `WARNING: the server at ${address} presented a different key than the one pinned for it ` +
      `(pinned ${was}, presented ${now}). Someone may be intercepting the connection, or the ` +
      `server's key was replaced. The connection was refused. Accept the new key only after ` +
      `the server's owner confirms ${now} to you another way`,
  );
}

/** How a presented server key compares with the pin for its address. */
export type PinCheck = "new" | "match" | "changed";

interface PinsFile {
  format: typeof PINS_FORMAT;
  servers: Record<string, { key: string; pinnedAt: string }>;
}

/**
 * Server keys pinned per address (such as `192.168.1.20:9000`) in one JSON file (0600), each
 * change written atomically. The file is read on every call, so several clients sharing it see
 * each other's pins.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ServerKey, ServerPins } from "./server_key.ts";
 * const dir = await Deno.makeTempDir();
 * const pins = new ServerPins(`${dir}/server_pins.json`);
 * const [key, other] = [await ServerKey.generate(), await ServerKey.generate()];
 * assert.equal(await pins.check("10.0.0.5:9000", key.publicKey), "new");
 * await pins.pin("10.0.0.5:9000", key.publicKey);
 * assert.equal(await pins.check("10.0.0.5:9000", key.publicKey), "match");
 * assert.equal(await pins.check("10.0.0.5:9000", other.publicKey), "changed");
 * await pins.replace("10.0.0.5:9000", other.publicKey); // the person accepted the new key
 * assert.equal(await pins.check("10.0.0.5:9000", other.publicKey), "match");
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class ServerPins {
  /** The pins file. */
  readonly file: string;
  readonly #writes = new SerialQueue();

  /** Uses the pins in `file`, which need not exist yet. */
  constructor(file: string) {
    this.file = file;
  }

  /** The key pinned for `address`, if any. */
  async pinned(address: string): Promise<Bytes | undefined> {
    const entry = (await this.#read()).servers[checkAddress(address)];
    return entry && fromBase64(entry.key);
  }

  /** Compares `key` with the pin for `address`; changes nothing. */
  async check(address: string, key: Uint8Array): Promise<PinCheck> {
    const pinned = await this.pinned(address);
    if (!pinned) return "new";
    return constantTimeEqual(pinned, checkKey(key)) ? "match" : "changed";
  }

  /**
   * Pins `key` for `address` on first use. A matching pin is left as is; a different one throws
   * `server-key-changed` (use {@linkcode replace} to accept a new key).
   */
  async pin(address: string, key: Uint8Array): Promise<void> {
    return await this.#update(
      async (pins) => {
        const pinned = pins.servers[address];
        if (pinned) return await assertServerKey(address, fromBase64(pinned.key)!, key);
        pins.servers[address] = { key: toBase64(key), pinnedAt: new Date().toISOString() };
        return pins;
      },
      address,
      key,
    );
  }

  /** Pins `key` for `address` in place of any earlier key: the explicit way to accept a change. */
  async replace(address: string, key: Uint8Array): Promise<void> {
    return await this.#update(
      (pins) => {
        pins.servers[address] = { key: toBase64(key), pinnedAt: new Date().toISOString() };
        return Promise.resolve(pins);
      },
      address,
      key,
    );
  }

  #update(
    change: (pins: PinsFile) => Promise<PinsFile | void>,
    address: string,
    key: Uint8Array,
  ): Promise<void> {
    checkAddress(address);
    checkKey(key);
    return this.#writes.run(async () => {
      const changed = await change(await this.#read());
      if (!changed) return;
      await ensureFolderOf(this.file);
      await replaceFile(this.file, JSON.stringify(changed, null, 2) + "\n");
    });
  }

  async #read(): Promise<PinsFile> {
    const text = await readTextIfPresent(this.file);
    if (text === undefined) return { format: PINS_FORMAT, servers: Object.create(null) };
    try {
      return parsePins(JSON.parse(text));
    } catch (error) {
      throw new ReelayError(
        "server-pins-unreadable",
        `Server pins file "${this.file}" is damaged (${messageOf(error)}). Fix it, or move it ` +
          `away to start over (every server's key will then be pinned anew on first use)`,
        { cause: error },
      );
    }
  }
}

function parsePins(value: unknown): PinsFile {
  const file = value as Partial<PinsFile> | null;
  if (file?.format !== PINS_FORMAT) throw new Error(`its format is not "${PINS_FORMAT}"`);
  const servers = file.servers;
  if (typeof servers !== "object" || servers === null || Array.isArray(servers)) {
    throw new Error(`"servers" is not an object`);
  }
  const clean: PinsFile["servers"] = Object.create(null);
  for (const [address, entry] of Object.entries(servers)) {
    const key = typeof entry?.key === "string" ? fromBase64(entry.key) : undefined;
    if (!key || key.length !== DHLEN) throw new Error(`the key for "${address}" is not valid`);
    clean[address] = { key: entry.key, pinnedAt: String(entry.pinnedAt ?? "") };
  }
  return { format: PINS_FORMAT, servers: clean };
}

function checkAddress(address: string): string {
  // deno-lint-ignore no-control-regex
  if (address.length === 0 || address.length > MAX_ADDRESS_LENGTH || /[\x00-\x20]/.test(address)) {
    throw new RangeError(`Server address "${address}" is not a usable pin key`);
  }
  return address;
}

function checkKey(key: Uint8Array): Uint8Array {
  if (key.length !== DHLEN) throw new RangeError(`A server key is 32 bytes, not ${key.length}`);
  return key;
}
