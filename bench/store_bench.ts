// deno-lint-ignore-file no-console
/**
 * The server store's speed on this disk, every commit durable (WAL, synchronous=FULL): mail put
 * and taken (one at a time and a page at a time), prekey bundles taken, people remembered,
 * mail expired, and the open of a large file (which reads it all once to check it). Against a
 * ceiling measured in the same run: bare `node:sqlite` commits of the same size under each
 * `synchronous` setting. Prints a table; asserts nothing.
 *
 * Run: `deno run -A bench/store_bench.ts [operations] [repetitions]` (defaults 5000 and 3).
 *
 * @module
 */

import { DatabaseSync } from "node:sqlite";
import { openSqliteStore } from "../server/store/sqlite.ts";
import type { Store } from "../server/store/mod.ts";
import { percentile, summarize } from "./_stats.ts";

const operations = Number(Deno.args[0] ?? 5000);
const repetitions = Number(Deno.args[1] ?? 3);
const ENVELOPE_BYTES = 1024;
const RECIPIENTS = 100;
const envelope = new Uint8Array(ENVELOPE_BYTES).fill(7);

function fp(n: number): string {
  return n.toString(16).padStart(64, "0");
}

/** Runs `body` `count` times and returns operations per second. */
async function rate(
  count: number,
  body: (i: number) => Promise<unknown> | unknown,
): Promise<number> {
  const start = performance.now();
  for (let i = 0; i < count; i++) await body(i);
  return count / ((performance.now() - start) / 1000);
}

