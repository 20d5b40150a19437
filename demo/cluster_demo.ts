/**
 * `deno task demo:cluster`: a reelay cluster on one machine, in about half a minute.
 *
 * Starts a real `nats-server` with JetStream on loopback (credentials required), two server
 * nodes that share one server key, and a transcode worker; alice joins one node and bob the
 * other, they find each other and chat end to end, and bob watches the sample, transcoded by
 * the worker. Then everything is stopped and cleaned up. Each step says which file does the work.
 *
 * @module
 */

import { join } from "node:path";
import { discardSink } from "../client/mod.ts";
import { connectNats } from "../server/cluster/nats.ts";
import { TranscodeWorker } from "../server/cluster/worker.ts";
import { Transcode } from "../server/media/mod.ts";
import { type RunningServer, SERVER_KEY_FILE, startServer } from "../server/mod.ts";
import { defaultConfig } from "../shared/config/mod.ts";
import { printError } from "../shared/io.ts";
import { NATS_SERVER_PRESENT, TestNats } from "../testing/nats_server.ts";
import { generateVideo } from "../testing/sample_video.ts";
import { chapter, join_, next, out, paint, runDemo, say } from "./_story.ts";

async function startNode(
  root: string,
  nats: TestNats,
  node: string,
  lines: string[],
): Promise<RunningServer> {
  const config = defaultConfig();
  config.server = {
    host: "127.0.0.1",
    port: 0,
    videos: join(root, "videos"),
    state: join(root, node),
  };
  config.cluster.url = nats.url;
  config.cluster.node = node;
  config.cluster.user = nats.user;
  config.cluster.passwordFile = join(root, "nats-password");
  return await startServer(config, { log: (level, message) => lines.push(`${level} ${message}`) });
}

async function demo(root: string): Promise<void> {
  await out(paint("1", "reelay cluster demo: NATS, two nodes, a worker, alice and bob apart"));

  await chapter(
    "Make a sample video: 6 s, 1280x720, 30 fps, with a tone",
    "testing/sample_video.ts",
  );
  await Deno.mkdir(join(root, "videos"));
  await generateVideo(join(root, "videos", "sample.mp4"), {
    width: 1280,
    height: 720,
    rate: "30",
    seconds: 6,
    audioRate: 48000,
  });

  await chapter(
    "Start nats-server with JetStream on loopback; members must present a user and password",
    "testing/nats_server.ts, server/cluster/nats.ts",
  );
  await using nats = await TestNats.start({ dir: join(root, "nats") });
  await Deno.writeTextFile(join(root, "nats-password"), nats.password, { mode: 0o600 });
  await out(`   ${nats.url} (store in a temporary folder)`);

  await chapter(
    "Start two server nodes; node-b gets a copy of node-a's server key (one identity per cluster)",
    "server/mod.ts, server/cluster/node.ts, server/cluster/presence.ts, server/cluster/relay.ts",
  );
  const linesA: string[] = [];
  const linesB: string[] = [];
  const nodeA = await startNode(root, nats, "node-a", linesA);
  const nodes: RunningServer[] = [nodeA];
  try {
    await Deno.mkdir(join(root, "node-b"), { mode: 0o700 });
    await Deno.copyFile(
      join(root, "node-a", SERVER_KEY_FILE),
      join(root, "node-b", SERVER_KEY_FILE),
    );
    await Deno.chmod(join(root, "node-b", SERVER_KEY_FILE), 0o600);
    const nodeB = await startNode(root, nats, "node-b", linesB);
    nodes.push(nodeB);
    await out(`   node-a on 127.0.0.1:${nodeA.port}, node-b on 127.0.0.1:${nodeB.port}`);

    await chapter(
      "Start a transcode worker with three slots: it is offered parts only while one is free",
      "server/cluster/worker.ts",
    );
    const workerNc = await connectNats({
      url: nats.url,
      credentials: nats.credentials,
      name: "reelay-worker",
      log: () => {},
    });
    const worker = await TranscodeWorker.start(workerNc, {
      videos: join(root, "videos"),
      slots: 3,
      ffmpegPath: "ffmpeg",
      ffprobePath: "ffprobe",
      log: () => {},
    });
    try {
      await out(`   ${worker.id} takes up to 3 parts at once`);

      await chapter(
        "alice joins node-a and bob joins node-b; each sees the other through the presence bucket",
        "server/cluster/people.ts, server/people.ts",
      );
      let received = 0;
      const counting = () => {
        const sink = discardSink();
        return {
          ...sink,
          write: (chunk: Uint8Array) => (received += chunk.length, sink.write(chunk)),
        };
      };
      const alice = await join_(nodeA.port, "alice", join(root, "alice"));
      const bob = await join_(nodeB.port, "bob", join(root, "bob"), counting);
      await say(
        "alice",
        await next(alice.events, alice.session, "joined", (e) => e.name === "bob"),
      );
      await say("bob", bob.events[0]);

      await chapter(
        "alice sends bob a sealed message; node-a hands the opaque bytes to node-b over NATS",
        "client/conversations.ts, server/cluster/relay.ts (reelay.node.<id>.deliver)",
      );
      await alice.session.send("bob", "Hi bob, from the other node!");
      await say("bob", await next(bob.events, bob.session, "message"));
      await bob.session.send("alice", "Loud and clear across the cluster.");
      await say("alice", await next(alice.events, alice.session, "message"));

      await chapter(
        "bob plays sample.mp4 on node-b: its three parts are transcoded by the worker",
        "server/media/part_sources.ts, server/cluster/remote_transcode.ts, server/cluster/worker.ts",
      );
      bob.session.onEvent((event) => {
        if (event.event === "segment") void say("bob", event);
      });
      const ended = next(bob.events, bob.session, "stream-ended");
      await bob.session.play("sample.mp4");
      const end = await ended;
      await say("bob", end);
      for (const line of linesB.filter((line) => line.includes(" runs on "))) {
        await out(`   node-b: ${line.replace(/^info /, "")}`);
      }
      await out(`   ${received} bytes of MPEG-TS reached bob`);
      if (end.reason !== "complete") throw new Error(`The stream ended with ${end.reason}`);

      await chapter("bob leaves; alice on the other node sees it", "server/cluster/presence.ts");
      await bob.session.quit();
      await say("alice", await next(alice.events, alice.session, "left"));
      await alice.session.quit();
    } finally {
      await worker.close();
      await workerNc.close();
    }
  } finally {
    for (const node of nodes) await node.close();
  }
  const left = Transcode.running;
  await out(`   nodes, worker and NATS stopped; ffmpeg processes left running: ${left}`);
  if (left > 0) throw new Error(`${left} ffmpeg process(es) outlived the demo`);
  await out(`\n${paint("32", "Cluster demo complete.")} Next: docs/cluster.md.`);
}

if (import.meta.main) {
  if (!NATS_SERVER_PRESENT) {
    await printError(
      "demo:cluster needs nats-server: ./run setup installs it (apt install nats-server)",
    );
    Deno.exit(1);
  }
  Deno.exit(await runDemo("reelay-cluster-demo-", demo));
}
