/**
 * The server as an attacker: a hostile relay between the server and one client changes,
 * repeats, reorders and redirects sealed messages. Every trick must be caught by the client.
 */
import assert from "node:assert/strict";
import { HostileProxy, type Json } from "./_proxy.ts";
import {
  joinClient,
  type JoinedClient,
  startTestServer,
  withPeople,
  withProxy,
} from "../testing/harness.ts";
import { Identity, newEpoch, signAnnouncement } from "../shared/crypto/identity.ts";

function flipBit(envelope: Uint8Array, bit: number): Uint8Array {
  const bytes = envelope.slice();
  bytes[Math.floor(bit / 8) % bytes.length] ^= 1 << (bit % 8);
  return bytes;
}

/** Alice straight to the server, bob behind a hostile proxy. */
function withBobBehindProxy(
  test: (parts: { proxy: HostileProxy; alice: JoinedClient; bob: JoinedClient }) => Promise<void>,
): Promise<void> {
  return withProxy(
    { people: ["alice", "bob"], behind: ["bob"], proxy: (port) => new HostileProxy(port) },
    ({ proxy, people }) => test({ proxy, ...people }),
  );
}

Deno.test("a tampered envelope is rejected, later messages still arrive", async () => {
  await withBobBehindProxy(async ({ proxy, alice, bob }) => {
    let tamper = true;
    proxy.rewrite = (direction, message) => {
      if (direction === "to-client" && message.type === "deliver" && tamper) {
        tamper = false;
        return [{ ...message, envelope: flipBit(message.envelope as Uint8Array, 900) }];
      }
      return [message];
    };
    await alice.session.send("bob", "first");
    const error = await bob.log.waitFor("error");
    assert.match(error.message, /Rejected a message/);
    await alice.session.send("bob", "second");
    const message = await bob.log.waitFor("message");
    assert.equal(message.text, "second");
    assert.deepEqual(bob.log.of("message").map((event) => event.text), ["second"]);
  });
});

Deno.test("a replayed envelope is rejected by the ratchet, even under a new message id", async () => {
  await withBobBehindProxy(async ({ proxy, alice, bob }) => {
    proxy.rewrite = (direction, message) =>
      direction === "to-client" && message.type === "deliver"
        ? [message, { ...message, id: `${message.id}-again` }]
        : [message];
    await alice.session.send("bob", "once");
    const error = await bob.log.waitFor("error");
    assert.equal(error.code, "replayed");
    assert.match(error.message, /already read/, "refused by the ratchet, not by the id");
    assert.deepEqual(bob.log.of("message").map((event) => event.text), ["once"]);
  });
});

Deno.test("a redelivered envelope (same message id) is dropped once seen, without a word", async () => {
  await withBobBehindProxy(async ({ proxy, alice, bob }) => {
    proxy.rewrite = (direction, message) =>
      direction === "to-client" && message.type === "deliver" ? [message, message] : [message];
    await alice.session.send("bob", "once");
    await bob.log.waitFor("message", (event) => event.text === "once");
    // A message after the copy shows the copy was handled (in order) before it.
    proxy.rewrite = (_direction, message) => [message];
    await alice.session.send("bob", "next");
    await bob.log.waitFor("message", (event) => event.text === "next");
    assert.deepEqual(bob.log.of("message").map((event) => event.text), ["once", "next"]);
    // A redelivery is the at-least-once mailbox (or a send repeated after a reconnect) doing its
    // job: no error for the person. The ratchet would refuse it as "already read" otherwise.
    assert.deepEqual(bob.log.of("error"), []);
  });
});

Deno.test("reordered envelopes: the late one is rejected and the gap reported", async () => {
  await withBobBehindProxy(async ({ proxy, alice, bob }) => {
    const held: Json[] = [];
    proxy.rewrite = (direction, message) => {
      if (direction !== "to-client" || message.type !== "deliver") return [message];
      held.push(message);
      // Let the session's first message through, then swap the next two.
      if (held.length === 1) return [message];
      if (held.length === 3) return [held[2], held[1]];
      return [];
    };
    await alice.session.send("bob", "one");
    await alice.session.send("bob", "two");
    await alice.session.send("bob", "three");
    const error = await bob.log.waitFor("error");
    assert.equal(error.code, "late");
    const texts = bob.log.of("message").map((event) => [event.text, event.missing]);
    assert.deepEqual(texts, [["one", 0], ["three", 1]]);
  });
});

