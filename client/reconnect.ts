/**
 * When and where a session dials again after its connection to the server is lost, and the loop
 * that does it ({@linkcode Reconnector}): exponential backoff with full jitter, a give-up time,
 * which endings no retry can change, the address to try at each attempt, and calling it all off
 * when the person leaves. The session (`session.ts`) lends it the dial, the join and what to hold
 * and resume; this file never sees a frame. Pure apart from the clock, the random source and the
 * wait it is handed, so a test drives it through an hour of retries without waiting.
 *
 * @module
 */

import { deferred, settlesWithin } from "../shared/async.ts";
import { DEFAULT_CONFIG } from "../shared/config/mod.ts";
import type { ClientEvent } from "./events.ts";

/** A server address to dial. */
export interface Address {
  hostname: string;
  port: number;
}

/** How a session reconnects (`[client] reconnect_*` in config.ini). */
export interface ReconnectPolicy {
  /** The first attempt waits up to this long (ms); each further one up to twice as long. */
  minDelayMs: number;
  /** No attempt waits longer than this (ms). */
  maxDelayMs: number;
  /**
   * Stop trying once the connection has been down this long (ms), counted from the first loss
   * of a run of quick losses (see {@linkcode outageAfter}).
   */
  giveUpMs: number;
  /**
   * How long `name-taken` is retried (ms): right after a loss the server may still hold our own
   * old connection until it notices it is gone. Past this, someone else has the name.
   */
  nameTakenGraceMs: number;
  /**
   * A connection that stayed up less than this (ms; default {@linkcode STABLE_MS}) before it was
   * lost again does not end the outage: the give-up time and the backoff go on counting.
   */
  stableMs?: number;
  /** A number in [0, 1) (default `Math.random`): the jitter. */
  random?: () => number;
  /** The clock (ms; default `Date.now`). */
  now?: () => number;
  /**
   * Waits `ms`, or less when `cancel` settles first (default: a real timer). Resolves to whether
   * `cancel` settled.
   */
  wait?: (ms: number, cancel: Promise<unknown>) => Promise<boolean>;
  /**
   * The address to dial at attempt `attempt` (from 1); default the session's own. A list of
   * servers (failover) plugs in here.
   */
  address?: (attempt: number) => Address;
}

/** The defaults, those of `[client] reconnect_*` (0.5 s doubling to 30 s, an hour down). */
export const DEFAULT_RECONNECT: ReconnectPolicy = {
  minDelayMs: DEFAULT_CONFIG.client.reconnectMinMs,
  maxDelayMs: DEFAULT_CONFIG.client.reconnectMaxMs,
  giveUpMs: DEFAULT_CONFIG.client.reconnectGiveUpMs,
  // Past the server's idle timeout (45 s), after which it has dropped a connection gone silent.
  nameTakenGraceMs: 60_000,
};

/**
 * How long a connection must stay up for its loss to start a new outage; shorter, and a server
 * that accepts the join and cuts the line each time would restart the give-up time for ever.
 */
export const STABLE_MS = 60_000;

/** A run of connection losses counted as one: when it began and how many dials it made. */
export interface Outage {
  since: number;
  attempts: number;
  /** When the last reconnect of the run succeeded (ms), while the connection is up. */
  backAt?: number;
}

/**
 * The outage a loss at `now` belongs to: the `previous` one again when its last reconnect was less
 * than `stableMs` ago, else a new one.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { DEFAULT_RECONNECT, outageAfter } from "./reconnect.ts";
 * const flapping = { since: 0, attempts: 7, backAt: 100_000 };
 * assert.deepEqual(outageAfter(flapping, 110_000, DEFAULT_RECONNECT), { since: 0, attempts: 7 });
 * assert.deepEqual(outageAfter(flapping, 200_000, DEFAULT_RECONNECT), { since: 200_000, attempts: 0 });
 * assert.deepEqual(outageAfter(undefined, 5, DEFAULT_RECONNECT), { since: 5, attempts: 0 });
 * ```
 */
export function outageAfter(
  previous: Outage | undefined,
  now: number,
  policy: ReconnectPolicy,
): Outage {
  const backAt = previous?.backAt;
  if (previous && backAt !== undefined && now - backAt < (policy.stableMs ?? STABLE_MS)) {
    return { since: previous.since, attempts: previous.attempts };
  }
  return { since: now, attempts: 0 };
}

