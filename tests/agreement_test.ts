import assert from "node:assert/strict";
import { type Bytes, concat } from "../shared/bytes.ts";
import {
  decodeInitialMessage,
  encodeInitialMessage,
  fingerprintBytes,
  Identity,
  initiate,
  kdfChain,
  kdfRoot,
  PrekeyStore,
  Ratchet,
  RATCHET_HEADER_BYTES,
  readInit,
  respond,
  SIGNED_PREKEY_GRACE_MS,
  SIGNED_PREKEY_ROTATION_MS,
  verifyBundle,
  verifyPublished,
} from "../shared/crypto/mod.ts";
import {
  type BundleChoice,
  PrekeyDirectory,
  read,
  rejectsWith,
  startConversation,
  text,
} from "../testing/conversation.ts";

const [alice, bob, carol] = await Promise.all([
  Identity.generate(),
  Identity.generate(),
  Identity.generate(),
]);

interface Fixture {
  directory: PrekeyDirectory;
  bobKeys: PrekeyStore;
  carolKeys: PrekeyStore;
}

async function fixture(count = 3): Promise<Fixture> {
  const directory = new PrekeyDirectory();
  const options = { oneTime: count, pqOneTime: count };
  const [bobKeys, carolKeys] = await Promise.all([
    PrekeyStore.generate(bob, options),
    PrekeyStore.generate(carol, options),
  ]);
  await directory.publish("bob", bob.public, bobKeys.published());
  await directory.publish("carol", carol.public, carolKeys.published());
  return { directory, bobKeys, carolKeys };
}

const ALICE = { identity: alice, name: "alice" };

/** Every way a damaged initial message is refused, by the part the damage hit. */
const REFUSALS = [
  "bad-init",
  "bad-signature",
  "wrong-peer",
  "unknown-prekey",
  "bad-message",
  "not-authentic",
  "too-far-ahead",
];

async function respondAsBob(bobKeys: PrekeyStore, initialMessage: Bytes, from = ALICE) {
  const { init, message } = decodeInitialMessage(initialMessage);
  return await respond({
    identity: bob,
    name: "bob",
    prekeys: bobKeys,
    peerName: from.name,
    peerIdentity: from.identity.public,
    init,
    message,
  });
}

async function initialMessage(bundle: unknown, body = "hello bob", from = ALICE) {
  const started = await initiate({
    identity: from.identity,
    name: from.name,
    peerName: "bob",
    peerIdentity: bob.public,
    bundle,
  });
  return encodeInitialMessage(started.init, await started.ratchet.encrypt(text(body)));
}

function withInitBytes(wire: Bytes, edit: (init: Bytes) => void): Bytes {
  const { init, message } = decodeInitialMessage(wire);
  const copy = init.slice();
  edit(copy);
  return encodeInitialMessage(copy, message);
}

const CHOICES: [string, BundleChoice, { oneTime: number; pqOneTime: number }][] = [
  ["one-time X25519 and one-time PQ prekeys", {}, { oneTime: 2, pqOneTime: 2 }],
  ["no one-time X25519, one-time PQ prekey", { oneTime: false }, { oneTime: 3, pqOneTime: 2 }],
  ["one-time X25519, last-resort PQ prekey", { pqOneTime: false }, { oneTime: 2, pqOneTime: 3 }],
  ["signed prekeys only (last resort)", { oneTime: false, pqOneTime: false }, {
    oneTime: 3,
    pqOneTime: 3,
  }],
];

for (const [label, choice, left] of CHOICES) {
  Deno.test(`agreement with ${label} starts a two-way conversation`, async () => {
    const { directory, bobKeys } = await fixture();
    const started = await startConversation(
      ALICE,
      { identity: bob, name: "bob", prekeys: bobKeys },
      directory,
      "hello bob",
      choice,
    );
    assert.deepEqual(bobKeys.counts(), { ...left, previous: 0 });
    const reply = await started.responder.encrypt(text("hello alice"));
    assert.equal(read((await started.initiator.decrypt(reply)).plaintext), "hello alice");
    const next = await started.initiator.encrypt(text("how are you"));
    assert.equal(read((await started.responder.decrypt(next)).plaintext), "how are you");
    const summary = readInit(started.init);
    assert.equal(summary.initiatorName, "alice");
    assert.equal(summary.prekeys.pqLastResort, choice.pqOneTime === false);
    assert.equal(summary.prekeys.oneTimeId === undefined, choice.oneTime === false);
  });
}

