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
import { joinClient, type JoinedClient, startTestServer } from "../testing/harness.ts";
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

/**
 * Alice (home `home`) leaves while bob's message is on its way into her store, which must stay
 * open until it is in; resolves once she left, with what she authenticated and whether anything
 * used her store after it closed.
 */
async function leaveWhileKeeping(
  port: number,
  home: string,
  bob: JoinedClient,
): Promise<{ opened: AuthenticatedServer; late: string[] }> {
  const { identity } = await loadOrCreateIdentity(home);
  const leaving = deferred<{ quit: Promise<void> }>();
  let watchedLate: string[] = [];
  let opened: AuthenticatedServer | undefined;
  const onHistory = async () => {
    leaving.resolve({ quit: alice.quit() });
    await alice.closed;
  };
  const alice: ClientSession = await ClientSession.connect({
    hostname: "127.0.0.1",
    port,
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
  try {
    await bob.log.waitFor("joined", (event) => event.name === "alice");
    await bob.session.send("alice", "just before leaving");
    const { quit } = await within(leaving.promise, 60_000, "the message to reach alice's store");
    await within(quit, 60_000, "alice to leave");
  } finally {
    await alice.quit();
  }
  return { opened: opened!, late: watchedLate };
}

Deno.test("leaving while a message is being kept: the store closes after it, the message is kept", async () => {
  const server = await startTestServer();
  const home = await Deno.makeTempDir({ prefix: "reelay-home-alice-" });
  const bob = await joinClient(server.port, "bob");
  let opened: AuthenticatedServer;
  try {
    const left = await leaveWhileKeeping(server.port, home, bob);
    opened = left.opened;
    assert.deepEqual(left.late, [], "nothing used the store after it closed");
  } finally {
    await bob.session.quit();
    await server.close();
  }
  // Opened again, the store has the message that came as alice left.
  const store = await openServerStore({
    home,
    identity: (await loadOrCreateIdentity(home)).identity,
    server: opened,
  });
  try {
    const kept = await store.history("bob", 10);
    assert.deepEqual(kept.map((entry) => entry.text), ["just before leaving"]);
  } finally {
    store.close();
    await Deno.remove(home, { recursive: true });
  }
});

Deno.test("leaving while a message is being kept: its receipt, owed, leaves with the next session", async () => {
  const server = await startTestServer();
  const home = await Deno.makeTempDir({ prefix: "reelay-home-alice-" });
  const bob = await joinClient(server.port, "bob");
  try {
    await leaveWhileKeeping(server.port, home, bob);
    const sent = bob.log.of("sent").at(-1)!.id;
    assert.equal(bob.log.of("delivered").length, 0, "no receipt could leave");
    const again = await joinClient(server.port, "alice", { home });
    try {
      await bob.log.waitFor("delivered", (event) => event.id === sent);
      await bob.session.send("alice", "after");
      const after = bob.log.of("sent").at(-1)!.id;
      await bob.log.waitFor("delivered", (event) => event.id === after);
      assert.deepEqual(bob.log.of("delivered").map((event) => event.id), [sent, after]);
      assert.deepEqual(again.log.of("message").map((event) => event.text), ["after"]);
    } finally {
      await again.session.quit();
    }
  } finally {
    await bob.session.quit();
    await server.close();
    await Deno.remove(home, { recursive: true });
  }
});
