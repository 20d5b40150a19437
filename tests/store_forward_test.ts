/**
 * Store and forward: the server holds every message it relays until the recipient's client
 * acknowledges it, so a message relayed into a connection that died unnoticed, or cut before the
 * acknowledgement came back, reaches its recipient on their next connection, exactly once; a
 * server restart in between keeps it; an acknowledged message is gone; the mailbox's bounds
 * hold for people online too.
 */
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { DEFAULT_RECONNECT, type ReconnectPolicy } from "../client/mod.ts";
import type { Config } from "../shared/config/mod.ts";
import { openSqliteStore } from "../server/store/sqlite.ts";
import { joinClient, startTestServer, withPeople } from "../testing/harness.ts";
import { nameKey } from "../shared/names.ts";
import type { Store } from "../server/store/mod.ts";
import { FreezableLink } from "./_link.ts";
import { waitUntil } from "./_raw.ts";

type Client = Awaited<ReturnType<typeof joinClient>>;

/** Quick retries, so a client whose link died is back soon after its keepalive noticed. */
const QUICK: ReconnectPolicy = {
  ...DEFAULT_RECONNECT,
  minDelayMs: 20,
  maxDelayMs: 200,
  nameTakenGraceMs: 0,
};

/**
 * A server keeping its state in `state`, on `port` (0: a free one), that would not notice a
 * dead link for ten minutes: only the client's keepalive does.
 */
function serverIn(state: string, port = 0, patch: (config: Config) => void = () => {}) {
  return startTestServer({
    patch: (config) => {
      config.server.state = state;
      config.server.port = port;
      config.limits.keepaliveMs = 300_000;
      config.limits.idleTimeoutMs = 600_000;
      patch(config);
    },
  });
}

/** Alice, straight to the server, and bob, through `link`, coming back straight when it dies. */
async function pair(port: number, link: FreezableLink): Promise<{ alice: Client; bob: Client }> {
  const direct = { hostname: "127.0.0.1", port };
  const alice = await joinClient(port, "alice", {
    reconnect: { ...QUICK, address: () => direct },
  });
  const bob = await joinClient(link.port, "bob", {
    keepaliveMs: 1000,
    reconnect: { ...QUICK, address: () => direct },
  });
  await alice.log.waitFor("joined", (event) => event.name === "bob");
  // The conversation is started before the link goes dead.
  await settle(alice, bob, "hello");
  return { alice, bob };
}

/**
 * Sends `marker` and waits for it and for bob's receipt of it: mail reaches a person in order,
 * so whatever was held for bob before it has arrived (a copy would have come before it). (Bob's
 * acknowledgement of it may still be on its way: see {@linkcode allAcknowledged}.)
 */
async function settle(alice: Client, bob: Client, marker: string): Promise<void> {
  await alice.session.send("bob", marker);
  const { id } = alice.log.of("sent").at(-1)!;
  await bob.log.waitFor("message", (event) => event.id === id);
  await alice.log.waitFor("delivered", (event) => event.id === id);
}

/** The server's store, opened a second time beside it (as another process would). */
async function peek<T>(state: string, look: (store: Store) => Promise<T>): Promise<T> {
  await using store = await openSqliteStore(state);
  return await look(store);
}

/** The message ids held for the person called `name`, oldest first. */
function heldFor(state: string, name: string): Promise<string[]> {
  return peek(state, async (store) => {
    const entry = await store.registry.lookup(nameKey(name));
    assert.ok(entry, `${name} is registered`);
    const items = await store.mailbox.pending(entry.fingerprint, 100);
    return items.map((item) => item.kind === "sealed" ? item.messageId : "notice");
  });
}

/**
 * Waits until the server holds nothing: every acknowledgement sent was taken (the clients do
 * not wait for the server to read theirs, so a server closed at once could miss the last).
 */
