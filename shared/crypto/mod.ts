/**
 * Public face of reelay's end-to-end encryption: identities and their fingerprints, signed
 * announcements, and the {@linkcode Outbox} / {@linkcode Inbox} that seal and open one-to-one
 * messages the server can relay but never read, forge, replay, reorder or redirect unnoticed.
 *
 * @example Sending one message
 * ```ts
 * import assert from "node:assert/strict";
 * import { Identity, Inbox, newEpoch, Outbox } from "./mod.ts";
 * const [alice, bob] = [await Identity.generate(), await Identity.generate()];
 * const outbox = new Outbox(alice, "alice", newEpoch());
 * const inbox = new Inbox(bob, "bob", newEpoch());
 * const sealed = await outbox.seal("bob", bob.public, inbox.epoch, "hi");
 * assert.equal((await inbox.open("alice", alice.public, outbox.epoch, sealed.bytes)).text, "hi");
 * ```
 *
 * @module
 */

export {
  type Announcement,
  checkName,
  EPOCH_BYTES,
  epochBytes,
  fingerprint,
  fingerprintBytes,
  fingerprintHash,
  Identity,
  MAX_EPOCH_TEXT,
  MAX_KEY_TEXT,
  MAX_RSA_BITS,
  MIN_RSA_BITS,
  newEpoch,
  parsePublicIdentity,
  type PublicIdentity,
  RSA_BITS,
  signAnnouncement,
  type StoredIdentity,
  verificationCode,
  verifyAnnouncement,
} from "./identity.ts";
export {
  ENVELOPE_VERSION,
  Inbox,
  MAX_ENVELOPE_BYTES,
  MAX_PLAINTEXT_BYTES,
  MAX_TEXT_BYTES,
  type OpenedMessage,
  Outbox,
  type SealedMessage,
} from "./envelope.ts";
