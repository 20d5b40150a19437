import assert from "node:assert/strict";
import { openSqliteStore } from "../server/store/sqlite.ts";
import { type MailItem, MAX_NOTICE_BYTES, MAX_PAGE } from "../server/store/mod.ts";
import { bytes, Clock, fp, notice, rejectsWith, sealed, tempDir } from "./_store.ts";

function ids(items: MailItem[]): string[] {
  return items.map((item) => item.id);
}

function messageIds(items: MailItem[]): (string | undefined)[] {
  return items.map((item) => item.kind === "sealed" ? item.messageId : undefined);
}

Deno.test("mailbox: held items come back whole, in the order they were put", async () => {
  const clock = new Clock();
  await using store = await openSqliteStore(":memory:", { now: clock.now, ttlMs: 5000 });
  const { mailbox } = store;
  const first = await mailbox.put(sealed(1, 2, "m1", 5));
  clock.time += 1;
  await mailbox.put(sealed(3, 2, "m2"));
  await mailbox.put(notice(2, "hello"));
  await mailbox.put(sealed(1, 4, "for-p4"));
  await mailbox.put(sealed(1, 2, "m3"));
  assert.deepEqual(first, { id: first.id, expiresAt: clock.time - 1 + 5000, duplicate: false });

  const held = await mailbox.pending(fp(2), 10);
  assert.deepEqual(messageIds(held), ["m1", "m2", undefined, "m3"]);
  assert.deepEqual(held[0], {
    kind: "sealed",
    recipientKey: fp(2),
    recipientName: "p2",
    senderKey: fp(1),
    senderName: "p1",
    messageId: "m1",
    envelope: bytes(5, 2),
    id: first.id,
    queuedAt: clock.time - 1,
    expiresAt: clock.time - 1 + 5000,
    bytes: 5,
  });
  assert.deepEqual(held[2], {
    kind: "notice",
    recipientKey: fp(2),
    recipientName: "p2",
    notice: { text: "hello" },
    id: held[2].id,
    queuedAt: clock.time,
    expiresAt: clock.time + 5000,
    bytes: JSON.stringify({ text: "hello" }).length,
  });
  assert.deepEqual(messageIds(await mailbox.pending(fp(4), 10)), ["for-p4"]);
  assert.deepEqual(await mailbox.pending(fp(9), 10), []);

  assert.equal(await mailbox.remove(fp(2), ids(held.slice(0, 2))), 2);
  assert.deepEqual(messageIds(await mailbox.pending(fp(2), 10)), [undefined, "m3"]);
  // Removing is per recipient: p2's key cannot remove p4's item, and a removed id is gone.
  const [forP4] = await mailbox.pending(fp(4), 1);
  assert.equal(await mailbox.remove(fp(2), [forP4.id, held[0].id, "nonsense", "-1"]), 0);
  assert.equal((await mailbox.pending(fp(4), 1)).length, 1);
});

Deno.test("mailbox: pending pages by count, by an id to start after, and by bytes", async () => {
  await using store = await openSqliteStore(":memory:");
  const { mailbox } = store;
  for (let i = 1; i <= 5; i++) await mailbox.put(sealed(1, 2, `m${i}`, 100));
  const firstTwo = await mailbox.pending(fp(2), 2);
  assert.deepEqual(messageIds(firstTwo), ["m1", "m2"]);
  const nextTwo = await mailbox.pending(fp(2), 2, { after: firstTwo[1].id });
  assert.deepEqual(messageIds(nextTwo), ["m3", "m4"]);
  assert.deepEqual(messageIds(await mailbox.pending(fp(2), 10, { maxBytes: 250 })), ["m1", "m2"]);
  assert.deepEqual(messageIds(await mailbox.pending(fp(2), 10, { maxBytes: 300 })), [
    "m1",
    "m2",
    "m3",
  ]);
  // The first item always comes, or one large item would block the queue for ever.
  assert.deepEqual(messageIds(await mailbox.pending(fp(2), 10, { maxBytes: 1 })), ["m1"]);
  const last = await mailbox.pending(fp(2), 10, { after: nextTwo[1].id, maxBytes: 1 });
  assert.deepEqual(messageIds(last), ["m5"]);
  assert.deepEqual(await mailbox.pending(fp(2), 10, { after: last[0].id }), []);
});

