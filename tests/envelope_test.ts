import assert from "node:assert/strict";
import { ReelayError } from "../shared/errors.ts";
import {
  Identity,
  Inbox,
  MAX_ENVELOPE_BYTES,
  MAX_TEXT_BYTES,
  newEpoch,
  Outbox,
} from "../shared/crypto/mod.ts";

// "alice" and "carol" have 5-byte names, "bob" and "dan" 3-byte ones, so a name can be rewritten
// in place inside an envelope, as a malicious server could. Dan uses Carol's keys.
const [alice, bob, carol] = await Promise.all([
  Identity.generate(),
  Identity.generate(),
  Identity.generate(),
]);

async function rejectsWith(promise: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof ReelayError, `expected a ReelayError, got ${error}`);
    assert.equal(error.code, code, error.message);
    return true;
  });
}

/** Returns the ReelayError code `promise` rejects with, failing if it resolves. */
async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof ReelayError, `expected a ReelayError, got ${error}`);
    return error.code;
  }
  assert.fail("expected a rejection");
}

/** Replaces the first occurrence of `from` with `to` (same length) in a copy of `bytes`. */
function rewrite(bytes: Uint8Array, from: string, to: string): Uint8Array {
  const [needle, swap] = [new TextEncoder().encode(from), new TextEncoder().encode(to)];
  assert.equal(needle.length, swap.length);
  for (let i = 0; i + needle.length <= bytes.length; i++) {
    if (needle.every((byte, j) => bytes[i + j] === byte)) {
      const out = bytes.slice();
      out.set(swap, i);
      return out;
    }
  }
  throw new Error(`"${from}" not found`);
}

/**
 * Removes the session init from an envelope (as a sender may once the session is live), by the
 * wire layout: flags at byte 1, init after the names, session id and counter, 556 bytes long.
 */
function stripInit(bytes: Uint8Array): Uint8Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const afterSender = 4 + view.getUint16(2);
  const start = afterSender + 2 + view.getUint16(afterSender) + 16 + 8;
  const initLength = 16 + 16 + 8 + 2 + view.getUint16(start + 40) + 2 +
    view.getUint16(start + 42 + view.getUint16(start + 40));
  assert.equal(bytes[1], 1);
  assert.equal(initLength, 556);
  const out = new Uint8Array(bytes.length - initLength);
  out.set(bytes.subarray(0, start));
  out.set(bytes.subarray(start + initLength), start);
  out[1] = 0;
  return out;
}

/** Alice's outbox and Bob's inbox, plus `count` messages sealed from Alice to Bob. */
async function conversation(count = 3) {
  const outbox = new Outbox(alice, "alice", newEpoch());
  const inbox = new Inbox(bob, "bob", newEpoch());
  const sealed = [];
  for (let i = 0; i < count; i++) {
    sealed.push(await outbox.seal("bob", bob.public, inbox.epoch, `message ${i}`, 1000 + i));
  }
  const open = (bytes: Uint8Array) => inbox.open("alice", alice.public, outbox.epoch, bytes);
  const seal = (text: string) => outbox.seal("bob", bob.public, inbox.epoch, text);
  return { outbox, inbox, sealed, open, seal };
}

Deno.test("messages round-trip with ids, send times and no gaps", async () => {
  const { sealed, open } = await conversation();
  for (const [i, message] of sealed.entries()) {
    const opened = await open(message.bytes);
    assert.deepEqual(opened, {
      from: "alice",
      text: `message ${i}`,
      sentAt: 1000 + i,
      id: message.id,
      missing: 0,
    });
  }
  const [sessionId] = sealed[0].id.split(":");
  assert.match(sessionId, /^[0-9a-f]{32}$/);
  assert.deepEqual(sealed.map((m) => m.id), [0, 1, 2].map((n) => `${sessionId}:${n}`));
});

