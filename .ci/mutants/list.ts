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
    find: "for (const char of name.toLowerCase()) key",
    replace: "for (const char of name) key",
    tests: [{ file: "tests/chat_test.ts", filter: "regardless of case" }],
  },
  // Server: fairness and stream limits.
  {
    name: "video before chat",
    file: "shared/protocol/framed.ts",
    find: "if (this.#urgent.length > 0) {",
    replace: "if (this.#urgent.length > 0 && this.#ordered.length === 0) {",
    tests: ["tests/framed_lanes_test.ts"],
  },
  {
    name: "bad-credit unchecked",
    file: "server/media/viewer.ts",
    find: "if (bytes > playing.inFlight) {",
    replace: "if (false) {",
    tests: [{ file: "tests/stream_faults_test.ts", filter: "bad-credit" }],
  },
  // Secure channel (docs/security.md, "Server identity").
  {
    name: "server key not checked",
    file: "client/server_trust.ts",
    find: "const check = await pins.check(address, presented);",
    replace: 'const check: string = "match";',
    tests: [{ file: "tests/channel_server_test.ts", filter: "changed key is refused" }],
  },
  {
    name: "any accepted server key",
    file: "client/server_trust.ts",
    find: "if (acceptServerKey.trim() !== handshake.serverFingerprint) {",
    replace: "if (false) {",
    tests: [{ file: "tests/channel_server_test.ts", filter: "changed key is refused" }],
  },
  {
    name: "handshakes not counted as joining",
    file: "server/server.ts",
    find: "let joining = this.#handshaking.size;",
    replace: "let joining = 0;",
    tests: [{ file: "tests/channel_server_test.ts", filter: "silent one ends" }],
  },
];
