/**
 * The configured limits under load, over real TCP against a real in-process server: a flood of
 * connections, a full server, a reader that stops reading, and a sender that sends too fast.
 */

import assert from "node:assert/strict";
import { ReelayError } from "../shared/errors.ts";
import { joinClient, startLoggedServer } from "../testing/harness.ts";
import { mib, openSockets, reportMeasurement, rssBytes } from "./_procs.ts";
import { envelopeText, type Json, RawClient, rawIdentity, waitUntil } from "./_raw.ts";

type Joined = Awaited<ReturnType<typeof joinClient>>;

async function leave(...clients: Joined[]): Promise<void> {
  for (const client of clients) {
    await client.session.quit();
    await Deno.remove(client.home, { recursive: true });
  }
}

/** Joins `name`, retrying while the server answers `too-many-pending` (bounded by `timeoutMs`). */
async function joinWhenAdmitted(port: number, name: string, timeoutMs = 15_000): Promise<Joined> {
  const home = await Deno.makeTempDir({ prefix: `reelay-home-${name}-` });
  const deadline = Date.now() + timeoutMs;
  while (true) {
    try {
      return await joinClient(port, name, { home });
    } catch (error) {
      const refused = error instanceof ReelayError && error.code === "too-many-pending";
      if (!refused || Date.now() > deadline) {
        await Deno.remove(home, { recursive: true });
        throw error;
      }
    }
  }
}

Deno.test("500 connections at once: extras refused with too-many-pending, service goes on", async () => {
  const server = await startLoggedServer((config) => {
    config.limits.maxPending = 16;
    // The server-wide cap is what this shows, not the one per host (attacks_test has that).
    config.limits.maxPendingPerHost = 1000;
    // Long enough for 500 handshakes on a busy machine: client and server share this process
    // (the clients' first bytes come only after their key generation). At 5 s a loaded run had
    // every one of the 500 closed in its handshake, the newest 16 too.
    config.limits.joinTimeoutMs = 20_000;
    config.limits.firstByteTimeoutMs = 20_000;
  });
  const alice = await joinClient(server.port, "alice");
  const bob = await joinClient(server.port, "bob");
  const raws: RawClient[] = [];
  let carol: Joined | undefined;
  try {
    await alice.log.waitFor("joined", (event) => event.name === "bob");
    const baselineSockets = await openSockets();
    const rssBefore = await rssBytes();
    let maxPendingSeen = 0;
    const watch = setInterval(() => {
      maxPendingSeen = Math.max(maxPendingSeen, server.server.pending);
    }, 5);

    const opened = await Promise.allSettled(
      Array.from({ length: 500 }, () => RawClient.connect(server.port)),
    );
    for (const result of opened) if (result.status === "fulfilled") raws.push(result.value);
    // A connection pushed out while still in its handshake is closed without a word (there is
    // no channel to say it in): its handshake fails.
    const closedInHandshake = opened.filter((result) => result.status === "rejected").length;
    const rssFlood = await rssBytes();
    const socketsFlood = await openSockets();

    // During the flood: the people already in keep talking.
    await alice.session.send("bob", "during the flood");
    await bob.log.waitFor("message", (event) => event.text === "during the flood");
    // And a newcomer gets in as soon as a joining slot frees up (the held ones time out).
    carol = await joinWhenAdmitted(server.port, "carol");
    await carol.session.send("alice", "carol made it");
    await alice.log.waitFor("message", (event) => event.text === "carol made it");

    for (const raw of raws) await raw.waitEnded();
    clearInterval(watch);
    const outcomes = new Map<string, number>();
    for (const raw of raws) {
      const key = raw.messages.map((message) => `${message.type}:${message.code}`).join(",");
      outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
    }
    outcomes.set("closed in the handshake", closedInHandshake);
    const refused = (outcomes.get("error:too-many-pending") ?? 0) + closedInHandshake;
    const timedOut = outcomes.get("error:join-timeout") ?? 0;
    assert.equal(refused + timedOut, 500, JSON.stringify([...outcomes]));
    // The newest 16 hold the slots until they time out, but carol, coming after them, pushes
    // out the oldest of them: the newcomer is never the one refused.
    assert.ok(timedOut >= 15 && refused >= 400, JSON.stringify([...outcomes]));
    assert.ok(maxPendingSeen <= 16, `at most 16 joining at once, saw ${maxPendingSeen}`);

    // After: everyone still talks, and only the three people are left on the server.
    await bob.session.send("carol", "after the flood");
    await carol.log.waitFor("message", (event) => event.text === "after the flood");
    for (const raw of raws) await raw.close();
    await waitUntil(() => server.server.connections === 3, "only the 3 joined remain");
    let sockets = -1;
    await waitUntil(
      async () => (sockets = await openSockets()) === baselineSockets + 2,
      `sockets back to baseline + carol's 2 (${baselineSockets + 2}), last seen ${sockets}`,
    );
    const rssAfter = await rssBytes();
    reportMeasurement(
      `500 connections: RSS ${mib(rssBefore)} before, ${mib(rssFlood)} with 500 open, ` +
        `${mib(rssAfter)} after; sockets ${baselineSockets} -> ${socketsFlood} -> ${sockets}; ` +
        `outcomes ${JSON.stringify(Object.fromEntries(outcomes))}; max pending ${maxPendingSeen}`,
    );
  } finally {
    for (const raw of raws) await raw.close();
    await leave(alice, bob, ...(carol ? [carol] : []));
    await server.stop();
  }
});

