import assert from "node:assert/strict";
import { JetStreamMailbox, type JetStreamMailboxOptions } from "../server/cluster/mailbox.ts";
import type { NatsConnection } from "../server/cluster/nats.ts";
import type { MailItem } from "../server/store/mod.ts";
import { connectNode, NATS_SERVER_PRESENT, NATS_SKIP_NOTE, TestNats } from "./_cluster.ts";
import { bytes, Clock, fp, notice, rejectsWith, sealed } from "./_store.ts";
import { deferred } from "../shared/async.ts";
import { within } from "./_deadline.ts";

function clusterTest(name: string, fn: () => Promise<void>): void {
  Deno.test({ name: `${name}${NATS_SKIP_NOTE}`, ignore: !NATS_SERVER_PRESENT, fn });
}

function messageIds(items: MailItem[]): (string | undefined)[] {
  return items.map((item) => item.kind === "sealed" ? item.messageId : undefined);
}

/** A node's connection and mailbox, closed together. */
async function node(nats: TestNats, options: JetStreamMailboxOptions = {}) {
  const nc: NatsConnection = await connectNode(nats, "mail-node");
  const mailbox = await JetStreamMailbox.open(nc, options);
  return { nc, mailbox, [Symbol.asyncDispose]: () => nc.close() };
}

clusterTest("cluster mailbox: held items come back whole, in order, once each", async () => {
  await using nats = await TestNats.start();
  const clock = new Clock();
  await using n = await node(nats, { now: clock.now, ttlMs: 5000 });
  const { mailbox } = n;
  const first = await mailbox.put(sealed(1, 2, "m1", 5));
  clock.time += 1;
  await mailbox.put(sealed(3, 2, "m2"));
  await mailbox.put(notice(2, "hello"));
  await mailbox.put(sealed(1, 4, "for-p4"));
  await mailbox.put(sealed(1, 2, "m3"));
  assert.deepEqual(first, { id: first.id, expiresAt: clock.time - 1 + 5000, duplicate: false });
  // The same message id from the same sender is held once.
  assert.deepEqual(await mailbox.put(sealed(1, 2, "m1", 5)), { ...first, duplicate: true });

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
  assert.deepEqual(held[2].kind === "notice" && held[2].notice, { text: "hello" });
  assert.deepEqual(messageIds(await mailbox.pending(fp(2), 2, { after: held[1].id })), [
    undefined,
    "m3",
  ]);
  assert.deepEqual(messageIds(await mailbox.pending(fp(2), 10, { maxBytes: 1 })), ["m1"]);
  assert.deepEqual(await mailbox.count(fp(2)), {
    items: 4,
    bytes: 5 + 10 + JSON.stringify({ text: "hello" }).length + 10,
  });

  assert.equal(await mailbox.remove(fp(2), held.slice(0, 2).map((item) => item.id)), 2);
  assert.deepEqual(messageIds(await mailbox.pending(fp(2), 10)), [undefined, "m3"]);
  // Removing is per recipient: p2's key cannot remove p4's item; junk ids are skipped.
  const [forP4] = await mailbox.pending(fp(4), 1);
  assert.equal(await mailbox.remove(fp(2), [forP4.id, held[0].id, "nonsense", "-1"]), 0);
  assert.equal((await mailbox.pending(fp(4), 1)).length, 1);
  assert.equal((await mailbox.stats()).items, 3);
  await rejectsWith(mailbox.put(sealed(1, 2, "has space")), "bad-message-id");
});

clusterTest(
  "cluster mailbox: two nodes racing past a recipient's bound hold exactly the bound",
  async () => {
    await using nats = await TestNats.start();
    const limits = { maxItemsPerRecipient: 5, maxBytesPerRecipient: 1_000_000 };
    await using a = await node(nats, limits);
    await using b = await node(nats, limits);
    const outcomes = await Promise.all(
      Array.from({ length: 24 }, (_, i) =>
        (i % 2 ? a : b).mailbox.put(sealed(1, 2, `m${i}`)).then(
          () => "held",
          (error) => error.code,
        )),
    );
    assert.equal(outcomes.filter((outcome) => outcome === "held").length, 5, String(outcomes));
    assert.equal(outcomes.filter((o) => o === "recipient-mailbox-full").length, 19);
    assert.equal((await a.mailbox.count(fp(2))).items, 5);
    // The byte bound too.
    await using c = await node(nats, { maxBytesPerRecipient: 100 });
    await c.mailbox.put(sealed(1, 3, "big", 90));
    await rejectsWith(
      c.mailbox.put(sealed(1, 3, "more", 20)),
      "recipient-mailbox-full",
      /90 bytes/,
    );
  },
);

