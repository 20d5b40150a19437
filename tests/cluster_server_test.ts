import assert from "node:assert/strict";
import { SERVER_KEY_FILE, startServer } from "../server/mod.ts";
import { silentLogger } from "../shared/log.ts";
import { DEFAULT_RECONNECT } from "../client/mod.ts";
import { joinClient, testConfig } from "../testing/harness.ts";
import { type Cli, startCliServer } from "./_procs.ts";
import { NATS_SERVER_PRESENT, NATS_SKIP_NOTE, TestNats } from "./_cluster.ts";
import { waitUntil } from "./_raw.ts";
import { FreezableLink } from "./_link.ts";

function clusterTest(name: string, fn: () => Promise<void>): void {
  Deno.test({ name: `${name}${NATS_SKIP_NOTE}`, ignore: !NATS_SERVER_PRESENT, fn });
}

/** A node started in this process, joined to `nats` with its user and password file. */
async function startNode(
  nats: TestNats,
  videos: string,
  node: string,
  presenceTtlMs = 6000,
  state = `${videos}/.state`,
  port = 0,
) {
  const passwordFile = await Deno.makeTempFile({ prefix: "reelay-nats-password-" });
  await Deno.writeTextFile(passwordFile, `${nats.password}\n`);
  try {
    return await startServer(
      testConfig(videos, (config) => {
        config.cluster.url = nats.url;
        config.cluster.node = node;
        config.cluster.user = nats.user;
        config.cluster.passwordFile = passwordFile;
        config.cluster.presenceTtlMs = presenceTtlMs;
        config.server.state = state;
        config.server.port = port;
      }),
      { log: silentLogger },
    );
  } finally {
    await Deno.remove(passwordFile);
  }
}

clusterTest("cluster: people on two nodes see each other and chat end to end", async () => {
  await using nats = await TestNats.start();
  const videos = await Deno.makeTempDir({ prefix: "reelay-videos-" });
  const nodeA = await startNode(nats, videos, "node-a");
  const nodeB = await startNode(nats, videos, "node-b");
  try {
    assert.equal(nodeA.nodeId, "node-a");
    const alice = await joinClient(nodeA.port, "alice");
    await alice.log.waitFor("welcome");
    const bob = await joinClient(nodeB.port, "bob");
    await bob.log.waitFor("welcome");
    // Bob, arriving on B, is listed alice on A; alice is told bob joined.
    assert.deepEqual(bob.session.who().map((peer) => peer.name), ["alice"]);
    await alice.log.waitFor("joined", (event) => event.name === "bob");

    await alice.session.send("bob", "hello across nodes");
    const got = await bob.log.waitFor("message");
    assert.equal(got.from, "alice");
    assert.equal(got.text, "hello across nodes");
    await bob.session.send("Alice", "and back");
    assert.equal((await alice.log.waitFor("message")).text, "and back");

    // The name is the cluster's: nobody takes it on the other node, in any case.
    await assert.rejects(joinClient(nodeB.port, "ALICE"), /taken/);
    await assert.rejects(alice.session.send("carol", "nobody"), /carol/);

    await bob.session.quit();
    await alice.log.waitFor("left", (event) => event.name === "bob");
    assert.deepEqual(alice.session.who(), []);
    await alice.session.quit();
  } finally {
    await nodeA.close();
    await nodeB.close();
    await Deno.remove(videos, { recursive: true });
  }
});

clusterTest(
  "cluster: a node killed under its people is dropped from the others' lists",
  async () => {
    await using nats = await TestNats.start();
    const videos = await Deno.makeTempDir({ prefix: "reelay-videos-" });
    const config = await Deno.makeTempFile({ suffix: ".ini" });
    await Deno.writeTextFile(config, "[cluster]\npresence_ttl_ms = 1500\n");
    const nodeA = await startNode(nats, videos, "node-a", 1500);
    let nodeB: { cli: Cli; port: number } | undefined;
    try {
      const url = `nats://${nats.user}:${nats.password}@127.0.0.1:${nats.port}`;
      nodeB = await startCliServer(videos, ["--cluster", url, "--config", config]);
      const alice = await joinClient(nodeA.port, "alice");
      const bob = await joinClient(nodeB.port, "bob");
      await alice.log.waitFor("joined", (event) => event.name === "bob");
      nodeB.cli.child.kill("SIGKILL");
      await nodeB.cli.exit();
      await bob.log.waitFor("disconnected");
      // Once the presence TTL has passed, alice is told bob left, and his name is free. (The
      // deadline is generous: how soon is not what a loaded machine can show.)
      await alice.log.waitFor("left", (event) => event.name === "bob", 30_000);
      const bobJoins = () => alice.log.of("joined").filter((event) => event.name === "bob");
      const bobAgain = await joinClient(nodeA.port, "bob");
      await waitUntil(() => bobJoins().length === 2, "alice to see bob join again");
      await bobAgain.session.quit();
      await bob.session.quit().catch(() => {});
      await alice.session.quit();
    } finally {
      await nodeB?.cli.dispose();
      await nodeA.close();
      await Deno.remove(videos, { recursive: true });
      await Deno.remove(config);
    }
  },
);

