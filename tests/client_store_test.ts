import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { fingerprintHash, Identity } from "../shared/crypto/mod.ts";
import { ReelayError } from "../shared/errors.ts";
import { ClientStore, MAX_HISTORY_PER_PEER } from "../client/store/mod.ts";

const onWindows = Deno.build.os === "windows";
const [me, other] = await Promise.all([Identity.generate(), Identity.generate()]);

async function withHome(test: (home: string) => Promise<void>): Promise<void> {
  const home = await Deno.makeTempDir({ prefix: "reelay-client-store-" });
  try {
    await test(home);
  } finally {
    await Deno.remove(home, { recursive: true });
  }
}

Deno.test("client store: one owner-only file per server, and pins stay per server", async () => {
  await withHome(async (home) => {
    const a = await ClientStore.open({ home, server: "10.0.0.1_9000", identity: me });
    const b = await ClientStore.open({ home, server: "10.0.0.2_9000", identity: me });
    a.pin("bob", other.public, await fingerprintHash(other.public));
    await a.flush();
    assert.equal(a.pinned("BOB")?.fingerprint, await fingerprintHash(other.public));
    assert.equal(b.pinned("bob"), undefined);
    assert.match(a.file, /servers\/10\.0\.0\.1_9000\/client\.db$/);
    if (!onWindows) {
      assert.equal((await Deno.stat(a.file)).mode! & 0o777, 0o600);
      assert.equal((await Deno.stat(`${home}/servers/10.0.0.1_9000`)).mode! & 0o777, 0o700);
    }
    a.close();
    b.close();
    const again = await ClientStore.open({ home, server: "10.0.0.1_9000", identity: me });
    assert.equal(again.pinned("bob")?.state, "new");
    again.close();
  });
});

Deno.test("client store: a server id that is not a plain folder name is refused", () => {
  for (const bad of ["..", "a/b", "", "x".repeat(200)]) {
    assert.throws(() => ClientStore.path("/tmp", bad), RangeError);
  }
});

Deno.test("client store: 10,000 pins made together are written in one transaction", async () => {
  await withHome(async (home) => {
    const store = await ClientStore.open({ home, server: "s", identity: me });
    const fp = await fingerprintHash(other.public);
    for (let i = 0; i < 10_000; i++) store.pin(`user${i}`, other.public, fp);
    await store.flush();
    assert.equal(store.pinWrites, 1);
    store.pin("user1", other.public, fp, "verified");
    await store.flush();
    assert.equal(store.pinWrites, 2);
    store.close();
    const again = await ClientStore.open({ home, server: "s", identity: me });
    assert.equal(again.pinCount, 10_000);
    assert.equal(again.pinned("user1")?.state, "verified");
    assert.equal(again.pinned("user2")?.state, "new");
    again.close();
  });
});

Deno.test("client store: the ignore list survives a restart and compares names", async () => {
  await withHome(async (home) => {
    const store = await ClientStore.open({ home, server: "s", identity: me });
    store.ignore("Mallory");
    assert.ok(store.isIgnored("mallory"));
    assert.deepEqual(store.ignored(), ["Mallory"]);
    store.close();
    const again = await ClientStore.open({ home, server: "s", identity: me });
    assert.ok(again.isIgnored("MALLORY"));
    assert.equal(again.unignore("mallory"), true);
    assert.equal(again.unignore("mallory"), false);
    assert.equal(again.isIgnored("Mallory"), false);
    again.close();
  });
});

Deno.test("client store: history is encrypted at rest and bounded per person", async () => {
  await withHome(async (home) => {
    const store = await ClientStore.open({ home, server: "s", identity: me });
    const secret = "the launch code is 0000";
    await store.addHistory({ peer: "bob", direction: "in", id: "m1", text: secret, at: 5 });
    const [entry] = await store.history("Bob", 10);
    assert.deepEqual(entry, { peer: "bob", direction: "in", id: "m1", text: secret, at: 5 });
    store.close();
    const raw = await Deno.readFile(store.file);
    assert.equal(new TextDecoder("latin1").decode(raw).includes("launch code"), false);
    // Another identity cannot unwrap the history key.
    const thief = await ClientStore.open({ home, server: "s", identity: other });
    await assert.rejects(thief.history("bob", 1), (error: unknown) => {
      assert.ok(error instanceof ReelayError);
      assert.equal(error.code, "client-store-foreign");
      return true;
    });
    thief.close();
    const bound = 20;
    const again = await ClientStore.open({
      home,
      server: "s",
      identity: me,
      maxHistoryPerPeer: bound,
    });
    for (let i = 0; i < bound + 5; i++) {
      await again.addHistory({ peer: "carol", direction: "out", id: `c${i}`, text: "x", at: i });
    }
    const kept = await again.history("carol", MAX_HISTORY_PER_PEER);
    assert.equal(kept.length, bound);
    assert.equal(kept[0].id, "c5");
    again.close();
  });
});

Deno.test("client store: a replaced ratchet state leaves nothing behind in the file", async () => {
  await withHome(async (home) => {
    const store = await ClientStore.open({ home, server: "s", identity: me });
    const ratchet = (root: string) => ({
      format: "reelay-ratchet-v1" as const,
      ad: "",
      rootKey: root,
      sending: { secret: "", publicKey: "", chainKey: null, n: 0, previous: 0 },
      receiving: { publicKey: null, chainKey: null, n: 0, gaps: [] },
      history: [],
    });
    const old = "OLDROOTKEY".repeat(800); // spills onto overflow pages, freed on replace
    store.saveConversation({ name: "bob", fingerprint: "f", ratchet: ratchet(old), init: null });
    store.saveConversation({ name: "bob", fingerprint: "f", ratchet: ratchet("NEW"), init: null });
    assert.equal(store.conversation("BOB")?.ratchet.rootKey, "NEW");
    store.close();
    const bytes = new TextDecoder("latin1").decode(await Deno.readFile(store.file));
    assert.equal(
      bytes.includes("OLDROOTKEY"),
      false,
      "the old state is still readable in the file",
    );
    for (const side of ["-wal", "-journal"]) {
      await assert.rejects(Deno.stat(store.file + side), Deno.errors.NotFound);
    }
  });
});

Deno.test("client store: a file of another program is refused", async () => {
  await withHome(async (home) => {
    const file = ClientStore.path(home, "s");
    await Deno.mkdir(file.replace(/\/client\.db$/, ""), { recursive: true });
    const db = new DatabaseSync(file);
    db.exec("CREATE TABLE x (y); PRAGMA application_id = 7");
    db.close();
    await assert.rejects(ClientStore.open({ home, server: "s", identity: me }), (error) => {
      assert.ok(error instanceof ReelayError);
      assert.equal(error.code, "client-store-foreign");
      return true;
    });
  });
});
