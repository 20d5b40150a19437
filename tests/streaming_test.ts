/**
 * Video end to end: a real server transcoding with real ffmpeg, real clients over loopback TCP,
 * and the received stream checked with ffprobe.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { concat } from "../shared/bytes.ts";
import type { Config } from "../shared/config/mod.ts";
import { type JoinedClient, type PeopleOptions, withPeople } from "../testing/harness.ts";
import { framesOf, makeBroken, makeMediaDir, memorySink, packetsOf } from "./_media.ts";
import { generateVideo } from "../testing/sample_video.ts";
import { processesMentioning } from "../testing/processes.ts";
import { within } from "./_deadline.ts";
import { waitUntil } from "./_raw.ts";

const media = await makeMediaDir("streaming");
await generateVideo(join(media.dir, "clip.mp4"), {
  width: 480,
  height: 270,
  rate: "30",
  seconds: 3,
  audioRate: 48000,
});
await generateVideo(join(media.dir, "long.mp4"), {
  width: 320,
  height: 180,
  rate: "30",
  seconds: 60,
});
await makeBroken(join(media.dir, "broken.mp4"));

/** A server of the media folder at 144p, 180p, 270p (`patch` may change that), `people` on it. */
function withViewers<N extends string>(
  options: Omit<PeopleOptions<N>, "videos">,
  test: (people: Record<N, JoinedClient>) => Promise<void>,
): Promise<void> {
  const patch = (config: Config) => {
    config.stream.heights = [144, 180, 270];
    config.stream.preset = "ultrafast";
    options.patch?.(config);
  };
  return withPeople({ ...options, videos: media.dir, patch }, ({ people }) => test(people));
}

Deno.test("the catalog lists playable videos with their three resolutions", async () => {
  const patch = (config: Config) => config.stream.heights = [144, 240, 720];
  await withViewers({ people: ["alice"], patch }, async ({ alice }) => {
    const videos = await alice.session.listVideos();
    assert.deepEqual(videos.map((video) => video.name), ["clip.mp4", "long.mp4"]);
    const clip = videos[0];
    assert.equal(clip.height, 270);
    assert.equal(clip.hasAudio, true);
    assert.deepEqual(clip.segments.map((s) => [s.height, s.requestedHeight, s.capped]), [
      [144, 144, false],
      [240, 240, false],
      [270, 720, true],
    ]);
    assert.ok(clip.segments.every((s) => s.width % 2 === 0));
  });
});

Deno.test("a played video arrives as one stream switching height at the thirds", async () => {
  const { sink, chunks } = memorySink();
  const clients = { bob: { sinks: () => sink } };
  await withViewers({ people: ["bob"], clients }, async ({ bob }) => {
    await bob.session.play("clip.mp4");
    const ended = await bob.log.waitFor("stream-ended", () => true, 60_000);
    assert.equal(ended.reason, "complete");
    assert.deepEqual(bob.log.of("segment").map((event) => event.height), [144, 180, 270]);
    const file = join(await Deno.makeTempDir(), "received.ts");
    await Deno.writeFile(file, concat(chunks));
    const frames = await framesOf(file);
    assert.ok(Math.abs(frames.length - 90) <= 2, `${frames.length} frames, expected 90`);
    const heights = frames.map((frame) => frame.height);
    assert.equal(heights[0], 144);
    assert.equal(heights[45], 180);
    assert.equal(heights.at(-1), 270);
    const audio = (await packetsOf(file)).filter((packet) => packet.type === "audio");
    // 3 s of 48 kHz AAC is about 141 packets of 1024 samples: the loop below must have work.
    assert.ok(audio.length >= 135, `${audio.length} audio packets, expected about 141`);
    for (let i = 1; i < audio.length; i++) {
      assert.equal(audio[i].pts - audio[i - 1].pts, 1920, `audio gap at packet ${i}`);
    }
  });
});

