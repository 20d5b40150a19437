/**
 * Several addresses of one server (client/failover.ts): the first connection tries them in turn
 * while they do not answer, and never past a refusal such as a changed key. The cluster test of a
 * node killed under its client is in cluster_server_test.ts ("cluster failover").
 */

import assert from "node:assert/strict";
import { ServerKey } from "../shared/channel/mod.ts";
import { joinClient, startTestServer } from "../testing/harness.ts";

/** A loopback port nothing listens on (it was free a moment ago). */
function deadPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  listener.close();
  return port;
}

Deno.test("failover: an address that does not answer is passed for the next one", async () => {
  const server = await startTestServer();
  try {
    const alice = await joinClient(deadPort(), "alice", {
      fallbacks: [{ hostname: "127.0.0.1", port: server.port }],
    });
    assert.equal(alice.session.server, `127.0.0.1:${server.port}`);
    await alice.session.quit();
  } finally {
    await server.close();
  }
});

Deno.test("failover: a changed server key is refused, not passed for the next address", async () => {
  const key = await ServerKey.generate();
  const real = await startTestServer({ serverKey: key });
  const port = real.port;
  const first = await joinClient(port, "alice");
  await first.session.quit();
  await real.close();
  // Another key now answers at the address alice pinned; the real server is elsewhere too.
  const impostor = await startTestServer({ patch: (config) => config.server.port = port });
  const elsewhere = await startTestServer({ serverKey: key });
  try {
    await assert.rejects(
      joinClient(port, "alice", {
        home: first.home,
        fallbacks: [{ hostname: "127.0.0.1", port: elsewhere.port }],
      }),
      (error: Error & { code?: string }) => error.code === "server-key-changed",
    );
  } finally {
    await impostor.close();
    await elsewhere.close();
  }
});