Deno.test("mailbox: a message id resent by the same sender is held once", async () => {
  await using store = await openSqliteStore(":memory:");
  const { mailbox } = store;
  const first = await mailbox.put(sealed(1, 2, "same"));
  const again = await mailbox.put(sealed(1, 2, "same", 50));
  assert.deepEqual(again, { ...first, duplicate: true });
  const otherSender = await mailbox.put(sealed(3, 2, "same"));
  const otherRecipient = await mailbox.put(sealed(1, 4, "same"));
  assert.equal(otherSender.duplicate || otherRecipient.duplicate, false);
  assert.deepEqual(await mailbox.count(fp(2)), { items: 2, bytes: 20 });
});

Deno.test("mailbox: recipient-key-changed when the recipient's name holds another key by the commit", async () => {
  await using store = await openSqliteStore(":memory:");
  const { mailbox, registry } = store;
  const remember = (key: number) =>
    registry.remember({ nameKey: "p2", name: "p2", fingerprint: fp(key), announcement: {} });
  await remember(2);
  // Checked against the key the registry held, staged, then the key changes before the commit.
  // A put for someone else in the same commit is held all the same: the refusal is its own.
  const staged = mailbox.put(sealed(1, 2, "m1"), { recipientNameKey: "p2" });
  const neighbour = mailbox.put(sealed(1, 3, "n1"));
  await remember(5);
  await rejectsWith(staged, "recipient-key-changed", /"p2" now has another key/);
  assert.equal((await neighbour).duplicate, false);
  assert.deepEqual(await mailbox.count(fp(3)), { items: 1, bytes: 10 });
  // Sealed for the new key, or for a name the registry does not hold, it is held.
  const sealedForNew = { ...sealed(1, 2, "m2"), recipientKey: fp(5) };
  assert.equal((await mailbox.put(sealedForNew, { recipientNameKey: "p2" })).duplicate, false);
  assert.equal(
    (await mailbox.put(sealed(1, 4, "m3"), { recipientNameKey: "p4" })).duplicate,
    false,
  );
  assert.deepEqual(await mailbox.count(fp(2)), { items: 0, bytes: 0 });
  assert.deepEqual(await mailbox.count(fp(5)), { items: 1, bytes: 10 });
});

Deno.test("mailbox: unknown-recipient when an offline recipient's name is dropped by the commit", async () => {
  const clock = new Clock();
  await using store = await openSqliteStore(":memory:", { now: clock.now, maxRegistered: 1 });
  const { mailbox, registry } = store;
  const remember = (key: number) =>
    registry.remember({
      nameKey: `p${key}`,
      name: `p${key}`,
      fingerprint: fp(key),
      announcement: {},
    });
  await remember(2);
  clock.time += 1;
  // Checked against the registry (p2 held), staged; a newcomer then evicts p2 (the registry is
  // full), which ends what is held for p2: the staged message would wait for nobody.
  const offline = mailbox.put(sealed(1, 2, "m1"), {
    recipientNameKey: "p2",
    recipientOffline: true,
  });
  const online = mailbox.put(sealed(1, 2, "m2"), { recipientNameKey: "p2" });
  assert.deepEqual((await remember(7)).evicted.map((entry) => entry.nameKey), ["p2"]);
  await rejectsWith(offline, "unknown-recipient", /Nobody called "p2"/);
  // Someone online takes it through their connection whatever the registry says: held.
  assert.equal((await online).duplicate, false);
  assert.deepEqual(await mailbox.count(fp(2)), { items: 1, bytes: 10 });
});

Deno.test("mailbox: recipient-mailbox-full when a recipient's item count would pass", async () => {
  await using store = await openSqliteStore(":memory:", { maxItemsPerRecipient: 3 });
  const { mailbox } = store;
  for (let i = 0; i < 3; i++) await mailbox.put(sealed(1, 2, `m${i}`));
  await rejectsWith(
    mailbox.put(sealed(1, 2, "m3")),
    "recipient-mailbox-full",
    /"p2"/,
    /3 items/,
    /the most is 3/,
  );
  // Notices count like messages.
  await rejectsWith(mailbox.put(notice(2, "expired")), "recipient-mailbox-full");
  assert.deepEqual((await mailbox.count(fp(2))).items, 3);
  await mailbox.put(sealed(1, 4, "elsewhere"));
  const [oldest] = await mailbox.pending(fp(2), 1);
  await mailbox.remove(fp(2), [oldest.id]);
  await mailbox.put(sealed(1, 2, "m3"));
  assert.deepEqual(messageIds(await mailbox.pending(fp(2), 10)), ["m1", "m2", "m3"]);
});

