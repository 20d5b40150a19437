import assert from "node:assert/strict";
import { join } from "node:path";
import { ReelayError, UsageError } from "../shared/errors.ts";
import { Identity } from "../shared/crypto/mod.ts";
import { IDENTITY_FILE, loadOrCreateIdentity, resolveHome } from "../client/keystore.ts";

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
      await Deno.writeTextFile(file, content, { mode: 0o600 });
      await rejectsWith(loadOrCreateIdentity(home), "identity-unreadable", file);
      assert.equal(await Deno.readTextFile(file), content);
    }
    await Deno.remove(file);
    await Deno.mkdir(file); // exists but cannot be read as a file
    await rejectsWith(loadOrCreateIdentity(home), "identity-unreadable", file);
  }));
