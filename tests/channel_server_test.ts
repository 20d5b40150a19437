/**
 * The secure channel in the real server and client: the server's persistent key in its state
 * folder, `reelay server --fingerprint`, the client's pins per server address with a changed key
 * refused and accepted only explicitly, and handshakes that fail or stall counted and ended.
 */

import assert from "node:assert/strict";
import { knownServers } from "../client/mod.ts";
import { ServerKey } from "../shared/channel/mod.ts";
import { ReelayError } from "../shared/errors.ts";
import { joinClient, startLoggedServer, testServerKey } from "../testing/harness.ts";
import { within } from "./_deadline.ts";
import { Cli, startCliServer } from "./_procs.ts";
import { waitUntil } from "./_raw.ts";

const POSIX = Deno.build.os !== "windows";

function assertCode(error: unknown, code: string): ReelayError {
  assert.ok(error instanceof ReelayError, `expected a ReelayError, got ${error}`);
  assert.equal(error.code, code, error.message);
  return error;
}

Deno.test("reelay server keeps its key in --state (0600) and --fingerprint prints it", async () => {
  const videos = await Deno.makeTempDir({ prefix: "reelay-videos-" });
  const state = `${videos}/.state`;
  const { cli, port } = await startCliServer(videos);
  try {
    const logged = (await cli.waitFor(/Server key fingerprint (SHA256:[A-Za-z0-9+/]{43})/))[1];
    assert.ok(port > 0);
    if (POSIX) {
      assert.equal((await Deno.stat(`${state}/server_key.json`)).mode! & 0o777, 0o600);
      assert.equal((await Deno.stat(state)).mode! & 0o777, 0o700);
    }
    const printer = new Cli(["server", "--state", state, "--fingerprint"]);
    const status = await printer.exit();
    assert.equal(status.code, 0, printer.stderr);
    assert.equal(printer.stdout, `${logged}\n`);
    // A client sees the same fingerprint in its pins.
    const alice = await joinClient(port, "alice");
    const welcome = await alice.log.waitFor("welcome");
    assert.equal(welcome.serverFingerprint, logged);
    assert.equal(welcome.serverKey, "new");
    await alice.session.quit();
    await Deno.remove(alice.home, { recursive: true });
    cli.child.kill("SIGTERM");
    assert.equal((await cli.exit()).code, 0, cli.stderr);
    // The next start uses the same key.
    const again = await startCliServer(videos);
    try {
      assert.equal((await again.cli.waitFor(/Server key fingerprint (\S+)/))[1], logged);
    } finally {
      await again.cli.dispose();
    }
  } finally {
    await cli.dispose();
    await Deno.remove(videos, { recursive: true });
  }
});

Deno.test("reelay server refuses a key file others can read, naming the fix", {
  ignore: !POSIX,
}, async () => {
  const state = await Deno.makeTempDir({ prefix: "reelay-state-" });
  try {
    const first = new Cli(["server", "--state", state, "--fingerprint"]);
    assert.equal((await first.exit()).code, 0, first.stderr);
    await Deno.chmod(`${state}/server_key.json`, 0o644);
    const second = new Cli(["server", "--state", state, "--fingerprint"]);
    assert.equal((await second.exit()).code, 1);
    assert.match(second.stderr, /can be read by other users .*chmod 600/);
    assert.equal(second.stdout, "");
  } finally {
    await Deno.remove(state, { recursive: true });
  }
});

Deno.test("a client pins the server key; a changed key is refused with both fingerprints", async () => {
  const server = await startLoggedServer();
  const home = await Deno.makeTempDir({ prefix: "reelay-home-alice-" });
  try {
    const real = await testServerKey();
    const address = `127.0.0.1:${server.port}`;
    const first = await joinClient(server.port, "alice", { home });
    assert.equal((await first.log.waitFor("welcome")).serverKey, "new");
    await first.session.quit();
    const pins = knownServers(home);
    assert.equal(await pins.check(address, real.publicKey), "match");
    if (POSIX) assert.equal((await Deno.stat(pins.file)).mode! & 0o777, 0o600);
    const second = await joinClient(server.port, "alice", { home });
    assert.equal((await second.log.waitFor("welcome")).serverKey, "pinned");
    await second.session.quit();

    // The pin says another key: the server we reach now is not the one we met.
    const other = await ServerKey.generate();
    await pins.replace(address, other.publicKey);
    const refused = await joinClient(server.port, "alice", { home }).then(
      () => assert.fail("joined a server whose key changed"),
      (error) => assertCode(error, "server-key-changed"),
    );
    assert.ok(refused.message.includes(other.fingerprint), refused.message);
    assert.ok(refused.message.includes(real.fingerprint), refused.message);
    assert.match(refused.message, /--accept-server-key SHA256:/);
    assert.equal(await pins.check(address, other.publicKey), "match", "the pin is unchanged");

    // Accepting some other fingerprint is refused too; accepting the presented one works.
    await assert.rejects(
      joinClient(server.port, "alice", { home, acceptServerKey: other.fingerprint }),
      (error) => assertCode(error, "server-key-changed") !== undefined,
    );
    const accepted = await joinClient(server.port, "alice", {
      home,
      acceptServerKey: real.fingerprint,
    });
    assert.equal((await accepted.log.waitFor("welcome")).serverKey, "accepted");
    await accepted.session.quit();
    assert.equal(await pins.check(address, real.publicKey), "match");
    // No connection from the refused attempts is left on the server.
    await waitUntil(() => server.server.connections === 0, "every connection ended");
  } finally {
    await Deno.remove(home, { recursive: true });
    await server.stop();
  }
});

Deno.test("a plaintext client is told nothing and counted; a silent one ends at the join deadline", async () => {
  // The join deadline ends the silent one; the first-byte deadline is put out of its way. Seconds
  // of headroom: the plaintext client must be refused in its handshake, not by the deadline.
  const server = await startLoggedServer((config) => {
    config.limits.joinTimeoutMs = 3000;
    config.limits.firstByteTimeoutMs = 600_000;
  });
  try {
    // A protocol-2 client: its plaintext hello is not a handshake; nothing readable comes back.
    const plain = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
    await plain.write(new TextEncoder().encode('\x00\x00\x00\x10\x01{"type":"hello"}'));
    const reply = new Uint8Array(64);
    const answer = await within(plain.read(reply), 30_000, "the plaintext client to be closed");
    assert.equal(answer, null, "closed without an answer");
    plain.close();
    await waitUntil(
      () => server.lines.some((line) => /ended in the handshake: .*not speak reelay/.test(line)),
      "the server logged why",
    );

    // A connection that never starts its handshake holds a joining slot until the deadline.
    const silent = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
    await waitUntil(() => server.server.pending === 1, "the silent connection counts as joining");
    const read = await within(silent.read(reply), 30_000, "the join deadline to close it");
    assert.equal(read, null, "closed at the join deadline");
    silent.close();
    await waitUntil(() => server.server.pending === 0, "its slot is free again");
    assert.ok(server.lines.some((line) => /did not finish within \d+ ms/.test(line)));
  } finally {
    await server.stop();
  }
});
