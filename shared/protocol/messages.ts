/**
 * Every control message of protocol version 1, as discriminated unions, with parsers that
 * validate untrusted JSON: decoding a message *is* validating it.
 *
 * @module
 */

import { ProtocolError } from "../errors.ts";
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

/** The protocol version this build speaks. */
export const PROTOCOL_VERSION = 1;

/** Longest base64 text of a sealed chat envelope accepted in a message. */
export const MAX_ENVELOPE_TEXT = 64 * 1024;

const MAX_KEY_TEXT = 2048;
const MAX_LIST = 10_000;
/** Most announcements in one `directory` message. */
export const MAX_DIRECTORY_PAGE = 256;

/** A person's public keys, base64 SPKI. */
export interface PublicKeys {
  encryptionKey: string;
  signingKey: string;
}

/** A signed statement "name has these keys for this connection (epoch)". */
export interface Announcement {
  name: string;
  keys: PublicKeys;
  epoch: string;
  signature: string;
}

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
  | ({ type: "hello"; protocol: number } & Announcement)
  | { type: "send"; ref?: number; to: string; envelope: string }
  | { type: "videos"; ref?: number }
  | { type: "play"; ref?: number; video: string }
  | { type: "stop"; ref?: number }
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
  | { type: "deliver"; from: string; envelope: string }
  | { type: "relayed"; ref?: number; to: string }
  | { type: "videos"; ref?: number; videos: VideoListing[] }
  | {
    type: "stream-start";
    ref?: number;
    stream: number;
    video: VideoListing;
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

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/**
 * Encodes a message as the UTF-8 JSON payload of a control frame.
 *
 * @example
 * ```ts
 * import { encodeMessage } from "./messages.ts";
 * const payload = encodeMessage({ type: "ping" });
 * ```
 */
export function encodeMessage(message: ClientMessage | ServerMessage): Uint8Array {
  return encoder.encode(JSON.stringify(message));
}

function decodeJson(payload: Uint8Array): Fields {
  let text: string;
  let value: unknown;
  try {
    text = decoder.decode(payload);
    value = JSON.parse(text);
  } catch {
    throw new ProtocolError("malformed-message", "Control frame is not UTF-8 JSON");
  }
  return object(value, "message");
}

function ref(fields: Fields): { ref?: number } {
  const value = optionalInteger(fields, "ref", 0, 2 ** 32);
  return value === undefined ? {} : { ref: value };
}

function keys(value: unknown, field: string): PublicKeys {
  const fields = object(value, field);
  return {
    encryptionKey: string(fields, "encryptionKey", MAX_KEY_TEXT),
    signingKey: string(fields, "signingKey", MAX_KEY_TEXT),
  };
}

function announcement(fields: Fields): Announcement {
  return {
    name: string(fields, "name", 64),
    keys: keys(fields.keys, "keys"),
    epoch: string(fields, "epoch", 64),
    signature: string(fields, "signature", MAX_KEY_TEXT),
  };
}

function announcementValue(value: unknown, field: string): Announcement {
  return announcement(object(value, field));
}

/**
 * Parses and validates a control frame from a client.
 *
 * @example
 * ```ts
 * import { encodeMessage, parseClientMessage } from "./messages.ts";
 * parseClientMessage(encodeMessage({ type: "videos", ref: 1 })); // { type: "videos", ref: 1 }
 * ```
 */
export function parseClientMessage(payload: Uint8Array): ClientMessage {
  const fields = decodeJson(payload);
  const type = string(fields, "type", 32);
  switch (type) {
    case "hello":
      return { type, protocol: integer(fields, "protocol", 0, 1000), ...announcement(fields) };
    case "send":
      return {
        type,
        ...ref(fields),
        to: string(fields, "to", 64),
        envelope: string(fields, "envelope", MAX_ENVELOPE_TEXT),
      };
    case "videos":
      return { type, ...ref(fields) };
    case "play":
      return { type, ...ref(fields), video: string(fields, "video", 1024) };
    case "stop":
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
 * Parses and validates a control frame from the server (clients do not trust it either).
 *
 * @example
 * ```ts
 * import { encodeMessage, parseServerMessage } from "./messages.ts";
 * parseServerMessage(encodeMessage({ type: "left", name: "bob" })); // { type: "left", name: "bob" }
 * ```
 */
export function parseServerMessage(payload: Uint8Array): ServerMessage {
  const fields = decodeJson(payload);
  const type = string(fields, "type", 32);
  switch (type) {
    case "directory":
      return { type, peers: array(fields, "peers", MAX_DIRECTORY_PAGE, announcementValue) };
    case "welcome":
      return {
        type,
        protocol: integer(fields, "protocol", 0, 1000),
        name: string(fields, "name", 64),
        limits: limits(fields.limits),
      };
    case "joined":
      return { type, peer: announcementValue(fields.peer, "peer") };
    case "left":
      return { type, name: string(fields, "name", 64) };
    case "deliver":
      return {
        type,
        from: string(fields, "from", 64),
        envelope: string(fields, "envelope", MAX_ENVELOPE_TEXT),
      };
    case "relayed":
      return { type, ...ref(fields), to: string(fields, "to", 64) };
    case "videos":
      return { type, ...ref(fields), videos: array(fields, "videos", MAX_LIST, video) };
    case "stream-start":
      return {
        type,
        ...ref(fields),
        stream: integer(fields, "stream", 0, 2 ** 32 - 1),
        video: video(fields.video, "video"),
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
