// The Noise engine against published test vectors (cacophony), and its spec-level behaviour.
import assert from "node:assert/strict";
import {
  CipherState,
  HandshakeState,
  keyPairFromPrivate,
  parseProtocolName,
  pattern,
} from "../shared/channel/mod.ts";

interface Vector {
  name: string;
  init_prologue: string;
  init_ephemeral: string;
  init_static?: string;
  init_psk?: string;
  resp_prologue: string;
  resp_ephemeral: string;
  resp_static?: string;
  resp_psk?: string;
  messages: { payload: string; ciphertext: string }[];
}

const vectors: Vector[] = JSON.parse(
  await Deno.readTextFile(new URL("./data/noise_vectors.json", import.meta.url)),
).vectors;

const hex = (text: string) => Uint8Array.fromHex(text);

async function side(vector: Vector, initiator: boolean): Promise<HandshakeState> {
  const prefix = initiator ? "init" : "resp";
  const staticKey = vector[`${prefix}_static`];
  const psk = vector[`${prefix}_psk`];
  return await HandshakeState.initialize({
    protocolName: vector.name,
    initiator,
    prologue: hex(vector[`${prefix}_prologue`]),
    s: staticKey ? await keyPairFromPrivate(hex(staticKey)) : undefined,
    psks: psk ? [hex(psk)] : [],
    ephemeral: await keyPairFromPrivate(hex(vector[`${prefix}_ephemeral`])),
  });
}

for (const vector of vectors) {
  Deno.test(`${vector.name} matches the cacophony vector`, async () => {
    const init = await side(vector, true);
    const resp = await side(vector, false);
    for (const [index, message] of vector.messages.entries()) {
      const [sender, receiver] = index % 2 === 0 ? [init, resp] : [resp, init];
      const payload = hex(message.payload);
      if (!sender.finished) {
        const written = await sender.writeMessage(payload);
        assert.equal(written.toHex(), message.ciphertext, `handshake message ${index}`);
        assert.equal((await receiver.readMessage(written)).toHex(), message.payload);
      } else {
        const sealed = await sender.transport().send.encryptWithAd(new Uint8Array(), payload);
        assert.equal(sealed.toHex(), message.ciphertext, `transport message ${index}`);
        const opened = await receiver.transport().receive.decryptWithAd(new Uint8Array(), sealed);
        assert.equal(opened.toHex(), message.payload);
      }
    }
    assert.ok(init.finished && resp.finished);
    assert.deepEqual(init.handshakeHash, resp.handshakeHash);
  });
}

Deno.test("the NX responder's static key reaches the initiator", async () => {
  const vector = vectors.find((v) => v.name === "Noise_NX_25519_ChaChaPoly_SHA256")!;
  const init = await side(vector, true);
  const resp = await side(vector, false);
  await resp.readMessage(await init.writeMessage(new Uint8Array()));
  await init.readMessage(await resp.writeMessage(new Uint8Array()));
  const expected = await keyPairFromPrivate(hex(vector.resp_static!));
  assert.deepEqual(init.remoteStatic, expected.publicKey);
  assert.equal(resp.remoteStatic, undefined);
});

Deno.test("a different prologue fails the first authenticated message", async () => {
  const protocolName = "Noise_NX_25519_ChaChaPoly_SHA256";
  const s = await keyPairFromPrivate(new Uint8Array(32).fill(3));
  const init = await HandshakeState.initialize({
    protocolName,
    initiator: true,
    prologue: new TextEncoder().encode("reelay/3"),
  });
  const resp = await HandshakeState.initialize({
    protocolName,
    initiator: false,
    prologue: new TextEncoder().encode("reelay/2"),
    s,
  });
  await resp.readMessage(await init.writeMessage(new Uint8Array()));
  await assert.rejects(
    init.readMessage(await resp.writeMessage(new Uint8Array())),
    { code: "noise-bad-message" },
  );
});

