/**
 * Group commit on the server (server/store/_mailbox.ts, server/connection.ts): the sends and
 * acknowledgements of one turn share one transaction, a connection reads its next send while
 * the previous one waits for its commit, and still every sender is told what became of each
 * message only once the commit holding it is done, in the order it sent them. A commit that
 * fails (the file locked by another process, a real SQLite failure) tells every sender of its
 * batch and delivers nothing; a message answered `queued` is on the disk when the server is
 * killed at once after.
 */
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { openSqliteStore } from "../server/store/sqlite.ts";
import { STORE_FILE_NAME } from "../server/store/_open.ts";
import { nameKey } from "../shared/names.ts";
import { startTestServer } from "../testing/harness.ts";
import { startCliServer } from "./_procs.ts";
import { controlFrame, type Json, RawClient, rawIdentity, waitUntil } from "./_raw.ts";

/**
 * The message ids held for the person called `name` in the store in `state`, oldest first (the
 * raw clients share one key, so mail is told apart by the name it was sent to).
 */
async function heldFor(state: string, name: string): Promise<string[]> {
  await using store = await openSqliteStore(state);
  const entry = await store.registry.lookup(nameKey(name));
  if (!entry) return [];
  const items = await store.mailbox.pending(entry.fingerprint, 100);
  return items.filter((item) => item.recipientName === name).map((item) =>
    item.kind === "sealed" ? item.messageId : "notice"
  );
}

/** Whether the registry in `state` knows `name` (its join is written after the welcome). */
async function known(state: string, name: string): Promise<boolean> {
  await using store = await openSqliteStore(state);
  return (await store.registry.lookup(nameKey(name))) !== undefined;
}

async function joined(port: number, name: string): Promise<RawClient> {
  const client = await RawClient.connect(port);
  const answer = await client.join(name, await rawIdentity());
  assert.equal(answer.type, "welcome", JSON.stringify(answer));
  return client;
}

/** Someone the server knows (they joined once, and the registry has them) who is offline. */
async function offline(port: number, state: string, name: string): Promise<void> {
  const client = await joined(port, name);
  await waitUntil(() => known(state, name), `the registry to know ${name}`);
  await client.close();
}

function send(ref: number, to: string, id: string): Json {
  return { type: "send", ref, to, id, envelope: `envelope ${id}` };
}

/** Sends every message in one write, so the server reads them together. */
async function sendTogether(client: RawClient, messages: Json[]): Promise<void> {
  const frames = messages.map(controlFrame);
  const bytes = new Uint8Array(frames.reduce((sum, frame) => sum + frame.length, 0));
  let at = 0;
  for (const frame of frames) {
    bytes.set(frame, at);
    at += frame.length;
  }
  assert.ok(await client.write(bytes));
}

/** The answers (`relayed`, `queued`, `error`) received so far, in order of arrival. */
function answers(client: RawClient): Json[] {
  return client.messages.filter((message) =>
    message.type === "relayed" || message.type === "queued" ||
    (message.type === "error" && message.ref !== undefined)
  );
}

async function answered(client: RawClient, count: number): Promise<Json[]> {
  await client.waitFor(() => answers(client).length >= count, 60_000, `${count} answers`);
  return answers(client);
}

function delivered(client: RawClient): string[] {
  return client.messages.filter((message) => message.type === "deliver").map((message) =>
    String(message.id)
  );
}

/**
 * Joins and first bytes may wait on a machine loaded by other work (and on a server frozen by a
 * lock held on its file): the deadlines are not what these tests are about.
 */
const PATIENT = { joinTimeoutMs: 120_000, firstByteTimeoutMs: 120_000 };

/** A server of its own, with its state in a folder the test can look at. */
async function withServer(test: (port: number, state: string) => Promise<void>): Promise<void> {
  const videos = await Deno.makeTempDir({ prefix: "reelay-commit-" });
  const server = await startTestServer({
    videos,
    patch: (config) => Object.assign(config.limits, PATIENT),
  });
  try {
    await test(server.port, `${videos}/.state`);
  } finally {
    await server.close();
    await Deno.remove(videos, { recursive: true });
  }
}

