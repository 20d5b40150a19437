/**
 * Every control message of protocol version 2, as discriminated unions, with the one encoder
 * and the parsers that validate untrusted frames: decoding a message *is* validating it.
 *
 * Sealed chat envelopes (`send`, `deliver`) travel as raw bytes: the frame holds the message's
 * JSON header and then the envelope (see `frame.ts`); everything else is one JSON object.
 *
 * @module
 */

import {
  type Announcement,
  MAX_EPOCH_TEXT,
  MAX_INITIAL_MESSAGE_BYTES,
  MAX_KEY_TEXT,
  MAX_SIGNATURE_TEXT,
  type PublicIdentity,
} from "../crypto/mod.ts";
import { ProtocolError } from "../errors.ts";
import { MAX_NAME_LENGTH } from "../names.ts";
import {
  decodeBodyPayload,
  decodeStreamPayload,
  encodeBodyFrame,
  encodeFrame,
  type Frame,
  KIND_BODY,
  KIND_CONTROL,
  KIND_STREAM,
  type StreamChunk,
} from "./frame.ts";
import {
  array,
  boolean,
  type Fields,
  integer,
  number,
  object,
  oneOf,
  optionalInteger,
  optionalString,
  string,
} from "./_validate.ts";

/**
 * The protocol version this build speaks (3: everything inside the secure channel; 2 added
 * sealed envelopes as binary frame bodies). Lasting conversations add `prekeys`, `bundle`, `ack`,
 * `refuse`, `queued`, `sealed`, `failed` and `refused` (see docs/protocol.md).
 */
export const PROTOCOL_VERSION = 3;

/** The secure channel's prologue: both sides must speak this protocol and version. */
export const CHANNEL_PROLOGUE = `reelay/${PROTOCOL_VERSION}`;

const MAX_LIST = 10_000;
/** Largest sealed envelope relayed: a kind byte and a conversation's initial message. */
export const MAX_SEALED_BYTES = 1 + MAX_INITIAL_MESSAGE_BYTES;
/** Most announcements in one `directory` message. */
export const MAX_DIRECTORY_PAGE = 256;

export type { Announcement, PublicIdentity };

/** One planned third of a video. */
export interface SegmentPlan {
  index: number;
  start: number;
  end: number;
  width: number;
  height: number;
  requestedHeight: number;
  capped: boolean;
}

/** A video as offered to clients. */
export interface VideoListing {
  name: string;
  duration: number;
  width: number;
  height: number;
  fps: number;
  hasAudio: boolean;
  segments: SegmentPlan[];
  /** The H.264 encoder the server transcodes with, e.g. `libx264 (software)`. */
  encoder?: string;
}

/** Limits the server announces so clients can stay within them. */
export interface ServerLimits {
  maxFrameBytes: number;
  chatRate: number;
  chatBurst: number;
  windowBytes: number;
}

/** Why a stream ended. */
export type StreamEndReason = "complete" | "stopped" | "error";

/** Messages a client sends. `ref` ties an answer or error to its request. */
export type ClientMessage =
  | ({
    type: "hello";
    protocol: number;
    /** RSA-PSS over ("reelay-join-v3", handshake hash, announcement signature), base64. */
    proof: string;
  } & Announcement)
  | {
    type: "send";
    ref?: number;
    to: string;
    /** The recipient's full key fingerprint the sender sealed for (refused if it changed). */
    toKey?: string;
    /** The sender's id for the message (the server makes one when absent). */
    id?: string;
    envelope: Uint8Array;
  }
  | { type: "prekeys"; ref?: number; published: Record<string, unknown> }
  | { type: "bundle"; ref?: number; name: string }
  | { type: "ack"; mail: string[] }
  | { type: "refuse"; to: string; toKey: string; id: string; reason: string; signature: string }
  | { type: "videos"; ref?: number }
  | { type: "play"; ref?: number; video: string; from?: number }
  | { type: "stop"; ref?: number }
  | { type: "pause"; ref?: number }
  | { type: "resume"; ref?: number }
  | { type: "credit"; stream: number; bytes: number }
  | { type: "ping" }
  | { type: "pong" }
  | { type: "bye" };

