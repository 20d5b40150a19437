import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { containsBytes } from "./_bytes.ts";
import { historyCiphertexts } from "./_thief.ts";
import { fingerprintHash, Identity } from "../shared/crypto/mod.ts";
import { ReelayError } from "../shared/errors.ts";
import { ClientStore, MAX_HISTORY_PER_PEER, MAX_RECEIPTS_OWED } from "../client/store/mod.ts";

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
    assert.equal(historyCiphertexts(again.file, "carol").length, bound, "the older rows are gone");
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

Deno.test("client store: a message's status moves forward only", async () => {
  await withHome(async (home) => {
    const store = await ClientStore.open({ home, server: "s", identity: me });
    const out = { peer: "bob", direction: "out" as const, text: "hi", at: 1 };
    await store.addHistory({ ...out, id: "m1", status: "sending" });
    await store.addHistory({ ...out, id: "m2", status: "sending" });
    store.markHistory("BOB", "m1", "sent");
    store.markHistory("bob", "m1", "delivered");
    store.markHistory("bob", "m1", "sent"); // a late answer does not undo the receipt
    store.markHistory("bob", "m2", "failed");
    store.markHistory("carol", "m2", "delivered"); // another person's id: not this message
    const [first, second] = await store.history("bob", 10);
    assert.equal(first.status, "delivered");
    assert.equal(second.status, "failed");
    store.close();
  });
});

Deno.test("client store: history turned off keeps nothing, also next time; --no-history wins", async () => {
  await withHome(async (home) => {
    const store = await ClientStore.open({ home, server: "s", identity: me });
    assert.equal(store.historyKept, true);
    store.keepHistory(false);
    await store.addHistory({ peer: "bob", direction: "in", id: "m1", text: "secret", at: 1 });
    assert.deepEqual(await store.history(undefined, 10), []);
    store.close();
    const again = await ClientStore.open({ home, server: "s", identity: me });
    assert.equal(again.historyKept, false, "off is remembered for this server");
    again.keepHistory(true);
    await again.addHistory({ peer: "bob", direction: "in", id: "m2", text: "kept", at: 2 });
    assert.deepEqual((await again.history("bob", 10)).map((entry) => entry.text), ["kept"]);
    again.close();
    const forced = await ClientStore.open({ home, server: "s", identity: me, keepHistory: false });
    assert.equal(forced.historyKept, false);
    await forced.addHistory({ peer: "bob", direction: "in", id: "m3", text: "not kept", at: 3 });
    assert.throws(() => forced.keepHistory(true), (error: unknown) => {
      assert.ok(error instanceof ReelayError);
      assert.equal(error.code, "history-forced-off");
      return true;
    });
    assert.equal((await forced.history("bob", 10)).length, 1);
    forced.close();
  });
});

Deno.test("client store: clearing history takes its bytes out of the file", async () => {
  await withHome(async (home) => {
    const store = await ClientStore.open({ home, server: "s", identity: me });
    for (let i = 0; i < 30; i++) {
      const text = `message ${i} `.repeat(40);
      await store.addHistory({ peer: "bob", direction: "in", id: `b${i}`, text, at: i });
      await store.addHistory({ peer: "carol", direction: "in", id: `c${i}`, text, at: i });
    }
    const bob = historyCiphertexts(store.file, "bob");
    const carol = historyCiphertexts(store.file, "carol");
    assert.equal(bob.length, 30);
    assert.equal(store.clearHistory("Bob"), 30);
    assert.deepEqual(await store.history("bob", 10), []);
    assert.equal((await store.history("carol", 100)).length, 30, "carol's are kept");
    let bytes = await Deno.readFile(store.file);
    assert.ok(carol.every((data) => containsBytes(bytes, data)), "the search finds what is there");
    assert.equal(bob.filter((data) => containsBytes(bytes, data)).length, 0);
    assert.equal(store.clearHistory(), 30);
    store.close();
    bytes = await Deno.readFile(store.file);
    assert.equal(carol.filter((data) => containsBytes(bytes, data)).length, 0);
    await assert.rejects(Deno.stat(store.file + "-journal"), Deno.errors.NotFound);
  });
});

Deno.test("client store: history is bounded in all, the oldest going first", async () => {
  await withHome(async (home) => {
    const store = await ClientStore.open({ home, server: "s", identity: me, maxHistoryTotal: 10 });
    for (let i = 0; i < 15; i++) {
      await store.addHistory({ peer: `p${i % 4}`, direction: "in", id: `m${i}`, text: "x", at: i });
    }
    const kept = await store.history(undefined, 100);
    assert.deepEqual(
      kept.map((entry) => entry.id),
      Array.from({ length: 10 }, (_, i) => `m${i + 5}`),
    );
    store.close();
  });
});

