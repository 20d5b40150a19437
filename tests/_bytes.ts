/**
 * The byte search the tests use to show that a secret is absent from a wire capture or a file,
 * and that the search finds it where it is.
 *
 * @module
 */

/**
 * Whether `needle` occurs in `haystack`, byte for byte. An empty needle occurs everywhere.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { containsBytes } from "./_bytes.ts";
 * const haystack = new Uint8Array([1, 2, 3, 4]);
 * assert.equal(containsBytes(haystack, new Uint8Array([2, 3])), true);
 * assert.equal(containsBytes(haystack, new Uint8Array([3, 2])), false);
 * ```
 */
export function containsBytes(haystack: Uint8Array, needle: Uint8Array): boolean {
  if (needle.length === 0) return true;
  const first = needle[0];
  const last = haystack.length - needle.length;
  // indexOf skips to each candidate start natively: a capture can hold a whole video stream.
  for (let i = haystack.indexOf(first); i >= 0 && i <= last; i = haystack.indexOf(first, i + 1)) {
    if (matchesAt(haystack, needle, i)) return true;
  }
  return false;
}

function matchesAt(haystack: Uint8Array, needle: Uint8Array, start: number): boolean {
  for (let j = 1; j < needle.length; j++) if (haystack[start + j] !== needle[j]) return false;
  return true;
}