Deno.test("one-time prekeys are consumed exactly once", async () => {
  const { directory, bobKeys } = await fixture(1);
  const bundle = directory.bundle("bob");
  const wire = await initialMessage(bundle);
  await respondAsBob(bobKeys, wire);
  assert.deepEqual(bobKeys.counts(), { oneTime: 0, pqOneTime: 0, previous: 0 });
  await rejectsWith(respondAsBob(bobKeys, wire), "unknown-prekey");
  // A server that hands the same one-time keys to someone else gets nowhere either.
  const again = await initialMessage(bundle, "second use");
  await rejectsWith(respondAsBob(bobKeys, again), "unknown-prekey");
});

Deno.test("an initial message without one-time keys cannot be replayed", async () => {
  const { directory, bobKeys } = await fixture();
  const wire = await initialMessage(directory.bundle("bob", { oneTime: false, pqOneTime: false }));
  await respondAsBob(bobKeys, wire);
  const stored = JSON.stringify(bobKeys);
  await rejectsWith(respondAsBob(bobKeys, wire), "init-replayed");
  const reloaded = PrekeyStore.fromJSON(JSON.parse(stored));
  await rejectsWith(respondAsBob(reloaded, wire), "init-replayed");
});

Deno.test("a bundle with a forged or foreign signature is refused", async () => {
  const { directory } = await fixture();
  const genuine = directory.bundle("bob");
  const carols = directory.bundle("carol");
  const forged = structuredClone(genuine);
  const signature = Uint8Array.fromBase64(forged.signedPrekey.signature);
  signature[10] ^= 1;
  forged.signedPrekey.signature = signature.toBase64();
  await rejectsWith(initialMessage(forged), "bad-signature");
  // Carol's validly signed prekey passed off as Bob's.
  await rejectsWith(
    initialMessage({ ...genuine, signedPrekey: carols.signedPrekey }),
    "bad-signature",
  );
  await rejectsWith(initialMessage({ ...genuine, pqPrekey: carols.pqPrekey }), "bad-signature");
  // A one-time PQ prekey presented as the last resort (or the reverse) breaks its signature.
  await rejectsWith(
    initialMessage({ ...genuine, pqPrekey: { ...genuine.pqPrekey, lastResort: true } }),
    "bad-signature",
  );
  // Carol's whole (valid) bundle handed out for Bob.
  await rejectsWith(initialMessage(carols), "wrong-peer");
  await rejectsWith(initialMessage({ ...genuine, signedPrekey: { id: 1 } }), "bad-prekey");
  const badKem = structuredClone(genuine);
  badKem.pqPrekey.publicKey = new Uint8Array(1184).fill(0xff).toBase64();
  await rejectsWith(initialMessage(badKem), "bad-prekey");
});

Deno.test("an initial message signed by someone else is refused", async () => {
  const { directory, bobKeys } = await fixture();
  const before = JSON.stringify(bobKeys);
  const carolAsCarol = await initialMessage(directory.bundle("bob"), "hi", {
    identity: carol,
    name: "carol",
  });
  // Presented as coming from Alice: names and fingerprints do not match.
  await rejectsWith(respondAsBob(bobKeys, carolAsCarol), "wrong-peer");
  // Carol rewrites her init to claim Alice's name and fingerprint: her signature gives her away.
  const aliceFp = await fingerprintBytes(alice.public);
  const carolWire = await initialMessage(directory.bundle("bob"), "hi", {
    identity: carol,
    name: "alice",
  });
  const posing = withInitBytes(carolWire, (init) => init.set(aliceFp, 1 + 2 + 5 + 2 + 3));
  await rejectsWith(respondAsBob(bobKeys, posing), "bad-signature");
  assert.equal(JSON.stringify(bobKeys), before, "a refused init consumes nothing");
});

