import assert from "node:assert/strict";
import { Identity, safetyNumber, safetyNumberHalf } from "../shared/crypto/mod.ts";

const [alice, bob, mallory] = await Promise.all([
  Identity.generate(),
  Identity.generate(),
  Identity.generate(),
]);

Deno.test("both sides compute the same 60-digit safety number from the real keys", async () => {
  const [atAlice, atBob] = await Promise.all([
    safetyNumber("alice", alice.public, "bob", bob.public),
    safetyNumber("bob", bob.public, "alice", alice.public),
  ]);
  assert.equal(atAlice, atBob);
  assert.match(atAlice, /^\d{5}( \d{5}){11}$/);
  const halves = [
    await safetyNumberHalf("alice", alice.public),
    await safetyNumberHalf("bob", bob.public),
  ];
  assert.equal(atAlice, [...halves].sort().join(" "));
});

Deno.test("a different key or name on either side gives a different number", async () => {
  const real = await safetyNumber("alice", alice.public, "bob", bob.public);
  const aliceHalf = await safetyNumberHalf("alice", alice.public);
  // A server that gave Alice its own key for Bob: Alice's screen shows a different number.
  const fakeBob = await safetyNumber("alice", alice.public, "bob", mallory.public);
  assert.notEqual(fakeBob, real);
  assert.ok(fakeBob.includes(aliceHalf), "only Bob's half changes");
  const fakeAlice = await safetyNumber("alice", mallory.public, "bob", bob.public);
  assert.notEqual(fakeAlice, real);
  // Same keys under another name.
  assert.notEqual(await safetyNumber("alice", alice.public, "bobby", bob.public), real);
  assert.notEqual(await safetyNumber("alicia", alice.public, "bob", bob.public), real);
  // Keys swapped between the two names.
  assert.notEqual(await safetyNumber("alice", bob.public, "bob", alice.public), real);
});