Deno.test("max_clients: one more is refused with server-full until someone leaves", async () => {
  const server = await startLoggedServer((config) => config.limits.maxClients = 2);
  const alice = await joinClient(server.port, "alice");
  const bob = await joinClient(server.port, "bob");
  const home = await Deno.makeTempDir({ prefix: "reelay-home-carol-" });
  try {
    await assert.rejects(joinClient(server.port, "carol", { home }), (error: unknown) => {
      assert.ok(error instanceof ReelayError);
      assert.equal(error.code, "server-full");
      return true;
    });
    const identity = await rawIdentity();
    const raw = await RawClient.connect(server.port);
    assert.equal((await raw.join("dave", identity)).code, "server-full");
    await raw.waitEnded();
    await raw.close();
    assert.equal(alice.log.of("joined").length, 1, "alice saw only bob join");
    await leave(bob);
    await alice.log.waitFor("left", (event) => event.name === "bob");
    const carol = await joinClient(server.port, "carol", { home });
    await carol.session.send("alice", "room now");
    await alice.log.waitFor("message", (event) => event.text === "room now");
    await carol.session.quit();
    await waitUntil(() => server.server.connections === 1, "only alice remains");
  } finally {
    await Deno.remove(home, { recursive: true });
    await leave(alice);
    await server.stop();
  }
});

Deno.test("a client that never reads is flooded: the flooder is told recipient-busy, the reader stays, memory stays bounded", async () => {
  const maxQueue = 256 * 1024;
  const server = await startLoggedServer((config) => {
    config.limits.maxQueueBytes = maxQueue;
    config.limits.maxFrameBytes = 128 * 1024;
    config.limits.chatRate = 100_000;
    config.limits.chatBurst = 100_000;
  });
  const alice = await joinClient(server.port, "alice");
  const bob = await joinClient(server.port, "bob");
  const identity = await rawIdentity();
  // The victim joins, then never reads again; the flooder sends it chat as fast as it can.
  const victim = await RawClient.connect(server.port);
  const flooder = await RawClient.connect(server.port);
  try {
    assert.equal((await victim.join("victim", identity)).type, "welcome");
    assert.equal((await flooder.join("flooder", identity)).type, "welcome");
    await alice.log.waitFor("joined", (event) => event.name === "flooder");
    // From here the server's writes to the victim wait too (its socket buffers are full), so
    // what the server holds for it does not depend on how much those buffers take.
    victim.stopReading();
    const rssBefore = await rssBytes();
    const envelope = "A".repeat(30 * 1024);
    // Eight MiB in all, each message waiting for its answer (so the flooder itself is never a
    // slow reader): past the victim's share, every one is refused and none of it held.
    const attempts = Math.ceil((8 * 1024 * 1024) / envelope.length);
    let sent = 0;
    const refusals: Json[] = [];
    for (let ref = 1; ref <= attempts; ref++) {
      await flooder.send({ type: "send", ref, to: "victim", envelope });
      const answer = await flooder.waitFor((message) => message.ref === ref);
      if (answer.type === "error") refusals.push(answer);
      else if (refusals.length === 0) sent += envelope.length;
      else assert.fail(`message ${ref} was taken after a refusal: ${JSON.stringify(answer)}`);
    }
    const rssAfter = await rssBytes();
    assert.ok(refusals.length > 0, "the flooder was never refused");
    for (const refusal of refusals) {
      assert.equal(refusal.code, "recipient-busy");
      assert.match(String(refusal.message), /"victim" is not taking messages/);
    }
    // The victim is not cut off for what someone else sent: it is still in.
    assert.equal(server.server.members, 4);
    assert.equal(alice.log.of("left").length, 0);
    assert.ok(!server.lines.join("\n").includes("slow-consumer"));
    // What the server holds for the victim is its share, half of max_queue_bytes: it refused
    // only once the next message would pass that, and held nothing past it.
    const queued = server.server.queuedBytes;
    assert.ok(queued + envelope.length + 256 > maxQueue / 2, `refused with ${queued} queued`);
    assert.ok(queued <= maxQueue / 2, `${queued} bytes queued`);
    assert.ok(
      rssAfter - rssBefore < 64 * 1024 * 1024,
      `RSS grew ${mib(rssAfter - rssBefore)} while flooding ${mib(attempts * envelope.length)}`,
    );
    reportMeasurement(
      `flooder refused after ${mib(sent)} taken for a non-reader, ${refusals.length} of ` +
        `${attempts} refused; test-process RSS ${mib(rssBefore)} -> ${mib(rssAfter)}`,
    );
    // Everyone else is unaffected.
    await alice.session.send("bob", "still fine");
    await bob.log.waitFor("message", (event) => event.text === "still fine");
    await flooder.send({ type: "ping" });
    await flooder.waitFor((message) => message.type === "pong");
  } finally {
    await victim.close();
    await flooder.close();
    await leave(alice, bob);
    await server.stop();
  }
});

