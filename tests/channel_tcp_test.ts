// The secure channel over real loopback TCP, with recording and hostile proxies in between.
import assert from "node:assert/strict";
import {
  CHANNEL_MAGIC,
  initiate,
  serverFingerprint,
  ServerKey,
  ServerPins,
} from "../shared/channel/mod.ts";
import { concat } from "../shared/bytes.ts";
import { ReelayError } from "../shared/errors.ts";
import { writeAll } from "../shared/io.ts";
import { FramedConnection } from "../shared/protocol/framed.ts";
import { ByteProxy, type Direction, flipBit, recordRewriter } from "./_byte_proxy.ts";
import {
  OneShotServer,
  patternBytes,
  PROLOGUE,
  receiveAll,
  securePair,
  sendInPieces,
  serverKey,
} from "./_channel.ts";

/** Bytes of each side's handshake message on the wire (magic, length, Noise message). */
const HANDSHAKE_BYTES: Record<Direction, number> = {
  "to-server": 8 + 2 + 1216,
  "to-client": 8 + 2 + 1200,
};

function assertCode(error: unknown, code: string): ReelayError {
  assert.ok(error instanceof ReelayError, `expected a ReelayError "${code}", got ${error}`);
  assert.equal(error.code, code, error.message);
  return error;
}

Deno.test("client and server exchange 10 MiB each way in varied write sizes", async () => {
  const pair = await securePair();
  const up = patternBytes(10 * 1024 * 1024, 1);
  const down = patternBytes(10 * 1024 * 1024, 2);
  const sizes = [1, 7, 1000, 4096, 65519, 65520, 100_000, 300_000, 1 << 20, 13];
  const [, , atServer, atClient] = await Promise.all([
    sendInPieces(pair.client.transport, up, sizes),
    sendInPieces(pair.server.transport, down, [...sizes].reverse()),
    receiveAll(pair.server.transport, [1, 100, 65536, 7000]),
    receiveAll(pair.client.transport, [65536, 3, 200_000]),
  ]);
  assert.equal(atServer.error, undefined);
  assert.equal(atClient.error, undefined);
  assert.ok(atServer.bytes.length === up.length && atServer.bytes.every((b, i) => b === up[i]));
  assert.ok(atClient.bytes.length === down.length && atClient.bytes.every((b, i) => b === down[i]));
  assert.deepEqual(pair.client.handshakeHash, pair.server.handshakeHash);
  assert.deepEqual(pair.client.remoteStatic, serverKey.publicKey);
  assert.equal(pair.client.serverFingerprint, serverKey.fingerprint);
  await pair.close();
});

Deno.test("FramedConnection runs over a SecureConn unchanged", async () => {
  const pair = await securePair();
  const options = { maxFrameBytes: 1 << 20, maxQueueBytes: 1 << 20 };
  const client = FramedConnection.forClient(pair.client.transport, options);
  const server = FramedConnection.forServer(pair.server.transport, options);
  assert.equal(
    server.remote,
    `127.0.0.1:${(pair.client.transport.localAddr as Deno.NetAddr).port}`,
  );
  const media = patternBytes(200_000, 3);
  server.sendMessage({ type: "ping" });
  await server.sendStream(7, 1, media);
  const received: string[] = [];
  for await (const item of client.receive()) {
    if (item.kind === "message") received.push(item.message.type);
    if (item.kind === "stream") {
      assert.deepEqual([item.chunk.streamId, item.chunk.segment], [7, 1]);
      assert.deepEqual(item.chunk.media, media);
      received.push("stream");
    }
    if (received.length === 2) break;
  }
  assert.deepEqual(received, ["ping", "stream"]);
  client.close();
  server.close();
  await Promise.all([client.done, server.done]);
  await pair.close();
});

Deno.test("a recording proxy sees no plaintext and not the server's key", async () => {
  const pair = await securePair({ rewriters: {} });
  const marker = new TextEncoder().encode("alice-public-key-MARKER");
  const ts = new Uint8Array(188 * 4);
  for (let i = 0; i < ts.length; i += 188) ts[i] = 0x47;
  const payload = new Uint8Array([...marker, ...ts, ...marker]);
  await Promise.all([
    sendInPieces(pair.client.transport, payload, [5, 1000]),
    sendInPieces(pair.server.transport, payload, [payload.length]),
    receiveAll(pair.server.transport),
    receiveAll(pair.client.transport),
  ]);
  const proxy = pair.proxy!;
  assert.ok(proxy.bytes("to-server").length > payload.length);
  assert.ok(!proxy.saw(marker));
  assert.ok(!proxy.saw(ts.subarray(0, 189)));
  assert.ok(!proxy.saw(serverKey.publicKey));
  assert.ok(!proxy.saw(new TextEncoder().encode(PROLOGUE)));
  await pair.close();
});