Deno.test("any text round-trips", async () => {
  const { sealed, open, seal } = await conversation(1);
  await open(sealed[0].bytes);
  const texts = ["", 'héllo 👋 \u0000 "quoted" \\', "\uD800 lone surrogate", "x".repeat(100)];
  for (const text of texts) {
    assert.equal((await open((await seal(text)).bytes)).text, text);
  }
});

Deno.test("message size is capped and the largest envelope fits MAX_ENVELOPE_BYTES", async () => {
  const { open, seal } = await conversation(0);
  await rejectsWith(seal("é".repeat(MAX_TEXT_BYTES / 2) + "x"), "message-too-long");
  await rejectsWith(seal("\u0001".repeat(MAX_TEXT_BYTES)), "message-too-long"); // 6x escaped
  const largest = '"'.repeat(MAX_TEXT_BYTES); // JSON escapes each into two bytes
  const sealed = await seal(largest);
  assert.ok(sealed.bytes.length <= MAX_ENVELOPE_BYTES);
  assert.equal((await open(sealed.bytes)).text, largest);
});

Deno.test("only the recipient can open a message", async () => {
  const { outbox, sealed } = await conversation(1);
  const carolInbox = new Inbox(carol, "carol", newEpoch());
  const asCarol = carolInbox.open("alice", alice.public, outbox.epoch, sealed[0].bytes);
  await rejectsWith(asCarol, "redirected");
  // Carol connecting under Bob's name still lacks Bob's keys: the session names Bob's fingerprint.
  const fakeBob = new Inbox(carol, "bob", newEpoch());
  const forFake = await outbox.seal("bob", bob.public, fakeBob.epoch, "hi");
  await rejectsWith(
    fakeBob.open("alice", alice.public, outbox.epoch, forFake.bytes),
    "bad-signature",
  );
});

Deno.test("every single-bit flip of an envelope is rejected", async () => {
  const { sealed, open } = await conversation(2);
  const codes = new Map<string, number>();
  for (const message of sealed) {
    for (let bit = 0; bit < message.bytes.length * 8; bit++) {
      const flipped = message.bytes.slice();
      flipped[bit >> 3] ^= 1 << (bit & 7);
      const code = await codeOf(open(flipped));
      codes.set(code, (codes.get(code) ?? 0) + 1);
    }
    // No rejected flip changed any state: the genuine message still opens, in order.
    assert.equal((await open(message.bytes)).id, message.id);
  }
  for (const code of ["bad-envelope", "redirected", "bad-signature", "tampered"]) {
    assert.ok(codes.has(code), `no flip was rejected as ${code}: ${[...codes]}`);
  }
});

Deno.test("every truncation, and any extra byte, is rejected as bad-envelope", async () => {
  const { sealed, open } = await conversation(2);
  for (const message of sealed) {
    for (let length = 0; length < message.bytes.length; length++) {
      await rejectsWith(open(message.bytes.subarray(0, length)), "bad-envelope");
    }
    const longer = new Uint8Array(message.bytes.length + 1);
    longer.set(message.bytes);
    await rejectsWith(open(longer), "bad-envelope");
    await open(message.bytes);
  }
  await rejectsWith(open(new Uint8Array(MAX_ENVELOPE_BYTES + 1)), "bad-envelope");
});

Deno.test("a replayed message or session is rejected", async () => {
  const { sealed, open } = await conversation(2);
  await open(sealed[0].bytes);
  await rejectsWith(open(sealed[0].bytes), "replay");
  await open(sealed[1].bytes);
  await rejectsWith(open(sealed[1].bytes), "replay");
  await rejectsWith(open(sealed[0].bytes), "replay");
});

Deno.test("concurrent deliveries of one envelope are accepted once", async () => {
  const { sealed, open } = await conversation(2);
  for (const message of sealed) {
    const results = await Promise.allSettled([open(message.bytes), open(message.bytes)]);
    assert.deepEqual(results.map((r) => r.status).sort(), ["fulfilled", "rejected"]);
  }
});