clusterTest("cluster: NATS restarted under two nodes; they reconnect and carry on", async () => {
  await using nats = await TestNats.start();
  const videos = await Deno.makeTempDir({ prefix: "reelay-videos-" });
  // A quick restart, well inside the presence TTL even on a loaded machine (a longer outage is
  // the next test's).
  const nodeA = await startNode(nats, videos, "node-a", 20_000);
  const nodeB = await startNode(nats, videos, "node-b", 20_000);
  try {
    const alice = await joinClient(nodeA.port, "alice");
    const bob = await joinClient(nodeB.port, "bob");
    await alice.log.waitFor("joined", (event) => event.name === "bob");
    await nats.stop();
    await nats.restart();
    // Messages cross again once both nodes are back (a send while NATS is away fails, clearly).
    await waitUntil(
      async () => {
        try {
          await alice.session.send("bob", "after the restart");
          return true;
        } catch {
          return false;
        }
      },
      "alice to reach bob after the restart",
      20_000,
    );
    assert.equal((await bob.log.waitFor("message")).text, "after the restart");
    // Presence carries on: a newcomer on B is seen on A, and leaving is seen too.
    const carol = await joinClient(nodeB.port, "carol");
    await alice.log.waitFor("joined", (event) => event.name === "carol");
    await carol.session.quit();
    await alice.log.waitFor("left", (event) => event.name === "carol");
    // Nobody was dropped meanwhile.
    assert.deepEqual(alice.log.of("left").map((event) => event.name), ["carol"]);
    await bob.session.quit();
    await alice.session.quit();
  } finally {
    await nodeA.close();
    await nodeB.close();
    await Deno.remove(videos, { recursive: true });
  }
});

clusterTest(
  "cluster: nodes given the same server key are one server to a client's pin",
  async () => {
    // One address (say a DNS name) in front of whichever node serves it: the client pins the key
    // once; another node with a copy of the key serves it unnoticed, a node with its own does not.
    await using nats = await TestNats.start();
    const videos = await Deno.makeTempDir({ prefix: "reelay-videos-" });
    try {
      const nodeA = await startNode(nats, videos, "node-a", 6000, `${videos}/state-a`);
      const port = nodeA.port;
      const first = await joinClient(port, "alice");
      await first.session.quit();
      await nodeA.close();

      await Deno.mkdir(`${videos}/state-b`, { mode: 0o700 });
      const keyB = `${videos}/state-b/${SERVER_KEY_FILE}`;
      await Deno.copyFile(`${videos}/state-a/${SERVER_KEY_FILE}`, keyB);
      await Deno.chmod(keyB, 0o600);
      const nodeB = await startNode(nats, videos, "node-b", 6000, `${videos}/state-b`, port);
      try {
        const again = await joinClient(port, "alice", { home: first.home });
        await again.log.waitFor("welcome");
        await again.session.quit();
      } finally {
        await nodeB.close();
      }

      const nodeC = await startNode(nats, videos, "node-c", 6000, `${videos}/state-c`, port);
      try {
        await assert.rejects(
          joinClient(port, "alice", { home: first.home }),
          (error: Error & { code?: string }) => error.code === "server-key-changed",
        );
      } finally {
        await nodeC.close();
      }
    } finally {
      await Deno.remove(videos, { recursive: true });
    }
  },
);

