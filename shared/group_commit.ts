/**
 * Group commit: writes staged by several requests go to disk in one transaction, so a burst
 * waits for the disk once instead of once each (a durable commit costs milliseconds, far more
 * than the work of one message). What must wait for the writes (an envelope leaving, an
 * acknowledgement, an answer, an event) runs after the commit, in the order staged. The client
 * store (`client/conversations.ts`) and the server's mailbox (`server/store/_mailbox.ts`) use it.
 *
 * @module
 */

interface Batch {
  /** Set once written (or failed): a batch is flushed once, by its schedule or by `close`. */
  done: boolean;
  writes: Map<string | number, () => void>;
  /** What waits for the commit, in the order staged. */
  steps: Step[];
}

/** A stager's `after` (or `afterPending`'s `told`), settled with its own result. */
interface Step {
  run: (() => void) | undefined;
  /** Whether it waits for the commit to succeed (a stager's); `afterPending`'s runs either way. */
  needsCommit: boolean;
  settled: PromiseWithResolvers<void>;
}

/** How a {@linkcode GroupCommit} flushes, writes, fails and refuses. */
export interface GroupCommitOptions {
  /** Runs a batch's flush later: everything staged before it starts shares the commit. */
  schedule: (flush: () => void) => void;
  /** Runs `body` (every staged write) in one transaction and commits it; throws if it failed. */
  transaction: (body: () => void) => void;
  /**
   * Runs at once when a commit failed, before anything else is staged: what lives in memory
   * past the last commit must be dropped there, or the next commit would write state ahead of
   * the file.
   */
  failed?: (error: unknown) => void;
  /** The error of a `stage` after {@linkcode GroupCommit.close}. */
  closed: () => Error;
}

/**
 * Stages writes for the next commit. The first write of a batch schedules its flush through
 * `schedule`; everything staged before the flush starts shares it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { GroupCommit } from "./group_commit.ts";
 * const log: string[] = [];
 * const commits = new GroupCommit({
 *   schedule: (flush) => queueMicrotask(flush),
 *   transaction: (body) => {
 *     body();
 *     log.push("commit");
 *   },
 *   closed: () => new Error("Closed"),
 * });
 * const one = commits.stage(() => log.push("a"), () => log.push("sent a"));
 * const two = commits.stage(() => log.push("b"), () => log.push("sent b"));
 * await Promise.all([one, two]);
 * assert.deepEqual(log, ["a", "b", "commit", "sent a", "sent b"]);
 * ```
 */
export class GroupCommit {
  readonly #options: GroupCommitOptions;
  #batch: Batch | undefined;
  #nextWrite = 0;
  #closed = false;

  /** Flushes scheduled with `options.schedule`, written with `options.transaction`. */
  constructor(options: GroupCommitOptions) {
    this.#options = options;
  }

  /**
   * Stages `write` (a synchronous store write) for the next commit and `after` for once it
   * committed. A later write under the same `key` replaces an earlier one of the batch (a
   * conversation's latest state is all that needs saving). Resolves once committed and every
   * `after` of the batch ran; rejects with the store's error, running no `after`, if the
   * commit failed, or with what its own `after` threw (never another stager's).
   */
  stage(write: () => void, after?: () => void, key?: string): Promise<void> {
    if (this.#closed) {
      const closed = Promise.reject(this.#options.closed());
      closed.catch(() => {}); // as a batch's: rejections go to whoever awaits `stage`
      return closed;
    }
    const batch = this.#batch ?? this.#open();
    batch.writes.set(key ?? this.#nextWrite++, write);
    const step = newStep(after, true);
    batch.steps.push(step);
    return step.settled.promise;
  }

  #open(): Batch {
    const batch: Batch = {
      done: false,
      writes: new Map(),
      steps: [],
    };
    this.#batch = batch;
    this.#options.schedule(() => this.#flush(batch));
    return batch;
  }

  /**
   * Runs `told` after the `after`s staged so far (at once when nothing waits for a commit), so
   * what is said about a later message never comes before what an earlier one waits to say. It
   * needs no commit, so it runs when the commit fails too (an ack, an error event). Settles with
   * what `told` itself did.
   */
  afterPending(told: () => void): Promise<void> {
    const step = newStep(told, false);
    if (this.#batch) this.#batch.steps.push(step);
    else settle(step);
    return step.settled.promise;
  }

  /**
   * Writes what is staged now, without waiting for its schedule, and takes nothing more: the
   * store closes next (a later `stage` rejects with the `closed` error and writes nothing).
   */
  close(): void {
    if (this.#batch) this.#flush(this.#batch);
    this.#closed = true;
  }

  #flush(batch: Batch): void {
    if (batch.done) return;
    batch.done = true;
    this.#batch = undefined;
    try {
      this.#options.transaction(() => {
        for (const write of batch.writes.values()) write();
      });
    } catch (error) {
      this.#options.failed?.(error);
      for (const step of batch.steps) {
        if (step.needsCommit) step.settled.reject(error);
        else settle(step);
      }
      return;
    }
    // Every `after` runs even if one throws (a listener's bug must not hold back an envelope),
    // and each stager hears only of its own.
    for (const step of batch.steps) settle(step);
  }
}

function newStep(run: (() => void) | undefined, needsCommit: boolean): Step {
  const settled = Promise.withResolvers<void>();
  settled.promise.catch(() => {}); // rejections go to whoever awaits `stage` or `afterPending`
  return { run, needsCommit, settled };
}

function settle(step: Step): void {
  try {
    step.run?.();
    step.settled.resolve();
  } catch (error) {
    step.settled.reject(error);
  }
}
