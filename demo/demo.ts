/**
 * `deno task demo`: reelay end to end on a built-in sample, in about half a minute.
 *
 * Generates a short video with sound, starts a server on a free port, joins two scripted
 * clients that find each other and exchange sealed messages, streams the sample in three
 * resolutions (to a player window when there is a display), and cleans up. Each step says which
 * file does the work.
 *
 * @module
 */

import { join } from "node:path";
import { defaultConfig } from "../shared/config/mod.ts";
import { discardSink, sinkFactory, type StreamSink } from "../client/mod.ts";
import { startServer } from "../server/mod.ts";
import { Transcode } from "../server/media/mod.ts";
import { generateVideo } from "../testing/sample_video.ts";
import { chapter, join_, next, out, paint, runDemo, say } from "./_story.ts";

async function demo(root: string): Promise<void> {
  await out(
    paint("1", "reelay demo: a server, two people, sealed chat and a three-resolution stream"),
  );

  await chapter(
    "Make a sample video with ffmpeg: 6 s, 1920x1080, 30 fps, with a tone",
    "testing/sample_video.ts",
  );
  const videos = join(root, "videos");
  await Deno.mkdir(videos);
  await generateVideo(join(videos, "sample.mp4"), {
    width: 1920,
    height: 1080,
    rate: "30",
    seconds: 6,
    audioRate: 48000,
  });
  await out("   videos/sample.mp4 written in a temporary folder");

  await chapter(
    "Start a server on a free port with its own channel key; probe the catalog with ffprobe",
    "server/mod.ts, shared/channel/server_key.ts, server/media/catalog.ts, server/media/probe.ts",
  );
  const config = defaultConfig();
  config.server = { host: "127.0.0.1", port: 0, videos, state: join(root, "state") };
  const logLines: string[] = [];
  const server = await startServer(config, {
    log: (level, message) => logLines.push(`${level} ${message}`),
  });
  try {
    await out(`   listening on 127.0.0.1:${server.port}, ${server.catalog.list().length} video(s)`);
    const keyLine = logLines.find((line) => line.includes("Server key fingerprint"));
    await out(`   ${keyLine?.replace(/^info /, "") ?? "no server key fingerprint logged"}`);

    await chapter(
      "alice and bob join over the secure channel (Noise NX + ML-KEM-768), pin the server key, " +
        "create an RSA identity and sign a fresh announcement",
      "client/server_trust.ts, shared/channel/handshake.ts, client/keystore.ts, " +
        "shared/crypto/identity.ts, server/directory.ts, client/peers.ts",
    );
    const hasDisplay = Boolean(Deno.env.get("DISPLAY") || Deno.env.get("WAYLAND_DISPLAY"));
    const player = sinkFactory(hasDisplay ? "auto" : "none", {
      DISPLAY: Deno.env.get("DISPLAY"),
      WAYLAND_DISPLAY: Deno.env.get("WAYLAND_DISPLAY"),
    });
    let received = 0;
    const counting = (video: string): StreamSink => {
      const sink = hasDisplay ? player(video) : discardSink();
      return { ...sink, write: (chunk) => (received += chunk.length, sink.write(chunk)) };
    };
    const alice = await join_(server.port, "alice", join(root, "alice"));
    const bob = await join_(server.port, "bob", join(root, "bob"), counting);
    await say("alice", alice.events[0]);
    await say("bob", bob.events[0]);
    await say(
      "alice",
      await next(alice.events, alice.session, "joined", (event) => event.name === "bob"),
    );

    await chapter(
      "alice sends bob a sealed message; the server relays bytes it cannot read",
      "client/conversations.ts, shared/crypto/ratchet.ts, shared/protocol/frame.ts, server/relay.ts",
    );
    await alice.session.send("bob", "Hi bob! Only you can read this.");
    await say("alice", await next(alice.events, alice.session, "sent"));
    await say("bob", await next(bob.events, bob.session, "message"));
    await bob.session.send("alice", "Hi alice, loud and clear.");
    await say("alice", await next(alice.events, alice.session, "message"));

    await chapter(
      "Both compare the 60-digit safety number out of band",
      "client/peers.ts, shared/crypto/safety.ts (/verify)",
    );
    const mine = await alice.session.verify("bob");
    const theirs = await bob.session.verify("alice");
    await out(
      `   alice sees ${mine.code}\n   bob   sees ${theirs.code}  ${
        mine.code === theirs.code ? "✓ same" : "✗ DIFFERENT"
      }`,
    );

    await chapter(
      `bob plays sample.mp4 ${
        hasDisplay ? "in a player window" : "headless (no display: --player none)"
      }: three ffmpeg parts, one stream`,
      "server/media/: plan.ts, ffmpeg_args.ts, transcode.ts, playback.ts, viewer.ts; client/viewing.ts",
    );
    const videos_ = await bob.session.listVideos();
    await say("bob", { event: "videos", videos: videos_ });
    const ended = next(bob.events, bob.session, "stream-ended");
    bob.session.onEvent((event) => {
      if (event.event === "stream-started" || event.event === "segment") void say("bob", event);
    });
    await bob.session.play("sample.mp4");
    await next(bob.events, bob.session, "segment", (event) => event.index === 1);
    await alice.session.send("bob", "Chat still works while you watch.");
    await say(
      "bob",
      await next(bob.events, bob.session, "message", (event) => event.text.startsWith("Chat")),
    );
    const end = await ended;
    await say("bob", end);
    await out(`   ${received} bytes of MPEG-TS reached bob's player; nothing was written to disk`);

    await chapter(
      "Everyone leaves; the server shuts down and ends every ffmpeg",
      "server/server.ts",
    );
    await bob.session.quit();
    await say("alice", await next(alice.events, alice.session, "left"));
    await alice.session.quit();
    if (end.reason !== "complete") {
      throw new Error(`The stream ended with ${end.reason}: ${end.message}`);
    }
  } finally {
    await server.close();
  }
  const left = Transcode.running;
  await out(`   server closed; ffmpeg processes left running: ${left}`);
  if (left > 0) throw new Error(`${left} ffmpeg process(es) outlived the server`);
  await out(
    `\n${paint("32", "Demo complete.")} Next: README.md ("Running a real server and clients").`,
  );
}

if (import.meta.main) {
  Deno.exit(await runDemo("reelay-demo-", demo));
}
