/**
 * The client's group commit (shared/group_commit.ts) on its own: what waits for a commit is
 * told of its own outcome, and what waits for nothing but the order (acks, error events) is never
 * lost with a commit that failed. Each flush is run by the test, so no timer decides the order.
 */
import assert from "node:assert/strict";
import { GroupCommit } from "../shared/group_commit.ts";

/** A group commit whose flushes the test runs, over a transaction that fails while `failing`. */
function manual() {
  const flushes: (() => void)[] = [];
  const log: string[] = [];
  const state = { failing: false };
  const commits = new GroupCommit({
    schedule: (flush) => void flushes.push(flush),
    transaction: (body) => {
      body();
      if (state.failing) throw new Error("disk I/O error (test)");
      log.push("commit");
    },
    failed: (error) => void log.push(`failed: ${(error as Error).message}`),
    closed: () => new Error("Closed"),
  });
  const flush = () => {
    assert.equal(flushes.length, 1, "one flush scheduled");
    flushes.shift()!();
  };
  return { commits, log, state, flush };
}

Deno.test("group commit: a failed commit still runs what afterPending queued on it, in order", async () => {
  const { commits, log, state, flush } = manual();
  state.failing = true;
  const staged = commits.stage(() => log.push("write a"), () => log.push("message a shown"));
  const acked = commits.afterPending(() => log.push("ack of an ignored sender's message"));
  const told = commits.afterPending(() => log.push("error event: unknown-sender"));
  flush();
  await assert.rejects(staged, /disk I\/O error \(test\)/);
  assert.deepEqual(log, [
    "write a",
    "failed: disk I/O error (test)",
    "ack of an ignored sender's message",
    "error event: unknown-sender",
  ]);
  await acked;
  await told;
  // With nothing staged, it runs at once.
  const now = commits.afterPending(() => log.push("at once"));
  assert.equal(log.at(-1), "at once");
  await now;
});

Deno.test("group commit: an after that throws rejects only its own stager; the others settle with theirs", async () => {
  const { commits, log, flush } = manual();
  const send = commits.stage(() => {}, () => log.push("send b: envelope posted"));
  const buggy = commits.stage(() => {}, () => {
    throw new Error("listener bug on message c");
  });
  const pending = commits.afterPending(() => {
    throw new Error("listener bug on an error event");
  });
  const later = commits.stage(() => {}, () => log.push("message d shown"));
  flush();
  const [b, c, pendingResult, d] = await Promise.allSettled([send, buggy, pending, later]);
  assert.deepEqual(log, ["commit", "send b: envelope posted", "message d shown"]);
  assert.equal(b.status, "fulfilled");
  assert.equal(d.status, "fulfilled");
  assert.equal(c.status === "rejected" && (c.reason as Error).message, "listener bug on message c");
  assert.equal(
    pendingResult.status === "rejected" && (pendingResult.reason as Error).message,
    "listener bug on an error event",
  );
});