/** Messages the server sends. */
export type ServerMessage =
  | { type: "directory"; peers: Announcement[] }
  | { type: "welcome"; protocol: number; name: string; limits: ServerLimits }
  | { type: "joined"; peer: Announcement }
  | { type: "left"; name: string }
  | {
    type: "deliver";
    from: string;
    /** The sender's public keys as the server knows them (checked against the pin). */
    fromKeys?: PublicIdentity;
    id?: string;
    /** The mailbox item to acknowledge, when it was held for us. */
    mail?: string;
    envelope: Uint8Array;
  }
  | { type: "sealed"; from: string; to: string; envelope: Uint8Array }
  | { type: "relayed"; ref?: number; to: string; id?: string }
  | { type: "queued"; ref?: number; to: string; id: string }
  | {
    type: "bundle";
    ref?: number;
    name: string;
    identity: PublicIdentity;
    bundle: Record<string, unknown>;
  }
  | { type: "prekeys-stored"; ref?: number; oneTime: number; pqOneTime: number }
  | { type: "failed"; to: string; id: string; reason: string; mail?: string }
  | {
    type: "refused";
    from: string;
    id: string;
    reason: string;
    signature: string;
    mail?: string;
  }
  | { type: "videos"; ref?: number; videos: VideoListing[] }
  | {
    type: "stream-start";
    ref?: number;
    stream: number;
    video: VideoListing;
    /** Seconds into the video where the stream starts (after a seek); absent means 0. */
    from?: number;
  }
  | {
    type: "stream-end";
    stream: number;
    bytes: number;
    reason: StreamEndReason;
    message?: string;
  }
  | { type: "error"; ref?: number; code: string; message: string }
  | { type: "ping" }
  | { type: "pong" }
  | { type: "shutdown"; message: string };

/** The type names of client messages. */
export type ClientMessageType = ClientMessage["type"];

/**
 * What a connection yields for each frame it receives: a valid message, stream bytes, or a
 * message that failed validation (the receiver decides whether that ends the connection).
 */
export type Received<M> =
  | { kind: "message"; message: M }
  | { kind: "stream"; chunk: StreamChunk }
  | { kind: "malformed"; error: ProtocolError };

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/**
 * Encodes a message as the whole frame that carries it: a control frame of JSON, or for `send`
 * and `deliver` a body frame of the JSON header and the envelope bytes.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeFrame } from "./frame.ts";
 * import { encodeMessage, parseClientMessage } from "./messages.ts";
 * const frame = decodeFrame(encodeMessage({ type: "send", to: "bob", envelope: new Uint8Array([7]) }));
 * assert.deepEqual(parseClientMessage(frame), { type: "send", to: "bob", envelope: new Uint8Array([7]) });
 * ```
 */
export function encodeMessage(message: ClientMessage | ServerMessage): Uint8Array<ArrayBuffer> {
  if (message.type === "send" || message.type === "deliver" || message.type === "sealed") {
    const { envelope, ...header } = message;
    return encodeBodyFrame(encoder.encode(JSON.stringify(header)), envelope);
  }
  return encodeFrame(KIND_CONTROL, encoder.encode(JSON.stringify(message)));
}

/** A frame's JSON fields, and its body when it is a body frame. */
function decodeJson(frame: Frame): { fields: Fields; body?: Uint8Array } {
  if (frame.kind !== KIND_CONTROL && frame.kind !== KIND_BODY) {
    throw new ProtocolError("unexpected-frame", `Frame kind ${frame.kind} carries no message`);
  }
  const { header, body } = frame.kind === KIND_BODY
    ? decodeBodyPayload(frame.payload)
    : { header: frame.payload, body: undefined };
  let value: unknown;
  try {
    value = JSON.parse(decoder.decode(header));
  } catch {
    throw new ProtocolError("malformed-message", "Control frame is not UTF-8 JSON");
  }
  return { fields: object(value, "message"), body };
}

