/**
 * The shape of one mutant: a one-line break of the product, named after the promise it breaks,
 * and the tests that must notice.
 *
 * @module
 */

/** One covering test file, optionally narrowed with `deno test --filter`. */
export interface CoveringTest {
  /** Path from the repository root, e.g. `tests/e2e_security_test.ts`. */
  file: string;
  /** Passed as `--filter`: a test name substring, or `/regexp/`. */
  filter?: string;
}

/** A one-line break of the product. */
export interface Mutant {
  /** The promise it breaks, e.g. "impersonation accepted". Unique in the list. */
  name: string;
  /** Product file to break, from the repository root. */
  file: string;
  /** Exact text that must occur exactly once in `file` (keep it short and stable). */
  find: string;
  /** What `find` becomes. */
  replace: string;
  /** The tests that must fail with the break; a file path or a file with a filter. */
  tests: (string | CoveringTest)[];
}
