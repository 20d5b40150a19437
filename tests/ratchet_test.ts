import assert from "node:assert/strict";
import { createHmac, hkdfSync } from "node:crypto";
import { type Bytes, encodeFields, randomBytes } from "../shared/bytes.ts";
import {
  HISTORY_CHAINS,
  kdfChain,
  kdfRoot,
  MAX_RATCHET_PLAINTEXT_BYTES,
  MAX_SKIP,
  Ratchet,
  RATCHET_HEADER_BYTES,
} from "../shared/crypto/mod.ts";
import { read, rejectsWith, text } from "../testing/conversation.ts";

async function pair(ad: Bytes = text("alice|bob")): Promise<{ alice: Ratchet; bob: Ratchet }> {
  const sessionKey = randomBytes(32);
  const bob = await Ratchet.responder(sessionKey, randomBytes(32), ad);
  const alice = await Ratchet.initiator(sessionKey, bob.ratchetPublicKey, ad);
  return { alice, bob };
}

/** A conversation already going both ways (Alice spoke, Bob answered, Alice read it). */
async function talking(): Promise<{ alice: Ratchet; bob: Ratchet }> {
  const { alice, bob } = await pair();
  await bob.decrypt(await alice.encrypt(text("hello")));
  await alice.decrypt(await bob.encrypt(text("hi")));
  return { alice, bob };
}

function snapshot(ratchet: Ratchet): string {
  return JSON.stringify(ratchet);
}

function flipped(message: Bytes, index: number, bit = 0): Bytes {
  const copy = message.slice();
  copy[index] ^= 1 << bit;
  return copy;
}

async function restored(ratchet: Ratchet): Promise<Ratchet> {
  return await Ratchet.fromJSON(JSON.parse(JSON.stringify(ratchet)));
}

// Who sends each run of messages: alternating, with runs of different lengths.
const RUNS = [1, 3, 1, 2, 5, 1, 1, 4, 2, 1, 3, 1];

Deno.test("a conversation goes both ways through many changes of direction", async () => {
  const { alice, bob } = await pair();
  const sides = [alice, bob];
  let count = 0;
  for (const [run, length] of RUNS.entries()) {
    const [sender, receiver] = run % 2 === 0 ? sides : [...sides].reverse();
    for (let i = 0; i < length; i++) {
      const body = `message ${count++} in run ${run}`;
      const opened = await receiver.decrypt(await sender.encrypt(text(body)));
      assert.equal(read(opened.plaintext), body);
      assert.equal(opened.missing, 0);
    }
  }
});

Deno.test("every message has a new key and every change of direction a new DH key", async () => {
  const { alice, bob } = await pair();
  const messageChains: string[] = [];
  const ratchetKeys: Record<string, string[]> = { alice: [], bob: [] };
  for (const [run, length] of RUNS.entries()) {
    const [sender, receiver, name] = run % 2 === 0
      ? [alice, bob, "alice"] as const
      : [bob, alice, "bob"] as const;
    for (let i = 0; i < length; i++) {
      const before = await sender.debugState();
      const message = await sender.encrypt(text(`run ${run}`));
      const after = await sender.debugState();
      assert.notEqual(after.sendingChain, before.sendingChain);
      assert.equal(after.sendingRatchetKey, before.sendingRatchetKey, "no DH step while sending");
      assert.equal(after.sent, before.sent + 1);
      messageChains.push(after.sendingChain!);
      const receivedBefore = await receiver.debugState();
      await receiver.decrypt(message);
      const received = await receiver.debugState();
      assert.notEqual(received.receivingChain, receivedBefore.receivingChain);
      assert.equal(received.receivingChain, after.sendingChain, "both ends step the same chain");
      assert.equal(received.receivingRatchetKey, after.sendingRatchetKey);
      if (i === 0) ratchetKeys[name].push(after.sendingRatchetKey);
    }
  }
  const total = RUNS.reduce((sum, n) => sum + n, 0);
  assert.equal(new Set(messageChains).size, total, "a chain key is never seen twice");
  const allKeys = [...ratchetKeys.alice, ...ratchetKeys.bob];
  assert.equal(allKeys.length, RUNS.length);
  assert.equal(
    new Set(allKeys).size,
    RUNS.length,
    "a new ratchet key for every change of direction",
  );
});

