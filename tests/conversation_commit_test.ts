/**
 * The client's group commit (shared/group_commit.ts) never lets memory run ahead of the file in
 * a way that loses a message or uses a key twice: a commit that fails drops what it covered, a
 * history write on which SQLite undid the whole transaction stops its batch there, and a
 * conversation ended by a refusal stays ended while its delete waits for the commit (a send queued
 * just before the refusal is still sealed).
 */
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { DEFAULT_RECONNECT } from "../client/mod.ts";
import { ClientStore } from "../client/store/mod.ts";
import { SerialQueue } from "../shared/async.ts";
import { joinClient, type JoinedClient, startTestServer } from "../testing/harness.ts";
import { within } from "./_deadline.ts";
import { HostileProxy, type Json } from "./_proxy.ts";

const QUICK = { ...DEFAULT_RECONNECT, minDelayMs: 20, maxDelayMs: 200 };

/** Alice and bob on a test server, each through a hostile relay; `close` ends all of it. */
async function tamperingPair() {
  const server = await startTestServer();
  const aliceProxy = new HostileProxy(server.port);
  const bobProxy = new HostileProxy(server.port);
  const alice = await joinClient(aliceProxy.port, "alice");
  const bob = await joinClient(bobProxy.port, "bob");
  const close = async () => {
    await alice.session.quit();
    await bob.session.quit();
    await aliceProxy.close();
    await bobProxy.close();
    await server.close();
  };
  return { alice, bob, aliceProxy, bobProxy, close };
}

/**
 * Starts alice's conversation with bob (he answered: her next messages carry no init), then has
 * bob's relay flip a bit of the next message he gets, which he refuses as not authentic.
 */
async function talkThenTamper(alice: JoinedClient, bobProxy: HostileProxy): Promise<void> {
  await alice.session.send("bob", "hello");
  await alice.log.waitFor("delivered");
  let tamper = true;
  bobProxy.rewrite = (direction, message) => {
    if (direction !== "to-client" || message.type !== "deliver" || !tamper) return [message];
    tamper = false;
    const envelope = new Uint8Array(message.envelope as Uint8Array);
    envelope[envelope.length - 3] ^= 1;
    return [{ ...message, envelope }];
  };
}

Deno.test("a message whose commit failed is not acknowledged, comes again after a reconnect and opens", async () => {
  const server = await startTestServer();
  const proxy = new HostileProxy(server.port);
  const proto = ClientStore.prototype as { transaction: (body: () => void) => void };
  const transaction = proto.transaction;
  let failIn: string | undefined;
  proto.transaction = function (this: ClientStore, body: () => void) {
    if (failIn !== undefined && this.file.startsWith(failIn)) {
      failIn = undefined;
      throw new Error("disk I/O error (test)");
    }
    return transaction.call(this, body);
  };
  let closing: Promise<void> | undefined;
  const alice = await joinClient(server.port, "alice");
  const bob = await joinClient(proxy.port, "bob", {
    fallbacks: [{ hostname: "127.0.0.1", port: server.port }],
    reconnect: QUICK,
  });
  try {
    await alice.session.send("bob", "first");
    await bob.log.waitFor("message", (event) => event.text === "first");
    failIn = bob.home;
    await alice.session.send("bob", "second");
    const error = await bob.log.waitFor("error", (event) => event.code === "client-store-failed");
    assert.match(error.message ?? "", /not acknowledged/);
    assert.ok(!bob.log.of("message").some((event) => event.text === "second"));
    const cut = proxy.close(); // bob's link goes; he is back on the server at once
    closing = cut;
    await cut;
    await bob.log.waitFor("reconnected");
    await bob.log.waitFor("message", (event) => event.text === "second");
    await alice.session.send("bob", "third");
    await bob.log.waitFor("message", (event) => event.text === "third");
    assert.deepEqual(bob.log.of("error").map((event) => event.code), ["client-store-failed"]);
  } finally {
    proto.transaction = transaction;
    await alice.session.quit();
    await bob.session.quit();
    await (closing ?? proxy.close());
    await server.close();
  }
});

