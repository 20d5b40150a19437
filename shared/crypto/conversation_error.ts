/**
 * The typed error of lasting conversations: prekeys, the agreement that starts a conversation
 * and the Double Ratchet that carries it. Every refusal has a stable code so the caller can tell
 * the sender or the user what happened (a replay, a message that came too late, a key that was
 * erased) instead of a generic failure.
 *
 * @module
 */

import { ReelayError } from "../errors.ts";

/**
 * Why a conversation operation was refused.
 *
 * - `bad-prekey`: a published prekey or bundle is malformed or not validly signed.
 * - `bad-state`: stored prekeys or ratchet state are corrupt or of another format.
 * - `bad-init`: an initial message is malformed.
 * - `bad-signature`: an initial message is not signed by the person it names.
 * - `wrong-peer`: names or identity fingerprints are not the ones expected.
 * - `unknown-prekey`: the prekey an initial message names is not held (consumed, erased, or
 *   never ours).
 * - `init-replayed`: an initial message that was already accepted arrived again.
 * - `bad-message`: a ratchet message is malformed.
 * - `replayed`: a ratchet message that was already opened arrived again.
 * - `late`: a ratchet message arrived after a newer one; its key was not kept.
 * - `erased-key`: a ratchet message belongs to a chain whose keys are gone.
 * - `too-far-ahead`: a ratchet message skips more than `MAX_SKIP` (see `ratchet.ts`) messages.
 * - `not-authentic`: authenticated decryption failed (tampered, forged, or wrong keys).
 * - `too-long`: a plaintext exceeds the size limit.
 * - `not-ready`: the ratchet cannot send yet, or a counter is exhausted.
 * - `too-many-prekeys`: a prekey batch would exceed the stored limit.
 */
export type ConversationErrorCode =
  | "bad-prekey"
  | "bad-state"
  | "bad-init"
  | "bad-signature"
  | "wrong-peer"
  | "unknown-prekey"
  | "init-replayed"
  | "bad-message"
  | "replayed"
  | "late"
  | "erased-key"
  | "too-far-ahead"
  | "not-authentic"
  | "too-long"
  | "not-ready"
  | "too-many-prekeys";

/**
 * A refused conversation operation. The state it was applied to is unchanged.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ConversationError } from "./conversation_error.ts";
 * const error = new ConversationError("replayed", `Message 3 of this chain was already read`);
 * assert.equal(error.code, "replayed");
 * ```
 */
export class ConversationError extends ReelayError {
  /** Why the operation was refused. */
  declare readonly code: ConversationErrorCode;

  /** Creates an error with one of the {@linkcode ConversationErrorCode}s. */
  constructor(code: ConversationErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = "ConversationError";
  }
}