Deno.test("a tampered or redirected initial message is refused and consumes nothing", async () => {
  const { directory, bobKeys, carolKeys } = await fixture();
  const wire = await initialMessage(directory.bundle("bob"));
  const before = JSON.stringify(bobKeys);
  const end = decodeInitialMessage(wire).init.length;
  const signatureStart = end - 256;
  const cases: [string, Bytes, string][] = [
    [
      "KEM ciphertext",
      withInitBytes(wire, (init) => init[signatureStart - 2 - 10] ^= 1),
      "bad-signature",
    ],
    [
      "ephemeral key",
      withInitBytes(wire, (init) => init[signatureStart - 2 - 1088 - 3] ^= 1),
      "bad-signature",
    ],
    ["signature", withInitBytes(wire, (init) => init[end - 1] ^= 1), "bad-signature"],
    [
      "truncated",
      encodeInitialMessage(
        decodeInitialMessage(wire).init.slice(0, 100),
        decodeInitialMessage(wire).message,
      ),
      "bad-init",
    ],
  ];
  for (const [what, bytes, code] of cases) {
    await rejectsWith(respondAsBob(bobKeys, bytes), code);
    assert.equal(JSON.stringify(bobKeys), before, `a tampered ${what} consumed prekeys`);
  }
  const tamperedMessage = wire.slice();
  tamperedMessage[tamperedMessage.length - 1] ^= 1;
  await rejectsWith(respondAsBob(bobKeys, tamperedMessage), "not-authentic");
  assert.equal(JSON.stringify(bobKeys), before);
  const { init, message } = decodeInitialMessage(wire);
  await rejectsWith(
    respond({
      identity: carol,
      name: "carol",
      prekeys: carolKeys,
      peerName: "alice",
      peerIdentity: alice.public,
      init,
      message,
    }),
    "wrong-peer",
  );
  assert.equal(read((await respondAsBob(bobKeys, wire)).plaintext), "hello bob");
});

Deno.test("an initial message with a bit flipped in any part is refused and consumes nothing", async () => {
  const { directory, bobKeys } = await fixture();
  const wire = await initialMessage(directory.bundle("bob"));
  const before = JSON.stringify(bobKeys);
  const { init, message } = decodeInitialMessage(wire);
  // Wire offsets: the init's 4-byte length, the init (ending with the 1088-byte KEM ciphertext,
  // a 2-byte length and the 256-byte signature), then the first ratchet message.
  const signatureStart = 4 + init.length - 256;
  const kemStart = signatureStart - 2 - 1088;
  const opaque = (index: number) =>
    (index >= kemStart && index < signatureStart - 2) || (index >= signatureStart &&
      index < 4 + init.length);
  // Every bit of the ratchet message; one bit of every byte of the init, but of every 8th byte
  // only in its KEM ciphertext and signature (each try there costs an RSA-PSS verification, and
  // the signature covers those bytes alike): every bit everywhere would take half a minute.
  const flips: number[] = [];
  for (let index = 0; index < wire.length; index++) {
    if (index >= wire.length - message.length) {
      for (let bit = 0; bit < 8; bit++) flips.push(index * 8 + bit);
    } else if (!opaque(index) || index % 8 === 0) flips.push(index * 8 + (index % 8));
  }
  for (const flip of flips) {
    const bytes = wire.slice();
    bytes[flip >> 3] ^= 1 << (flip & 7);
    await rejectsWith(respondAsBob(bobKeys, bytes), REFUSALS);
    assert.equal(JSON.stringify(bobKeys), before, `flipping bit ${flip} consumed prekeys`);
  }
  assert.equal(read((await respondAsBob(bobKeys, wire)).plaintext), "hello bob");
});

Deno.test("a replaced signed prekey works until its grace period ends", async () => {
  const { directory, bobKeys } = await fixture();
  const oldBundle = directory.bundle("bob", { oneTime: false, pqOneTime: false });
  await bobKeys.rotate(bob, 1_000);
  assert.notEqual(bobKeys.published().signedPrekey.id, oldBundle.signedPrekey.id);
  const early = await initialMessage(oldBundle, "sent before the rotation");
  assert.equal(read((await respondAsBob(bobKeys, early)).plaintext), "sent before the rotation");
  assert.equal(bobKeys.prune(2_000, 10_000), 0);
  assert.equal(bobKeys.prune(11_000, 10_000), 1);
  await rejectsWith(respondAsBob(bobKeys, await initialMessage(oldBundle)), "unknown-prekey");
});

