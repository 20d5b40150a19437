/**
 * Who is online across the cluster, in one NATS key-value bucket:
 *
 * - `person.<hex of the name key>` holds `{ node, name, info }` for each person. A node claims a
 *   name with the bucket's atomic create, so of two nodes racing for one name exactly one wins.
 * - `node.<id>` is each node's heartbeat, rewritten every third of the time to live.
 *
 * The bucket's entries live `ttlMs` unless rewritten, so the names of a node that died come free
 * on their own; and every node watches the bucket, so it sees people join and leave, and drops
 * the people of a node whose heartbeat it has not seen for `ttlMs` (deleting their entries at
 * once, so their names are free before the entries would expire).
 *
 * @module
 */

import { type KV, Kvm, type KvWatchEntry } from "@nats-io/kv";
import type { QueuedIterator } from "@nats-io/transport-node";
import { deferred, withTimeout } from "../../shared/async.ts";
import { fromUtf8, toHex, utf8 } from "../../shared/bytes.ts";
import { errorDetail, messageOf, ReelayError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/log.ts";
import { nameKey } from "../../shared/names.ts";
import type { NatsConnection } from "./nats.ts";
import { isWrongLastSequence } from "./_errors.ts";

/** A JSON value, as stored for each person. */
export type PresenceInfo =
  | null
  | boolean
  | number
  | string
  | PresenceInfo[]
  | { [key: string]: PresenceInfo };

/** A person online somewhere in the cluster. */
export interface PresentPerson {
  /** The node their connection is on. */
  node: string;
  /** Their name as they joined. */
  name: string;
  /** What the node published with them (the signed announcement). */
  info: PresenceInfo;
}

/** A change seen in the cluster's presence (on any node, this one included). */
export type PresenceEvent =
  | { type: "joined"; person: PresentPerson }
  | { type: "left"; person: PresentPerson; why: "left" | "node-gone" };

/** How presence runs. */
export interface PresenceOptions {
  /** This node's id (letters, digits, `-` and `_`). */
  nodeId: string;
  /** How long a dead node's people may stay listed; heartbeats go every third of it. */
  ttlMs: number;
  /** The bucket's name (tests use their own). */
  bucket?: string;
  log: Logger;
  /** Told when a person this node claimed was taken from it (their entry expired meanwhile). */
  onLost?: (name: string) => void;
}

/** The presence bucket's default name. */
export const PRESENCE_BUCKET = "reelay-presence";

const NODE_ID = /^[A-Za-z0-9_-]{1,64}$/;

interface Held {
  readonly name: string;
  readonly value: Uint8Array;
  revision: number;
}

interface Seen extends PresentPerson {
  revision: number;
}

function personKey(name: string): string {
  return `person.${toHex(utf8(nameKey(name)))}`;
}

/**
 * The cluster's directory of names.
 *
 * @example
 * ```ts ignore
 * const presence = await ClusterPresence.open(nc, { nodeId: "n1", ttlMs: 6000, log });
 * presence.subscribe((event) => console.log(event.type, event.person.name));
 * await presence.claim("alice", announcement); // throws name-taken when held anywhere
 * await presence.release("alice");
 * await presence.close();
 * ```
 */
export class ClusterPresence {
  readonly nodeId: string;
  readonly #kv: KV;
  readonly #options: PresenceOptions;
  readonly #held = new Map<string, Held>();
  readonly #people = new Map<string, Seen>();
  /**
   * People of a node taken for dead, out of `#people` while their entries are deleted and not
   * told yet: the watch's deletes of their entries find them here, not as people who left.
   */
  readonly #dropping = new Map<string, Seen>();
  /** Other nodes and when this node last heard their heartbeat (its own clock). */
  readonly #nodes = new Map<string, number>();
  readonly #listeners = new Set<(event: PresenceEvent) => void>();
  readonly #watcher: QueuedIterator<KvWatchEntry>;
  readonly #watching: Promise<void>;
  readonly #timer: ReturnType<typeof setInterval>;
  #beating: Promise<void> | undefined;
  #closed = false;
  readonly #releasing = new Set<Promise<void>>();
  /** Whether this node lost NATS or its watch, and has not heard its own heartbeat since. */
  #outage = false;
  /** When the watch last delivered this node's own heartbeat (its own clock). */
  #ownBeatSeenAt = Date.now();
  /** Resolved when the watch delivers this node's heartbeat at or after the given revision. */
  #synced: { revision: number; done: () => void } | undefined;

  private constructor(
    kv: KV,
    watcher: QueuedIterator<KvWatchEntry>,
    options: PresenceOptions,
  ) {
    this.nodeId = options.nodeId;
    this.#kv = kv;
    this.#options = options;
    this.#watcher = watcher;
    this.#watching = this.#watch();
    this.#timer = setInterval(() => {
      this.#beating ??= this.#beat().finally(() => this.#beating = undefined);
    }, Math.max(50, Math.floor(options.ttlMs / 3)));
  }

  /**
   * Opens (or creates) the bucket, starts watching it, and returns once this node has seen
   * everyone already present.
   */
  static async open(nc: NatsConnection, options: PresenceOptions): Promise<ClusterPresence> {
    if (!NODE_ID.test(options.nodeId)) {
      throw new TypeError(`Node id ${JSON.stringify(options.nodeId)} is not 1-64 of [A-Za-z0-9_-]`);
    }
    const bucket = options.bucket ?? PRESENCE_BUCKET;
    let kv: KV;
    try {
      kv = await new Kvm(nc).create(bucket, { ttl: options.ttlMs, history: 1 });
    } catch (error) {
      throw new ReelayError(
        "cluster-unavailable",
        `Cannot open the presence bucket ${JSON.stringify(bucket)} (${messageOf(error)}): ` +
          "is JetStream enabled (nats-server -js), and do all nodes use the same presence_ttl_ms?",
        { cause: error },
      );
    }
    const watcher = await kv.watch();
    const presence = new ClusterPresence(kv, watcher, options);
    try {
      await withTimeout(
        presence.#sync(),
        10_000,
        () =>
          new ReelayError(
            "cluster-unavailable",
            "The presence bucket's entries did not arrive within 10 s",
          ),
      );
    } catch (error) {
      await presence.close();
      throw error;
    }
    return presence;
  }

  /** Everyone online in the cluster, this node's people included. */
  people(): PresentPerson[] {
    return [...this.#people.values()].map(publicPerson);
  }

  /** Whoever holds `name` (any case) anywhere in the cluster, as this node last saw it. */
  get(name: string): PresentPerson | undefined {
    const seen = this.#people.get(personKey(name));
    return seen && publicPerson(seen);
  }

  /** Calls `listener` on each change; returns a function that stops it. */
  subscribe(listener: (event: PresenceEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Takes `name` for a person on this node, atomically across the cluster. Throws `name-taken`
   * when someone anywhere holds it, `cluster-unavailable` when NATS does not answer.
   */
  async claim(name: string, info: PresenceInfo): Promise<void> {
    const key = personKey(name);
    const value = utf8(JSON.stringify({ node: this.nodeId, name, info }));
    let revision: number;
    try {
      revision = await this.#kv.create(key, value);
    } catch (error) {
      if (isWrongLastSequence(error)) {
        const holder = this.#people.get(key)?.name ?? name;
        throw new ReelayError(
          "name-taken",
          `Name ${JSON.stringify(holder)} is taken: choose another with --name`,
        );
      }
      throw unavailable("claim the name", error);
    }
    this.#held.set(key, { name, value, revision });
    this.#forgetStale(key, revision);
  }

  /**
   * The create proves that whoever held `key` before is gone: their entry expired with their
   * silent node, which a watch is not told. Drops them now, before this node lists its own
   * person under the name: a welcome must never show someone else under the newcomer's name.
   */
  #forgetStale(key: string, revision: number): void {
    this.#tellDropped(key);
    const stale = this.#people.get(key);
    if (!stale || stale.revision >= revision) return;
    this.#people.delete(key);
    this.#emit({ type: "left", person: publicPerson(stale), why: "node-gone" });
  }

  /** Gives up a name this node claimed (the person left). Harmless for a name not held. */
  async release(name: string): Promise<void> {
    const key = personKey(name);
    const held = this.#held.get(key);
    if (!held) return;
    this.#held.delete(key);
    // close() waits for releases under way: a node that closes right after someone left must
    // not leave their name claimed in NATS until the entry's TTL.
    const releasing = this.#delete(key, name, held.revision);
    this.#releasing.add(releasing);
    try {
      await releasing;
    } finally {
      this.#releasing.delete(releasing);
    }
  }

  async #delete(key: string, name: string, revision: number): Promise<void> {
    try {
      await this.#kv.delete(key, { previousSeq: revision });
    } catch (error) {
      // Taken over meanwhile (not ours to delete), or NATS is away: the entry expires anyway.
      this.#options.log("warn", `Could not release ${JSON.stringify(name)}: ${messageOf(error)}`);
    }
  }

  /** Stops heartbeats and watching, and removes this node's people and heartbeat. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    await this.#beating;
    const names = [...this.#held.values()].map((held) => held.name);
    await Promise.all([...names.map((name) => this.release(name)), ...this.#releasing]);
    try {
      await this.#kv.delete(`node.${this.nodeId}`);
    } catch {
      // NATS is away; the heartbeat expires on its own.
    }
    this.#watcher.stop();
    await this.#watching;
  }

  async #sync(): Promise<void> {
    const done = deferred<void>();
    const revision = await this.#kv.put(`node.${this.nodeId}`, utf8(String(Date.now())));
    this.#synced = { revision, done: done.resolve };
    if (this.#seenOwnBeat >= revision) done.resolve();
    await done.promise;
    this.#synced = undefined;
  }

  #seenOwnBeat = 0;

  async #watch(): Promise<void> {
    try {
      for await (const entry of this.#watcher) {
        try {
          this.#apply(entry);
        } catch (error) {
          this.#options.log("error", `Presence entry ${entry.key} ignored: ${errorDetail(error)}`);
        }
      }
    } catch (error) {
      if (!this.#closed) this.#options.log("error", `Presence watch ended: ${errorDetail(error)}`);
    }
  }

  #apply(entry: KvWatchEntry): void {
    const removed = entry.operation !== "PUT";
    if (entry.key.startsWith("node.")) {
      const node = entry.key.slice("node.".length);
      if (node === this.nodeId) {
        this.#seenOwnBeat = Math.max(this.#seenOwnBeat, entry.revision);
        this.#ownBeatSeenAt = Date.now();
        if (this.#outage) {
          // Hearing again after an outage: every node gets a fresh time to show it is alive.
          this.#outage = false;
          for (const other of this.#nodes.keys()) this.#nodes.set(other, this.#ownBeatSeenAt);
        }
        if (this.#synced && entry.revision >= this.#synced.revision) this.#synced.done();
      } else if (removed) {
        this.#nodeGone(node);
      } else {
        this.#nodes.set(node, Date.now());
      }
      return;
    }
    if (!entry.key.startsWith("person.")) return;
    // A dropped person's entry deleted (their name is free now) or taken by someone else: their
    // leaving is told before anything else of that name.
    this.#tellDropped(entry.key);
    const before = this.#people.get(entry.key);
    if (removed) {
      if (!before) return;
      this.#people.delete(entry.key);
      this.#emit({ type: "left", person: publicPerson(before), why: "left" });
      return;
    }
    const person = parsePerson(entry.value);
    if (person.node !== this.nodeId && !this.#nodes.has(person.node)) {
      this.#nodes.set(person.node, Date.now());
    }
    this.#people.set(entry.key, { ...person, revision: entry.revision });
    if (before && before.node === person.node && before.name === person.name) return; // refresh
    if (before) this.#emit({ type: "left", person: publicPerson(before), why: "left" });
    this.#emit({ type: "joined", person });
  }

  #nodeGone(node: string): void {
    for (const [key] of this.#drop(node)) this.#tellDropped(key);
  }

  /** Takes `node` and its people off the lists, into `#dropping`; returns those people. */
  #drop(node: string): [string, Seen][] {
    this.#nodes.delete(node);
    const dropped = [...this.#people].filter(([, person]) => person.node === node);
    for (const [key, person] of dropped) {
      this.#people.delete(key);
      this.#dropping.set(key, person);
    }
    return dropped;
  }

  /** Tells that the person dropped under `key` left with their node, unless told already. */
  #tellDropped(key: string): void {
    const person = this.#dropping.get(key);
    if (!person) return;
    this.#dropping.delete(key);
    this.#emit({ type: "left", person: publicPerson(person), why: "node-gone" });
  }

  #emit(event: PresenceEvent): void {
    for (const listener of this.#listeners) {
      try {
        listener(event);
      } catch (error) {
        this.#options.log("error", `Presence listener failed: ${errorDetail(error)}`);
      }
    }
  }

  /** Rewrites this node's heartbeat and people, and drops nodes not heard from in time. */
  async #beat(): Promise<void> {
    if (this.#closed) return;
    try {
      await this.#kv.put(`node.${this.nodeId}`, utf8(String(Date.now())));
    } catch (error) {
      // This node cannot reach NATS: it hears nobody, so nobody's silence means anything yet.
      if (!this.#outage) {
        this.#options.log("warn", `Presence heartbeat failed: ${messageOf(error)}`);
      }
      this.#outage = true;
      return;
    }
    for (const [key, held] of [...this.#held]) {
      try {
        held.revision = await this.#refresh(key, held);
      } catch (error) {
        if (!isWrongLastSequence(error)) {
          this.#options.log("warn", `Presence refresh failed: ${messageOf(error)}`);
          continue;
        }
        this.#held.delete(key);
        this.#options.log("warn", `Lost the name ${JSON.stringify(held.name)} to another node`);
        this.#options.onLost?.(held.name);
      }
    }
    const now = Date.now();
    // Judge others by their silence only while this node hears itself through the watch: after
    // a reconnect the watch takes a moment to resume, and meanwhile everyone seems silent.
    if (this.#outage || now - this.#ownBeatSeenAt > this.#options.ttlMs * 0.75) {
      this.#outage = true;
      return;
    }
    for (const [node, heard] of [...this.#nodes]) {
      if (now - heard <= this.#options.ttlMs) continue;
      this.#options.log("warn", `Node ${node} went quiet: its people are removed`);
      // Off the lists first, so that the watch's deletes of their entries are told as their
      // node gone, not as people who left; told once their names are free (deleted, or expired
      // on their own), so that a name is free once its leaving is told. previousSeq keeps a name
      // someone took meanwhile.
      const stale = this.#drop(node);
      for (const [key, person] of stale) {
        await this.#kv.delete(key, { previousSeq: person.revision }).catch(() => {});
      }
      for (const [key] of stale) this.#tellDropped(key);
    }
  }

  /**
   * Rewrites a held entry. When it is gone (it expired while NATS was away, or another node took
   * this node for dead and freed it) the name is claimed again, atomically: it is lost only when
   * someone else holds it now.
   */
  async #refresh(key: string, held: Held): Promise<number> {
    try {
      return await this.#kv.update(key, held.value, held.revision);
    } catch (error) {
      if (!isWrongLastSequence(error)) throw error;
      const current = await this.#kv.get(key);
      if (current && current.operation === "PUT") throw error; // someone else's now
      return current
        ? await this.#kv.update(key, held.value, current.revision)
        : await this.#kv.create(key, held.value);
    }
  }
}

function publicPerson({ node, name, info }: PresentPerson): PresentPerson {
  return { node, name, info };
}

function parsePerson(value: Uint8Array): PresentPerson {
  const parsed = JSON.parse(fromUtf8(value) ?? "null");
  if (
    typeof parsed !== "object" || parsed === null || typeof parsed.node !== "string" ||
    typeof parsed.name !== "string"
  ) {
    throw new TypeError("Presence entry is not { node, name, info }");
  }
  return { node: parsed.node, name: parsed.name, info: parsed.info ?? null };
}

function unavailable(what: string, error: unknown): ReelayError {
  return new ReelayError(
    "cluster-unavailable",
    `Cannot ${what}: the cluster does not answer (${messageOf(error)})`,
    { cause: error },
  );
}