Deno.test("an envelope claimed to come from someone else is rejected", async () => {
  await withProxy({
    people: ["alice", "carol", "bob"],
    behind: ["bob"],
    proxy: (port) => new HostileProxy(port),
  }, async ({ proxy, people: { alice, bob } }) => {
    proxy.rewrite = (direction, message) =>
      direction === "to-client" && message.type === "deliver"
        ? [{ ...message, from: "carol" }]
        : [message];
    await alice.session.send("bob", "from alice");
    const error = await bob.log.waitFor("error");
    assert.equal(error.code, "wrong-peer");
    assert.equal(bob.log.of("message").length, 0);
    // A message that did not open is no interaction: the server's claim pinned nothing.
    assert.equal(bob.session.store.pinned("carol"), undefined, "carol's key is not pinned");
  });
});

Deno.test("an envelope redirected to another person is rejected by them", async () => {
  await withProxy({
    people: ["carol", "bob", "alice"],
    behind: ["alice"],
    proxy: (port) => new HostileProxy(port),
  }, async ({ proxy, people: { alice, bob, carol } }) => {
    proxy.rewrite = (direction, message) =>
      direction === "to-server" && message.type === "send"
        ? [{ ...message, to: "carol" }]
        : [message];
    // The server itself refuses: the message was sealed for bob's key, not carol's.
    await assert.rejects(alice.session.send("bob", "for bob"), { code: "recipient-key-changed" });
    // A hostile server that also drops the key check: carol cannot open it, and says so.
    proxy.rewrite = (direction, message) => {
      if (direction !== "to-server" || message.type !== "send") return [message];
      const { toKey: _dropped, ...rest } = message;
      return [{ ...rest, to: "carol" }];
    };
    await alice.session.send("bob", "for bob");
    const error = await carol.log.waitFor("error");
    assert.equal(error.code, "wrong-peer");
    const failed = await alice.log.waitFor("failed", (event) => event.to === "carol");
    assert.equal(failed.reason, "wrong-peer");
    assert.equal(carol.log.of("message").length, 0);
    assert.equal(bob.log.of("message").length, 0);
  });
});

Deno.test("the bytes through the server never contain a message's plaintext", async () => {
  await withBobBehindProxy(async ({ proxy, alice, bob }) => {
    const secret = "the eagle lands at midnight";
    await alice.session.send("bob", secret);
    await bob.log.waitFor("message", (event) => event.text === secret);
    await bob.session.send("alice", secret);
    await alice.log.waitFor("message", (event) => event.text === secret);
    const encoder = new TextEncoder();
    assert.equal(proxy.sawBytes(encoder.encode(secret)), false);
    assert.equal(proxy.sawBytes(encoder.encode(btoa(secret).slice(0, 20))), false);
    assert.equal(proxy.sawBytes(encoder.encode("eagle")), false);
  });
});

Deno.test("a changed key is flagged and blocks sending until /trust", async () => {
  await withPeople({ people: ["alice", "bob"] }, async ({ server, people: { alice, bob } }) => {
    // Keys are pinned on interaction, not on sight.
    await alice.session.send("bob", "hello");
    await bob.log.waitFor("message");
    await bob.session.quit();
    await alice.log.waitFor("left", (event) => event.name === "bob");
    const impostor = await joinClient(server.port, "BOB");
    const changed = await alice.log.waitFor("key-changed");
    assert.equal(changed.name, "BOB");
    assert.notEqual(changed.fingerprint, changed.pinnedFingerprint);
    await assert.rejects(alice.session.send("bob", "hi"), (error: Error & { code?: string }) => {
      assert.equal(error.code, "key-changed");
      return true;
    });
    // What the new key sends before /trust is refused, not shown, and its sender is told.
    await impostor.session.send("alice", "it is me, bob");
    const ignored = await alice.log.waitFor(
      "error",
      (event) => event.code === "key-changed",
    );
    assert.match(ignored.message, /refused: their key changed/);
    assert.deepEqual(alice.log.of("message"), []);
    const failed = await impostor.log.waitFor("failed");
    assert.deepEqual(
      [failed.to, failed.reason, failed.id],
      ["alice", "key-changed", impostor.log.of("sent")[0].id],
    );
    const mine = await alice.session.verify("bob");
    const theirs = await impostor.session.verify("alice");
    assert.equal(mine.code, theirs.code);
    await alice.session.trust("bob");
    await alice.session.send("bob", "after trust");
    const got = await impostor.log.waitFor("message");
    assert.equal(got.text, "after trust");
    await impostor.session.send("alice", "after trust too");
    const shown = await alice.log.waitFor("message");
    assert.equal(shown.text, "after trust too");
    await impostor.session.quit();
  });
});

