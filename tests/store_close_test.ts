/**
 * The session closes its store last (review B2): a message being handled when the person leaves
 * is still kept, and nothing writes to a closed store.
 */
import assert from "node:assert/strict";
import { ClientSession, knownServers } from "../client/mod.ts";
import { loadOrCreateIdentity } from "../client/keystore.ts";
import { type AuthenticatedServer, openServerStore } from "../client/server_store.ts";
import type { ClientStore } from "../client/store/mod.ts";
import { deferred } from "../shared/async.ts";
import { joinClient, startTestServer } from "../testing/harness.ts";
import { within } from "./_deadline.ts";

/** The store's asynchronous first steps of keeping a received message in the history. */
const KEEPING = new Set(["sealHistory", "addHistory"]);

/**
 * `store` with every call after `close()` recorded in `late`, and `onHistory` run (and awaited)
 * before the first message is kept (`KEEPING`).
 */
function watchedStore(store: ClientStore, onHistory: () => Promise<void>) {
  const late: string[] = [];
  let closed = false;
  let first = true;
  const watched = new Proxy(store, {
    set: (target, property, value) => Reflect.set(target, property, value, target),
    get(target, property) {
      const value = Reflect.get(target, property, target);
      if (typeof value !== "function") return value;
      const call = (args: unknown[]) => {
        if (closed) late.push(String(property));
        if (property === "close") closed = true;
        return value.apply(target, args);
      };
      return (...args: unknown[]) => {
        if (!KEEPING.has(String(property)) || !first) return call(args);
        first = false;
        return onHistory().then(() => call(args));
      };
    },
  });
  return { watched, late };
}

Deno.test("leaving while a message is being kept: the store closes after it, the message is kept", async () => {
  const server = await startTestServer();
  const home = await Deno.makeTempDir({ prefix: "reelay-home-alice-" });
  const { identity } = await loadOrCreateIdentity(home);
  const leaving = deferred<{ quit: Promise<void> }>();
  let watchedLate: string[] = [];
  let opened: AuthenticatedServer | undefined;
  // The person leaves while the message is on its way into the store: the store must stay open
  // until it is in.
  const onHistory = async () => {
    leaving.resolve({ quit: alice.quit() });
    await alice.closed;
  };
  const alice: ClientSession = await ClientSession.connect({
    hostname: "127.0.0.1",
    port: server.port,
    name: "alice",
    identity,
    serverPins: knownServers(home),
    openStore: async (authenticated) => {
      opened = authenticated;
      const store = await openServerStore({ home, identity, server: authenticated });
      const { watched, late } = watchedStore(store, onHistory);
      watchedLate = late;
      return watched;
    },
  });
  const bob = await joinClient(server.port, "bob");
  try {
    await bob.session.send("alice", "just before leaving");
    const { quit } = await within(leaving.promise, 60_000, "the message to reach alice's store");
    await within(quit, 60_000, "alice to leave");
    assert.deepEqual(watchedLate, [], "nothing used the store after it closed");
  } finally {
    await alice.quit();
    await bob.session.quit();
    await server.close();
  }
  // Opened again, the store has the message that came as alice left.
  const store = await openServerStore({ home, identity, server: opened! });
  try {
    const kept = await store.history("bob", 10);
    assert.deepEqual(kept.map((entry) => entry.text), ["just before leaving"]);
  } finally {
    store.close();
    await Deno.remove(home, { recursive: true });
  }
});
