/**
 * The registry forgets people unseen for its time to live (90 days by default): their held mail
 * ends and its senders are told `recipient-forgotten`; someone online all along is never dropped.
 * The server's own sweep runs it, here called with a clock moved past the time to live.
 */
import assert from "node:assert/strict";
import { withPeople } from "../testing/harness.ts";
import { DEFAULT_STORE_LIMITS } from "../server/store/mod.ts";
import { ReelayError } from "../shared/errors.ts";

Deno.test("registry: a person unseen past the time to live is forgotten, their mail ended; online people stay", async () => {
  await withPeople({ people: ["alice", "bob", "carol"] }, async ({ server, people }) => {
    const { alice, bob, carol } = people;
    // Pinned keys, so that both may be written to while offline.
    await alice.session.verify("bob");
    await carol.session.verify("bob");
    await carol.session.verify("alice");
    await bob.session.quit();
    await alice.log.waitFor("left", (event) => event.name === "bob");
    await alice.session.send("bob", "held for bob");
    const held = await alice.log.waitFor("queued");

    const later = Date.now() + DEFAULT_STORE_LIMITS.registryTtlMs + 24 * 3600 * 1000;
    assert.ok(await server.server.sweepMail(later) >= 1, "bob's held mail ended");
    const told = await alice.log.waitFor("failed", (event) => event.id === held.id);
    assert.equal(told.reason, "recipient-forgotten");
    await assert.rejects(
      () => carol.session.send("bob", "to nobody"),
      (error: unknown) => error instanceof ReelayError && error.code === "unknown-recipient",
    );

    // alice was online through the sweep: still known, so mail is held for her.
    await alice.session.quit();
    await carol.log.waitFor("left", (event) => event.name === "alice");
    await carol.session.send("alice", "held for alice");
    await carol.log.waitFor("queued");
  });
});
