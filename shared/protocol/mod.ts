/**
 * The wire protocol's public face: the messages (one definition of each wire type), their one
 * encoder, and the framed connection that yields typed items, so the server and the client never
 * see a frame kind. Frames themselves are in `frame.ts`; see `docs/protocol.md`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeMessage, PROTOCOL_VERSION } from "./mod.ts";
 * assert.equal(PROTOCOL_VERSION, 3);
 * assert.ok(encodeMessage({ type: "ping" }).length > 5);
 * ```
 *
 * @module
 */

export { DEFAULT_MAX_FRAME_BYTES, type StreamChunk } from "./frame.ts";
export {
  FramedConnection,
  type FramedOptions,
  isDisconnect,
  ORDERED_BUDGET_BYTES,
  type QueueAccount,
} from "./framed.ts";
export {
  type Announcement,
  CHANNEL_PROLOGUE,
  type ClientMessage,
  type ClientMessageType,
  encodeMessage,
  MAX_DIRECTORY_PAGE,
  PROTOCOL_VERSION,
  type PublicIdentity,
  type Received,
  type SegmentPlan,
  type ServerLimits,
  type ServerMessage,
  type StreamEndReason,
  type VideoListing,
} from "./messages.ts";

import type { FramedConnection } from "./framed.ts";
import type { ClientMessage, ServerMessage } from "./messages.ts";

/** The server's connection to one client. */
export type ServerConnection = FramedConnection<ClientMessage, ServerMessage>;
/** A client's connection to the server. */
export type ClientConnection = FramedConnection<ServerMessage, ClientMessage>;
