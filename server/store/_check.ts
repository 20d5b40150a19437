/**
 * Checks of what the store is given. What a remote person chose (a message id, a prekey, an
 * announcement) fails with a `ReelayError` for them; what the server's own code computed (a
 * fingerprint, a name, a page size) fails with a `TypeError` or `RangeError`, as a bug.
 *
 * @module
 */

import { utf8 } from "../../shared/bytes.ts";
import { ReelayError } from "../../shared/errors.ts";
import {
  type JsonValue,
  type MailCount,
  MAX_MESSAGE_ID_LENGTH,
  MAX_NOTICE_BYTES,
  MAX_PAGE,
  type NewMail,
  type StoreOptions,
} from "./mod.ts";

const FINGERPRINT = /^[0-9a-f]+(?::[0-9a-f]+)*$/;
const MAX_FINGERPRINT_LENGTH = 160;
const MAX_TEXT_LENGTH = 256;
const MESSAGE_ID = new RegExp(`^[\\x21-\\x7e]{1,${MAX_MESSAGE_ID_LENGTH}}$`);

/** Shows a value in an error message: quoted, escaped, and cut short if long. */
export function shown(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 80 ? `${text.slice(0, 77)}..."` : text;
}

/** A key fingerprint: lowercase hex, optionally grouped with ":". */
export function checkFingerprint(value: unknown, what = "Fingerprint"): string {
  if (
    typeof value !== "string" || value.length > MAX_FINGERPRINT_LENGTH || !FINGERPRINT.test(value)
  ) {
    throw new TypeError(`${what} ${shown(value)} is not lowercase hex`);
  }
  return value;
}

/** A name or name key: non-empty text of reasonable length (the name rules live elsewhere). */
export function checkText(value: unknown, what: string): string {
  if (typeof value !== "string" || value.length === 0 || value.length > MAX_TEXT_LENGTH) {
    throw new TypeError(
      `${what} ${shown(value)} must be text of 1 to ${MAX_TEXT_LENGTH} characters`,
    );
  }
  return value;
}

/** A sender-chosen message id. */
export function checkMessageId(value: unknown): string {
  if (typeof value !== "string" || !MESSAGE_ID.test(value)) {
    throw new ReelayError(
      "bad-message-id",
      `Message id ${shown(value)} is not allowed: use 1 to ${MAX_MESSAGE_ID_LENGTH} printable ` +
        `ASCII characters without spaces`,
    );
  }
  return value;
}

/** A page size or batch length the server chose. */
export function checkLimit(value: unknown, what = "Limit"): number {
  if (!Number.isSafeInteger(value) || (value as number) < 1 || (value as number) > MAX_PAGE) {
    throw new RangeError(`${what} ${shown(value)} must be an integer from 1 to ${MAX_PAGE}`);
  }
  return value as number;
}

/** A time in milliseconds since the epoch. */
export function checkTime(value: unknown, what = "Time"): number {
  if (!Number.isSafeInteger(value) || (value as number) < 0) {
    throw new RangeError(`${what} ${shown(value)} must be a non-negative integer of milliseconds`);
  }
  return value as number;
}

/** Bytes, which must be a `Uint8Array`. */
export function checkBytes(value: unknown, what: string): Uint8Array {
  if (!(value instanceof Uint8Array)) throw new TypeError(`${what} must be a Uint8Array`);
  return value;
}

/**
 * JSON text of `value` as UTF-8, throwing `tooLarge()` past `max` bytes. A value JSON cannot
 * write (`undefined`, a function, a cycle, a BigInt) is a `TypeError`.
 */
export function jsonBytes(
  value: JsonValue,
  max: number,
  tooLarge: (bytes: number) => Error,
): Uint8Array {
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch (error) {
    throw new TypeError(`Value cannot be stored as JSON: ${error}`);
  }
  if (text === undefined) throw new TypeError(`Value ${shown(value)} cannot be stored as JSON`);
  const bytes = utf8(text);
  if (bytes.length > max) throw tooLarge(bytes.length);
  return bytes;
}

/** A mail item as every mailbox holds it, checked. */
export interface CheckedMail {
  recipientKey: string;
  recipientName: string;
  kind: "sealed" | "notice";
  senderKey: string | null;
  senderName: string | null;
  messageId: string | null;
  body: Uint8Array;
}

/** Checks a new mail item: what its sender chose fails as theirs, the rest as a bug. */
export function checkMail(item: NewMail): CheckedMail {
  const recipientKey = checkFingerprint(item.recipientKey, "Recipient key");
  const recipientName = checkText(item.recipientName, "Recipient name");
  if (item.kind === "sealed") {
    return {
      recipientKey,
      recipientName,
      kind: "sealed",
      senderKey: checkFingerprint(item.senderKey, "Sender key"),
      senderName: checkText(item.senderName, "Sender name"),
      messageId: checkMessageId(item.messageId),
      body: checkBytes(item.envelope, "Envelope"),
    };
  }
  if (item.kind !== "notice") throw new TypeError(`Mail kind ${shown(item)} is unknown`);
  const body = jsonBytes(
    item.notice,
    MAX_NOTICE_BYTES,
    (bytes) =>
      new RangeError(`Notice of ${bytes} bytes is over the ${MAX_NOTICE_BYTES}-byte bound`),
  );
  return {
    recipientKey,
    recipientName,
    kind: "notice",
    senderKey: null,
    senderName: null,
    messageId: null,
    body,
  };
}

/** Refuses an item of `size` bytes that would pass a recipient's bounds, given what they hold. */
export function checkRecipientRoom(
  name: string,
  held: MailCount,
  size: number,
  limits: Required<Pick<StoreOptions, "maxItemsPerRecipient" | "maxBytesPerRecipient">>,
): void {
  if (held.items + 1 > limits.maxItemsPerRecipient) {
    throw new ReelayError(
      "recipient-mailbox-full",
      `The mailbox for ${shown(name)} is full: ${held.items} items are held for them, the ` +
        `most is ${limits.maxItemsPerRecipient}`,
    );
  }
  if (held.bytes + size > limits.maxBytesPerRecipient) {
    throw new ReelayError(
      "recipient-mailbox-full",
      `The mailbox for ${shown(name)} is full: ${held.bytes} bytes are held for them, and ` +
        `${size} more would pass the most, ${limits.maxBytesPerRecipient} bytes`,
    );
  }
}

/**
 * Refuses an item of `size` bytes that would pass one sender's share of the mailbox (`limit`),
 * given the bytes of theirs it holds.
 */
export function checkSenderRoom(sent: MailCount, size: number, limit: number): void {
  if (sent.bytes + size > limit) {
    throw new ReelayError(
      "sender-mailbox-full",
      `You have too much mail waiting on this server: ${sent.bytes} bytes of your messages ` +
        `are held until their recipients take them, and ${size} more would pass the most ` +
        `one sender may have held, ${limit} bytes`,
    );
  }
}
