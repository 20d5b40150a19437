import assert from "node:assert/strict";
import { Kvm } from "@nats-io/kv";
import { headers, type Msg } from "@nats-io/transport-node";
import { ClusterPresence } from "../server/cluster/presence.ts";
import { connectNats } from "../server/cluster/nats.ts";
import { ClusterRelay, deliverSubject } from "../server/cluster/relay.ts";
import { ClusterPeople } from "../server/cluster/people.ts";
import type { Recipient } from "../server/relay.ts";
import { ReelayError } from "../shared/errors.ts";
import { deferred } from "../shared/async.ts";
import { encodeFields, utf8 } from "../shared/bytes.ts";
import { within } from "./_deadline.ts";
import { rejectsWith } from "./_store.ts";
import { waitUntil } from "./_raw.ts";
import {
  connectNode,
  Lines,
  NATS_SERVER_PRESENT,
  NATS_SKIP_NOTE,
  nextEvent,
  TestNats,
} from "./_cluster.ts";

/** Short enough for a dying node's test to wait it out; the other tests keep the default. */
const SHORT_TTL_MS = 1500;

function clusterTest(name: string, fn: () => Promise<void>): void {
  Deno.test({ name: `${name}${NATS_SKIP_NOTE}`, ignore: !NATS_SERVER_PRESENT, fn });
}

async function openNode(
  nats: TestNats,
  nodeId: string,
  lines = new Lines(),
  ttlMs = 6000,
  bucket?: string,
) {
  const nc = await connectNode(nats, nodeId, lines);
  const presence = await ClusterPresence.open(nc, { nodeId, ttlMs, bucket, log: lines.log });
  return {
    nc,
    presence,
    lines,
    async [Symbol.asyncDispose]() {
      await presence.close();
      await nc.close();
    },
  };
}

const info = (name: string) => ({ name, keys: "k" });

clusterTest("cluster presence: people on two nodes see each other join and leave", async () => {
  await using nats = await TestNats.start();
  await using a = await openNode(nats, "node-a");
  await a.presence.claim("alice", info("alice"));
  // A node that starts later sees who is already there.
  await using b = await openNode(nats, "node-b");
  assert.deepEqual(b.presence.get("ALICE"), { node: "node-a", name: "alice", info: info("alice") });

  const joined = nextEvent(
    a.presence,
    (e) => e.type === "joined" && e.person.name === "bob",
    20_000,
    "bob joined on a",
  );
  await b.presence.claim("bob", info("bob"));
  assert.equal((await joined).person.node, "node-b");

  const left = nextEvent(
    a.presence,
    (e) => e.type === "left" && e.person.name === "bob",
    20_000,
    "bob left on a",
  );
  await b.presence.release("bob");
  assert.equal((await left).type, "left");
  assert.equal(a.presence.get("bob"), undefined);
  // The name is free again, for anyone.
  await a.presence.claim("Bob", info("Bob"));
  assert.equal(a.presence.get("bob")?.node ?? "node-a", "node-a");
});

clusterTest(
  "cluster presence: of two nodes racing for the same names, exactly one wins each",
  async () => {
    await using nats = await TestNats.start();
    await using a = await openNode(nats, "node-a");
    await using b = await openNode(nats, "node-b");
    const names = Array.from({ length: 20 }, (_, i) => `racer${i}`);
    const outcomes = await Promise.all(names.flatMap((name) => [
      a.presence.claim(name, info(name)).then(() => "a", (error) => error.code),
      // Case differs: names are unique regardless of case.
      b.presence.claim(name.toUpperCase(), info(name)).then(() => "b", (error) => error.code),
    ]));
    for (let i = 0; i < names.length; i++) {
      const pair = outcomes.slice(2 * i, 2 * i + 2).sort();
      assert.ok(
        JSON.stringify(pair) === '["a","name-taken"]' ||
          JSON.stringify(pair) === '["b","name-taken"]',
        `${names[i]}: ${pair}`,
      );
    }
    await rejectsWith(a.presence.claim("racer0", null), "name-taken");
  },
);

