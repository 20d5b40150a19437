/**
 * A message sealed for a recipient's key that changes while the send waits for its commit (the
 * recipient reconnects with a new identity key between the server's checks and the group commit
 * that holds the message) is refused to its sender as `recipient-key-changed`, as when the key
 * changed before the send: nothing is held for the old key to expire unread a week later, and
 * nothing reaches the new key. The window is held open through the server's store seam: the
 * sealed put waits at a gate until the new key is in the registry.
 */
import assert from "node:assert/strict";
import { Catalog, MediaService } from "../server/media/mod.ts";
import { ReelayServer } from "../server/mod.ts";
import type { Mailbox, Store } from "../server/store/mod.ts";
import { openSqliteStore } from "../server/store/sqlite.ts";
import { fingerprintHash, Identity, verifyAnnouncement } from "../shared/crypto/mod.ts";
import { silentLogger } from "../shared/log.ts";
import { nameKey } from "../shared/names.ts";
import type { Announcement } from "../shared/protocol/messages.ts";
import { testConfig, testServerKey } from "../testing/harness.ts";
import { type Json, RawClient, waitUntil } from "./_raw.ts";

/** A gate one sealed put waits at: `reached` once the server's checks passed and it called put. */
interface Gate {
  reached: Promise<void>;
  open(): void;
}

/** `inner`, whose next sealed put waits (before it is staged) at the gate `hold` returns. */
function gatedStore(inner: Store): { store: Store; hold(): Gate } {
  let armed:
    | { reached: PromiseWithResolvers<void>; opened: PromiseWithResolvers<void> }
    | undefined;
  const put: Mailbox["put"] = async (item, options) => {
    const gate = item.kind === "sealed" ? armed : undefined;
    if (gate) {
      armed = undefined;
      gate.reached.resolve();
      await gate.opened.promise;
    }
    return await inner.mailbox.put(item, options);
  };
  const mailbox = new Proxy(inner.mailbox, {
    get(target, property) {
      if (property === "put") return put;
      const value = Reflect.get(target, property, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  const store: Store = {
    mailbox,
    prekeys: inner.prekeys,
    registry: inner.registry,
    close: () => inner.close(),
    [Symbol.asyncDispose]: () => inner.close(),
  };
  return {
    store,
    hold() {
      const gate = {
        reached: Promise.withResolvers<void>(),
        opened: Promise.withResolvers<void>(),
      };
      armed = gate;
      return { reached: gate.reached.promise, open: () => gate.opened.resolve() };
    },
  };
}

interface Scene {
  port: number;
  store: Store;
  hold(): Gate;
}

/** A real server (real media service over an empty folder) whose store has the gate. */
async function withGatedServer(test: (scene: Scene) => Promise<void>): Promise<void> {
  const videos = await Deno.makeTempDir({ prefix: "reelay-keychange-" });
  const config = testConfig(videos);
  await using inner = await openSqliteStore(":memory:");
  const gated = gatedStore(inner);
  const catalog = await Catalog.open(videos, { ffprobePath: config.stream.ffprobe });
  const media = await MediaService.open(catalog, config, silentLogger);
  const server = ReelayServer.listen(config, {
    log: silentLogger,
    store: gated.store,
    serverKey: await testServerKey(),
    verifyAnnouncement: async (announcement: Announcement) => {
      await verifyAnnouncement(announcement);
      return true;
    },
    createViewer: (framed) => media.viewer(framed),
    onClose: async () => {
      await media.close();
      await catalog.close();
    },
  });
  try {
    await test({ port: server.port, store: inner, hold: gated.hold });
  } finally {
    await server.close();
    await Deno.remove(videos, { recursive: true });
  }
}

async function joined(port: number, name: string, identity: Identity): Promise<RawClient> {
  const client = await RawClient.connect(port);
  const answer = await client.join(name, identity);
  assert.equal(answer.type, "welcome", JSON.stringify(answer));
  return client;
}

/** Waits until the registry holds `name` with `fingerprint` (a join is written after its welcome). */
function registered(store: Store, name: string, fingerprint: string): Promise<void> {
  return waitUntil(
    async () => (await store.registry.lookup(nameKey(name)))?.fingerprint === fingerprint,
    `the registry to hold ${name} with ${fingerprint.slice(0, 16)}`,
  );
}

/** What the server answered to the send `ref`. */
function answerTo(client: RawClient, ref: number): Promise<Json> {
  return client.waitFor((message) => message.ref === ref, 60_000, `the answer to send ${ref}`);
}

/** Everything the server says to `client` before its answer to a ping sent now has come. */
async function settledMessages(client: RawClient): Promise<Json[]> {
  const before = client.messages.filter((message) => message.type === "pong").length;
  await client.send({ type: "ping" });
  await client.waitFor(() =>
    client.messages.filter((message) => message.type === "pong").length > before
  );
  return client.messages;
}

/**
 * Bob's key changes while alice's message sealed for his first key waits for its commit: alice
 * must be answered `recipient-key-changed`, bob's new key gets nothing, and nothing is held.
 * `away` says whether bob's first connection ended before alice sent (mail `queued`) or after
 * (mail `relayed`, on its way to a connection that then went).
 */
async function keyChangesDuringSend(away: boolean): Promise<void> {
  // Keys first: a connection must join within the join timeout.
  const [aliceKeys, firstKeys, secondKeys] = await Promise.all([
    Identity.generate(),
    Identity.generate(),
    Identity.generate(),
  ]);
  const first = await fingerprintHash(firstKeys.public);
  const second = await fingerprintHash(secondKeys.public);
  await withGatedServer(async ({ port, store, hold }) => {
    const alice = await joined(port, "alice", aliceKeys);
    let bob = await joined(port, "bob", firstKeys);
    try {
      await registered(store, "bob", first);
      const leave = async () => {
        await bob.close();
        await alice.waitFor((message) => message.type === "left" && message.name === "bob");
      };
      if (away) await leave();
      const gate = hold();
      await alice.send({
        type: "send",
        ref: 1,
        to: "bob",
        toKey: first,
        id: "m1",
        envelope: "sealed for bob's first key",
      });
      // Every check passed (the key was bob's then): the message waits for its commit.
      await gate.reached;
      if (!away) await leave();
      bob = await joined(port, "bob", secondKeys);
      await registered(store, "bob", second);
      gate.open();

      const answer = await answerTo(alice, 1);
      assert.deepEqual([answer.type, answer.code], ["error", "recipient-key-changed"]);
      // Nothing reached bob's new key, nothing is held for anyone, and nothing would end later
      // (a message held for the old key would end `expired` after the time to live).
      const toBob = await settledMessages(bob);
      assert.deepEqual(toBob.filter((message) => message.type === "deliver"), []);
      assert.deepEqual(await store.mailbox.stats(), { items: 0, bytes: 0, recipients: 0 });
      assert.deepEqual(await store.mailbox.expire(Date.now() + 8 * 24 * 60 * 60 * 1000), []);

      // The next message, sealed for the new key, goes as usual.
      await alice.send({ type: "send", ref: 2, to: "bob", toKey: second, id: "m2", envelope: "x" });
      assert.equal((await answerTo(alice, 2)).type, "relayed");
      const delivered = await bob.waitFor((message) => message.type === "deliver");
      assert.equal(delivered.id, "m2");
    } finally {
      await bob.close();
      await alice.close();
    }
  });
}

Deno.test("a key change while a queued send waits for its commit is told recipient-key-changed", async () => {
  await keyChangesDuringSend(true);
});

Deno.test("a key change while a relayed send waits for its commit is told recipient-key-changed", async () => {
  await keyChangesDuringSend(false);
});
