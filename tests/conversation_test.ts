/**
 * Lasting conversations end to end, over real TCP with a real server: broadcast of sealed
 * envelopes, offline delivery across a server restart, receipts a relay cannot forge, the
 * ratchet moving on, conversations surviving restarts, and the thief who takes the files later.
 */
import assert from "node:assert/strict";
import { loadOrCreateIdentity } from "../client/keystore.ts";
import { serverStoreId } from "../client/server_store.ts";
import { ClientStore } from "../client/store/mod.ts";
import { fromBase64 } from "../shared/bytes.ts";
import {
  ConversationError,
  decodeInitialMessage,
  Identity,
  newEpoch,
  PrekeyStore,
  Ratchet,
  respond,
  signAnnouncement,
  SIGNED_PREKEY_ROTATION_MS,
} from "../shared/crypto/mod.ts";
import type { Config } from "../shared/config/mod.ts";
import {
  joinClient,
  type JoinedClient,
  startTestServer,
  testServerKey,
  withPeople,
  withProxy,
} from "../testing/harness.ts";
import { heldOneTimePrekeys } from "./_thief.ts";
import { HostileProxy, type Json } from "./_proxy.ts";
import { openSqliteStore } from "../server/store/sqlite.ts";
import { waitUntil } from "./_raw.ts";
import { within } from "./_deadline.ts";

type Client = JoinedClient;

function withTrio(
  test: (people: { alice: Client; bob: Client; carol: Client; port: number }) => Promise<void>,
  patch: (config: Config) => void = () => {},
): Promise<void> {
  return withPeople(
    { people: ["alice", "bob", "carol"], patch },
    ({ server, people }) => test({ ...people, port: server.port }),
  );
}

/** Alice and bob talk; returns once alice saw bob's receipt of her last message. */
async function talk(alice: Client, bob: Client, texts: string[]): Promise<void> {
  for (const text of texts) {
    await alice.session.send("bob", text);
    const id = alice.log.of("sent").at(-1)!.id;
    await bob.log.waitFor("message", (event) => event.id === id);
    await alice.log.waitFor("delivered", (event) => event.id === id);
  }
}

/** Sends a marker alice -> carol and waits for it: everything alice caused before has reached carol. */
async function settle(alice: Client, carol: Client, marker: string): Promise<void> {
  await alice.session.send("carol", marker);
  await carol.log.waitFor("message", (event) => event.text === marker);
}

Deno.test("broadcast on: a third client gets every sealed message between two others and opens none", async () => {
  await withTrio(async ({ alice, bob, carol }) => {
    await talk(alice, bob, ["one", "two"]);
    await bob.session.send("alice", "three");
    await alice.log.waitFor("message", (event) => event.text === "three");
    await bob.log.waitFor("delivered");
    await settle(alice, carol, "marker");
    const sealed = carol.log.of("sealed");
    const between = sealed.filter((event) => [event.from, event.to].sort().join() === "alice,bob");
    // Three messages and three receipts, each sealed.
    assert.equal(between.length, 6, JSON.stringify(sealed.map((event) => [event.from, event.to])));
    for (const event of between) {
      assert.equal(event.bytes, fromBase64(event.envelope)!.length);
      const text = new TextDecoder().decode(fromBase64(event.envelope)!);
      for (const secret of ["one", "two", "three"]) assert.ok(!text.includes(secret));
    }
    assert.deepEqual(carol.log.of("message").map((event) => event.text), ["marker"]);
  }, (config) => config.chat.broadcast = true);
});

Deno.test("broadcast off: a third client gets nothing of what two others say", async () => {
  await withTrio(async ({ alice, bob, carol }) => {
    await talk(alice, bob, ["one"]);
    await settle(alice, carol, "marker");
    assert.deepEqual(carol.log.of("sealed"), []);
  }, (config) => config.chat.broadcast = false);
});

