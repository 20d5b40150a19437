/**
 * The cluster's {@linkcode Registry} and {@linkcode PrekeyDirectory}: one JetStream KV bucket,
 * `reelay-directory`, shared by every node, so a node can hand out the bundle of someone who
 * joined another node. Keys: `name.<hex name key>` (the registry entry as JSON), `key.<fp>`
 * (a marker: this key is registered), `signed.<fp>` (signed prekeys) and `ot.<fp>.<kind>` (the
 * one-time keys of one kind, oldest first, as one JSON list).
 *
 * Every read-modify-write is a compare-and-set on the key's revision (`create`, or `update`
 * with the revision read), retried on a lost race, so a one-time key is handed out once even
 * when two nodes take from the same list at the same moment.
 *
 * Past `maxRegistered` people, a newcomer drops those seen longest ago (`count.people` keeps
 * the number, so a join costs no scan; the scan that finds the oldest also corrects the count).
 * Dropping a person (forget, expiry, eviction) or a change of their key ends the mail held for
 * the old key through `endMail` (the mailbox's `JetStreamMailbox.end`), so the next
 * sweep on any node tells its senders why.
 *
 * @module
 */

import { type KV, Kvm } from "@nats-io/kv";
import type { NatsConnection } from "./nats.ts";
import { type Bytes, fromBase64, toBase64, toHex, utf8 } from "../../shared/bytes.ts";
import { messageOf, ReelayError } from "../../shared/errors.ts";
import {
  checkLimit,
  checkOneTimeKeys,
  checkTime,
  duplicate,
  shown,
  tooLarge,
} from "../store/checks.ts";
import {
  DEFAULT_STORE_LIMITS,
  type JsonValue,
  type MailEndReason,
  MAX_ANNOUNCEMENT_BYTES,
  MAX_PAGE,
  MAX_SIGNED_PREKEY_BYTES,
  type NewRegistryEntry,
  ONE_TIME_KINDS,
  type OneTimeKey,
  type OneTimeKind,
  type PrekeyBundle,
  type PrekeyDirectory,
  type Registry,
  type RegistryEntry,
  type RegistrySummary,
  type RememberResult,
  type StoreOptions,
} from "../store/mod.ts";
import { token, withCas } from "./_kv.ts";

/** The bucket's default name. */
export const DIRECTORY_BUCKET = "reelay-directory";

/** Options of {@linkcode KvDirectory.open}. */
export type KvDirectoryOptions =
  & Pick<StoreOptions, "maxOneTimePerKind" | "registryTtlMs" | "maxRegistered">
  & {
    /** The bucket's name (tests use their own). */
    bucket?: string;
    /** The clock, in milliseconds since the epoch. */
    now?: () => number;
    /** Ends the mail held for a key that was dropped or replaced (the cluster's mailbox). */
    endMail?: (recipientKey: string, reason: MailEndReason) => Promise<unknown>;
  };

/** The key holding how many people the registry holds. */
const PEOPLE_COUNT = "count.people";

interface StoredKey {
  id: number;
  key: string;
}

const decoder = new TextDecoder();

function nameKeyOf(nameKey: string): string {
  return `name.${toHex(utf8(nameKey))}`;
}

function jsonOf<T>(value: Uint8Array): T {
  return JSON.parse(decoder.decode(value)) as T;
}

function notRegistered(fingerprint: string): ReelayError {
  return new ReelayError(
    "not-registered",
    `Key ${shown(fingerprint)} is not registered on this server: join before publishing prekeys`,
  );
}

/**
 * `part` with every method's NATS failure turned into `cluster-unavailable`, so that a request
 * made while NATS is away gets a clear refusal (the server's own bugs, `TypeError` and
 * `RangeError`, and the store's `ReelayError`s pass as they are).
 */
function answering<T extends object>(part: T, what: string): T {
  return new Proxy(part, {
    get(target, property) {
      const value: unknown = Reflect.get(target, property, target);
      if (typeof value !== "function") return value;
      return async (...args: unknown[]) => {
        try {
          return await value.apply(target, args);
        } catch (error) {
          if (
            error instanceof ReelayError || error instanceof TypeError ||
            error instanceof RangeError
          ) throw error;
          throw new ReelayError(
            "cluster-unavailable",
            `The cluster's ${what} does not answer (${messageOf(error)})`,
            { cause: error },
          );
        }
      };
    },
  });
}

