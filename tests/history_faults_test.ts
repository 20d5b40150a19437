/**
 * Message history is best effort: a history that cannot be written (the file refuses, or it was
 * kept for another identity) never ends the connection nor loses a message. Real server on
 * loopback, real clients, real SQLite files.
 */
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { joinClient, startTestServer } from "../testing/harness.ts";

type Client = Awaited<ReturnType<typeof joinClient>>;

async function withServer(test: (port: number, homes: string[]) => Promise<void>): Promise<void> {
  const server = await startTestServer();
  const homes: string[] = [];
  try {
    await test(server.port, homes);
  } finally {
    await server.close();
    for (const home of homes) await Deno.remove(home, { recursive: true });
  }
}

async function join(port: number, homes: string[], name: string, home?: string): Promise<Client> {
  const client = await joinClient(port, name, home ? { home } : {});
  if (!homes.includes(client.home)) homes.push(client.home);
  return client;
}

/** `from` says `text` to `to`; resolves once `to` showed it and `from` got the receipt. */
async function say(from: Client, to: Client, toName: string, text: string): Promise<void> {
  await from.session.send(toName, text);
  const { id } = await to.log.waitFor("message", (event) => event.text === text);
  await from.log.waitFor("delivered", (event) => event.id === id);
}

Deno.test("history: after identity.json is replaced (README), the unreadable history is deleted and said so, and messages keep arriving", async () => {
  await withServer(async (port, homes) => {
    const bob = await join(port, homes, "bob");
    const first = await join(port, homes, "alice");
    await say(bob, first, "alice", "to the old identity");
    await first.session.quit();
    // README, Troubleshooting: move identity.json away to start with a new identity.
    await Deno.rename(`${first.home}/identity.json`, `${first.home}/identity.old.json`);

    const alice = await join(port, homes, "alice", first.home);
    const told = await alice.log.waitFor("error", (event) => event.code === "history-restarted");
    assert.match(told.message, /identity\.json was replaced/);
    assert.match(told.message, /its 1 kept message cannot be read here: it was deleted/);
    assert.ok(told.message.includes(alice.session.store.file), told.message);

    const carol = await join(port, homes, "carol");
    await say(carol, alice, "alice", "hello new alice");
    await say(alice, carol, "carol", "hello carol");
    const kept = await alice.session.store.history(undefined, 10);
    assert.deepEqual(kept.map((entry) => entry.text), ["hello new alice", "hello carol"]);
    assert.deepEqual(
      alice.log.events.filter((event) => ["error", "disconnected"].includes(event.event)),
      [told],
    );
    await alice.session.quit();
    // The next run opens the new key: nothing deleted, nothing said.
    const again = await join(port, homes, "alice", first.home);
    await say(carol, again, "alice", "and again");
    assert.equal((await again.session.store.history(undefined, 10)).length, 3);
    assert.deepEqual(again.log.of("error"), []);
    await Promise.all([again, bob, carol].map((client) => client.session.quit()));
  });
});

Deno.test("history: a write the file refuses is told once; messages are still shown, acknowledged and sent", async () => {
  await withServer(async (port, homes) => {
    const bob = await join(port, homes, "bob");
    const alice = await join(port, homes, "alice");
    await say(bob, alice, "alice", "kept one");
    // Another connection to the file makes every history insert fail, as a full disk would.
    const db = new DatabaseSync(alice.session.store.file);
    db.exec(`CREATE TRIGGER refuse BEFORE INSERT ON history
      BEGIN SELECT RAISE(FAIL, 'database or disk is full'); END;`);
    await say(bob, alice, "alice", "not kept two");
    await say(bob, alice, "alice", "not kept three");
    await say(alice, bob, "bob", "not kept four");
    const errors = alice.log.of("error");
    assert.equal(errors.length, 1, JSON.stringify(errors));
    assert.equal(errors[0].code, "history-unavailable");
    assert.ok(errors[0].message.includes(alice.session.store.file), errors[0].message);
    assert.match(errors[0].message, /disk is full.*still shown and acknowledged.*\/history off/);

    db.exec("DROP TRIGGER refuse");
    db.close();
    await say(bob, alice, "alice", "kept five");
    const kept = await alice.session.store.history(undefined, 10);
    assert.deepEqual(kept.map((entry) => entry.text), ["kept one", "kept five"]);
    assert.deepEqual(alice.log.of("disconnected"), []);
    await Promise.all([alice, bob].map((client) => client.session.quit()));
  });
});