/** The envelope a body frame carries; `send` and `deliver` need one, other messages none. */
function envelope(type: string, body: Uint8Array | undefined): Uint8Array {
  if (body === undefined) {
    throw new ProtocolError(
      "malformed-message",
      `Message "${type}" must carry its envelope as the frame's body`,
    );
  }
  if (body.length > MAX_SEALED_BYTES) {
    throw new ProtocolError(
      "malformed-message",
      `Field "envelope" is longer than ${MAX_SEALED_BYTES} bytes`,
    );
  }
  return body;
}

function noBody(type: string, body: Uint8Array | undefined): void {
  if (body !== undefined) {
    throw new ProtocolError("malformed-message", `Message "${type}" carries no body`);
  }
}

function optional<K extends string, T>(key: K, value: T | undefined): { [P in K]?: T } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: T };
}

const MAX_ID = 64;
const MAX_REASON = 64;
const MAX_FINGERPRINT = 128;

function ref(fields: Fields): { ref?: number } {
  const value = optionalInteger(fields, "ref", 0, 2 ** 32);
  return value === undefined ? {} : { ref: value };
}

function keys(value: unknown, field: string): PublicIdentity {
  const fields = object(value, field);
  return {
    encryptionKey: string(fields, "encryptionKey", MAX_KEY_TEXT),
    signingKey: string(fields, "signingKey", MAX_KEY_TEXT),
  };
}

function announcement(fields: Fields): Announcement {
  return {
    name: string(fields, "name", MAX_NAME_LENGTH),
    keys: keys(fields.keys, "keys"),
    epoch: string(fields, "epoch", MAX_EPOCH_TEXT),
    signature: string(fields, "signature", MAX_SIGNATURE_TEXT),
  };
}

function announcementValue(value: unknown, field: string): Announcement {
  return announcement(object(value, field));
}

/**
 * Parses and validates a frame from a client; throws a {@linkcode ProtocolError} naming what is
 * wrong.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeFrame } from "./frame.ts";
 * import { encodeMessage, parseClientMessage } from "./messages.ts";
 * const frame = decodeFrame(encodeMessage({ type: "videos", ref: 1 }));
 * assert.deepEqual(parseClientMessage(frame), { type: "videos", ref: 1 });
 * ```
 */
export function parseClientMessage(frame: Frame): ClientMessage {
  const { fields, body } = decodeJson(frame);
  const type = string(fields, "type", 32);
  if (type === "send") {
    return {
      type,
      ...ref(fields),
      to: string(fields, "to", MAX_NAME_LENGTH),
      ...optional("toKey", optionalString(fields, "toKey", MAX_FINGERPRINT)),
      ...optional("id", optionalString(fields, "id", MAX_ID)),
      envelope: envelope(type, body),
    };
  }
  noBody(type, body);
  switch (type) {
    case "prekeys":
      return { type, ...ref(fields), published: object(fields.published, "published") };
    case "bundle":
      return { type, ...ref(fields), name: string(fields, "name", MAX_NAME_LENGTH) };
    case "ack":
      return {
        type,
        mail: array(
          fields,
          "mail",
          1000,
          (value, field) => string({ [field]: value }, field, MAX_ID),
        ),
      };
    case "refuse":
      return {
        type,
        to: string(fields, "to", MAX_NAME_LENGTH),
        toKey: string(fields, "toKey", MAX_FINGERPRINT),
        id: string(fields, "id", MAX_ID),
        reason: string(fields, "reason", MAX_REASON),
        signature: string(fields, "signature", MAX_SIGNATURE_TEXT),
      };
    case "hello":
      return {
        type,
        protocol: integer(fields, "protocol", 0, 1000),
        ...announcement(fields),
        proof: string(fields, "proof", MAX_SIGNATURE_TEXT),
      };
    case "videos":
      return { type, ...ref(fields) };
    case "play":
      return {
        type,
        ...ref(fields),
        video: string(fields, "video", 1024),
        ...optionalFrom(fields),
      };
    case "stop":
    case "pause":
    case "resume":
      return { type, ...ref(fields) };
    case "credit":
      return {
        type,
        stream: integer(fields, "stream", 0, 2 ** 32 - 1),
        bytes: integer(fields, "bytes", 1, 2 ** 40),
      };
    case "ping":
    case "pong":
    case "bye":
      return { type };
    default:
      throw new ProtocolError("unknown-message", `Message type ${JSON.stringify(type)} is unknown`);
  }
}

