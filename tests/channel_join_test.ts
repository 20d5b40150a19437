/**
 * Joins that cannot be replayed (issue 10): a hello carries a proof signed over this
 * connection's handshake hash, and the server accepts an epoch once. Tried as an attacker would:
 * a hello recorded in the clear by a hostile relay, the raw bytes of a whole connection replayed,
 * and a key holder reusing an epoch.
 */

import assert from "node:assert/strict";
import { newEpoch } from "../shared/crypto/mod.ts";
import { writeAll } from "../shared/io.ts";
import { joinClient, startLoggedServer } from "../testing/harness.ts";
import { ByteProxy } from "./_byte_proxy.ts";
import { HostileProxy, type Json } from "./_proxy.ts";
import { RawClient, rawIdentity, waitUntil } from "./_raw.ts";
import { JoinEpochs } from "../server/join_epochs.ts";

Deno.test("a hello recorded in the clear and replayed in a new connection is refused", async () => {
  const server = await startLoggedServer();
  const bob = await joinClient(server.port, "bob");
  const home = await Deno.makeTempDir({ prefix: "reelay-home-alice-" });
  // A hostile relay (it sees what a server sees) keeps alice's hello.
  let recorded: Json | undefined;
  const relay = new HostileProxy(server.port, (direction, message) => {
    if (direction === "to-server" && message.type === "hello") recorded = message;
    return [message];
  });
  const raws: RawClient[] = [];
  try {
    const alice = await joinClient(relay.port, "alice", { home });
    await bob.log.waitFor("joined", (event) => event.name === "alice");
    await alice.session.quit();
    await bob.log.waitFor("left", (event) => event.name === "alice");
    assert.ok(recorded, "the relay saw the hello");
    assert.equal(typeof recorded.proof, "string");

    // The impostor sends the recorded hello, signature and proof intact, on its own connection.
    const impostor = await RawClient.connect(server.port);
    raws.push(impostor);
    await impostor.send(recorded);
    const refused = await impostor.waitForError("bad-join-proof");
    assert.match(String(refused.message), /not signed for this connection/);
    await impostor.waitEnded();
    assert.equal(bob.log.of("joined").filter((event) => event.name === "alice").length, 1);

    // The real alice joins again as herself, and bob can reach her.
    const back = await joinClient(server.port, "alice", { home });
    await waitUntil(
      () => bob.log.of("joined").filter((event) => event.name === "alice").length === 2,
      "bob saw alice join again",
    );
    // Alice first came through another address: her client keeps one store per server key, so
    // bob may start the conversation against the prekeys she uploaded through either address.
    await bob.session.send("alice", "is it you?");
    await back.log.waitFor("message", (event) => event.text === "is it you?");
    await back.session.send("bob", "still me");
    await bob.log.waitFor(
      "message",
      (event) => event.text === "still me" && event.from === "alice",
    );
    await back.session.quit();
  } finally {
    for (const raw of raws) await raw.close();
    await relay.close();
    await bob.session.quit();
    await Deno.remove(bob.home, { recursive: true });
    await Deno.remove(home, { recursive: true });
    await server.stop();
  }
});

Deno.test("the recorded bytes of a whole connection, replayed, end at the first record", async () => {
  const server = await startLoggedServer();
  const bob = await joinClient(server.port, "bob");
  const recorder = new ByteProxy(server.port);
  let replay: Deno.TcpConn | undefined;
  try {
    const alice = await joinClient(recorder.port, "alice");
    await bob.log.waitFor("joined", (event) => event.name === "alice");
    await alice.session.send("bob", "recorded");
    await bob.log.waitFor("message", (event) => event.text === "recorded");
    await alice.session.quit();
    await bob.log.waitFor("left", (event) => event.name === "alice");
    await Deno.remove(alice.home, { recursive: true });

    replay = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
    await writeAll(replay, recorder.bytes("to-server"));
    const buffer = new Uint8Array(64 * 1024);
    while (await replay.read(buffer) !== null) {
      // The server's fresh handshake answer; then it closes.
    }
    await waitUntil(
      () => server.lines.some((line) => /altered in transit/.test(line)),
      "the server logged the replay as altered",
    );
    await waitUntil(() => server.server.connections === 1, "only bob remains");
    assert.equal(bob.log.of("joined").filter((event) => event.name === "alice").length, 1);
  } finally {
    replay?.close();
    await recorder.close();
    await bob.session.quit();
    await Deno.remove(bob.home, { recursive: true });
    await server.stop();
  }
});

Deno.test("an epoch joins once: the key holder reusing it is refused as replayed-join", async () => {
  const server = await startLoggedServer();
  const raws: RawClient[] = [];
  try {
    const identity = await rawIdentity();
    const epoch = newEpoch();
    const first = await RawClient.connect(server.port);
    raws.push(first);
    const welcome = await first.join("carol", identity, epoch);
    assert.equal(welcome.type, "welcome", JSON.stringify(welcome));
    await first.close();
    await waitUntil(() => server.server.members === 0, "carol left");
    // A fresh connection and a valid proof for it, but the same epoch.
    const second = await RawClient.connect(server.port);
    raws.push(second);
    const refused = await second.join("carol", identity, epoch);
    assert.equal(refused.code, "replayed-join", JSON.stringify(refused));
    await second.waitEnded();
    // A fresh epoch joins.
    const third = await RawClient.connect(server.port);
    raws.push(third);
    assert.equal((await third.join("carol", identity)).type, "welcome");
  } finally {
    for (const raw of raws) await raw.close();
    await server.stop();
  }
});

Deno.test("JoinEpochs: remembered until the TTL, at most maxEntries (oldest forgotten first)", () => {
  let now = 0;
  const epochs = new JoinEpochs({ ttlMs: 100, maxEntries: 3, now: () => now });
  for (const epoch of ["a", "b", "c"]) assert.ok(epochs.accept(epoch));
  assert.ok(!epochs.accept("b"));
  assert.ok(epochs.accept("d"), "a fourth pushes out the oldest");
  assert.equal(epochs.size, 3);
  assert.ok(epochs.accept("a"), "the oldest was forgotten");
  assert.ok(!epochs.accept("d"));
  now = 101;
  assert.ok(epochs.accept("d"), "forgotten after the TTL");
  assert.equal(epochs.size, 1, "expired entries are dropped");
});
