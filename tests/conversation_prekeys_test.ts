/**
 * One copy of our prekeys per session, whoever asks first. Two copies (one rotated and
 * published, another used to open mail and saved last) bring back consumed one-time keys or leave
 * the published signed prekey unknown. At a join, publishing and held mail ask at once; the test
 * makes them ask at once for sure: two publishes started in the same tick reach the loading in
 * consecutive microtasks, before either load resolves.
 */
import assert from "node:assert/strict";
import { Conversations } from "../client/conversations.ts";
import { ClientStore } from "../client/store/mod.ts";
import { Identity, PrekeyStore, SIGNED_PREKEY_ROTATION_MS } from "../shared/crypto/mod.ts";
import type { ClientMessage, ServerMessage } from "../shared/protocol/mod.ts";

/** A link that answers every prekey upload as stored, noting the signed prekey's public key. */
function uploadRecorder(signedKeys: string[]) {
  return {
    request(message: ClientMessage): Promise<ServerMessage> {
      if (message.type !== "prekeys") throw new Error(`Unexpected request "${message.type}"`);
      const published = message.published as { signedPrekey: { publicKey: string } };
      signedKeys.push(published.signedPrekey.publicKey);
      return Promise.resolve({ type: "prekeys-stored", oneTime: 1000, pqOneTime: 1000 });
    },
    post(): void {},
  };
}

Deno.test("prekeys: two publishes at once share one copy, rotated once and saved as published", async () => {
  const home = await Deno.makeTempDir({ prefix: "reelay-prekeys-" });
  const identity = await Identity.generate();
  const store = await ClientStore.open({ home, server: "prekeys-test", identity });
  try {
    const first = new Conversations({
      identity,
      name: "alice",
      store,
      link: uploadRecorder([]),
      emit: () => {},
    });
    await first.publishPrekeys();

    const uploaded: string[] = [];
    const weekLater = new Conversations({
      identity,
      name: "alice",
      store,
      link: uploadRecorder(uploaded),
      emit: () => {},
      now: () => Date.now() + SIGNED_PREKEY_ROTATION_MS,
    });
    await Promise.all([weekLater.publishPrekeys(), weekLater.publishPrekeys()]);

    assert.equal(uploaded.length, 2);
    assert.equal(uploaded[0], uploaded[1], "both uploads carry the one rotated signed prekey");
    const saved = PrekeyStore.fromJSON(store.prekeys()).published();
    assert.equal(
      saved.signedPrekey.publicKey,
      uploaded[0],
      "the saved prekeys are the published ones",
    );
  } finally {
    store.close();
    await Deno.remove(home, { recursive: true });
  }
});