/** Sends 3 records of 1000 bytes through a tampering proxy; returns what the reader got. */
async function tamperedTransfer(direction: Direction, offset: number, bit: number) {
  const pair = await securePair({
    rewriters: { [direction]: flipBit(HANDSHAKE_BYTES[direction] + offset, bit) },
  });
  const [sender, reader] = direction === "to-server"
    ? [pair.client.transport, pair.server.transport]
    : [pair.server.transport, pair.client.transport];
  const data = patternBytes(3000, 4);
  const [, received] = await Promise.all([
    sendInPieces(sender, data, [1000]).catch(() => {}),
    receiveAll(reader, [500]),
  ]);
  // Later reads keep failing the same way, and writes are refused.
  await assert.rejects(reader.read(new Uint8Array(10)), { code: "channel-tampered" });
  await assert.rejects(reader.write(new Uint8Array(10)), { code: "channel-tampered" });
  await pair.close();
  return { data, received };
}

Deno.test("one flipped bit after the handshake ends the connection as channel-tampered", async () => {
  // Each record here is 2 + 1000 + 16 = 1018 bytes: header, body, tag, then the next record.
  const positions = [0, 1, 2, 3, 500, 1001, 1017, 1018, 1019, 1020, 2035, 3053];
  for (const direction of ["to-server", "to-client"] as const) {
    for (const [i, position] of positions.entries()) {
      const { data, received } = await tamperedTransfer(direction, position, i % 8);
      const error = assertCode(received.error, "channel-tampered");
      assert.match(error.message, /altered in transit/);
      // Nothing from the bad record or after it is ever handed out.
      const badRecord = Math.floor(position / 1018);
      assert.ok(received.bytes.length <= badRecord * 1000, `${direction} ${position}`);
      assert.deepEqual(received.bytes, data.subarray(0, received.bytes.length));
    }
  }
});

Deno.test("a replayed, dropped, reordered or cut record fails authentication", async () => {
  const cases: Record<string, (record: Uint8Array, index: number) => Uint8Array[]> = {
    replayed: (record, index) => index === 1 ? [record, record] : [record],
    dropped: (record, index) => index === 1 ? [] : [record],
    // The last of the four records loses its end, then the stream closes.
    cut: (record, index) => index === 3 ? [record.subarray(0, record.length - 5)] : [record],
    reordered: (() => {
      let held: Uint8Array | undefined;
      return (record: Uint8Array, index: number) => {
        if (index === 1) return (held = record, []);
        return index === 2 ? [record, held!] : [record];
      };
    })(),
  };
  for (const [name, rewrite] of Object.entries(cases)) {
    const pair = await securePair({
      rewriters: { "to-client": recordRewriter(HANDSHAKE_BYTES["to-client"], rewrite) },
    });
    const data = patternBytes(400, 5);
    const [, received] = await Promise.all([
      sendInPieces(pair.server.transport, data, [100]),
      receiveAll(pair.client.transport),
    ]);
    assertCode(received.error, "channel-tampered");
    assert.ok(received.bytes.length < data.length, name);
    assert.deepEqual(received.bytes, data.subarray(0, received.bytes.length), name);
    await pair.close();
  }
});

Deno.test("a flipped bit inside the handshake fails the handshake", async () => {
  const cases: [Direction, number, string][] = [
    ["to-server", 0, "handshake-failed"], // the server refuses the magic and hangs up
    ["to-server", 10, "handshake-failed"], // client ephemeral key
    ["to-server", 100, "handshake-failed"], // client KEM public key
    ["to-server", 1225, "handshake-failed"],
    ["to-client", 3, "not-reelay"],
    ["to-client", 10, "handshake-failed"], // server ephemeral key
    ["to-client", 600, "handshake-failed"], // KEM ciphertext
    ["to-client", 1170, "handshake-failed"], // encrypted static key
    ["to-client", 1209, "handshake-failed"], // last tag byte
  ];
  for (const [direction, position, code] of cases) {
    const server = new OneShotServer();
    const proxy = new ByteProxy(server.port, { [direction]: flipBit(position, position % 8) });
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: proxy.port });
    const error = await initiate(conn, { prologue: PROLOGUE }).then(() => undefined, (e) => e);
    assertCode(error, code);
    // The server either refused at once or finished and then saw the client hang up.
    const serverSide = await server.handshake.then((h) => receiveAll(h.transport), (e) => e);
    if (!(serverSide instanceof ReelayError)) {
      assert.equal(serverSide.bytes.length, 0);
      (await server.handshake).transport.close();
    }
    server.close();
    await proxy.close();
  }
});

