// The hybrid handshake NXhfs with ML-KEM-768. No published vectors exist for this combination,
// so it is checked by round trips, by both sides agreeing, and by every byte mattering.
import assert from "node:assert/strict";
import {
  type Kem,
  MLKEM768,
  PROTOCOL_NAME,
  ServerKey,
  type TransportCiphers,
} from "../shared/channel/mod.ts";
import { HandshakeState } from "../shared/channel/handshake_state.ts";

const serverKey = await ServerKey.generate();
const prologue = new TextEncoder().encode("reelay/3");

interface Run {
  client: HandshakeState;
  server: HandshakeState;
  hello: Uint8Array;
  reply: Uint8Array;
}

/** One NXhfs handshake; `tamper` may change each message before it is read. */
async function run(
  tamper: (index: number, message: Uint8Array) => Uint8Array = (_i, message) => message,
  kem?: Kem,
): Promise<Run> {
  const client = await HandshakeState.initialize({
    protocolName: PROTOCOL_NAME,
    initiator: true,
    prologue,
    kem,
  });
  const server = await HandshakeState.initialize({
    protocolName: PROTOCOL_NAME,
    initiator: false,
    prologue,
    s: serverKey,
  });
  const hello = await client.writeMessage(new Uint8Array());
  await server.readMessage(tamper(0, hello.slice()));
  const reply = await server.writeMessage(new Uint8Array());
  await client.readMessage(tamper(1, reply.slice()));
  return { client, server, hello, reply };
}

async function assertTalk(a: TransportCiphers, b: TransportCiphers): Promise<void> {
  const ad = new Uint8Array();
  for (const [from, to] of [[a, b], [b, a]]) {
    const text = new TextEncoder().encode("hybrid");
    const sealed = await from.send.encryptWithAd(ad, text);
    assert.deepEqual(await to.receive.decryptWithAd(ad, sealed), text);
  }
}

Deno.test("NXhfs: both sides finish with one handshake hash and matching transport keys", async () => {
  const { client, server, hello, reply } = await run();
  assert.ok(client.finished && server.finished);
  assert.deepEqual(client.handshakeHash, server.handshakeHash);
  assert.deepEqual(client.remoteStatic, serverKey.publicKey);
  // e (32) + e1 (1184) in clear; e (32) + ekem1 (1088 + 16) + s (32 + 16) + payload tag (16).
  assert.equal(hello.length, 32 + 1184);
  assert.equal(reply.length, 32 + 1088 + 16 + 32 + 16 + 16);
  await assertTalk(client.transport(), server.transport());
  // A transport key for one direction does not open the other direction.
  const sealed = await client.transport().send.encryptWithAd(new Uint8Array(), new Uint8Array(4));
  await assert.rejects(
    client.transport().receive.decryptWithAd(new Uint8Array(), sealed),
    { code: "noise-crypto-failed" },
  );
});

Deno.test("NXhfs: every handshake is fresh", async () => {
  const [first, second] = [await run(), await run()];
  assert.notDeepEqual(first.client.handshakeHash, second.client.handshakeHash);
  assert.notDeepEqual(first.hello.subarray(32), second.hello.subarray(32)); // a new KEM key
});

Deno.test("NXhfs: the server's static key is never sent in clear", async () => {
  const { reply } = await run();
  const hex = reply.toHex();
  assert.ok(!hex.includes(serverKey.publicKey.toHex()));
});

Deno.test("NXhfs: a changed bit anywhere in either handshake message fails the handshake", async () => {
  for (const index of [0, 1]) {
    const size = index === 0 ? 32 + 1184 : 32 + 1088 + 16 + 32 + 16 + 16;
    // Every byte of the small fields and field edges, and every 7th byte inside the KEM values.
    const positions = Array.from({ length: size }, (_, i) => i).filter((i) =>
      i < 40 || i >= size - 80 || i % 7 === 0
    );
    for (const position of positions) {
      const bit = 1 << (position % 8);
      await assert.rejects(
        run((i, message) => {
          if (i === index) message[position] ^= bit;
          return message;
        }),
        (error: unknown) => {
          assert.ok(error instanceof Error);
          assert.ok(
            "code" in error && ["noise-bad-message", "noise-crypto-failed"].includes(
              String(error.code),
            ),
            `message ${index}, byte ${position}: ${error}`,
          );
          return true;
        },
        `message ${index}, byte ${position}`,
      );
    }
  }
});

Deno.test("NXhfs: a truncated or extended message fails", async () => {
  for (const index of [0, 1]) {
    await assert.rejects(run((i, m) => i === index ? m.subarray(0, m.length - 1) : m));
    await assert.rejects(run((i, m) => i === index ? new Uint8Array([...m, 0]) : m));
  }
});

Deno.test("NXhfs: the KEM output is mixed into the keys", async () => {
  // A KEM whose decapsulation yields a different secret than the encapsulation: if its output
  // were not mixed in, the handshake would still succeed.
  const lying: Kem = {
    ...MLKEM768,
    async decapsulate(pair, ciphertext) {
      const output = await MLKEM768.decapsulate(pair, ciphertext);
      output[0] ^= 1;
      return output;
    },
  };
  await assert.rejects(run(undefined, lying), { code: "noise-bad-message" });
  await run(undefined, MLKEM768); // the same path with the honest KEM succeeds
});

Deno.test("ML-KEM-768: sizes, agreement, and rejection of a malformed public key", async () => {
  const pair = await MLKEM768.generateKeyPair();
  assert.equal(pair.publicKey.length, MLKEM768.publicKeyLength);
  const { ciphertext, output } = await MLKEM768.encapsulate(pair.publicKey);
  assert.equal(ciphertext.length, MLKEM768.ciphertextLength);
  assert.deepEqual(await MLKEM768.decapsulate(pair, ciphertext), output);
  // Coefficients of 0xfff exceed q = 3329: FIPS 203's input check refuses this key.
  await assert.rejects(
    MLKEM768.encapsulate(new Uint8Array(1184).fill(0xff)),
    { code: "noise-crypto-failed" },
  );
  await assert.rejects(
    MLKEM768.decapsulate(pair, ciphertext.subarray(1)),
    { code: "noise-crypto-failed" },
  );
});