/**
 * The registry and prekey directory of a cluster over NATS KV.
 *
 * @example
 * ```ts ignore
 * const directory = await KvDirectory.open(nc);
 * await directory.registry.remember({ nameKey: "bob", name: "bob", fingerprint, announcement });
 * const bundle = await directory.prekeys.takeBundle(fingerprint);
 * ```
 */
export class KvDirectory {
  readonly registry: Registry;
  readonly prekeys: PrekeyDirectory;

  private constructor(kv: KV, options: KvDirectoryOptions) {
    const now = options.now ?? Date.now;
    const limits = {
      maxOneTimePerKind: options.maxOneTimePerKind ?? DEFAULT_STORE_LIMITS.maxOneTimePerKind,
      registryTtlMs: options.registryTtlMs ?? DEFAULT_STORE_LIMITS.registryTtlMs,
      maxRegistered: options.maxRegistered ?? DEFAULT_STORE_LIMITS.maxRegistered,
    };
    const endMail = options.endMail ?? (() => Promise.resolve());
    this.registry = answering(new KvRegistry(kv, { ...limits, now, endMail }), "registry");
    this.prekeys = answering(new KvPrekeys(kv, limits.maxOneTimePerKind), "prekey directory");
  }

  /** Opens (or creates) the bucket. */
  static async open(nc: NatsConnection, options: KvDirectoryOptions = {}): Promise<KvDirectory> {
    const bucket = options.bucket ?? DIRECTORY_BUCKET;
    let kv: KV;
    try {
      kv = await new Kvm(nc).create(bucket, { history: 1 });
    } catch (error) {
      throw new ReelayError(
        "cluster-unavailable",
        `Cannot open the directory bucket ${JSON.stringify(bucket)} (${messageOf(error)}): ` +
          "is JetStream enabled (nats-server -js)?",
        { cause: error },
      );
    }
    return new KvDirectory(kv, options);
  }
}

/** What the registry is bound by and tells. */
interface RegistryLimits {
  registryTtlMs: number;
  maxRegistered: number;
  now: () => number;
  endMail: NonNullable<KvDirectoryOptions["endMail"]>;
}

class KvRegistry implements Registry {
  readonly #kv: KV;
  readonly #limits: RegistryLimits;

  constructor(kv: KV, limits: RegistryLimits) {
    this.#kv = kv;
    this.#limits = limits;
  }

