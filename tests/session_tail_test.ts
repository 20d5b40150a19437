/**
 * No silent loss at session ends (issue 10): the server drops the last messages of alice's
 * connection and alice reconnects; her new session's messages say where the previous one ended,
 * so bob is told how many went missing. The server cannot forge or strip that claim: it travels
 * inside the sealed message.
 */

import assert from "node:assert/strict";
import { joinClient, startTestServer } from "../testing/harness.ts";
import { HostileProxy } from "./_proxy.ts";

async function scene(dropDeliveries: (index: number) => boolean) {
  const server = await startTestServer();
  let delivered = 0;
  const proxy = new HostileProxy(server.port, (direction, message) => {
    if (direction !== "to-client" || message.type !== "deliver") return [message];
    return dropDeliveries(delivered++) ? [] : [message];
  });
  const bob = await joinClient(proxy.port, "bob");
  const home = await Deno.makeTempDir({ prefix: "reelay-home-alice-" });
  return {
    bob,
    home,
    server,
    async close() {
      await bob.session.quit();
      await proxy.close();
      await server.close();
      await Deno.remove(bob.home, { recursive: true });
      await Deno.remove(home, { recursive: true });
    },
  };
}

Deno.test("a dropped session tail is reported as missing after the sender reconnects", async () => {
  // The server drops the 2nd and 3rd message it should deliver to bob: the end of a session.
  const { bob, home, server, close } = await scene((index) => index === 1 || index === 2);
  try {
    const port = server.port;
    const alice = await joinClient(port, "alice", { home });
    await bob.log.waitFor("joined", (event) => event.name === "alice");
    for (const text of ["one", "two", "three"]) await alice.session.send("bob", text);
    await bob.log.waitFor("message", (event) => event.text === "one");
    await alice.session.quit();
    await bob.log.waitFor("left", (event) => event.name === "alice");

    const again = await joinClient(port, "alice", { home });
    await again.session.send("bob", "four");
    const four = await bob.log.waitFor("message", (event) => event.text === "four");
    assert.equal(four.missing, 2, "two and three were dropped at the end of the first session");
    assert.deepEqual(bob.log.of("message").map((event) => event.text), ["one", "four"]);
    await again.session.send("bob", "five");
    const five = await bob.log.waitFor("message", (event) => event.text === "five");
    assert.equal(five.missing, 0, "the tail is counted once");
    await again.session.quit();
  } finally {
    await close();
  }
});

Deno.test("a reconnect with nothing dropped reports nothing missing", async () => {
  const { bob, home, server, close } = await scene(() => false);
  try {
    const port = server.port;
    const alice = await joinClient(port, "alice", { home });
    await bob.log.waitFor("joined", (event) => event.name === "alice");
    for (const text of ["one", "two"]) await alice.session.send("bob", text);
    await bob.log.waitFor("message", (event) => event.text === "two");
    await alice.session.quit();
    await bob.log.waitFor("left", (event) => event.name === "alice");
    const again = await joinClient(port, "alice", { home });
    await again.session.send("bob", "three");
    const three = await bob.log.waitFor("message", (event) => event.text === "three");
    assert.equal(three.missing, 0);
    assert.ok(bob.log.of("message").every((event) => event.missing === 0));
    await again.session.quit();
  } finally {
    await close();
  }
});