Deno.test("messages to someone offline arrive in order after a server restart", async () => {
  const state = await Deno.makeTempDir({ prefix: "reelay-state-" });
  const patchFor = (port: number) => (config: Config) => {
    config.server.state = state;
    config.server.port = port;
  };
  let server = await startTestServer({ patch: patchFor(0) });
  const port = server.port;
  try {
    const alice = await joinClient(port, "alice");
    const bob = await joinClient(port, "bob");
    await alice.log.waitFor("joined", (event) => event.name === "bob");
    await talk(alice, bob, ["hello"]);
    await bob.session.quit();
    await alice.log.waitFor("left", (event) => event.name === "bob");
    const texts = ["first", "second", "third"];
    for (const text of texts) await alice.session.send("bob", text);
    assert.equal(alice.log.of("queued").length, 3);
    await alice.session.quit();
    await server.close();
    server = await startTestServer({ patch: patchFor(port) });
    const again = await joinClient(port, "alice", { home: alice.home });
    const back = await joinClient(port, "bob", { home: bob.home });
    const ids = alice.log.of("queued").map((event) => event.id);
    await back.log.waitFor("message", (event) => event.id === ids[2]);
    assert.deepEqual(back.log.of("message").map((event) => event.text), texts);
    // The receipts come back to the sender, end to end.
    for (const id of ids) await again.log.waitFor("delivered", (event) => event.id === id);
    // Acknowledged mail is deleted: the messages, and the receipts held for alice until hers.
    // The clients do not wait for the server to read their acks, so the file is read beside
    // the running server until they are in.
    await waitUntil(async () => {
      await using store = await openSqliteStore(state);
      return (await store.mailbox.stats()).items === 0;
    }, "every held item acknowledged");
    await again.session.quit();
    await back.session.quit();
    await server.close();
  } finally {
    await server.close();
    await Deno.remove(state, { recursive: true });
  }
});

Deno.test("a relay cannot forge a receipt, nor replay an old one", async () => {
  await withProxy({
    people: ["alice", "bob"],
    behind: ["alice"],
    proxy: (port) => new HostileProxy(port),
  }, async ({ proxy, people: { alice, bob } }) => {
    const fromBob: Json[] = [];
    let hostile = false;
    proxy.rewrite = (direction, message) => {
      if (direction !== "to-client" || message.type !== "deliver" || message.from !== "bob") {
        return [message];
      }
      fromBob.push(message);
      if (!hostile) return [message];
      const replay = { ...fromBob[0], id: "replayed-receipt" };
      const envelope = new Uint8Array(message.envelope as Uint8Array).fill(7, 42); // past the header
      const forged = { ...message, id: "forged-receipt", envelope };
      return [replay, forged]; // bob's real receipt is dropped
    };
    await talk(alice, bob, ["one"]);
    hostile = true;
    await alice.session.send("bob", "two");
    const second = alice.log.of("sent")[1].id;
    await bob.log.waitFor("message", (event) => event.id === second);
    const errors = [
      await alice.log.waitFor("error", (event) => event.message.includes("Rejected")),
      await alice.log.waitFor("error", (event) => event.code === "not-authentic"),
    ];
    assert.ok(errors.every((error) => error.code !== "delivered"));
    assert.deepEqual(
      alice.log.of("delivered").map((event) => event.id),
      [alice.log.of("sent")[0].id],
    );
  });
});

Deno.test("a signed refusal that overtakes the server's answer: failed is told, and no sent after it", async () => {
  await withProxy({
    people: ["alice", "bob"],
    behind: ["alice"],
    proxy: (port) => new HostileProxy(port),
  }, async ({ proxy, people: { alice, bob } }) => {
    await talk(alice, bob, ["one"]);
    // The hostile server spoils alice's next envelope (bob refuses it, signed) and holds its
    // answer to her `send` until bob's refusal has gone to her: a gate, not a race.
    let spoil = true;
    let held: Json | undefined;
    proxy.rewrite = (direction, message) => {
      if (direction === "to-server" && message.type === "send" && spoil) {
        spoil = false;
        const envelope = new Uint8Array(message.envelope as Uint8Array);
        envelope[envelope.length - 3] ^= 1; // in the authentication tag
        return [{ ...message, envelope }];
      }
      if (direction === "to-client" && message.type === "relayed" && !spoil && !held) {
        held = message;
        return [];
      }
      if (direction === "to-client" && message.type === "refused" && held) return [message, held];
      return [message];
    };
    // Resolves once the late answer was committed and told (or not).
    await within(alice.session.send("bob", "spoiled"), 60_000, "the late answer to the send");
    const failed = await alice.log.waitFor("failed");
    const about = alice.log.events.filter((event) => "id" in event && event.id === failed.id);
    assert.deepEqual(about.map((event) => event.event), ["failed"], "as the history has it");
    const kept = await alice.session.store.history("bob", 10);
    assert.equal(kept.find((entry) => entry.id === failed.id)?.status, "failed");
  });
});

