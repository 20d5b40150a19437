/**
 * The secure channel as a LAN attacker sees it, over real TCP against the real server and
 * client: a recording proxy finds no name, no public key, no message, no video name and no
 * MPEG-TS packet in the bytes of a whole session (chat and a played video); a flipped bit
 * anywhere ends that one connection with a clear error and nothing else; a proxy answering with
 * another server key is refused with `server-key-changed` before the client says anything.
 */

import assert from "node:assert/strict";
import { respond, ServerKey } from "../shared/channel/mod.ts";
import { concat, utf8 } from "../shared/bytes.ts";
import { ReelayError } from "../shared/errors.ts";
import { CHANNEL_PROLOGUE } from "../shared/protocol/mod.ts";
import { loadOrCreateIdentity } from "../client/keystore.ts";
import {
  joinClient,
  type LoggedServer,
  startLoggedServer,
  testServerKey,
} from "../testing/harness.ts";
import { generateVideo } from "../testing/sample_video.ts";
import { ByteProxy, type Direction, flipBit } from "./_byte_proxy.ts";
import { containsBytes } from "./_bytes.ts";
import { memorySink } from "./_media.ts";
import { waitUntil } from "./_raw.ts";

const VIDEO = "secret-holiday.mp4";
const TS_PACKET = 188;

/** Whether `bytes` hold `count` MPEG-TS packets in a row (0x47 every 188 bytes). */
function hasTsRun(bytes: Uint8Array, count = 8): boolean {
  const span = TS_PACKET * (count - 1);
  for (let start = 0; start + span < bytes.length; start++) {
    let run = 0;
    while (run < count && bytes[start + run * TS_PACKET] === 0x47) run++;
    if (run === count) return true;
  }
  return false;
}

async function serverWithVideo(): Promise<LoggedServer> {
  const server = await startLoggedServer();
  await generateVideo(`${server.videos}/${VIDEO}`, {
    width: 320,
    height: 180,
    rate: "25",
    seconds: 2,
    audioRate: 48000,
  });
  await waitUntil(
    () => server.catalog.list().some((video) => video.name === VIDEO),
    "the catalog lists the video",
  );
  return server;
}

Deno.test("a recording proxy sees no name, key, message, video name or MPEG-TS packet", async () => {
  const server = await serverWithVideo();
  const recorder = new ByteProxy(server.port);
  const bob = await joinClient(server.port, "bob");
  const { sink, chunks } = memorySink();
  const alice = await joinClient(recorder.port, "alice", { sinks: () => sink });
  try {
    await bob.log.waitFor("joined", (event) => event.name === "alice");
    await alice.session.send("bob", "meet at the old mill");
    await bob.log.waitFor("message", (event) => event.text === "meet at the old mill");
    await bob.session.send("alice", "bring the map");
    await alice.log.waitFor("message", (event) => event.text === "bring the map");
    const listed = await alice.session.listVideos();
    assert.ok(listed.some((video) => video.name === VIDEO));
    await alice.session.play(VIDEO);
    const ended = await alice.log.waitFor("stream-ended", () => true, 60_000);
    assert.equal(ended.reason, "complete");
    const media = concat(chunks);
    assert.ok(hasTsRun(media), "the check can fail: the stream itself is MPEG-TS");

    const wire = concat([recorder.bytes("to-server"), recorder.bytes("to-client")]);
    assert.ok(wire.length > media.length, "the whole stream crossed the proxy");
    const aliceKeys = (await loadOrCreateIdentity(alice.home)).identity.public;
    const bobKeys = (await loadOrCreateIdentity(bob.home)).identity.public;
    const secrets: [string, Uint8Array][] = [
      ["alice's name", utf8("alice")],
      ["bob's name", utf8("bob")],
      ["the video's name", utf8(VIDEO)],
      ["the video's name without extension", utf8("secret-holiday")],
      ["a message", utf8("meet at the old mill")],
      ["a reply", utf8("bring the map")],
      ["alice's signing key", utf8(aliceKeys.signingKey.slice(40, 80))],
      ["bob's encryption key", utf8(bobKeys.encryptionKey.slice(40, 80))],
      ["bob's key as DER", Uint8Array.fromBase64(bobKeys.signingKey).subarray(40, 80)],
      ["the server's key", (await testServerKey()).publicKey],
      ["a message type", utf8('"type"')],
    ];
    for (const [what, needle] of secrets) {
      assert.ok(!containsBytes(wire, needle), `${what} appears on the wire`);
    }
    for (const direction of ["to-server", "to-client"] as Direction[]) {
      assert.ok(!hasTsRun(recorder.bytes(direction)), `MPEG-TS packets on the wire ${direction}`);
    }
  } finally {
    await alice.session.quit();
    await bob.session.quit();
    await recorder.close();
    for (const home of [alice.home, bob.home]) await Deno.remove(home, { recursive: true });
    await server.stop();
  }
});