clusterTest(
  "cluster presence: a node that dies has its people removed and their names freed",
  async () => {
    await using nats = await TestNats.start();
    // The bucket keeps entries for ten minutes, so that NATS's expiry never frees carol's name
    // within the test: node a's delete does, and its watch sees that delete every time.
    const bucket = "presence-dies";
    const setup = await connectNode(nats, "setup");
    await new Kvm(setup).create(bucket, { ttl: 600_000, history: 1 });
    await setup.close();
    await using a = await openNode(nats, "node-a", new Lines(), SHORT_TTL_MS, bucket);
    const lines = new Lines();
    const doomed = await openNode(nats, "node-doomed", lines, SHORT_TTL_MS, bucket);
    const told: string[] = [];
    const stop = a.presence.subscribe((event) => {
      if (event.person.name === "carol") told.push(`${event.type} ${event.person.node}`);
    });
    try {
      await doomed.presence.claim("carol", info("carol"));
      await waitUntil(() => a.presence.get("carol") !== undefined, "carol to show on node a");
      // How soon is not what a loaded machine can show: the deadline is generous.
      const left = nextEvent(
        a.presence,
        (e) => e.type === "left" && e.person.name === "carol",
        30_000,
        "carol removed",
      );
      // The node loses NATS without a word: no release, no goodbye.
      await doomed.nc.close();
      const event = await left;
      // Told as her node gone, though the delete that freed her name comes back through the
      // watch like anyone's leaving (review finding 3: it was told as "left").
      assert.equal(event.type === "left" && event.why, "node-gone");
      // Only node a's delete can have freed the name in this bucket.
      await a.presence.claim("carol", info("carol"));
      // Her claim on node a comes through the watch after the delete: all of it was told, once.
      await waitUntil(() => a.presence.get("carol")?.node === "node-a", "carol again on node a");
      assert.deepEqual(told, ["joined node-doomed", "left node-doomed", "joined node-a"]);
    } finally {
      stop();
      await doomed.presence.close(); // stops its timer; NATS is gone for it
    }
  },
);

clusterTest(
  "cluster presence: a dead node's names are free in NATS before anyone is told they left",
  async () => {
    await using nats = await TestNats.start();
    // The bucket keeps entries for ten minutes, so that only the surviving node's delete can
    // free the name within the test: with the nodes' own TTL, NATS's expiry races that delete.
    const bucket = "presence-order";
    const setup = await connectNode(nats, "setup");
    const kv = await new Kvm(setup).create(bucket, { ttl: 600_000, history: 1 });
    const open = async (nodeId: string) => {
      const lines = new Lines();
      const nc = await connectNode(nats, nodeId, lines);
      const presence = await ClusterPresence.open(nc, {
        nodeId,
        ttlMs: SHORT_TTL_MS,
        bucket,
        log: lines.log,
      });
      return { nc, presence };
    };
    const a = await open("node-a");
    const doomed = await open("node-doomed");
    try {
      await doomed.presence.claim("dave", info("dave"));
      const keys: string[] = [];
      for await (const key of await kv.keys("person.>")) keys.push(key);
      assert.equal(keys.length, 1);
      const held = await kv.get(keys[0]);
      assert.ok(held?.operation === "PUT");
      // The probe, sent from node a's listener the moment it tells that dave left: an update
      // of dave's entry at the revision he held. It leaves on node a's own connection before
      // anything node a sends afterwards, so NATS orders it before any later delete: it is
      // refused only if dave's entry was already gone when his leaving was told.
      const probe = deferred<Msg>();
      const stop = a.presence.subscribe((event) => {
        if (event.type !== "left" || event.person.name !== "dave") return;
        const expect = headers();
        expect.set("Nats-Expected-Last-Subject-Sequence", String(held.revision));
        a.nc.request(`$KV.${bucket}.${keys[0]}`, utf8("probe"), {
          headers: expect,
          timeout: 20_000,
        })
          .then(probe.resolve, probe.reject);
      });
      // The node loses NATS without a word: no release, no goodbye.
      await doomed.nc.close();
      const answer = await within(probe.promise, 30_000, "dave's leaving told on node a");
      stop();
      const ack = answer.json<{ seq?: number; error?: { err_code?: number } }>();
      assert.equal(
        ack.error?.err_code,
        10071,
        `dave's entry was still there: ${JSON.stringify(ack)}`,
      );
    } finally {
      await doomed.presence.close();
      await a.presence.close();
      await a.nc.close();
      await setup.close();
    }
  },
);