Deno.test("a reordered message is rejected and a gap is reported as missing", async () => {
  const { sealed, open } = await conversation(4);
  await open(sealed[0].bytes);
  assert.equal((await open(sealed[2].bytes)).missing, 1);
  await rejectsWith(open(sealed[1].bytes), "replay");
  assert.equal((await open(sealed[3].bytes)).missing, 0);
});

Deno.test("a message handed to another recipient is rejected", async () => {
  const { outbox, sealed } = await conversation(2);
  const dan = new Inbox(carol, "dan", newEpoch());
  const danOpen = (bytes: Uint8Array) => dan.open("alice", alice.public, outbox.epoch, bytes);
  await rejectsWith(danOpen(sealed[0].bytes), "redirected");
  // The server also rewrites the recipient name inside the envelope.
  for (const message of sealed) {
    await rejectsWith(danOpen(rewrite(message.bytes, "bob", "dan")), "stale-session"); // Bob's epoch
  }
  await rejectsWith(danOpen(rewrite(stripInit(sealed[1].bytes), "bob", "dan")), "unknown-session");
  // Even when the server also sends Dan's epoch in place of Bob's.
  const forBob = await outbox.seal("bob", bob.public, dan.epoch, "meant for bob");
  await rejectsWith(danOpen(rewrite(forBob.bytes, "bob", "dan")), "bad-signature");
});

Deno.test("a message presented as from another sender is rejected", async () => {
  const { outbox, sealed, inbox, open } = await conversation(2);
  const carolOutbox = new Outbox(carol, "carol", newEpoch());
  const asCarol = (bytes: Uint8Array) =>
    inbox.open("carol", carol.public, carolOutbox.epoch, bytes);
  await rejectsWith(asCarol(sealed[0].bytes), "redirected");
  // The server also rewrites the sender name inside the envelope.
  const [init, next] = sealed.map((m) => rewrite(m.bytes, "alice", "carol"));
  await rejectsWith(asCarol(init), "stale-session"); // Alice's epoch is not Carol's
  await rejectsWith(inbox.open("carol", carol.public, outbox.epoch, init), "bad-signature");
  await rejectsWith(asCarol(stripInit(next)), "unknown-session");
  // Even while Carol has a live session of her own with Bob.
  await asCarol((await carolOutbox.seal("bob", bob.public, inbox.epoch, "hey")).bytes);
  await rejectsWith(asCarol(next), "stale-session");
  await rejectsWith(inbox.open("carol", carol.public, outbox.epoch, next), "bad-signature");
  await rejectsWith(asCarol(stripInit(next)), "unknown-session");
  // Alice's genuine messages still open.
  await open(sealed[0].bytes);
  await open(sealed[1].bytes);
});

Deno.test("a session is bound to the sender's pinned key", async () => {
  const { outbox, sealed, open, inbox } = await conversation(2);
  const withKey = (bytes: Uint8Array) => inbox.open("alice", carol.public, outbox.epoch, bytes);
  await rejectsWith(withKey(sealed[0].bytes), "bad-signature");
  await open(sealed[0].bytes);
  await rejectsWith(withKey(sealed[1].bytes), "stale-session");
});

Deno.test("an old session replayed after the recipient reconnects is rejected", async () => {
  const { outbox, sealed, open } = await conversation(2);
  await open(sealed[0].bytes);
  await open(sealed[1].bytes);
  const reconnected = new Inbox(bob, "bob", newEpoch());
  const openAgain = (bytes: Uint8Array) =>
    reconnected.open("alice", alice.public, outbox.epoch, bytes);
  await rejectsWith(openAgain(sealed[0].bytes), "stale-session");
  await rejectsWith(openAgain(sealed[1].bytes), "stale-session");
  await rejectsWith(openAgain(stripInit(sealed[1].bytes)), "unknown-session");
  // Alice sees the new epoch and starts a new session, which opens.
  const fresh = await outbox.seal("bob", bob.public, reconnected.epoch, "again");
  assert.notEqual(fresh.id.split(":")[0], sealed[0].id.split(":")[0]);
  assert.equal(fresh.id.split(":")[1], "0");
  assert.equal((await openAgain(fresh.bytes)).text, "again");
});