Deno.test("the server's unsigned failed cannot undo sent or delivered in the history; it fails a held one", async () => {
  await withProxy({
    people: ["alice", "bob", "carol"],
    behind: ["alice"],
    proxy: (port) => new HostileProxy(port),
  }, async ({ proxy, people: { alice, bob, carol } }) => {
    let dropFromBob = false;
    let lies: Json[] = [];
    proxy.rewrite = (direction, message) => {
      if (direction !== "to-client" || message.type !== "deliver") return [message];
      if (message.from === "bob" && dropFromBob) return []; // bob's receipts never arrive
      // Carol's messages carry the lies in front of them, so they are handled before hers.
      if (message.from !== "carol") return [message];
      const told = lies;
      lies = [];
      return [...told, message];
    };
    const lie = (id: string): Json => ({ type: "failed", to: "bob", id, reason: "expired" });
    const said = async (text: string) => {
      await carol.session.send("alice", text);
      await alice.log.waitFor("message", (event) => event.text === text);
    };
    const status = async () =>
      Object.fromEntries(
        (await alice.session.store.history("bob", 10)).map((entry) => [entry.text, entry.status]),
      );

    await talk(alice, bob, ["delivered one"]);
    dropFromBob = true;
    await alice.session.send("bob", "sent two");
    await bob.log.waitFor("message", (event) => event.text === "sent two");
    const [one, two] = alice.log.of("sent").map((event) => event.id);
    lies = [lie(one), lie(two)];
    await said("first marker");
    assert.equal(alice.log.of("failed").length, 2, "the server's word is reported");
    assert.deepEqual(await status(), { "delivered one": "delivered", "sent two": "sent" });

    await bob.session.quit();
    await alice.log.waitFor("left", (event) => event.name === "bob");
    await alice.session.send("bob", "queued three");
    const three = (await alice.log.waitFor("queued")).id;
    lies = [lie(three)];
    await said("second marker");
    assert.deepEqual(await status(), {
      "delivered one": "delivered",
      "sent two": "sent",
      "queued three": "failed",
    });
  });
});

Deno.test("the ratchet's keys change with every message and every change of direction", async () => {
  await withTrio(async ({ alice, bob }) => {
    const chains = new Set<string>();
    const ratchetKeys = new Set<string>();
    for (const text of ["a", "b", "c"]) {
      await talk(alice, bob, [text]);
      const state = (await alice.session.ratchetState("bob"))!;
      chains.add(state.sendingChain!);
      ratchetKeys.add(state.sendingRatchetKey);
    }
    // Each message used a new chain key; each receipt changed direction, so each of alice's
    // messages went out under a new ratchet key pair.
    assert.equal(chains.size, 3);
    assert.equal(ratchetKeys.size, 3);
    const bobState = (await bob.session.ratchetState("alice"))!;
    assert.ok(!ratchetKeys.has(bobState.sendingRatchetKey));
    assert.ok(bobState.sendingChain !== null && !chains.has(bobState.sendingChain));
  });
});

