import assert from "node:assert/strict";
import { KvDirectory } from "../server/cluster/directory.ts";
import { JetStreamMailbox } from "../server/cluster/mailbox.ts";
import type { NatsConnection } from "../server/cluster/nats.ts";
import type { EndedMail } from "../server/store/mod.ts";
import { connectNode, NATS_SERVER_PRESENT, NATS_SKIP_NOTE, TestNats } from "./_cluster.ts";
import { bytes, Clock, fp, oneTimeKeys, rejectsWith, sealed } from "./_store.ts";

function clusterTest(name: string, fn: () => Promise<void>): void {
  Deno.test({ name: `${name}${NATS_SKIP_NOTE}`, ignore: !NATS_SERVER_PRESENT, fn });
}

/** A node's connection and directory, closed together. */
async function node(nats: TestNats, now?: () => number) {
  const nc: NatsConnection = await connectNode(nats, "directory-node");
  const directory = await KvDirectory.open(nc, { maxOneTimePerKind: 50, now });
  return { nc, ...directory, [Symbol.asyncDispose]: () => nc.close() };
}

function person(n: number, key = n) {
  return { nameKey: `p${n}`, name: `P${n}`, fingerprint: fp(key), announcement: { n } };
}

clusterTest("cluster directory: a person registered on one node is known on another", async () => {
  await using nats = await TestNats.start();
  await using a = await node(nats);
  await using b = await node(nats);
  await rejectsWith(a.prekeys.publish(fp(1), bytes(10)), "not-registered");
  await a.registry.remember(person(1));
  const found = await b.registry.lookup("p1");
  assert.equal(found?.fingerprint, fp(1));
  assert.deepEqual(found?.announcement, { n: 1 });
  assert.equal(await b.registry.count(), 1);
  await b.prekeys.publish(fp(1), bytes(64));
  assert.equal(await a.prekeys.addOneTime(fp(1), "x25519", oneTimeKeys(10, 2)), 2);
  await rejectsWith(
    a.prekeys.addOneTime(fp(1), "x25519", oneTimeKeys(11, 1)),
    "duplicate-prekey-id",
  );
  await rejectsWith(a.prekeys.addOneTime(fp(1), "x25519", oneTimeKeys(100, 49)), "prekeys-full");
  assert.deepEqual(await b.prekeys.takeBundle(fp(1)), {
    signed: bytes(64),
    oneTime: { x25519: { id: 10, key: bytes(32, 0) } },
  });
  assert.deepEqual(await a.prekeys.oneTimeCount(fp(1)), { x25519: 1, mlkem768: 0 });
});

clusterTest("cluster directory: nodes taking at once never get the same one-time key", async () => {
  await using nats = await TestNats.start();
  await using a = await node(nats);
  await using b = await node(nats);
  await a.registry.remember(person(1));
  await a.prekeys.publish(fp(1), bytes(64));
  await a.prekeys.addOneTime(fp(1), "x25519", oneTimeKeys(0, 20));
  const takes = Array.from({ length: 24 }, (_, i) => (i % 2 ? a : b).prekeys.takeBundle(fp(1)));
  const ids = (await Promise.all(takes)).map((bundle) => bundle?.oneTime.x25519?.id);
  const given = ids.filter((id) => id !== undefined);
  assert.equal(given.length, 20, "every key is handed out");
  assert.equal(new Set(given).size, 20, "and none twice");
  assert.deepEqual(await b.prekeys.oneTimeCount(fp(1)), { x25519: 0, mlkem768: 0 });
});

clusterTest("cluster directory: a new key or a dropped person takes the old prekeys", async () => {
  await using nats = await TestNats.start();
  const clock = new Clock();
  await using a = await node(nats, clock.now);
  await a.registry.remember(person(1));
  await a.prekeys.publish(fp(1), bytes(64));
  const changed = await a.registry.remember(person(1, 9));
  assert.equal(changed.previousFingerprint, fp(1));
  assert.equal(await a.prekeys.takeBundle(fp(1)), undefined);
  await rejectsWith(a.prekeys.publish(fp(1), bytes(10)), "not-registered");
  await a.prekeys.publish(fp(9), bytes(64));
  assert.equal(await a.registry.forget("p1"), true);
  assert.equal(await a.prekeys.takeBundle(fp(9)), undefined);
  assert.equal(await a.registry.lookup("p1"), undefined);
  // Unseen for the registry's time to live: dropped by expire, oldest first.
  await a.registry.remember(person(2));
  clock.time += 10;
  await a.registry.remember(person(3));
  const ttl = 90 * 24 * 3600 * 1000;
  const dropped = await a.registry.expire(clock.time - 10 + ttl);
  assert.deepEqual(dropped.map((entry) => entry.nameKey), ["p2"]);
  assert.equal(await a.registry.count(), 1);
});

