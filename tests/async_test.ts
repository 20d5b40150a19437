import assert from "node:assert/strict";
import {
  AsyncQueue,
  deferred,
  onSignals,
  SerialQueue,
  settlesWithin,
  Wake,
  withTimeout,
} from "../shared/async.ts";

Deno.test("deferred: the first settlement wins and is remembered", async () => {
  const answer = deferred<number>();
  assert.equal(answer.settled, false);
  answer.resolve(1);
  answer.resolve(2);
  answer.reject(new Error("late"));
  assert.equal(await answer.promise, 1);
  assert.equal(answer.settled, true);
});

Deno.test("serial queue: tasks never overlap, a failure rejects only its own task", async () => {
  const queue = new SerialQueue();
  const log: string[] = [];
  let running = 0;
  const task = (name: string, fail = false) =>
    queue.run(async () => {
      running++;
      assert.equal(running, 1, "tasks overlapped");
      await Promise.resolve();
      log.push(name);
      running--;
      if (fail) throw new Error(name);
      return name;
    });
  const results = await Promise.allSettled([task("a"), task("b", true), task("c")]);
  assert.deepEqual(results.map((result) => result.status), ["fulfilled", "rejected", "fulfilled"]);
  assert.deepEqual(log, ["a", "b", "c"]);
  await queue.idle();
});

Deno.test("withTimeout: the promise's outcome, or the made error at the deadline", async () => {
  assert.equal(await withTimeout(Promise.resolve("fast"), 1000, () => new Error("x")), "fast");
  await assert.rejects(
    withTimeout(Promise.reject(new Error("own")), 1000, () => new Error("x")),
    /own/,
  );
  const never = new Promise<void>(() => {});
  await assert.rejects(withTimeout(never, 5, () => new Error("deadline")), /deadline/);
});

Deno.test("settlesWithin: true for a settled promise (even a rejection), false at the deadline", async () => {
  assert.equal(await settlesWithin(Promise.reject(new Error("no")), 1000), true);
  assert.equal(await settlesWithin(new Promise(() => {}), 5), false);
});

Deno.test("wake: wakes everyone waiting now, and nobody later", async () => {
  const wake = new Wake();
  wake.wake(); // nobody waits: nothing is remembered
  const first = wake.wait();
  const second = wake.wait();
  assert.equal(wake.waiting, 2);
  wake.wake();
  await Promise.all([first, second]);
  assert.equal(wake.waiting, 0);
  assert.equal(await settlesWithin(wake.wait(), 5), false);
  wake.wake();
});

Deno.test("async queue: items in order, waits for more, ends with an error when given one", async () => {
  const queue = new AsyncQueue<number>();
  const drained = Array.fromAsync(queue.drain());
  queue.push(1);
  await Promise.resolve();
  queue.push(2);
  queue.end();
  queue.push(3); // after the end: ignored
  assert.deepEqual(await drained, [1, 2]);
  const failing = new AsyncQueue<number>();
  failing.push(1);
  failing.end(new Error("input broke"));
  assert.equal(await failing.take(), 1);
  await assert.rejects(failing.take(), /input broke/);
});

Deno.test("onSignals: the handler hears its signals until the returned function removes it", async () => {
  // A listener of the test's own stays all along, so a signal never takes its default action
  // (ending the process), and tells when each one has been dispatched.
  let arrived = Promise.withResolvers<void>();
  const absorb = () => arrived.resolve();
  Deno.addSignalListener("SIGUSR2", absorb);
  try {
    const heard: Deno.Signal[] = [];
    const stop = onSignals(["SIGUSR2"], (signal) => heard.push(signal));
    Deno.kill(Deno.pid, "SIGUSR2");
    await withTimeout(arrived.promise, 30_000, () => new Error("Timed out waiting for SIGUSR2"));
    assert.deepEqual(heard, ["SIGUSR2"]);
    stop();
    stop(); // twice is harmless
    arrived = Promise.withResolvers<void>();
    Deno.kill(Deno.pid, "SIGUSR2");
    await withTimeout(arrived.promise, 30_000, () => new Error("Timed out waiting for SIGUSR2"));
    assert.deepEqual(heard, ["SIGUSR2"], "not heard once removed");
  } finally {
    Deno.removeSignalListener("SIGUSR2", absorb);
  }
});
