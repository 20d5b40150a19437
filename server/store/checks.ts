/**
 * The store's input checks, for other implementations of its contracts (the cluster's
 * JetStream mailbox) so that every mailbox refuses the same things with the same errors.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkMessageId } from "./checks.ts";
 * assert.equal(checkMessageId("m1"), "m1");
 * assert.throws(() => checkMessageId("has space"), /not allowed/);
 * ```
 *
 * @module
 */

export {
  type CheckedMail,
  checkFingerprint,
  checkLimit,
  checkMail,
  checkMessageId,
  checkRecipientRoom,
  checkSenderRoom,
  checkTime,
  shown,
} from "./_check.ts";
export { checkOneTimeKeys, duplicate, tooLarge } from "./_prekeys.ts";