/** An optional position in a video, in seconds (at most a year). */
function optionalFrom(fields: Record<string, unknown>): { from?: number } {
  return fields.from === undefined ? {} : { from: number(fields, "from", 0, 366 * 86_400) };
}

function segment(value: unknown, field: string): SegmentPlan {
  const fields = object(value, field);
  return {
    index: integer(fields, "index", 0, 255),
    start: number(fields, "start"),
    end: number(fields, "end"),
    width: integer(fields, "width", 0, 100_000),
    height: integer(fields, "height", 0, 100_000),
    requestedHeight: integer(fields, "requestedHeight", 0, 100_000),
    capped: boolean(fields, "capped"),
  };
}

function video(value: unknown, field: string): VideoListing {
  const fields = object(value, field);
  return {
    name: string(fields, "name", 1024),
    duration: number(fields, "duration"),
    width: integer(fields, "width", 0, 100_000),
    height: integer(fields, "height", 0, 100_000),
    fps: number(fields, "fps"),
    hasAudio: boolean(fields, "hasAudio"),
    segments: array(fields, "segments", 16, segment),
    ...(fields.encoder === undefined ? {} : { encoder: string(fields, "encoder", 128) }),
  };
}

function limits(value: unknown): ServerLimits {
  const fields = object(value, "limits");
  return {
    maxFrameBytes: integer(fields, "maxFrameBytes", 1),
    chatRate: number(fields, "chatRate"),
    chatBurst: number(fields, "chatBurst"),
    windowBytes: integer(fields, "windowBytes", 1),
  };
}

/**
 * Parses and validates a frame from the server (clients do not trust it either).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeFrame } from "./frame.ts";
 * import { encodeMessage, parseServerMessage } from "./messages.ts";
 * const frame = decodeFrame(encodeMessage({ type: "left", name: "bob" }));
 * assert.deepEqual(parseServerMessage(frame), { type: "left", name: "bob" });
 * ```
 */
