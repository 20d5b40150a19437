/**
 * Everything a client session reports, as one discriminated union. The terminal prints these
 * for people; `--json` prints each as one JSON object per line. Field names are part of the
 * scripting interface documented in docs/events.md: add fields, never rename them.
 *
 * @module
 */

import type { SegmentPlan, StreamEndReason, VideoListing } from "../shared/protocol/mod.ts";
import type { HistoryEntry } from "./store/mod.ts";

/** A person in the directory as the client sees them. */
export interface PeerView {
  name: string;
  fingerprint: string;
  /**
   * `new`: not verified (first seen, or pinned on first use); `verified`: the person compared
   * safety numbers and said so with `/trust`; `changed`: differs from the pinned key (blocked).
   */
  trust: "new" | "verified" | "changed";
}

/** Every event a session emits. */
export type ClientEvent =
  | {
    event: "welcome";
    server: string;
    name: string;
    fingerprint: string;
    /** How many are online, you included. */
    online: number;
    /** The names of the others online. */
    names: string[];
    /** Of the others online, how many are verified, and how many show a changed key. */
    verified: number;
    changed: number;
    /** The server's channel key, as `reelay server --fingerprint` prints it. */
    serverFingerprint: string;
    /** `pinned`: as pinned before; `new`: first connection, now pinned; `accepted`: replaced. */
    serverKey: "pinned" | "new" | "accepted";
  }
  | { event: "joined"; name: string; fingerprint: string; trust: PeerView["trust"] }
  | { event: "left"; name: string }
  | { event: "who"; peers: PeerView[] }
  | { event: "message"; from: string; text: string; id: string; sentAt: number; missing: number }
  | { event: "sent"; to: string; id: string }
  | { event: "queued"; to: string; id: string }
  | { event: "delivered"; to: string; id: string }
  | { event: "failed"; to: string; id: string; reason: string }
  | { event: "sealed"; from: string; to: string; bytes: number; envelope: string }
  | {
    event: "key-changed";
    name: string;
    fingerprint: string;
    pinnedFingerprint: string;
  }
  | { event: "verify"; name: string; code: string; fingerprint: string; yourFingerprint: string }
  | { event: "trusted"; name: string; fingerprint: string }
  | { event: "verify-hint"; name: string; message: string }
  | { event: "videos"; videos: VideoListing[] }
  | {
    event: "stream-started";
    video: string;
    duration: number;
    segments: SegmentPlan[];
    /** Seconds into the video where the stream starts (absent or 0 unless a seek or --from). */
    from?: number;
  }
  /** The viewer paused / resumed at `position` seconds (of what had arrived). */
  | { event: "paused" | "resumed"; video: string; position: number }
  /** The viewer seeks: the player restarts and the stream starts again at `position`. */
  | { event: "seeked"; video: string; position: number }
  /** The bytes of part `index` began to arrive (the player shows it later: see `showing`). */
  | { event: "segment"; video: string; index: number; height: number; width: number }
  /** The player now shows part `index` (its resolution changed on screen). */
  | { event: "showing"; video: string; index: number; height: number; width: number }
  | {
    event: "progress";
    video: string;
    /** The part whose bytes arrive now, and its height. */
    index: number;
    height: number;
    /** Seconds into the video of the newest bytes that arrived. */
    position: number;
    /**
     * Seconds into the video on screen: for a real-time player, where it is by the clock since
     * it took the first bytes (less the time paused); for any other sink, what arrived.
     */
    shown: number;
    duration: number;
    bytes: number;
  }
  | {
    event: "stream-ended";
    video: string;
    bytes: number;
    reason: StreamEndReason;
    message?: string;
    /**
     * Cut by a lost connection: `true` when it resumes once the server is back; `false` when it
     * was waiting to, and was stopped.
     */
    resumes?: boolean;
  }
  | {
    event: "error";
    code: string;
    message: string;
    /** The input line (from 1) whose command failed; absent for errors no command caused. */
    line?: number;
    /** That line's text. */
    input?: string;
  }
  /** `/query`: plain lines now go to `name`; no `name` when the conversation was left. */
  | { event: "conversation"; name?: string }
  /**
   * `/history`: kept messages, oldest first, with `name` (with everyone when absent). `recent`:
   * the last few shown on `/query NAME` (people only, not in `--json`). `off`: history is off, so
   * no new message is kept.
   */
  | { event: "history"; name?: string; entries: HistoryEntry[]; recent?: boolean; off?: true }
  /** `/history clear [NAME]`: how many messages were deleted from the store. */
  | { event: "history-cleared"; name?: string; deleted: number }
  /** `/history on|off`: whether new messages are kept now. */
  | { event: "history-kept"; kept: boolean }
  /** `/ignore` and `/unignore`: the names ignored now. */
  | { event: "ignored"; names: string[] }
  | { event: "disconnected"; reason: string; code: string }
  /**
   * The connection was lost (`code`, `reason`: why, or why the last attempt failed); attempt
   * `attempt` (from 1) dials `server` again in `delayMs`.
   */
  | {
    event: "reconnecting";
    server: string;
    code: string;
    reason: string;
    attempt: number;
    delayMs: number;
  }
  /** Joined again after `afterMs` down and `attempts` attempts; who is online now. */
  | {
    event: "reconnected";
    server: string;
    afterMs: number;
    attempts: number;
    online: number;
    names: string[];
  }
  /**
   * The session ended: the server did not come back within the give-up time. `code` and
   * `reason`: why the last attempt failed; `afterMs` down, `attempts` made.
   */
  | {
    event: "gave-up";
    server: string;
    code: string;
    reason: string;
    afterMs: number;
    attempts: number;
  };

/** The `event` names. */
export type ClientEventName = ClientEvent["event"];
