/**
 * The few concurrency shapes reelay needs, written once: a promise settled from outside
 * ({@linkcode deferred}), tasks run one at a time ({@linkcode SerialQueue}), waits with a
 * deadline ({@linkcode withTimeout}, {@linkcode settlesWithin}, {@linkcode abortAfter}), a queue drained by one async
 * reader ({@linkcode AsyncQueue}), a wake-up for loops that wait for more work
 * ({@linkcode Wake}), work put off to the end of this turn of the event loop
 * ({@linkcode afterThisTurn}), and signal hookups that are always undone ({@linkcode onSignals}).
 *
 * Ours rather than a library's: each is a few lines over the platform's promises, and the
 * timers they start are always cleared, which Deno's test sanitizers check.
 *
 * @module
 */

import { setImmediate } from "node:timers";

/**
 * Runs `task` once this turn of the event loop has handled the I/O it brought (Node's
 * `setImmediate`, which Deno runs after polling): requests read from several sockets in one
 * turn can join the work it does. Unlike `setTimeout(0)`, it is never clamped to milliseconds
 * when chained.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { afterThisTurn } from "./async.ts";
 * const order: string[] = [];
 * const done = Promise.withResolvers<void>();
 * afterThisTurn(() => {
 *   order.push("later");
 *   done.resolve();
 * });
 * order.push("now");
 * await done.promise;
 * assert.deepEqual(order, ["now", "later"]);
 * ```
 */
export function afterThisTurn(task: () => void): void {
  setImmediate(task);
}

/** A promise with its `resolve` and `reject`, and whether it has settled. */
export interface Deferred<T> {
  readonly promise: Promise<T>;
  resolve(value: T): void;
  reject(reason: unknown): void;
  /** True once `resolve` or `reject` was called. */
  readonly settled: boolean;
}

/**
 * A promise settled from outside. Settling twice is harmless (the first call wins).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { deferred } from "./async.ts";
 * const answer = deferred<number>();
 * answer.resolve(42);
 * assert.equal(await answer.promise, 42);
 * assert.ok(answer.settled);
 * ```
 */
export function deferred<T>(): Deferred<T> {
  const { promise, resolve, reject } = Promise.withResolvers<T>();
  let settled = false;
  return {
    promise,
    resolve: (value) => {
      settled = true;
      resolve(value);
    },
    reject: (reason) => {
      settled = true;
      reject(reason);
    },
    get settled() {
      return settled;
    },
  };
}

/**
 * Runs tasks one after another in the order given, so state checks and updates never
 * interleave. A failed task rejects its own promise only; the queue goes on.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SerialQueue } from "./async.ts";
 * const queue = new SerialQueue();
 * const order: number[] = [];
 * await Promise.all([
 *   queue.run(async () => { await Promise.resolve(); order.push(1); }),
 *   queue.run(() => { order.push(2); return Promise.resolve(); }),
 * ]);
 * assert.deepEqual(order, [1, 2]);
 * ```
 */
export class SerialQueue {
  #tail: Promise<unknown> = Promise.resolve();

  /** Runs `task` after every task queued before it; resolves or rejects as it does. */
  run<T>(task: () => Promise<T>): Promise<T> {
    const result = this.#tail.then(task);
    this.#tail = result.catch(() => {});
    return result;
  }

  /** Resolves once every task queued so far has finished. */
  async idle(): Promise<void> {
    await this.#tail;
  }
}

/**
 * Resolves or rejects as `promise` does, or rejects with `makeError()` after `ms`. The timer is
 * cleared either way.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { withTimeout } from "./async.ts";
 * const never = new Promise<void>(() => {});
 * await assert.rejects(withTimeout(never, 1, () => new Error("too slow")), /too slow/);
 * assert.equal(await withTimeout(Promise.resolve(1), 1000, () => new Error("x")), 1);
 * ```
 */
export async function withTimeout<T>(
  promise: Promise<T>,
  ms: number,
  makeError: () => Error,
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(makeError()), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Waits for `promise` to settle, but at most `ms`; resolves to whether it settled in time. Never
 * rejects (a rejection counts as settled).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { settlesWithin } from "./async.ts";
 * assert.equal(await settlesWithin(Promise.resolve(), 1000), true);
 * assert.equal(await settlesWithin(new Promise(() => {}), 1), false);
 * ```
 */
export async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<false>((resolve) => timer = setTimeout(() => resolve(false), ms));
  const settled = promise.then(() => true as const, () => true as const);
  try {
    return await Promise.race([settled, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** An `AbortSignal` with a deadline: see {@linkcode abortAfter}. */
export interface Deadline {
  /** Aborts when the time is up or when the signal given to `abortAfter` aborts. */
  readonly signal: AbortSignal;
  /** Whether it aborted because the time was up. */
  readonly expired: boolean;
  /** Stops the timer (call it once the guarded work is done). */
  clear(): void;
}

/**
 * A signal that aborts after `ms`, or earlier when `signal` aborts, for APIs that take one
 * (`Deno.connect`, `fetch`). Unlike `AbortSignal.timeout`, its timer is cleared by `clear()`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { abortAfter } from "./async.ts";
 * const leaving = new AbortController();
 * const deadline = abortAfter(60_000, leaving.signal);
 * leaving.abort(new Error("left"));
 * assert.equal(deadline.signal.aborted, true);
 * assert.equal(deadline.expired, false);
 * deadline.clear();
 * ```
 */
export function abortAfter(ms: number, signal?: AbortSignal): Deadline {
  const controller = new AbortController();
  let expired = false;
  const timer = setTimeout(() => {
    expired = true;
    controller.abort(new Error(`Deadline of ${ms} ms passed`));
  }, ms);
  const follow = () => controller.abort(signal?.reason);
  if (signal?.aborted) follow();
  else signal?.addEventListener("abort", follow, { once: true });
  return {
    signal: controller.signal,
    get expired() {
      return expired;
    },
    clear() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", follow);
    },
  };
}