export function parseServerMessage(frame: Frame): ServerMessage {
  const { fields, body } = decodeJson(frame);
  const type = string(fields, "type", 32);
  if (type === "deliver") {
    return {
      type,
      from: string(fields, "from", MAX_NAME_LENGTH),
      ...optional(
        "fromKeys",
        fields.fromKeys === undefined ? undefined : keys(fields.fromKeys, "fromKeys"),
      ),
      ...optional("id", optionalString(fields, "id", MAX_ID)),
      ...optional("mail", optionalString(fields, "mail", MAX_ID)),
      envelope: envelope(type, body),
    };
  }
  if (type === "sealed") {
    return {
      type,
      from: string(fields, "from", MAX_NAME_LENGTH),
      to: string(fields, "to", MAX_NAME_LENGTH),
      envelope: envelope(type, body),
    };
  }
  noBody(type, body);
  switch (type) {
    case "queued":
      return {
        type,
        ...ref(fields),
        to: string(fields, "to", MAX_NAME_LENGTH),
        id: string(fields, "id", MAX_ID),
      };
    case "bundle":
      return {
        type,
        ...ref(fields),
        name: string(fields, "name", MAX_NAME_LENGTH),
        identity: keys(fields.identity, "identity"),
        bundle: object(fields.bundle, "bundle"),
      };
    case "prekeys-stored":
      return {
        type,
        ...ref(fields),
        oneTime: integer(fields, "oneTime", 0, 100_000),
        pqOneTime: integer(fields, "pqOneTime", 0, 100_000),
      };
    case "failed":
      return {
        type,
        to: string(fields, "to", MAX_NAME_LENGTH),
        id: string(fields, "id", MAX_ID),
        reason: string(fields, "reason", MAX_REASON),
        ...optional("mail", optionalString(fields, "mail", MAX_ID)),
      };
    case "refused":
      return {
        type,
        from: string(fields, "from", MAX_NAME_LENGTH),
        id: string(fields, "id", MAX_ID),
        reason: string(fields, "reason", MAX_REASON),
        signature: string(fields, "signature", MAX_SIGNATURE_TEXT),
        ...optional("mail", optionalString(fields, "mail", MAX_ID)),
      };
    case "directory":
      return { type, peers: array(fields, "peers", MAX_DIRECTORY_PAGE, announcementValue) };
    case "welcome":
      return {
        type,
        protocol: integer(fields, "protocol", 0, 1000),
        name: string(fields, "name", MAX_NAME_LENGTH),
        limits: limits(fields.limits),
      };
    case "joined":
      return { type, peer: announcementValue(fields.peer, "peer") };
    case "left":
      return { type, name: string(fields, "name", MAX_NAME_LENGTH) };
    case "relayed":
      return {
        type,
        ...ref(fields),
        to: string(fields, "to", MAX_NAME_LENGTH),
        ...optional("id", optionalString(fields, "id", MAX_ID)),
      };
    case "videos":
      return { type, ...ref(fields), videos: array(fields, "videos", MAX_LIST, video) };
    case "stream-start":
      return {
        type,
        ...ref(fields),
        stream: integer(fields, "stream", 0, 2 ** 32 - 1),
        video: video(fields.video, "video"),
        ...optionalFrom(fields),
      };
    case "stream-end": {
      const message = optionalString(fields, "message", 4096);
      return {
        type,
        stream: integer(fields, "stream", 0, 2 ** 32 - 1),
        bytes: integer(fields, "bytes"),
        reason: oneOf(fields, "reason", ["complete", "stopped", "error"] as const),
        ...(message === undefined ? {} : { message }),
      };
    }
    case "error":
      return {
        type,
        ...ref(fields),
        code: string(fields, "code", 64),
        message: string(fields, "message", 4096),
      };
    case "ping":
    case "pong":
      return { type };
    case "shutdown":
      return { type, message: string(fields, "message", 4096) };
    default:
      throw new ProtocolError("unknown-message", `Message type ${JSON.stringify(type)} is unknown`);
  }
}

function received<M>(frame: Frame, parse: (frame: Frame) => M): Received<M> {
  try {
    return { kind: "message", message: parse(frame) };
  } catch (error) {
    if (error instanceof ProtocolError && error.code !== "unexpected-frame") {
      return { kind: "malformed", error };
    }
    throw error;
  }
}

/**
 * What a frame from a client is. Stream data or an unknown kind throws a
 * {@linkcode ProtocolError} (`unexpected-frame`): that ends the connection.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeFrame } from "./frame.ts";
 * import { encodeMessage, fromClient } from "./messages.ts";
 * assert.equal(fromClient(decodeFrame(encodeMessage({ type: "ping" }))).kind, "message");
 * ```
 */
export function fromClient(frame: Frame): Received<ClientMessage> {
  if (frame.kind === KIND_STREAM) {
    throw new ProtocolError("unexpected-frame", "Stream data is not accepted from clients");
  }
  return received(frame, parseClientMessage);
}

/**
 * What a frame from the server is: a message, stream bytes (a view valid until the next frame),
 * or a malformed message. An unknown kind throws a {@linkcode ProtocolError}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeFrame, encodeStreamFrame } from "./frame.ts";
 * import { fromServer } from "./messages.ts";
 * assert.equal(fromServer(decodeFrame(encodeStreamFrame(1, 0, new Uint8Array(4)))).kind, "stream");
 * ```
 */
export function fromServer(frame: Frame): Received<ServerMessage> {
  if (frame.kind === KIND_STREAM) {
    return { kind: "stream", chunk: decodeStreamPayload(frame.payload) };
  }
  return received(frame, parseServerMessage);
}
