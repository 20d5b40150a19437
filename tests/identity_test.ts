import assert from "node:assert/strict";
import { ReelayError } from "../shared/errors.ts";
import {
  type Announcement,
  fingerprint,
  fingerprintHash,
  Identity,
  newEpoch,
  parsePublicIdentity,
  signAnnouncement,
  verificationCode,
  verifyAnnouncement,
} from "../shared/crypto/mod.ts";

const alice = await Identity.generate();
const bob = await Identity.generate();

async function rejectsWith(promise: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof ReelayError, `expected a ReelayError, got ${error}`);
    assert.equal(error.code, code, error.message);
    return true;
  });
}

async function spkiOf(algorithm: RsaHashedKeyGenParams | EcKeyGenParams): Promise<string> {
  const usages: KeyUsage[] = ["sign", "verify"];
  const pair = await crypto.subtle.generateKey(algorithm, true, usages) as CryptoKeyPair;
  return new Uint8Array(await crypto.subtle.exportKey("spki", pair.publicKey)).toBase64();
}

function flipBit(base64: string, bit = 0): string {
  const bytes = Uint8Array.fromBase64(base64);
  bytes[bytes.length >> 1] ^= 1 << bit;
  return bytes.toBase64();
}

Deno.test("generated identity has two distinct valid RSA keys and readable fingerprints", async () => {
  assert.notEqual(alice.public.encryptionKey, alice.public.signingKey);
  assert.deepEqual(await parsePublicIdentity(alice.public), alice.public);
  assert.match(alice.fingerprint, /^([0-9a-f]{4}:){9}[0-9a-f]{4}$/);
  assert.equal(alice.fingerprint, await fingerprint(alice.public));
  const full = await fingerprintHash(alice.public);
  assert.match(full, /^[0-9a-f]{64}$/);
  assert.ok(full.startsWith(alice.fingerprint.replaceAll(":", "")));
  assert.notEqual(full, await fingerprintHash(bob.public));
});

Deno.test("identity survives a JSON round trip and keeps signing with the same key", async () => {
  const stored = JSON.parse(JSON.stringify(alice));
  assert.equal(stored.format, "reelay-identity-v1");
  const again = await Identity.fromJSON(stored);
  assert.deepEqual(again.public, alice.public);
  assert.equal(again.fingerprint, alice.fingerprint);
  const hello = await signAnnouncement(again, "alice", newEpoch());
  assert.deepEqual(await verifyAnnouncement(hello), hello);
});

Deno.test("a corrupt stored identity is refused with bad-key", async () => {
  const stored = alice.toJSON();
  await rejectsWith(Identity.fromJSON({ ...stored, format: "other" }), "bad-key");
  await rejectsWith(Identity.fromJSON({ ...stored, signingKey: "not base64!" }), "bad-key");
  const truncated = Uint8Array.fromBase64(stored.encryptionKey).subarray(0, 300).toBase64();
  await rejectsWith(Identity.fromJSON({ ...stored, encryptionKey: truncated }), "bad-key");
  await rejectsWith(Identity.fromJSON(null), "bad-key");
});

Deno.test("public keys that are not RSA, too short, reused or not base64 are bad-key", async () => {
  const small = await spkiOf({
    name: "RSA-PSS",
    hash: "SHA-256",
    modulusLength: 1024,
    publicExponent: new Uint8Array([1, 0, 1]),
  });
  const ec = await spkiOf({ name: "ECDSA", namedCurve: "P-256" });
  const pub = alice.public;
  await rejectsWith(parsePublicIdentity({ ...pub, signingKey: small }), "bad-key");
  await rejectsWith(parsePublicIdentity({ ...pub, encryptionKey: small }), "bad-key");
  await rejectsWith(parsePublicIdentity({ ...pub, signingKey: ec }), "bad-key");
  await rejectsWith(parsePublicIdentity({ ...pub, signingKey: pub.encryptionKey }), "bad-key");
  await rejectsWith(parsePublicIdentity({ ...pub, signingKey: ` ${pub.signingKey}` }), "bad-key");
  const broken = Uint8Array.fromBase64(pub.signingKey);
  broken[0] ^= 1; // DER header: no longer a SEQUENCE
  await rejectsWith(parsePublicIdentity({ ...pub, signingKey: broken.toBase64() }), "bad-key");
  await rejectsWith(parsePublicIdentity("keys"), "bad-key");
});

Deno.test("a signed announcement verifies", async () => {
  const epoch = newEpoch();
  const hello = await signAnnouncement(alice, "alice", epoch);
  assert.equal(hello.epoch, epoch);
  assert.deepEqual(hello.keys, alice.public);
  assert.deepEqual(await verifyAnnouncement(JSON.parse(JSON.stringify(hello))), hello);
  assert.notEqual(newEpoch(), newEpoch());
});

Deno.test("any tampering with an announcement is rejected", async () => {
  const hello = await signAnnouncement(alice, "alice", newEpoch());
  const tampered: [Announcement, string][] = [
    [{ ...hello, name: "alicf" }, "bad-signature"],
    [{ ...hello, epoch: newEpoch() }, "bad-signature"],
    [
      { ...hello, keys: { ...hello.keys, encryptionKey: bob.public.encryptionKey } },
      "bad-signature",
    ],
    [{ ...hello, keys: bob.public }, "bad-signature"],
    [{ ...hello, signature: flipBit(hello.signature, 3) }, "bad-signature"],
    [{ ...hello, signature: "" }, "bad-signature"],
    [{ ...hello, epoch: "AAAA" }, "bad-epoch"],
    [{ ...hello, name: "" }, "bad-name"],
    [{ ...hello, name: "al\uD800ice" }, "bad-name"],
    [{ ...hello, keys: { ...hello.keys, signingKey: "AAAA" } }, "bad-key"],
  ];
  for (const [announcement, code] of tampered) {
    await rejectsWith(verifyAnnouncement(announcement), code);
  }
  const { signature: _, ...unsigned } = hello;
  await rejectsWith(verifyAnnouncement(unsigned), "bad-announcement");
  // Bob cannot claim Alice's keys: he cannot sign for them.
  const stolen = await signAnnouncement(bob, "alice", hello.epoch);
  await rejectsWith(verifyAnnouncement({ ...stolen, keys: alice.public }), "bad-signature");
});

Deno.test("verification code is symmetric and changes with any name or key", async () => {
  const code = await verificationCode("alice", alice.public, "bob", bob.public);
  assert.match(code, /^\d{5} \d{5} \d{5} \d{5}$/);
  assert.equal(await verificationCode("bob", bob.public, "alice", alice.public), code);
  const carol = await Identity.generate();
  assert.notEqual(await verificationCode("alice", alice.public, "bob", carol.public), code);
  assert.notEqual(await verificationCode("alice", carol.public, "bob", bob.public), code);
  assert.notEqual(await verificationCode("alice", alice.public, "bobby", bob.public), code);
  assert.notEqual(await verificationCode("bob", alice.public, "alice", bob.public), code);
});
