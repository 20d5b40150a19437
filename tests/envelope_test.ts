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

/** Alice's outbox and Bob's inbox, plus three sealed messages from Alice to Bob. */
async function conversation(count = 3) {
  const outbox = new Outbox(alice, "alice");
  const inbox = new Inbox(bob, "bob", newEpoch());
  const sealed = [];
  for (let i = 0; i < count; i++) {
    sealed.push(await outbox.seal("bob", bob.public, inbox.epoch, `message ${i}`, 1000 + i));
  }
  return { outbox, inbox, sealed, open: (bytes: Uint8Array) => inbox.open("alice", alice.public, bytes) };
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

Deno.test("only the first message of a session carries RSA; text of any kind round-trips", async () => {
  const { outbox, inbox, sealed, open } = await conversation(2);
  assert.ok(sealed[0].bytes.length > sealed[1].bytes.length + 500);
  await open(sealed[0].bytes);
  const texts = ["", "héllo 👋 \u0000 \"quoted\" \\", "\uD800 lone surrogate", "x".repeat(100)];
  for (const text of texts) {
    const message = await outbox.seal("bob", bob.public, inbox.epoch, text);
    assert.equal((await open(message.bytes)).text, text);
  }
});

Deno.test("message size is capped and the largest envelope fits MAX_ENVELOPE_BYTES", async () => {
  const outbox = new Outbox(alice, "alice");
  const inbox = new Inbox(bob, "bob", newEpoch());
  const tooLong = "é".repeat(MAX_TEXT_BYTES / 2) + "x";
  await rejectsWith(outbox.seal("bob", bob.public, inbox.epoch, tooLong), "message-too-long");
  const worst = "\u0001".repeat(MAX_TEXT_BYTES); // JSON escapes each byte into six
  const sealed = await outbox.seal("bob", bob.public, inbox.epoch, worst);
  assert.ok(sealed.bytes.length <= MAX_ENVELOPE_BYTES);
  assert.equal((await inbox.open("alice", alice.public, sealed.bytes)).text, worst);
});

Deno.test("only the recipient can open a message", async () => {
  const { sealed } = await conversation(1);
  const carolInbox = new Inbox(carol, "carol", newEpoch());
  await rejectsWith(carolInbox.open("alice", alice.public, sealed[0].bytes), "redirected");
  // Carol connecting under Bob's name still lacks Bob's keys: the session names Bob's fingerprint.
  const fakeBob = new Inbox(carol, "bob", newEpoch());
  const forFake = await new Outbox(alice, "alice").seal("bob", bob.public, fakeBob.epoch, "hi");
  await rejectsWith(fakeBob.open("alice", alice.public, forFake.bytes), "bad-signature");
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
  assert.deepEqual(
    [...codes.keys()].sort(),
    ["bad-envelope", "bad-signature", "redirected", "replay", "stale-session", "tampered", "unknown-session"]
      .filter((code) => codes.has(code)),
  );
  assert.ok(codes.has("tampered") && codes.has("bad-signature"));
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
  const { sealed } = await conversation(2);
  const dan = new Inbox(carol, "dan", newEpoch());
  await rejectsWith(dan.open("alice", alice.public, sealed[0].bytes), "redirected");
  // The server also rewrites the recipient name inside the envelope.
  const [init, next] = sealed.map((m) => rewrite(m.bytes, "bob", "dan"));
  await rejectsWith(dan.open("alice", alice.public, init), "bad-signature");
  await rejectsWith(dan.open("alice", alice.public, next), "unknown-session");
});

Deno.test("a message presented as from another sender is rejected", async () => {
  const { sealed, inbox, open } = await conversation(2);
  await rejectsWith(inbox.open("carol", carol.public, sealed[0].bytes), "redirected");
  // The server also rewrites the sender name inside the envelope.
  const [init, next] = sealed.map((m) => rewrite(m.bytes, "alice", "carol"));
  await rejectsWith(inbox.open("carol", carol.public, init), "bad-signature");
  await rejectsWith(inbox.open("carol", carol.public, next), "unknown-session");
  // Even while Carol has a session of her own with Bob.
  const fromCarol = await new Outbox(carol, "carol").seal("bob", bob.public, inbox.epoch, "hey");
  await inbox.open("carol", carol.public, fromCarol.bytes);
  await rejectsWith(inbox.open("carol", carol.public, next), "unknown-session");
  // Alice's genuine messages still open.
  await open(sealed[0].bytes);
  await open(sealed[1].bytes);
});

Deno.test("a session is bound to the sender's pinned key", async () => {
  const { sealed, open, inbox } = await conversation(2);
  await rejectsWith(inbox.open("alice", carol.public, sealed[0].bytes), "bad-signature");
  await open(sealed[0].bytes);
  await rejectsWith(inbox.open("alice", carol.public, sealed[1].bytes), "stale-session");
});

Deno.test("an old session replayed after the recipient reconnects is rejected", async () => {
  const { outbox, sealed, open } = await conversation(2);
  await open(sealed[0].bytes);
  await open(sealed[1].bytes);
  const reconnected = new Inbox(bob, "bob", newEpoch());
  await rejectsWith(reconnected.open("alice", alice.public, sealed[0].bytes), "stale-session");
  await rejectsWith(reconnected.open("alice", alice.public, sealed[1].bytes), "unknown-session");
  // Alice sees the new epoch and starts a new session, which opens.
  const fresh = await outbox.seal("bob", bob.public, reconnected.epoch, "again");
  assert.notEqual(fresh.id.split(":")[0], sealed[0].id.split(":")[0]);
  assert.equal(fresh.id.split(":")[1], "0");
  assert.equal((await reconnected.open("alice", alice.public, fresh.bytes)).text, "again");
});

Deno.test("a lost first message surfaces unknown-session; forgetting the session recovers", async () => {
  const { outbox, inbox, sealed, open } = await conversation(2);
  await rejectsWith(open(sealed[1].bytes), "unknown-session");
  outbox.forget("bob");
  const restarted = await outbox.seal("bob", bob.public, inbox.epoch, "restart");
  assert.equal((await open(restarted.bytes)).text, "restart");
  // The superseded session is refused, even its first message.
  await rejectsWith(open(sealed[0].bytes), "replay");
  const [first, second] = (await conversation(0)).sealed;
  assert.equal(first, second);
});

Deno.test("a newer session from the same sender supersedes the older one", async () => {
  const { outbox, inbox, sealed, open } = await conversation(2);
  await open(sealed[0].bytes);
  outbox.forget("bob");
  await open((await outbox.seal("bob", bob.public, inbox.epoch, "new")).bytes);
  await rejectsWith(open(sealed[1].bytes), "stale-session");
  await rejectsWith(open(sealed[0].bytes), "replay");
});

Deno.test("sealing validates the recipient's name, epoch and keys", async () => {
  const outbox = new Outbox(alice, "alice");
  const epoch = newEpoch();
  await rejectsWith(outbox.seal("", bob.public, epoch, "x"), "bad-name");
  await rejectsWith(outbox.seal("bob", bob.public, "AAAA", "x"), "bad-epoch");
  await rejectsWith(
    outbox.seal("bob", { ...bob.public, encryptionKey: "AAAA" }, epoch, "x"),
    "bad-key",
  );
  assert.throws(() => new Inbox(bob, "bob", "nope"), ReelayError);
});
