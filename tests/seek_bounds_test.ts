/**
 * The edges of a resume point: `/play --from` and `/seek` at or past the end are refused with
 * `bad-position` (a seek leaves the stream playing), a relative seek before the start starts at
 * the start, a start exactly at a third's boundary plays that third as planned (the very part
 * every other viewer plays, so it is shared), and a start on the last frame plays that frame.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { ReelayError } from "../shared/errors.ts";
import { planFrom, planPlayback, startPointAt } from "../server/media/plan.ts";
import { probeVideo } from "../server/media/tools.ts";
import { joinClient, startTestServer } from "../testing/harness.ts";
import { processesMentioning } from "../testing/processes.ts";
import { generateVideo } from "../testing/sample_video.ts";
import { gatedSinks, makeMediaDir } from "./_media.ts";

const HEIGHTS = [144, 160, 180];
const media = await makeMediaDir("bounds");
const clip = join(media.dir, "clip.mp4");
await generateVideo(clip, { width: 320, height: 180, rate: "30", seconds: 12, audioRate: 48000 });
const info = await probeVideo(clip);
const plan = planPlayback(info, { heights: HEIGHTS, capToSource: true });

Deno.test("a start exactly at a third's boundary is that third as planned", () => {
  for (const segment of plan.segments.slice(1)) {
    const rest = planFrom(plan, info, startPointAt(info, segment.startFrame / 30));
    assert.deepEqual(rest.segments[0], segment, `third ${segment.index + 1}`);
  }
});

Deno.test("a start one frame before a boundary keeps that frame and no negative audio", () => {
  for (const segment of plan.segments.slice(0, -1)) {
    const rest = planFrom(plan, info, startPointAt(info, (segment.endFrame - 1) / 30));
    const [first] = rest.segments;
    assert.equal(first.index, segment.index);
    assert.equal(first.endFrame - first.startFrame, 1);
    assert.ok(first.audioEndSample! >= first.audioStartSample!, "audio from start to end");
  }
});

async function scene() {
  const server = await startTestServer({
    videos: media.dir,
    patch: (config) => {
      config.stream.heights = HEIGHTS;
      config.stream.preset = "ultrafast";
      config.stream.windowBytes = 64 * 1024;
    },
  });
  const sinks = gatedSinks();
  const viewer = await joinClient(server.port, "ann", { sinks: sinks.make });
  const close = async () => {
    sinks.open();
    await viewer.session.quit();
    await server.close();
    assert.deepEqual(await processesMentioning(media.marker), [], "no ffmpeg is left");
  };
  return { viewer, sinks, close };
}

async function rejectsWith(promise: Promise<unknown>, code: string, message: RegExp) {
  const error = await promise.then(() => undefined, (error: unknown) => error);
  assert.ok(error instanceof ReelayError, `expected ${code}, got ${error}`);
  assert.equal(error.code, code);
  assert.match(error.message, message);
}

Deno.test("a play from the end or past it is refused with bad-position, before any ffmpeg", async () => {
  const { viewer, close } = await scene();
  try {
    for (const from of [12, 90]) {
      await rejectsWith(
        viewer.session.play("clip.mp4", { from }),
        "bad-position",
        new RegExp(`Position "${from}" s is past the end of "clip\\.mp4" \\(12 s long\\)`),
      );
    }
    assert.equal(viewer.log.of("stream-started").length, 0);
    assert.deepEqual(await processesMentioning(media.marker), []);
  } finally {
    await close();
  }
});

Deno.test("a seek past the end is refused and the stream goes on; one before 0 starts at 0", async () => {
  const { viewer, sinks, close } = await scene();
  try {
    await viewer.session.play("clip.mp4", { from: 5 });
    await viewer.log.waitFor("segment");
    await rejectsWith(
      viewer.session.seek(20, true),
      "bad-position",
      /Position "2\d(\.\d)?" s is past the end of "clip\.mp4" \(12 s long\)/,
    );
    await rejectsWith(viewer.session.seek(12), "bad-position", /Position "12" s/);
    assert.equal(viewer.log.of("seeked").length, 0, "nothing was stopped");
    assert.equal(viewer.log.of("stream-ended").length, 0, "the stream goes on");

    await viewer.session.seek(-60, true);
    const seeked = await viewer.log.waitFor("seeked");
    assert.equal(seeked.position, 0);
    const started = viewer.log.of("stream-started");
    assert.equal(started.length, 2);
    assert.equal(started[1].from ?? 0, 0, "from the start");
    sinks.open();
    const ended = await viewer.log.waitFor("stream-ended", () => true, 60_000);
    assert.equal(ended.reason, "complete", ended.message);
  } finally {
    await close();
  }
});

Deno.test("a play from a boundary plays that third; from the last frame, that frame", async () => {
  const { viewer, sinks, close } = await scene();
  sinks.open();
  try {
    for (const [from, third] of [[4, 1], [8, 2], [11.99, 2]]) {
      viewer.log.events.length = 0;
      await viewer.session.play("clip.mp4", { from });
      const started = await viewer.log.waitFor("stream-started");
      const ended = await viewer.log.waitFor("stream-ended", () => true, 60_000);
      assert.equal(ended.reason, "complete", `from ${from}: ${ended.message}`);
      const thirds = viewer.log.of("segment").map((event) => event.index);
      assert.deepEqual(thirds, third === 1 ? [1, 2] : [2], `from ${from}`);
      assert.ok(Math.abs((started.from ?? 0) - from) <= 1 / 30, `from ${started.from}`);
    }
  } finally {
    await close();
  }
});

Deno.test({
  name: "remove the sample folder",
  fn: async () => await Deno.remove(media.dir, { recursive: true }),
});
