/**
 * The server's store may be busy (another process holding its write lock past the busy timeout)
 * when someone joins: what is held for them is theirs all the same, and is delivered.
 */
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { Identity } from "../shared/crypto/mod.ts";
import { startLoggedServer } from "../testing/harness.ts";
import { RawClient } from "./_raw.ts";

Deno.test("held mail is delivered at a join even when the registry cannot be written (store busy)", async () => {
  const server = await startLoggedServer();
  // Keys first: a connection must join within the join timeout.
  const [aliceIdentity, bobIdentity] = [await Identity.generate(), await Identity.generate()];
  const alice = await RawClient.connect(server.port);
  let bob = await RawClient.connect(server.port);
  let locker: DatabaseSync | undefined;
  try {
    assert.equal((await alice.join("alice", aliceIdentity)).type, "welcome");
    assert.equal((await bob.join("bob", bobIdentity)).type, "welcome");
    await bob.close();
    await alice.waitFor((message) => message.type === "left" && message.name === "bob");
    await alice.send({ type: "send", ref: 1, to: "bob", envelope: "held for bob" });
    assert.equal((await alice.waitFor((message) => message.ref === 1)).type, "queued");

    // Another process takes the write lock (readers still read) and keeps it through the join.
    locker = new DatabaseSync(`${server.videos}/.state/reelay.db`);
    locker.exec("BEGIN IMMEDIATE");
    bob = await RawClient.connect(server.port);
    assert.equal((await bob.join("bob", bobIdentity)).type, "welcome");
    const delivered = await bob.waitFor((message) => message.type === "deliver");
    assert.equal(new TextDecoder().decode(delivered.envelope as Uint8Array), "held for bob");
    assert.ok(server.lines.some((line) => /^warn Could not remember "bob"/.test(line)));
  } finally {
    locker?.exec("ROLLBACK");
    locker?.close();
    await bob.close();
    await alice.close();
    await server.stop();
  }
});