Deno.test("signed prekeys are replaced once a week old; the old ones open what was sent meanwhile", async () => {
  const bobKeys = await PrekeyStore.generate(bob, { oneTime: 0, pqOneTime: 0, now: 0 });
  const directory = new PrekeyDirectory();
  await directory.publish("bob", bob.public, bobKeys.published());
  const oldBundle = directory.bundle("bob", { oneTime: false, pqOneTime: false });
  const day = 24 * 3600 * 1000;
  assert.equal(await bobKeys.rotateIfDue(bob, SIGNED_PREKEY_ROTATION_MS - 1), false);
  assert.equal(bobKeys.published().signedPrekey.id, oldBundle.signedPrekey.id);
  const rotatedAt = SIGNED_PREKEY_ROTATION_MS;
  assert.equal(await bobKeys.rotateIfDue(bob, rotatedAt), true);
  const fresh = bobKeys.published();
  assert.notEqual(fresh.signedPrekey.id, oldBundle.signedPrekey.id);
  assert.notEqual(fresh.pqLastResort.id, oldBundle.pqPrekey.id);
  const meanwhile = await initialMessage(oldBundle, "sent before the rotation");
  assert.equal(
    read((await respondAsBob(bobKeys, meanwhile)).plaintext),
    "sent before the rotation",
  );
  // A day later nothing is due; past the grace period the old keys are erased.
  assert.equal(await bobKeys.rotateIfDue(bob, rotatedAt + day), false);
  assert.equal(bobKeys.counts().previous, 1);
  assert.equal(await bobKeys.rotateIfDue(bob, rotatedAt + SIGNED_PREKEY_GRACE_MS), true);
  assert.equal(bobKeys.counts().previous, 1, "the week-old key is kept, the first one erased");
  await rejectsWith(respondAsBob(bobKeys, await initialMessage(oldBundle)), "unknown-prekey");
});

Deno.test("prekeys survive a JSON round trip and the server's checks", async () => {
  const { bobKeys } = await fixture(2);
  const again = PrekeyStore.fromJSON(JSON.parse(JSON.stringify(bobKeys)));
  assert.deepEqual(again.published(), bobKeys.published());
  const published = JSON.parse(JSON.stringify(again.published()));
  assert.equal((await verifyPublished(bob.public, published)).pqOneTime.length, 2);
  await rejectsWith(verifyPublished(carol.public, published), "bad-signature");
  const swapped = { ...published, pqLastResort: published.pqOneTime[0] };
  await rejectsWith(verifyPublished(bob.public, swapped), "bad-prekey");
  const bundle = {
    identity: bob.public,
    signedPrekey: published.signedPrekey,
    pqPrekey: published.pqLastResort,
  };
  assert.deepEqual(await verifyBundle(bundle, bob.public), bundle);
  const corrupt = { ...bobKeys.toJSON(), nextId: 1 };
  assert.throws(() => PrekeyStore.fromJSON(corrupt), { code: "bad-state" });
  await rejectsWith(bobKeys.rotate(carol), "wrong-peer");
});

/**
 * The thief: records every byte of a conversation as a hostile server would, then takes the
 * recipient's identity, prekeys and ratchet state after the messages were read, and tries
 * everything those hold.
 */
Deno.test("a thief with the recipient's keys after the fact opens no recorded message", async () => {
  const { directory, bobKeys } = await fixture();
  const recorded: Bytes[] = [];
  const started = await startConversation(
    ALICE,
    { identity: bob, name: "bob", prekeys: bobKeys },
    directory,
    "first secret",
  );
  recorded.push(started.initialMessage);
  const { initiator, responder } = started;
  let lastToBob = { state: responder.toJSON(), bytes: new Uint8Array() as Bytes };
  for (const [run, length] of [2, 3, 1, 2, 2].entries()) {
    const [sender, receiver] = run % 2 === 0 ? [responder, initiator] : [initiator, responder];
    for (let i = 0; i < length; i++) {
      const bytes = await sender.encrypt(text(`secret ${run}.${i}`));
      if (receiver === responder) lastToBob = { state: receiver.toJSON(), bytes };
      await receiver.decrypt(bytes);
      recorded.push(bytes);
    }
  }
  // Control: the same search does open a message with the state from before it was read.
  assert.equal(await openedByStolenKeys(lastToBob.state, [lastToBob.bytes], 3), 1);
  const stolen = JSON.parse(
    JSON.stringify({ identity: bob, prekeys: bobKeys, ratchet: responder }),
  );

  // 1. Run the agreement again from the stolen prekeys: the one-time keys are gone.
  const thiefIdentity = await Identity.fromJSON(stolen.identity);
  const thiefPrekeys = PrekeyStore.fromJSON(stolen.prekeys);
  const { init, message } = decodeInitialMessage(started.initialMessage);
  await rejectsWith(thiefPrekeys.findForInit(readInit(init).prekeys), "unknown-prekey");
  await rejectsWith(
    respond({
      identity: thiefIdentity,
      name: "bob",
      prekeys: thiefPrekeys,
      peerName: "alice",
      peerIdentity: alice.public,
      init,
      message,
    }),
    "unknown-prekey",
  );

  // 2. Feed every recorded message to the stolen ratchet, as is and with its counters reset.
  const ratchetMessages = [message, ...recorded.slice(1)];
  const reset = structuredClone(stolen.ratchet);
  reset.receiving.n = 0;
  reset.receiving.gaps = [];
  reset.history = [];
  for (const state of [stolen.ratchet, reset]) {
    for (const bytes of ratchetMessages) {
      const thief = await Ratchet.fromJSON(state);
      await assert.rejects(thief.decrypt(bytes), `a recorded message opened`);
    }
  }

  // 3. Derive forward from every key in the stolen state and try each on every message.
  assert.equal(await openedByStolenKeys(stolen.ratchet, ratchetMessages, recorded.length + 5), 0);
});

