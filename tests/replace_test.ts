/**
 * A join with the keys of a connection the server still holds replaces it (issue 13): a client
 * whose link died unnoticed comes back at once instead of waiting for the server's idle timeout,
 * and two running clients of one person do not take turns.
 */
import assert from "node:assert/strict";
import { DEFAULT_RECONNECT, type ReconnectPolicy } from "../client/mod.ts";
import { joinClient, startTestServer } from "../testing/harness.ts";
import { within } from "./_deadline.ts";
import { FreezableLink } from "./_link.ts";

/** Quick retries; a name taken by someone else is given up on at once. */
const QUICK: ReconnectPolicy = {
  ...DEFAULT_RECONNECT,
  minDelayMs: 20,
  maxDelayMs: 200,
  nameTakenGraceMs: 0,
};

/** A server that would hold a dead connection for ten minutes: only replacing frees the name. */
function patient() {
  return startTestServer({
    patch: (config) => {
      config.limits.keepaliveMs = 300_000;
      config.limits.idleTimeoutMs = 600_000;
    },
  });
}

Deno.test("a client whose link died unnoticed rejoins at once, replacing its old connection", async () => {
  const server = await patient();
  const link = new FreezableLink(server.port);
  const direct = { hostname: "127.0.0.1", port: server.port };
  const alice = await joinClient(link.port, "alice", {
    keepaliveMs: 1000,
    reconnect: { ...QUICK, address: () => direct },
  });
  const bob = await joinClient(server.port, "bob");
  try {
    await alice.log.waitFor("joined", (event) => event.name === "bob");
    // The link goes dead both ways without a close: the server notices nothing.
    link.freeze();
    await alice.log.waitFor("reconnected", () => true, 60_000);
    assert.equal(alice.log.of("disconnected").length, 0, "never gave up (no name-taken)");
    await alice.session.send("bob", "back already");
    const got = await bob.log.waitFor("message", (event) => event.text === "back already");
    assert.equal(got.from, "alice");
    assert.deepEqual(bob.session.who().map((peer) => peer.name), ["alice"]);
  } finally {
    await alice.session.quit();
    await bob.session.quit();
    await link.close();
    await server.close();
  }
});

Deno.test("a second running client with the same keys takes over; the first stops for good", async () => {
  const server = await patient();
  const first = await joinClient(server.port, "alice", { reconnect: QUICK });
  const bob = await joinClient(server.port, "bob");
  try {
    const second = await joinClient(server.port, "alice", { home: first.home, reconnect: QUICK });
    try {
      const end = await within(first.session.closed, 60_000, "the first client to stop");
      assert.equal(end.code, "replaced");
      assert.match(end.reason, /Another connection with your keys joined as "alice"/);
      assert.equal(first.log.of("reconnected").length, 0, "the first does not come back");
      await second.session.send("bob", "from the second");
      await bob.log.waitFor("message", (event) => event.text === "from the second");
    } finally {
      await second.session.quit();
    }
  } finally {
    await first.session.quit();
    await bob.session.quit();
    await server.close();
  }
});

Deno.test("someone else's keys under a held name are still refused name-taken", async () => {
  const server = await patient();
  const alice = await joinClient(server.port, "alice");
  try {
    await assert.rejects(joinClient(server.port, "alice"), { code: "name-taken" });
    assert.equal(alice.log.of("disconnected").length, 0, "the holder was not replaced");
  } finally {
    await alice.session.quit();
    await server.close();
  }
});
