/**
 * One client store per server key (client/server_store.ts): two addresses of one server share
 * prekeys and conversations, and a store kept per address by an older reelay is moved to the
 * key's folder on the first connection whose key matches the address's pin.
 */

import assert from "node:assert/strict";
import { posix } from "node:path";
import { loadOrCreateIdentity } from "../client/keystore.ts";
import { openServerStore, serverStoreId } from "../client/server_store.ts";
import type { ServerKeyStatus } from "../client/server_trust.ts";
import { ClientStore, serverFolderName } from "../client/store/mod.ts";
import { exists } from "../shared/files.ts";
import { joinClient, startTestServer, testServerKey } from "../testing/harness.ts";
import { ByteProxy } from "./_byte_proxy.ts";

const keyFolder = async (home: string) =>
  posix.join(home, "servers", serverStoreId((await testServerKey()).fingerprint));
const addressFolder = (home: string, port: number) =>
  posix.join(home, "servers", serverFolderName(`127.0.0.1:${port}`));

Deno.test("one server through two addresses: one store, so a conversation started against either address's prekeys opens", async () => {
  const server = await startTestServer();
  const proxy = new ByteProxy(server.port);
  try {
    // Bob first comes through the second address and uploads prekeys there, then leaves.
    const first = await joinClient(proxy.port, "bob");
    const firstFile = first.session.store.file;
    await first.session.quit();
    const bob = await joinClient(server.port, "bob", { home: first.home });
    assert.equal(bob.session.store.file, firstFile, "both addresses use the key's store");
    assert.equal(posix.dirname(firstFile), await keyFolder(first.home));
    // Alice writes first: her client takes whichever one-time keys the server holds for bob.
    const alice = await joinClient(server.port, "alice");
    for (const text of ["first", "second", "third"]) await alice.session.send("bob", text);
    await bob.log.waitFor("message", (event) => event.text === "third" && event.from === "alice");
    assert.deepEqual(bob.log.of("message").map((event) => event.text), [
      "first",
      "second",
      "third",
    ]);
    assert.equal(bob.log.of("error").length, 0);
    await Promise.all([alice.session.quit(), bob.session.quit()]);
  } finally {
    await proxy.close();
    await server.close();
  }
});

Deno.test("a store kept per address is moved to the key's folder when the key matches its pin, and the conversation goes on", async () => {
  const server = await startTestServer();
  try {
    const alice = await joinClient(server.port, "alice");
    const bob = await joinClient(server.port, "bob");
    await alice.log.waitFor("joined", (event) => event.name === "bob");
    await alice.session.send("bob", "before the move");
    await bob.log.waitFor("message", (event) => event.text === "before the move");
    await bob.session.send("alice", "got it");
    await alice.log.waitFor("message", (event) => event.text === "got it");
    await bob.session.quit();
    // What an older reelay left: the same store, in the address's folder.
    const legacy = addressFolder(bob.home, server.port);
    await Deno.rename(await keyFolder(bob.home), legacy);

    const back = await joinClient(server.port, "bob", { home: bob.home });
    assert.equal(await exists(legacy), false, "the address's folder was moved");
    assert.equal(posix.dirname(back.session.store.file), await keyFolder(bob.home));
    assert.ok(back.session.store.conversation("alice"), "the conversation came along");
    await alice.log.waitFor("joined", (event) => event.name === "bob");
    await alice.session.send("bob", "after the move");
    await back.log.waitFor("message", (event) => event.text === "after the move");
    assert.equal(back.log.of("error").length, 0);
    await Promise.all([alice.session.quit(), back.session.quit()]);
  } finally {
    await server.close();
  }
});

Deno.test("a store kept per address stays where it is unless the key was already pinned for that address", async () => {
  const home = await Deno.makeTempDir({ prefix: "reelay-home-" });
  try {
    const { identity } = await loadOrCreateIdentity(home);
    const fingerprint = (await testServerKey()).fingerprint;
    const address = "10.0.0.1:9000";
    const legacyFile = ClientStore.path(home, serverFolderName(address));
    const legacy = await ClientStore.open({ home, server: serverFolderName(address), identity });
    legacy.ignore("mallory");
    legacy.close();
    /** Opens the key's store as a connection with `keyStatus` would: is mallory ignored there? */
    const ignoresMallory = async (keyStatus: ServerKeyStatus) => {
      const server = { address, fingerprint, keyStatus };
      const store = await openServerStore({ home, identity, server });
      const ignored = store.isIgnored("mallory");
      store.close();
      return ignored;
    };
    // A key seen for the first time, or one the person accepted in place of the pinned one, is
    // not the key the old store was kept for.
    for (const keyStatus of ["new", "accepted"] as const) {
      assert.equal(await ignoresMallory(keyStatus), false, `${keyStatus}: a fresh store`);
      assert.equal(await exists(legacyFile), true, `${keyStatus}: the old store is left`);
      await Deno.remove(await keyFolder(home), { recursive: true });
    }
    // The key has a store already: two stores are not merged, the old one is left.
    (await ClientStore.open({ home, server: serverStoreId(fingerprint), identity })).close();
    assert.equal(await ignoresMallory("pinned"), false);
    assert.equal(await exists(legacyFile), true);
    // Without a store for the key, a matching pin moves it.
    await Deno.remove(await keyFolder(home), { recursive: true });
    assert.equal(await ignoresMallory("pinned"), true);
    assert.equal(await exists(legacyFile), false);
  } finally {
    await Deno.remove(home, { recursive: true });
  }
});
