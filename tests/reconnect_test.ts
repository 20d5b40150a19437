/**
 * Reconnecting (issue 13): a real server on loopback, stopped and started again on the same port
 * with the same state, under clients that keep talking; requests in flight when a connection is
 * cut; endings no retry can change; giving up, on a clock the test drives.
 */
import assert from "node:assert/strict";
import type { ClientEvent, ClientSession, ReconnectPolicy } from "../client/mod.ts";
import { DEFAULT_RECONNECT, type SinkFactory } from "../client/mod.ts";
import { waitOrCancel } from "../client/reconnect.ts";
import { MAX_PENDING_REQUESTS } from "../client/session.ts";
import type { ReelayError } from "../shared/errors.ts";
import { deferred } from "../shared/async.ts";
import { type EventLog, joinClient, startTestServer } from "../testing/harness.ts";
import { ServerKey } from "../shared/channel/mod.ts";
import { clipServer } from "./_media.ts";
import { within } from "./_deadline.ts";
import { HostileProxy } from "./_proxy.ts";

/** Quick retries: the waits are real but nothing is asserted about how long they take. */
const QUICK: ReconnectPolicy = { ...DEFAULT_RECONNECT, minDelayMs: 20, maxDelayMs: 200 };

function texts(log: EventLog, from: string): string[] {
  return log.of("message").filter((event) => event.from === from).map((event) => event.text);
}

function problems(log: EventLog): ClientEvent[] {
  return log.events.filter((event) =>
    event.event === "key-changed" || event.event === "error" || event.event === "failed" ||
    event.event === "disconnected"
  );
}

/** Whether `session` has ended (its `closed` settled) by the time the microtasks ran. */
async function hasEnded(session: ClientSession): Promise<boolean> {
  return await Promise.race([session.closed.then(() => true), Promise.resolve(false)]);
}

Deno.test("server restarted on the same port and state under two chatting clients: the talk goes on", async () => {
  let server = await startTestServer();
  const { port, videos } = server;
  const alice = await joinClient(port, "alice", { reconnect: QUICK });
  const bob = await joinClient(port, "bob", { reconnect: QUICK });
  try {
    await alice.log.waitFor("joined", (event) => event.name === "bob");
    await alice.session.send("bob", "one");
    await bob.log.waitFor("message", (event) => event.text === "one");
    await bob.session.send("alice", "two");
    await alice.log.waitFor("message", (event) => event.text === "two");

    await server.close();
    await alice.log.waitFor("reconnecting");
    await bob.log.waitFor("reconnecting");
    // Typed while the server is away: it waits, and goes once the server is back.
    const three = alice.session.send("bob", "three");
    server = await startTestServer({ videos, patch: (config) => config.server.port = port });
    await alice.log.waitFor("reconnected");
    await bob.log.waitFor("reconnected");
    await within(three, 30_000, "the message typed while the server was away");
    await bob.log.waitFor("message", (event) => event.text === "three");
    await bob.session.send("alice", "four");
    await alice.log.waitFor("message", (event) => event.text === "four");
    await bob.log.waitFor("delivered", () => true);

    assert.deepEqual(texts(bob.log, "alice"), ["one", "three"], "nothing lost, nothing doubled");
    assert.deepEqual(texts(alice.log, "bob"), ["two", "four"]);
    assert.deepEqual(problems(alice.log), [], "no key-change warning, no error");
    assert.deepEqual(problems(bob.log), []);
    assert.equal(alice.log.of("welcome").length, 1, "a reconnect is not a new session");
    assert.equal(await hasEnded(alice.session), false);
  } finally {
    await alice.session.quit();
    await bob.session.quit();
    await server.close();
    await Deno.remove(videos, { recursive: true });
  }
});

/**
 * Alice joins through a hostile proxy that drops one frame of hers, then cuts her connection;
 * she reconnects straight to the server (the policy's next address).
 */
