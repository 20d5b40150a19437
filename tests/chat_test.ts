import assert from "node:assert/strict";
import { joinClient, withPeople } from "../testing/harness.ts";

Deno.test("people see each other join and leave, with fingerprints", async () => {
  await withPeople({ people: ["alice", "bob"] }, async ({ people: { alice, bob } }) => {
    const joined = await alice.log.waitFor("joined", (event) => event.name === "bob");
    assert.match(joined.fingerprint, /^[0-9a-f]{4}(:[0-9a-f]{4})+$/);
    assert.deepEqual(bob.session.who().map((peer) => peer.name), ["alice"]);
    assert.equal(bob.session.who()[0].trust, "new");
    await bob.session.quit();
    await alice.log.waitFor("left", (event) => event.name === "bob");
    assert.deepEqual(alice.session.who(), []);
  });
});

Deno.test("a message reaches only its recipient, sealed", async () => {
  await withPeople(
    { people: ["alice", "bob", "carol"] },
    async ({ people: { alice, bob, carol } }) => {
      await alice.session.send("bob", "for bob only");
      const got = await bob.log.waitFor("message");
      assert.equal(got.from, "alice");
      assert.equal(got.text, "for bob only");
      await alice.session.send("carol", "marker");
      await carol.log.waitFor("message");
      assert.deepEqual(carol.log.of("message").map((event) => event.text), ["marker"]);
    },
  );
});

Deno.test("names are unique regardless of case: BOB cannot join while bob is online", async () => {
  await withPeople({ people: ["alice", "bob"] }, async ({ server, people: { alice, bob } }) => {
    await assert.rejects(joinClient(server.port, "BOB"), (error: Error & { code?: string }) => {
      assert.equal(error.code, "name-taken");
      return true;
    });
    assert.deepEqual(alice.session.who().map((peer) => peer.name), ["bob"]);
    await bob.session.quit();
    await alice.log.waitFor("left", (event) => event.name === "bob");
    // Once bob is gone, the name is free in any case.
    const again = await joinClient(server.port, "BOB");
    await alice.log.waitFor("joined", (event) => event.name === "BOB");
    await again.session.quit();
  });
});
