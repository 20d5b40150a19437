import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import {
  APPLICATION_ID,
  openSqliteStore,
  SCHEMA_VERSION,
  STORE_FILE_NAME,
} from "../server/store/sqlite.ts";
import type { Store } from "../server/store/mod.ts";
import { openDb } from "../server/store/_open.ts";
import { WRITE_BATCH } from "./_store_child.ts";
import {
  bytes,
  fp,
  notice,
  oneTimeKeys,
  rejectsWith,
  sealed,
  StoreChild,
  tempDir,
} from "./_store.ts";

const posix = Deno.build.os !== "windows";

async function mode(path: string): Promise<number> {
  return (await Deno.stat(path)).mode! & 0o777;
}

async function fill(store: Store): Promise<void> {
  await store.registry.remember({
    nameKey: "bob",
    name: "Bob",
    fingerprint: fp(2),
    announcement: { name: "Bob" },
  });
  await store.prekeys.publish(fp(2), bytes(64, 9));
  await store.prekeys.addOneTime(fp(2), "mlkem768", oneTimeKeys(7, 2, 1184));
  await store.mailbox.put(sealed(1, 2, "m1", 100));
  await store.mailbox.put(notice(2, "hi"));
}

/** Reads pragmas of a file directly, as another program would. */
function pragmas(path: string): { applicationId: number; userVersion: number } {
  const db = new DatabaseSync(path, { readOnly: true });
  try {
    return {
      applicationId: Number(db.prepare("PRAGMA application_id").get()?.application_id),
      userVersion: Number(db.prepare("PRAGMA user_version").get()?.user_version),
    };
  } finally {
    db.close();
  }
}

Deno.test("file: everything survives closing and reopening the store", async () => {
  await using dir = await tempDir();
  {
    await using store = await openSqliteStore(dir.path);
    await fill(store);
  }
  await using store = await openSqliteStore(dir.path);
  assert.deepEqual(await store.registry.lookup("bob"), {
    nameKey: "bob",
    name: "Bob",
    fingerprint: fp(2),
    announcement: { name: "Bob" },
    lastSeen: (await store.registry.lookup("bob"))!.lastSeen,
  });
  assert.deepEqual(await store.mailbox.stats(), { items: 2, bytes: 100 + 13, recipients: 1 });
  const held = await store.mailbox.pending(fp(2), 10);
  assert.deepEqual(held.map((item) => item.kind), ["sealed", "notice"]);
  assert.deepEqual(held[0].kind === "sealed" && held[0].envelope, bytes(100, 2));
  assert.deepEqual(await store.prekeys.takeBundle(fp(2)), {
    signed: bytes(64, 9),
    oneTime: { mlkem768: { id: 7, key: bytes(1184, 0) } },
  });
  assert.deepEqual(pragmas(`${dir.path}/${STORE_FILE_NAME}`), {
    applicationId: APPLICATION_ID,
    userVersion: SCHEMA_VERSION,
  });
});

Deno.test({
  name: "file: the folder and the file are owner-only, the WAL files too",
  ignore: !posix,
  async fn() {
    await using dir = await tempDir();
    const state = `${dir.path}/a/state`;
    {
      await using store = await openSqliteStore(state);
      await fill(store);
      assert.equal(await mode(`${dir.path}/a`), 0o700);
      assert.equal(await mode(state), 0o700);
      for (const file of [STORE_FILE_NAME, `${STORE_FILE_NAME}-wal`, `${STORE_FILE_NAME}-shm`]) {
        assert.equal(await mode(`${state}/${file}`), 0o600, file);
      }
    }
    // A file someone opened up is closed again, before its -wal and -shm copy its mode.
    await Deno.chmod(`${state}/${STORE_FILE_NAME}`, 0o644);
    await using reopened = await openSqliteStore(state);
    await reopened.mailbox.put(sealed(1, 2, "after"));
    for (const file of [STORE_FILE_NAME, `${STORE_FILE_NAME}-wal`, `${STORE_FILE_NAME}-shm`]) {
      assert.equal(await mode(`${state}/${file}`), 0o600, file);
    }
  },
});