Deno.test("several viewers watch the same and different videos at once", async () => {
  await withViewers({ people: ["ann", "ben", "cat"] }, async ({ ann, ben, cat }) => {
    const viewers = [ann, ben, cat];
    const videos = ["clip.mp4", "clip.mp4", "long.mp4"];
    await Promise.all(viewers.map((viewer, i) => viewer.session.play(videos[i])));
    await Promise.all(
      viewers.slice(0, 2).map((viewer) => viewer.log.waitFor("stream-ended", () => true, 60_000)),
    );
    for (const viewer of viewers.slice(0, 2)) {
      assert.equal(viewer.log.of("stream-ended")[0].reason, "complete");
      assert.deepEqual(viewer.log.of("segment").map((event) => event.index), [0, 1, 2]);
    }
    assert.equal(viewers[2].log.of("stream-ended").length, 0, "the long video is still playing");
    await viewers[2].session.stop();
  });
});

Deno.test("chat is delivered while a stream runs", async () => {
  await withViewers({ people: ["alice", "bob"] }, async ({ alice, bob }) => {
    await bob.session.play("long.mp4");
    await bob.log.waitFor("segment");
    await alice.session.send("bob", "still there?");
    const message = await bob.log.waitFor("message");
    assert.equal(message.text, "still there?");
    assert.equal(bob.log.of("stream-ended").length, 0, "the stream was still running");
    await bob.session.stop();
  });
});

Deno.test("/stop mid-stream ends the stream and leaves no ffmpeg", async () => {
  await withViewers({ people: ["bob"] }, async ({ bob }) => {
    await bob.session.play("long.mp4");
    await bob.log.waitFor("segment");
    assert.ok(
      (await processesMentioning(media.marker)).length > 0,
      "ffmpeg runs during the stream",
    );
    await bob.session.stop();
    const ended = await bob.log.waitFor("stream-ended");
    assert.equal(ended.reason, "stopped");
    assert.deepEqual(await processesMentioning(media.marker), []);
  });
});

Deno.test("a viewer vanishing mid-stream leaves no ffmpeg, and others go on", async () => {
  await withViewers({ people: ["alice", "bob"] }, async ({ alice, bob }) => {
    await bob.session.play("long.mp4");
    await bob.log.waitFor("segment");
    const gone = alice.log.waitFor("left", (event) => event.name === "bob");
    await bob.session.quit();
    await within(gone, 30_000, "alice to see bob leave");
    // The server says "left" before it ends bob's ffmpeg: wait (with a deadline) for it to go.
    await waitUntil(
      async () => (await processesMentioning(media.marker)).length === 0,
      "no ffmpeg left after the viewer vanished",
      30_000,
    );
    const videos = await alice.session.listVideos();
    assert.equal(videos.length, 2);
  });
});

Deno.test("unknown names, paths and broken files get a clear error", async () => {
  await withViewers({ people: ["bob"] }, async ({ bob }) => {
    for (const name of ["nope.mp4", "../clip.mp4", "/etc/passwd", "broken.mp4"]) {
      await assert.rejects(bob.session.play(name), (error: Error & { code?: string }) => {
        assert.equal(error.code, "unknown-video");
        assert.match(error.message, /is not in the catalog/);
        return true;
      });
    }
    await bob.session.play("clip.mp4");
    const ended = await bob.log.waitFor("stream-ended", () => true, 60_000);
    assert.equal(ended.reason, "complete");
  });
});

Deno.test("beyond the transcode cap, play answers busy", async () => {
  const patch = (config: Config) => config.stream.maxTranscodes = 1;
  await withViewers({ people: ["alice", "bob"], patch }, async ({ alice, bob }) => {
    await alice.session.play("long.mp4");
    await alice.log.waitFor("segment");
    await assert.rejects(bob.session.play("clip.mp4"), (error: Error & { code?: string }) => {
      assert.equal(error.code, "busy");
      return true;
    });
    await alice.session.stop();
  });
});
