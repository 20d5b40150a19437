/**
 * Ending cleanly, as real processes: `reelay server` on SIGTERM and SIGINT, `reelay server`
 * without ffmpeg, `reelay client` when its server vanishes or its home is broken. Every run reads
 * a config.ini of its own, never the checkout's (whatever that one says changes nothing here).
 */

import assert from "node:assert/strict";
import { EXIT_DISCONNECTED } from "../shared/errors.ts";
import { joinClient } from "../testing/harness.ts";
import { generateVideo } from "../testing/sample_video.ts";
import {
  Cli,
  clientArgs,
  mib,
  openSockets,
  reportMeasurement,
  rssBytes,
  snapshot,
  startCliServer,
  stillRunning,
} from "./_procs.ts";
import { RawClient, waitUntil } from "./_raw.ts";

async function tempDir(prefix: string): Promise<string> {
  return await Deno.makeTempDir({ prefix });
}

/**
 * A temporary folder for one run of reelay: its videos (and a server's state in `.state`, as
 * `loopbackServerArgs` has it), and its config.ini, written with `ini` (empty: the defaults).
 */
async function runFolder(ini = ""): Promise<{ dir: string; config: string }> {
  const dir = await tempDir("reelay-run-");
  const config = `${dir}/config.ini`;
  await Deno.writeTextFile(config, ini);
  return { dir, config };
}

/** `reelay server` on `host`:`port`, with the videos, state and config.ini of `folder`. */
function serverArgs(folder: { dir: string; config: string }, host: string, port: string): string[] {
  const { dir, config } = folder;
  return ["server", "--host", host, "--port", port, "--videos", dir, "--state", `${dir}/.state`]
    .concat(["--config", config]);
}

for (const signal of ["SIGTERM", "SIGINT"] as const) {
  Deno.test(`reelay server on ${signal}: clients hear server-shutdown, exit 0`, async () => {
    const { dir: videos, config } = await runFolder();
    const { cli, port } = await startCliServer(videos, ["--config", config]);
    let client: Awaited<ReturnType<typeof joinClient>> | undefined;
    try {
      client = await joinClient(port, "alice");
      // A second, raw connection that has not joined is told too.
      const raw = await RawClient.connect(port);
      await raw.send({ type: "ping" });
      await raw.waitFor((message) => message.type === "pong"); // accepted, not just queued
      cli.child.kill(signal);
      const gone = await client.log.waitFor("disconnected");
      assert.equal(gone.code, "server-shutdown");
      await raw.waitEnded();
      assert.deepEqual(raw.messages.map((message) => message.type), ["pong", "shutdown"]);
      await raw.close();
      const status = await cli.exit(15_000);
      assert.equal(status.code, 0, cli.stderr);
      assert.match(cli.stderr, new RegExp(`Received ${signal}: shutting down`));
      assert.match(cli.stderr, /Server stopped/);
      assert.doesNotMatch(cli.stderr, /ERROR|Uncaught|Bug while/);
    } finally {
      await client?.session.quit();
      if (client) await Deno.remove(client.home, { recursive: true });
      await cli.dispose();
      await Deno.remove(videos, { recursive: true });
    }
  });
}

Deno.test("reelay server with ffmpeg missing from PATH exits 1 naming the fix", async () => {
  const folder = await runFolder();
  const cli = new Cli(serverArgs(folder, "127.0.0.1", "0"), { env: { PATH: "/nonexistent" } });
  try {
    const status = await cli.exit(30_000);
    assert.equal(status.code, 1, cli.stderr);
    assert.match(cli.stderr, /reelay: Program "ffmpeg" could not be started/);
    assert.match(cli.stderr, /install ffmpeg/);
    assert.doesNotMatch(cli.stderr, /Listening on/);
  } finally {
    await cli.dispose();
    await Deno.remove(folder.dir, { recursive: true });
  }
});

Deno.test("reelay server with [stream] ffmpeg pointing nowhere exits 1 naming the program", async () => {
  const folder = await runFolder("[stream]\nffmpeg = /nonexistent/bin/ffmpeg\n");
  const cli = new Cli(serverArgs(folder, "127.0.0.1", "0"));
  try {
    const status = await cli.exit(30_000);
    assert.equal(status.code, 1, cli.stderr);
    assert.match(cli.stderr, /\/nonexistent\/bin\/ffmpeg/);
    assert.match(cli.stderr, /install ffmpeg|PATH/);
  } finally {
    await cli.dispose();
    await Deno.remove(folder.dir, { recursive: true });
  }
});