async function cutInFlight(drop: "send" | "relayed"): Promise<void> {
  const server = await startTestServer();
  const dropped = deferred<void>();
  const proxy = new HostileProxy(server.port, (direction, message) => {
    const hit = drop === "send"
      ? direction === "to-server" && message.type === "send"
      : direction === "to-client" && message.type === "relayed";
    if (!hit || dropped.settled) return [message];
    dropped.resolve();
    return [];
  });
  const direct = { hostname: "127.0.0.1", port: server.port };
  const bob = await joinClient(server.port, "bob");
  const alice = await joinClient(proxy.port, "alice", {
    reconnect: { ...QUICK, address: () => direct },
  });
  let cut = false;
  try {
    await bob.log.waitFor("joined", (event) => event.name === "alice");
    const sent = alice.session.send("bob", "in flight");
    await dropped.promise;
    // With the answer dropped, bob has the message already; with the send dropped, he has not.
    if (drop === "relayed") await bob.log.waitFor("message", (event) => event.text === "in flight");
    cut = true;
    await proxy.close();
    await within(sent, 30_000, "the message in flight to be acknowledged");
    await alice.log.waitFor("reconnected");
    await alice.log.waitFor("sent", (event) => event.to === "bob");
    await bob.log.waitFor("message", (event) => event.text === "in flight");
    // A message after it is delivered after it: the resent one is not in the way.
    await alice.session.send("bob", "after");
    await bob.log.waitFor("message", (event) => event.text === "after");
    assert.deepEqual(texts(bob.log, "alice"), ["in flight", "after"], "once, in order");
    assert.deepEqual(problems(bob.log), [], "a message sent again is dropped without a word");
    assert.deepEqual(problems(alice.log), []);
  } finally {
    await alice.session.quit();
    await bob.session.quit();
    if (!cut) await proxy.close();
    await server.close();
  }
}

Deno.test("a message the server never got when the connection was cut is sent again on reconnect", async () => {
  await cutInFlight("send");
});

Deno.test("a message relayed whose answer was lost is sent again and its recipient drops the copy", async () => {
  await cutInFlight("relayed");
});

/**
 * A clock the test moves: each wait between attempts passes as soon as `gate` has settled and
 * adds its length to the clock.
 */
function drivenClock(
  gate: Promise<unknown> = Promise.resolve(),
): Pick<ReconnectPolicy, "now" | "wait" | "random"> & { delays: number[] } {
  let now = 1_000_000;
  const delays: number[] = [];
  return {
    delays,
    now: () => now,
    random: () => 0.5,
    wait: async (ms, cancel) => {
      // Leaving cuts the wait short, as the real one does.
      if (await Promise.race([gate.then(() => false), cancel.then(() => true)])) return true;
      delays.push(ms);
      now += ms;
      return false;
    },
  };
}

/** A port that takes connections and hangs up at once: a server that never comes back. */
function hangUpListener(): { address: { hostname: string; port: number }; close(): Promise<void> } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepting = (async () => {
    for await (const conn of listener) conn.close();
  })();
  return {
    address: { hostname: "127.0.0.1", port: listener.addr.port },
    async close() {
      listener.close();
      await accepting.catch(() => {});
    },
  };
}

Deno.test("a server that never comes back: backoff doubles to its cap, then gave-up ends the session", async () => {
  const server = await startTestServer();
  const gone = hangUpListener();
  const clock = drivenClock();
  const policy: ReconnectPolicy = {
    ...DEFAULT_RECONNECT,
    giveUpMs: 120_000,
    ...clock,
    address: () => gone.address,
  };
  const alice = await joinClient(server.port, "alice", { reconnect: policy });
  try {
    await server.close();
    const end = await within(alice.session.closed, 60_000, "the session to end");
    assert.equal(end.code, "gave-up");
    // Full jitter at 0.5: half of 0.5 s doubling, capped at half of 30 s, until 2 min passed.
    assert.deepEqual(
      clock.delays,
      [250, 500, 1000, 2000, 4000, 8000, 15000, 15000, 15000, 15000, 15000, 15000, 15000],
    );
    const gaveUp = await alice.log.waitFor("gave-up");
    assert.equal(gaveUp.attempts, clock.delays.length);
    // Data, not a sentence: the terminal words it (format_test).
    assert.ok(gaveUp.afterMs >= 120_000, String(gaveUp.afterMs));
    assert.doesNotMatch(gaveUp.reason, /Gave up/);
    assert.equal(alice.log.of("reconnecting").length, clock.delays.length);
    assert.equal(alice.log.of("reconnected").length, 0);
  } finally {
    await alice.session.quit();
    await gone.close();
  }
});