Deno.test("a history write on which SQLite undoes the whole transaction fails the batch; no message is lost", async () => {
  const server = await startTestServer();
  const proxy = new HostileProxy(server.port);
  let closing: Promise<void> | undefined;
  let db: DatabaseSync | undefined;
  const bob = await joinClient(server.port, "bob");
  const alice = await joinClient(proxy.port, "alice", {
    fallbacks: [{ hostname: "127.0.0.1", port: server.port }],
    reconnect: QUICK,
  });
  try {
    await bob.session.send("alice", "one");
    await alice.log.waitFor("message", (event) => event.text === "one");
    // SQLite undoing the whole transaction on a history insert (as it may on an I/O error or a
    // full disk), made by a trigger from another connection to the file.
    db = new DatabaseSync(alice.session.store.file);
    db.exec(`CREATE TRIGGER undo BEFORE INSERT ON history
      BEGIN SELECT RAISE(ROLLBACK, 'disk I/O error (test)'); END;`);
    // Read in one batch or two: either way no write of the batch may land without the others.
    await Promise.all([bob.session.send("alice", "two"), bob.session.send("alice", "three")]);
    // Both failed (one batch or two: one event each) before the trigger goes, so neither was
    // taken, and no receipt is in flight when her link is cut.
    const failures = () => alice.log.of("error").filter((e) => e.code === "client-store-failed");
    await alice.log.waitFor("error", () => failures().length === 2);
    // Not "history-unavailable" (shown and acknowledged, only not kept): the whole commit failed.
    const codes = () => new Set(alice.log.of("error").map((event) => event.code));
    assert.deepEqual(codes(), new Set(["client-store-failed"]));
    db.exec("DROP TRIGGER undo");
    db.close();
    db = undefined;
    const cut = proxy.close(); // alice's link goes; the copies not acknowledged come again
    closing = cut;
    await cut;
    await alice.log.waitFor("reconnected");
    await bob.session.send("alice", "four");
    const sent = bob.log.of("sent").map((event) => event.id);
    assert.equal(sent.length, 4);
    for (const id of sent) await bob.log.waitFor("delivered", (event) => event.id === id);
    assert.deepEqual(bob.log.of("failed"), []);
    const shown = alice.log.of("message").map((event) => event.text).sort();
    assert.deepEqual(shown, ["four", "one", "three", "two"], "each message shown once");
    assert.deepEqual(codes(), new Set(["client-store-failed"]));
  } finally {
    db?.close();
    await alice.session.quit();
    await bob.session.quit();
    await (closing ?? proxy.close());
    await server.close();
  }
});

/**
 * Gates on alice's client, not timing. `hold` holds her conversations' queue inside her next send
 * (at its history row) until `release`; `watch` sees each task queued on any queue, and may wrap
 * it. `restore` puts the store and the queue back.
 */
function gateAlice(home: string) {
  const store = ClientStore.prototype as { sealHistory: ClientStore["sealHistory"] };
  const sealHistory = store.sealHistory;
  const queue = SerialQueue.prototype as { run: SerialQueue["run"] };
  const run = queue.run;
  const held = { reached: Promise.withResolvers<void>(), gate: Promise.withResolvers<void>() };
  let holding = false;
  store.sealHistory = async function (this: ClientStore, entry) {
    if (holding && this.file.startsWith(home)) {
      holding = false;
      held.reached.resolve();
      await held.gate.promise;
    }
    return await sealHistory.call(this, entry);
  };
  const gates = {
    watch: undefined as Watch | undefined,
    /** Resolves once her next send holds the queue. */
    hold(): Promise<void> {
      holding = true;
      return within(held.reached.promise, 60_000, "alice's queue held in a send");
    },
    release: () => held.gate.resolve(),
    restore(): void {
      store.sealHistory = sealHistory;
      queue.run = run;
      held.gate.resolve();
    },
  };
  queue.run = function <T>(this: SerialQueue, task: () => Promise<T>): Promise<T> {
    const watched = gates.watch?.(this, task) ?? task;
    return run.call(this, watched as () => Promise<T>) as Promise<T>;
  };
  return gates;
}

/** Sees a task queued on `queue`; returns it, or what runs in its place. */
type Watch = (queue: SerialQueue, task: () => Promise<unknown>) => (() => Promise<unknown>) | void;

/**
 * Has alice's relay hold bob's first refusal until it can carry the answer to a video listing
 * through (so the test decides when she reads it); resolves once it is held. `sent` sees what
 * she sends.
 */
function holdRefusal(proxy: HostileProxy, sent: (message: Json) => void = () => {}) {
  const held = Promise.withResolvers<void>();
  let refused: Json | undefined;
  proxy.rewrite = (direction, message) => {
    if (direction === "to-server") {
      sent(message);
      return [message];
    }
    if (message.type === "refused" && !refused) {
      refused = message;
      held.resolve();
      return [];
    }
    return message.type === "videos" && refused ? [refused, message] : [message];
  };
  return within(held.promise, 60_000, "bob's refusal of the tampered message");
}

/**
 * Alice's queue held in a send (`blocker`) while bob's refusal is read; resolves once the
 * refusal's task waits behind it. `listed` is the listing whose answer carries the refusal.
 */