Deno.test("a replayed message is refused and changes nothing", async () => {
  const { alice, bob } = await talking();
  const message = await alice.encrypt(text("once"));
  await bob.decrypt(message);
  const before = snapshot(bob);
  await rejectsWith(bob.decrypt(message), "replayed");
  assert.equal(snapshot(bob), before);
  assert.equal(read((await bob.decrypt(await alice.encrypt(text("next")))).plaintext), "next");
});

Deno.test("a reordered message is refused as late after its gap was reported", async () => {
  const { alice, bob } = await talking();
  const [m0, m1, m2, m3] = [
    await alice.encrypt(text("0")),
    await alice.encrypt(text("1")),
    await alice.encrypt(text("2")),
    await alice.encrypt(text("3")),
  ];
  assert.equal((await bob.decrypt(m0)).missing, 0);
  const opened = await bob.decrypt(m3);
  assert.equal(read(opened.plaintext), "3");
  assert.equal(opened.missing, 2);
  const before = snapshot(bob);
  await rejectsWith(bob.decrypt(m1), "late");
  await rejectsWith(bob.decrypt(m2), "late");
  await rejectsWith(bob.decrypt(m3), "replayed");
  assert.equal(snapshot(bob), before);
});

Deno.test("the unread rest of the previous chain is reported as missing", async () => {
  const { alice, bob } = await talking();
  const a0 = await alice.encrypt(text("a0"));
  const a1 = await alice.encrypt(text("a1"));
  const a2 = await alice.encrypt(text("a2"));
  await bob.decrypt(a0);
  await alice.decrypt(await bob.encrypt(text("b0")));
  const opened = await bob.decrypt(await alice.encrypt(text("a3, new chain")));
  assert.equal(read(opened.plaintext), "a3, new chain");
  assert.equal(opened.missing, 2, "a1 and a2 never came");
  await rejectsWith(bob.decrypt(a1), "late");
  await rejectsWith(bob.decrypt(a2), "late");
  await rejectsWith(bob.decrypt(a0), "replayed");
});

Deno.test("tampered messages are refused and change nothing", async () => {
  const { alice, bob } = await talking();
  const message = await alice.encrypt(text("genuine"));
  const before = snapshot(bob);
  const cases: [string, Bytes, string][] = [
    ["version", flipped(message, 0), "bad-message"],
    ["ratchet key", flipped(message, 5), "not-authentic"],
    ["previous count", flipped(message, 1 + 32 + 3), "not-authentic"],
    ["message number", flipped(message, 1 + 32 + 4 + 3), "not-authentic"],
    ["ciphertext", flipped(message, RATCHET_HEADER_BYTES + 1), "not-authentic"],
    ["tag", flipped(message, message.length - 1, 7), "not-authentic"],
    ["truncated", message.slice(0, message.length - 1), "not-authentic"],
    ["too short", message.slice(0, RATCHET_HEADER_BYTES + 15), "bad-message"],
  ];
  for (const [what, bytes, code] of cases) {
    await rejectsWith(bob.decrypt(bytes), code);
    assert.equal(snapshot(bob), before, `state changed by a tampered ${what}`);
  }
  assert.equal(read((await bob.decrypt(message)).plaintext), "genuine");
});

Deno.test("every single-bit flip of a message is refused and changes nothing; the original opens after", async () => {
  const { alice, bob } = await talking();
  const message = await alice.encrypt(text("genuine"));
  const before = snapshot(bob);
  // A flipped count can also claim a gap past MAX_SKIP, refused before any work.
  const refusals = ["bad-message", "not-authentic", "too-far-ahead"];
  for (let bit = 0; bit < message.length * 8; bit++) {
    await rejectsWith(bob.decrypt(flipped(message, bit >> 3, bit & 7)), refusals);
    assert.equal(snapshot(bob), before, `state changed by flipping bit ${bit}`);
  }
  assert.equal(read((await bob.decrypt(message)).plaintext), "genuine");
});

