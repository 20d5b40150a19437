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

/** The longest name allowed. */
export const MAX_NAME_LENGTH = 32;

const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$/;

/**
 * Returns why a name is not allowed, or `undefined` when it is.
 *
 * @example
 * ```ts
 * import { nameProblem } from "./names.ts";
 * nameProblem("alice"); // undefined
 * nameProblem("../etc"); // 'Name "../etc" must start with a letter or digit ...'
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
 * import { assertName } from "./names.ts";
 * assertName("bob"); // fine
 * ```
 */
export function assertName(name: string): void {
  const problem = nameProblem(name);
  if (problem) throw new ReelayError("bad-name", problem);
}

/**
 * The key under which a name is unique (names ignore case).
 *
 * @example
 * ```ts
 * import { nameKey } from "./names.ts";
 * nameKey("Alice") === nameKey("alice"); // true
 * ```
 */
export function nameKey(name: string): string {
  return name.toLowerCase();
}