async function refusalBehindSend(
  alice: JoinedClient,
  gates: ReturnType<typeof gateAlice>,
): Promise<{ queue: SerialQueue; blocker: Promise<void>; listed: Promise<unknown> }> {
  let queue: SerialQueue | undefined;
  gates.watch = (watched) => void (queue ??= watched); // a send queues its first task at once
  const reached = gates.hold();
  const blocker = alice.session.send("bob", "holding the queue");
  gates.watch = undefined;
  assert.ok(queue, "the send queued at once");
  await reached;
  const refusalQueued = Promise.withResolvers<void>();
  gates.watch = (watched) => {
    if (watched === queue) refusalQueued.resolve();
  };
  const listed = alice.session.listVideos();
  await within(refusalQueued.promise, 60_000, "the refusal's task queued behind the send");
  gates.watch = undefined;
  return { queue, blocker, listed };
}

Deno.test("a send right after a refusal that ends the conversation starts a new one, never the old from the file", async () => {
  const { alice, bob, aliceProxy, bobProxy, close } = await tamperingPair();
  const gates = gateAlice(alice.home);
  try {
    await talkThenTamper(alice, bobProxy);
    const kinds: number[] = [];
    const refusal = holdRefusal(aliceProxy, (message) => {
      if (message.type === "send") kinds.push((message.envelope as Uint8Array)[0]);
    });
    await alice.session.send("bob", "tampered on the way");
    await refusal;
    const { queue, blocker, listed } = await refusalBehindSend(alice, gates);
    // Queued behind the refusal's task, so it runs after the conversation ended in memory, and
    // before the flush that deletes it from the file: that flush joins the queue a timer after
    // the blocker stages its writes, once the gate opens, so behind this task. Checked: when
    // this first turn ends, the ended conversation is still in the file.
    let inWindow: boolean | undefined;
    gates.watch = (watched, task) => {
      if (watched !== queue) return;
      return async () => {
        try {
          return await task();
        } finally {
          inWindow = alice.session.store.conversation("bob") !== undefined;
        }
      };
    };
    const racing = alice.session.send("bob", "right after the refusal");
    gates.watch = undefined;
    gates.release();
    await within(blocker, 60_000, "the held send");
    await within(racing, 60_000, "the send right after the refusal");
    await listed;
    assert.equal(inWindow, true, "its first turn ran before the delete was committed");
    assert.deepEqual(
      kinds,
      [1, 1, 2],
      "ratchet messages, then a new conversation's first (not the old one read back)",
    );
    await bob.log.waitFor("message", (event) => event.text === "right after the refusal");
    assert.equal((await alice.log.waitFor("failed")).reason, "not-authentic");
    assert.deepEqual(alice.log.of("failed").map((event) => event.reason), ["not-authentic"]);
  } finally {
    gates.restore();
    await close();
  }
});

Deno.test("a send queued before a refusal that ends the conversation is sealed, not failed as no-prekeys", async () => {
  const { alice, bob, aliceProxy, bobProxy, close } = await tamperingPair();
  const gates = gateAlice(alice.home);
  try {
    await talkThenTamper(alice, bobProxy);
    const refusal = holdRefusal(aliceProxy);
    await alice.session.send("bob", "tampered on the way");
    await refusal;
    const reached = gates.hold();
    const blocker = alice.session.send("bob", "holding the queue");
    await reached;
    // The send's first task joins the queue now, behind the held one.
    let aliceQueue: SerialQueue | undefined;
    gates.watch = (queue) => void (aliceQueue ??= queue);
    const racing = alice.session.send("bob", "racing the refusal").then(
      () => "sent",
      (error: Error) => error.message,
    );
    const refusalQueued = Promise.withResolvers<void>();
    gates.watch = (queue) => {
      if (queue === aliceQueue) refusalQueued.resolve();
    };
    assert.ok(aliceQueue, "the send queued at once");
    const listed = alice.session.listVideos(); // an answer that carries the refusal through
    await within(refusalQueued.promise, 60_000, "the refusal's task queued behind the send");
    gates.watch = undefined;
    gates.release();
    await blocker;
    assert.equal(await racing, "sent"); // not 'No prekey bundle for "bob"' (no-prekeys)
    await listed;
    assert.equal((await alice.log.waitFor("failed")).reason, "not-authentic");
    await alice.session.send("bob", "after the refusal");
    await bob.log.waitFor("message", (event) => event.text === "after the refusal");
    assert.equal(alice.log.of("sent").length, 5, "every send relayed");
    assert.deepEqual(alice.log.of("failed").map((event) => event.reason), ["not-authentic"]);
  } finally {
    gates.restore();
    await close();
  }
});