clusterTest(
  "cluster relay: a sealed envelope crosses nodes byte for byte, with its message id",
  async () => {
    await using nats = await TestNats.start();
    const lines = new Lines();
    const ncA = await connectNode(nats, "node-a", lines);
    const ncB = await connectNode(nats, "node-b", lines);
    const got: [string, string, Uint8Array, string | undefined][] = [];
    const relayA = await ClusterRelay.start(ncA, "node-a", () => false, lines.log);
    const relayB = await ClusterRelay.start(ncB, "node-b", (from, to, envelope, id) => {
      if (to !== "bob") return false;
      got.push([from, to, envelope, id]);
      return true;
    }, lines.log);
    try {
      const envelope = new Uint8Array(70_000).map((_, i) => i * 7);
      assert.equal(await relayA.send("node-b", "alice", "bob", envelope), true);
      // The id is how the recipient drops a copy sent again (after a failover, say).
      assert.equal(await relayA.send("node-b", "alice", "bob", envelope, "m-1"), true);
      assert.deepEqual(got, [["alice", "bob", envelope, undefined], [
        "alice",
        "bob",
        envelope,
        "m-1",
      ]]);
      // A node of the build before message ids crossed sends three fields: taken, with no id
      // (review B6: it was dropped as malformed, so a rolling upgrade lost cross-node chat).
      const previous = await ncA.request(
        deliverSubject("node-b"),
        encodeFields(["carol", "bob", envelope]),
        { timeout: 20_000 },
      );
      assert.deepEqual([...previous.data], [1]);
      assert.deepEqual(got.at(-1), ["carol", "bob", envelope, undefined]);
      assert.equal(await relayA.send("node-b", "alice", "nobody", envelope), false);
      // A node nobody runs answers nothing: not delivered, at once.
      assert.equal(await relayA.send("node-gone", "alice", "bob", envelope), false);
      await rejectsWith(
        relayA.send("node-b", "alice", "bob", new Uint8Array(2 * 1024 * 1024)),
        "message-too-large",
      );
    } finally {
      await relayA.close();
      await relayB.close();
      await ncA.close();
      await ncB.close();
    }
  },
);

/** A person connected to a node, whose connection takes envelopes through `deliver`. */
function person(name: string, deliver: Recipient["deliver"]): Recipient {
  return {
    announcement: { name, keys: { encryptionKey: "e", signingKey: "s" }, epoch: "", signature: "" },
    sendFrame: () => {},
    deliver,
  };
}

clusterTest(
  "cluster relay: a delivery the recipient's limits refuse tells the sender why, not that they are gone",
  async () => {
    await using nats = await TestNats.start();
    const [linesA, linesB] = [new Lines(), new Lines()];
    const ncA = await connectNode(nats, "node-a", linesA);
    const ncB = await connectNode(nats, "node-b", linesB);
    const open = (nc: typeof ncA, nodeId: string, lines: Lines) =>
      ClusterPeople.open<Recipient>(nc, { nodeId, presenceTtlMs: 6000, log: lines.log });
    const a = await open(ncA, "node-a", linesA);
    const b = await open(ncB, "node-b", linesB);
    // Bob's connection refuses as a PeerConnection's inbound limits do, then takes the next.
    const refusals = [
      new ReelayError("rate-limited", 'Too many messages to "bob": the limit is 1 a second'),
      new ReelayError("recipient-busy", '"bob" is receiving more than 2 messages a second'),
    ];
    const got: string[] = [];
    const bob = person("bob", (from) => {
      const refusal = refusals.shift();
      if (refusal) throw refusal;
      got.push(from);
      return true;
    });
    const alice = person("alice", () => true);
    try {
      await b.join(bob);
      await a.join(alice);
      await waitUntil(() => a.present("bob"), "bob to show on node a");
      const envelope = new Uint8Array([1, 2, 3]);
      // Told as on one node (review finding 10: both were "bob is no longer online").
      await rejectsWith(a.route(alice, "bob", envelope, "m-1"), "rate-limited", /^Too many/);
      await rejectsWith(a.route(alice, "bob", envelope, "m-2"), "recipient-busy", /^"bob" is/);
      assert.equal(await a.route(alice, "bob", envelope, "m-3"), "bob");
      assert.deepEqual(got, ["alice"]);
      assert.deepEqual(linesB.lines.filter((line) => /Malformed/.test(line)), []);
      // What is malformed is still answered as not delivered, and logged on the recipient's node.
      const garbage = await ncA.request(deliverSubject("node-b"), new Uint8Array([0, 0, 0, 9]), {
        timeout: 20_000,
      });
      assert.deepEqual([...garbage.data], [0]);
      assert.equal(linesB.lines.filter((line) => /Malformed delivery/.test(line)).length, 1);
    } finally {
      await a.close();
      await b.close();
      await ncA.close();
      await ncB.close();
    }
  },
);

clusterTest("cluster connect: wrong credentials and no server are clear errors", async () => {
  await using nats = await TestNats.start();
  const lines = new Lines();
  await rejectsWith(
    connectNats({
      url: nats.url,
      credentials: { kind: "password", user: nats.user, password: "wrong" },
      name: "t",
      log: lines.log,
    }),
    "cluster-auth",
  );
  await rejectsWith(connectNats({ url: nats.url, name: "t", log: lines.log }), "cluster-auth");
  await nats.stop();
  await rejectsWith(
    connectNats({
      url: nats.url,
      credentials: nats.credentials,
      name: "t",
      log: lines.log,
      connectTimeoutMs: 1000,
    }),
    "cluster-unreachable",
  );
});
