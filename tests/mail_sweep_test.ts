/**
 * The sweep ends expired mail a page at a time and tells each sender with a synced write: the
 * connections get a turn between pages, so a week-old burst of mail does not freeze the server.
 */
import assert from "node:assert/strict";
import { DEFAULT_STORE_LIMITS } from "../server/store/mod.ts";
import { Identity } from "../shared/crypto/mod.ts";
import { startLoggedServer } from "../testing/harness.ts";
import { RawClient } from "./_raw.ts";

Deno.test("the mail sweep gives the event loop a turn between pages of expired mail", async () => {
  const server = await startLoggedServer((config) => {
    config.limits.chatRate = 100_000;
    config.limits.chatBurst = 100_000;
  });
  // Keys first: a connection must join within the join timeout.
  const [aliceIdentity, bobIdentity] = [await Identity.generate(), await Identity.generate()];
  const alice = await RawClient.connect(server.port);
  const bob = await RawClient.connect(server.port);
  try {
    assert.equal((await alice.join("alice", aliceIdentity)).type, "welcome");
    assert.equal((await bob.join("bob", bobIdentity)).type, "welcome");
    await bob.close();
    await alice.waitFor((message) => message.type === "left" && message.name === "bob");
    // More than one page (100) of mail held for bob.
    const count = 150;
    for (let ref = 1; ref <= count; ref++) {
      await alice.send({ type: "send", ref, to: "bob", id: `m${ref}`, envelope: `m${ref}` });
    }
    await alice.waitFor((message) => message.ref === count);

    let turns = 0;
    const timer = setInterval(() => turns++, 0);
    try {
      const later = Date.now() + DEFAULT_STORE_LIMITS.ttlMs + 60_000;
      // At least bob's mail (the notices it puts for alice are past this clock too).
      assert.ok(await server.server.sweepMail(later) >= count);
    } finally {
      clearInterval(timer);
    }
    // Without a turn between pages, the whole sweep runs in one go and no timer fires.
    assert.ok(turns > 0, "no timer fired while the sweep ran");
    const failed = await alice.waitFor((message) =>
      message.type === "failed" && message.id === `m${count}`
    );
    assert.equal(failed.reason, "expired");
  } finally {
    await alice.close();
    await server.stop();
  }
});
