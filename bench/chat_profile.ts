// deno-lint-ignore-file no-console
/**
 * Where a chat message's client time goes: alice sends `count` messages to bob through a real
 * `reelay server` on loopback (`window` unacknowledged at most, as the chat bench's saturation
 * run), and every store call, ratchet call, SQLite statement and commit of both clients (they
 * share this process) is timed. Prints the rate and a table of stages by total time; asserts
 * nothing. With `--cpu-prof` Deno also writes a V8 profile of the run.
 *
 * Run: `deno run -A bench/chat_profile.ts [count] [window]` (defaults 300 and 32).
 *
 * @module
 */

import { DatabaseSync, StatementSync } from "node:sqlite";
import { ClientSession } from "../client/session.ts";
import { loadOrCreateIdentity } from "../client/keystore.ts";
import { ClientStore } from "../client/store/mod.ts";
import { knownServers } from "../client/server_trust.ts";
import { Identity, Ratchet } from "../shared/crypto/mod.ts";
import { CHAT_CONFIG } from "./chat.ts";
import { sleep, spawnServer } from "./_procs.ts";

const count = Number(Deno.args[0] ?? 300);
const window = Number(Deno.args[1] ?? 32);

/** Milliseconds and calls per stage. */
const stages = new Map<string, { ms: number; calls: number }>();

function record(name: string, ms: number): void {
  const stage = stages.get(name) ?? { ms: 0, calls: 0 };
  stage.ms += ms;
  stage.calls++;
  stages.set(name, stage);
}

/** Wraps `object[method]` so each call's time (sync, or until its promise settles) is kept. */
function time(
  object: Record<string, unknown>,
  method: string,
  name: (args: unknown[]) => string,
): void {
  const original = object[method] as (...args: unknown[]) => unknown;
  object[method] = function (this: unknown, ...args: unknown[]) {
    const started = performance.now();
    const result = original.apply(this, args);
    if (result instanceof Promise) {
      return result.finally(() => record(name(args), performance.now() - started));
    }
    record(name(args), performance.now() - started);
    return result;
  };
}

/** A statement's stage name: its first words. */
function sqlName(sql: string): string {
  return "sql " + sql.replace(/\s+/g, " ").trim().slice(0, 48);
}

const statementSql = new WeakMap<object, string>();
const prepare = DatabaseSync.prototype.prepare;
DatabaseSync.prototype.prepare = function (this: DatabaseSync, sql: string) {
  const statement = prepare.call(this, sql);
  statementSql.set(statement, sql);
  return statement;
};
// Statements are named by their SQL, kept when prepared.
for (const method of ["run", "get", "all"]) {
  const proto = StatementSync.prototype as unknown as Record<string, unknown>;
  const timed = proto[method] as (...args: unknown[]) => unknown;
  proto[method] = function (this: object, ...args: unknown[]) {
    const started = performance.now();
    try {
      return timed.apply(this, args);
    } finally {
      record(`${sqlName(statementSql.get(this) ?? "?")} (${method})`, performance.now() - started);
    }
  };
}
time(
  DatabaseSync.prototype as unknown as Record<string, unknown>,
  "exec",
  (args) => sqlName(String(args[0])),
);
const store = ClientStore.prototype as unknown as Record<string, unknown>;
for (
  const method of [
    "saveConversation",
    "conversation",
    "markSeen",
    "hasSeen",
    "addHistory",
    "markHistory",
    "savePrekeys",
  ]
) {
  time(store, method, () => `store.${method}`);
}
const ratchet = Ratchet.prototype as unknown as Record<string, unknown>;
for (const method of ["encrypt", "decrypt", "toJSON"]) {
  time(ratchet, method, () => `ratchet.${method}`);
}
const identity = Identity.prototype as unknown as Record<string, unknown>;
for (const method of ["sign", "decrypt"]) time(identity, method, () => `identity.${method}`);
time(JSON as unknown as Record<string, unknown>, "stringify", () => "JSON.stringify");

const temp = await Deno.makeTempDir({ prefix: "reelay-chat-profile-" });
const videos = await Deno.makeTempDir({ dir: temp });
const server = await spawnServer({ videos, configIni: CHAT_CONFIG, tempDir: temp });
const sessions: ClientSession[] = [];
try {
  const connect = async (name: string) => {
    const home = `${temp}/${name}`;
    const { identity } = await loadOrCreateIdentity(home);
    const session = await ClientSession.connect({
      hostname: "127.0.0.1",
      port: server.port,
      name,
      identity,
      openStore: () => ClientStore.open({ home, server: "bench", identity }),
      serverPins: knownServers(home),
    });
    sessions.push(session);
    return session;
  };
  const alice = await connect("alice");
  const bob = await connect("bob");
  let received = 0;
  const all = Promise.withResolvers<void>();
  let delivered = 0;
  bob.onEvent((event) => {
    if (event.event === "message" && ++received === count + 1) all.resolve();
    if (event.event === "error") console.error(`bob: ${event.code}: ${event.message}`);
  });
  alice.onEvent((event) => {
    if (event.event === "delivered") delivered++;
  });
  while (!alice.who().some((peer) => peer.name === "bob")) await sleep(10);
  await alice.send("bob", "warm-up"); // the conversation's start (RSA, prekeys): not measured
  while (received < 1) await sleep(10);
  stages.clear();
  const started = performance.now();
  let next = 0;
  await Promise.all(Array.from({ length: window }, async () => {
    while (next < count) {
      next++;
      await alice.send("bob", "x".repeat(100));
    }
  }));
  await all.promise;
  const elapsed = performance.now() - started;
  while (delivered < count + 1 && performance.now() - started < elapsed * 3) await sleep(10);
  console.log(
    `${count} messages, ${window} in flight: ${(count / elapsed * 1000).toFixed(1)} msg/s, ` +
      `${(elapsed / count).toFixed(2)} ms per message; receipts back: ${delivered - 1}`,
  );
  const rows = [...stages.entries()].sort((a, b) => b[1].ms - a[1].ms);
  console.log("stage | total ms | calls | ms per call | ms per message");
  for (const [name, { ms, calls }] of rows.slice(0, 40)) {
    console.log(
      `${name} | ${ms.toFixed(0)} | ${calls} | ${(ms / calls).toFixed(3)} | ` +
        `${(ms / count).toFixed(2)}`,
    );
  }
} finally {
  for (const session of sessions) await session.quit();
  await server.stop();
  await Deno.remove(temp, { recursive: true });
}
