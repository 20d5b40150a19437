/**
 * Pause, resume and seek with real ffmpeg over loopback: a paused stream's ffmpeg is stopped,
 * then ended after the grace time; resuming long after the old stall timeout goes on from where
 * it was as one MPEG-TS; a seek into each third plays at that third's resolution, from the
 * frame asked for, with audio in sync and continuous timestamps.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import type { StreamSink } from "../client/player.ts";
import { concat } from "../shared/bytes.ts";
import type { Config } from "../shared/config/mod.ts";
import { TIMESTAMP_BASE_SECONDS } from "../server/media/ffmpeg_args.ts";
import { planPlayback } from "../server/media/plan.ts";
import { probeVideo } from "../server/media/tools.ts";
import { joinClient, startTestServer } from "../testing/harness.ts";
import { processesMentioning } from "../testing/processes.ts";
import { generateVideo } from "../testing/sample_video.ts";
import { framesOf, makeMediaDir, packetsOf, processStateOf, stderrOf } from "./_media.ts";
import { RawClient, rawIdentity, waitUntil } from "./_raw.ts";

const TS_HZ = 90_000;
const HEIGHTS = [144, 160, 180];
const media = await makeMediaDir("pause");
const clip = join(media.dir, "clip.mp4");
await generateVideo(clip, { width: 320, height: 180, rate: "30", seconds: 24, audioRate: 48000 });
const info = await probeVideo(clip);
const plan = planPlayback(info, { heights: HEIGHTS, capToSource: true });

/**
 * A sink that keeps every stream it is given, taking each chunk after a short while (so a pause
 * lands mid-stream) until `unpace()`, then at once (a busy machine stretches every one of those
 * waits, and a viewer that takes nothing for the stall timeout is cut off).
 */
function recordingSinks(delayMs: number) {
  const streams: Uint8Array[][] = [];
  let paced = delayMs > 0;
  const make = (): StreamSink => {
    const chunks: Uint8Array[] = [];
    streams.push(chunks);
    return {
      write: async (chunk) => {
        if (paced) await new Promise((resolve) => setTimeout(resolve, delayMs));
        chunks.push(chunk.slice());
      },
      finish: () => Promise.resolve(),
      abort: () => Promise.resolve(),
      gone: new Promise<void>(() => {}),
    };
  };
  return { streams, make, unpace: () => paced = false };
}

/** A server over the sample folder with `patch`, one recording viewer, and their cleanup. */
async function scene(patch: (config: Config) => void, sinkDelayMs: number) {
  const server = await startTestServer({
    videos: media.dir,
    patch: (config) => {
      config.stream.heights = HEIGHTS;
      config.stream.preset = "ultrafast";
      patch(config);
    },
  });
  const sinks = recordingSinks(sinkDelayMs);
  const viewer = await joinClient(server.port, "ann", { sinks: sinks.make });
  const raws: RawClient[] = [];
  const raw = async () => {
    const client = await RawClient.connect(server.port);
    raws.push(client);
    return client;
  };
  const close = async () => {
    for (const client of raws) await client.close();
    await viewer.session.quit();
    await server.close();
    assert.deepEqual(await processesMentioning(media.marker), [], "no ffmpeg is left");
  };
  return { viewer, sinks, raw, close };
}

/** Waits until every ffmpeg of the sample folder is stopped (SIGSTOP); returns their pids. */
async function allStopped(): Promise<number[]> {
  let stopped: number[] = [];
  await waitUntil(
    async () => {
      const pids = await processesMentioning(media.marker);
      const states = await Promise.all(pids.map(processStateOf));
      stopped = pids.filter((_, i) => states[i] === "T");
      return pids.length > 0 && stopped.length === pids.length;
    },
    "every ffmpeg of the stream is stopped",
    20_000,
  );
  return stopped;
}

/**
 * Checks a received stream from frame `firstFrame` to the end: every frame once, evenly spaced,
 * at its third's size; audio in one run of AAC frames from the nearest frame boundary; and a
 * decoder reads it without a single complaint.
 */
async function checkStream(bytes: Uint8Array, firstFrame: number): Promise<void> {
  const path = join(media.dir, `received-${crypto.randomUUID()}.ts`);
  await Deno.writeFile(path, bytes);
  try {
    assert.equal(await stderrOf("ffmpeg", ["-v", "warning", "-i", path, "-f", "null", "-"]), "");
    const fps = info.frameRate.num / info.frameRate.den;
    const frames = await framesOf(path);
    assert.equal(frames.length, plan.frameCount - firstFrame, "every frame from the start, once");
    const base = TIMESTAMP_BASE_SECONDS * TS_HZ;
    assert.ok(Math.abs(frames[0].pts - (base + firstFrame / fps * TS_HZ)) <= 91, "first frame");
    for (let i = 1; i < frames.length; i++) {
      const step = frames[i].pts - frames[i - 1].pts;
      assert.ok(Math.abs(step - TS_HZ / fps) <= 91, `frame ${i} step ${step}`);
    }
    for (const [i, frame] of frames.entries()) {
      const segment = plan.segments.find((s) => firstFrame + i < s.endFrame || s.last)!;
      assert.equal(frame.height, segment.height, `frame ${firstFrame + i} at its third's size`);
    }
    const packets = await packetsOf(path);
    assert.ok(packets.find((p) => p.type === "video")?.key, "it starts on a keyframe");
    const audio = packets.filter((p) => p.type === "audio");
    const frameAudio = 1024 * TS_HZ / info.audioSampleRate!;
    for (let i = 1; i < audio.length; i++) {
      const step = audio[i].pts - audio[i - 1].pts;
      assert.ok(Math.abs(step - frameAudio) <= 1, `audio packet ${i} step ${step}`);
    }
    // In sync: audio starts at the AAC frame boundary nearest the first frame (or its priming
    // frame, one AAC frame earlier, at the very start).
    const lead = firstFrame === 0 ? frameAudio : 0;
    assert.ok(Math.abs(audio[0].pts + lead - frames[0].pts) <= frameAudio / 2, "A/V start");
    const audioEnd = (audio.at(-1)!.pts + frameAudio - base) / TS_HZ;
    assert.ok(Math.abs(audioEnd - info.duration) <= 2 * 1024 / 48000, `audio ends ${audioEnd}`);
  } finally {
    await Deno.remove(path);
  }
}