Deno.test("file: an empty file becomes a store; a folder that is a file is refused", async () => {
  await using dir = await tempDir();
  await Deno.writeFile(`${dir.path}/${STORE_FILE_NAME}`, new Uint8Array());
  {
    await using store = await openSqliteStore(dir.path);
    await fill(store);
  }
  await Deno.writeTextFile(`${dir.path}/plain`, "x");
  await rejectsWith(
    openSqliteStore(`${dir.path}/plain`),
    "store-open-failed",
    /Cannot use state folder ".*\/plain": it is not a folder/,
  );
});

Deno.test("file: a damaged file is refused with what to do", async () => {
  await using dir = await tempDir();
  const path = `${dir.path}/${STORE_FILE_NAME}`;
  {
    await using store = await openSqliteStore(dir.path);
    for (let i = 0; i < 200; i++) await store.mailbox.put(sealed(1, 2 + (i % 5), `m${i}`, 2000));
  }
  const good = await Deno.readFile(path);
  // A damaged data page (found by the check at open), then a damaged schema page.
  for (const [start, end] of [[8192, 16384], [100, 4096]]) {
    await Deno.writeFile(path, good.slice().fill(0x5a, start, end));
    await rejectsWith(
      openSqliteStore(dir.path),
      "store-corrupt",
      new RegExp(`State file "${path}" is damaged`),
      /move ".*reelay\.db" and any ".*-wal" and ".*-shm"/,
      /sqlite3 .*\.recover/,
    );
  }
});

Deno.test("file: another program's file is refused and left as it was", async () => {
  await using dir = await tempDir();
  const path = `${dir.path}/${STORE_FILE_NAME}`;
  await Deno.writeTextFile(path, "name,email\nbob,bob@example.org\n");
  await rejectsWith(
    openSqliteStore(dir.path),
    "store-foreign",
    /State file ".*reelay\.db" is not a SQLite database/,
    /another state folder/,
  );
  assert.equal(await Deno.readTextFile(path), "name,email\nbob,bob@example.org\n");

  await Deno.remove(path);
  const other = new DatabaseSync(path);
  other.exec("CREATE TABLE contacts (name TEXT); INSERT INTO contacts VALUES ('bob')");
  other.close();
  await Deno.chmod(path, 0o644);
  const before = await Deno.readFile(path);
  await rejectsWith(openSqliteStore(dir.path), "store-foreign", /database of another program/);
  assert.deepEqual(await Deno.readFile(path), before, "the foreign file was changed");
  if (posix) assert.equal(await mode(path), 0o644, "the foreign file's mode was changed");

  // One that carries another application id is refused from its header alone.
  const tagged = new DatabaseSync(path);
  tagged.exec("PRAGMA application_id = 1234");
  tagged.close();
  await rejectsWith(openSqliteStore(dir.path), "store-foreign", /database of another program/);
});

Deno.test("file: a file from a newer reelay is refused, not downgraded", async () => {
  await using dir = await tempDir();
  const path = `${dir.path}/${STORE_FILE_NAME}`;
  await (await openSqliteStore(dir.path)).close();
  const db = new DatabaseSync(path);
  db.exec(`PRAGMA user_version = ${SCHEMA_VERSION + 1}`);
  db.close();
  await rejectsWith(
    openSqliteStore(dir.path),
    "store-too-new",
    new RegExp(`schema ${SCHEMA_VERSION + 1}; this one reads up to ${SCHEMA_VERSION}`),
  );
  assert.equal(pragmas(path).userVersion, SCHEMA_VERSION + 1);
});

Deno.test("file: a write lock held too long by another process is store-busy", async () => {
  await using dir = await tempDir();
  await using store = await openSqliteStore(dir.path, { busyTimeoutMs: 100 });
  const other = new DatabaseSync(`${dir.path}/${STORE_FILE_NAME}`);
  try {
    other.exec("BEGIN IMMEDIATE");
    await rejectsWith(
      store.mailbox.put(sealed(1, 2, "m")),
      "store-busy",
      /stayed locked by another process for 100 ms/,
      /same state folder/,
    );
    // Reads go on under WAL while another connection writes.
    assert.deepEqual(await store.mailbox.stats(), { items: 0, bytes: 0, recipients: 0 });
    other.exec("ROLLBACK");
  } finally {
    other.close();
  }
  await store.mailbox.put(sealed(1, 2, "m"));
});