Deno.test("a message made for other associated data is refused", async () => {
  const sessionKey = randomBytes(32);
  const bobSecret = randomBytes(32);
  const bob = await Ratchet.responder(sessionKey, bobSecret, text("alice|bob"));
  const mallory = await Ratchet.responder(sessionKey, bobSecret, text("alice|carol"));
  const alice = await Ratchet.initiator(sessionKey, bob.ratchetPublicKey, text("alice|bob"));
  const message = await alice.encrypt(text("for bob"));
  const before = snapshot(mallory);
  await rejectsWith(mallory.decrypt(message), "not-authentic");
  assert.equal(snapshot(mallory), before);
  assert.equal(read((await bob.decrypt(message)).plaintext), "for bob");
});

Deno.test("messages of erased chains are refused: replayed, late or erased-key", async () => {
  const { alice, bob } = await talking();
  const old0 = await alice.encrypt(text("old 0"));
  const old1 = await alice.encrypt(text("old 1, never delivered"));
  await bob.decrypt(old0);
  await alice.decrypt(await bob.encrypt(text("reply")));
  await bob.decrypt(await alice.encrypt(text("new chain")));
  const before = snapshot(bob);
  await rejectsWith(bob.decrypt(old0), "replayed");
  await rejectsWith(bob.decrypt(old1), "late");
  const beyond = old1.slice();
  new DataView(beyond.buffer).setUint32(1 + 32 + 4, 7);
  await rejectsWith(bob.decrypt(beyond), "erased-key");
  assert.equal(snapshot(bob), before);
});

Deno.test("a message older than the remembered chains is still refused", async () => {
  const { alice, bob } = await pair();
  const first = await alice.encrypt(text("first"));
  await bob.decrypt(first);
  for (let i = 0; i <= HISTORY_CHAINS; i++) {
    await alice.decrypt(await bob.encrypt(text(`b${i}`)));
    await bob.decrypt(await alice.encrypt(text(`a${i}`)));
  }
  const before = snapshot(bob);
  await rejectsWith(bob.decrypt(first), "not-authentic");
  assert.equal(snapshot(bob), before);
});

Deno.test("a gap of MAX_SKIP messages is accepted, one more is refused before any work", async () => {
  const { alice, bob } = await talking();
  const messages: Bytes[] = [];
  for (let i = 0; i <= MAX_SKIP + 1; i++) messages.push(await alice.encrypt(text(`m${i}`)));
  const other = await restored(bob);
  const opened = await bob.decrypt(messages[MAX_SKIP]);
  assert.equal(opened.missing, MAX_SKIP);
  assert.equal(read(opened.plaintext), `m${MAX_SKIP}`);
  const before = snapshot(other);
  await rejectsWith(other.decrypt(messages[MAX_SKIP + 1]), "too-far-ahead");
  // A forged header claiming the largest number is refused as cheaply.
  const forged = messages[0].slice();
  new DataView(forged.buffer).setUint32(1 + 32 + 4, 0xffff_ffff);
  await rejectsWith(other.decrypt(forged), "too-far-ahead");
  assert.equal(snapshot(other), before);
});

Deno.test("a new chain that claims too many unread messages is refused", async () => {
  const { alice, bob } = await talking();
  await bob.decrypt(await alice.encrypt(text("x")));
  await alice.decrypt(await bob.encrypt(text("y")));
  const message = await alice.encrypt(text("new chain"));
  const forged = message.slice();
  new DataView(forged.buffer).setUint32(1 + 32, MAX_SKIP + 10);
  const before = snapshot(bob);
  await rejectsWith(bob.decrypt(forged), "too-far-ahead");
  assert.equal(snapshot(bob), before);
  assert.equal(read((await bob.decrypt(message)).plaintext), "new chain");
});

Deno.test("restored states continue the conversation on both sides", async () => {
  const { alice, bob } = await pair();
  const sent: Bytes[] = [];
  sent.push(await alice.encrypt(text("before 1")));
  await bob.decrypt(sent[0]);
  await alice.decrypt(await bob.encrypt(text("before 2")));
  sent.push(await alice.encrypt(text("before 3")));
  await bob.decrypt(sent[1]);
  const pending = await bob.encrypt(text("in flight during the restart"));
  let [alice2, bob2] = [await restored(alice), await restored(bob)];
  assert.deepEqual(await alice2.debugState(), await alice.debugState());
  assert.deepEqual(await bob2.debugState(), await bob.debugState());
  assert.equal(read((await alice2.decrypt(pending)).plaintext), "in flight during the restart");
  for (let i = 0; i < 6; i++) {
    const [sender, receiver] = i % 2 === 0 ? [alice2, bob2] : [bob2, alice2];
    const opened = await receiver.decrypt(await sender.encrypt(text(`after ${i}`)));
    assert.equal(read(opened.plaintext), `after ${i}`);
    [alice2, bob2] = [await restored(alice2), await restored(bob2)];
  }
  await rejectsWith(bob2.decrypt(sent[1]), "replayed");
});

