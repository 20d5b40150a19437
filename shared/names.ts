/**
 * The rules for a person's name on a reelay server.
 *
 * A name is 1 to 32 characters: ASCII letters, digits, `_`, `-` and `.`, starting with a letter
 * or a digit.
 *
 * Names are unique by their **confusable skeleton** ({@linkcode nameKey}), so nobody can pass for
 * someone else with a name that looks the same: case is ignored, and after that the letters and
 * digits that look alike in common terminal fonts are one character:
 *
 * | these                   | count as |
 * | ----------------------- | -------- |
 * | `I`, `i`, `L`, `l`, `1` | `l`      |
 * | `O`, `o`, `0`           | `o`      |
 * | `m` and `rn`            | `rn`     |
 * | `w` and `vv`            | `vv`     |
 * | `d` and `cl`            | `cl`     |
 *
 * So `aIice`, `a1ice` and `ALICE` are all `alice`, and `w0mbat` is `wombat`: while one of them is
 * online, the others are taken. The rule is a strict ASCII cut of Unicode TR39's skeleton
 * (names are ASCII, so TR39's thousands of non-ASCII lookalikes cannot occur); it is stricter
 * than TR39 in folding case first, which makes `i`/`l` collide as well.
 *
 * @module
 */

import { ReelayError } from "./errors.ts";

/**
 * The longest name allowed, in characters (names are ASCII, so also in bytes). The protocol's
 * name fields and the crypto layer's envelopes use this one limit.
 */
export const MAX_NAME_LENGTH = 32;

const NAME_PATTERN = new RegExp(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,${MAX_NAME_LENGTH - 1}}$`);

/**
 * Returns why a name is not allowed, or `undefined` when it is.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { nameProblem } from "./names.ts";
 * assert.equal(nameProblem("alice"), undefined);
 * assert.match(nameProblem("../etc") ?? "", /^Name "..\/etc" is not allowed/);
 * ```
 */
export function nameProblem(name: string): string | undefined {
  if (NAME_PATTERN.test(name)) return undefined;
  const shown = JSON.stringify(name.length > 40 ? `${name.slice(0, 40)}…` : name);
  return `Name ${shown} is not allowed: use 1 to ${MAX_NAME_LENGTH} letters, digits, "_", "-" ` +
    `or ".", starting with a letter or digit`;
}

/**
 * Throws a `bad-name` error when a name breaks the rules.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { assertName } from "./names.ts";
 * assertName("bob");
 * assert.throws(() => assertName("x".repeat(33)), /is not allowed/);
 * ```
 */
export function assertName(name: string): void {
  const problem = nameProblem(name);
  if (problem) throw new ReelayError("bad-name", problem);
}

/**
 * Checks an untrusted value is a valid name and returns it typed; throws `bad-name` otherwise.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkName } from "./names.ts";
 * assert.equal(checkName("alice"), "alice");
 * assert.throws(() => checkName(7), /Name must be text/);
 * ```
 */
export function checkName(name: unknown): string {
  if (typeof name !== "string") {
    throw new ReelayError("bad-name", `Name must be text, not ${typeof name}`);
  }
  assertName(name);
  return name;
}

/** One lowercase character to its skeleton; characters not listed are their own skeleton. */
const SKELETON: Readonly<Record<string, string>> = {
  i: "l",
  "1": "l",
  "0": "o",
  m: "rn",
  w: "vv",
  d: "cl",
};

/**
 * The key under which a name is unique: its confusable skeleton (see the module notes). Two names
 * with the same key cannot be online at once. Whether a name is allowed is
 * {@linkcode nameProblem}'s question; the key of any text is defined.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { nameKey } from "./names.ts";
 * assert.equal(nameKey("Alice"), nameKey("alice"));
 * assert.equal(nameKey("aIice"), nameKey("alice"));
 * assert.equal(nameKey("a1ice"), nameKey("alice"));
 * assert.equal(nameKey("w0mbat"), nameKey("wombat"));
 * assert.notEqual(nameKey("alice"), nameKey("alicia"));
 * ```
 */
export function nameKey(name: string): string {
  let key = "";
  for (const char of name.toLowerCase()) key += SKELETON[char] ?? char;
  return key;
}

/**
 * Whether two names are the same name (as addressed: only case may differ). Lookalikes with the
 * same {@linkcode nameKey} are not the same name; they just cannot be online together.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { sameName } from "./names.ts";
 * assert.ok(sameName("Bob", "bob"));
 * assert.ok(!sameName("b0b", "bob"));
 * ```
 */
export function sameName(a: string, b: string): boolean {
  return a.toLowerCase() === b.toLowerCase();
}
