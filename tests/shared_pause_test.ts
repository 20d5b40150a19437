/**
 * A paused viewer of a shared part, with real ffmpeg: while it is paused it takes nothing from
 * the share; when the other viewer's transcode runs further past it than the share keeps, it is
 * dropped from the share (the other viewer goes on unhindered and the buffer stays bounded), and
 * on resume it goes on from what it was sent, with a transcode of its own, as one stream.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { concat } from "../shared/bytes.ts";
import { planPlayback } from "../server/media/plan.ts";
import { probeVideo } from "../server/media/tools.ts";
import { startServer } from "../server/mod.ts";
import { joinClient, testConfig, testServerKey } from "../testing/harness.ts";
import { processesMentioning } from "../testing/processes.ts";
import { generateVideo } from "../testing/sample_video.ts";
import { framesOf, makeMediaDir, recordingSinks, stderrOf } from "./_media.ts";

const HEIGHTS = [144, 720, 144];
/** The smallest share buffer `[media] share_buffer_bytes` allows; the 720p part is larger. */
const SHARE_BYTES = 1024 * 1024;
const media = await makeMediaDir("sharedpause");
const clip = join(media.dir, "clip.mp4");
await generateVideo(clip, { width: 1280, height: 720, rate: "30", seconds: 15, audioRate: 48000 });
const info = await probeVideo(clip);
const plan = planPlayback(info, { heights: HEIGHTS, capToSource: true });

/** Every frame of the video once, each at its third's size, and a decoder without complaint. */
async function checkWhole(bytes: Uint8Array): Promise<void> {
  const path = join(media.dir, `received-${crypto.randomUUID()}.ts`);
  await Deno.writeFile(path, bytes);
  try {
    assert.equal(await stderrOf("ffmpeg", ["-v", "warning", "-i", path, "-f", "null", "-"]), "");
    const frames = await framesOf(path);
    assert.equal(frames.length, plan.frameCount, "every frame once");
    for (const [i, frame] of frames.entries()) {
      const segment = plan.segments.find((s) => i < s.endFrame || s.last)!;
      assert.equal(frame.height, segment.height, `frame ${i} at its third's size`);
    }
  } finally {
    await Deno.remove(path);
  }
}

Deno.test("a paused viewer of a shared part is dropped past the share and resumes where it was", async () => {
  const lines: string[] = [];
  const server = await startServer(
    testConfig(media.dir, (config) => {
      config.stream.heights = HEIGHTS;
      config.stream.preset = "ultrafast";
      config.media.encoder = "software";
      config.media.shareBufferBytes = SHARE_BYTES;
      // Only the share can end the paused viewer's part here, not the grace time.
      config.media.pauseGraceMs = 600_000;
    }),
    {
      log: (level, message) => lines.push(`${level} ${message}`),
      serverKey: await testServerKey(),
    },
  );
  const ann = recordingSinks();
  const ben = recordingSinks();
  const paused = await joinClient(server.port, "ann", { sinks: ann.make });
  const reading = await joinClient(server.port, "ben", { sinks: ben.make });
  try {
    await Promise.all([paused.session.play("clip.mp4"), reading.session.play("clip.mp4")]);
    await paused.log.waitFor("progress");
    paused.session.pause();
    await paused.log.waitFor("paused");

    // The other viewer is not held back by the paused one.
    const benEnd = await reading.log.waitFor("stream-ended", () => true, 120_000);
    assert.equal(benEnd.reason, "complete", benEnd.message);
    assert.equal(paused.log.of("stream-ended").length, 0, "the paused stream is still there");

    paused.session.resume();
    const annEnd = await paused.log.waitFor("stream-ended", () => true, 120_000);
    assert.equal(annEnd.reason, "complete", annEnd.message);
    const dropped = lines.find((line) => line.includes("dropped from a shared part"));
    assert.ok(dropped, `the paused viewer was dropped from the share:\n${lines.join("\n")}`);
    assert.match(dropped, /fell more than 1048576 bytes behind/);
    assert.ok(lines.some((line) => line.includes("resumed with a new ffmpeg")), lines.join("\n"));
    assert.equal(ann.streams.length, 1, "the same player all along");
    await checkWhole(concat(ann.streams[0]));
    await checkWhole(concat(ben.streams[0]));
  } finally {
    await paused.session.quit();
    await reading.session.quit();
    await server.close();
  }
  assert.deepEqual(await processesMentioning(media.marker), [], "no ffmpeg is left");
});

Deno.test({
  name: "remove the sample folder",
  fn: async () => await Deno.remove(media.dir, { recursive: true }),
});