Deno.test("a conversation continues after both clients restart, with no new agreement", async () => {
  await withTrio(async ({ alice, bob, carol, port }) => {
    await talk(alice, bob, ["before"]);
    await alice.session.quit();
    await bob.session.quit();
    const alice2 = await joinClient(port, "alice", { home: alice.home });
    const bob2 = await joinClient(port, "bob", { home: bob.home });
    await alice2.log.waitFor("joined", (event) => event.name === "bob");
    const seen = carol.log.of("sealed").length;
    await alice2.session.send("bob", "after");
    await bob2.log.waitFor("message", (event) => event.text === "after");
    await settle(alice2, carol, "marker");
    const sealed = carol.log.of("sealed").slice(seen).find((event) => event.from === "alice");
    assert.equal(
      fromBase64(sealed!.envelope)![0],
      1,
      "a ratchet message, not a new initial message",
    );
    assert.equal(bob2.log.of("key-changed").length, 0);
    await alice2.session.quit();
    await bob2.session.quit();
  }, (config) => config.chat.broadcast = true);
});

Deno.test("safety numbers agree only when both hold the real keys", async () => {
  const server = await startTestServer();
  const proxy = new HostileProxy(server.port);
  try {
    const mallory = await Identity.generate();
    const fake = await signAnnouncement(mallory, "bob", newEpoch());
    proxy.rewrite = (direction, message) => {
      if (direction !== "to-client") return [message];
      if (message.type === "joined") return [{ ...message, peer: fake }];
      return [message];
    };
    const fooled = await joinClient(proxy.port, "alice");
    const bob = await joinClient(server.port, "bob");
    await fooled.log.waitFor("joined", (event) => event.name === "bob");
    const real = await bob.session.verify("alice");
    const shown = await fooled.session.verify("bob");
    assert.notEqual(shown.code, real.code);
    proxy.rewrite = (_direction, message) => [message];
    await fooled.session.quit();
    const honest = await joinClient(server.port, "alice", { home: fooled.home });
    assert.equal((await honest.session.verify("bob")).code, real.code);
    await honest.session.quit();
    await bob.session.quit();
  } finally {
    await proxy.close();
    await server.close();
  }
});

Deno.test("the thief: recorded messages cannot be opened with the recipient's files taken later", async () => {
  await withTrio(async ({ alice, bob, carol }) => {
    await talk(alice, bob, ["the vault code is 1234", "and the door is red"]);
    await bob.session.send("alice", "noted");
    await alice.log.waitFor("message", (event) => event.text === "noted");
    await settle(alice, carol, "marker");
    // What the server (or anyone, with broadcast on) recorded for bob.
    const recorded = carol.log.of("sealed").filter((event) => event.to === "bob")
      .map((event) => fromBase64(event.envelope)!);
    assert.ok(recorded.length >= 2);
    await bob.session.quit();
    // Afterwards the thief takes bob's identity and every file of his store.
    const { identity } = await loadOrCreateIdentity(bob.home);
    const store = await ClientStore.open({
      home: bob.home,
      server: serverStoreId((await testServerKey()).fingerprint),
      identity,
    });
    const stolen = { prekeys: store.prekeys()!, conversation: store.conversation("alice")! };
    store.close();
    let opened = 0;
    for (const envelope of recorded) {
      const ratchet = await Ratchet.fromJSON(stolen.conversation.ratchet);
      const body = envelope.slice(1);
      try {
        if (envelope[0] === 2) {
          const { init, message } = decodeInitialMessage(body);
          await respond({
            identity,
            name: "bob",
            prekeys: PrekeyStore.fromJSON(stolen.prekeys),
            peerName: "alice",
            peerIdentity: (await loadOrCreateIdentity(alice.home)).identity.public,
            init,
            message,
          });
        } else {
          await ratchet.decrypt(body);
        }
        opened++;
      } catch (error) {
        assert.ok(error instanceof ConversationError, String(error));
      }
    }
    assert.equal(opened, 0);
  }, (config) => config.chat.broadcast = true);
});