Deno.test("reelay server that cannot listen on its host exits 1 naming host and fix", async () => {
  const folder = await runFolder();
  const cli = new Cli(serverArgs(folder, "nonsense.invalid", "0"));
  try {
    const status = await cli.exit(30_000);
    assert.equal(status.code, 1, cli.stderr);
    assert.match(cli.stderr, /reelay: Cannot listen on nonsense\.invalid:0 .*--host/);
    assert.doesNotMatch(cli.stderr, /Uncaught/);
  } finally {
    await cli.dispose();
    await Deno.remove(folder.dir, { recursive: true });
  }
});

Deno.test("reelay server on a port in use exits 1 naming the port and the fix", async () => {
  const folder = await runFolder();
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = String(taken.addr.port);
  const cli = new Cli(serverArgs(folder, "127.0.0.1", port));
  try {
    const status = await cli.exit(30_000);
    assert.equal(status.code, 1, cli.stderr);
    assert.match(
      cli.stderr,
      new RegExp(`reelay: Port ${port} on 127\\.0\\.0\\.1 is in use.*--port`),
    );
    assert.doesNotMatch(cli.stderr, /Uncaught/);
  } finally {
    taken.close();
    await cli.dispose();
    await Deno.remove(folder.dir, { recursive: true });
  }
});

Deno.test("reelay server with a bad config value exits 2 naming the key and the file", async () => {
  const folder = await runFolder("[limits]\nmax_pending = lots\n");
  const cli = new Cli(serverArgs(folder, "127.0.0.1", "0"));
  try {
    const status = await cli.exit(30_000);
    assert.equal(status.code, 2, cli.stderr);
    assert.match(cli.stderr, /\[limits\] max_pending in .*reelay-run-.*\/config\.ini/);
  } finally {
    await cli.dispose();
    await Deno.remove(folder.dir, { recursive: true });
  }
});

Deno.test("reelay client --no-reconnect exits 4 with a clear message when the server vanishes mid-session", async () => {
  const { dir: videos, config } = await runFolder();
  const home = await tempDir("reelay-home-");
  const { cli: server, port } = await startCliServer(videos, ["--config", config]);
  const client = new Cli(clientArgs(port, "x", home, ["--config", config, "--no-reconnect"]));
  try {
    await client.waitFor(/Connected to 127\.0\.0\.1:\d+ as x/);
    server.child.kill("SIGKILL");
    await server.exit();
    const status = await client.exit(15_000);
    assert.equal(status.code, EXIT_DISCONNECTED, client.stdout + client.stderr);
    assert.match(client.stdout + client.stderr, /Disconnected: Server 127\.0\.0\.1:\d+ closed/);
    assert.doesNotMatch(client.stderr, /Uncaught|error: /);
  } finally {
    await client.dispose();
    await server.dispose();
    await Deno.remove(videos, { recursive: true });
    await Deno.remove(home, { recursive: true });
  }
});

Deno.test("reelay client --json --no-reconnect reports the vanished server as a disconnected event, exits 4", async () => {
  const { dir: videos, config } = await runFolder();
  const home = await tempDir("reelay-home-");
  const { cli: server, port } = await startCliServer(videos, ["--config", config]);
  const client = new Cli(
    clientArgs(port, "x", home, ["--config", config, "--json", "--no-reconnect"]),
  );
  try {
    await client.waitFor(/"event":"welcome"/);
    server.child.kill("SIGTERM");
    assert.equal((await server.exit()).code, 0);
    const status = await client.exit(15_000);
    assert.equal(status.code, EXIT_DISCONNECTED, client.stdout + client.stderr);
    const events = client.stdout.trim().split("\n").map((line) => JSON.parse(line));
    const gone = events.find((event) => event.event === "disconnected");
    assert.equal(gone?.code, "server-shutdown", client.stdout);
  } finally {
    await client.dispose();
    await server.dispose();
    await Deno.remove(videos, { recursive: true });
    await Deno.remove(home, { recursive: true });
  }
});