async function withDir<T>(body: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "reelay-store-bench-" });
  try {
    return await body(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** A store on disk whose bounds the benchmark never reaches. */
function withStore<T>(body: (store: Store) => Promise<T>): Promise<T> {
  return withDir(async (dir) => {
    await using store = await openSqliteStore(dir, {
      maxItemsPerRecipient: 1_000_000,
      maxOneTimePerKind: 1_000_000,
      maxBytesPerRecipient: 2 ** 40,
      maxTotalBytes: 2 ** 40,
      maxBytesPerSender: 2 ** 40,
      ttlMs: 3_600_000,
    });
    return await body(store);
  });
}

function putMail(store: Store, i: number) {
  return store.mailbox.put({
    kind: "sealed",
    recipientKey: fp(i % RECIPIENTS),
    recipientName: `p${i % RECIPIENTS}`,
    senderKey: fp(RECIPIENTS + 1),
    senderName: "sender",
    messageId: `m${i}`,
    envelope,
  });
}

/**
 * Mail put, then taken one at a time (pending 1 + remove 1, two commits for one message), with
 * each put's time: the event loop waits that long, as SQLite runs on the calling thread.
 */
function mailOneByOne(): Promise<[number, number, number[]]> {
  return withStore(async (store) => {
    const latencies: number[] = [];
    const puts = await rate(operations, async (i) => {
      const start = performance.now();
      await putMail(store, i);
      latencies.push(performance.now() - start);
    });
    const takes = await rate(operations, async (i) => {
      const key = fp(i % RECIPIENTS);
      const [item] = await store.mailbox.pending(key, 1);
      await store.mailbox.remove(key, [item.id]);
    });
    return [puts, takes, latencies];
  });
}

/** Messages per second taken a page of 100 at a time (one read and one commit per page). */
function mailByPage(): Promise<number> {
  return withStore(async (store) => {
    for (let i = 0; i < operations; i++) await putMail(store, i);
    const perRecipient = operations / RECIPIENTS;
    const pages = await rate(RECIPIENTS, async (r) => {
      const items = await store.mailbox.pending(fp(r), Math.min(1000, perRecipient));
      await store.mailbox.remove(fp(r), items.map((item) => item.id));
    });
    return pages * perRecipient;
  });
}

/** Mail expired in pages of 1000, items per second. */
function expiry(): Promise<number> {
  return withStore(async (store) => {
    for (let i = 0; i < operations; i++) await putMail(store, i);
    const start = performance.now();
    let ended = 0;
    while (true) {
      const page = await store.mailbox.expire(Date.now() + 7_200_000);
      ended += page.length;
      if (page.length < 1000) break;
    }
    return ended / ((performance.now() - start) / 1000);
  });
}

/** Prekey bundles taken (one X25519 and one ML-KEM key each, one commit), and remembers. */
function prekeysAndRegistry(): Promise<[number, number]> {
  return withStore(async (store) => {
    const identities = 25;
    const remembers = await rate(operations, (i) =>
      store.registry.remember({
        nameKey: `p${i % identities}`,
        name: `P${i % identities}`,
        fingerprint: fp(i % identities),
        announcement: { name: `P${i % identities}`, keys: ["x".repeat(800)] },
      }));
    const perIdentity = Math.ceil(operations / identities);
    for (let n = 0; n < identities; n++) {
      await store.prekeys.publish(fp(n), new Uint8Array(2048));
      const keys = (size: number) =>
        Array.from({ length: perIdentity }, (_, id) => ({ id, key: new Uint8Array(size) }));
      for (let first = 0; first < perIdentity; first += 1000) {
        await store.prekeys.addOneTime(fp(n), "x25519", keys(32).slice(first, first + 1000));
        await store.prekeys.addOneTime(fp(n), "mlkem768", keys(1184).slice(first, first + 1000));
      }
    }
    const takes = await rate(operations, (i) => store.prekeys.takeBundle(fp(i % identities)));
    return [takes, remembers];
  });
}

/** Bare commits of one 1 KiB row under a `synchronous` setting: the ceiling. */
function bareCommits(synchronous: string): Promise<number> {
  return withDir(async (dir) => {
    const db = new DatabaseSync(`${dir}/bare.db`);
    try {
      db.exec(`PRAGMA journal_mode = WAL; PRAGMA synchronous = ${synchronous}`);
      db.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB)");
      const insert = db.prepare("INSERT INTO t (body) VALUES (?)");
      return await rate(operations, () => {
        db.exec("BEGIN IMMEDIATE");
        insert.run(envelope);
        db.exec("COMMIT");
      });
    } finally {
      db.close();
    }
  });
}

/** Milliseconds to open (and quick_check) a store holding `mib` MiB of mail. */
function openLarge(mib: number): Promise<number> {
  return withDir(async (dir) => {
    {
      await using filled = await openSqliteStore(dir, { maxTotalBytes: 2 ** 40 });
      const big = new Uint8Array(256 * 1024).fill(3);
      for (let i = 0; i < mib * 4; i++) {
        await filled.mailbox.put({
          kind: "sealed",
          recipientKey: fp(i % 64),
          recipientName: `p${i % 64}`,
          senderKey: fp(999),
          senderName: "sender",
          messageId: `big${i}`,
          envelope: big,
        });
      }
    }
    const start = performance.now();
    await (await openSqliteStore(dir)).close();
    return performance.now() - start;
  });
}

function sqliteVersion(): string {
  const db = new DatabaseSync(":memory:");
  try {
    return String(db.prepare("SELECT sqlite_version() AS v").get()?.v);
  } finally {
    db.close();
  }
}

function row(label: string, values: number[], unit: string): void {
  const s = summarize(values);
  const fmt = (v: number) => v >= 100 ? v.toFixed(0) : v.toFixed(2);
  console.log(
    `${label.padEnd(48)} ${fmt(s.median).padStart(9)} ${unit.padEnd(6)} ` +
      `(${fmt(s.min)}-${fmt(s.max)}, n=${s.n})`,
  );
}

const results: Record<string, number[]> = {};
const add = (label: string, value: number) => (results[label] ??= []).push(value);
for (let r = 0; r < repetitions; r++) {
  for (const sync of ["FULL", "NORMAL", "OFF"]) {
    add(`ceiling: bare commit, ${sync}`, await bareCommits(sync));
  }
  const [puts, takes, latencies] = await mailOneByOne();
  add("mailbox put (1 KiB)", puts);
  add("mailbox put latency p50", percentile(latencies, 0.5));
  add("mailbox put latency p99", percentile(latencies, 0.99));
  add("mailbox take, one by one (pending 1 + remove 1)", takes);
  add(`mailbox take, pages of ${operations / RECIPIENTS} (messages)`, await mailByPage());
  add("mailbox expire, pages of 1000 (items)", await expiry());
  const [bundles, remembers] = await prekeysAndRegistry();
  add("prekeys takeBundle (x25519 + mlkem768)", bundles);
  add("registry remember (1 KiB announcement)", remembers);
}
add("open + quick_check of a 64 MiB store", await openLarge(64));

console.log(
  `store, ${operations} operations, ${repetitions} repetitions, Deno ${Deno.version.deno}, ` +
    `SQLite ${sqliteVersion()}`,
);
for (const [label, values] of Object.entries(results)) {
  row(label, values, label.startsWith("open") || label.includes("latency") ? "ms" : "/s");
}
