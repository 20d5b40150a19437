/**
 * The transcode-job protocol between nodes and workers, in one place: subjects, the job, and
 * the timings both sides keep.
 *
 * - A node asks `reelay.transcode.jobs` (queue group `workers`) with a {@linkcode PartJob}. Only
 *   workers with a free slot are subscribed, so a busy worker is never offered a job, and "no
 *   responders" means no worker is free: the node transcodes the part itself.
 * - The worker answers `{ accepted: true, worker }` or `{ accepted: false, reason }`, then sends
 *   the part's MPEG-TS on `reelay.transcode.<id>.out`, each message with a `Seq` header, heartbeats
 *   as header-only `Beat` messages, and an `End` header (`ok`, or `error` with the reason as
 *   payload) last.
 * - The node grants bytes on `reelay.transcode.<id>.credit` (the cumulative number of bytes it
 *   may be sent, as text; `cancel` stops the part). The worker reads ffmpeg only within the
 *   grant, so ffmpeg is paced by the viewer as it is on a node. The node repeats its grant every
 *   {@linkcode BEAT_MS} as a keepalive.
 *
 * @module
 */

import type { PlannedSegment } from "../media/plan.ts";

/** The subject of job offers. */
export const JOBS_SUBJECT = "reelay.transcode.jobs";
/** The queue group workers share. */
export const WORKERS_GROUP = "workers";

/** Where a job's bytes go. */
export function outSubject(id: string): string {
  return `reelay.transcode.${id}.out`;
}

/** Where a job's credit (and cancel) comes from. */
export function creditSubject(id: string): string {
  return `reelay.transcode.${id}.credit`;
}

/** How often each side shows it is alive. */
export const BEAT_MS = 1000;
/** Silence after which the other side is taken for gone. */
export const GONE_MS = 5000;

/** One part to transcode. */
export interface PartJob {
  /** Random hex, unique per job. */
  id: string;
  /** The video's file name in the library (no folders). */
  video: string;
  /** The file's size on the node, so that a worker with another file of that name refuses. */
  size: number;
  /** The planned part (the worker builds ffmpeg's arguments from it, not the node). */
  segment: PlannedSegment;
  /** libx264 preset. */
  preset: string;
  /** Whether the part is tuned to start fast (the first part of a stream). */
  fastStart: boolean;
}

/** A worker's answer to a job. */
export type JobAnswer =
  | { accepted: true; worker: string }
  | { accepted: false; reason: string };

/** A job id: 32 hex digits. */
export const JOB_ID = /^[0-9a-f]{32}$/;
