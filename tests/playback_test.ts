import assert from "node:assert/strict";
import {
  planPlayback,
  type PlaybackPlan,
  probeVideo,
  type StreamEvent,
  streamVideo,
  TranscodeSlots,
  type VideoInfo,
  type VideoStream,
} from "../server/media/mod.ts";
import { TIMESTAMP_BASE_SECONDS } from "../server/media/ffmpeg_args.ts";
import { concat } from "../shared/bytes.ts";
import { ReelayError } from "../shared/errors.ts";
import {
  decodeAudio,
  framesOf,
  makeBroken,
  makeMediaDir,
  packetsOf,
  stderrOf,
  streamsOf,
  waitChannelOf,
} from "./_media.ts";
import { generateVideo } from "../testing/sample_video.ts";
import { processesMentioning } from "../testing/processes.ts";
import { waitUntil } from "./_raw.ts";

const TS_HZ = 90000;
const DEFAULTS = { heights: [144, 720, 1440], capToSource: true };

/** Reads a whole stream, returning its bytes and the events other than chunks. */
async function collect(stream: VideoStream): Promise<{ bytes: Uint8Array; starts: StreamEvent[] }> {
  const chunks: Uint8Array[] = [];
  const starts: StreamEvent[] = [];
  let segment = -1;
  for await (const event of stream) {
    if (event.type === "chunk") {
      assert.equal(event.segmentIndex, segment, "chunks follow their segment-start");
      chunks.push(event.chunk);
    } else {
      segment = event.index;
      starts.push(event);
    }
  }
  return { bytes: concat(chunks), starts };
}

/**
 * Largest difference between the stream's decoded audio and the source's around `center` (a
 * sample index of the source). The stream starts with one extra priming frame.
 */
function joinError(source: Float32Array, stream: Float32Array, center: number): number {
  let worst = 0;
  for (let n = Math.max(0, center - 2048); n < Math.min(source.length, center + 2048); n++) {
    worst = Math.max(worst, Math.abs(stream[n + 1024] - source[n]));
  }
  return worst;
}

/** Checks everything a player relies on in the concatenated stream. */
async function checkStream(
  dir: string,
  info: VideoInfo,
  plan: PlaybackPlan,
  bytes: Uint8Array,
): Promise<void> {
  const path = `${dir}/out-${info.name}.ts`;
  await Deno.writeFile(path, bytes);
  const fps = info.frameRate.num / info.frameRate.den;
  const frameTicks = TS_HZ / fps;
  const base = TIMESTAMP_BASE_SECONDS * TS_HZ;

  // One stream a decoder reads without a single complaint.
  assert.equal(await stderrOf("ffmpeg", ["-v", "warning", "-i", path, "-f", "null", "-"]), "");

  // Every source frame once, at the right size for its third, evenly spaced across the joins.
  const frames = await framesOf(path);
  assert.equal(frames.length, plan.frameCount, "frame count");
  for (const segment of plan.segments) {
    for (let i = segment.startFrame; i < segment.endFrame; i++) {
      assert.equal(frames[i].height, segment.height, `height of frame ${i}`);
      assert.equal(frames[i].width, segment.width, `width of frame ${i}`);
    }
  }
  // Containers with millisecond timestamps jitter by up to 1 ms.
  const jitter = 91;
  assert.ok(Math.abs(frames[0].pts - (base + info.videoStart * TS_HZ)) <= jitter, "video start");
  for (let i = 1; i < frames.length; i++) {
    const step = frames[i].pts - frames[i - 1].pts;
    assert.ok(Math.abs(step - frameTicks) <= jitter, `frame ${i} step ${step}`);
  }
  const videoSeconds = (frames.at(-1)!.pts - frames[0].pts) / TS_HZ + 1 / fps;
  assert.ok(Math.abs(videoSeconds - info.duration) <= 2 / fps, `duration ${videoSeconds}`);

  const packets = await packetsOf(path);
  const video = packets.filter((p) => p.type === "video");
  for (let i = 1; i < video.length; i++) assert.ok(video[i].dts > video[i - 1].dts, `dts ${i}`);

  const streams = await streamsOf(path);
  const audio = packets.filter((p) => p.type === "audio");
  if (!info.hasAudio) {
    assert.equal(audio.length, 0);
    assert.ok(!streams.some((s) => s.codec_type === "audio"));
    return;
  }
  // Audio: one AAC frame after another, no gap, no overlap, starting one priming frame early.
  const rate = info.audioSampleRate!;
  assert.equal(Number(streams.find((s) => s.codec_type === "audio")?.sample_rate), rate);
  const frameAudio = 1024 * TS_HZ / rate;
  const audioStart = base + (info.audioStart ?? 0) * TS_HZ - frameAudio;
  assert.ok(Math.abs(audio[0].pts - audioStart) <= 2, `audio start ${audio[0].pts}`);
  for (let i = 1; i < audio.length; i++) {
    const step = audio[i].pts - audio[i - 1].pts;
    assert.ok(Math.abs(step - frameAudio) <= 1, `audio packet ${i} step ${step}`);
  }
  // Total audio: the source's, plus the priming frame and the last frame's padding.
  const audioSeconds = audio.length * 1024 / rate;
  assert.ok(
    Math.abs(audioSeconds - info.duration) <= 3 * 1024 / rate + 1 / fps,
    `audio ${audioSeconds} s for ${info.duration} s`,
  );
  // No click or dip where the parts meet: the decoded audio there matches the source's. (With a
  // single extra AAC frame before each part instead of two, this measured 0.05 to 0.08 on these
  // 0.125-amplitude tones; with two, under 0.005.)
  const source = await decodeAudio(info.path);
  const stream = await decodeAudio(path);
  for (const segment of plan.segments.slice(1)) {
    const at = segment.audioStartSample! - Math.round(info.audioStart! * rate);
    const error = joinError(source, stream, at);
    assert.ok(error < 0.015, `audio at the join at sample ${at} is off by ${error}`);
  }
}