/**
 * Endings no retry can change: the server's key is not the pinned one, the server refuses this
 * identity, name or build, it is not a reelay server, or another client with this identity took
 * over (`replaced`). `name-taken` is here too, after the
 * grace time ({@linkcode isFinal}).
 */
export const FINAL_CODES: ReadonlySet<string> = new Set([
  "server-key-changed",
  "not-reelay",
  "unsupported-protocol",
  "bad-name",
  "bad-signature",
  "bad-key",
  "bad-join-proof",
  "replayed-join",
  "name-taken",
  // Another client of this person joined with the same keys: coming back would close it in turn.
  "replaced",
  "bug",
]);

/**
 * Whether an ending with `code`, `downMs` after the connection was lost, ends the session rather
 * than being retried.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { DEFAULT_RECONNECT, isFinal } from "./reconnect.ts";
 * assert.equal(isFinal("server-lost", 0, DEFAULT_RECONNECT), false);
 * assert.equal(isFinal("server-key-changed", 0, DEFAULT_RECONNECT), true);
 * assert.equal(isFinal("name-taken", 1000, DEFAULT_RECONNECT), false);
 * assert.equal(isFinal("name-taken", 120_000, DEFAULT_RECONNECT), true);
 * ```
 */
export function isFinal(code: string, downMs: number, policy: ReconnectPolicy): boolean {
  if (code === "name-taken") return downMs >= policy.nameTakenGraceMs;
  return FINAL_CODES.has(code);
}

/**
 * How long to wait before attempt `attempt` (from 1): "full jitter", a uniform pick between 0
 * and min(max, min × 2^(attempt-1)), so clients cut off together do not all return together.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { backoffDelay, DEFAULT_RECONNECT } from "./reconnect.ts";
 * const top = () => 0.999999;
 * assert.equal(backoffDelay(1, DEFAULT_RECONNECT, top), 499);
 * assert.equal(backoffDelay(3, DEFAULT_RECONNECT, top), 1999);
 * assert.equal(backoffDelay(40, DEFAULT_RECONNECT, top), 29_999);
 * assert.equal(backoffDelay(5, DEFAULT_RECONNECT, () => 0), 0);
 * ```
 */
export function backoffDelay(
  attempt: number,
  policy: ReconnectPolicy,
  random: () => number = policy.random ?? Math.random,
): number {
  const ceiling = Math.min(policy.maxDelayMs, policy.minDelayMs * 2 ** Math.min(attempt - 1, 40));
  return Math.floor(random() * ceiling);
}

/** Waits `ms` with a real timer, or until `cancel` settles; resolves to whether it did. */
export function waitOrCancel(ms: number, cancel: Promise<unknown>): Promise<boolean> {
  return settlesWithin(cancel, ms);
}

/** Why a connection, an attempt or the session ended (the one definition of a session's end). */
export interface SessionEnd {
  code: string;
  reason: string;
}

/** What the reconnect loop borrows from its session. */
export interface ReconnectHost {
  /** `host:port` of the connection of the moment, for the events. */
  server(): string;
  /** Whether the session ended (the person left, or an ending was final). */
  ended(): boolean;
  emit(event: ClientEvent): void;
  /** The connection is down: holds (or fails) the work in flight. */
  hold(lost: SessionEnd): Promise<void>;
  /**
   * Dials `address` (the session's own when undefined), joins again; `signal` calls the dial
   * off. Throws why it failed.
   */
  rejoin(address: Address | undefined, signal: AbortSignal): Promise<void>;
  /** Joined again after `downMs` and `attempts`: says so, sends what waited, resumes. */
  back(downMs: number, attempts: number): Promise<void>;
  /** Ends the session; `tell`: with a `disconnected` event. */
  end(ending: SessionEnd, tell?: boolean): Promise<void>;
  /** Why an attempt failed, from what it threw. */
  endingOf(error: unknown): SessionEnd;
}

