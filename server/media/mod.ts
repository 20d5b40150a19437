/**
 * The server's media: the catalog of a videos folder, what a play of a video is (the plan and
 * the ffmpeg arguments of its parts), the processes that transcode it, and the viewers that
 * stream it to connections.
 *
 * Where things are: ffprobe output is read in `probe.ts`, the folder is watched in
 * `catalog.ts`, a play is planned in `plan.ts`, ffmpeg's arguments are built in
 * `ffmpeg_args.ts`, ffmpeg is spawned and killed in `transcode.ts`, a part counts as complete only
 * when its timestamps cover its plan (`honest_end.ts`), the server-wide cap is
 * `slots.ts`, a part's bytes come from one transcode shared by all its viewers, the `chunks/`
 * cache or a new ffmpeg in `part_sources.ts` (over `fanout.ts` and `part_cache.ts`), parts are
 * played in sequence in `playback.ts`, and a connection's stream is pumped with credit in
 * `viewer.ts`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Catalog, checkFfmpeg } from "./mod.ts";
 * await checkFfmpeg();
 * const catalog = await Catalog.open(await Deno.makeTempDir(), { watch: false });
 * assert.equal(catalog.list().length, 0);
 * await catalog.close();
 * ```
 *
 * @module
 */

export { Catalog, type CatalogChange, type CatalogOptions, requireVideo } from "./catalog.ts";
export { buildFfmpegArgs } from "./ffmpeg_args.ts";
export { type PlannedSegment, planPlayback, type PlaybackPlan } from "./plan.ts";
export { type OpenedPart, PartSources, type PartSourcesOptions } from "./part_sources.ts";
export { type StreamEvent, streamVideo, type VideoStream } from "./playback.ts";
export type { VideoInfo } from "./probe.ts";
export { TranscodeSlots } from "./slots.ts";
export { checkFfmpeg, probeVideo } from "./tools.ts";
export { Transcode } from "./transcode.ts";
export { MediaService, type Viewer } from "./viewer.ts";