Deno.test("planPlayback", async (t) => {
  const base: VideoInfo = {
    name: "v.mp4",
    path: "/v.mp4",
    size: 1,
    mtimeMs: 0,
    duration: 10.01,
    width: 1280,
    height: 720,
    displayWidth: 1280,
    frameRate: { num: 30000, den: 1001 },
    formatName: "mov,mp4,m4a,3gp,3g2,mj2",
    videoStart: 0,
    videoStreamIndex: 0,
    hasAudio: true,
    audioStreamIndex: 1,
    audioSampleRate: 48000,
    audioChannels: 2,
    audioStart: 0,
    audioFrameGrid: 1,
  };

  await t.step("thirds on frame boundaries, audio on the AAC grid", () => {
    const plan = planPlayback(base, DEFAULTS);
    assert.equal(plan.frameCount, 300);
    assert.deepEqual(plan.segments.map((s) => [s.startFrame, s.endFrame]), [[0, 100], [
      100,
      200,
    ], [200, 300]]);
    assert.ok(Math.abs(plan.segments[1].start - 100 * 1001 / 30000) < 1e-9);
    for (const segment of plan.segments) {
      assert.equal(segment.audioStartSample! % 1024, 0);
      assert.ok(Math.abs(segment.audioStartSample! / 48000 - segment.start) <= 512 / 48000);
    }
    assert.equal(plan.segments[2].last, true);
    assert.equal(plan.segments[2].audioEndSample, undefined);
  });

  await t.step("heights above the source are capped unless told otherwise", () => {
    const capped = planPlayback(base, DEFAULTS).segments;
    assert.deepEqual(capped.map((s) => [s.requestedHeight, s.height, s.width, s.capped]), [
      [144, 144, 256, false],
      [720, 720, 1280, false],
      [1440, 720, 1280, true],
    ]);
    const upscaled = planPlayback(base, { ...DEFAULTS, capToSource: false }).segments;
    assert.deepEqual(upscaled.map((s) => [s.height, s.width, s.capped]), [
      [144, 256, false],
      [720, 1280, false],
      [1440, 2560, false],
    ]);
  });

  await t.step("odd aspect ratios give even widths", () => {
    const odd = { ...base, width: 318, height: 242, displayWidth: 318 };
    for (
      const segment of planPlayback(odd, { heights: [97, 144, 720], capToSource: true }).segments
    ) {
      assert.equal(segment.width % 2, 0);
      assert.equal(segment.height % 2, 0);
      assert.ok(Math.abs(segment.width / segment.height - 318 / 242) < 0.05);
    }
  });

  await t.step("a bad height is a clear error", () => {
    assert.throws(
      () => planPlayback(base, { heights: [0, 720, 1440], capToSource: true }),
      (error: unknown) => error instanceof ReelayError && error.message.includes(`"0"`),
    );
  });
});

