/**
 * A reconnect goes only to the key the session joined (review B0f): its store and conversations
 * belong to that key. Another address (failover) that shows another key is refused before it is
 * pinned, so it stays unknown for later runs.
 */
import assert from "node:assert/strict";
import { DEFAULT_RECONNECT } from "../client/mod.ts";
import { knownServers } from "../client/server_trust.ts";
import { ServerKey } from "../shared/channel/mod.ts";
import { joinClient, startTestServer } from "../testing/harness.ts";
import { within } from "./_deadline.ts";

Deno.test("a reconnect to another address with another key ends the session, and that key is not pinned", async () => {
  const server = await startTestServer();
  const other = await startTestServer({ serverKey: await ServerKey.generate() });
  const elsewhere = { hostname: "127.0.0.1", port: other.port };
  const alice = await joinClient(server.port, "alice", {
    reconnect: {
      ...DEFAULT_RECONNECT,
      wait: () => Promise.resolve(false),
      address: () => elsewhere,
    },
  });
  try {
    await server.close();
    const end = await within(alice.session.closed, 30_000, "the session to end");
    assert.equal(end.code, "server-key-changed");
    assert.match(end.reason, /not the key of the server this session joined/);
    assert.equal(alice.log.of("reconnecting").length, 1, "no second try");
    const pinned = await knownServers(alice.home).pinned(`127.0.0.1:${other.port}`);
    assert.equal(pinned, undefined, "the refused key is not pinned for that address");
  } finally {
    await alice.session.quit();
    await other.close();
  }
});
