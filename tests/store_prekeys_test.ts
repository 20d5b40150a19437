import assert from "node:assert/strict";
import { openSqliteStore } from "../server/store/sqlite.ts";
import {
  MAX_ONE_TIME_KEY_BYTES,
  MAX_SIGNED_PREKEY_BYTES,
  type OneTimeKind,
  type Store,
} from "../server/store/mod.ts";
import { bytes, fp, oneTimeKeys, rejectsWith, StoreChild, tempDir } from "./_store.ts";

async function register(store: Store, person: number): Promise<void> {
  await store.registry.remember({
    nameKey: `p${person}`,
    name: `P${person}`,
    fingerprint: fp(person),
    announcement: { name: `P${person}` },
  });
}

Deno.test("prekeys: only a registered identity may publish", async () => {
  await using store = await openSqliteStore(":memory:");
  await rejectsWith(store.prekeys.publish(fp(1), bytes(10)), "not-registered", /not registered/);
  await rejectsWith(
    store.prekeys.addOneTime(fp(1), "x25519", oneTimeKeys(0, 1)),
    "not-registered",
  );
  assert.equal(await store.prekeys.takeBundle(fp(1)), undefined);
});

Deno.test("prekeys: publish replaces the signed prekeys as a whole", async () => {
  await using store = await openSqliteStore(":memory:");
  await register(store, 1);
  await store.prekeys.publish(fp(1), bytes(100, 1));
  await store.prekeys.publish(fp(1), bytes(80, 2));
  assert.deepEqual(await store.prekeys.takeBundle(fp(1)), { signed: bytes(80, 2), oneTime: {} });
});

Deno.test("prekeys: a bundle takes the oldest one-time key of each kind, once", async () => {
  await using store = await openSqliteStore(":memory:");
  const { prekeys } = store;
  await register(store, 1);
  await register(store, 2);
  assert.equal(await prekeys.addOneTime(fp(1), "x25519", oneTimeKeys(10, 3)), 3);
  assert.equal(await prekeys.addOneTime(fp(1), "mlkem768", oneTimeKeys(50, 1, 1184)), 1);
  await prekeys.addOneTime(fp(2), "x25519", oneTimeKeys(10, 1));
  // One-time keys without signed prekeys make no bundle, and none is taken.
  assert.equal(await prekeys.takeBundle(fp(1)), undefined);
  assert.deepEqual(await prekeys.oneTimeCount(fp(1)), { x25519: 3, mlkem768: 1 });

  await prekeys.publish(fp(1), bytes(64));
  assert.deepEqual(await prekeys.takeBundle(fp(1)), {
    signed: bytes(64),
    oneTime: { x25519: { id: 10, key: bytes(32, 0) }, mlkem768: { id: 50, key: bytes(1184, 0) } },
  });
  const second = await prekeys.takeBundle(fp(1));
  assert.deepEqual(second?.oneTime, { x25519: { id: 11, key: bytes(32, 1) } });
  assert.deepEqual(await prekeys.oneTimeCount(fp(1)), { x25519: 1, mlkem768: 0 });
  assert.equal((await prekeys.takeBundle(fp(1)))?.oneTime.x25519?.id, 12);
  assert.deepEqual(await prekeys.takeBundle(fp(1)), { signed: bytes(64), oneTime: {} });
  // Another identity's keys are its own.
  assert.deepEqual(await prekeys.oneTimeCount(fp(2)), { x25519: 1, mlkem768: 0 });
  // A taken id may come back: the owner decides ids, the store only refuses one held twice.
  assert.equal(await prekeys.addOneTime(fp(1), "x25519", oneTimeKeys(10, 1)), 1);
});

Deno.test("prekeys: prekeys-full when a kind's bound would pass, nothing added", async () => {
  await using store = await openSqliteStore(":memory:", { maxOneTimePerKind: 5 });
  const { prekeys } = store;
  await register(store, 1);
  await prekeys.addOneTime(fp(1), "x25519", oneTimeKeys(0, 3));
  await rejectsWith(
    prekeys.addOneTime(fp(1), "x25519", oneTimeKeys(3, 3)),
    "prekeys-full",
    /x25519/,
    /3 are held and 3 more would pass the most, 5/,
  );
  assert.deepEqual(await prekeys.oneTimeCount(fp(1)), { x25519: 3, mlkem768: 0 });
  assert.equal(await prekeys.addOneTime(fp(1), "x25519", oneTimeKeys(3, 2)), 5);
  await rejectsWith(prekeys.addOneTime(fp(1), "x25519", oneTimeKeys(9, 1)), "prekeys-full");
  await rejectsWith(prekeys.addOneTime(fp(1), "mlkem768", oneTimeKeys(0, 6)), "prekeys-full");
  assert.equal(await prekeys.addOneTime(fp(1), "mlkem768", oneTimeKeys(0, 5)), 5);
});

