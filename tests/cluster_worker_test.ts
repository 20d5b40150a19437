import assert from "node:assert/strict";
import { join } from "node:path";
import { startServer } from "../server/mod.ts";
import { concat } from "../shared/bytes.ts";
import { joinClient, testConfig } from "../testing/harness.ts";
import { framesOf, memorySink } from "./_media.ts";
import { type RemoteTranscode, RemoteTranscoder } from "../server/cluster/remote_transcode.ts";
import { TranscodeWorker } from "../server/cluster/worker.ts";
import { planPlayback } from "../server/media/plan.ts";
import { probeVideo } from "../server/media/tools.ts";
import type { VideoInfo } from "../server/media/probe.ts";
import { capture, processesMentioning } from "../testing/processes.ts";
import { generateVideo } from "../testing/sample_video.ts";
import { connectNode, Lines, NATS_SERVER_PRESENT, NATS_SKIP_NOTE, TestNats } from "./_cluster.ts";
import { within } from "./_deadline.ts";
import { Cli } from "./_procs.ts";
import { waitUntil } from "./_raw.ts";

function clusterTest(name: string, fn: () => Promise<void>): void {
  Deno.test({ name: `${name}${NATS_SKIP_NOTE}`, ignore: !NATS_SERVER_PRESENT, fn });
}

function offerOf(info: VideoInfo, index: number) {
  const plan = planPlayback(info, { heights: [144, 240, 360], capToSource: true });
  return {
    video: info.name,
    size: info.size,
    segment: plan.segments[index],
    preset: "ultrafast",
    fastStart: index === 0,
  };
}

async function library(seconds: number) {
  const videos = await Deno.makeTempDir({ prefix: "reelay-worker-videos-" });
  const name = `w${crypto.randomUUID().slice(0, 8)}.mp4`;
  await generateVideo(`${videos}/${name}`, {
    width: 320,
    height: 240,
    rate: "25",
    seconds,
    audioRate: 8000,
  });
  const info = await probeVideo(`${videos}/${name}`);
  return { videos, info, [Symbol.asyncDispose]: () => Deno.remove(videos, { recursive: true }) };
}

clusterTest("cluster worker: a part transcoded by a worker is the planned MPEG-TS", async () => {
  await using nats = await TestNats.start();
  await using lib = await library(3);
  const lines = new Lines();
  const nodeNc = await connectNode(nats, "node", lines);
  const workerNc = await connectNode(nats, "worker", lines);
  const worker = await TranscodeWorker.start(workerNc, {
    videos: lib.videos,
    slots: 2,
    ffmpegPath: "ffmpeg",
    ffprobePath: "ffprobe",
    log: lines.log,
  });
  const out = await Deno.makeTempFile({ suffix: ".ts" });
  try {
    const offer = offerOf(lib.info, 1);
    const part = await new RemoteTranscoder(nodeNc, lines.log, 64 * 1024).start(offer, "part 2");
    assert.ok(part, "a worker took the part");
    const file = await Deno.open(out, { write: true, truncate: true });
    await within(part.stdout.pipeTo(file.writable), 60_000, "the worker's part to arrive");
    assert.equal((await within(part.status, 30_000, "the part to end")).code, 0);
    const probe = await capture("ffprobe", [
      "-v",
      "error",
      "-print_format",
      "json",
      "-show_streams",
      "-show_format",
      out,
    ]);
    assert.equal(probe.code, 0, probe.stderr);
    const parsed = JSON.parse(probe.stdout);
    assert.equal(parsed.format.format_name, "mpegts");
    const video = parsed.streams.find((stream: { codec_type: string }) =>
      stream.codec_type === "video"
    );
    assert.equal(video.codec_name, "h264");
    assert.equal(video.height, offer.segment.height);
    assert.ok(
      parsed.streams.some((stream: { codec_type: string }) => stream.codec_type === "audio"),
    );
    const seconds = Number(parsed.format.duration);
    const planned = offer.segment.end - offer.segment.start;
    assert.ok(Math.abs(seconds - planned) < 0.5, `${seconds} s for a ${planned} s part`);
    await waitUntil(() => worker.running === 0, "the job to end", 30_000);
    assert.deepEqual(worker.pids, []);
  } finally {
    await worker.close();
    await nodeNc.close();
    await workerNc.close();
    await Deno.remove(out);
  }
});