Deno.test("streamVideo", async (t) => {
  const { dir, marker } = await makeMediaDir("playback");
  try {
    await generateVideo(`${dir}/a48.mp4`, {
      width: 640,
      height: 360,
      rate: "30",
      seconds: 6,
      audioRate: 48000,
      channels: 2,
      frequency: 440,
    });
    await generateVideo(`${dir}/ntsc44.mkv`, {
      width: 318,
      height: 242,
      rate: "30000/1001",
      seconds: 5,
      audioRate: 44100,
      frequency: 330,
    });
    await generateVideo(`${dir}/silent.mp4`, { width: 320, height: 180, rate: "25", seconds: 3 });
    await generateVideo(`${dir}/clip.ts`, {
      width: 320,
      height: 180,
      rate: "25",
      seconds: 4,
      audioRate: 48000,
      frequency: 550,
    });
    await generateVideo(`${dir}/long.mp4`, {
      width: 640,
      height: 360,
      rate: "30",
      seconds: 30,
      audioRate: 48000,
    });
    await makeBroken(`${dir}/broken.mp4`);
    const a48 = await probeVideo(`${dir}/a48.mp4`);
    const long = await probeVideo(`${dir}/long.mp4`);

    await t.step("48 kHz, 30 fps: one continuous stream switching at the thirds", async () => {
      const plan = planPlayback(a48, { heights: [144, 240, 360], capToSource: true });
      const { bytes, starts } = await collect(await streamVideo(a48, plan));
      assert.deepEqual(
        starts.map((s) => s.type === "segment-start" ? [s.index, s.height, s.width] : []),
        [[0, 144, 256], [1, 240, 426], [2, 360, 640]],
      );
      await checkStream(dir, a48, plan, bytes);
      // The first part starts fast: keyframes every 0.5 s for its first second, then the
      // 2 s GOP; the others, tuned for size, have one keyframe at their start in 2 s.
      const keyframes = (await packetsOf(`${dir}/out-${a48.name}.ts`))
        .filter((p) => p.type === "video" && p.key)
        .map((p) => (p.pts - TIMESTAMP_BASE_SECONDS * TS_HZ) / TS_HZ);
      assert.deepEqual(keyframes, [0, 0.5, 1, 2, 4]);
    });

    await t.step("44.1 kHz, 30000/1001 fps, odd size, Matroska", async () => {
      const info = await probeVideo(`${dir}/ntsc44.mkv`);
      const plan = planPlayback(info, { heights: [96, 144, 720], capToSource: true });
      assert.deepEqual(plan.segments.map((s) => [s.width, s.height, s.capped]), [
        [126, 96, false],
        [190, 144, false],
        [318, 242, true],
      ]);
      const { bytes } = await collect(await streamVideo(info, plan));
      await checkStream(dir, info, plan, bytes);
    });

    await t.step("a source without audio", async () => {
      const info = await probeVideo(`${dir}/silent.mp4`);
      const plan = planPlayback(info, { heights: [90, 144, 180], capToSource: true });
      const { bytes } = await collect(await streamVideo(info, plan));
      await checkStream(dir, info, plan, bytes);
    });

    await t.step("an MPEG-TS source that does not start at zero", async () => {
      const info = await probeVideo(`${dir}/clip.ts`);
      const plan = planPlayback(info, { heights: [90, 144, 180], capToSource: true });
      const { bytes } = await collect(await streamVideo(info, plan));
      await checkStream(dir, info, plan, bytes);
    });

    await t.step("stop() mid-stream kills every ffmpeg at once", async () => {
      const stream = await streamVideo(a48, planPlayback(a48, DEFAULTS));
      let chunks = 0;
      for await (const event of stream) {
        if (event.type === "chunk" && ++chunks === 2) break;
      }
      assert.equal(stream.stopped, true, "break stops the stream");
      assert.deepEqual(await processesMentioning(marker), []);

      const again = await streamVideo(a48, planPlayback(a48, DEFAULTS));
      const iterator = again[Symbol.asyncIterator]();
      await iterator.next(); // segment-start
      await iterator.next(); // the first chunk: the next part starts now
      await again.settled();
      assert.equal(again.pids.length, 2, "the next part runs ahead");
      assert.equal((await processesMentioning(marker)).length, 2);
      await again.stop();
      assert.deepEqual(await processesMentioning(marker), []);
      assert.deepEqual(await iterator.next(), { done: true, value: undefined });
      await again.stop(); // idempotent
    });

    await t.step("a stream nobody reads leaves ffmpeg blocked, memory bounded", async () => {
      const readAheadBytes = 64 * 1024;
      // Each part is ~10 s at 360p: far more than the read-ahead and a pipe can hold.
      const plan = planPlayback(long, { heights: [360, 360, 360], capToSource: true });
      const stream = await streamVideo(long, plan, { readAheadBytes });
      try {
        const iterator = stream[Symbol.asyncIterator]();
        await iterator.next();
        await iterator.next();
        await stream.settled();
        // Wait until both parts' ffmpeg sit in a write to their full pipes.
        for (const pid of stream.pids) {
          await waitUntil(async () => {
            const channel = await waitChannelOf(pid);
            assert.notEqual(channel, "", `ffmpeg ${pid} ended although nobody read it`);
            return channel.includes("pipe_write");
          }, `ffmpeg ${pid} to block writing to its full pipe`);
        }
        assert.equal(stream.pids.length, 2);
        assert.ok(stream.bufferedBytes <= 2 * (readAheadBytes + 64 * 1024), "read-ahead bounded");
        assert.equal((await processesMentioning(marker)).length, 2, "both still running");
      } finally {
        await stream.stop();
      }
      assert.deepEqual(await processesMentioning(marker), []);
    });

    await t.step("a broken file fails clearly and leaves nothing running", async () => {
      const broken: VideoInfo = { ...a48, name: "broken.mp4", path: `${dir}/broken.mp4` };
      const stream = await streamVideo(broken, planPlayback(broken, DEFAULTS));
      await assert.rejects(
        () => collect(stream),
        (error: unknown) =>
          error instanceof ReelayError && error.code === "transcode-failed" &&
          error.message.includes(`part 1 of "broken.mp4"`),
      );
      assert.equal(stream.stopped, true);
      assert.deepEqual(await processesMentioning(marker), []);
    });

    await t.step("slots cap transcodes and say busy", async () => {
      const one = new TranscodeSlots(1);
      const plan = planPlayback(a48, { heights: [144, 240, 360], capToSource: true });
      const stream = await streamVideo(a48, plan, { slots: one });
      await assert.rejects(
        () => streamVideo(a48, plan, { slots: one }),
        (error: unknown) => error instanceof ReelayError && error.code === "busy",
      );
      // With no spare slot the parts run one after the other, handing the slot on.
      let chunks = 0;
      let pidsAtSecondChunk = 0;
      const chunksBySegment = [0, 0, 0];
      for await (const event of stream) {
        if (event.type !== "chunk") continue;
        if (++chunks === 2) pidsAtSecondChunk = stream.pids.length;
        chunksBySegment[event.segmentIndex]++;
        assert.ok(one.inUse <= 1);
      }
      assert.equal(pidsAtSecondChunk, 1);
      assert.ok(chunksBySegment.every((n) => n > 0), "all three parts played");
      assert.equal(one.inUse, 0);

      const two = new TranscodeSlots(2);
      const ahead = await streamVideo(a48, plan, { slots: two });
      const iterator = ahead[Symbol.asyncIterator]();
      await iterator.next();
      await iterator.next();
      await ahead.settled();
      assert.equal(two.inUse, 2);
      assert.equal(two.tryAcquire(), undefined);
      await iterator.return?.();
      assert.equal(two.inUse, 0);
      assert.deepEqual(await processesMentioning(marker), []);
    });

    await t.step("a source that ends early is an error, not complete", async () => {
      // Probed whole, then cut to about a third: ffmpeg exits 0 on every part, delivering less.
      const path = `${dir}/cut.ts`;
      await generateVideo(path, {
        width: 320,
        height: 180,
        rate: "25",
        seconds: 6,
        audioRate: 48000,
      });
      const info = await probeVideo(path);
      await Deno.truncate(path, Math.floor((await Deno.stat(path)).size / 3));
      const plan = planPlayback(info, { heights: [90, 144, 180], capToSource: true });
      const stream = await streamVideo(info, plan);
      const segments: number[] = [];
      await assert.rejects(
        async () => {
          for await (const event of stream) {
            if (event.type === "segment-start") segments.push(event.index);
          }
        },
        (error: unknown) =>
          error instanceof ReelayError && error.code === "short-part" &&
          /^Part \d of "cut\.ts" ended after \d+\.\d of 2\.0 s: the source ended early$/
            .test(error.message),
      );
      assert.ok(segments.length < 3, `the stream stopped at the short part, not after ${segments}`);
      assert.deepEqual(await processesMentioning(marker), []);
    });

    await t.step("a missing ffmpeg is reported when the stream starts", async () => {
      const slots = new TranscodeSlots(1);
      await assert.rejects(
        () =>
          streamVideo(a48, planPlayback(a48, DEFAULTS), {
            ffmpegPath: "/nonexistent/ffmpeg",
            slots,
          }),
        (error: unknown) => error instanceof ReelayError && error.code === "ffmpeg-missing",
      );
      assert.equal(slots.inUse, 0, "the slot is given back");
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