/**
 * Counts the messages that any key derivable from a stolen ratchet state opens: its chain keys
 * and its root key stepped `steps` times, and the chains its root key and private ratchet key
 * would give with every ratchet key seen on the wire.
 */
async function openedByStolenKeys(
  state: ReturnType<Ratchet["toJSON"]>,
  messages: Bytes[],
  steps: number,
): Promise<number> {
  const b64 = (text: string) => Uint8Array.fromBase64(text) as Bytes;
  const ad = b64(state.ad);
  const chains = [state.rootKey, state.sending.chainKey, state.receiving.chainKey]
    .filter((key): key is string => key !== null).map(b64);
  const jwk = {
    kty: "OKP",
    crv: "X25519",
    d: b64(state.sending.secret).toBase64({ alphabet: "base64url", omitPadding: true }),
  };
  const secret = await crypto.subtle.importKey("jwk", jwk, { name: "X25519" }, false, [
    "deriveBits",
  ]);
  const peers = new Set(messages.map((m) => m.slice(1, 33).toHex()));
  for (const peer of peers) {
    const pub = await crypto.subtle.importKey(
      "raw",
      Uint8Array.fromHex(peer),
      { name: "X25519" },
      true,
      [],
    );
    const shared = new Uint8Array(
      await crypto.subtle.deriveBits({ name: "X25519", public: pub }, secret, 256),
    );
    chains.push((await kdfRoot(b64(state.rootKey), shared)).chainKey);
  }
  let opened = 0;
  for (let chainKey of chains) {
    for (let i = 0; i < steps; i++) {
      const step = await kdfChain(chainKey);
      const key = await crypto.subtle.importKey("raw", step.key, "AES-GCM", false, ["decrypt"]);
      for (const message of messages) {
        const header = message.slice(0, RATCHET_HEADER_BYTES);
        const params = { name: "AES-GCM", iv: step.nonce, additionalData: concat([ad, header]) };
        const ok = await crypto.subtle.decrypt(params, key, message.slice(RATCHET_HEADER_BYTES))
          .then(() => true, () => false);
        if (ok) opened++;
      }
      chainKey = step.nextChainKey;
    }
  }
  return opened;
}

Deno.test("without one-time prekeys a first message is exposed until the signed prekey is erased", async () => {
  const { directory, bobKeys } = await fixture();
  const wire = await initialMessage(
    directory.bundle("bob", { oneTime: false, pqOneTime: false }),
    "weakly protected",
  );
  await respondAsBob(bobKeys, wire);
  // A thief who also deletes the replay memory can redo the agreement while the SPK lives:
  // the documented limit of last-resort keys, as in Signal.
  const stolen = { ...bobKeys.toJSON(), seenInits: [] };
  const early = await respondAsBob(PrekeyStore.fromJSON(stolen), wire);
  assert.equal(read(early.plaintext), "weakly protected");
  await bobKeys.rotate(bob);
  assert.equal(bobKeys.prune(Date.now() + 1, 0), 1);
  const late = { ...bobKeys.toJSON(), seenInits: [] };
  await rejectsWith(respondAsBob(PrekeyStore.fromJSON(late), wire), "unknown-prekey");
});