Deno.test("mailbox: recipient-mailbox-full when a recipient's bytes would pass", async () => {
  await using store = await openSqliteStore(":memory:", { maxBytesPerRecipient: 1000 });
  const { mailbox } = store;
  await mailbox.put(sealed(1, 2, "a", 600));
  await rejectsWith(
    mailbox.put(sealed(1, 2, "b", 401)),
    "recipient-mailbox-full",
    /"p2"/,
    /600 bytes are held/,
    /401 more would pass the most, 1000 bytes/,
  );
  await mailbox.put(sealed(1, 2, "c", 400));
  assert.deepEqual(await mailbox.count(fp(2)), { items: 2, bytes: 1000 });
  await rejectsWith(mailbox.put(sealed(1, 4, "huge", 1001)), "recipient-mailbox-full");
});

Deno.test("mailbox: mailbox-full when the total bytes would pass", async () => {
  await using store = await openSqliteStore(":memory:", { maxTotalBytes: 1000 });
  const { mailbox } = store;
  await mailbox.put(sealed(1, 2, "a", 600));
  await mailbox.put(sealed(1, 3, "b", 400));
  await rejectsWith(
    mailbox.put(sealed(1, 4, "c", 1)),
    "mailbox-full",
    /1000 bytes are held for everyone/,
    /1 more would pass the most, 1000 bytes/,
  );
  assert.deepEqual(await mailbox.stats(), { items: 2, bytes: 1000, recipients: 2 });
  const [held] = await mailbox.pending(fp(3), 1);
  await mailbox.remove(fp(3), [held.id]);
  await mailbox.put(sealed(1, 4, "c", 400));
});

Deno.test("mailbox: sender-mailbox-full when one sender's held bytes would pass", async () => {
  await using store = await openSqliteStore(":memory:", { maxBytesPerSender: 1000 });
  const { mailbox } = store;
  await mailbox.put(sealed(1, 2, "a", 600));
  await rejectsWith(
    mailbox.put(sealed(1, 3, "b", 401)),
    "sender-mailbox-full",
    /600 bytes of your messages are held/,
    /401 more would pass the most one sender may have held, 1000 bytes/,
  );
  // Others still get through to the same recipient, and notices have no sender.
  await mailbox.put(sealed(5, 2, "c", 900));
  await mailbox.put(notice(1, "x".repeat(900)));
  assert.deepEqual(await mailbox.stats(), { items: 3, bytes: 600 + 900 + 911, recipients: 2 });
  const [held] = await mailbox.pending(fp(2), 1);
  await mailbox.remove(fp(2), [held.id]);
  await mailbox.put(sealed(1, 3, "b", 1000));
});

Deno.test("mailbox: a notice passed on from someone (a refusal) takes from their share", async () => {
  await using store = await openSqliteStore(":memory:", { maxBytesPerSender: 1000 });
  const { mailbox } = store;
  await mailbox.put(notice(2, "x".repeat(600), 1));
  await rejectsWith(mailbox.put(sealed(1, 3, "b", 401)), "sender-mailbox-full", /611 bytes/);
  await rejectsWith(mailbox.put(notice(3, "x".repeat(400), 1)), "sender-mailbox-full");
  // Taken out of the share once acknowledged.
  const [held] = await mailbox.pending(fp(2), 1);
  await mailbox.remove(fp(2), [held.id]);
  await mailbox.put(sealed(1, 3, "b", 1000));
});

Deno.test("mailbox: a bad message id is refused with bad-message-id", async () => {
  await using store = await openSqliteStore(":memory:");
  const { mailbox } = store;
  const longest = "x".repeat(64);
  await mailbox.put(sealed(1, 2, longest));
  for (const bad of ["", "x".repeat(65), "a b", "é", "tab\t", 7 as unknown as string]) {
    await rejectsWith(mailbox.put(sealed(1, 2, bad)), "bad-message-id", /Message id /);
  }
  assert.equal((await mailbox.count(fp(2))).items, 1);
});

Deno.test("mailbox: misuse by the server's own code throws TypeError or RangeError", async () => {
  await using store = await openSqliteStore(":memory:");
  const { mailbox } = store;
  await assert.rejects(mailbox.put({ ...sealed(1, 2, "m"), recipientKey: "ABC" }), TypeError);
  await assert.rejects(mailbox.put({ ...sealed(1, 2, "m"), senderName: "" }), TypeError);
  await assert.rejects(
    mailbox.put({ ...sealed(1, 2, "m"), envelope: "text" as unknown as Uint8Array<ArrayBuffer> }),
    TypeError,
  );
  await assert.rejects(mailbox.put(notice(2, "x".repeat(MAX_NOTICE_BYTES))), RangeError);
  await assert.rejects(mailbox.put({ ...notice(2, ""), notice: undefined! }), TypeError);
  await assert.rejects(mailbox.pending(fp(2), 0), RangeError);
  await assert.rejects(mailbox.pending(fp(2), MAX_PAGE + 1), RangeError);
  await assert.rejects(mailbox.pending(fp(2), 1, { after: "x" }), RangeError);
  await assert.rejects(mailbox.remove(fp(2), Array(MAX_PAGE + 1).fill("1")), RangeError);
  await assert.rejects(mailbox.expire(-1), RangeError);
  assert.deepEqual(await mailbox.stats(), { items: 0, bytes: 0, recipients: 0 });
});

