/**
 * Leaving while reconnecting (review B0a, B0b, B0e): `quit()` during the wait between attempts
 * and during a dial ends everything it started, and nothing is said after `closed`; a failure
 * inside the reconnect loop ends the session instead of the process.
 */
import assert from "node:assert/strict";
import type { ClientEvent, ReconnectPolicy } from "../client/mod.ts";
import { DEFAULT_RECONNECT } from "../client/mod.ts";
import { deferred } from "../shared/async.ts";
import { type EventLog, joinClient, startTestServer } from "../testing/harness.ts";
import { within } from "./_deadline.ts";

/** The events `log` got after the session's `closed` settled. */
function afterClosed(
  session: { closed: Promise<unknown> },
  log: EventLog,
): () => ClientEvent[] {
  let mark: number | undefined;
  void session.closed.then(() => mark = log.events.length);
  return () => log.events.slice(mark ?? log.events.length);
}

/** A port that takes connections and never says a word: a dial that hangs in the handshake. */
function silentListener() {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepted = deferred<Deno.Conn>();
  const conns: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const conn of listener) {
      conns.push(conn);
      accepted.resolve(conn);
    }
  })();
  return {
    address: { hostname: "127.0.0.1", port: listener.addr.port },
    accepted: accepted.promise,
    async close() {
      listener.close();
      for (const conn of conns) conn.close();
      await accepting.catch(() => {});
    },
  };
}

Deno.test("leaving while a reconnect dial waits for the handshake calls the dial off: nothing after closed", async () => {
  const server = await startTestServer();
  const silent = silentListener();
  // Without calling it off, the dial would hold quit() for this long.
  const alice = await joinClient(server.port, "alice", {
    joinTimeoutMs: 90_000,
    reconnect: { ...DEFAULT_RECONNECT, minDelayMs: 1, address: () => silent.address },
  });
  const after = afterClosed(alice.session, alice.log);
  try {
    await server.close();
    const dialed = await within(silent.accepted, 30_000, "the reconnect dial");
    await within(alice.session.quit(), 30_000, "quit() while the dial waits");
    const read = await within(dialed.read(new Uint8Array(256)), 30_000, "the dial to be closed");
    assert.equal(read, null, "the client closed the connection it was dialing");
    assert.deepEqual(after(), [], "no event after closed");
    assert.equal((await alice.session.closed).code, "quit");
  } finally {
    await alice.session.quit();
    await silent.close();
  }
});

Deno.test("leaving during the wait between reconnect attempts dials nothing more: nothing after closed", async () => {
  const server = await startTestServer();
  const waiting = deferred<void>();
  let dials = 0;
  const policy: ReconnectPolicy = {
    ...DEFAULT_RECONNECT,
    // The wait lasts until the person leaves.
    wait: (_ms, cancel) => {
      waiting.resolve();
      return cancel.then(() => true);
    },
    address: () => {
      dials++;
      return { hostname: "127.0.0.1", port: server.port };
    },
  };
  const alice = await joinClient(server.port, "alice", { reconnect: policy });
  const after = afterClosed(alice.session, alice.log);
  try {
    await server.close();
    await within(waiting.promise, 30_000, "the wait before the first attempt");
    await within(alice.session.quit(), 30_000, "quit() during the wait");
    assert.equal(dials, 0, "no dial after leaving");
    assert.deepEqual(after(), [], "no event after closed");
  } finally {
    await alice.session.quit();
  }
});

Deno.test("a listener that throws inside the reconnect loop ends the session with bug, not the process", async () => {
  const server = await startTestServer();
  const alice = await joinClient(server.port, "alice", {
    reconnect: { ...DEFAULT_RECONNECT, wait: () => Promise.resolve(false) },
  });
  try {
    alice.session.onEvent((event) => {
      if (event.event === "reconnecting") throw new Error("The terminal is gone");
    });
    await server.close();
    const end = await within(alice.session.closed, 30_000, "the session to end");
    assert.equal(end.code, "bug");
    assert.match(end.reason, /The terminal is gone/);
  } finally {
    await alice.session.quit();
  }
});
