/**
 * Several addresses of one server (client/failover.ts): the first connection and the reconnect
 * try them in turn while they do not answer or are full, and never past a refusal such as a
 * changed key. The cluster test of a
 * node killed under its client is in cluster_server_test.ts ("cluster failover").
 */

import assert from "node:assert/strict";
import { DEFAULT_RECONNECT } from "../client/mod.ts";
import { AddressRing } from "../client/failover.ts";
import { ReelayError } from "../shared/errors.ts";
import { ServerKey } from "../shared/channel/mod.ts";
import { joinClient, startTestServer } from "../testing/harness.ts";
import { within } from "./_deadline.ts";
import { HostileProxy } from "./_proxy.ts";

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

/** A server that already holds its `max_clients` (one: bob), sharing `key`. */
async function fullServer(key: ServerKey) {
  const server = await startTestServer({
    serverKey: key,
    patch: (config) => config.limits.maxClients = 1,
  });
  const bob = await joinClient(server.port, "bob");
  return {
    port: server.port,
    async close() {
      await bob.session.quit();
      await server.close();
    },
  };
}

Deno.test("failover: a full server is passed for the next address at the first join", async () => {
  const key = await ServerKey.generate();
  const full = await fullServer(key);
  const open = await startTestServer({ serverKey: key });
  try {
    const alice = await joinClient(full.port, "alice", {
      fallbacks: [{ hostname: "127.0.0.1", port: open.port }],
    });
    assert.equal(alice.session.server, `127.0.0.1:${open.port}`);
    await alice.session.quit();
  } finally {
    await full.close();
    await open.close();
  }
});

Deno.test("failover: a full server met while reconnecting is passed for the next address", async () => {
  const key = await ServerKey.generate();
  const full = await fullServer(key);
  const open = await startTestServer({ serverKey: key });
  const cut = new HostileProxy(open.port);
  const alice = await joinClient(cut.port, "alice", {
    fallbacks: [{ hostname: "127.0.0.1", port: full.port }, {
      hostname: "127.0.0.1",
      port: open.port,
    }],
    reconnect: { ...DEFAULT_RECONNECT, minDelayMs: 20, maxDelayMs: 200 },
  });
  try {
    await cut.close();
    const back = await alice.log.waitFor("reconnected", () => true, 60_000);
    assert.equal(back.server, `127.0.0.1:${open.port}`);
    const tries = alice.log.of("reconnecting");
    assert.equal(tries[1]?.code, "server-full", JSON.stringify(tries));
  } finally {
    await within(alice.session.quit(), 30_000, "alice to leave");
    await full.close();
    await open.close();
  }
});

Deno.test("failover: a node flooded with joining connections (too-many-pending) is passed; a name taken is not", async () => {
  const a = { hostname: "127.0.0.1", port: 1 };
  const b = { hostname: "127.0.0.2", port: 2 };
  const flooded = new AddressRing([a, b]);
  const took = await flooded.connect((address) => {
    if (address === a) throw new ReelayError("too-many-pending", "Too many connections joining");
    return Promise.resolve(address);
  });
  assert.equal(took, b);
  const taken = new AddressRing([a, b]);
  await assert.rejects(
    () => taken.connect(() => Promise.reject(new ReelayError("name-taken", "Taken"))),
    (error: unknown) => error instanceof ReelayError && error.code === "name-taken",
  );
  assert.equal(taken.current, a);
});