Deno.test("a client replaces a week-old signed prekey on joining; mail sent against it still opens", async () => {
  const server = await startTestServer();
  // One proxy per client (a proxy forwards one connection), each noting the bundles it hands out.
  const signedIds: unknown[] = [];
  const bobsOneTimeIds: number[] = [];
  const noteBundles = (direction: string, message: Json) => {
    if (direction === "to-client" && message.type === "bundle") {
      const bundle = message.bundle as Json;
      signedIds.push((bundle.signedPrekey as Json).id);
      if (signedIds.length === 1) {
        bobsOneTimeIds.push(
          (bundle.pqPrekey as Json).id as number,
          (bundle.oneTimePrekey as Json).id as number,
        );
      }
    }
    return [message];
  };
  const proxies = [
    new HostileProxy(server.port, noteBundles),
    new HostileProxy(server.port, noteBundles),
  ];
  const weekLater = () => Date.now() + SIGNED_PREKEY_ROTATION_MS;
  try {
    const alice = await joinClient(server.port, "alice");
    const bob = await joinClient(proxies[0].port, "bob");
    await bob.session.verify("alice"); // pins alice, so bob may write to her offline
    await alice.session.quit();
    await bob.log.waitFor("left", (event) => event.name === "alice");
    await bob.session.send("alice", "held for a week");
    await bob.log.waitFor("queued");

    const later = await joinClient(server.port, "alice", { home: alice.home, now: weekLater });
    await later.log.waitFor("message", (event) => event.text === "held for a week", 60_000);
    // Opening it (at join, while the prekeys were rotated and published) erased the one-time
    // keys bob's bundle named, for good: no copy of the prekeys saved them back.
    const held = heldOneTimePrekeys(later.session.store.file);
    for (const id of bobsOneTimeIds) assert.ok(!held.includes(id), `one-time prekey ${id} erased`);
    const carol = await joinClient(proxies[1].port, "carol");
    await carol.session.send("alice", "against the new key");
    await later.log.waitFor("message", (event) => event.text === "against the new key", 60_000);
    assert.equal(signedIds.length, 2);
    assert.notEqual(signedIds[0], signedIds[1], "carol got the signed prekey made on rejoining");
    for (const client of [later, bob, carol]) await client.session.quit();
  } finally {
    for (const proxy of proxies) await proxy.close();
    await server.close();
  }
});

Deno.test("held mail that expires is reported failed to its sender, online or back later", async () => {
  const server = await startTestServer();
  const ttl = 7 * 24 * 3600 * 1000; // the default [mailbox] ttl_ms
  const carol = await joinClient(server.port, "carol"); // sees who the server says left
  try {
    const alice = await joinClient(server.port, "alice");
    const bob = await joinClient(server.port, "bob");
    await talk(alice, bob, ["hello"]);
    await bob.session.quit();
    await alice.log.waitFor("left", (event) => event.name === "bob");
    await alice.session.send("bob", "while alice is online");
    const first = await alice.log.waitFor("queued");
    assert.equal(await server.server.sweepMail(Date.now() + ttl / 2), 0, "not yet expired");
    assert.equal(await server.server.sweepMail(Date.now() + ttl + 1000), 1);
    const told = await alice.log.waitFor("failed", (event) => event.id === first.id);
    assert.equal(told.reason, "expired");

    // The sender is offline when it expires: the notice waits for her.
    await alice.session.send("bob", "while alice is away");
    const second = await alice.log.waitFor("queued", (event) => event.id !== first.id);
    await alice.session.quit();
    await carol.log.waitFor("left", (event) => event.name === "alice");
    assert.equal(await server.server.sweepMail(Date.now() + ttl + 1000), 1);
    const back = await joinClient(server.port, "alice", { home: alice.home });
    const later = await back.log.waitFor("failed", (event) => event.id === second.id);
    assert.equal(later.reason, "expired");
    // Bob, back at last, gets neither.
    const bobAgain = await joinClient(server.port, "bob", { home: bob.home });
    await talk(back, bobAgain, ["still there?"]);
    assert.deepEqual(
      bobAgain.log.of("message").map((event) => event.text),
      ["still there?"],
    );
    await back.session.quit();
    await bobAgain.session.quit();
  } finally {
    await carol.session.quit();
    await server.close();
  }
});
