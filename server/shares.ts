/**
 * Fair shares: what one host may hold of the server (connections still joining, people joined)
 * and what all connections together may hold of its memory (bytes queued to send). Pure
 * bookkeeping with no sockets, so the rules are tested on their own; `server.ts` applies them.
 *
 * A **host** is an IPv4 address, or an IPv6 /64 (one machine or one home network gets a whole
 * /64, so counting single IPv6 addresses would let it take every share).
 *
 * @module
 */

/**
 * The host a remote address counts against: IPv4 as is (also when written as an IPv4-mapped
 * IPv6 address, as a dual-stack listener reports it), IPv6 as its /64 prefix.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { hostOf } from "./shares.ts";
 * assert.equal(hostOf("::ffff:127.0.0.1"), "127.0.0.1");
 * assert.equal(hostOf("192.168.1.20"), "192.168.1.20");
 * assert.equal(hostOf("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
 * assert.equal(hostOf("2001:db8:1:2:ffff::9"), "2001:db8:1:2::/64");
 * assert.equal(hostOf("::1"), "0:0:0:0::/64");
 * ```
 */
export function hostOf(address: string): string {
  const plain = address.replace(/^\[|\]$/g, "").replace(/%.*$/, "");
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(plain);
  if (mapped) return mapped[1];
  if (!plain.includes(":")) return plain;
  const [head, tail = ""] = plain.toLowerCase().split("::");
  const front = head === "" ? [] : head.split(":");
  const back = tail === "" ? [] : tail.split(":");
  const groups = plain.includes("::")
    ? [...front, ...Array(Math.max(0, 8 - front.length - back.length)).fill("0"), ...back]
    : front;
  const prefix = groups.slice(0, 4).map((group) => group.replace(/^0+(?=.)/, ""));
  return `${prefix.join(":")}::/64`;
}

/** The caps {@linkcode HostShares} enforces (the `[limits]` keys of the same names). */
export interface ShareLimits {
  /** Connections still joining, from all hosts together. */
  maxPending: number;
  /** Connections still joining from one host. */
  maxPendingPerHost: number;
  /** People joined from one host. */
  maxClientsPerHost: number;
}

/** What happened to a new connection: it is in; and these older ones must go to make room. */
export interface Admission<C> {
  /** Pending connections to refuse with `too-many-pending`, oldest first. */
  evict: C[];
}

interface Host<C> {
  /** Still joining, oldest first (a Set keeps insertion order). */
  pending: Set<C>;
  joined: Set<C>;
}

/**
 * Per-host accounting of connections. A new connection is always let in: when its host (or the
 * whole server) has no joining slot left, the **oldest** joining connection of its host (or of
 * the host holding the most) is evicted instead. So a host that opens sockets and sends nothing
 * only ever pushes out its own, and a newcomer is never the one refused.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { HostShares } from "./shares.ts";
 * const shares = new HostShares<string>({ maxPending: 2, maxPendingPerHost: 2, maxClientsPerHost: 1 });
 * assert.deepEqual(shares.admit("10.0.0.9", "a1").evict, []);
 * assert.deepEqual(shares.admit("10.0.0.9", "a2").evict, []);
 * assert.deepEqual(shares.admit("10.0.0.9", "a3").evict, ["a1"]); // its own oldest goes
 * assert.deepEqual(shares.admit("10.0.0.5", "b1").evict, ["a2"]); // full: the biggest host's oldest
 * assert.equal(shares.join("10.0.0.5", "b1"), true);
 * assert.equal(shares.admit("10.0.0.5", "b2").evict.length, 0);
 * assert.equal(shares.join("10.0.0.5", "b2"), false); // one person per host here
 * shares.release("10.0.0.5", "b1");
 * assert.equal(shares.join("10.0.0.5", "b2"), true);
 * ```
 */
export class HostShares<C> {
  readonly #limits: ShareLimits;
  readonly #hosts = new Map<string, Host<C>>();
  #pending = 0;

  /** Starts empty. `limits` is read on every call, so a changed config applies at once. */
  constructor(limits: ShareLimits) {
    this.#limits = limits;
  }

  /** Connections still joining, from every host. */
  get pending(): number {
    return this.#pending;
  }

  /** Connections still joining from `host`. */
  pendingOf(host: string): number {
    return this.#hosts.get(host)?.pending.size ?? 0;
  }

  /** People joined from `host`. */
  joinedOf(host: string): number {
    return this.#hosts.get(host)?.joined.size ?? 0;
  }

  /** The people joined from `host` (for per-host counts of what they do). */
  joinedFrom(host: string): Iterable<C> {
    return this.#hosts.get(host)?.joined ?? [];
  }