Deno.test("a server that comes back with another key is not retried: server-key-changed ends it", async () => {
  let server = await startTestServer();
  const { port, videos } = server;
  const restarted = deferred<void>();
  const clock = drivenClock(restarted.promise);
  const alice = await joinClient(port, "alice", { reconnect: { ...DEFAULT_RECONNECT, ...clock } });
  try {
    await server.close();
    server = await startTestServer({
      videos,
      serverKey: await ServerKey.generate(),
      patch: (config) => config.server.port = port,
    });
    restarted.resolve();
    const end = await within(alice.session.closed, 60_000, "the session to end");
    assert.equal(end.code, "server-key-changed");
    assert.equal((await alice.log.waitFor("disconnected")).code, "server-key-changed");
    assert.equal(alice.log.of("reconnecting").length, 1, "one try, and no more after the refusal");
  } finally {
    await alice.session.quit();
    await server.close();
    await Deno.remove(videos, { recursive: true });
  }
});

Deno.test("a name taken by someone else is retried for the grace time only, then ends the session", async () => {
  const first = await startTestServer();
  const other = await startTestServer();
  const mallory = await joinClient(other.port, "alice");
  const clock = drivenClock();
  const alice = await joinClient(first.port, "alice", {
    reconnect: {
      ...DEFAULT_RECONNECT,
      ...clock,
      address: () => ({ hostname: "127.0.0.1", port: other.port }),
    },
  });
  try {
    await first.close();
    const end = await within(alice.session.closed, 60_000, "the session to end");
    assert.equal(end.code, "name-taken");
    const waited = clock.delays.reduce((sum, ms) => sum + ms, 0);
    assert.ok(waited >= DEFAULT_RECONNECT.nameTakenGraceMs, "retried through the grace time");
    assert.ok(waited < DEFAULT_RECONNECT.giveUpMs, "not until the give-up time");
  } finally {
    await alice.session.quit();
    await mallory.session.quit();
    await other.close();
  }
});

/**
 * Alice plays a clip through a proxy into a player that takes nothing until it is ended (with a
 * small window, the stream cannot end meanwhile), then the proxy is cut; she reconnects straight
 * to the server once `back` settles. `then` runs from the cut on.
 */
async function cutWhilePlaying(
  prefix: string,
  back: Promise<unknown>,
  then: (alice: Awaited<ReturnType<typeof joinClient>>) => Promise<void>,
): Promise<void> {
  const { media, server } = await clipServer(prefix, {
    file: "clip.mp4",
    seconds: 12,
    patch: (config) => config.stream.windowBytes = 64 * 1024,
  });
  // The first player takes nothing until it is ended; the one after the reconnect takes all.
  const firstGone = deferred<void>();
  const sinks: SinkFactory = () => {
    const first = !firstGone.settled;
    return {
      write: () => first ? firstGone.promise : Promise.resolve(),
      finish: () => Promise.resolve(),
      abort: () => Promise.resolve(firstGone.resolve()),
      gone: new Promise<void>(() => {}),
    };
  };
  const proxy = new HostileProxy(server.port);
  const direct = { hostname: "127.0.0.1", port: server.port };
  const wait = (ms: number, cancel: Promise<unknown>) =>
    Promise.race([back, cancel]).then(() => waitOrCancel(ms, cancel));
  const alice = await joinClient(proxy.port, "alice", {
    sinks,
    reconnect: { ...QUICK, wait, address: () => direct },
  });
  try {
    await alice.session.play("clip.mp4");
    await alice.log.waitFor("progress", (event) => event.position > 0);
    await proxy.close();
    const cut = await alice.log.waitFor("stream-ended");
    assert.equal(cut.reason, "error");
    assert.equal(cut.resumes, true, "it says it resumes (the terminal words it)");
    await then(alice);
  } finally {
    await alice.session.quit();
    await server.close();
    await Deno.remove(media.dir, { recursive: true });
  }
}

