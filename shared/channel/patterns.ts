/**
 * Noise handshake patterns as token lists, the `psk` and `hfs` modifiers that transform them,
 * and protocol names such as `Noise_NXhfs_25519+MLKEM768_ChaChaPoly_SHA256`.
 *
 * Only what reelay uses or tests is listed: the fundamental patterns `NN`, `NX` and `XX`
 * (specification revision 34, section 7.4), `pskN` (section 9) and `hfs` (the KEM-based hybrid
 * forward secrecy extension, revision 1, section 5).
 *
 * @module
 */

/** A token of a message pattern, including the `hfs` extension's `e1` and `ekem1`. */
export type Token = "e" | "s" | "ee" | "es" | "se" | "ss" | "psk" | "e1" | "ekem1";

/** A public key one side knows before the handshake (a pre-message). */
export type PreMessageToken = "e" | "s";

/** A handshake pattern: pre-messages, then messages alternating from the initiator. */
export interface HandshakePattern {
  /** The pattern's name with its modifiers, as it appears in a protocol name (`NXhfs`). */
  readonly name: string;
  /** Keys of the initiator that the responder knows beforehand. */
  readonly initiatorPreMessage: readonly PreMessageToken[];
  /** Keys of the responder that the initiator knows beforehand. */
  readonly responderPreMessage: readonly PreMessageToken[];
  /** Message patterns; even indexes are sent by the initiator. */
  readonly messages: readonly (readonly Token[])[];
}

/** The parts of a protocol name. */
export interface ProtocolName {
  /** The full name, hashed into the handshake. */
  readonly name: string;
  /** The (modified) pattern. */
  readonly pattern: HandshakePattern;
  /** The DH function's name: always `25519` here. */
  readonly dh: "25519";
  /** The KEM's name when the pattern uses `hfs`: always `MLKEM768` here. */
  readonly kem: "MLKEM768" | undefined;
  /** The cipher's name: always `ChaChaPoly` here. */
  readonly cipher: "ChaChaPoly";
  /** The hash's name: always `SHA256` here. */
  readonly hash: "SHA256";
}

const FUNDAMENTAL: Record<string, Omit<HandshakePattern, "name">> = {
  NN: { initiatorPreMessage: [], responderPreMessage: [], messages: [["e"], ["e", "ee"]] },
  NX: {
    initiatorPreMessage: [],
    responderPreMessage: [],
    messages: [["e"], ["e", "ee", "s", "es"]],
  },
  XX: {
    initiatorPreMessage: [],
    responderPreMessage: [],
    messages: [["e"], ["e", "ee", "s", "es"], ["s", "se"]],
  },
};

const DH_TOKENS: ReadonlySet<Token> = new Set(["ee", "es", "se", "ss"]);

/**
 * The pattern named `name`: a fundamental pattern followed by modifiers joined with `+`, such as
 * `NXhfs` or `NNpsk0+psk2`. Throws a `RangeError` for anything else.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { pattern } from "./patterns.ts";
 * assert.deepEqual(pattern("NXhfs").messages, [["e", "e1"], ["e", "ee", "ekem1", "s", "es"]]);
 * ```
 */
export function pattern(name: string): HandshakePattern {
  const match = /^([A-Z]{2})([a-z0-9+]*)$/.exec(name);
  const base = match && Object.hasOwn(FUNDAMENTAL, match[1]) ? FUNDAMENTAL[match[1]] : undefined;
  if (!match || !base) throw new RangeError(`Handshake pattern "${name}" is not supported`);
  let messages = base.messages.map((message) => [...message]);
  const modifiers = match[2] === "" ? [] : match[2].split("+");
  for (const modifier of modifiers) messages = applyModifier(name, modifier, messages);
  return { ...base, name, messages };
}

function applyModifier(name: string, modifier: string, messages: Token[][]): Token[][] {
  const psk = /^psk([0-9])$/.exec(modifier);
  if (psk) return withPsk(name, Number(psk[1]), messages);
  if (modifier === "hfs") return withHfs(name, messages);
  throw new RangeError(`Modifier "${modifier}" in pattern "${name}" is not supported`);
}

/** `pskN`: a `psk` token at the start of the first message (N = 0) or the end of message N. */
function withPsk(name: string, index: number, messages: Token[][]): Token[][] {
  if (index > messages.length) {
    throw new RangeError(`Pattern "${name}" has no message ${index} for its psk token`);
  }
  if (index === 0) messages[0].unshift("psk");
  else messages[index - 1].push("psk");
  return messages;
}

/**
 * `hfs`: `e1` right after the first `e`, or after the first DH of that message so that the KEM
 * key is encrypted; `ekem1` right after the first `ee`.
 */
function withHfs(name: string, messages: Token[][]): Token[][] {
  if (messages.some((message) => message.includes("e1"))) {
    throw new RangeError(`Pattern "${name}" applies hfs twice`);
  }
  const first = messages.find((message) => message.includes("e"));
  const withEe = messages.find((message) => message.includes("ee"));
  if (!first || !withEe) throw new RangeError(`Pattern "${name}" has no "e" and "ee" for hfs`);
  const dhAt = first.findIndex((token) => DH_TOKENS.has(token));
  first.splice(dhAt >= 0 ? dhAt + 1 : first.indexOf("e") + 1, 0, "e1");
  withEe.splice(withEe.indexOf("ee") + 1, 0, "ekem1");
  return messages;
}

/**
 * Parses a protocol name `Noise_<pattern>_<dh>[+<kem>]_<cipher>_<hash>`, accepting only the
 * functions reelay implements. A KEM is named exactly when the pattern uses `hfs`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseProtocolName } from "./patterns.ts";
 * assert.equal(parseProtocolName("Noise_NXhfs_25519+MLKEM768_ChaChaPoly_SHA256").kem, "MLKEM768");
 * assert.throws(() => parseProtocolName("Noise_NX_448_AESGCM_BLAKE2b"), RangeError);
 * ```
 */
export function parseProtocolName(name: string): ProtocolName {
  const parts = name.split("_");
  if (parts.length !== 5 || parts[0] !== "Noise") {
    throw new RangeError(`Protocol name "${name}" is not of the form Noise_XX_25519_...`);
  }
  const [, patternName, dhName, cipher, hash] = parts;
  const handshake = pattern(patternName);
  const [dh, kem, ...rest] = dhName.split("+");
  const usesHfs = handshake.messages.some((message) => message.includes("e1"));
  if (
    dh !== "25519" || rest.length > 0 || (kem !== undefined && kem !== "MLKEM768") ||
    usesHfs !== (kem !== undefined)
  ) {
    throw new RangeError(`Key agreement "${dhName}" does not fit pattern "${patternName}"`);
  }
  if (cipher !== "ChaChaPoly" || hash !== "SHA256") {
    throw new RangeError(`Cipher "${cipher}" with hash "${hash}" is not supported`);
  }
  return { name, pattern: handshake, dh, kem, cipher, hash };
}
