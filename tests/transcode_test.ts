import assert from "node:assert/strict";
import { within } from "./_deadline.ts";
import {
  buildFfmpegArgs,
  checkFfmpeg,
  planPlayback,
  probeVideo,
  Transcode,
  type VideoInfo,
} from "../server/media/mod.ts";
import { maxrateFor, TIMESTAMP_BASE_SECONDS } from "../server/media/ffmpeg_args.ts";
import { concat } from "../shared/bytes.ts";
import { ReelayError } from "../shared/errors.ts";
import { framesOf, makeBroken, makeMediaDir, stderrOf } from "./_media.ts";
import { generateVideo } from "../testing/sample_video.ts";
import { processesMentioning } from "../testing/processes.ts";

const isCode = (code: string) => (error: unknown) =>
  error instanceof ReelayError && error.code === code;

async function readAll(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of stream) chunks.push(chunk);
  return concat(chunks);
}

Deno.test("checkFfmpeg accepts the installed tools", async () => {
  await checkFfmpeg();
});

Deno.test("checkFfmpeg names the fix when ffmpeg or ffprobe is missing", async () => {
  for (const [ffmpeg, ffprobe] of [["/nonexistent/ffmpeg", "ffprobe"], ["ffmpeg", "/no/ffprobe"]]) {
    await assert.rejects(
      () => checkFfmpeg(ffmpeg, ffprobe),
      (error: unknown) =>
        isCode("ffmpeg-missing")(error) &&
        (error as Error).message.includes("apt-get install -y ffmpeg") &&
        (error as Error).message.includes("brew install ffmpeg"),
    );
  }
});

Deno.test("maxrateFor caps bitrate by picture size", () => {
  assert.equal(maxrateFor(256, 144, 30), 300_000);
  assert.equal(maxrateFor(1280, 720, 30), 3_317_760);
  assert.ok(maxrateFor(2560, 1440, 30) > maxrateFor(1280, 720, 30));
});

Deno.test("Transcode.start reports a missing ffmpeg clearly", () => {
  assert.throws(
    () => Transcode.start("/nonexistent/ffmpeg", ["-version"]),
    isCode("ffmpeg-missing"),
  );
});

