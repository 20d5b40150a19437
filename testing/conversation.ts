/**
 * Helpers for the conversation tests and the ratchet benchmark (never imported by product code): a stand-in for the server's
 * prekey directory (publishes checked prekeys, hands each one-time key out once), a way to start
 * a conversation between two identities, and an assertion on {@linkcode ConversationError} codes.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  ConversationError,
  decodeInitialMessage,
  encodeInitialMessage,
  type Identity,
  initiate,
  type PrekeyBundle,
  type PrekeyStore,
  type PublicIdentity,
  type PublishedPrekeys,
  type Ratchet,
  respond,
  verifyPublished,
} from "../shared/crypto/mod.ts";
import type { Bytes } from "../shared/bytes.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * UTF-8 bytes of `text`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { read, text } from "./conversation.ts";
 * assert.equal(read(text("hé")), "hé");
 * ```
 */
export function text(value: string): Bytes {
  return encoder.encode(value) as Bytes;
}

/** `bytes` decoded as UTF-8 (see {@linkcode text}). */
export function read(bytes: Uint8Array): string {
  return decoder.decode(bytes);
}

/**
 * Asserts that `promise` rejects with a {@linkcode ConversationError} of `code` (or of one of
 * several codes).
 *
 * @example
 * ```ts
 * import { ConversationError } from "../shared/crypto/mod.ts";
 * import { rejectsWith } from "./conversation.ts";
 * await rejectsWith(Promise.reject(new ConversationError("late", "Too late")), "late");
 * ```
 */
export async function rejectsWith(
  promise: Promise<unknown>,
  code: string | readonly string[],
): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof ConversationError, `expected a ConversationError, got ${error}`);
    const codes = typeof code === "string" ? [code] : code;
    assert.ok(codes.includes(error.code), `${error.code}: ${error.message}`);
    return true;
  });
}

/** Which prekeys a {@linkcode PrekeyDirectory} puts in a bundle. */
export interface BundleChoice {
  /** Include a one-time X25519 prekey while any is left (default true). */
  oneTime?: boolean;
  /** Use a one-time PQ prekey while any is left, else the last resort (default true). */
  pqOneTime?: boolean;
}

/**
 * What the server will do: keep people's checked prekeys and hand out bundles, each one-time key
 * once.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Identity, PrekeyStore } from "../shared/crypto/mod.ts";
 * import { PrekeyDirectory } from "./conversation.ts";
 * const bob = await Identity.generate();
 * const keys = await PrekeyStore.generate(bob, { oneTime: 1, pqOneTime: 1 });
 * const directory = new PrekeyDirectory();
 * await directory.publish("bob", bob.public, keys.published());
 * assert.ok(directory.bundle("bob").oneTimePrekey);
 * assert.equal(directory.bundle("bob").oneTimePrekey, undefined);
 * ```
 */
export class PrekeyDirectory {
  readonly #people = new Map<string, { identity: PublicIdentity; keys: PublishedPrekeys }>();

  /** Checks and stores what `name` uploads. */
  async publish(name: string, identity: PublicIdentity, published: unknown): Promise<void> {
    this.#people.set(name, { identity, keys: await verifyPublished(identity, published) });
  }

  /** A bundle for `name`; one-time keys handed out are forgotten. */
  bundle(name: string, choice: BundleChoice = {}): PrekeyBundle {
    const entry = this.#people.get(name);
    if (!entry) throw new Error(`No prekeys for ${name}`);
    const pqOneTime = choice.pqOneTime ?? true ? entry.keys.pqOneTime.shift() : undefined;
    const oneTime = choice.oneTime ?? true ? entry.keys.oneTime.shift() : undefined;
    const bundle: PrekeyBundle = {
      identity: entry.identity,
      signedPrekey: entry.keys.signedPrekey,
      pqPrekey: pqOneTime ?? entry.keys.pqLastResort,
    };
    if (oneTime) bundle.oneTimePrekey = oneTime;
    return structuredClone(bundle);
  }
}

/** One side of a test conversation. */
export interface Side {
  identity: Identity;
  name: string;
}

/** A started conversation: both ratchets and the bytes of the initial message. */
export interface Started {
  initiator: Ratchet;
  responder: Ratchet;
  initialMessage: Bytes;
  init: Bytes;
}

/**
 * Starts a conversation from `from` to `to` through `directory`, delivering the initial message
 * carrying `first`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Identity, PrekeyStore } from "../shared/crypto/mod.ts";
 * import { PrekeyDirectory, read, startConversation, text } from "./conversation.ts";
 * const [alice, bob] = [await Identity.generate(), await Identity.generate()];
 * const prekeys = await PrekeyStore.generate(bob, { oneTime: 1, pqOneTime: 1 });
 * const directory = new PrekeyDirectory();
 * await directory.publish("bob", bob.public, prekeys.published());
 * const started = await startConversation(
 *   { identity: alice, name: "alice" },
 *   { identity: bob, name: "bob", prekeys },
 *   directory,
 *   "hello",
 * );
 * const reply = await started.responder.encrypt(text("hi"));
 * assert.equal(read((await started.initiator.decrypt(reply)).plaintext), "hi");
 * ```
 */
export async function startConversation(
  from: Side,
  to: Side & { prekeys: PrekeyStore },
  directory: PrekeyDirectory,
  first: string,
  choice: BundleChoice = {},
): Promise<Started> {
  const started = await initiate({
    identity: from.identity,
    name: from.name,
    peerName: to.name,
    peerIdentity: to.identity.public,
    bundle: directory.bundle(to.name, choice),
  });
  const initialMessage = encodeInitialMessage(
    started.init,
    await started.ratchet.encrypt(text(first)),
  );
  const { init, message } = decodeInitialMessage(initialMessage);
  const answered = await respond({
    identity: to.identity,
    name: to.name,
    prekeys: to.prekeys,
    peerName: from.name,
    peerIdentity: from.identity.public,
    init,
    message,
  });
  assert.equal(read(answered.plaintext), first);
  return {
    initiator: started.ratchet,
    responder: answered.ratchet,
    initialMessage,
    init: started.init,
  };
}