/**
 * Runs a session's reconnects: one loop at a time, from a lost connection to back, given up, a
 * final ending or the person leaving.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { ClientEvent } from "./events.ts";
 * import { DEFAULT_RECONNECT, type SessionEnd, Reconnector } from "./reconnect.ts";
 * const events: ClientEvent[] = [];
 * let now = 0;
 * let ended: SessionEnd | undefined;
 * const reconnector = new Reconnector({
 *   server: () => "h:9",
 *   ended: () => ended !== undefined,
 *   emit: (event) => void events.push(event),
 *   hold: () => Promise.resolve(),
 *   rejoin: () => Promise.reject(new Error("refused")),
 *   back: () => Promise.resolve(),
 *   end: (ending) => Promise.resolve(void (ended = ending)),
 *   endingOf: () => ({ code: "server-unreachable", reason: "No answer" }),
 * }, {
 *   ...DEFAULT_RECONNECT,
 *   giveUpMs: 10_000,
 *   now: () => now,
 *   wait: (ms) => Promise.resolve(now += ms).then(() => false),
 * });
 * await reconnector.run({ code: "server-lost", reason: "Lost" });
 * assert.equal(ended?.code, "gave-up");
 * assert.equal(events.at(-1)?.event, "gave-up");
 * ```
 */
export class Reconnector {
  readonly #host: ReconnectHost;
  readonly #policy: ReconnectPolicy | undefined;
  /** Settles when the person leaves: cuts a wait between attempts short. */
  readonly #leaving = deferred<void>();
  /** Aborts when the person leaves: calls off a dial under way. */
  readonly #leave = new AbortController();
  /** The loop of the moment, awaited by {@linkcode Reconnector.stop}'s callers. */
  #running: Promise<void> = Promise.resolve();
  /** The latest run of losses (see {@linkcode outageAfter}). */
  #outage: Outage | undefined;
  #down = false;

  /** Reconnects `host` by `policy`; without one, a lost connection ends the session. */
  constructor(host: ReconnectHost, policy: ReconnectPolicy | undefined) {
    this.#host = host;
    this.#policy = policy;
  }

  /** Whether the connection is down and being restored. */
  get down(): boolean {
    return this.#down;
  }

  /** Whether a connection lost with `lost` is worth dialing again for. */
  retries(lost: SessionEnd): boolean {
    const policy = this.#policy;
    return policy !== undefined && !this.#leaving.settled && !isFinal(lost.code, 0, policy);
  }

  /**
   * Dials again with backoff until a join succeeds, the person leaves, an ending is final or
   * the give-up time passed (see {@linkcode Reconnector.retries} first).
   */
  run(lost: SessionEnd): Promise<void> {
    const policy = this.#policy;
    if (!policy) return this.#host.end(lost);
    const loop = this.#loop(lost, policy);
    this.#running = loop.catch(() => {}); // its failure is the caller's to handle
    return loop;
  }

  /** The person leaves: the wait between attempts ends, a dial under way is called off. */
  stop(reason: Error): void {
    this.#leaving.resolve();
    this.#leave.abort(reason);
  }

  /** Resolves when the loop of the moment is over. */
  settled(): Promise<void> {
    return this.#running;
  }

  async #loop(lost: SessionEnd, policy: ReconnectPolicy): Promise<void> {
    const now = policy.now ?? Date.now;
    const outage = outageAfter(this.#outage, now(), policy);
    this.#outage = outage;
    const since = outage.since;
    this.#down = true;
    await this.#host.hold(lost);
    let last = lost;
    for (let attempt = outage.attempts + 1;; attempt++) {
      outage.attempts = attempt;
      const downMs = now() - since;
      if (downMs >= policy.giveUpMs) {
        return await this.#giveUp(last, downMs, attempt - 1);
      }
      const delayMs = backoffDelay(attempt, policy);
      const { code, reason } = last;
      this.#host.emit({
        event: "reconnecting",
        server: this.#host.server(),
        code,
        reason,
        attempt,
        delayMs,
      });
      if (await (policy.wait ?? waitOrCancel)(delayMs, this.#leaving.promise)) return;
      if (this.#host.ended()) return;
      try {
        await this.#host.rejoin(policy.address?.(attempt), this.#leave.signal);
        if (this.#host.ended()) return; // the person left while it joined
        outage.backAt = now();
        this.#down = false;
        return await this.#host.back(now() - since, attempt);
      } catch (error) {
        last = this.#host.endingOf(error);
        if (this.#leaving.settled) return;
        if (isFinal(last.code, now() - since, policy)) return await this.#host.end(last);
      }
    }
  }

  /** Says it gave up, with the last attempt's ending as data, and ends the session. */
  async #giveUp(last: SessionEnd, downMs: number, attempts: number): Promise<void> {
    const server = this.#host.server();
    const { code, reason } = last;
    this.#host.emit({ event: "gave-up", server, code, reason, afterMs: downMs, attempts });
    await this.#host.end({ code: "gave-up", reason }, false);
  }
}