Deno.test("transcode", async (t) => {
  const { dir, marker } = await makeMediaDir("transcode");
  try {
    await generateVideo(`${dir}/a.mp4`, {
      width: 640,
      height: 360,
      rate: "30",
      seconds: 3,
      audioRate: 48000,
    });
    await generateVideo(`${dir}/silent.mp4`, { width: 320, height: 240, rate: "25", seconds: 2 });
    await makeBroken(`${dir}/broken.mp4`);
    const info = await probeVideo(`${dir}/a.mp4`);
    const silent = await probeVideo(`${dir}/silent.mp4`);
    const options = { heights: [144, 240, 360], capToSource: true, preset: "veryfast" };

    await t.step("arguments follow the join recipe", () => {
      const plan = planPlayback(info, options);
      const args = buildFfmpegArgs(info, plan.segments[1], options);
      const text = args.join(" ");
      for (
        const expected of [
          "-copyts -start_at_zero",
          `-itsoffset ${TIMESTAMP_BASE_SECONDS} -i ${info.path}`,
          "-muxdelay 0 -muxpreload 0",
          "-mpegts_flags +initial_discontinuity",
          "-colorspace bt709 -color_primaries bt709 -color_trc bt709",
          "-c:v libx264 -preset veryfast",
          "-c:a aac",
          "-f mpegts pipe:1",
        ]
      ) {
        assert.ok(text.includes(expected), `missing ${expected} in ${text}`);
      }
      assert.ok(args.includes("-maxrate") && args.includes("-bufsize"));
      assert.equal(args.filter((a) => a === "-i").length, 2, "audio comes from a second input");
      assert.equal(args.filter((a) => a === info.path).length, 2);
      const kept = (plan.segments[1].audioEndSample! - plan.segments[1].audioStartSample!) / 1024;
      assert.ok(args.includes(`noise=drop=lt(n\\,3)+gte(n\\,${3 + kept})`), text);
      assert.ok(args.includes(`1:${info.audioStreamIndex}?`), "the audio mapping is optional");

      const first = buildFfmpegArgs(info, plan.segments[0], options).join(" ");
      assert.ok(
        first.includes(`noise=drop=gte(n\\,${plan.segments[0].audioEndSample! / 1024 + 1})`),
      );
      const last = buildFfmpegArgs(info, plan.segments[2], options).join(" ");
      assert.ok(last.includes("noise=drop=lt(n\\,3) "), last);
      assert.ok(!last.includes("end_pts"), "the last part reads to the end");

      const quiet = buildFfmpegArgs(silent, planPlayback(silent, options).segments[1], options);
      assert.equal(quiet.filter((a) => a === "-i").length, 1, "no audio input without audio");
      assert.ok(!quiet.includes("-c:a"));
    });

    await t.step("one part is a valid MPEG-TS at its size", async () => {
      const plan = planPlayback(info, options);
      const segment = plan.segments[1];
      const part = Transcode.start("ffmpeg", buildFfmpegArgs(info, segment, options), "part 2");
      const bytes = await readAll(part.stdout);
      const status = await within(part.status, 60_000, "the part to end");
      assert.equal(status.code, 0);
      assert.equal(status.error, undefined);
      await part.kill(); // harmless after a clean exit
      await part.kill();
      assert.equal(part.killed, true);

      const path = `${dir}/part.ts`;
      await Deno.writeFile(path, bytes);
      const frames = await framesOf(path);
      assert.equal(frames.length, segment.endFrame - segment.startFrame);
      assert.ok(frames.every((f) => f.height === segment.height && f.width === segment.width));
      const firstPts = (TIMESTAMP_BASE_SECONDS + info.videoStart + segment.startFrame / 30) * 90000;
      assert.ok(Math.abs(frames[0].pts - firstPts) <= 2, `first pts ${frames[0].pts}`);
      assert.equal(await stderrOf("ffmpeg", ["-v", "warning", "-i", path, "-f", "null", "-"]), "");
    });

    await t.step("a failing ffmpeg is a transcode-failed error with its stderr", async () => {
      const broken: VideoInfo = { ...info, name: "broken.mp4", path: `${dir}/broken.mp4` };
      const segment = planPlayback(broken, options).segments[0];
      const part = Transcode.start(
        "ffmpeg",
        buildFfmpegArgs(broken, segment, options),
        `part 1 of "broken.mp4"`,
      );
      await assert.rejects(
        () => readAll(part.stdout),
        (error: unknown) =>
          isCode("transcode-failed")(error) &&
          (error as Error).message.startsWith(`Transcoding part 1 of "broken.mp4" failed`) &&
          (error as Error).message.includes("Invalid data found when processing input"),
      );
      const status = await within(part.status, 60_000, "the part to end");
      assert.notEqual(status.code, 0);
      assert.equal(status.killed, false);
      assert.ok(status.error instanceof ReelayError);
    });

    await t.step("kill stops a running ffmpeg that nobody reads", async () => {
      // Loops the file forever: only a kill ends it.
      const part = Transcode.start("ffmpeg", [
        "-nostdin",
        "-v",
        "error",
        "-stream_loop",
        "-1",
        "-i",
        `${dir}/a.mp4`,
        "-c",
        "copy",
        "-f",
        "mpegts",
        "pipe:1",
      ]);
      const reader = part.stdout.getReader();
      const first = await reader.read();
      assert.equal(first.done, false);
      assert.deepEqual(await processesMentioning(marker), [part.pid]);

      await Promise.all([part.kill(), part.kill()]);
      const status = await within(part.status, 60_000, "the part to end");
      assert.equal(status.killed, true);
      assert.equal(status.error, undefined, "a kill is not a failure");
      assert.deepEqual(await processesMentioning(marker), []);
      // The stream ends quietly once ffmpeg is gone.
      while (!(await reader.read()).done) { /* drain what was already buffered */ }
      reader.releaseLock();
    });

    await t.step("cancelling stdout kills ffmpeg too", async () => {
      const part = Transcode.start("ffmpeg", [
        "-nostdin",
        "-v",
        "error",
        "-stream_loop",
        "-1",
        "-i",
        `${dir}/a.mp4`,
        "-c",
        "copy",
        "-f",
        "mpegts",
        "pipe:1",
      ]);
      await part.stdout.cancel();
      assert.equal((await within(part.status, 60_000, "the part to end")).killed, true);
      assert.deepEqual(await processesMentioning(marker), []);
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
