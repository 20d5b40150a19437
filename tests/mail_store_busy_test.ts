/**
 * The server's store may be busy (another process holding its write lock past the busy timeout)
 * when someone joins: what is held for them is theirs all the same, and is delivered; and what is
 * sent to the key they hold is not refused for the older key the registry could not replace.
 */
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { fingerprintHash, Identity } from "../shared/crypto/mod.ts";
import { type LoggedServer, startLoggedServer } from "../testing/harness.ts";
import { RawClient, waitUntil } from "./_raw.ts";

/** Bob's second connection, and how to let the store be written again. */
interface Rejoined {
  server: LoggedServer;
  alice: RawClient;
  bob: RawClient;
  unlock(): void;
}

/**
 * Alice and bob join (bob with `first`); bob leaves, `whileAway` runs, and he joins again with
 * `again` while another process holds the store's write lock (readers still read), which
 * `rejoined` may release.
 */
async function busyRejoin(
  first: Identity,
  again: Identity,
  whileAway: (alice: RawClient) => Promise<void>,
  rejoined: (scene: Rejoined) => Promise<void>,
): Promise<void> {
  const server = await startLoggedServer();
  // Keys first (the caller's): a connection must join within the join timeout.
  const alice = await RawClient.connect(server.port);
  let bob = await RawClient.connect(server.port);
  let locker: DatabaseSync | undefined;
  const unlock = () => {
    locker?.exec("ROLLBACK");
    locker?.close();
    locker = undefined;
  };
  try {
    assert.equal((await alice.join("alice", await Identity.generate())).type, "welcome");
    assert.equal((await bob.join("bob", first)).type, "welcome");
    await bob.close();
    await alice.waitFor((message) => message.type === "left" && message.name === "bob");
    await whileAway(alice);
    locker = new DatabaseSync(`${server.videos}/.state/reelay.db`);
    locker.exec("BEGIN IMMEDIATE");
    bob = await RawClient.connect(server.port);
    assert.equal((await bob.join("bob", again)).type, "welcome");
    await rejoined({ server, alice, bob, unlock });
  } finally {
    unlock();
    await bob.close();
    await alice.close();
    await server.stop();
  }
}

Deno.test("held mail is delivered at a join even when the registry cannot be written (store busy)", async () => {
  const bobIdentity = await Identity.generate();
  await busyRejoin(bobIdentity, bobIdentity, async (alice) => {
    await alice.send({ type: "send", ref: 1, to: "bob", envelope: "held for bob" });
    assert.equal((await alice.waitFor((message) => message.ref === 1)).type, "queued");
  }, async ({ server, bob }) => {
    const delivered = await bob.waitFor((message) => message.type === "deliver");
    assert.equal(new TextDecoder().decode(delivered.envelope as Uint8Array), "held for bob");
    assert.ok(server.lines.some((line) => /^warn Could not remember "bob"/.test(line)));
  });
});

Deno.test("a send to someone online whose new key the registry could not record (store busy) is delivered", async () => {
  const [firstKeys, secondKeys] = [await Identity.generate(), await Identity.generate()];
  const toKey = await fingerprintHash(secondKeys.public);
  // The registry keeps bob's first key, which is no change of key for what is sent to the one he
  // holds now.
  await busyRejoin(
    firstKeys,
    secondKeys,
    async () => {},
    async ({ server, alice, bob, unlock }) => {
      await waitUntil(
        () => server.lines.some((line) => /^warn Could not remember "bob"/.test(line)),
        "the registry write of bob's second key to fail",
      );
      unlock();
      await alice.send({ type: "send", ref: 2, to: "bob", toKey, id: "m2", envelope: "second" });
      const answer = await alice.waitFor((message) => message.ref === 2);
      assert.deepEqual([answer.type, answer.code], ["relayed", undefined]);
      const delivered = await bob.waitFor((message) =>
        message.type === "deliver" && message.id === "m2"
      );
      assert.equal(new TextDecoder().decode(delivered.envelope as Uint8Array), "second");
    },
  );
});