  /** Deletes everything held for a key and ends the mail held for it. */
  async #retire(fingerprint: string, reason: MailEndReason): Promise<void> {
    const fp = token(fingerprint);
    await this.#kv.delete(`key.${fp}`);
    await this.#kv.delete(`signed.${fp}`);
    for (const kind of ONE_TIME_KINDS) await this.#kv.delete(`ot.${fp}.${kind}`);
    await this.#limits.endMail(fingerprint, reason);
  }

  async remember(entry: NewRegistryEntry): Promise<RememberResult> {
    const fp = token(entry.fingerprint);
    const text = JSON.stringify(entry.announcement);
    if (utf8(text).length > MAX_ANNOUNCEMENT_BYTES) {
      throw new ReelayError(
        "announcement-too-large",
        `Announcement of ${utf8(text).length} bytes is larger than the most the server keeps, ` +
          `${MAX_ANNOUNCEMENT_BYTES} bytes`,
      );
    }
    const key = nameKeyOf(entry.nameKey);
    const before = await withCas("Remembering a person", async () => {
      const current = await this.#kv.get(key);
      const held = current?.operation === "PUT" ? jsonOf<RegistryEntry>(current.value) : undefined;
      const value: RegistryEntry = {
        nameKey: entry.nameKey,
        name: entry.name,
        fingerprint: entry.fingerprint,
        announcement: JSON.parse(text) as JsonValue,
        lastSeen: Math.max(entry.seenAt ?? this.#limits.now(), held?.lastSeen ?? 0),
      };
      const bytes = utf8(JSON.stringify(value));
      if (current === null) await this.#kv.create(key, bytes);
      else await this.#kv.update(key, bytes, current.revision);
      return held;
    });
    await this.#kv.put(`key.${fp}`, utf8(entry.nameKey));
    const result: RememberResult = { evicted: [] };
    if (before === undefined) result.evicted = await this.#counted(1, entry.nameKey);
    else if (before.fingerprint !== entry.fingerprint) {
      result.previousFingerprint = before.fingerprint;
      await this.#retire(before.fingerprint, "recipient-key-changed");
    }
    return result;
  }

  /**
   * Adds `change` to the count of people; past `maxRegistered` (or with no count yet) reads
   * every entry, drops the oldest seen but `keep` down to 1% under the bound, and writes the
   * true count. The 1% is why a full registry is not read again at every newcomer's join: one
   * read of every entry pays for the next joins of that many people.
   */
  async #counted(change: number, keep?: string): Promise<RegistrySummary[]> {
    const people = await withCas("Counting people", async () => {
      const current = await this.#kv.get(PEOPLE_COUNT);
      if (current?.operation !== "PUT") return undefined;
      const next = Math.max(0, jsonOf<number>(current.value) + change);
      await this.#kv.update(PEOPLE_COUNT, utf8(JSON.stringify(next)), current.revision);
      return next;
    });
    if (keep === undefined || (people !== undefined && people <= this.#limits.maxRegistered)) {
      return [];
    }
    const entries = await this.#entries();
    const room = Math.floor(this.#limits.maxRegistered / 100);
    const over = Math.max(0, entries.length - this.#limits.maxRegistered + room);
    const evicted: RegistrySummary[] = [];
    for (const entry of entries.filter((each) => each.nameKey !== keep).slice(0, over)) {
      const { nameKey, name, fingerprint, lastSeen } = entry;
      if (await this.#drop(entry)) evicted.push({ nameKey, name, fingerprint, lastSeen });
    }
    await this.#kv.put(PEOPLE_COUNT, utf8(JSON.stringify(entries.length - evicted.length)));
    return evicted;
  }

  /** Every entry, oldest seen first. */
  async #entries(): Promise<RegistryEntry[]> {
    const entries: RegistryEntry[] = [];
    for await (const key of await this.#kv.keys("name.>")) {
      const current = await this.#kv.get(key);
      if (current?.operation === "PUT") entries.push(jsonOf<RegistryEntry>(current.value));
    }
    return entries.sort((a, b) => a.lastSeen - b.lastSeen || a.nameKey.localeCompare(b.nameKey));
  }

  /** Deletes a person's entry (if still theirs) and what their key held. */
  async #drop(entry: RegistryEntry): Promise<boolean> {
    const key = nameKeyOf(entry.nameKey);
    const current = await this.#kv.get(key);
    if (current?.operation !== "PUT") return false;
    if (jsonOf<RegistryEntry>(current.value).fingerprint !== entry.fingerprint) return false;
    await this.#kv.delete(key);
    await this.#retire(entry.fingerprint, "recipient-forgotten");
    return true;
  }

  async lookup(nameKey: string): Promise<RegistryEntry | undefined> {
    const current = await this.#kv.get(nameKeyOf(nameKey));
    return current?.operation === "PUT" ? jsonOf<RegistryEntry>(current.value) : undefined;
  }

  async forget(nameKey: string): Promise<boolean> {
    const entry = await this.lookup(nameKey);
    if (entry === undefined || !await this.#drop(entry)) return false;
    await this.#counted(-1);
    return true;
  }

  async expire(now: number, limit: number = MAX_PAGE): Promise<RegistrySummary[]> {
    checkTime(now);
    checkLimit(limit);
    const unseen = (await this.#entries())
      .filter((entry) => entry.lastSeen <= now - this.#limits.registryTtlMs);
    const dropped: RegistrySummary[] = [];
    for (const { nameKey, name, fingerprint, lastSeen } of unseen.slice(0, limit)) {
      if (await this.forget(nameKey)) dropped.push({ nameKey, name, fingerprint, lastSeen });
    }
    return dropped;
  }

  async count(): Promise<number> {
    let people = 0;
    for await (const _ of await this.#kv.keys("name.>")) people++;
    return people;
  }
}

class KvPrekeys implements PrekeyDirectory {
  readonly #kv: KV;
  readonly #max: number;

  constructor(kv: KV, max: number) {
    this.#kv = kv;
    this.#max = max;
  }

  async #checkRegistered(fingerprint: string): Promise<string> {
    const fp = token(fingerprint);
    const marker = await this.#kv.get(`key.${fp}`);
    if (marker?.operation !== "PUT") throw notRegistered(fingerprint);
    return fp;
  }

  async publish(fingerprint: string, signed: Bytes): Promise<void> {
    if (signed.length === 0 || signed.length > MAX_SIGNED_PREKEY_BYTES) {
      throw tooLarge("Signed prekeys", signed.length, MAX_SIGNED_PREKEY_BYTES);
    }
    const fp = await this.#checkRegistered(fingerprint);
    await this.#kv.put(`signed.${fp}`, signed);
  }

  async addOneTime(
    fingerprint: string,
    kind: OneTimeKind,
    keys: readonly OneTimeKey[],
  ): Promise<number> {
    if (!ONE_TIME_KINDS.includes(kind)) {
      throw new TypeError(`One-time prekey kind ${shown(kind)} is unknown`);
    }
    checkOneTimeKeys(kind, keys);
    const fp = await this.#checkRegistered(fingerprint);
    const name = `ot.${fp}.${kind}`;
    return await withCas("Adding one-time prekeys", async () => {
      const current = await this.#kv.get(name);
      const held = current?.operation === "PUT" ? jsonOf<StoredKey[]>(current.value) : [];
      if (held.length + keys.length > this.#max) {
        throw new ReelayError(
          "prekeys-full",
          `Too many one-time ${kind} prekeys: ${held.length} are held and ${keys.length} more ` +
            `would pass the most, ${this.#max}`,
        );
      }
      for (const { id } of keys) if (held.some((each) => each.id === id)) throw duplicate(kind, id);
      const next = [...held, ...keys.map(({ id, key }) => ({ id, key: toBase64(key) }))];
      const bytes = utf8(JSON.stringify(next));
      if (current === null) await this.#kv.create(name, bytes);
      else await this.#kv.update(name, bytes, current.revision);
      return next.length;
    });
  }

  async takeBundle(fingerprint: string): Promise<PrekeyBundle | undefined> {
    const fp = token(fingerprint);
    const signed = await this.#kv.get(`signed.${fp}`);
    if (signed?.operation !== "PUT") return undefined;
    const bundle: PrekeyBundle = { signed: new Uint8Array(signed.value), oneTime: {} };
    for (const kind of ONE_TIME_KINDS) {
      const name = `ot.${fp}.${kind}`;
      const taken = await withCas("Taking a one-time prekey", async () => {
        const current = await this.#kv.get(name);
        if (current?.operation !== "PUT") return undefined;
        const [first, ...rest] = jsonOf<StoredKey[]>(current.value);
        if (first === undefined) return undefined;
        // Written only if nobody took a key since the read: each key goes to one taker.
        await this.#kv.update(name, utf8(JSON.stringify(rest)), current.revision);
        return first;
      });
      const key = taken && fromBase64(taken.key);
      if (taken && key) bundle.oneTime[kind] = { id: taken.id, key };
    }
    return bundle;
  }

  async oneTimeCount(fingerprint: string): Promise<Record<OneTimeKind, number>> {
    const fp = token(fingerprint);
    const counts = { x25519: 0, mlkem768: 0 };
    for (const kind of ONE_TIME_KINDS) {
      const current = await this.#kv.get(`ot.${fp}.${kind}`);
      if (current?.operation === "PUT") counts[kind] = jsonOf<StoredKey[]>(current.value).length;
    }
    return counts;
  }
}
