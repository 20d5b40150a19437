/**
 * Public face of reelay's end-to-end encryption: identities and their fingerprints, signed
 * announcements and join proofs; and conversations the server can relay but never read, forge,
 * replay, reorder or redirect unnoticed: {@linkcode PrekeyStore} (published prekeys),
 * {@linkcode initiate} / {@linkcode respond} (the PQXDH-style agreement), {@linkcode Ratchet}
 * (the Double Ratchet) and {@linkcode safetyNumber} (60-digit safety numbers).
 *
 * @example Comparing safety numbers
 * ```ts
 * import assert from "node:assert/strict";
 * import { Identity, safetyNumber } from "./mod.ts";
 * const [alice, bob] = [await Identity.generate(), await Identity.generate()];
 * const onAlicesScreen = await safetyNumber("alice", alice.public, "bob", bob.public);
 * const onBobsScreen = await safetyNumber("bob", bob.public, "alice", alice.public);
 * assert.equal(onAlicesScreen, onBobsScreen);
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
  importEncryptionKey,
  importVerifyKey,
  MAX_EPOCH_TEXT,
  MAX_KEY_TEXT,
  MAX_RSA_BITS,
  MAX_SIGNATURE_TEXT,
  MIN_RSA_BITS,
  newEpoch,
  parsePublicIdentity,
  type PublicIdentity,
  RSA_BITS,
  signAnnouncement,
  type StoredIdentity,
  verificationCode,
  verifyAnnouncement,
  verifyPss,
} from "./identity.ts";
export { ConversationError, type ConversationErrorCode } from "./conversation_error.ts";
export { JOIN_PROOF_LABEL, signJoinProof, verifyJoinProof } from "./join_proof.ts";
export {
  type ChainStep,
  hkdf,
  kdfChain,
  kdfRoot,
  KEY_BYTES,
  nextChainKey,
  NONCE_BYTES,
} from "./kdf.ts";
export {
  DEFAULT_ONE_TIME_PREKEYS,
  type InitPrekeyIds,
  type InitPrekeys,
  MAX_ONE_TIME_PREKEYS,
  MAX_PREVIOUS_SIGNED_PREKEYS,
  MAX_REMEMBERED_INITS,
  type OneTimePrekey,
  type PqPrekey,
  type PrekeyBundle,
  PrekeyStore,
  type PublishedPrekeys,
  SIGNED_PREKEY_GRACE_MS,
  SIGNED_PREKEY_ROTATION_MS,
  type SignedPrekey,
  type StoredPrekeys,
  verifyBundle,
  verifyPublished,
} from "./prekeys.ts";
export {
  conversationAd,
  decodeInitialMessage,
  encodeInitialMessage,
  INIT_VERSION,
  initiate,
  type Initiated,
  type InitiateOptions,
  type InitSummary,
  MAX_INIT_BYTES,
  MAX_INITIAL_MESSAGE_BYTES,
  readInit,
  respond,
  type Responded,
  type RespondOptions,
} from "./agreement.ts";
export {
  HISTORY_CHAINS,
  MAX_RATCHET_MESSAGE_BYTES,
  MAX_RATCHET_PLAINTEXT_BYTES,
  MAX_SKIP,
  type OpenedRatchetMessage,
  Ratchet,
  RATCHET_HEADER_BYTES,
  RATCHET_VERSION,
  type RatchetDebugState,
  type StoredRatchet,
} from "./ratchet.ts";
export { SAFETY_HALF_DIGITS, SAFETY_ITERATIONS, safetyNumber, safetyNumberHalf } from "./safety.ts";