Deno.test("group commit: a connection's sends read together are answered in the order sent", async () => {
  await withServer(async (port, state) => {
    await offline(port, state, "carol");
    const bob = await joined(port, "bob");
    const alice = await joined(port, "alice");
    try {
      await sendTogether(alice, [
        send(1, "bob", "b1"),
        send(2, "carol", "c1"),
        send(3, "nobody", "n1"),
        send(4, "bob", "b2"),
        send(5, "alice", "a1"),
        send(6, "carol", "c2"),
      ]);
      const got = await answered(alice, 6);
      assert.deepEqual(
        got.map((answer) => [answer.ref, answer.type, answer.code ?? answer.id]),
        [
          [1, "relayed", "b1"],
          [2, "queued", "c1"],
          [3, "error", "unknown-recipient"],
          [4, "relayed", "b2"],
          [5, "error", "unknown-recipient"],
          [6, "queued", "c2"],
        ],
      );
      await bob.waitFor(() => delivered(bob).length === 2, 60_000, "two deliveries");
      assert.deepEqual(delivered(bob), ["b1", "b2"]);
      assert.deepEqual(await heldFor(state, "carol"), ["c1", "c2"]);
    } finally {
      await alice.close();
      await bob.close();
    }
  });
});

Deno.test("group commit: a commit that fails answers every sender of its batch with the error and delivers nothing", async () => {
  await withServer(async (port, state) => {
    await offline(port, state, "carol");
    const bob = await joined(port, "bob");
    const alice = await joined(port, "alice");
    const dave = await joined(port, "dave");
    // Every join is written before the lock is taken (a write failing under it is not ours).
    await waitUntil(
      async () =>
        (await known(state, "alice")) && (await known(state, "dave")) &&
        (await known(state, "bob")),
      "the registry to know alice, bob and dave",
    );
    // Another process holds the write lock: every commit of the server waits its busy timeout,
    // then fails with store-busy.
    const other = new DatabaseSync(`${state}/${STORE_FILE_NAME}`);
    try {
      other.exec("BEGIN IMMEDIATE");
      await sendTogether(alice, [
        send(1, "bob", "b1"),
        send(2, "carol", "c1"),
        send(3, "bob", "b2"),
      ]);
      await dave.send(send(7, "bob", "d1"));
      const fromAlice = await answered(alice, 3);
      const fromDave = await answered(dave, 1);
      other.exec("ROLLBACK");
      assert.deepEqual(
        fromAlice.map((answer) => [answer.ref, answer.type, answer.code]),
        [[1, "error", "store-busy"], [2, "error", "store-busy"], [3, "error", "store-busy"]],
      );
      assert.deepEqual(
        fromDave.map((answer) => [answer.ref, answer.type, answer.code]),
        [[7, "error", "store-busy"]],
      );
      // Nothing of the failed batches was kept, in the file or in memory: the next message is
      // the only one bob gets, and carol has nothing held.
      await alice.send(send(4, "bob", "b3"));
      const [next] = (await answered(alice, 4)).slice(3);
      assert.deepEqual([next.type, next.id], ["relayed", "b3"]);
      await bob.waitFor((message) => message.type === "deliver", 60_000, "a delivery");
      assert.deepEqual(delivered(bob), ["b3"]);
      assert.deepEqual(await heldFor(state, "carol"), []);
      assert.deepEqual(await heldFor(state, "bob"), ["b3"]);
    } finally {
      other.close();
      await dave.close();
      await alice.close();
      await bob.close();
    }
  });
});

Deno.test("group commit: a message answered queued is on the disk when the server is killed at once after", async () => {
  const videos = await Deno.makeTempDir({ prefix: "reelay-commit-kill-" });
  const state = `${videos}/.state`;
  const config = `${videos}/config.ini`;
  await Deno.writeTextFile(
    config,
    `[limits]\njoin_timeout_ms = ${PATIENT.joinTimeoutMs}\n` +
      `first_byte_timeout_ms = ${PATIENT.firstByteTimeoutMs}\n`,
  );
  const start = () => startCliServer(videos, ["--config", config]);
  let server = await start();
  try {
    await offline(server.port, state, "carol");
    const alice = await joined(server.port, "alice");
    try {
      await sendTogether(alice, [send(1, "carol", "c1"), send(2, "carol", "c2")]);
      const got = await answered(alice, 2);
      // Killed on the answer, with no time to finish anything it had not done before it.
      server.cli.child.kill("SIGKILL");
      assert.deepEqual(got.map((answer) => [answer.type, answer.id]), [
        ["queued", "c1"],
        ["queued", "c2"],
      ]);
    } finally {
      await server.cli.exit();
      await alice.close();
    }
    assert.deepEqual(await heldFor(state, "carol"), ["c1", "c2"]);
    // Started again from the same state, it hands them to carol in order.
    server = await start();
    const carol = await joined(server.port, "carol");
    try {
      await carol.waitFor(() => delivered(carol).length === 2, 60_000, "two deliveries");
      assert.deepEqual(delivered(carol), ["c1", "c2"]);
    } finally {
      await carol.close();
    }
  } finally {
    await server.cli.dispose();
    await Deno.remove(videos, { recursive: true });
  }
});