/** Each ended item's message id and why it ended. */
function whyEnded(ended: EndedMail[]): [string | false, string][] {
  return ended.map((item) => [item.kind === "sealed" && item.messageId, item.reason]);
}

/** A node as `joinCluster` wires it: the directory ends mail in the node's mailbox. */
async function mailNode(nats: TestNats, clock: Clock, maxRegistered: number) {
  const nc: NatsConnection = await connectNode(nats, "directory-mail-node");
  const mailbox = await JetStreamMailbox.open(nc, { now: clock.now });
  const directory = await KvDirectory.open(nc, {
    now: clock.now,
    maxRegistered,
    endMail: (key, reason) => mailbox.end(key, reason),
  });
  return { nc, mailbox, ...directory, [Symbol.asyncDispose]: () => nc.close() };
}

clusterTest(
  "cluster directory: past max_registered the oldest seen are dropped on every node, and their mail ends",
  async () => {
    await using nats = await TestNats.start();
    const clock = new Clock();
    await using a = await mailNode(nats, clock, 3);
    await using b = await mailNode(nats, clock, 3);
    for (const n of [1, 2, 3]) {
      clock.time += 10;
      assert.deepEqual((await (n % 2 ? a : b).registry.remember(person(n))).evicted, []);
    }
    await a.prekeys.publish(fp(1), bytes(64));
    await a.mailbox.put(sealed(2, 1, "to-p1"));
    // p1, seen longest ago, makes room for p4 (joining the other node).
    clock.time += 10;
    const made = await b.registry.remember(person(4));
    assert.deepEqual(made.evicted.map((entry) => entry.nameKey), ["p1"]);
    assert.equal(await a.registry.lookup("p1"), undefined);
    assert.equal(await a.prekeys.takeBundle(fp(1)), undefined);
    assert.deepEqual(await a.mailbox.pending(fp(1), 10), [], "their mail is no longer pending");
    // Seeing p2 again keeps them; p3 is now the oldest.
    clock.time += 10;
    assert.deepEqual((await a.registry.remember(person(2))).evicted, []);
    clock.time += 10;
    const next = await a.registry.remember(person(5));
    assert.deepEqual(next.evicted.map((entry) => entry.nameKey), ["p3"]);
    assert.equal(await b.registry.count(), 3);
    // The next sweep, on either node, returns the ended mail with why, for its sender.
    assert.deepEqual(whyEnded(await b.mailbox.expire(clock.time)), [
      ["to-p1", "recipient-forgotten"],
    ]);
    assert.deepEqual(await a.mailbox.expire(clock.time), [], "ended once");
  },
);

clusterTest(
  "cluster directory: a new key or a forgotten person ends the mail held for the old key",
  async () => {
    await using nats = await TestNats.start();
    const clock = new Clock();
    await using a = await mailNode(nats, clock, 10);
    await a.registry.remember(person(1));
    await a.registry.remember(person(2));
    await a.mailbox.put(sealed(2, 1, "for-old-key"));
    await a.mailbox.put(sealed(1, 2, "for-p2"));
    assert.equal((await a.registry.remember(person(1, 9))).previousFingerprint, fp(1));
    assert.equal(await a.registry.forget("p2"), true);
    assert.equal(await a.registry.forget("p2"), false);
    assert.deepEqual(whyEnded(await a.mailbox.expire(clock.time)), [
      ["for-old-key", "recipient-key-changed"],
      ["for-p2", "recipient-forgotten"],
    ]);
    assert.equal(await a.registry.count(), 1);
  },
);

clusterTest(
  "cluster directory: a full registry is read whole once per 1% of its bound, not at every join",
  async () => {
    await using nats = await TestNats.start();
    const clock = new Clock();
    await using a = await mailNode(nats, clock, 200);
    for (let n = 1; n <= 200; n++) {
      clock.time += 10;
      await a.registry.remember(person(n));
    }
    // The 201st makes room for itself and two more: p1, p2 and p3, the oldest seen, go.
    const evictions: string[][] = [];
    for (const n of [201, 202, 203, 204]) {
      clock.time += 10;
      evictions.push((await a.registry.remember(person(n))).evicted.map((entry) => entry.nameKey));
    }
    assert.deepEqual(evictions, [["p1", "p2", "p3"], [], [], ["p4", "p5", "p6"]]);
    assert.equal(await a.registry.count(), 198);
  },
);