Deno.test("prekeys: a held id is refused with duplicate-prekey-id, all or nothing", async () => {
  await using store = await openSqliteStore(":memory:");
  const { prekeys } = store;
  await register(store, 1);
  await prekeys.addOneTime(fp(1), "x25519", oneTimeKeys(0, 2));
  await rejectsWith(
    prekeys.addOneTime(fp(1), "x25519", oneTimeKeys(1, 3)),
    "duplicate-prekey-id",
    /x25519 prekey id 1 is already held/,
  );
  const twice = [...oneTimeKeys(7, 1), ...oneTimeKeys(7, 1)];
  await rejectsWith(prekeys.addOneTime(fp(1), "x25519", twice), "duplicate-prekey-id", /id 7/);
  assert.deepEqual(await prekeys.oneTimeCount(fp(1)), { x25519: 2, mlkem768: 0 });
  // The same id in the other kind is another key.
  assert.equal(await prekeys.addOneTime(fp(1), "mlkem768", oneTimeKeys(0, 2)), 2);
});

Deno.test("prekeys: bad ids and oversized keys are refused with their codes", async () => {
  await using store = await openSqliteStore(":memory:");
  const { prekeys } = store;
  await register(store, 1);
  for (const id of [-1, 1.5, 2 ** 32, Number.NaN]) {
    await rejectsWith(
      prekeys.addOneTime(fp(1), "x25519", [{ id, key: bytes(32) }]),
      "bad-prekey-id",
      /from 0 to 4294967295/,
    );
  }
  await prekeys.addOneTime(fp(1), "x25519", [{ id: 2 ** 32 - 1, key: bytes(32) }]);
  const tooBig = [{ id: 1, key: bytes(MAX_ONE_TIME_KEY_BYTES + 1) }];
  await rejectsWith(prekeys.addOneTime(fp(1), "x25519", tooBig), "prekey-too-large", /4097 bytes/);
  await rejectsWith(
    prekeys.addOneTime(fp(1), "x25519", [{ id: 2, key: bytes(0) }]),
    "prekey-too-large",
  );
  await rejectsWith(
    prekeys.publish(fp(1), bytes(MAX_SIGNED_PREKEY_BYTES + 1)),
    "prekey-too-large",
    /Signed prekeys of 16385 bytes/,
  );
  await assert.rejects(
    prekeys.addOneTime(fp(1), "rsa" as OneTimeKind, oneTimeKeys(0, 1)),
    TypeError,
  );
  assert.deepEqual(await prekeys.oneTimeCount(fp(1)), { x25519: 1, mlkem768: 0 });
});

Deno.test("prekeys: concurrent takers on two connections never share a key", async () => {
  await using dir = await tempDir();
  await using a = await openSqliteStore(dir.path);
  await using b = await openSqliteStore(dir.path);
  await register(a, 1);
  await a.prekeys.publish(fp(1), bytes(64));
  await a.prekeys.addOneTime(fp(1), "x25519", oneTimeKeys(0, 50));
  await b.prekeys.addOneTime(fp(1), "mlkem768", oneTimeKeys(0, 50));
  const bundles = await Promise.all(
    Array.from({ length: 120 }, (_, i) => (i % 2 ? a : b).prekeys.takeBundle(fp(1))),
  );
  for (const kind of ["x25519", "mlkem768"] as const) {
    const taken = bundles.flatMap((bundle) => bundle?.oneTime[kind]?.id ?? []);
    assert.deepEqual(taken.toSorted((x, y) => x - y), [...Array(50).keys()], kind);
  }
});

Deno.test("prekeys: two processes taking at once never get the same key", async () => {
  const keys = 600;
  await using dir = await tempDir();
  {
    await using store = await openSqliteStore(dir.path, { maxOneTimePerKind: keys });
    await register(store, 1);
    await store.prekeys.publish(fp(1), bytes(64));
    await store.prekeys.addOneTime(fp(1), "x25519", oneTimeKeys(0, keys));
    await store.prekeys.addOneTime(fp(1), "mlkem768", oneTimeKeys(1000, keys));
  }
  await using first = new StoreChild(["take", dir.path, fp(1)]);
  await using second = new StoreChild(["take", dir.path, fp(1)]);
  await first.waitForLine((line) => line === "ready");
  await second.waitForLine((line) => line === "ready");
  await Promise.all([first.send("go"), second.send("go")]);
  const results = [];
  for (const child of [first, second]) {
    const line = await child.waitForLine((line) => line.startsWith("{"));
    const { status, stderr } = await child.finish();
    assert.equal(status.code, 0, stderr);
    results.push(JSON.parse(line) as Record<OneTimeKind, number[]>);
  }
  for (const [kind, base] of [["x25519", 0], ["mlkem768", 1000]] as const) {
    const all = results.flatMap((result) => result[kind]).toSorted((x, y) => x - y);
    assert.deepEqual(all, Array.from({ length: keys }, (_, i) => base + i), kind);
  }
});