function allAcknowledged(state: string): Promise<void> {
  const empty = () => peek(state, async (store) => (await store.mailbox.stats()).items === 0);
  return waitUntil(empty, "every held item acknowledged");
}

interface Scene {
  alice: Client;
  bob: Client;
  link: FreezableLink;
  state: string;
  /** The server's port (the link's is `link.port`). */
  port: number;
  /** Stops the server and starts it again on the same port and state. */
  restart(): Promise<void>;
}

/**
 * Runs `test` with alice and bob on a server of their own (bob through a link that can die),
 * then checks that nothing is left held: every acknowledgement was taken.
 */
async function scene(
  test: (scene: Scene) => Promise<void>,
  patch: (config: Config) => void = () => {},
): Promise<void> {
  const state = await Deno.makeTempDir({ prefix: "reelay-state-" });
  let server = await serverIn(state, 0, patch);
  const port = server.port;
  const link = new FreezableLink(port);
  try {
    const { alice, bob } = await pair(port, link);
    // And bob's acknowledgement of "hello" taken: it may leave after his receipt (each leaves
    // after its own commit), so alice seeing "delivered" does not say the server has it.
    await allAcknowledged(state);
    const restart = async () => {
      await server.close();
      server = await serverIn(state, port, patch);
    };
    await test({ alice, bob, link, state, port, restart });
    await allAcknowledged(state);
    await alice.session.quit();
    await bob.session.quit();
  } finally {
    await link.close();
    await server.close();
    await Deno.remove(state, { recursive: true });
  }
}

/** Waits until bob has the message `id` and alice his receipt, and checks he was shown it once. */
async function arrivedOnce(alice: Client, bob: Client, id: string): Promise<string> {
  const got = await bob.log.waitFor("message", (event) => event.id === id);
  await alice.log.waitFor("delivered", (event) => event.id === id);
  await settle(alice, bob, "after");
  assert.equal(bob.log.of("message").filter((event) => event.id === id).length, 1);
  return got.text;
}

Deno.test("a message relayed into a link that died unnoticed arrives once the recipient is back", async () => {
  await scene(async ({ alice, bob, link }) => {
    // The link dies both ways without a close: the server relays into it, noticing nothing.
    link.freeze();
    await alice.session.send("bob", "into the dead link");
    const { id, to } = alice.log.of("sent").at(-1)!;
    assert.equal(to, "bob");
    assert.equal(alice.log.of("queued").length, 0, "bob was online: relayed, not queued");
    // Bob's keepalive notices, he comes back straight, and the server hands it over again.
    await bob.log.waitFor("reconnected");
    assert.equal(await arrivedOnce(alice, bob, id), "into the dead link");
  });
});

Deno.test("a message whose acknowledgement was lost is held, delivered again, and shown once", async () => {
  await scene(async ({ alice, bob, link, state }) => {
    // Bob still hears the server, but his acknowledgement and receipt go nowhere.
    link.freeze("to-server");
    await alice.session.send("bob", "ack lost");
    const id = alice.log.of("sent").at(-1)!.id;
    await bob.log.waitFor("message", (event) => event.id === id);
    // The server still holds it for bob, not acknowledged: the message, and nothing else.
    assert.deepEqual(await heldFor(state, "bob"), [id]);
    await bob.log.waitFor("reconnected");
    // Delivered again on the new connection, dropped by its id; the receipt, sent again, comes.
    assert.equal(await arrivedOnce(alice, bob, id), "ack lost");
  });
});

