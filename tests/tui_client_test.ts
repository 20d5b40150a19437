/**
 * The real `reelay client` as scripts and people use it: over pipes with `--json` (the events
 * and the exit code a script sees) and over a pseudo-terminal (what a person sees: Tab, the
 * status line, Up-arrow), against a real server on loopback.
 */

import assert from "node:assert/strict";
import { joinClient, startTestServer } from "../testing/harness.ts";
import { generateVideo } from "../testing/sample_video.ts";
import { Cli, clientArgs } from "./_procs.ts";
import { Screen } from "./_screen.ts";

type Event = Record<string, unknown> & { event: string };

function events(stdout: string): Event[] {
  return stdout.split("\n").filter((line) => line.startsWith("{")).map((line) => JSON.parse(line));
}

async function home(name: string): Promise<string> {
  return await Deno.makeTempDir({ prefix: `reelay-home-${name}-` });
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

Deno.test("client in a terminal: Tab completes a name and a video, a two-minute stream adds a handful of lines, Up-arrow recalls", async () => {
  const videos = await Deno.makeTempDir({ prefix: "reelay-videos-" });
  await generateVideo(`${videos}/test.mp4`, { width: 64, height: 36, rate: "5", seconds: 120 });
  const server = await startTestServer({
    videos,
    patch: (config) => config.stream.preset = "ultrafast",
  });
  const homes = [await home("bob"), await home("alice")];
  const bob = new Cli(clientArgs(server.port, "bob", homes[0], ["--json"]));
  let alice: Cli | undefined;
  try {
    await bob.waitFor(/"event":"welcome"/);
    alice = new Cli(clientArgs(server.port, "alice", homes[1]), { pty: { columns: 60, rows: 20 } });
    await alice.waitFor(/alice> /);
    await bob.waitFor(/"event":"joined","name":"alice"/); // bob knows alice before writing
    await bob.writeLine("/msg alice ping");
    await alice.waitFor(/bob: ping/);
    await alice.write("/msg b\t");
    await alice.waitFor(/alice> \/msg bob \r/);
    await alice.write("hi from a terminal\r");
    await bob.waitFor(/"text":"hi from a terminal"/);
    await alice.waitFor(/bob received it/); // the receipt's line comes before the stream's
    await alice.write("/videos\r");
    await alice.waitFor(/test\.mp4 +2:00/);
    await alice.write("/play TE\t");
    await alice.waitFor(/alice> \/play test\.mp4\r/);
    await alice.write("\r");
    await alice.waitFor(/playing test\.mp4, part \d\/3, 36p, \d:\d\d \/ 2:00/);
    await alice.waitFor(/test\.mp4 finished/, 120_000);
    const mark = alice.stdout.length;
    await alice.write("\x1b[A");
    await alice.waitFor(/alice> \/play test\.mp4\r/, 30_000, mark);
    await alice.write("\x15/quit\r");
    assert.equal((await alice.exit()).code, 0, alice.stdout);

    const screen = new Screen();
    screen.feed(alice.stdout);
    const all = screen.lines(); // Deno may warn first (a player missing from PATH): not ours
    const lines = all.slice(all.findIndex((line) => line.startsWith("Connected to")));
    const transcript = lines.join("\n");
    assert.ok(lines.length > 10 && lines.every((line) => line.length < 60), transcript);
    assert.equal(screen.bells, 1, "the message to alice rang the bell, nothing else did");
    assert.match(transcript, /^\[\d\d:\d\d\] alice → bob: hi from a terminal$/m, "own line, timed");
    assert.doesNotMatch(transcript, /alice> hi from a terminal/, "a chat line is not echoed twice");
    const start = lines.indexOf("alice> /play test.mp4");
    const end = lines.findIndex((line) => line.includes("test.mp4 finished"));
    assert.ok(start >= 0 && end > start, transcript);
    assert.ok(end - start <= 6, `a two-minute stream added ${end - start} lines:\n${transcript}`);
    assert.doesNotMatch(transcript, /\d:\d\d \/ 2:00/, "no progress line stayed in the transcript");
  } finally {
    await alice?.dispose();
    await bob.dispose();
    await server.close();
    for (const dir of [...homes, videos]) await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("client in a terminal: asks a name once; keeps commands, never message text, for Up-arrow and Ctrl-R next time", async () => {
  const server = await startTestServer();
  const dir = await home("carol");
  const args = [
    "client",
    "--server",
    `127.0.0.1:${server.port}`,
    "--home",
    dir,
    "--player",
    "none",
  ];
  const options = { pty: { columns: 80, rows: 24 }, env: { USER: "carol" } };
  let run: Cli | undefined;
  try {
    run = new Cli(args, options);
    await run.waitFor(/Enter your name \[carol\]: /);
    await run.write("\r");
    await run.waitFor(/carol> /);
    await run.write("/videos\r");
    await run.waitFor(/No videos on the server/);
    await run.write("/msg nobody my secret words\r");
    await run.waitFor(/Nobody called/);
    await run.write("/quit\r");
    assert.equal((await run.exit()).code, 0, run.stdout);
    assert.equal(await Deno.readTextFile(`${dir}/name`), "carol\n");
    assert.equal((await Deno.stat(`${dir}/input_history`)).mode! & 0o777, 0o600);
    assert.equal(await Deno.readTextFile(`${dir}/input_history`), "/videos\n/quit\n");

    run = new Cli(args, options);
    await run.waitFor(/carol> /);
    let mark = run.stdout.length;
    await run.write("\x1b[A\x1b[A");
    await run.waitFor(/carol> \/videos\r/, 30_000, mark);
    mark = run.stdout.length;
    await run.write("\x15\x12vid");
    await run.waitFor(/\(search\) 'vid': \/videos\r/, 30_000, mark);
    mark = run.stdout.length;
    await run.write("\r");
    await run.waitFor(/No videos on the server/, 30_000, mark);
    await run.write("/forget-input\r");
    await run.waitFor(/Typed lines forgotten/);
    await run.write("/quit\r");
    assert.equal((await run.exit()).code, 0, run.stdout);
    assert.doesNotMatch(run.stdout, /Enter your name/, "the name was kept");
    assert.equal(await Deno.readTextFile(`${dir}/input_history`), "/quit\n", "older lines went");
  } finally {
    await run?.dispose();
    await server.close();
    for (const path of [dir, server.videos]) await Deno.remove(path, { recursive: true });
  }
});

Deno.test("client --json: /ignore lasts across runs and drops that person's messages", async () => {
  const server = await startTestServer();
  const dir = await home("alice");
  const bob = await joinClient(server.port, "bob");
  const dave = await joinClient(server.port, "dave");
  let alice = new Cli(clientArgs(server.port, "alice", dir, ["--json"]));
  try {
    await alice.writeLine("/ignore Bob");
    await alice.closeStdin();
    assert.equal((await alice.exit()).code, 0, alice.stderr);
    assert.deepEqual(events(alice.stdout).at(-1), { event: "ignored", names: ["bob"] });

    alice = new Cli(clientArgs(server.port, "alice", dir, ["--json"]));
    await alice.waitFor(/"event":"welcome"/);
    for (const { log } of [bob, dave]) {
      const joins = () => log.of("joined").filter((event) => event.name === "alice").length;
      await log.waitFor("joined", () => joins() === 2); // both know the second alice
    }
    await bob.session.send("alice", "dropped");
    await dave.session.send("alice", "marker"); // relayed to alice after bob's
    await alice.waitFor(/"text":"marker"/);
    assert.doesNotMatch(alice.stdout, /dropped/);
    await alice.closeStdin();
    assert.equal((await alice.exit()).code, 0, alice.stderr);
  } finally {
    await alice.dispose();
    for (const client of [bob, dave]) {
      await client.session.quit();
      await Deno.remove(client.home, { recursive: true });
    }
    await server.close();
    for (const path of [dir, server.videos]) await Deno.remove(path, { recursive: true });
  }
});