Deno.test("corrupt stored state is refused with bad-state", async () => {
  const { alice } = await talking();
  const good = alice.toJSON();
  const other = (await pair()).alice.toJSON();
  const cases: unknown[] = [
    null,
    { ...good, format: "reelay-ratchet-v0" },
    { ...good, rootKey: "AAAA" },
    { ...good, sending: { ...good.sending, publicKey: other.sending.publicKey } },
    { ...good, sending: { ...good.sending, n: -1 } },
    { ...good, receiving: { ...good.receiving, gaps: [[3, 3]] } },
    { ...good, history: Array(HISTORY_CHAINS + 1).fill(good.history[0]) },
  ];
  for (const value of cases) await rejectsWith(Ratchet.fromJSON(value), "bad-state");
});

Deno.test("a responder sends only after opening a message; long plaintexts are refused", async () => {
  const { alice, bob } = await pair();
  await rejectsWith(bob.encrypt(text("too early")), "not-ready");
  await rejectsWith(alice.encrypt(new Uint8Array(MAX_RATCHET_PLAINTEXT_BYTES + 1)), "too-long");
  const big = new Uint8Array(MAX_RATCHET_PLAINTEXT_BYTES).fill(7);
  assert.deepEqual((await bob.decrypt(await alice.encrypt(big))).plaintext, big);
  assert.ok(bob.hasReceived);
  assert.ok(!alice.hasReceived);
});

Deno.test("concurrent calls run one at a time and never reuse a key", async () => {
  const { alice, bob } = await talking();
  const messages = await Promise.all(
    Array.from({ length: 20 }, (_, i) => alice.encrypt(text(`parallel ${i}`))),
  );
  const numbers = messages.map((m) => new DataView(m.buffer).getUint32(1 + 32 + 4));
  assert.deepEqual(numbers, Array.from({ length: 20 }, (_, i) => i));
  const opened = await Promise.all(messages.map((m) => bob.decrypt(m)));
  assert.deepEqual(opened.map((o) => read(o.plaintext)), messages.map((_, i) => `parallel ${i}`));
});

Deno.test("KDF_CK and KDF_RK match HMAC-SHA-256 and HKDF computed by node:crypto", async () => {
  const chainKey = randomBytes(32);
  const step = await kdfChain(chainKey);
  // mk = HMAC(ck, 0x01); key||nonce = HKDF-Expand(mk, info, 44), built by hand from HMACs.
  const expand = (prk: Uint8Array, info: Uint8Array, length: number) => {
    let block = new Uint8Array();
    const out: number[] = [];
    for (let i = 1; out.length < length; i++) {
      block = new Uint8Array(
        createHmac("sha256", prk).update(block).update(info).update(new Uint8Array([i])).digest(),
      );
      out.push(...block);
    }
    return new Uint8Array(out.slice(0, length));
  };
  const mk = createHmac("sha256", chainKey).update(new Uint8Array([1])).digest();
  const keyAndNonce = expand(mk, encodeFields(["reelay-message-v1"]), 44);
  assert.equal(step.key.toHex(), keyAndNonce.subarray(0, 32).toHex());
  assert.equal(step.nonce.toHex(), keyAndNonce.subarray(32).toHex());
  const next = createHmac("sha256", chainKey).update(new Uint8Array([2])).digest();
  assert.equal(
    step.nextChainKey.toHex(),
    expand(next, encodeFields(["reelay-chain-v1"]), 32).toHex(),
  );
  const rootKey = randomBytes(32);
  const dhOutput = randomBytes(32);
  const root = await kdfRoot(rootKey, dhOutput);
  const expected = new Uint8Array(
    hkdfSync("sha256", dhOutput, rootKey, encodeFields(["reelay-root-v1"]), 64),
  );
  assert.equal(root.rootKey.toHex() + root.chainKey.toHex(), expected.toHex());
});