/**
 * Flips one bit of one direction at `offset` (counted from the connection's first byte) while
 * carol chats with bob and watches the video; returns how carol's session ended.
 */
async function flipDuringSession(
  server: LoggedServer,
  direction: Direction,
  offset: number,
): Promise<{ code: string; joined: boolean }> {
  const bob = await joinClient(server.port, "bob");
  const proxy = new ByteProxy(server.port, { [direction]: flipBit(offset, offset % 8) });
  const home = await Deno.makeTempDir({ prefix: "reelay-home-carol-" });
  try {
    let carol: Awaited<ReturnType<typeof joinClient>>;
    try {
      carol = await joinClient(proxy.port, "carol", { home });
    } catch (error) {
      assert.ok(error instanceof ReelayError, String(error));
      return { code: error.code, joined: false };
    }
    const end = carol.session.closed;
    // Keep traffic flowing both ways until the flipped bit is reached.
    const traffic = (async () => {
      try {
        await carol.session.send("bob", "first");
        await carol.session.listVideos();
        await carol.session.play(VIDEO);
        await carol.log.waitFor("stream-ended", () => true, 60_000);
        await carol.session.send("bob", "after the video");
      } catch {
        // The connection ended under the traffic: that is the point.
      }
    })();
    const finished = await Promise.race([end, traffic.then(() => undefined)]);
    await carol.session.quit();
    await traffic;
    // bob is untouched and can still talk to the server.
    const videos = await bob.session.listVideos();
    assert.ok(videos.length > 0);
    return { code: finished?.code ?? "not-ended", joined: true };
  } finally {
    await proxy.close();
    await bob.session.quit();
    await Deno.remove(bob.home, { recursive: true });
    await Deno.remove(home, { recursive: true });
    await waitUntil(() => server.server.connections === 0, "every connection ended");
  }
}

Deno.test("a flipped bit anywhere ends that connection with a clear error and nothing else", async () => {
  const server = await serverWithVideo();
  try {
    // Offsets: the handshake, the first records (hello / welcome), chat, and deep in the video.
    const cases: [Direction, number, string[]][] = [
      ["to-server", 3, ["handshake-failed"]],
      ["to-server", 600, ["handshake-failed"]],
      ["to-client", 700, ["handshake-failed"]],
      ["to-server", 1300, ["channel-tampered", "server-closed", "server-lost"]],
      ["to-client", 1250, ["channel-tampered"]],
      ["to-client", 30_000, ["channel-tampered"]],
    ];
    for (const [direction, offset, codes] of cases) {
      const { code } = await flipDuringSession(server, direction, offset);
      assert.ok(codes.includes(code), `${direction} bit at ${offset}: ended with ${code}`);
    }
    assert.ok(
      server.lines.some((line) => /altered in transit/.test(line)),
      "the server said why it closed a connection",
    );
    assert.ok(!server.lines.some((line) => /^error /.test(line)), server.lines.join("\n"));
  } finally {
    await server.stop();
  }
});

Deno.test("a proxy answering with another server key is refused before the client says anything", async () => {
  const server = await startLoggedServer();
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const address = `127.0.0.1:${listener.addr.port}`;
  const home = await Deno.makeTempDir({ prefix: "reelay-home-dave-" });
  const impostorKey = await ServerKey.generate();
  try {
    // First the address forwards to the real server: dave pins its key.
    const forwarded = (async () => {
      const client = await listener.accept();
      const upstream = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
      await Promise.all([
        client.readable.pipeTo(upstream.writable).catch(() => {}),
        upstream.readable.pipeTo(client.writable).catch(() => {}),
      ]);
    })();
    const first = await joinClient(listener.addr.port, "dave", { home });
    await first.session.quit();
    await forwarded;

    // Then someone else answers at the same address, with its own key.
    const impostor = listener.accept().then(async (conn) => {
      const channel = await respond(conn, impostorKey, { prologue: CHANNEL_PROLOGUE });
      const heard = new Uint8Array(1024);
      const count = await channel.transport.read(heard).catch(() => null);
      channel.transport.close();
      return count;
    });
    const refused = await joinClient(listener.addr.port, "dave", { home }).then(
      () => assert.fail("joined through an impostor"),
      (error: unknown) => error,
    );
    assert.ok(refused instanceof ReelayError);
    assert.equal(refused.code, "server-key-changed");
    assert.ok(refused.message.includes(address), refused.message);
    assert.ok(refused.message.includes(impostorKey.fingerprint), refused.message);
    const real = await testServerKey();
    assert.ok(refused.message.includes(real.fingerprint), refused.message);
    assert.equal(await impostor, null, "the impostor heard nothing: no hello, no name");
  } finally {
    listener.close();
    await Deno.remove(home, { recursive: true });
    await server.stop();
  }
});
