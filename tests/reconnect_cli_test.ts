/**
 * Reconnecting as people and scripts see it (issue 13): the real `reelay client` in a
 * pseudo-terminal keeps the half-typed line while the server restarts under it; with `--json`
 * it gives up with a `gave-up` event and exit 5 when the server does not come back.
 */
import assert from "node:assert/strict";
import { DEFAULT_RECONNECT, formatWait } from "../client/mod.ts";
import { DEFAULT_CONFIG } from "../shared/config/mod.ts";
import { EXIT_GAVE_UP } from "../shared/errors.ts";
import { joinClient, startTestServer } from "../testing/harness.ts";
import { Cli, clientArgs } from "./_procs.ts";
import { Screen } from "./_screen.ts";

/** A config file with quick reconnects; `giveUpMs` long unless given. */
async function quickConfig(dir: string, giveUpMs = 3_600_000): Promise<string> {
  const file = `${dir}/reelay.ini`;
  await Deno.writeTextFile(
    file,
    `[client]\nreconnect_min_ms = 20\nreconnect_max_ms = 200\nreconnect_give_up_ms = ${giveUpMs}\n`,
  );
  return file;
}

Deno.test("client in a terminal: the half-typed line survives a server restart and is sent after it", async () => {
  let server = await startTestServer();
  const { port, videos } = server;
  const home = await Deno.makeTempDir({ prefix: "reelay-home-alice-" });
  const config = await quickConfig(home);
  const bob = await joinClient(port, "bob", {
    reconnect: { ...DEFAULT_RECONNECT, minDelayMs: 20, maxDelayMs: 200 },
  });
  const alice = new Cli(clientArgs(port, "alice", home, ["--config", config]), {
    pty: { columns: 80, rows: 20 },
  });
  try {
    await alice.waitFor(/alice> /);
    await bob.log.waitFor("joined", (event) => event.name === "alice");
    await bob.session.send("alice", "ping");
    await alice.waitFor(/bob: ping/);
    await alice.write("/msg bob half a li");
    await alice.waitFor(/alice> \/msg bob half a li/);

    await server.close();
    await alice.waitFor(/Connection lost: .*; reconnecting (now|in [\d.]+ s) \(attempt 1\)/);
    server = await startTestServer({ videos, patch: (config) => config.server.port = port });
    await alice.waitFor(/Back: reconnected to 127\.0\.0\.1:\d+ after [\d.]+ s/);
    await alice.write("ne\r");
    await bob.log.waitFor("message", (event) => event.text === "half a line");
    await alice.write("/quit\r");
    assert.equal((await alice.exit()).code, 0, alice.stdout);

    const screen = new Screen();
    screen.feed(alice.stdout);
    const transcript = screen.lines().join("\n");
    assert.match(transcript, /^\[\d\d:\d\d\] alice → bob: half a line$/m, transcript);
    assert.doesNotMatch(transcript, /KEY CHANGED|Disconnected/, transcript);
  } finally {
    await alice.dispose();
    await bob.session.quit();
    await server.close();
    await Deno.remove(home, { recursive: true });
    await Deno.remove(videos, { recursive: true });
  }
});

Deno.test("client --json: a server that does not come back ends in a gave-up event and exit 5", async () => {
  const server = await startTestServer();
  const home = await Deno.makeTempDir({ prefix: "reelay-home-alice-" });
  const config = await quickConfig(home, 500);
  const alice = new Cli(clientArgs(server.port, "alice", home, ["--config", config, "--json"]));
  try {
    await alice.waitFor(/"event":"welcome"/);
    await server.close();
    const status = await alice.exit(60_000);
    assert.equal(status.code, EXIT_GAVE_UP, alice.stdout + alice.stderr);
    const events = alice.stdout.trim().split("\n").map((line) => JSON.parse(line));
    const names = events.map((event) => event.event);
    assert.equal(names.at(-1), "gave-up", alice.stdout);
    assert.ok(names.includes("reconnecting"));
    assert.ok(!names.includes("disconnected"), "gave-up is the last word");
    const gaveUp = events.at(-1);
    assert.equal(gaveUp.server, `127.0.0.1:${server.port}`);
    assert.ok(gaveUp.attempts >= 1, alice.stdout);
    assert.doesNotMatch(gaveUp.reason, /Gave up/, "data for scripts, not the terminal's sentence");
  } finally {
    await alice.dispose();
    await Deno.remove(home, { recursive: true });
    await Deno.remove(server.videos, { recursive: true });
  }
});

Deno.test("reelay client --help tells the exit codes, 4 and 5 for the connection", async () => {
  const help = new Cli(["client", "--help"]);
  try {
    assert.equal((await help.exit()).code, 0);
    assert.match(
      help.stdout,
      /^ {2}4 {2}client --no-reconnect: the connection to the server was lost$/m,
    );
    assert.match(help.stdout, /^ {2}5 {2}client: gave up reconnecting/m);
    // The waits it names are the config's defaults, not a copy of them.
    const client = DEFAULT_CONFIG.client;
    const waits = `waits from ${formatWait(client.reconnectMinMs)} doubling up to ` +
      `${formatWait(client.reconnectMaxMs)},\nfor up to ${formatWait(client.reconnectGiveUpMs)} `;
    assert.ok(help.stdout.includes(waits), help.stdout);
  } finally {
    await help.dispose();
  }
});