Deno.test("chat rate limit: excess sends get rate-limited errors with their refs", async () => {
  const server = await startLoggedServer((config) => {
    config.limits.chatRate = 0.1;
    config.limits.chatBurst = 3;
  });
  const identity = await rawIdentity();
  const sender = await RawClient.connect(server.port);
  const sink = await RawClient.connect(server.port);
  try {
    assert.equal((await sender.join("sender", identity)).type, "welcome");
    assert.equal((await sink.join("sink", identity)).type, "welcome");
    for (let ref = 1; ref <= 6; ref++) {
      await sender.send({ type: "send", ref, to: "sink", envelope: `msg${ref}` });
    }
    const answers = [];
    for (let ref = 1; ref <= 6; ref++) {
      const answer = await sender.waitFor((message) => message.ref === ref);
      answers.push(answer.type === "error" ? `${ref}:${answer.code}` : `${ref}:${answer.type}`);
    }
    assert.deepEqual(answers, [
      "1:relayed",
      "2:relayed",
      "3:relayed",
      "4:rate-limited",
      "5:rate-limited",
      "6:rate-limited",
    ]);
    await waitUntil(
      () => sink.messages.filter((message) => message.type === "deliver").length >= 3,
      "three deliveries",
    );
    // Being limited is not being cut off: the sender is still joined and answered.
    await sender.send({ type: "ping" });
    await sender.waitFor((message) => message.type === "pong");
    const delivered = sink.messages.filter((message) => message.type === "deliver");
    assert.deepEqual(delivered.map(envelopeText), ["msg1", "msg2", "msg3"]);
    assert.equal(server.server.members, 2);
  } finally {
    await sender.close();
    await sink.close();
    await server.stop();
  }
});

Deno.test("a newcomer receives a directory of any size in pages within the frame cap", async () => {
  const server = await startLoggedServer((config) => {
    config.limits.maxPending = 400;
    config.limits.maxClientsPerHost = 400;
  });
  const identity = await rawIdentity();
  const present: RawClient[] = [];
  try {
    for (let i = 0; i < 300; i++) {
      const raw = await RawClient.connect(server.port);
      present.push(raw);
      // Joining 300 takes long on a busy machine: the first must not be cut off as silent.
      raw.answerPings = true;
      assert.equal((await raw.join(`member${i}`, identity)).type, "welcome");
    }
    const newcomer = await joinClient(server.port, "newcomer");
    assert.equal(newcomer.session.who().length, 300);
    assert.equal(newcomer.log.of("joined").length, 0, "people already present are not news");
    await newcomer.session.quit();
  } finally {
    await Promise.all(present.map((raw) => raw.close()));
    await server.close();
  }
});
