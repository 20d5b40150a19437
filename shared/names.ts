/**
 * The rules for a person's name on a reelay server.
 *
 * A name is 1 to 32 characters: ASCII letters, digits, `_`, `-` and `.`, starting with a letter
 * or a digit. Names are unique without regard to case, so `Alice` and `alice` are the same person
 * and nobody can pass for someone else by changing a letter's case.
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

/**
 * The key under which a name is unique (names ignore case).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { nameKey } from "./names.ts";
 * assert.equal(nameKey("Alice"), nameKey("alice"));
 * ```
 */
export function nameKey(name: string): string {
  return name.toLowerCase();
}
