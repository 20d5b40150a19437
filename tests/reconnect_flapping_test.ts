/**
 * A server that accepts every join and cuts the line right after it (review B0c): reconnecting
 * must not hold a request for ever, nor restart the give-up time at each loss.
 */
import assert from "node:assert/strict";
import type { ReconnectPolicy } from "../client/mod.ts";
import { DEFAULT_RECONNECT } from "../client/mod.ts";
import type { ReelayError } from "../shared/errors.ts";
import { joinClient, startTestServer } from "../testing/harness.ts";
import { within } from "./_deadline.ts";
import { HostileProxy, type Json } from "./_proxy.ts";

/** The server never gets a `videos` request: it never answers one. */
function dropVideos(direction: string, message: Json): Json[] {
  return direction === "to-server" && message.type === "videos" ? [] : [message];
}

/**
 * Each dial gets a fresh proxy to `serverPort` that passes the welcome on and then cuts the
 * connection (and drops `videos` requests).
 */
function flappingServer(serverPort: number) {
  const proxies: HostileProxy[] = [];
  const closing = new Map<HostileProxy, Promise<void>>();
  const closeOnce = (proxy: HostileProxy) => {
    if (!closing.has(proxy)) closing.set(proxy, proxy.close());
    return closing.get(proxy)!;
  };
  const address = () => {
    const proxy: HostileProxy = new HostileProxy(serverPort, (direction, message) => {
      if (direction === "to-client" && message.type === "welcome") {
        setTimeout(() => void closeOnce(proxy), 0);
      }
      return dropVideos(direction, message);
    });
    proxies.push(proxy);
    return { hostname: "127.0.0.1", port: proxy.port };
  };
  return {
    address,
    async close() {
      for (const proxy of proxies) await closeOnce(proxy);
    },
  };
}

Deno.test("a server that cuts the line after each join cannot hold a request: it fails with request-timeout", async () => {
  const server = await startTestServer();
  const first = new HostileProxy(server.port, dropVideos);
  const flapping = flappingServer(server.port);
  const alice = await joinClient(first.port, "alice", {
    requestTimeoutMs: 2000,
    reconnect: {
      ...DEFAULT_RECONNECT,
      minDelayMs: 20,
      maxDelayMs: 200,
      address: flapping.address,
    },
  });
  try {
    const videos = alice.session.listVideos();
    const failed = assert.rejects(videos, (error: ReelayError) => {
      assert.equal(error.code, "request-timeout");
      assert.match(error.message, /did not answer "videos" within 2 s/);
      return true;
    });
    await first.close();
    await within(failed, 60_000, "the request to fail with request-timeout");
    assert.ok(alice.log.of("reconnected").length >= 1, "it reconnected meanwhile");
  } finally {
    await alice.session.quit();
    await flapping.close();
    await server.close();
  }
});

Deno.test("a server that cuts the line after each join: the give-up time counts from the first loss", async () => {
  const server = await startTestServer();
  const flapping = flappingServer(server.port);
  // The clock moves only by the waits between attempts: each connection lasts no time at all.
  let now = 1_000_000;
  const policy: ReconnectPolicy = {
    ...DEFAULT_RECONNECT,
    giveUpMs: 120_000,
    nameTakenGraceMs: 120_000,
    random: () => 0.5,
    now: () => now,
    wait: (ms) => Promise.resolve(now += ms).then(() => false),
    address: flapping.address,
  };
  const first = new HostileProxy(server.port);
  const alice = await joinClient(first.port, "alice", { reconnect: policy });
  try {
    await first.close();
    const end = await within(alice.session.closed, 60_000, "the session to give up");
    assert.equal(end.code, "gave-up");
    assert.ok(alice.log.of("reconnected").length >= 2, "it got back, and lost it again, meanwhile");
    const attempts = alice.log.of("reconnecting").map((event) => event.attempt);
    assert.deepEqual(
      attempts,
      attempts.map((_, i) => i + 1),
      "the attempts count on across losses",
    );
  } finally {
    await alice.session.quit();
    await flapping.close();
    await server.close();
  }
});
