/**
 * One transcode for many viewers, and the opt-in `chunks/` cache: viewers of the same part share
 * one ffmpeg (counted from the process table), slots count transcodes, a cached part is served
 * without ffmpeg, and the cache stays within its size.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { concat } from "../shared/bytes.ts";
import { PartCache } from "../server/media/part_cache.ts";
import { PartSources } from "../server/media/part_sources.ts";
import { type StreamEvent, streamVideo, type VideoStream } from "../server/media/playback.ts";
import { planPlayback } from "../server/media/plan.ts";
import { TranscodeSlots } from "../server/media/slots.ts";
import { probeVideo } from "../server/media/tools.ts";
import { joinClient, startTestServer } from "../testing/harness.ts";
import { processesMentioning } from "../testing/processes.ts";
import { generateVideo } from "../testing/sample_video.ts";
import { within } from "./_deadline.ts";
import { makeMediaDir } from "./_media.ts";

const HEIGHTS = { heights: [144, 160, 180], capToSource: true };

const media = await makeMediaDir("sharing");
const clip = join(media.dir, "clip.mp4");
await generateVideo(clip, { width: 320, height: 180, rate: "30", seconds: 12, audioRate: 48000 });

async function bytesOf(stream: VideoStream): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  for await (const event of stream as AsyncIterable<StreamEvent>) {
    if (event.type === "chunk") chunks.push(event.chunk);
  }
  return concat(chunks);
}

/**
 * Samples the process table until `done` settles: every ffmpeg pid seen, and the most at once.
 * Fails if `done` has not settled within 60 s.
 */
async function watchProcesses(marker: string, done: Promise<unknown>) {
  const seen = new Set<number>();
  let most = 0;
  let finished = false;
  void done.finally(() => finished = true).catch(() => {});
  const deadline = Date.now() + 60_000;
  while (!finished) {
    assert.ok(Date.now() < deadline, "the streams did not finish within 60 s");
    const pids = await processesMentioning(marker);
    for (const pid of pids) seen.add(pid);
    most = Math.max(most, pids.length);
  }
  return { seen, most };
}

Deno.test("five streams of one video share one ffmpeg per part and one slot each", async () => {
  const info = await probeVideo(clip);
  const plan = planPlayback(info, HEIGHTS);
  const slots = new TranscodeSlots(3);
  const sources = new PartSources({ preset: "ultrafast", slots });
  const streams = await Promise.all(
    [0, 1, 2, 3, 4].map(() => streamVideo(info, plan, { sources })),
  );
  const reading = Promise.all(streams.map(bytesOf));
  const { seen, most } = await watchProcesses(media.marker, reading);
  const results = await within(reading, 60_000, "five streams");
  assert.equal(sources.started, 3, "one ffmpeg per part");
  assert.ok(seen.size <= 3 && most <= 2, `ffmpeg seen: ${seen.size}, at once: ${most}`);
  for (const bytes of results.slice(1)) assert.deepEqual(bytes, results[0], "the same bytes");
  assert.ok(streams.every((stream) => stream.origins.every((o) => o !== "cache")));
  assert.ok(streams.slice(1).every((stream) => stream.origins[0] === "shared"));
  assert.equal(slots.inUse, 0);
  await sources.close();
  assert.deepEqual(await processesMentioning(media.marker), []);
});

Deno.test("a viewer who leaves a shared part does not stop it for the others", async () => {
  const info = await probeVideo(clip);
  const plan = planPlayback(info, HEIGHTS);
  const sources = new PartSources({ preset: "ultrafast" });
  const staying = await streamVideo(info, plan, { sources });
  const leaving = await streamVideo(info, plan, { sources });
  // Both are at their first bytes, so both have the next part open ahead, shared.
  const stayingEvents = staying[Symbol.asyncIterator]();
  const leavingEvents = leaving[Symbol.asyncIterator]();
  for (const events of [stayingEvents, leavingEvents]) {
    await events.next();
    await events.next();
  }
  await Promise.all([staying.settled(), leaving.settled()]);
  assert.deepEqual(leaving.pids, staying.pids);
  await leaving.stop();
  let chunks = 0;
  while (!(await within(stayingEvents.next(), 60_000, "the staying stream")).done) chunks++;
  assert.ok(chunks > 0);
  assert.equal(sources.started, 3, "nothing was started again");
  await sources.close();
  assert.deepEqual(await processesMentioning(media.marker), []);
});

