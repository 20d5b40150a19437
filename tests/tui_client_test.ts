/**
 * The real `reelay client` as scripts and people use it: over pipes with `--json` (the events
 * and the exit code a script sees) and over a pseudo-terminal (what a person sees: Tab, the
 * status line, Up-arrow), against a real server on loopback.
 */

import assert from "node:assert/strict";
import { startTestServer } from "../testing/harness.ts";
import { Cli } from "./_procs.ts";

type Event = Record<string, unknown> & { event: string };

function events(stdout: string): Event[] {
  return stdout.split("\n").filter((line) => line.startsWith("{")).map((line) => JSON.parse(line));
}

async function home(name: string): Promise<string> {
  return await Deno.makeTempDir({ prefix: `reelay-home-${name}-` });
}

function clientArgs(port: number, name: string, home: string, extra: string[] = []): string[] {
  return [
    "client",
    ...["--server", `127.0.0.1:${port}`, "--name", name, "--home", home, "--player", "none"],
    ...extra,
  ];
}

Deno.test("client --json: /query then plain lines deliver; failed commands exit 3 naming the line", async () => {
  const server = await startTestServer();
  const homes = [await home("bob"), await home("alice")];
  const bob = new Cli(clientArgs(server.port, "bob", homes[0], ["--json"]));
  let alice: Cli | undefined;
  try {
    await bob.waitFor(/"event":"welcome"/);
    alice = new Cli(clientArgs(server.port, "alice", homes[1], ["--json"]));
    for (const line of ["/query bob", "hello bob", "/msg nobody hi", "and a second line"]) {
      await alice.writeLine(line);
    }
    await alice.closeStdin();
    await bob.waitFor(/"text":"and a second line"/);
    const status = await alice.exit();
    assert.equal(status.code, 3, `a failed command makes a --json run exit 3\n${alice.stderr}`);
    const seen = events(alice.stdout);
    assert.deepEqual(seen[0].names, ["bob"], "welcome lists who is online");
    assert.deepEqual(seen.find((event) => event.event === "conversation"), {
      event: "conversation",
      name: "bob",
    });
    const error = seen.find((event) => event.event === "error");
    assert.equal(error?.code, "unknown-recipient");
    assert.equal(error?.line, 3);
    assert.equal(error?.input, "/msg nobody hi");
    assert.deepEqual(
      events(bob.stdout).filter((event) => event.event === "message").map((event) => event.text),
      ["hello bob", "and a second line"],
    );
    await bob.closeStdin();
    assert.equal((await bob.exit()).code, 0, "no command failed: exit 0");
  } finally {
    await alice?.dispose();
    await bob.dispose();
    await server.close();
    for (const dir of [...homes, server.videos]) await Deno.remove(dir, { recursive: true });
  }
});