clusterTest(
  "cluster: NATS away for longer than the presence TTL; nobody is dropped for good",
  async () => {
    await using nats = await TestNats.start();
    const videos = await Deno.makeTempDir({ prefix: "reelay-videos-" });
    const nodeA = await startNode(nats, videos, "node-a", 1500);
    const nodeB = await startNode(nats, videos, "node-b", 1500);
    try {
      const alice = await joinClient(nodeA.port, "alice");
      const bob = await joinClient(nodeB.port, "bob");
      await alice.log.waitFor("joined", (event) => event.name === "bob");
      await nats.stop();
      // The outage is the scenario: twice the TTL, so every entry in NATS has expired meanwhile
      // and each node has heard nothing from the other for longer than the TTL.
      await new Promise((resolve) => setTimeout(resolve, 3000));
      await nats.restart();
      await waitUntil(
        async () => {
          try {
            await alice.session.send("bob", "still here");
            return true;
          } catch {
            return false;
          }
        },
        "alice to reach bob after the outage",
        20_000,
      );
      assert.equal((await bob.log.waitFor("message")).text, "still here");
      // Both names are held again: nobody else can take them.
      await assert.rejects(joinClient(nodeA.port, "bob"), /taken/);
      await bob.session.quit();
      await alice.session.quit();
    } finally {
      await nodeA.close();
      await nodeB.close();
      await Deno.remove(videos, { recursive: true });
    }
  },
);

type Node = Awaited<ReturnType<typeof startNode>>;

/** Two nodes on a fresh NATS, closed after `test`. */
async function withTwoNodes(test: (nodeA: Node, nodeB: Node) => Promise<void>): Promise<void> {
  await using nats = await TestNats.start();
  const videos = await Deno.makeTempDir({ prefix: "reelay-videos-" });
  const nodeA = await startNode(nats, videos, "node-a");
  const nodeB = await startNode(nats, videos, "node-b");
  try {
    await test(nodeA, nodeB);
  } finally {
    await nodeA.close();
    await nodeB.close();
    await Deno.remove(videos, { recursive: true });
  }
}

/** Alice on A writes to bob on B, who then leaves: he is known to the cluster but on no node. */
async function bobAway(nodeA: Node, nodeB: Node) {
  const alice = await joinClient(nodeA.port, "alice");
  const bob = await joinClient(nodeB.port, "bob");
  await alice.session.send("bob", "hello");
  await bob.log.waitFor("message");
  await bob.session.quit();
  await alice.log.waitFor("left", (event) => event.name === "bob");
  return { alice, bob };
}

clusterTest(
  "cluster: a message to someone offline is queued, and comes when they are back on another node",
  () =>
    withTwoNodes(async (nodeA, nodeB) => {
      const { alice, bob } = await bobAway(nodeA, nodeB);
      await alice.session.send("bob", "while you were away");
      assert.deepEqual(alice.log.of("queued").map((event) => event.to), ["bob"]);
      const back = await joinClient(nodeA.port, "bob", { home: bob.home });
      const got = await back.log.waitFor("message");
      assert.deepEqual([got.from, got.text], ["alice", "while you were away"]);
      await Promise.all([alice.session.quit(), back.session.quit()]);
    }),
);

clusterTest(
  "cluster: mail held for a key its owner replaced ends, and its sender on another node is told",
  () =>
    withTwoNodes(async (nodeA, nodeB) => {
      const { alice } = await bobAway(nodeA, nodeB);
      await alice.session.send("bob", "sealed for the old key");
      const [queued] = alice.log.of("queued");
      // Someone comes back as bob with another key (a new home): the old key's mail cannot be
      // opened any more. Node B, not alice's node, sweeps.
      const newBob = await joinClient(nodeB.port, "bob");
      await waitUntil(async () => await nodeB.server.sweepMail() > 0, "the mail to end", 20_000);
      const failed = await alice.log.waitFor("failed");
      assert.deepEqual(
        [failed.to, failed.id, failed.reason],
        ["bob", queued.id, "recipient-key-changed"],
      );
      assert.equal(newBob.log.of("message").length, 0);
      await Promise.all([alice.session.quit(), newBob.session.quit()]);
    }),
);

