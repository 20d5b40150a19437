// SecureConn's record layer: record sizes, the Deno.Conn calls, ordering and closing.
import assert from "node:assert/strict";
import { MAX_RECORD_PLAINTEXT, RECORD_HEADER_BYTES, TAGLEN } from "../shared/channel/mod.ts";
import { concat } from "../shared/bytes.ts";
import { patternBytes, receiveAll, securePair } from "./_channel.ts";

const HANDSHAKE_TO_SERVER = 8 + 2 + 1216;

/** Record lengths (header values) in the bytes the client sent after its handshake. */
function recordLengths(wire: Uint8Array): number[] {
  const lengths: number[] = [];
  for (let at = HANDSHAKE_TO_SERVER; at < wire.length;) {
    const length = (wire[at] << 8) | wire[at + 1];
    lengths.push(length);
    at += RECORD_HEADER_BYTES + length;
  }
  return lengths;
}

Deno.test("a write becomes as few records as the limit allows, of equal size", async () => {
  const pair = await securePair({ rewriters: {} });
  const sizes = [0, 1, MAX_RECORD_PLAINTEXT, MAX_RECORD_PLAINTEXT + 1, 3 * MAX_RECORD_PLAINTEXT];
  for (const size of sizes) {
    assert.equal(await pair.client.transport.write(new Uint8Array(size)), size);
  }
  await pair.client.transport.closeWrite();
  const received = await receiveAll(pair.server.transport);
  assert.equal(received.bytes.length, sizes.reduce((a, b) => a + b));
  const half = (MAX_RECORD_PLAINTEXT + 1) / 2;
  assert.deepEqual(
    recordLengths(pair.proxy!.bytes("to-server")),
    [1, MAX_RECORD_PLAINTEXT, half, half, ...Array(3).fill(MAX_RECORD_PLAINTEXT)].map((n) =>
      n + TAGLEN
    ),
  );
  await pair.close();
});

Deno.test("reads of any size get the bytes in order; writes in flight never interleave", async () => {
  const pair = await securePair();
  const pieces = Array.from({ length: 40 }, (_, i) => patternBytes(1 + i * 997, i + 1));
  // Not awaited one by one: the connection must keep them whole and in call order.
  await Promise.all(pieces.map((piece) => pair.server.transport.write(piece)));
  await pair.server.transport.closeWrite();
  const received = await receiveAll(pair.client.transport, [1, 2, 3, 5000]);
  assert.equal(received.error, undefined);
  assert.deepEqual(received.bytes, concat(pieces));
  await pair.close();
});

Deno.test("closeWrite ends one direction; the other still works", async () => {
  const pair = await securePair();
  await pair.client.transport.write(new TextEncoder().encode("question"));
  await pair.client.transport.closeWrite();
  const question = await receiveAll(pair.server.transport);
  assert.equal(new TextDecoder().decode(question.bytes), "question");
  await pair.server.transport.write(new TextEncoder().encode("answer"));
  await pair.server.transport.closeWrite();
  const answer = await receiveAll(pair.client.transport);
  assert.equal(new TextDecoder().decode(answer.bytes), "answer");
  await pair.close();
});

Deno.test("after close, reads and writes fail as on a closed Deno.Conn", async () => {
  const pair = await securePair();
  const pending = pair.client.transport.read(new Uint8Array(10));
  pair.client.transport.close();
  pair.client.transport.close(); // idempotent
  await assert.rejects(pending);
  await assert.rejects(pair.client.transport.read(new Uint8Array(10)), Deno.errors.BadResource);
  await assert.rejects(pair.client.transport.write(new Uint8Array(10)), Deno.errors.BadResource);
  // The peer sees the end of the stream.
  assert.equal(await pair.server.transport.read(new Uint8Array(10)), null);
  await pair.close();
});

Deno.test("addresses pass through; readable and writable streams carry plaintext", async () => {
  const pair = await securePair();
  const client = pair.client.transport;
  const server = pair.server.transport;
  assert.deepEqual(client.remoteAddr, server.localAddr);
  assert.deepEqual(client.localAddr, server.remoteAddr);
  const writer = client.writable.getWriter();
  await writer.write(new TextEncoder().encode("streamed "));
  await writer.write(new TextEncoder().encode("text"));
  await writer.close(); // closes the connection, as Deno.Conn's writable does
  const chunks: string[] = [];
  for await (const chunk of server.readable) chunks.push(new TextDecoder().decode(chunk));
  assert.equal(chunks.join(""), "streamed text");
  await pair.close();
});
