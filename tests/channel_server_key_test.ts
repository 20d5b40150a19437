// The server's stored identity and the client's server pins.
import assert from "node:assert/strict";
import { serverFingerprint, ServerKey, ServerPins } from "../shared/channel/mod.ts";

const posix = Deno.build.os !== "windows";

async function withTemp(run: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "reelay-channel-" });
  try {
    await run(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("the server key is created once, owner-only, and loaded unchanged after", async () => {
  await withTemp(async (dir) => {
    const file = `${dir}/state/server_key.json`;
    const first = await ServerKey.loadOrCreate(file);
    assert.equal(first.created, true);
    const text = await Deno.readTextFile(file);
    const again = await ServerKey.loadOrCreate(file);
    assert.equal(again.created, false);
    assert.deepEqual(again.key.publicKey, first.key.publicKey);
    assert.equal(again.key.fingerprint, first.key.fingerprint);
    assert.equal(await Deno.readTextFile(file), text);
    if (posix) {
      assert.equal((await Deno.stat(file)).mode! & 0o777, 0o600);
      assert.equal((await Deno.stat(`${dir}/state`)).mode! & 0o777, 0o700);
    }
    assert.deepEqual(
      [...Deno.readDirSync(`${dir}/state`)].map((entry) => entry.name),
      ["server_key.json"],
    );
  });
});

Deno.test("two first runs at once end with one key", async () => {
  await withTemp(async (dir) => {
    const file = `${dir}/server_key.json`;
    const results = await Promise.all([1, 2, 3].map(() => ServerKey.loadOrCreate(file)));
    assert.equal(results.filter((result) => result.created).length, 1);
    const loaded = await ServerKey.loadOrCreate(file);
    for (const { key } of results) assert.equal(key.fingerprint, loaded.key.fingerprint);
  });
});

Deno.test("a damaged key file is an error naming it, and is never replaced", async () => {
  await withTemp(async (dir) => {
    const file = `${dir}/server_key.json`;
    const { key } = await ServerKey.loadOrCreate(file);
    const stored = key.toJSON();
    const other = (await ServerKey.generate()).toJSON();
    const damaged = [
      "not json",
      JSON.stringify({ ...stored, format: "something-else" }),
      JSON.stringify({ ...stored, privateKey: "AAAA" }),
      JSON.stringify({ ...stored, publicKey: other.publicKey }), // not this private key's
    ];
    for (const text of damaged) {
      await Deno.writeTextFile(file, text, { mode: 0o600 });
      await assert.rejects(ServerKey.loadOrCreate(file), (error: Error & { code?: string }) => {
        assert.equal(error.code, "server-key-unreadable");
        assert.ok(error.message.includes(file), error.message);
        assert.match(error.message, /will not replace it.*Restore it from a backup/);
        return true;
      });
      assert.equal(await Deno.readTextFile(file), text);
    }
  });
});

Deno.test("a key file others can read is refused with the fix", { ignore: !posix }, async () => {
  await withTemp(async (dir) => {
    const file = `${dir}/server_key.json`;
    await ServerKey.loadOrCreate(file);
    await Deno.chmod(file, 0o644);
    await assert.rejects(ServerKey.loadOrCreate(file), (error: Error & { code?: string }) => {
      assert.equal(error.code, "state-unprotected");
      assert.ok(error.message.includes(`chmod 600 ${file}`), error.message);
      return true;
    });
  });
});

Deno.test("fingerprints are SHA256: and unpadded base64 of the key's hash", async () => {
  const key = await ServerKey.generate();
  const hash = new Uint8Array(await crypto.subtle.digest("SHA-256", key.publicKey));
  assert.equal(key.fingerprint, `SHA256:${hash.toBase64({ omitPadding: true })}`);
  assert.equal(key.fingerprint.length, 50);
  assert.equal(await serverFingerprint(key.publicKey), key.fingerprint);
});

Deno.test("pins: new, match, changed; pin keeps the first key, replace accepts a new one", async () => {
  await withTemp(async (dir) => {
    const file = `${dir}/client/server_pins.json`;
    const pins = new ServerPins(file);
    const [a, b] = [await ServerKey.generate(), await ServerKey.generate()];
    assert.equal(await pins.check("10.0.0.5:9000", a.publicKey), "new");
    await pins.pin("10.0.0.5:9000", a.publicKey);
    await pins.pin("10.0.0.5:9000", a.publicKey); // pinning the same key again is fine
    assert.equal(await pins.check("10.0.0.5:9000", a.publicKey), "match");
    assert.equal(await pins.check("10.0.0.5:9000", b.publicKey), "changed");
    assert.equal(await pins.check("10.0.0.5:9001", b.publicKey), "new"); // per address
    await assert.rejects(pins.pin("10.0.0.5:9000", b.publicKey), (error: Error) => {
      assert.ok(error.message.includes(a.fingerprint) && error.message.includes(b.fingerprint));
      return true;
    });
    assert.equal(await pins.check("10.0.0.5:9000", a.publicKey), "match");
    await pins.replace("10.0.0.5:9000", b.publicKey);
    assert.equal(await pins.check("10.0.0.5:9000", b.publicKey), "match");
    // Another instance on the same file sees the same pins.
    assert.equal(await new ServerPins(file).check("10.0.0.5:9000", b.publicKey), "match");
    if (posix) assert.equal((await Deno.stat(file)).mode! & 0o777, 0o600);
    assert.deepEqual(
      [...Deno.readDirSync(`${dir}/client`)].map((entry) => entry.name),
      ["server_pins.json"],
    );
  });
});

Deno.test("pins written at once by one client are all kept", async () => {
  await withTemp(async (dir) => {
    const pins = new ServerPins(`${dir}/server_pins.json`);
    const keys = await Promise.all(Array.from({ length: 10 }, () => ServerKey.generate()));
    await Promise.all(keys.map((key, i) => pins.pin(`host${i}:9000`, key.publicKey)));
    for (const [i, key] of keys.entries()) {
      assert.equal(await pins.check(`host${i}:9000`, key.publicKey), "match");
    }
  });
});

Deno.test("a damaged pins file is an error naming it; bad input is refused", async () => {
  await withTemp(async (dir) => {
    const file = `${dir}/server_pins.json`;
    const pins = new ServerPins(file);
    const key = await ServerKey.generate();
    for (
      const text of [
        "{",
        '{"format":"reelay-server-pins-v1","servers":[]}',
        '{"format":"reelay-server-pins-v1","servers":{"a:1":{"key":"short"}}}',
      ]
    ) {
      await Deno.writeTextFile(file, text);
      await assert.rejects(pins.check("a:1", key.publicKey), (error: Error & { code?: string }) => {
        assert.equal(error.code, "server-pins-unreadable");
        assert.ok(error.message.includes(file), error.message);
        return true;
      });
    }
    await Deno.remove(file);
    await assert.rejects(pins.pin("", key.publicKey), RangeError);
    await assert.rejects(pins.pin("a b:1", key.publicKey), RangeError);
    await assert.rejects(pins.pin("a:1", new Uint8Array(31)), RangeError);
    assert.equal(await pins.check("__proto__", key.publicKey), "new");
  });
});