Deno.test("a receipt that had not left when the session ended leaves with the next one: delivered once", async () => {
  await scene(async ({ alice, bob, link, state, port }) => {
    // Bob takes the message and keeps it, but his receipt (and acknowledgement) go nowhere.
    link.freeze("to-server");
    await alice.session.send("bob", "owed a receipt");
    const id = alice.log.of("sent").at(-1)!.id;
    await bob.log.waitFor("message", (event) => event.id === id);
    await bob.session.quit(); // the session ends with the receipt not taken by the server
    assert.deepEqual(await heldFor(state, "bob"), [id], "not acknowledged either");
    assert.equal(alice.log.of("delivered").filter((event) => event.id === id).length, 0);
    // Bob's next session, from the same home, sends the receipt kept in his store.
    const again = await joinClient(port, "bob", { home: bob.home });
    try {
      await alice.log.waitFor("delivered", (event) => event.id === id);
      await settle(alice, again, "after");
      assert.equal(alice.log.of("delivered").filter((event) => event.id === id).length, 1);
      assert.equal(again.log.of("message").length, 1, "the held copy was dropped by its id");
    } finally {
      await again.session.quit();
    }
    // Taken, it is forgotten with bob's next commit (here the last, as he left).
    const file = new DatabaseSync(again.session.store.file);
    try {
      assert.equal(file.prepare("SELECT count(*) AS n FROM receipts_owed").get()?.n, 0);
    } finally {
      file.close();
    }
  });
});

Deno.test("a message relayed but not acknowledged survives a server restart", async () => {
  await scene(async ({ alice, bob, link, restart }) => {
    link.freeze();
    await alice.session.send("bob", "across the restart");
    const id = alice.log.of("sent").at(-1)!.id;
    await restart();
    await bob.log.waitFor("reconnected");
    assert.equal(await arrivedOnce(alice, bob, id), "across the restart");
  });
});

Deno.test("mail not acknowledged counts against the recipient's bound while they are online", async () => {
  await scene(async ({ alice, bob, link }) => {
    link.freeze();
    // "hello" was acknowledged; three more fill bob's bound while nothing comes back.
    for (const text of ["one", "two", "three"]) await alice.session.send("bob", text);
    assert.equal(alice.log.of("queued").length, 0);
    await assert.rejects(alice.session.send("bob", "four"), /The mailbox for "bob" is full/);
    // Back, bob takes the three, and his acknowledgements make room again.
    await bob.log.waitFor("reconnected");
    await bob.log.waitFor("message", (event) => event.text === "three");
    await settle(alice, bob, "room again");
    assert.deepEqual(
      bob.log.of("message").map((event) => event.text),
      ["hello", "one", "two", "three", "room again"],
    );
  }, (config) => config.mailbox.maxItemsPerRecipient = 3);
});

Deno.test("a link nobody dialled closes cleanly, so a scene that failed before its join still ends its server", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const link = new FreezableLink(listener.addr.port);
  try {
    await link.close();
    await assert.rejects(Deno.connect({ hostname: "127.0.0.1", port: link.port }));
  } finally {
    listener.close();
  }
});

Deno.test("one sender cannot fill the whole mailbox: mail to an offline puppet stops at the sender's share, chat between others goes on", async () => {
  await withPeople({
    people: ["puppet", "mallory", "alice", "bob"],
    patch: (config) => {
      config.mailbox.maxTotalBytes = 64 * 1024;
      config.mailbox.maxBytesPerSender = 16 * 1024;
    },
  }, async ({ people: { puppet, mallory, alice, bob } }) => {
    await mallory.session.send("puppet", "start"); // the conversation starts while it is online
    await puppet.log.waitFor("message");
    await puppet.session.quit(); // from now on, what mallory sends it is held
    let refusal: { code?: string; message?: string } | undefined;
    for (let i = 0; i < 64 && refusal === undefined; i++) {
      await mallory.session.send("puppet", "x".repeat(4000)).catch((error) => refusal = error);
    }
    assert.equal(refusal?.code, "sender-mailbox-full");
    assert.match(refusal?.message ?? "", /the most one sender may have held, 16384 bytes/);
    assert.equal((await mallory.log.waitFor("failed")).reason, "sender-mailbox-full");
    await alice.session.send("bob", "hi bob");
    await bob.log.waitFor("message", (event) => event.text === "hi bob");
  });
});