Deno.test("an old connection replayed after a reconnect is refused with its messages", async () => {
  const server = await startTestServer();
  const proxy = new HostileProxy(server.port);
  try {
    const alice = await joinClient(proxy.port, "alice");
    const recorded: Json[] = [];
    proxy.rewrite = (direction, message) => {
      if (direction !== "to-client") return [message];
      if (message.type === "joined" && recorded.length === 0) recorded.push(message);
      else if (message.type === "deliver" && recorded.length === 1) recorded.push(message);
      else if (message.type === "joined" && recorded.length === 2) {
        // bob is back with a new epoch: replay his old connection and its message around it.
        return [message, ...recorded];
      }
      return [message];
    };
    const first = await joinClient(server.port, "bob");
    await alice.log.waitFor("joined", (event) => event.name === "bob");
    await first.session.send("alice", "transfer $100");
    await alice.log.waitFor("message", (event) => event.text === "transfer $100");
    await first.session.quit();
    await alice.log.waitFor("left", (event) => event.name === "bob");
    const again = await joinClient(server.port, "bob", { home: first.home });
    const refused = await alice.log.waitFor(
      "error",
      (event) => event.code === "replayed-announcement",
    );
    assert.match(refused.message, /old announcement of "bob"/);
    await again.session.send("alice", "hi again");
    await alice.log.waitFor("message", (event) => event.text === "hi again");
    assert.deepEqual(
      alice.log.of("message").map((event) => event.text),
      ["transfer $100", "hi again"],
      "the old message was not accepted twice",
    );
    await again.session.quit();
    await alice.session.quit();
  } finally {
    await proxy.close();
    await server.close();
  }
});

Deno.test("the server cannot announce someone else under your own name", async () => {
  // A validly signed announcement (a stranger's own keys) that claims alice's name in another
  // case: only the impersonation check can refuse it, the signature check passes.
  const stranger = await Identity.generate();
  const forged = await signAnnouncement(stranger, "ALICE", newEpoch());
  const server = await startTestServer();
  const proxy = new HostileProxy(server.port);
  try {
    const alice = await joinClient(proxy.port, "alice");
    proxy.rewrite = (direction, message) => {
      if (direction !== "to-client" || message.type !== "joined") return [message];
      // The forgery first, then bob's real announcement as a marker that it was handled.
      return [{ ...message, peer: forged as unknown as Json }, message];
    };
    const bob = await joinClient(server.port, "bob");
    await alice.log.waitFor("joined", (event) => event.name === "bob");
    assert.deepEqual(alice.log.of("error").map((event) => event.code), ["impersonation"]);
    assert.deepEqual(alice.session.who().map((peer) => peer.name), ["bob"]);
    await bob.session.quit();
    await alice.session.quit();
  } finally {
    await proxy.close();
    await server.close();
  }
});

Deno.test("/trust takes only the key whose code /verify showed", async () => {
  await withPeople({ people: ["alice", "bob"] }, async ({ server, people: { alice, bob } }) => {
    await assert.rejects(alice.session.trust("bob"), /Run \/verify bob/);
    await alice.session.verify("bob");
    // The key changes between /verify and /trust: the code alice compared was for the old key.
    await bob.session.quit();
    await alice.log.waitFor("left", (event) => event.name === "bob");
    const impostor = await joinClient(server.port, "bob");
    await alice.log.waitFor("key-changed", (event) => event.name === "bob");
    await assert.rejects(alice.session.trust("bob"), /changed since \/verify/);
    await assert.rejects(alice.session.send("bob", "hi"), /key changed|key-changed|\/verify/);
    await alice.session.verify("bob");
    await alice.session.trust("bob");
    await alice.session.send("bob", "now trusted");
    assert.equal((await impostor.log.waitFor("message")).text, "now trusted");
    await impostor.session.quit();
  });
});