Deno.test("a session from the sender's previous connection is rejected", async () => {
  const { inbox, sealed } = await conversation(1);
  // Alice reconnected: her directory entry now shows a new epoch; her old session is held back.
  const aliceAgain = new Outbox(alice, "alice", newEpoch());
  const fresh = await aliceAgain.seal("bob", bob.public, inbox.epoch, "new connection");
  const open = (bytes: Uint8Array) => inbox.open("alice", alice.public, aliceAgain.epoch, bytes);
  await open(fresh.bytes);
  await rejectsWith(open(sealed[0].bytes), "stale-session");
});

Deno.test("a session from the sender's previous connection is rejected when it comes first", async () => {
  const { inbox, sealed } = await conversation(1);
  // The server holds back alice's old session until she has reconnected, then delivers it
  // before anything of her new connection: her current epoch alone must refuse it.
  const aliceAgain = new Outbox(alice, "alice", newEpoch());
  await rejectsWith(
    inbox.open("alice", alice.public, aliceAgain.epoch, sealed[0].bytes),
    "stale-session",
  );
});

Deno.test("a lost or spoiled first message does not cut the session off", async () => {
  const { sealed, open } = await conversation(3);
  const spoiled = sealed[0].bytes.slice();
  spoiled[spoiled.length - 1] ^= 1;
  await rejectsWith(open(spoiled), "tampered");
  assert.equal((await open(sealed[1].bytes)).missing, 1);
  await rejectsWith(open(sealed[0].bytes), "replay"); // too late: reordered
  assert.equal((await open(sealed[2].bytes)).missing, 0);
});

Deno.test("later envelopes may omit the init of the live session, never of another", async () => {
  const { sealed, open } = await conversation(3);
  await rejectsWith(open(stripInit(sealed[1].bytes)), "unknown-session");
  await open(sealed[0].bytes);
  assert.equal((await open(stripInit(sealed[1].bytes))).text, "message 1");
  await rejectsWith(open(stripInit(sealed[1].bytes)), "replay");
});

Deno.test("a newer session from the same sender supersedes the older one", async () => {
  const { outbox, sealed, open, seal } = await conversation(3);
  await open(sealed[0].bytes);
  outbox.forget("bob");
  const newer = await seal("new");
  assert.notEqual(newer.id.split(":")[0], sealed[0].id.split(":")[0]);
  await open(newer.bytes);
  // Messages of the older session, held back and delivered late, cannot slip in.
  await rejectsWith(open(sealed[1].bytes), "stale-session");
  await rejectsWith(open(sealed[2].bytes), "stale-session");
  await rejectsWith(open(stripInit(sealed[2].bytes)), "unknown-session");
});

Deno.test("sealing and opening validate names, epochs and keys", async () => {
  const { outbox, inbox, seal } = await conversation(0);
  const epoch = newEpoch();
  await rejectsWith(outbox.seal("", bob.public, epoch, "x"), "bad-name");
  await rejectsWith(outbox.seal("bob", bob.public, "AAAA", "x"), "bad-epoch");
  const badKeys = { ...bob.public, encryptionKey: "AAAA" };
  await rejectsWith(outbox.seal("bob", badKeys, epoch, "x"), "bad-key");
  const sealed = await seal("x");
  await rejectsWith(inbox.open("alice", alice.public, "AAAA", sealed.bytes), "bad-epoch");
  assert.throws(() => new Inbox(bob, "bob", "nope"), ReelayError);
  assert.throws(() => new Outbox(alice, "", epoch), ReelayError);
});
