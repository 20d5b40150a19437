import assert from "node:assert/strict";
import { KvDirectory } from "../server/cluster/directory.ts";
import type { NatsConnection } from "../server/cluster/nats.ts";
import { connectNode, NATS_SERVER_PRESENT, NATS_SKIP_NOTE, TestNats } from "./_cluster.ts";
import { bytes, Clock, fp, oneTimeKeys, rejectsWith } from "./_store.ts";

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