Deno.test("the cache serves a later viewer without ffmpeg and stays within its size", async () => {
  const info = await probeVideo(clip);
  const plan = planPlayback(info, HEIGHTS);
  const dir = await Deno.makeTempDir({ prefix: "reelay-chunks-" });
  try {
    const open = () => PartCache.open({ dir, maxBytes: 64 << 20, maxAgeMs: 60_000 });
    const first = new PartSources({ preset: "ultrafast", cache: await open() });
    const original = await bytesOf(await streamVideo(info, plan, { sources: first }));
    await first.close();
    const cache = await open();
    assert.equal((await cache.usage()).files, 3, "every complete part is kept");

    // A new server process (new sources) with the same folder: no ffmpeg at all.
    const second = new PartSources({ preset: "ultrafast", cache, slots: new TranscodeSlots(1) });
    const stream = await streamVideo(info, plan, { sources: second });
    const reading = bytesOf(stream);
    const { seen } = await watchProcesses(media.marker, reading);
    assert.deepEqual(await reading, original, "the same bytes, from the cache");
    assert.deepEqual(stream.origins, ["cache", "cache", "cache"]);
    assert.equal(second.started, 0);
    assert.equal(seen.size, 0, "no ffmpeg ran");
    await second.close();

    // Room for one part only: the cache keeps what fits, least recently used out first.
    const sizes = await Array.fromAsync(Deno.readDir(dir), (e) => Deno.stat(join(dir, e.name)));
    const largest = Math.max(...sizes.map((s) => s.size));
    const small = await PartCache.open({ dir, maxBytes: largest, maxAgeMs: 60_000 });
    const usage = await small.usage();
    assert.ok(usage.bytes <= largest && usage.files >= 1, `${usage.files} parts, ${usage.bytes}`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("end to end: five viewers of one video run one ffmpeg per part", async () => {
  const server = await startTestServer({
    videos: media.dir,
    patch: (config) => {
      config.stream.heights = HEIGHTS.heights;
      config.stream.preset = "ultrafast";
      config.stream.maxTranscodes = 2;
      config.stream.maxStreamsPerHost = 5;
    },
  });
  const names = ["ann", "ben", "cat", "dan", "eve"];
  const viewers = await Promise.all(names.map((name) => joinClient(server.port, name)));
  try {
    await Promise.all(viewers.map((viewer) => viewer.session.play("clip.mp4")));
    const ended = Promise.all(
      viewers.map((viewer) => viewer.log.waitFor("stream-ended", () => true, 60_000)),
    );
    const { seen, most } = await watchProcesses(media.marker, ended);
    for (const end of await ended) assert.equal(end.reason, "complete", end.message);
    assert.ok(seen.size <= 3 && most <= 2, `ffmpeg seen: ${seen.size}, at once: ${most}`);
    for (const viewer of viewers) {
      assert.deepEqual(viewer.log.of("segment").map((event) => event.index), [0, 1, 2]);
    }
  } finally {
    for (const viewer of viewers) await viewer.session.quit();
    await server.close();
  }
  assert.deepEqual(await processesMentioning(media.marker), []);
});

Deno.test("end to end: with the cache on, a viewer after a restart runs no ffmpeg", async () => {
  const chunks = await Deno.makeTempDir({ prefix: "reelay-chunks-" });
  const start = () =>
    startTestServer({
      videos: media.dir,
      patch: (config) => {
        config.stream.heights = HEIGHTS.heights;
        config.stream.preset = "ultrafast";
        config.media.cache = true;
        config.media.cacheDir = chunks;
      },
    });
  try {
    for (const round of ["first", "second"]) {
      const server = await start();
      const viewer = await joinClient(server.port, "ann");
      try {
        await viewer.session.play("clip.mp4");
        const ended = viewer.log.waitFor("stream-ended", () => true, 60_000);
        const { seen } = await watchProcesses(media.marker, ended);
        assert.equal((await ended).reason, "complete");
        if (round === "second") assert.equal(seen.size, 0, "served from chunks/, no ffmpeg");
      } finally {
        await viewer.session.quit();
        await server.close();
      }
    }
  } finally {
    await Deno.remove(chunks, { recursive: true });
  }
});

Deno.test({
  name: "remove the sample folder",
  fn: async () => await Deno.remove(media.dir, { recursive: true }),
});
