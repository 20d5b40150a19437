import assert from "node:assert/strict";
import { openSqliteStore } from "../server/store/sqlite.ts";
import { MAX_ANNOUNCEMENT_BYTES, type NewRegistryEntry, type Store } from "../server/store/mod.ts";
import { bytes, Clock, fp, oneTimeKeys, rejectsWith, sealed } from "./_store.ts";

function person(n: number, key = n): NewRegistryEntry {
  return {
    nameKey: `p${n}`,
    name: `P${n}`,
    fingerprint: fp(key),
    announcement: { name: `P${n}`, keys: [fp(key)], version: 1 },
  };
}

/** Registers `n` with prekeys and one message held for them from person 1. */
async function withBelongings(store: Store, n: number, key = n): Promise<void> {
  await store.registry.remember(person(n, key));
  await store.prekeys.publish(fp(key), bytes(64));
  await store.prekeys.addOneTime(fp(key), "x25519", oneTimeKeys(0, 3));
  await store.mailbox.put(sealed(1, key, `to-p${n}`));
}

async function belongings(store: Store, key: number): Promise<[boolean, number, number]> {
  const bundle = await store.prekeys.takeBundle(fp(key));
  const { x25519 } = await store.prekeys.oneTimeCount(fp(key));
  return [bundle !== undefined, x25519, (await store.mailbox.pending(fp(key), 10)).length];
}

Deno.test("registry: remember, look up and update a person", async () => {
  const clock = new Clock();
  await using store = await openSqliteStore(":memory:", { now: clock.now });
  const { registry } = store;
  assert.deepEqual(await registry.remember(person(2)), { evicted: [] });
  assert.deepEqual(await registry.lookup("p2"), { ...person(2), lastSeen: clock.time });
  assert.equal(await registry.lookup("P2"), undefined, "the caller's name key is used as is");
  clock.time += 10;
  const renamed = { ...person(2), name: "Pp2", announcement: { name: "Pp2", version: 2 } };
  assert.deepEqual(await registry.remember(renamed), { evicted: [] });
  assert.deepEqual(await registry.lookup("p2"), { ...renamed, lastSeen: clock.time });
  assert.equal(await registry.count(), 1);
});

Deno.test("registry: forget drops the person's prekeys and ends their mail", async () => {
  const clock = new Clock();
  await using store = await openSqliteStore(":memory:", { now: clock.now });
  await withBelongings(store, 2);
  await withBelongings(store, 3);
  clock.time += 5;
  assert.equal(await store.registry.forget("p2"), true);
  assert.equal(await store.registry.forget("p2"), false);
  assert.equal(await store.registry.lookup("p2"), undefined);
  assert.deepEqual(await belongings(store, 2), [false, 0, 0]);
  const ended = await store.mailbox.expire(clock.time);
  assert.deepEqual(ended.map((item) => [item.recipientName, item.reason, item.expiresAt]), [
    ["p2", "recipient-forgotten", clock.time],
  ]);
  // Someone else's are untouched.
  assert.deepEqual(await belongings(store, 3), [true, 2, 1]);
});

Deno.test("registry: a key still held under another name keeps its prekeys and mail", async () => {
  await using store = await openSqliteStore(":memory:");
  await withBelongings(store, 2);
  await store.registry.remember(person(4, 2));
  await store.registry.forget("p2");
  assert.deepEqual(await belongings(store, 2), [true, 2, 1]);
});

Deno.test("registry: a changed key ends the old key's mail and prekeys", async () => {
  const clock = new Clock();
  await using store = await openSqliteStore(":memory:", { now: clock.now });
  await withBelongings(store, 2);
  const result = await store.registry.remember(person(2, 9));
  assert.deepEqual(result, { previousFingerprint: fp(2), evicted: [] });
  assert.equal((await store.registry.lookup("p2"))?.fingerprint, fp(9));
  assert.deepEqual(await belongings(store, 2), [false, 0, 0]);
  const [ended] = await store.mailbox.expire(clock.time);
  assert.equal(ended.reason, "recipient-key-changed");
  assert.equal(ended.kind === "sealed" && ended.messageId, "to-p2");
  // Mail and prekeys for the new key are the person's as usual.
  await store.prekeys.publish(fp(9), bytes(8));
  await store.mailbox.put(sealed(1, 9, "fresh"));
  assert.deepEqual(await belongings(store, 9), [true, 0, 1]);
});

Deno.test("registry: people unseen for registryTtlMs expire with their belongings", async () => {
  const clock = new Clock();
  const start = clock.time;
  await using store = await openSqliteStore(":memory:", {
    now: clock.now,
    registryTtlMs: 1000,
    ttlMs: 10_000,
  });
  await withBelongings(store, 2);
  clock.time = start + 600;
  await withBelongings(store, 3);
  clock.time = start + 1000;
  assert.deepEqual(await store.registry.expire(start + 999), []);
  const gone = await store.registry.expire(clock.time);
  assert.deepEqual(gone, [{ nameKey: "p2", name: "P2", fingerprint: fp(2), lastSeen: start }]);
  assert.deepEqual(await belongings(store, 2), [false, 0, 0]);
  assert.deepEqual(await belongings(store, 3), [true, 2, 1]);
  assert.deepEqual((await store.mailbox.expire(clock.time)).map((item) => item.reason), [
    "recipient-forgotten",
  ]);
  // Seeing someone again keeps them.
  clock.time = start + 1500;
  await store.registry.remember(person(3));
  assert.deepEqual(await store.registry.expire(start + 2000), []);
  assert.equal((await store.registry.expire(start + 2500)).length, 1);
  assert.equal(await store.registry.count(), 0);
});

Deno.test("registry: past maxRegistered the oldest seen is dropped first", async () => {
  const clock = new Clock();
  await using store = await openSqliteStore(":memory:", { now: clock.now, maxRegistered: 3 });
  for (const n of [2, 3, 4]) {
    await withBelongings(store, n);
    clock.time += 1;
  }
  // Seeing p2 again makes p3 the oldest seen; an update never evicts.
  assert.deepEqual(await store.registry.remember(person(2)), { evicted: [] });
  clock.time += 1;
  const { evicted } = await store.registry.remember(person(5));
  assert.deepEqual(evicted.map((entry) => entry.nameKey), ["p3"]);
  assert.equal(await store.registry.count(), 3);
  assert.equal(await store.registry.lookup("p3"), undefined);
  assert.deepEqual(await belongings(store, 3), [false, 0, 0]);
  const [ended] = await store.mailbox.expire(clock.time);
  assert.equal(ended.reason, "recipient-forgotten");
});

Deno.test("registry: announcement-too-large, and misuse throws TypeError", async () => {
  await using store = await openSqliteStore(":memory:");
  const big = { ...person(2), announcement: "x".repeat(MAX_ANNOUNCEMENT_BYTES) };
  await rejectsWith(
    store.registry.remember(big),
    "announcement-too-large",
    /Announcement of 16386 bytes/,
  );
  await assert.rejects(store.registry.remember({ ...person(2), nameKey: "" }), TypeError);
  await assert.rejects(store.registry.remember({ ...person(2), fingerprint: "xyz" }), TypeError);
  await assert.rejects(
    store.registry.remember({ ...person(2), announcement: undefined! }),
    TypeError,
  );
  assert.equal(await store.registry.count(), 0);
});
