/**
 * The client's group commit (shared/group_commit.ts) never lets memory run ahead of the file in
 * a way that loses a message or uses a key twice: a commit that fails drops what it covered, and
 * a conversation ended by a refusal stays ended while its delete waits for the commit.
 */
import assert from "node:assert/strict";
import { DEFAULT_RECONNECT } from "../client/mod.ts";
import { ClientStore } from "../client/store/mod.ts";
import { joinClient, startTestServer } from "../testing/harness.ts";
import { HostileProxy } from "./_proxy.ts";

const QUICK = { ...DEFAULT_RECONNECT, minDelayMs: 20, maxDelayMs: 200 };

Deno.test("a message whose commit failed is not acknowledged, comes again after a reconnect and opens", async () => {
  const server = await startTestServer();
  const proxy = new HostileProxy(server.port);
  const proto = ClientStore.prototype as { transaction: (body: () => void) => void };
  const transaction = proto.transaction;
  let failIn: string | undefined;
  proto.transaction = function (this: ClientStore, body: () => void) {
    if (failIn !== undefined && this.file.startsWith(failIn)) {
      failIn = undefined;
      throw new Error("disk I/O error (test)");
    }
    return transaction.call(this, body);
  };
  let closing: Promise<void> | undefined;
  const alice = await joinClient(server.port, "alice");
  const bob = await joinClient(proxy.port, "bob", {
    fallbacks: [{ hostname: "127.0.0.1", port: server.port }],
    reconnect: QUICK,
  });
  try {
    await alice.session.send("bob", "first");
    await bob.log.waitFor("message", (event) => event.text === "first");
    failIn = bob.home;
    await alice.session.send("bob", "second");
    const error = await bob.log.waitFor("error", (event) => event.code === "client-store-failed");
    assert.match(error.message ?? "", /not acknowledged/);
    assert.ok(!bob.log.of("message").some((event) => event.text === "second"));
    const cut = proxy.close(); // bob's link goes; he is back on the server at once
    closing = cut;
    await cut;
    await bob.log.waitFor("reconnected");
    await bob.log.waitFor("message", (event) => event.text === "second");
    await alice.session.send("bob", "third");
    await bob.log.waitFor("message", (event) => event.text === "third");
    assert.deepEqual(bob.log.of("error").map((event) => event.code), ["client-store-failed"]);
  } finally {
    proto.transaction = transaction;
    await alice.session.quit();
    await bob.session.quit();
    await (closing ?? proxy.close());
    await server.close();
  }
});

Deno.test("a send right after a refusal that ends the conversation starts a new one, never the old from the file", async () => {
  const server = await startTestServer();
  const aliceProxy = new HostileProxy(server.port);
  const bobProxy = new HostileProxy(server.port);
  const alice = await joinClient(aliceProxy.port, "alice");
  const bob = await joinClient(bobProxy.port, "bob");
  try {
    await alice.session.send("bob", "hello");
    await alice.log.waitFor("delivered"); // bob answered: alice's next messages carry no init
    let tamper = true;
    bobProxy.rewrite = (direction, message) => {
      if (direction !== "to-client" || message.type !== "deliver" || !tamper) return [message];
      tamper = false;
      const envelope = new Uint8Array(message.envelope as Uint8Array);
      envelope[envelope.length - 3] ^= 1;
      return [{ ...message, envelope }];
    };
    const kinds: number[] = [];
    aliceProxy.rewrite = (direction, message) => {
      if (direction === "to-server" && message.type === "send") {
        kinds.push((message.envelope as Uint8Array)[0]);
      }
      return [message];
    };
    await alice.session.send("bob", "tampered on the way");
    const failed = await alice.log.waitFor("failed");
    assert.equal(failed.reason, "not-authentic");
    // At once, before the delete of the ended conversation is committed.
    await alice.session.send("bob", "after the refusal");
    await bob.log.waitFor("message", (event) => event.text === "after the refusal");
    assert.deepEqual(kinds, [1, 2], "a ratchet message, then a new conversation's first");
  } finally {
    await alice.session.quit();
    await bob.session.quit();
    await aliceProxy.close();
    await bobProxy.close();
    await server.close();
  }
});
