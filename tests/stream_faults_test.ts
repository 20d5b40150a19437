/**
 * Faults while a video plays: ffmpeg dying, the file deleted under it, a viewer that stops
 * reading, a viewer killed. The viewer gets a clear end, nobody else notices, no ffmpeg is left.
 */
import assert from "node:assert/strict";
import { within } from "./_deadline.ts";
import { Cli, clientArgs } from "./_procs.ts";
import { join } from "node:path";
import { joinClient, type JoinedClient, startTestServer } from "../testing/harness.ts";
import { clipServer, gatedSinks, makeMediaDir } from "./_media.ts";
import { generateVideo } from "../testing/sample_video.ts";
import { processesMentioning, run } from "../testing/processes.ts";
import { RawClient, rawIdentity, waitUntil } from "./_raw.ts";
import { decodeStreamPayload, KIND_STREAM } from "../shared/protocol/frame.ts";

async function scene(options: { idleTimeoutMs?: number } = {}) {
  const { media, server } = await clipServer("faults", {
    file: "long.mp4",
    seconds: 60,
    patch: (config) => {
      config.stream.windowBytes = 64 * 1024;
      if (options.idleTimeoutMs) {
        config.limits.keepaliveMs = 1000;
        config.limits.idleTimeoutMs = options.idleTimeoutMs;
      } else {
        // A stalled viewer is cut off after the idle timeout: only the stall test may meet it. The
        // gated viewer takes nothing until the test opens the gate, which on a loaded machine
        // (a `deno eval` started to kill ffmpeg) has come more than 45 s later.
        config.limits.idleTimeoutMs = 10 * 60_000;
      }
    },
  });
  const gate = gatedSinks();
  const alice = await joinClient(server.port, "alice");
  const bob = await joinClient(server.port, "bob", { sinks: gate.make });
  await alice.log.waitFor("joined", (event) => event.name === "bob");
  const close = async () => {
    gate.open();
    await alice.session.quit();
    await bob.session.quit();
    await server.close();
    assert.deepEqual(await processesMentioning(media.marker), [], "no ffmpeg is left");
  };
  return { media, server, alice, bob, gate, close };
}

async function chatStillWorks(
  alice: JoinedClient,
  bob: JoinedClient,
) {
  await bob.session.send("alice", "still here");
  await alice.log.waitFor("message", (event) => event.text === "still here");
}

Deno.test("ffmpeg dying mid-stream ends the stream with an error; the server goes on", async () => {
  const { media, alice, bob, gate, close } = await scene();
  try {
    await bob.session.play("long.mp4");
    await bob.log.waitFor("segment");
    const pids = await processesMentioning(media.marker);
    assert.ok(pids.length > 0);
    await run("deno", [
      "eval",
      `for (const pid of ${JSON.stringify(pids)}) Deno.kill(pid, "SIGKILL")`,
    ]);
    gate.open();
    const ended = await bob.log.waitFor("stream-ended");
    assert.equal(ended.reason, "error");
    assert.match(ended.message ?? "", /ffmpeg was killed by SIGKILL|failed/);
    await chatStillWorks(alice, bob);
    await bob.session.play("long.mp4");
    await bob.log.waitFor("stream-started", (event) => event.video === "long.mp4");
    await bob.session.stop();
  } finally {
    await close();
  }
});

Deno.test("a video deleted while watched ends with an error and leaves the catalog", async () => {
  const { media, server, alice, bob, gate, close } = await scene();
  try {
    const dropped = new Promise<void>((resolve) =>
      server.catalog.onChange((change) => change.removed.includes("long.mp4") && resolve())
    );
    await bob.session.play("long.mp4");
    await bob.log.waitFor("segment");
    await Deno.remove(join(media.dir, "long.mp4"));
    gate.open();
    const ended = await bob.log.waitFor("stream-ended", () => true, 60_000);
    assert.equal(ended.reason, "error");
    assert.match(ended.message ?? "", /long\.mp4/);
    await chatStillWorks(alice, bob);
    await within(dropped, 30_000, "the catalog to drop long.mp4");
    assert.deepEqual(await alice.session.listVideos(), []);
  } finally {
    await close();
  }
});

Deno.test("a video truncated while watched ends as an error; the server goes on", async () => {
  const { media, alice, bob, gate, close } = await scene();
  try {
    await bob.session.play("long.mp4");
    await bob.log.waitFor("segment");
    await Deno.truncate(join(media.dir, "long.mp4"), 2000);
    gate.open();
    const ended = await bob.log.waitFor("stream-ended", () => true, 60_000);
    assert.equal(ended.reason, "error", ended.message);
    assert.match(ended.message ?? "", /long\.mp4/);
    await chatStillWorks(alice, bob);
  } finally {
    await close();
  }
});

Deno.test("a viewer that takes no stream data is cut off as stalled", async () => {
  // Headroom: alice and bob answer pings well within 5 s even on a loaded machine.
  const { bob, alice, close } = await scene({ idleTimeoutMs: 5000 });
  try {
    await bob.session.play("long.mp4");
    const ended = await bob.log.waitFor("stream-ended");
    assert.equal(ended.reason, "error");
    assert.match(ended.message ?? "", /took no stream data/);
    await chatStillWorks(alice, bob);
  } finally {
    await close();
  }
});