Deno.test("a pause longer than the stall timeout parks ffmpeg; resume goes on as one stream", async () => {
  // Seconds of headroom: the viewer has 7 s to answer each ping and to take stream data, even on
  // a loaded machine.
  const { viewer, sinks, raw, close } = await scene((config) => {
    config.stream.windowBytes = 64 * 1024;
    config.limits.keepaliveMs = 1000;
    config.limits.idleTimeoutMs = 8000;
    config.media.pauseGraceMs = 500;
  }, 20);
  try {
    const identity = await rawIdentity(); // made first: the keygen must not race the idle timer
    await viewer.session.play("clip.mp4");
    // The paced sink takes a second of video in well under a second when the machine is idle,
    // and in tens of seconds when it is not: a deadline, not a threshold.
    await viewer.log.waitFor("progress", (event) => event.position > 1, 60_000);
    viewer.session.pause();
    await viewer.log.waitFor("paused");
    // Ended after the grace time: a paused viewer costs nothing. (That it is stopped at once is
    // the next test's: here the grace is too short to watch that on a busy machine.)
    await waitUntil(
      async () => (await processesMentioning(media.marker)).length === 0,
      "no ffmpeg is left",
      20_000,
    );
    const before = viewer.log.of("progress").length;
    // The stall timeout is the idle timeout. A witness that joins now and says nothing is cut
    // off by the server's own idle timer: by then a stall timer started by the pause would have
    // ended the stream, and the first stream-ended below would not be "complete".
    const witness = await raw();
    assert.equal((await witness.join("witness", identity)).type, "welcome");
    await witness.waitForError("idle-timeout", undefined, 60_000);
    assert.equal(viewer.log.of("stream-ended").length, 0, "the paused stream is still there");
    assert.equal(viewer.log.of("progress").length, before, "nothing arrived while paused");
    sinks.unpace();
    viewer.session.resume();
    const ended = await viewer.log.waitFor("stream-ended", () => true, 60_000);
    assert.equal(ended.reason, "complete", ended.message);
    assert.equal(sinks.streams.length, 1, "the same player all along");
    await checkStream(concat(sinks.streams[0]), 0);
  } finally {
    await close();
  }
});

Deno.test("a pause within the grace time resumes the same ffmpeg", async () => {
  const { viewer, sinks, close } = await scene((config) => {
    config.stream.windowBytes = 64 * 1024;
    config.media.pauseGraceMs = 600_000;
  }, 20);
  try {
    await viewer.session.play("clip.mp4");
    await viewer.log.waitFor("progress", (event) => event.position > 1, 60_000);
    viewer.session.pause();
    const stopped = await allStopped();
    viewer.session.resume();
    await waitUntil(
      async () => !(await Promise.all(stopped.map(processStateOf))).includes("T"),
      "it runs again",
      20_000,
    );
    const ended = await viewer.log.waitFor("stream-ended", () => true, 60_000);
    assert.equal(ended.reason, "complete", ended.message);
    await checkStream(concat(sinks.streams[0]), 0);
  } finally {
    await close();
  }
});

Deno.test("a seek into each third plays at its resolution, in sync, from the frame asked", async () => {
  const { viewer, sinks, close } = await scene(() => {}, 0);
  try {
    for (const [third, seconds] of [[1, 10.5], [0, 3], [2, 19.25]]) {
      viewer.log.events.length = 0;
      await viewer.session.play("clip.mp4");
      await viewer.log.waitFor("segment");
      viewer.log.events.length = 0;
      await viewer.session.seek(seconds);
      const started = await viewer.log.waitFor("stream-started");
      assert.ok(Math.abs((started.from ?? 0) - seconds) < 1 / 30, `starts at ${started.from}`);
      const end = await viewer.log.waitFor("stream-ended", () => true, 60_000);
      assert.equal(end.reason, "complete", end.message);
      assert.equal(viewer.log.of("stream-ended").length, 1, "the seek ended nothing aloud");
      assert.equal(viewer.log.of("seeked").length, 1);
      const segments = viewer.log.of("segment");
      assert.equal(segments[0].index, third, `a position in third ${third + 1} plays there`);
      await checkStream(concat(sinks.streams.at(-1)!), Math.round(seconds * 30));
    }
    assert.equal(sinks.streams.length, 6, "the player restarted cleanly at each seek");
  } finally {
    await close();
  }
});

Deno.test({
  name: "remove the sample folder",
  fn: async () => await Deno.remove(media.dir, { recursive: true }),
});