Deno.test("a video playing when the connection is cut resumes where it was once back", async () => {
  await cutWhilePlaying("resume", Promise.resolve(), async (alice) => {
    const position = alice.log.of("progress").at(-1)!.position;
    const resumed = await alice.log.waitFor("stream-started", (event) => (event.from ?? 0) > 0);
    assert.ok(Math.abs((resumed.from ?? 0) - position) < 0.5, `resumed at ${resumed.from}`);
    const ended = await alice.log.waitFor("stream-ended", (event) => event.reason !== "error");
    assert.equal(ended.reason, "complete");
    await within(alice.session.idle(), 30_000, "the session to be idle");
  });
});

Deno.test("a video stopped while the server is away stays stopped once back", async () => {
  const back = deferred<void>();
  await cutWhilePlaying("resume-stop", back.promise, async (alice) => {
    await alice.session.stop();
    const stopped = await alice.log.waitFor("stream-ended", (event) => event.reason === "stopped");
    assert.equal(stopped.resumes, false, "it says it will not resume");
    back.resolve();
    await alice.log.waitFor("reconnected");
    await within(alice.session.idle(), 30_000, "the session to be idle");
    assert.equal(alice.log.of("stream-started").length, 1, "no second start after the stop");
  });
});

Deno.test("a video paused while the server is away comes back paused, where it was", async () => {
  const back = deferred<void>();
  await cutWhilePlaying("resume-pause", back.promise, async (alice) => {
    alice.session.pause();
    // (`paused` shares its event type with `resumed`, which the log's typing cannot pick out.)
    const paused = await alice.log.waitFor("paused") as { position: number };
    back.resolve();
    const restarted = await alice.log.waitFor("stream-started", (event) => (event.from ?? 0) > 0);
    const from = restarted.from ?? 0;
    assert.ok(Math.abs(from - paused.position) < 0.1, `paused at ${paused.position}, from ${from}`);
    await alice.log.waitFor("paused", (event) => event !== (paused as unknown));
    const after = alice.log.events.slice(alice.log.events.indexOf(restarted));
    assert.ok(
      !after.some((event) => event.event === "stream-ended"),
      "a paused stream does not run to its end: " + JSON.stringify(after.map((e) => e.event)),
    );
    alice.session.resume();
    const ended = await alice.log.waitFor("stream-ended", (event) => event.reason !== "error");
    assert.equal(ended.reason, "complete");
  });
});

Deno.test("requests wait for a server that is away, up to a bound: more fail with too-many-requests", async () => {
  const server = await startTestServer();
  const back = deferred<void>();
  const alice = await joinClient(server.port, "alice", {
    reconnect: { ...DEFAULT_RECONNECT, ...drivenClock(back.promise) },
  });
  try {
    await server.close();
    await alice.log.waitFor("reconnecting");
    const waiting = Array.from({ length: MAX_PENDING_REQUESTS }, () => alice.session.listVideos());
    await assert.rejects(alice.session.listVideos(), (error: ReelayError) => {
      assert.equal(error.code, "too-many-requests");
      assert.match(error.message, /1024 requests already wait for 127\.0\.0\.1:\d+ to come back/);
      return true;
    });
    await alice.session.quit();
    const ends = await Promise.allSettled(waiting);
    assert.ok(ends.every((end) => end.status === "rejected"), "leaving fails what waited");
  } finally {
    back.resolve();
    await alice.session.quit();
  }
});