Deno.test("file: an unsynced write refused as store-busy leaves later writes synced", async () => {
  await using dir = await tempDir();
  const db = await openDb(dir.path, 100);
  const other = new DatabaseSync(`${dir.path}/${STORE_FILE_NAME}`);
  try {
    assert.equal(db.get("PRAGMA synchronous")?.synchronous, 2); // FULL
    other.exec("BEGIN IMMEDIATE");
    assert.throws(
      () => db.write(() => db.run("DELETE FROM mail"), { durable: false }),
      (error: Error & { code?: string }) => error.code === "store-busy",
    );
    other.exec("ROLLBACK");
    // Queued mail, synced before its sender is told, would otherwise stop being synced.
    assert.equal(db.get("PRAGMA synchronous")?.synchronous, 2);
    db.write(() => db.run("DELETE FROM mail"), { durable: false });
    assert.equal(db.get("PRAGMA synchronous")?.synchronous, 2);
  } finally {
    other.close();
    db.close();
  }
});

Deno.test("file: a version 1 file counts the mail already held against its senders", async () => {
  await using dir = await tempDir();
  const path = `${dir.path}/${STORE_FILE_NAME}`;
  const first = await openSqliteStore(dir.path);
  await first.mailbox.put(sealed(1, 2, "a", 600));
  await first.mailbox.put(sealed(1, 3, "b", 300));
  await first.close();
  const raw = new DatabaseSync(path);
  raw.exec(`DROP TRIGGER mail_sender_added; DROP TRIGGER mail_sender_removed;
    DROP TABLE mail_sender; PRAGMA user_version = 1;`);
  raw.close();
  await using store = await openSqliteStore(dir.path, { maxBytesPerSender: 1000 });
  assert.equal(pragmas(path).userVersion, SCHEMA_VERSION);
  await rejectsWith(store.mailbox.put(sealed(1, 4, "c", 101)), "sender-mailbox-full", /900 bytes/);
  const [held] = await store.mailbox.pending(fp(3), 1);
  await store.mailbox.remove(fp(3), [held.id]);
  await store.mailbox.put(sealed(1, 4, "c", 400));
});

Deno.test("file: a closed store refuses every call with store-closed", async () => {
  const store = await openSqliteStore(":memory:");
  await store.close();
  await store.close();
  await rejectsWith(store.mailbox.stats(), "store-closed", /closed/);
  await rejectsWith(store.mailbox.put(sealed(1, 2, "m")), "store-closed");
  await rejectsWith(store.prekeys.takeBundle(fp(1)), "store-closed");
  await rejectsWith(store.registry.lookup("bob"), "store-closed");
});

Deno.test("file: a process killed while writing batches leaves a consistent file", async () => {
  await using dir = await tempDir();
  const committed = new Set<number>();
  // Three runs on the same file, each killed on the line it prints just before a batch, so the
  // kill lands before, inside or during the commit of that batch's transaction.
  for (let run = 0, target = 10; run < 3; run++, target += 10) {
    await using writer = new StoreChild(["write", dir.path]);
    await writer.waitForLine((line) => line === `writing ${target}`, 60_000);
    writer.kill();
    const { status } = await writer.finish();
    assert.equal(status.signal, "SIGKILL");
    for (const line of writer.lines) {
      if (line.startsWith("committed ")) committed.add(Number(line.slice(10)));
    }
  }
  // Opening runs SQLite's quick_check, so a torn file fails here.
  await using store = await openSqliteStore(dir.path);
  const people = await store.registry.count();
  let held = 0;
  for (let n = 0; n < people; n++) {
    const person = 1000 + n;
    assert.ok(await store.registry.lookup(`p${person}`), `p${person} is missing`);
    const { x25519 } = await store.prekeys.oneTimeCount(fp(person));
    const { items } = await store.mailbox.count(fp(person));
    if (committed.has(n)) assert.deepEqual([x25519, items], [WRITE_BATCH, 1], `batch ${n}`);
    // A batch the kill cut short is all there or not there at all.
    assert.ok(x25519 === 0 || x25519 === WRITE_BATCH, `batch ${n} has ${x25519} keys`);
    held += items;
  }
  assert.ok(people >= 30, `only ${people} people`);
  assert.deepEqual(await store.mailbox.stats(), {
    items: held,
    bytes: held * 4096,
    recipients: held,
  });
});
