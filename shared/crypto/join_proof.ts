/**
 * The join proof of protocol 3: a client proves it holds the keys it announces on THIS
 * connection by RSA-PSS-signing ("reelay-join-v3", the channel's handshake hash, the
 * announcement's signature). The handshake hash is unique to one secure-channel session, so a
 * recorded hello (announcement and proof) is worthless on any other connection.
 *
 * @module
 */

import { type Bytes, encodeFields, fromBase64, toBase64 } from "../bytes.ts";
import {
  type Announcement,
  type Identity,
  importVerifyKey,
  MAX_KEY_TEXT,
  verifyPss,
} from "./identity.ts";

/** The domain label of a join proof. */
export const JOIN_PROOF_LABEL = "reelay-join-v3";

function proofData(handshakeHash: Uint8Array, signature: string): Bytes {
  const signed = fromBase64(signature);
  if (!signed) throw new RangeError("The announcement's signature is not base64");
  return encodeFields([JOIN_PROOF_LABEL, handshakeHash, signed]);
}

/**
 * Signs the join proof for `announcement` (made by `identity`) on the connection whose handshake
 * hash is `handshakeHash`; base64, as the hello's `proof` field carries it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Identity, newEpoch, signAnnouncement } from "./identity.ts";
 * import { signJoinProof, verifyJoinProof } from "./join_proof.ts";
 * const me = await Identity.generate();
 * const hello = await signAnnouncement(me, "alice", newEpoch());
 * const hash = new Uint8Array(32).fill(7);
 * const proof = await signJoinProof(me, hash, hello);
 * assert.equal(await verifyJoinProof(hello, hash, proof), true);
 * assert.equal(await verifyJoinProof(hello, new Uint8Array(32), proof), false);
 * ```
 */
export async function signJoinProof(
  identity: Identity,
  handshakeHash: Uint8Array,
  announcement: Announcement,
): Promise<string> {
  return toBase64(await identity.sign(proofData(handshakeHash, announcement.signature)));
}

/**
 * Whether `proof` is the announced signing key's signature over this connection's handshake hash
 * and the announcement's signature. Verify the announcement itself first; a malformed proof is
 * simply false.
 */
export async function verifyJoinProof(
  announcement: Announcement,
  handshakeHash: Uint8Array,
  proof: string,
): Promise<boolean> {
  const signature = proof.length <= MAX_KEY_TEXT ? fromBase64(proof) : undefined;
  if (!signature) return false;
  let data: Bytes;
  try {
    data = proofData(handshakeHash, announcement.signature);
  } catch {
    return false;
  }
  return await verifyPss(await importVerifyKey(announcement.keys), signature, data);
}
