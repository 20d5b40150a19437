/**
 * The mutants `deno task mutants` applies: one-line breaks of the product, each named after the
 * promise it breaks, each with the tests that must fail when it breaks. Append an entry for each
 * new check (see the README, "Mutants"). Keep `find` short and stable: it must occur exactly once
 * in `file`, or the run fails as "stale".
 *
 * @module
 */
import type { Mutant } from "./types.ts";

const e2e = "tests/e2e_security_test.ts";

/** Every mutant, in the order the table shows them. */
export const mutants: Mutant[] = [
  // Chat: who is who (docs/security.md, "Pinning keys" and the attack table).
  {
    name: "impersonation accepted",
    file: "client/peers.ts",
    find: "if (key === nameKey(this.#self.name)) {",
    replace: "if (false) {",
    tests: [{ file: e2e, filter: "under your own name" }],
  },
  {
    name: "trust takes any key",
    file: "client/peers.ts",
    find: "if (verified !== peer.fingerprint) {",
    replace: "if (verified === undefined) {",
    tests: [{ file: e2e, filter: "/trust takes only" }],
  },
  {
    name: "changed-key messages shown",
    file: "client/chat.ts",
    find: 'if (peer.trust === "changed") {',
    replace: "if (false) {",
    tests: [{ file: e2e, filter: "changed key" }],
  },
  {
    name: "names case-sensitive",
    file: "shared/names.ts",
    find: "return name.toLowerCase();",
    replace: "return name;",
    tests: ["tests/chat_test.ts"],
  },
  // Server: fairness and stream limits.
  {
    name: "video before chat",
    file: "shared/protocol/framed.ts",
    find: "if (this.#urgent.length > 0) {",
    replace: "if (this.#urgent.length > 0 && this.#ordered.length === 0) {",
    tests: [{ file: "tests/streaming_test.ts", filter: "chat is delivered" }],
  },
  {
    name: "bad-credit unchecked",
    file: "server/media/viewer.ts",
    find: "if (bytes > playing.inFlight) {",
    replace: "if (false) {",
    tests: ["tests/stream_faults_test.ts"],
  },
  // Media: honest ends and the fast start (issue 14).
  {
    name: "short part counted complete",
    file: "server/media/honest_end.ts",
    find: "if (covered + shortfallTolerance(promise.fps) < promise.seconds) {",
    replace: "if (false) {",
    tests: [{ file: "tests/playback_test.ts", filter: "streamVideo" }],
  },
  {
    name: "first part not tuned to start fast",
    file: "server/media/playback.ts",
    find: "const fastStart = index === 0 ? DEFAULT_FAST_START : undefined;",
    replace: "const fastStart = undefined;",
    tests: [{ file: "tests/playback_test.ts", filter: "streamVideo" }],
  },
  {
    name: "viewers of a part not shared",
    file: "server/media/part_sources.ts",
    find: "const stream = running?.shared.join();",
    replace: "const stream = running && undefined;",
    tests: [{ file: "tests/sharing_test.ts", filter: "five streams" }],
  },
  {
    name: "cache never read",
    file: "server/media/part_sources.ts",
    find: 'return part && { stream: part.stream, origin: "cache" };',
    replace: "return undefined;",
    tests: [{ file: "tests/sharing_test.ts", filter: "the cache serves" }],
  },
];