  /** Whether `host` already has its whole share of people joined. */
  hostFull(host: string): boolean {
    return this.joinedOf(host) >= this.#limits.maxClientsPerHost;
  }

  /**
   * Counts a new connection from `host` as joining, and says which joining connections must be
   * refused to keep within the caps (the caller closes them and then calls `release`).
   */
  admit(host: string, connection: C): Admission<C> {
    const entry = this.#host(host);
    const evict: C[] = [];
    if (entry.pending.size >= this.#limits.maxPendingPerHost) {
      evict.push(this.#evictOldest(entry));
    } else if (this.#pending >= this.#limits.maxPending) {
      evict.push(this.#evictOldest(this.#busiest()));
    }
    entry.pending.add(connection);
    this.#pending++;
    return { evict };
  }

  /**
   * Moves a joining connection to joined, when its host has room; false (and it stays joining)
   * when the host already has `maxClientsPerHost` people in.
   */
  join(host: string, connection: C): boolean {
    const entry = this.#host(host);
    if (entry.joined.size >= this.#limits.maxClientsPerHost) return false;
    if (entry.pending.delete(connection)) this.#pending--;
    entry.joined.add(connection);
    return true;
  }

  /** Forgets a connection that ended (joining or joined). Idempotent. */
  release(host: string, connection: C): void {
    const entry = this.#hosts.get(host);
    if (!entry) return;
    if (entry.pending.delete(connection)) this.#pending--;
    entry.joined.delete(connection);
    if (entry.pending.size === 0 && entry.joined.size === 0) this.#hosts.delete(host);
  }

  #host(host: string): Host<C> {
    let entry = this.#hosts.get(host);
    if (!entry) {
      entry = { pending: new Set(), joined: new Set() };
      this.#hosts.set(host, entry);
    }
    return entry;
  }

  #busiest(): Host<C> {
    let busiest: Host<C> | undefined;
    for (const entry of this.#hosts.values()) {
      if (!busiest || entry.pending.size > busiest.pending.size) busiest = entry;
    }
    // maxPending >= 1 and every pending connection belongs to a host: there is one.
    return busiest!;
  }

  #evictOldest(entry: Host<C>): C {
    const [oldest] = entry.pending;
    entry.pending.delete(oldest);
    this.#pending--;
    return oldest;
  }
}

/**
 * The server-wide budget of bytes queued to send, over every connection's urgent lane. Each
 * connection already has its own cap (`max_queue_bytes`); this bounds their sum, so many peers
 * that stop reading cannot together take the server's memory.
 *
 * Chat refuses new envelopes while the budget is spent (`recipient-busy`, to the sender), see
 * {@linkcode QueueBudget.hasRoom}. Other frames (notices, answers) are still queued, except to
 * a connection already holding more than its fair part of the budget: that one is not reading
 * and is cut off, see {@linkcode QueueBudget.reserve}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { QueueBudget } from "./shares.ts";
 * const budget = new QueueBudget(1000, () => 4); // 4 connections: a fair part is 250 bytes
 * assert.ok(budget.reserve(600, 0));
 * assert.ok(!budget.hasRoom(500));
 * assert.ok(budget.reserve(500, 100)); // over budget, but this connection holds little
 * assert.ok(!budget.reserve(10, 600)); // over budget and holding more than its part
 * budget.release(1100);
 * assert.equal(budget.queued, 0);
 * ```
 */
export class QueueBudget {
  /** The budget in bytes (`[limits] max_total_queue_bytes`). */
  readonly limit: number;
  readonly #connections: () => number;
  #queued = 0;

  /** A budget of `limit` bytes shared by `connections()` connections. */
  constructor(limit: number, connections: () => number) {
    this.limit = limit;
    this.#connections = connections;
  }

  /** Bytes queued now, over every connection. */
  get queued(): number {
    return this.#queued;
  }

  /** Whether `bytes` more fit in the budget. */
  hasRoom(bytes: number): boolean {
    return this.#queued + bytes <= this.limit;
  }

  /** One connection's fair part of the budget: the budget over the connections there are. */
  fairPart(): number {
    return this.limit / Math.max(1, this.#connections());
  }

  /**
   * Counts `bytes` about to be queued on a connection that already holds `held`; false (nothing
   * counted) when the budget is spent and that connection holds more than its fair part.
   */
  reserve(bytes: number, held: number): boolean {
    if (!this.hasRoom(bytes) && held > this.fairPart()) {
      return false;
    }
    this.#queued += bytes;
    return true;
  }

  /** Gives back bytes that were written or dropped. */
  release(bytes: number): void {
    this.#queued = Math.max(0, this.#queued - bytes);
  }
}