Deno.test("mailbox: items expire on the injected clock and come back without payload", async () => {
  const clock = new Clock();
  const start = clock.time;
  await using store = await openSqliteStore(":memory:", { now: clock.now, ttlMs: 1000 });
  const { mailbox } = store;
  await mailbox.put(sealed(1, 2, "old", 30));
  clock.time = start + 500;
  await mailbox.put(sealed(1, 2, "young"));
  await mailbox.put(notice(2, "note"));

  clock.time = start + 1000;
  assert.deepEqual(messageIds(await mailbox.pending(fp(2), 10)), ["young", undefined]);
  assert.deepEqual(await mailbox.expire(start + 999), []);
  const [ended] = await mailbox.expire(start + 1000);
  assert.deepEqual(ended, {
    kind: "sealed",
    recipientKey: fp(2),
    recipientName: "p2",
    senderKey: fp(1),
    senderName: "p1",
    messageId: "old",
    id: ended.id,
    queuedAt: start,
    expiresAt: start + 1000,
    bytes: 30,
    reason: "expired",
  });
  assert.deepEqual(await mailbox.count(fp(2)), { items: 2, bytes: 10 + 15 });
  const later = await mailbox.expire(start + 5000);
  assert.deepEqual(later.map((item) => [item.kind, item.reason]), [
    ["sealed", "expired"],
    ["notice", "expired"],
  ]);
  assert.deepEqual(await mailbox.stats(), { items: 0, bytes: 0, recipients: 0 });
});

Deno.test("mailbox: expire pages through many items, oldest expiry first", async () => {
  const clock = new Clock();
  await using store = await openSqliteStore(":memory:", { now: clock.now, ttlMs: 10 });
  const { mailbox } = store;
  for (let i = 0; i < 5; i++) {
    await mailbox.put(sealed(1, 2 + (i % 2), `m${i}`));
    clock.time += 1;
  }
  const pages = [];
  while (true) {
    const page = await mailbox.expire(clock.time + 100, 2);
    pages.push(page.map((item) => item.kind === "sealed" ? item.messageId : ""));
    if (page.length < 2) break;
  }
  assert.deepEqual(pages, [["m0", "m1"], ["m2", "m3"], ["m4"]]);
});

Deno.test("mailbox: counts and stats follow every put, remove and expiry", async () => {
  const clock = new Clock();
  await using store = await openSqliteStore(":memory:", { now: clock.now, ttlMs: 100 });
  const { mailbox } = store;
  await mailbox.put(sealed(1, 2, "a", 100));
  await mailbox.put(sealed(1, 2, "b", 50));
  await mailbox.put(sealed(1, 3, "c", 7));
  assert.deepEqual(await mailbox.stats(), { items: 3, bytes: 157, recipients: 2 });
  assert.deepEqual(await mailbox.count(fp(2)), { items: 2, bytes: 150 });
  const [a] = await mailbox.pending(fp(2), 1);
  await mailbox.remove(fp(2), [a.id]);
  assert.deepEqual(await mailbox.stats(), { items: 2, bytes: 57, recipients: 2 });
  await mailbox.expire(clock.time + 100);
  assert.deepEqual(await mailbox.stats(), { items: 0, bytes: 0, recipients: 0 });
  assert.deepEqual(await mailbox.count(fp(2)), { items: 0, bytes: 0 });
});

Deno.test("mailbox: ids are never reused, even across a restart", async () => {
  await using dir = await tempDir();
  const seen = new Set<string>();
  for (let round = 0; round < 2; round++) {
    await using store = await openSqliteStore(dir.path);
    for (let i = 0; i < 3; i++) {
      const { id } = await store.mailbox.put(sealed(1, 2, `r${round}m${i}`));
      assert.ok(!seen.has(id), `id ${id} was handed out before`);
      seen.add(id);
      // Removing the newest item must not free its id for the next put.
      assert.equal(await store.mailbox.remove(fp(2), [id]), 1);
    }
  }
});
