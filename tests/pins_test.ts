import assert from "node:assert/strict";
import { loadOrCreateIdentity } from "../client/keystore.ts";
import { serverStoreId } from "../client/server_store.ts";
import { ClientStore } from "../client/store/mod.ts";
import { ServerKey } from "../shared/channel/mod.ts";
import { joinClient, testServerKey, withPeople } from "../testing/harness.ts";

async function pinsOf(home: string, serverKey: ServerKey) {
  const { identity } = await loadOrCreateIdentity(home);
  const server = serverStoreId(serverKey.fingerprint);
  const store = await ClientStore.open({ home, server, identity });
  try {
    return {
      alice: store.pinned("alice"),
      bob: store.pinned("bob"),
      carol: store.pinned("carol"),
      count: store.pinCount,
    };
  } finally {
    store.close();
  }
}

Deno.test("pins: seeing a name pins nothing; interacting pins it, per server", async () => {
  await withPeople({ people: ["alice", "bob", "carol"] }, async ({ people }) => {
    const { alice, bob, carol } = people;
    await alice.session.send("bob", "hello");
    await bob.log.waitFor("message");
    await Promise.all([alice.session.quit(), bob.session.quit(), carol.session.quit()]);
    const pins = await pinsOf(alice.home, await testServerKey());
    assert.equal(pins.count, 1);
    assert.equal(pins.bob?.state, "new");
    assert.equal(pins.carol, undefined, "carol was only seen, not pinned");
    const bobs = await pinsOf(bob.home, await testServerKey());
    assert.equal(bobs.alice?.state, "new", "taking a message pins its sender");
    assert.equal(bobs.count, 1);
    const elsewhere = await pinsOf(alice.home, await ServerKey.generate());
    assert.equal(elsewhere.count, 0, "another server has its own pins");
  });
});

Deno.test("pins: /trust after /verify makes a key verified, shown after a restart", async () => {
  await withPeople({ people: ["alice", "bob"] }, async ({ server, people: { alice, bob } }) => {
    assert.equal(alice.session.who()[0].trust, "new");
    const mine = await alice.session.verify("bob");
    const theirs = await bob.session.verify("alice");
    assert.equal(mine.code, theirs.code);
    assert.match(mine.code, /^(\d{5} ){11}\d{5}$/);
    await alice.session.trust("bob");
    assert.equal(alice.session.who()[0].trust, "verified");
    await alice.session.quit();
    const again = await joinClient(server.port, "alice", { home: alice.home });
    assert.equal(again.session.who().find((peer) => peer.name === "bob")?.trust, "verified");
    await again.session.quit();
  });
});