clusterTest(
  "cluster mailbox: one sender's held bytes are bounded across nodes, and freed as mail leaves",
  async () => {
    await using nats = await TestNats.start();
    const clock = new Clock();
    const limits = { maxBytesPerSender: 1000, now: clock.now, ttlMs: 1000 };
    await using a = await node(nats, limits);
    await using b = await node(nats, limits);
    await a.mailbox.put(sealed(1, 2, "to-p2", 600));
    await b.mailbox.put(sealed(1, 3, "to-p3", 300));
    // On either node, to anyone: the sender's share is the cluster's, not a node's.
    await rejectsWith(b.mailbox.put(sealed(1, 4, "one-more", 200)), "sender-mailbox-full", /900/);
    await rejectsWith(a.mailbox.put(sealed(1, 2, "again", 101)), "sender-mailbox-full");
    // Another sender is not held back by the first one's share.
    await b.mailbox.put(sealed(5, 4, "other-sender", 200));
    // Acknowledged mail leaves the sender's share (and its recipient's) on every node.
    const [toP2] = await b.mailbox.pending(fp(2), 1);
    assert.equal(await b.mailbox.remove(fp(2), [toP2.id]), 1);
    await a.mailbox.put(sealed(1, 4, "one-more", 700));
    await rejectsWith(b.mailbox.put(sealed(1, 4, "past", 1)), "sender-mailbox-full", /1000/);
    // So does expired mail, once a node sweeps it.
    clock.time += 2000;
    assert.equal((await a.mailbox.expire(clock.time)).length, 3);
    await b.mailbox.put(sealed(1, 2, "after-sweep", 1000));
  },
);

clusterTest(
  "cluster mailbox: a put costs the same few requests however much its recipient holds",
  async () => {
    await using nats = await TestNats.start();
    await using n = await node(nats, { maxItemsPerRecipient: 200 });
    const requestsOfPut = async (messageId: string) => {
      const before = n.nc.stats().outMsgs;
      await n.mailbox.put(sealed(1, 2, messageId, 1000));
      return n.nc.stats().outMsgs - before;
    };
    await n.mailbox.put(sealed(1, 2, "first"));
    const withOne = await requestsOfPut("second");
    for (let i = 0; i < 60; i++) await n.mailbox.put(sealed(1, 2, `filler-${i}`));
    // Counted, not read: a put read every item held for its recipient before (62 requests here).
    assert.equal(await requestsOfPut("last"), withOne);
    assert.ok(withOne <= 8, `${withOne} requests for one put`);
    assert.deepEqual(await n.mailbox.count(fp(2)), { items: 63, bytes: 2000 + 61 * 10 });
  },
);

clusterTest(
  "cluster mailbox: other nodes are woken by a put without receiving its envelope",
  async () => {
    await using nats = await TestNats.start();
    await using a = await node(nats);
    await using b = await node(nats);
    const woken = deferred<string>();
    const stop = b.mailbox.watch(woken.resolve);
    try {
      await b.nc.flush(); // the subscription is in place before the put
      const before = b.nc.stats().inBytes;
      await a.mailbox.put(sealed(1, 2, "large", 200_000));
      assert.equal(await within(woken.promise, 20_000, "the wake-up on node b"), fp(2));
      const received = b.nc.stats().inBytes - before;
      assert.ok(received < 4096, `node b received ${received} bytes for a 200 kB put`);
      // The recipient's node reads the envelope when it delivers.
      const [held] = await b.mailbox.pending(fp(2), 1);
      assert.deepEqual(held.kind === "sealed" && held.envelope, bytes(200_000, 2));
    } finally {
      stop();
    }
  },
);

clusterTest("cluster mailbox: the whole mailbox's bound refuses what would pass it", async () => {
  await using nats = await TestNats.start();
  await using n = await node(nats, { maxTotalBytes: 4096 });
  await n.mailbox.put(sealed(1, 2, "fits", 1000));
  await rejectsWith(n.mailbox.put(sealed(1, 2, "too-much", 4000)), "mailbox-full");
});

clusterTest(
  "cluster mailbox: expired items leave with their parties, so senders can be told",
  async () => {
    await using nats = await TestNats.start();
    const clock = new Clock();
    await using n = await node(nats, { now: clock.now, ttlMs: 1000 });
    await n.mailbox.put(sealed(1, 2, "old"));
    clock.time += 600;
    await n.mailbox.put(sealed(1, 2, "young"));
    clock.time += 500;
    assert.deepEqual(messageIds(await n.mailbox.pending(fp(2), 10)), ["young"]);
    const ended = await n.mailbox.expire(clock.time);
    assert.deepEqual(ended.map((item) => [item.kind === "sealed" && item.messageId, item.reason]), [
      ["old", "expired"],
    ]);
    assert.equal(ended[0].recipientKey, fp(2));
    assert.deepEqual(await n.mailbox.expire(clock.time), []);
    assert.equal((await n.mailbox.count(fp(2))).items, 1);
  },
);

clusterTest("cluster mailbox: held mail survives a node restart and a NATS restart", async () => {
  await using nats = await TestNats.start();
  {
    await using n = await node(nats);
    await n.mailbox.put(sealed(1, 2, "kept-1", 300));
    await n.mailbox.put(notice(2, "kept-2"));
  } // the node goes away
  await nats.stop();
  await nats.restart();
  await using again = await node(nats);
  const held = await again.mailbox.pending(fp(2), 10);
  assert.deepEqual(messageIds(held), ["kept-1", undefined]);
  assert.deepEqual(held[0].kind === "sealed" && held[0].envelope, bytes(300, 2));
});