Deno.test("a server with another key is refused with both fingerprints", async () => {
  // A man in the middle who terminates the handshake with a key of his own.
  const impostorKey = await ServerKey.generate();
  const home = await Deno.makeTempDir();
  const pins = new ServerPins(`${home}/server_pins.json`);
  const address = "server.lan:9000";

  const real = await securePair();
  assert.equal(await pins.check(address, real.client.remoteStatic), "new");
  await pins.pin(address, real.client.remoteStatic);
  await real.close();

  const impostor = new OneShotServer(impostorKey);
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: impostor.port });
  const error = await initiate(conn, {
    prologue: PROLOGUE,
    peer: address,
    expectedServerKey: (await pins.pinned(address))!,
  }).then(() => undefined, (e) => e);
  const changed = assertCode(error, "server-key-changed");
  assert.ok(changed.message.includes(serverKey.fingerprint), changed.message);
  assert.ok(changed.message.includes(impostorKey.fingerprint), changed.message);
  assert.ok(changed.message.includes(address));
  await impostor.handshake.then((h) => h.transport.close(), () => {});
  impostor.close();

  // Without an expected key, the caller compares with its pin itself.
  const second = new OneShotServer(impostorKey);
  const client = await initiate(await Deno.connect({ hostname: "127.0.0.1", port: second.port }), {
    prologue: PROLOGUE,
  });
  assert.equal(await pins.check(address, client.remoteStatic), "changed");
  await assert.rejects(pins.pin(address, client.remoteStatic), { code: "server-key-changed" });
  assert.equal(client.serverFingerprint, await serverFingerprint(impostorKey.publicKey));
  client.transport.close();
  (await second.handshake).transport.close();
  second.close();
  await Deno.remove(home, { recursive: true });
});

Deno.test("a server that speaks something else is not-reelay", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const http = listener.accept().then(async (conn) => {
    await conn.read(new Uint8Array(4096));
    await writeAll(conn, new TextEncoder().encode("HTTP/1.1 400 Bad Request\r\n\r\n"));
    conn.close();
  });
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  const error = await initiate(conn, { prologue: PROLOGUE }).then(() => undefined, (e) => e);
  const notReelay = assertCode(error, "not-reelay");
  assert.match(notReelay.message, /is not a reelay server.*"HTTP\/1\.1 400 Bad"/);
  await http;
  listener.close();
});

Deno.test("a client that speaks something else is not-reelay on the server", async () => {
  const server = new OneShotServer();
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
  await writeAll(conn, new TextEncoder().encode("GET / HTTP/1.1\r\n\r\n"));
  const error = await server.handshake.then(() => undefined, (e) => e);
  assert.match(assertCode(error, "not-reelay").message, /"GET \/ HTTP\/1\.1\.\."/);
  assert.equal(await conn.read(new Uint8Array(10)), null); // the server hung up
  conn.close();
  server.close();
});

Deno.test("a peer that never answers hits the handshake timeout", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const silent = listener.accept();
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  const error = await initiate(conn, { prologue: PROLOGUE, timeoutMs: 50 }).then(
    () => undefined,
    (e) => e,
  );
  assert.match(assertCode(error, "handshake-timeout").message, /did not finish within 50 ms/);
  (await silent).close();
  listener.close();

  const server = new OneShotServer(serverKey, { timeoutMs: 50 });
  const idle = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
  await writeAll(idle, CHANNEL_MAGIC.subarray(0, 3)); // starts well, then goes quiet
  assertCode(await server.handshake.then(() => undefined, (e) => e), "handshake-timeout");
  idle.close();
  server.close();
});

Deno.test("a peer that hangs up mid-handshake fails it", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const rude = listener.accept().then(async (conn) => {
    await conn.read(new Uint8Array(2000));
    await writeAll(conn, CHANNEL_MAGIC);
    conn.close();
  });
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  const error = await initiate(conn, { prologue: PROLOGUE }).then(() => undefined, (e) => e);
  assert.match(assertCode(error, "handshake-failed").message, /closed the connection/);
  await rude;
  listener.close();
});

Deno.test("sides with different prologues do not connect", async () => {
  const server = new OneShotServer(serverKey, { prologue: "reelay/2" });
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
  const error = await initiate(conn, { prologue: PROLOGUE }).then(() => undefined, (e) => e);
  assert.match(assertCode(error, "handshake-failed").message, /another reelay version/);
  const serverSide = await server.handshake;
  assert.equal((await receiveAll(serverSide.transport)).bytes.length, 0);
  serverSide.transport.close();
  server.close();
});

Deno.test("records that arrive with the server's handshake message are not lost", async () => {
  // The proxy holds the server's handshake message back until its first record has come too,
  // so the client reads both in one go.
  let held: Uint8Array[] = [];
  let seen = 0;
  const coalesce = (chunk: Uint8Array | null) => {
    if (chunk) held.push(chunk), seen += chunk.length;
    if (chunk && seen <= HANDSHAKE_BYTES["to-client"]) return [];
    const all = concat(held);
    held = [];
    return all.length ? [all] : [];
  };
  const server = new OneShotServer();
  const greeting = new TextEncoder().encode("welcome");
  const serverSide = server.handshake.then(async (handshake) => {
    await handshake.transport.write(greeting);
    return handshake;
  });
  const proxy = new ByteProxy(server.port, { "to-client": coalesce });
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: proxy.port });
  const client = await initiate(conn, { prologue: PROLOGUE });
  assert.ok(proxy.captured["to-client"][0].length > HANDSHAKE_BYTES["to-client"]);
  const buffer = new Uint8Array(100);
  const count = await client.transport.read(buffer);
  assert.deepEqual(buffer.subarray(0, count!), greeting);
  client.transport.close();
  (await serverSide).transport.close();
  server.close();
  await proxy.close();
});
