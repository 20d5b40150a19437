import assert from "node:assert/strict";
import { nameKey, nameProblem, sameName } from "../shared/names.ts";

Deno.test("names: lookalikes of alice and wombat share their skeleton", () => {
  for (const lookalike of ["aIice", "a1ice", "ALICE", "AL1CE", "alIce", "aiice", "Alice"]) {
    assert.equal(nameKey(lookalike), nameKey("alice"), lookalike);
  }
  for (const lookalike of ["w0mbat", "WOMBAT", "vvombat", "wornbat", "VV0RNBAT"]) {
    assert.equal(nameKey(lookalike), nameKey("wombat"), lookalike);
  }
  assert.equal(nameKey("clave"), nameKey("dave"));
  assert.equal(nameKey("b0b"), nameKey("bob"));
});

Deno.test("names: different names keep different skeletons", () => {
  const distinct = ["alice", "alicia", "bob", "bobby", "carol", "dave", "eve", "a.lice", "a_lice"];
  const keys = new Set(distinct.map(nameKey));
  assert.equal(keys.size, distinct.length);
  // Every allowed character outside the lookalike groups stands for itself.
  for (const char of "abcefghjknpqrstuvxyz2345678_-.") assert.equal(nameKey(char), char);
});

Deno.test("names: the skeleton is stable (a skeleton's skeleton is itself)", () => {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.";
  let state = 12;
  const next = () => (state = (state * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  for (let i = 0; i < 2000; i++) {
    const length = 1 + Math.floor(next() * 32);
    let name = "";
    for (let j = 0; j < length; j++) name += alphabet[Math.floor(next() * alphabet.length)];
    assert.equal(nameKey(nameKey(name)), nameKey(name), name);
    assert.equal(nameKey(name.toUpperCase()), nameKey(name.toLowerCase()), name);
  }
});

Deno.test("names: a lookalike is not the same name, only another case is", () => {
  assert.ok(sameName("ALICE", "alice"));
  assert.ok(!sameName("a1ice", "alice"));
  assert.equal(nameProblem("a1ice"), undefined, "lookalikes are allowed names, just not together");
});