Deno.test("client store: a store of version 1 is upgraded in place, keeping what it held", async () => {
  await withHome(async (home) => {
    const made = await ClientStore.open({ home, server: "s", identity: me });
    made.ignore("Mallory");
    await made.addHistory({ peer: "bob", direction: "in", id: "m0", text: "old", at: 0 });
    made.close();
    // Back to version 1: the history rows had no message id or status then, nor a count.
    const db = new DatabaseSync(made.file);
    db.exec(`DROP TRIGGER history_added; DROP TRIGGER history_deleted; DROP TABLE history_total;
      DROP INDEX history_by_message; ALTER TABLE history DROP COLUMN message_id;
      ALTER TABLE history DROP COLUMN status; PRAGMA user_version = 1;`);
    db.close();
    const store = await ClientStore.open({ home, server: "s", identity: me, maxHistoryTotal: 2 });
    assert.deepEqual(store.ignored(), ["Mallory"]);
    assert.deepEqual((await store.history("bob", 5)).map((entry) => entry.text), ["old"]);
    await store.addHistory({ peer: "bob", direction: "out", id: "m1", text: "hi", at: 1 });
    store.markHistory("bob", "m1", "delivered");
    assert.equal((await store.history("bob", 1))[0].status, "delivered");
    await store.addHistory({ peer: "bob", direction: "out", id: "m2", text: "again", at: 2 });
    const kept = await store.history("bob", 5);
    assert.deepEqual(kept.map((entry) => entry.text), ["hi", "again"], "the old row counted");
    store.close();
  });
});

Deno.test("client store: a version 2 store, with or without the row count, is upgraded to 3 and bounded", async () => {
  // Version 2 first landed without `history_total`; for a while it was made with it.
  for (const hadCount of [false, true]) {
    await withHome(async (home) => {
      const made = await ClientStore.open({ home, server: "s", identity: me });
      await made.addHistory({ peer: "bob", direction: "in", id: "m0", text: "old", at: 0 });
      await made.addHistory({ peer: "bob", direction: "in", id: "m1", text: "older", at: 1 });
      made.close();
      const db = new DatabaseSync(made.file);
      db.exec(
        hadCount
          ? "UPDATE history_total SET rows = 7; PRAGMA user_version = 2;"
          : `DROP TRIGGER history_added; DROP TRIGGER history_deleted; DROP TABLE history_total;
             PRAGMA user_version = 2;`,
      );
      db.close();
      const store = await ClientStore.open({ home, server: "s", identity: me, maxHistoryTotal: 3 });
      await store.addHistory({ peer: "bob", direction: "out", id: "m2", text: "hi", at: 2 });
      await store.addHistory({ peer: "bob", direction: "out", id: "m3", text: "again", at: 3 });
      const kept = await store.history("bob", 5);
      assert.deepEqual(kept.map((entry) => entry.text), ["older", "hi", "again"], `${hadCount}`);
      store.close();
      const after = new DatabaseSync(made.file);
      assert.equal(after.prepare("PRAGMA user_version").get()?.user_version, 4);
      assert.equal(after.prepare("SELECT rows FROM history_total").get()?.rows, 3);
      after.close();
    });
  }
});

Deno.test("client store: receipts owed are kept across a reopen, oldest first, until taken, and bounded", async () => {
  await withHome(async (home) => {
    const store = await ClientStore.open({ home, server: "s", identity: me });
    const owe = (id: string) =>
      store.oweReceipt({ name: "bob", fingerprint: "f", id, envelope: new Uint8Array([1, 2]) });
    const first = owe("r1");
    owe("r2");
    owe("r3");
    store.receiptsTaken([first]);
    store.close();
    const again = await ClientStore.open({ home, server: "s", identity: me });
    assert.deepEqual(again.receiptsOwed().map((receipt) => receipt.id), ["r2", "r3"]);
    assert.deepEqual(again.receiptsOwed()[0].envelope, new Uint8Array([1, 2]));
    again.transaction(() => {
      for (let i = 4; i <= MAX_RECEIPTS_OWED + 5; i++) {
        again.oweReceipt({
          name: "bob",
          fingerprint: "f",
          id: `r${i}`,
          envelope: new Uint8Array(1),
        });
      }
    });
    const kept = again.receiptsOwed();
    assert.equal(kept.length, MAX_RECEIPTS_OWED, "the oldest went");
    assert.equal(kept[0].id, "r6");
    assert.equal(kept.at(-1)?.id, `r${MAX_RECEIPTS_OWED + 5}`);
    again.close();
  });
});