Deno.test("reelay client with a corrupt identity.json exits 1 and leaves the file alone", async () => {
  const home = await tempDir("reelay-home-");
  const file = `${home}/identity.json`;
  const corrupt = '{"version":1,"encryption":';
  await Deno.writeTextFile(file, corrupt, { mode: 0o600 });
  const { dir, config } = await runFolder();
  // Nothing listens on port 9: the identity is read before any connection is tried.
  const client = new Cli(clientArgs(9, "x", home, ["--config", config]));
  try {
    const status = await client.exit(30_000);
    assert.equal(status.code, 1, client.stderr);
    assert.match(client.stderr, /Identity file ".*identity\.json" is corrupt/);
    assert.match(client.stderr, /will not replace it/);
    assert.equal(await Deno.readTextFile(file), corrupt, "the identity was not regenerated");
    assert.deepEqual([...Deno.readDirSync(home)].map((entry) => entry.name), ["identity.json"]);
  } finally {
    await client.dispose();
    await Deno.remove(home, { recursive: true });
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("reelay client whose identity.json is a directory exits 1 and replaces nothing", async () => {
  const home = await tempDir("reelay-home-");
  const file = `${home}/identity.json`;
  await Deno.mkdir(file);
  const { dir, config } = await runFolder();
  const client = new Cli(clientArgs(9, "x", home, ["--config", config]));
  try {
    const status = await client.exit(30_000);
    assert.equal(status.code, 1, client.stderr);
    assert.match(client.stderr, /identity file ".*identity\.json"/i);
    assert.ok((await Deno.stat(file)).isDirectory, "still the directory, no new identity");
  } finally {
    await client.dispose();
    await Deno.remove(home, { recursive: true });
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("reelay server process: RSS and sockets come back after 500 connections", async () => {
  const { dir: videos, config } = await runFolder(
    // The 16 pending connections hold their slots for the whole burst (even on a busy machine),
    // so the rest are refused.
    // The clients all start their handshakes in this one process: their first bytes can take a
    // while on a busy machine, so the first-byte deadline is the join deadline here.
    "[server]\nhost = 127.0.0.1\n[limits]\nmax_pending = 16\njoin_timeout_ms = 5000\n" +
      "first_byte_timeout_ms = 5000\n",
  );
  const { cli, port } = await startCliServer(videos, ["--config", config]);
  const raws: RawClient[] = [];
  try {
    const pid = cli.child.pid;
    const before = await snapshot(pid);
    const opened = await Promise.allSettled(
      Array.from({ length: 500 }, () => RawClient.connect(port)),
    );
    for (const result of opened) if (result.status === "fulfilled") raws.push(result.value);
    // Pushed out while still in the handshake: closed without a word (no channel to say it in).
    const closedInHandshake = opened.filter((result) => result.status === "rejected").length;
    const during = await snapshot(pid);
    for (const raw of raws) await raw.waitEnded();
    for (const raw of raws) await raw.close();
    const baseline = before.fds.filter((fd) => fd.startsWith("socket:")).length;
    let sockets = -1;
    // At most the baseline: a socket the server had open for a moment when it was counted (its
    // start-up work) may be gone by now. Headroom: this wait ran out at 45 s once at load 12.
    await waitUntil(
      async () => (sockets = await openSockets(pid)) <= baseline,
      () => `server sockets back to ${baseline}, last seen ${sockets}`,
      120_000,
    );
    // A real client still joins and leaves normally.
    const alice = await joinClient(port, "alice");
    await alice.session.quit();
    await Deno.remove(alice.home, { recursive: true });
    const after = await rssBytes(pid);
    const refused = closedInHandshake +
      raws.filter((raw) => raw.messages[0]?.code === "too-many-pending").length;
    reportMeasurement(
      `server process RSS ${mib(before.rss)} before, ${mib(during.rss)} with 500 connections, ` +
        `${mib(after)} after; sockets ${baseline} -> ` +
        `${during.fds.filter((fd) => fd.startsWith("socket:")).length} -> ${sockets}; ` +
        `${refused} refused with too-many-pending`,
    );
    assert.ok(refused >= 400, `${refused} refused`);
    assert.ok(after - before.rss < 64 * 1024 * 1024, "memory came back within 64 MiB");
    cli.child.kill("SIGTERM");
    assert.equal((await cli.exit()).code, 0, cli.stderr);
    assert.doesNotMatch(cli.stderr, /ERROR/);
  } finally {
    for (const raw of raws) await raw.close();
    await cli.dispose();
    await Deno.remove(videos, { recursive: true });
  }
});

Deno.test("reelay server on SIGTERM mid-stream kills and reaps every ffmpeg it started", async () => {
  const { dir: videos, config } = await runFolder();
  await generateVideo(`${videos}/long.mp4`, {
    width: 320,
    height: 180,
    rate: "25",
    seconds: 30,
    audioRate: 48000,
  });
  const { cli, port } = await startCliServer(videos, ["--config", config]);
  let client: Awaited<ReturnType<typeof joinClient>> | undefined;
  try {
    client = await joinClient(port, "viewer");
    await client.session.play("long.mp4");
    let ffmpeg: number[] = [];
    await waitUntil(async () => {
      ffmpeg = (await snapshot(cli.child.pid)).children
        .filter((child) => child.comm === "ffmpeg")
        .map((child) => child.pid);
      return ffmpeg.length > 0;
    }, "the server runs ffmpeg for the stream");
    cli.child.kill("SIGTERM");
    const gone = await client.log.waitFor("disconnected");
    assert.equal(gone.code, "server-shutdown");
    assert.equal((await cli.exit(15_000)).code, 0, cli.stderr);
    assert.deepEqual(await stillRunning(ffmpeg), [], "no ffmpeg outlived the server");
  } finally {
    await client?.session.quit();
    if (client) await Deno.remove(client.home, { recursive: true });
    await cli.dispose();
    await Deno.remove(videos, { recursive: true });
  }
});