Deno.test("a viewer process killed mid-stream leaves no ffmpeg", async () => {
  const media = await makeMediaDir("killed-viewer");
  await generateVideo(join(media.dir, "long.mp4"), {
    width: 320,
    height: 180,
    rate: "30",
    seconds: 60,
  });
  const server = await startTestServer({
    videos: media.dir,
    patch: (config) => config.stream.preset = "ultrafast",
  });
  const alice = await joinClient(server.port, "alice");
  const home = await Deno.makeTempDir({ prefix: "reelay-home-viewer-" });
  const viewer = new Cli(clientArgs(server.port, "viewer", home, ["--json"]));
  try {
    await viewer.writeLine("/play long.mp4");
    await viewer.waitFor(/"event":"segment"/, 60_000);
    viewer.child.kill("SIGKILL");
    await viewer.exit(60_000);
    await alice.log.waitFor("left", (event) => event.name === "viewer");
    await waitUntil(
      async () => (await processesMentioning(media.marker)).length === 0,
      "ffmpeg to end after its viewer is gone",
      30_000,
    );
  } finally {
    // Ends the viewer whatever failed above, so no child outlives the test.
    await viewer.dispose();
    await Deno.remove(home, { recursive: true });
    await alice.session.quit();
    await server.close();
  }
});

Deno.test("credit for more bytes than are in flight is refused as bad-credit", async () => {
  const { server, alice, bob, close } = await scene();
  // Made before carol connects: her join must not wait on key generation past the join deadline.
  const identity = await rawIdentity();
  const raw = await RawClient.connect(server.port);
  try {
    assert.equal((await raw.join("carol", identity)).type, "welcome");
    await raw.send({ type: "play", ref: 1, video: "long.mp4" });
    const start = await raw.waitFor((message) => message.type === "stream-start", 60_000);
    // Credit nobody was sent would let a viewer that reads nothing keep ffmpeg busy forever.
    await raw.send({ type: "credit", stream: start.stream, bytes: 1 << 30 });
    // The answer to a later request marks that the credit was handled (answers keep order).
    await raw.send({ type: "videos", ref: 3 });
    await raw.waitFor((message) => message.type === "videos", 60_000);
    const refused = raw.messages.filter((m) => m.type === "error");
    assert.deepEqual(refused.map((m) => m.code), ["bad-credit"]);
    assert.match(String(refused[0].message), /exceeds the \d+ bytes in flight/);
    await raw.send({ type: "stop", ref: 2 });
    await raw.waitFor((message) => message.type === "stream-end", 60_000);
    await chatStillWorks(alice, bob);
  } finally {
    await raw.close();
    await close();
  }
});

Deno.test("a viewer that credits only a full window is sent the whole window each time", async () => {
  const { server, alice, bob, close } = await scene();
  const identity = await rawIdentity();
  const raw = await RawClient.connect(server.port);
  raw.answerPings = true;
  const window = 64 * 1024;
  /** Media bytes received so far (credit counts media bytes, not frame headers). */
  const received = () =>
    raw.otherFrames.filter((frame) => frame.kind === KIND_STREAM)
      .reduce((sum, frame) => sum + decodeStreamPayload(frame.payload).media.length, 0);
  try {
    assert.equal((await raw.join("carol", identity)).type, "welcome");
    await raw.send({ type: "play", ref: 1, video: "long.mp4" });
    const start = await raw.waitFor((message) => message.type === "stream-start", 60_000);
    // The protocol bounds what is in flight by the window, and no more: a viewer may wait until
    // it holds a whole window before it credits. Whatever sizes ffmpeg's chunks come in, the
    // server fills the window to the byte, and never past it.
    for (let credited = 0; credited < 8 * window; credited += window) {
      await waitUntil(() => received() - credited >= window, "a full window in flight", 60_000);
      assert.equal(received() - credited, window, "never more than the window in flight");
      await raw.send({ type: "credit", stream: start.stream, bytes: window });
    }
    await raw.send({ type: "stop", ref: 2 });
    await raw.waitFor((message) => message.type === "stream-end", 60_000);
    assert.deepEqual(raw.messages.filter((m) => m.type === "error"), []);
    const empty = raw.otherFrames.filter((frame) =>
      frame.kind === KIND_STREAM && decodeStreamPayload(frame.payload).media.length === 0
    );
    assert.equal(empty.length, 0, "no stream frame without media (a full window sends nothing)");
    await chatStillWorks(alice, bob);
  } finally {
    await raw.close();
    await close();
  }
});

Deno.test("chat reaches a viewer whose player takes nothing while its window is full", async () => {
  const { bob, alice, close } = await scene();
  try {
    await bob.session.play("long.mp4");
    // The gated player takes nothing: the 64 KiB window fills and is never credited back.
    await bob.log.waitFor("stream-started", () => true, 60_000);
    await alice.session.send("bob", "behind the video?");
    const message = await bob.log.waitFor("message", () => true, 30_000);
    assert.equal(message.text, "behind the video?");
    assert.equal(bob.log.of("stream-ended").length, 0, "the stream was still running");
    await bob.session.stop();
  } finally {
    await close();
  }
});
