import assert from "node:assert/strict";
import { join } from "node:path";
import { ReelayError, UsageError } from "../shared/errors.ts";
import { Identity } from "../shared/crypto/mod.ts";
import {
  IDENTITY_FILE,
  KNOWN_PEERS_FILE,
  KnownPeers,
  loadOrCreateIdentity,
  resolveHome,
} from "../client/keystore.ts";

const onWindows = Deno.build.os === "windows";

function fakeEnv(values: Record<string, string>) {
  return { get: (name: string) => values[name] };
}

async function withTempHome(test: (home: string) => Promise<void>): Promise<void> {
  const root = await Deno.makeTempDir({ prefix: "reelay-keystore-" });
  try {
    await test(join(root, "nested", "home"));
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

async function modeOf(path: string): Promise<number> {
  return (await Deno.stat(path)).mode! & 0o777;
}

async function rejectsWith(promise: Promise<unknown>, code: string, text?: string): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof ReelayError, `expected a ReelayError, got ${error}`);
    assert.equal(error.code, code, error.message);
    if (text) assert.ok(error.message.includes(text), error.message);
    return true;
  });
}

Deno.test("resolveHome prefers --home, then REELAY_HOME, then the OS config folder", () => {
  const env = fakeEnv({
    REELAY_HOME: "/env/home",
    HOME: "/home/ann",
    XDG_CONFIG_HOME: "/xdg",
    APPDATA: "C:\\Users\\ann\\AppData\\Roaming",
  });
  assert.equal(resolveHome({ home: "/flag", env }), "/flag");
  assert.equal(resolveHome({ env }), "/env/home");
  const os = fakeEnv({ HOME: "/home/ann", XDG_CONFIG_HOME: "/xdg", APPDATA: "C:\\Roaming" });
  assert.equal(resolveHome({ env: os, os: "linux" }), "/xdg/reelay");
  assert.equal(
    resolveHome({ env: fakeEnv({ HOME: "/home/ann", XDG_CONFIG_HOME: "rel" }), os: "linux" }),
    "/home/ann/.config/reelay",
  );
  assert.equal(
    resolveHome({ env: os, os: "darwin" }),
    "/home/ann/Library/Application Support/reelay",
  );
  assert.equal(resolveHome({ env: os, os: "windows" }), "C:\\Roaming\\reelay");
  assert.throws(() => resolveHome({ env: fakeEnv({}), os: "linux" }), UsageError);
  assert.throws(() => resolveHome({ env: fakeEnv({ HOME: "/h" }), os: "windows" }), UsageError);
});

Deno.test({
  name: "identity is created once, owner-only, and loaded again unchanged",
  ignore: onWindows,
  fn: () =>
    withTempHome(async (home) => {
      const first = await loadOrCreateIdentity(home);
      assert.equal(first.created, true);
      assert.equal(first.file, join(home, IDENTITY_FILE));
      assert.equal(await modeOf(home), 0o700);
      assert.equal(await modeOf(first.file), 0o600);
      const second = await loadOrCreateIdentity(home);
      assert.equal(second.created, false);
      assert.deepEqual(second.identity.public, first.identity.public);
      const entries = [];
      for await (const entry of Deno.readDir(home)) entries.push(entry.name);
      assert.deepEqual(entries, [IDENTITY_FILE]); // no temporary files left behind
    }),
});

Deno.test("two first runs racing end up with one identity", () =>
  withTempHome(async (home) => {
    const [a, b] = await Promise.all([loadOrCreateIdentity(home), loadOrCreateIdentity(home)]);
    assert.deepEqual(a.identity.public, b.identity.public);
    assert.deepEqual([a.created, b.created].sort(), [false, true]);
  }));

Deno.test("a corrupt or unreadable identity file is an error and is never replaced", () =>
  withTempHome(async (home) => {
    await Deno.mkdir(home, { recursive: true });
    const file = join(home, IDENTITY_FILE);
    const other = JSON.stringify({ ...(await Identity.generate()).toJSON(), format: "v0" });
    for (const content of ["", "{not json", "null", other]) {
      await Deno.writeTextFile(file, content);
      await rejectsWith(loadOrCreateIdentity(home), "identity-unreadable", file);
      assert.equal(await Deno.readTextFile(file), content);
    }
    await Deno.remove(file);
    await Deno.mkdir(file); // exists but cannot be read as a file
    await rejectsWith(loadOrCreateIdentity(home), "identity-unreadable", file);
  }));

Deno.test("known peers are pinned on first use and a changed key is not replaced", () =>
  withTempHome(async (home) => {
    const [bob, mallory] = [await Identity.generate(), await Identity.generate()];
    const peers = await KnownPeers.load(home);
    assert.equal(peers.get("bob"), undefined);
    assert.equal(await peers.check("bob", bob.public), "new");
    assert.equal(await peers.check("bob", bob.public), "match");
    assert.equal(await peers.check("bob", mallory.public), "changed");
    assert.equal(await peers.check("BOB", mallory.public), "changed"); // names match as on the server
    assert.deepEqual(peers.get("bob"), bob.public);

    const reloaded = await KnownPeers.load(home);
    assert.equal(await reloaded.check("bob", mallory.public), "changed");
    assert.equal(await reloaded.check("bob", bob.public), "match");
    await reloaded.trust("bob", mallory.public);
    assert.equal(await reloaded.check("bob", mallory.public), "match");
    assert.equal(await reloaded.check("__proto__", bob.public), "new");

    const third = await KnownPeers.load(home);
    assert.deepEqual(third.get("bob"), mallory.public);
    assert.deepEqual(third.get("__proto__"), bob.public);
    if (!onWindows) assert.equal(await modeOf(join(home, KNOWN_PEERS_FILE)), 0o600);
  }));

Deno.test("concurrent pins are all saved", () =>
  withTempHome(async (home) => {
    const keys = (await Identity.generate()).public;
    const peers = await KnownPeers.load(home);
    const names = Array.from({ length: 10 }, (_, i) => `peer${i}`);
    await Promise.all(names.map((name) => peers.check(name, keys)));
    const reloaded = await KnownPeers.load(home);
    for (const name of names) assert.deepEqual(reloaded.get(name), keys);
  }));

Deno.test("a corrupt known peers file is a clear error", () =>
  withTempHome(async (home) => {
    await Deno.mkdir(home, { recursive: true });
    const file = join(home, KNOWN_PEERS_FILE);
    const bad = [
      "[",
      "{}",
      '{"format":"reelay-known-peers-v1","peers":[{"name":"bob","keys":{}}]}',
    ];
    for (const content of bad) {
      await Deno.writeTextFile(file, content);
      await rejectsWith(KnownPeers.load(home), "known-peers-unreadable", file);
    }
  }));