Deno.test("messages out of turn, after failure or after the end are refused", async () => {
  const protocolName = "Noise_NN_25519_ChaChaPoly_SHA256";
  const init = await HandshakeState.initialize({ protocolName, initiator: true });
  const resp = await HandshakeState.initialize({ protocolName, initiator: false });
  await assert.rejects(resp.writeMessage(new Uint8Array()), /not this side's turn/);
  await assert.rejects(init.readMessage(new Uint8Array(48)), /not this side's turn/);
  await assert.rejects(resp.readMessage(new Uint8Array(10)), { code: "noise-bad-message" });
  await assert.rejects(resp.readMessage(new Uint8Array(32)), /has failed/);
  const fresh = await HandshakeState.initialize({ protocolName, initiator: false });
  await fresh.readMessage(await init.writeMessage(new Uint8Array()));
  await init.readMessage(await fresh.writeMessage(new Uint8Array()));
  await assert.rejects(init.writeMessage(new Uint8Array()), /already finished/);
});

Deno.test("a handshake message over 65535 bytes is refused both ways", async () => {
  const protocolName = "Noise_NN_25519_ChaChaPoly_SHA256";
  const init = await HandshakeState.initialize({ protocolName, initiator: true });
  await assert.rejects(init.writeMessage(new Uint8Array(65535 - 31)), /exceeds 65535/);
  const resp = await HandshakeState.initialize({ protocolName, initiator: false });
  await assert.rejects(resp.readMessage(new Uint8Array(65536)), { code: "noise-bad-message" });
});

Deno.test("a pattern that needs a key refuses to start without it", async () => {
  await assert.rejects(
    HandshakeState.initialize({
      protocolName: "Noise_NX_25519_ChaChaPoly_SHA256",
      initiator: false,
    }),
    /needs this side's static key pair/,
  );
  await assert.rejects(
    HandshakeState.initialize({
      protocolName: "Noise_NNpsk2_25519_ChaChaPoly_SHA256",
      initiator: true,
    }),
    /needs 1 pre-shared keys/,
  );
});

Deno.test("hfs places e1 and ekem1 as the extension's table does", () => {
  assert.deepEqual(pattern("NXhfs").messages, [["e", "e1"], ["e", "ee", "ekem1", "s", "es"]]);
  assert.deepEqual(pattern("NNhfs").messages, [["e", "e1"], ["e", "ee", "ekem1"]]);
  assert.deepEqual(pattern("XXhfs").messages, [
    ["e", "e1"],
    ["e", "ee", "ekem1", "s", "es"],
    ["s", "se"],
  ]);
  assert.deepEqual(pattern("NNpsk2").messages, [["e"], ["e", "ee", "psk"]]);
});

Deno.test("protocol names must match the functions implemented", () => {
  const parsed = parseProtocolName("Noise_NXhfs_25519+MLKEM768_ChaChaPoly_SHA256");
  assert.equal(parsed.kem, "MLKEM768");
  for (
    const name of [
      "Noise_NXhfs_25519_ChaChaPoly_SHA256", // hfs needs a KEM
      "Noise_NX_25519+MLKEM768_ChaChaPoly_SHA256", // a KEM needs hfs
      "Noise_NX_448_ChaChaPoly_SHA256",
      "Noise_NX_25519_AESGCM_SHA256",
      "Noise_NX_25519_ChaChaPoly_BLAKE2s",
      "Noise_IK_25519_ChaChaPoly_SHA256",
      "Noise_NXhfs+hfs_25519+MLKEM768_ChaChaPoly_SHA256",
      "Noise_NXpsk9_25519_ChaChaPoly_SHA256",
      "Noise_NX_25519_ChaChaPoly",
    ]
  ) {
    assert.throws(() => parseProtocolName(name), RangeError, name);
  }
});

Deno.test("cipher state: nonces advance, a failed decrypt keeps the nonce, rekey agrees", async () => {
  const key = new Uint8Array(32).fill(9);
  const [a, b] = [await CipherState.withKey(key), await CipherState.withKey(key)];
  const ad = new Uint8Array([1, 2]);
  const first = await a.encryptWithAd(ad, new Uint8Array([1]));
  const second = await a.encryptWithAd(ad, new Uint8Array([2]));
  await assert.rejects(b.decryptWithAd(ad, second), { code: "noise-crypto-failed" });
  assert.equal(b.nonce, 0);
  assert.deepEqual(await b.decryptWithAd(ad, first), new Uint8Array([1]));
  assert.deepEqual(await b.decryptWithAd(ad, second), new Uint8Array([2]));
  await assert.rejects(b.decryptWithAd(ad, second), { code: "noise-crypto-failed" });
  await a.rekey();
  await b.rekey();
  assert.equal(a.nonce, 2);
  const third = await a.encryptWithAd(ad, new Uint8Array([3]));
  assert.deepEqual(await b.decryptWithAd(ad, third), new Uint8Array([3]));
  const plain = CipherState.empty();
  assert.deepEqual(await plain.encryptWithAd(ad, new Uint8Array([4])), new Uint8Array([4]));
});