clusterTest(
  "cluster worker: a busy worker is offered nothing; a free slot takes the next part",
  async () => {
    await using nats = await TestNats.start();
    await using lib = await library(20);
    const lines = new Lines();
    const nodeNc = await connectNode(nats, "node", lines);
    const workerNc = await connectNode(nats, "worker", lines);
    const worker = await TranscodeWorker.start(workerNc, {
      videos: lib.videos,
      slots: 1,
      ffmpegPath: "ffmpeg",
      ffprobePath: "ffprobe",
      log: lines.log,
    });
    const transcoder = new RemoteTranscoder(nodeNc, lines.log, 64 * 1024);
    try {
      const first = await transcoder.start(offerOf(lib.info, 0), "part 1");
      assert.ok(first);
      // Its one slot is taken: the next part finds no worker, and the node would transcode it.
      assert.equal(await transcoder.start(offerOf(lib.info, 1), "part 2"), undefined);
      await first.kill();
      await waitUntil(() => worker.running === 0, "the slot to free", 10_000);
      const again = await transcoder.start(offerOf(lib.info, 1), "part 2 again");
      assert.ok(again, "the freed slot takes a part");
      await again.kill();
      await waitUntil(() => worker.running === 0, "the slot to free", 10_000);
      // A worker that has another file by that name refuses, saying so.
      await assert.rejects(
        transcoder.start({ ...offerOf(lib.info, 0), size: 1 }, "part 1 of another file"),
        /another/,
      );
    } finally {
      await worker.close();
      await nodeNc.close();
      await workerNc.close();
    }
  },
);

clusterTest(
  "cluster worker: a worker killed mid-part fails it clearly and leaves no ffmpeg",
  async () => {
    await using nats = await TestNats.start();
    await using lib = await library(30);
    const lines = new Lines();
    const nodeNc = await connectNode(nats, "node", lines);
    const url = `nats://${nats.user}:${nats.password}@127.0.0.1:${nats.port}`;
    const cli = new Cli(["worker", "--cluster", url, "--videos", lib.videos, "--slots", "1"]);
    let part: RemoteTranscode | undefined;
    try {
      await cli.waitFor(/takes up to 1 part/);
      part = await new RemoteTranscoder(nodeNc, lines.log, 64 * 1024).start(
        offerOf(lib.info, 2),
        "part 3",
      );
      assert.ok(part);
      const reader = part.stdout.getReader();
      const first = await within(reader.read(), 30_000, "the worker's first bytes");
      assert.ok(first.value!.length > 0, "bytes came");
      const ffmpeg = await processesMentioning(lib.info.path);
      assert.ok(ffmpeg.length > 0, "the worker's ffmpeg runs");
      cli.child.kill("SIGKILL");
      await cli.exit();
      // Drain what arrived before the kill; then the part fails, saying why.
      const failure = await within(
        (async () => {
          while (true) {
            try {
              if ((await reader.read()).done) return undefined;
            } catch (error) {
              return error as Error & { code?: string };
            }
          }
        })(),
        15_000,
        "the part to fail",
      );
      assert.equal(failure?.code, "worker-gone", String(failure));
      await waitUntil(
        async () => (await processesMentioning(lib.info.path)).length === 0,
        "the orphaned ffmpeg to end",
        15_000,
      );
    } finally {
      // Also ends the drain above if it timed out: killing the part ends its stream.
      await part?.kill();
      await cli.dispose();
      await nodeNc.close();
    }
  },
);

clusterTest(
  "cluster worker: a play on a node is transcoded by the worker and plays whole",
  async () => {
    await using nats = await TestNats.start();
    await using lib = await library(3);
    const lines = new Lines();
    const workerNc = await connectNode(nats, "worker", lines);
    const worker = await TranscodeWorker.start(workerNc, {
      videos: lib.videos,
      slots: 3,
      ffmpegPath: "ffmpeg",
      ffprobePath: "ffprobe",
      log: lines.log,
    });
    const node = new Lines();
    const running = await startServer(
      testConfig(lib.videos, (config) => {
        config.cluster.url = `nats://${nats.user}:${nats.password}@127.0.0.1:${nats.port}`;
        config.stream.heights = [144, 180, 240];
      }),
      { log: node.log },
    );
    try {
      const { sink, chunks } = memorySink();
      const bob = await joinClient(running.port, "bob", { sinks: () => sink });
      await bob.session.play(lib.info.name);
      const ended = await bob.log.waitFor("stream-ended", () => true, 60_000);
      assert.equal(ended.reason, "complete", ended.message);
      // Every part ran on the worker, none on the node.
      assert.equal(
        node.lines.filter((line) => / runs on worker-/.test(line)).length,
        3,
        node.lines.join("\n"),
      );
      const file = join(lib.videos, "received.ts");
      await Deno.writeFile(file, concat(chunks));
      const frames = await framesOf(file);
      assert.ok(Math.abs(frames.length - 75) <= 2, `${frames.length} frames, expected 75`);
      assert.deepEqual([frames[0].height, frames.at(-1)!.height], [144, 240]);
      await bob.session.quit();
    } finally {
      await running.close();
      await worker.close();
      await workerNc.close();
    }
  },
);
