/**
 * Chat rates: a token bucket (`rate` tokens a second, holding at most `burst`) per sender, and
 * per recipient and per pair of people ({@linkcode InboundChat}).
 *
 * @module
 */

/**
 * Refills continuously; each accepted action takes one token.
 *
 * @example
 * ```ts
 * import { TokenBucket } from "./rate_limit.ts";
 * const bucket = new TokenBucket(10, 20);
 * bucket.take(); // true until 20 actions arrive faster than 10 a second
 * ```
 */
export class TokenBucket {
  readonly #rate: number;
  readonly #burst: number;
  #tokens: number;
  #updated: number;

  /** Creates a full bucket. `now` is injectable for tests. */
  constructor(
    rate: number,
    burst: number,
    private readonly now: () => number = performance.now.bind(performance),
  ) {
    this.#rate = rate;
    this.#burst = burst;
    this.#tokens = burst;
    this.#updated = now();
  }

  /** Takes one token if there is one. */
  take(): boolean {
    if (!this.peek()) return false;
    this.#tokens -= 1;
    return true;
  }

  /** Whether a token is there, without taking it. */
  peek(): boolean {
    const now = this.now();
    this.#tokens = Math.min(
      this.#burst,
      this.#tokens + ((now - this.#updated) / 1000) * this.#rate,
    );
    this.#updated = now;
    return this.#tokens >= 1;
  }
}

/** The rates {@linkcode InboundChat} enforces (the `[limits]` keys of the same names). */
export interface InboundRates {
  /** Messages a second one person may receive from everyone together, and in one burst. */
  chatInboundRate: number;
  chatInboundBurst: number;
  /** Messages a second one person may receive from one sender, and in one burst. */
  chatPairRate: number;
  chatPairBurst: number;
}

/** Why an inbound message was refused: the whole inbound rate, or this sender's pair rate. */
export type InboundRefusal = "recipient" | "pair";

/** Senders remembered per recipient; past this the least recently heard-from one is forgotten. */
export const MAX_PAIRS = 1024;

/**
 * What one recipient accepts: a bucket for everything sent to them and one per sender. The
 * excess is refused to the **sender** (the caller turns the refusal into an error for them), so
 * a flood from others never costs the recipient their connection.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { InboundChat } from "./rate_limit.ts";
 * let now = 0;
 * const rates = { chatInboundRate: 10, chatInboundBurst: 3, chatPairRate: 1, chatPairBurst: 2 };
 * const inbound = new InboundChat(rates, () => now);
 * assert.equal(inbound.take("mallory"), undefined);
 * assert.equal(inbound.take("mallory"), undefined);
 * assert.equal(inbound.take("mallory"), "pair"); // mallory's share is spent
 * assert.equal(inbound.take("bob"), undefined); // bob still gets through
 * assert.equal(inbound.take("carol"), "recipient"); // the whole burst of 3 is spent
 * now += 1000;
 * assert.equal(inbound.take("carol"), undefined);
 * ```
 */
export class InboundChat {
  readonly #rates: InboundRates;
  readonly #now: () => number;
  readonly #all: TokenBucket;
  readonly #pairs = new Map<string, TokenBucket>();

  /** Full buckets; `now` (milliseconds) is injectable for tests. */
  constructor(rates: InboundRates, now: () => number = performance.now.bind(performance)) {
    this.#rates = rates;
    this.#now = now;
    this.#all = new TokenBucket(rates.chatInboundRate, rates.chatInboundBurst, now);
  }

  /** Takes a token for one message from `sender` (a name key); the refusal when none is left. */
  take(sender: string): InboundRefusal | undefined {
    let pair = this.#pairs.get(sender);
    if (pair) {
      this.#pairs.delete(sender); // re-inserted below: the map's order is least recent first
    } else {
      pair = new TokenBucket(this.#rates.chatPairRate, this.#rates.chatPairBurst, this.#now);
      if (this.#pairs.size >= MAX_PAIRS) this.#pairs.delete(this.#pairs.keys().next().value!);
    }
    this.#pairs.set(sender, pair);
    if (!pair.peek()) return "pair";
    if (!this.#all.take()) return "recipient";
    pair.take();
    return undefined;
  }
}