clusterTest(
  "cluster failover: a client given both nodes moves to B when A is killed, and the chat goes on",
  async () => {
    await using nats = await TestNats.start();
    const videos = await Deno.makeTempDir({ prefix: "reelay-videos-" });
    const config = await Deno.makeTempFile({ suffix: ".ini" });
    await Deno.writeTextFile(config, "[cluster]\npresence_ttl_ms = 1500\n");
    let nodeA: { cli: Cli; port: number } | undefined;
    let nodeB: Node | undefined;
    try {
      const url = `nats://${nats.user}:${nats.password}@127.0.0.1:${nats.port}`;
      nodeA = await startCliServer(videos, ["--cluster", url, "--config", config]);
      // Node B serves the cluster's key: a copy of the one node A made.
      await Deno.mkdir(`${videos}/state-b`, { mode: 0o700 });
      const keyB = `${videos}/state-b/${SERVER_KEY_FILE}`;
      await Deno.copyFile(`${videos}/.state/${SERVER_KEY_FILE}`, keyB);
      await Deno.chmod(keyB, 0o600);
      nodeB = await startNode(nats, videos, "node-b", 1500, `${videos}/state-b`);
      const bob = await joinClient(nodeB.port, "bob");
      const alice = await joinClient(nodeA.port, "alice", {
        fallbacks: [{ hostname: "127.0.0.1", port: nodeB.port }],
        // Retried until node B has dropped the dead node's alice (presence TTL).
        reconnect: { ...DEFAULT_RECONNECT, minDelayMs: 100, maxDelayMs: 1000 },
      });
      assert.equal(alice.session.server, `127.0.0.1:${nodeA.port}`);
      await alice.session.send("bob", "before");
      await bob.log.waitFor("message", (event) => event.text === "before");
      await bob.session.send("alice", "got it");
      await alice.log.waitFor("message", (event) => event.text === "got it");

      nodeA.cli.child.kill("SIGKILL");
      await nodeA.cli.exit();
      await alice.log.waitFor("reconnected", () => true, 30_000);
      assert.equal(alice.session.server, `127.0.0.1:${nodeB.port}`, "alice is on node B");
      await alice.session.send("bob", "after");
      await bob.log.waitFor("message", (event) => event.text === "after");
      await bob.session.send("alice", "still you");
      await alice.log.waitFor("message", (event) => event.text === "still you");
      for (const log of [alice.log, bob.log]) {
        assert.deepEqual(log.of("key-changed"), [], "no key-change warning");
        assert.deepEqual(log.of("error"), []);
      }
      await Promise.all([alice.session.quit(), bob.session.quit()]);
    } finally {
      await nodeA?.cli.dispose();
      await nodeB?.close();
      await Deno.remove(videos, { recursive: true });
      await Deno.remove(config);
    }
  },
);

clusterTest(
  "cluster: a message relayed to another node's dead link is held and comes once the recipient is back",
  () =>
    withTwoNodes(async (nodeA, nodeB) => {
      const link = new FreezableLink(nodeB.port);
      const direct = { hostname: "127.0.0.1", port: nodeB.port };
      const alice = await joinClient(nodeA.port, "alice");
      const bob = await joinClient(link.port, "bob", {
        keepaliveMs: 1000,
        reconnect: { ...DEFAULT_RECONNECT, minDelayMs: 20, maxDelayMs: 200, address: () => direct },
      });
      try {
        await alice.log.waitFor("joined", (event) => event.name === "bob");
        await alice.session.send("bob", "hello");
        const hello = alice.log.of("sent").at(-1)!.id;
        await alice.log.waitFor("delivered", (event) => event.id === hello);
        // Node B hands it to a link that died without a word; it stays in the cluster's mailbox.
        link.freeze();
        await alice.session.send("bob", "into the dead link");
        const { id } = alice.log.of("sent").at(-1)!;
        assert.equal(alice.log.of("queued").length, 0, "bob was online on B: relayed");
        await bob.log.waitFor("reconnected");
        assert.equal((await bob.log.waitFor("message", (event) => event.id === id)).from, "alice");
        await alice.log.waitFor("delivered", (event) => event.id === id);
        await alice.session.send("bob", "after");
        const after = alice.log.of("sent").at(-1)!.id;
        await bob.log.waitFor("message", (event) => event.id === after);
        assert.equal(bob.log.of("message").filter((event) => event.id === id).length, 1);
      } finally {
        await Promise.all([alice.session.quit(), bob.session.quit()]);
        await link.close();
      }
    }),
);