/**
 * A wake-up call for loops that wait for more work: `wait()` resolves at the next `wake()`.
 * A `wake()` with nobody waiting does nothing, so a loop checks its condition before waiting.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Wake } from "./async.ts";
 * const wake = new Wake();
 * const waited = wake.wait();
 * wake.wake();
 * await waited;
 * assert.equal(wake.waiting, 0);
 * ```
 */
export class Wake {
  #waiters: (() => void)[] = [];

  /** How many are waiting now. */
  get waiting(): number {
    return this.#waiters.length;
  }

  /** Resolves at the next {@linkcode Wake.wake}. */
  wait(): Promise<void> {
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /** Wakes everyone waiting now. */
  wake(): void {
    for (const resolve of this.#waiters.splice(0)) resolve();
  }
}

/**
 * Items pushed by producers, drained in order by one async reader. {@linkcode AsyncQueue.end}
 * finishes the iteration after what is queued (or throws the given error there).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { AsyncQueue } from "./async.ts";
 * const queue = new AsyncQueue<string>();
 * queue.push("a");
 * queue.push("b");
 * queue.end();
 * assert.deepEqual(await Array.fromAsync(queue.drain()), ["a", "b"]);
 * ```
 */
export class AsyncQueue<T> {
  readonly #items: T[] = [];
  readonly #wake = new Wake();
  #ended = false;
  #error: { reason: unknown } | undefined;

  /** Items waiting to be taken. */
  get size(): number {
    return this.#items.length;
  }

  /** Adds an item (ignored after {@linkcode AsyncQueue.end}). */
  push(item: T): void {
    if (this.#ended) return;
    this.#items.push(item);
    this.#wake.wake();
  }

  /** No more items: the reader stops after the queued ones, throwing `error` when given. */
  end(error?: unknown): void {
    if (this.#ended) return;
    this.#ended = true;
    if (error !== undefined) this.#error = { reason: error };
    this.#wake.wake();
  }

  /** Drops every queued item. */
  clear(): void {
    this.#items.length = 0;
  }

  /** Takes the next item, waiting for one; `undefined` once ended and empty. */
  async take(): Promise<T | undefined> {
    while (this.#items.length === 0) {
      if (this.#ended) {
        if (this.#error) throw this.#error.reason;
        return undefined;
      }
      await this.#wake.wait();
    }
    return this.#items.shift();
  }

  /** Yields every item until the queue ends. */
  async *drain(): AsyncGenerator<T> {
    while (true) {
      if (this.#items.length === 0 && this.#ended) break;
      if (this.#items.length === 0) {
        await this.#wake.wait();
        continue;
      }
      yield this.#items.shift() as T;
    }
    if (this.#error) throw this.#error.reason;
  }
}

/** The signals that ask a program to stop: SIGINT and SIGTERM (only SIGINT on Windows). */
export const TERMINATION_SIGNALS: readonly Deno.Signal[] = Deno.build.os === "windows"
  ? ["SIGINT"]
  : ["SIGINT", "SIGTERM"];

/**
 * Calls `handler` with the signal's name on any of `signals`; returns the function that removes
 * the listeners. Signals this platform does not support are skipped.
 *
 * @example
 * ```ts
 * import { onSignals, TERMINATION_SIGNALS } from "./async.ts";
 * const stop = onSignals(TERMINATION_SIGNALS, (signal) => console.error(`got ${signal}`));
 * stop();
 * ```
 */
export function onSignals(
  signals: readonly Deno.Signal[],
  handler: (signal: Deno.Signal) => void,
): () => void {
  const removers: (() => void)[] = [];
  for (const signal of signals) {
    const listener = () => handler(signal);
    try {
      Deno.addSignalListener(signal, listener);
      removers.push(() => Deno.removeSignalListener(signal, listener));
    } catch {
      // Not supported here (e.g. SIGHUP on Windows): nothing to undo.
    }
  }
  return () => {
    for (const remove of removers.splice(0)) remove();
  };
}
