/**
 * The piped client as a user runs it: `printf ... | reelay client --json --player none`, as a
 * real child process (main.ts, the binary's permissions) against a real server. At end of input
 * it must finish what is in flight (a message, a whole stream), then exit 0.
 */
import assert from "node:assert/strict";
import { joinClient } from "../testing/harness.ts";
import { processesMentioning } from "../testing/processes.ts";
import { clipServer } from "./_media.ts";
import { Cli, clientArgs } from "./_procs.ts";
import { waitUntil } from "./_raw.ts";

Deno.test("printf ... | reelay client --json --player none finishes what is in flight, exits 0", async () => {
  const { media, server } = await clipServer("piped", { file: "clip.mp4", seconds: 3 });
  const home = await Deno.makeTempDir({ prefix: "reelay-home-piped-" });
  const bob = await joinClient(server.port, "bob");
  const client = new Cli(clientArgs(server.port, "alice", home, ["--json"]));
  try {
    // All input at once, then end of input: what printf into a pipe does.
    await client.write("/msg bob hello from a pipe\n/play clip.mp4\n/who\n");
    await client.closeStdin();
    const status = await client.exit(120_000);
    assert.equal(status.code, 0, `stdout: ${client.stdout}\nstderr: ${client.stderr}`);
    const events = client.stdout.split("\n").filter((line) => line !== "").map((line) =>
      JSON.parse(line)
    );
    const sent = events.find((event) => event.event === "sent");
    assert.equal(sent?.to, "bob");
    const ended = events.find((event) => event.event === "stream-ended");
    assert.equal(ended?.reason, "complete", "the stream ran to its end before the exit");
    assert.ok(ended.bytes > 0);
    const who = events.find((event) => event.event === "who");
    assert.ok(who, "the command after /play ran too");
    const message = await bob.log.waitFor("message");
    assert.equal(message.text, "hello from a pipe");
    await bob.log.waitFor("left", (event) => event.name === "alice");
  } finally {
    await client.dispose();
    await bob.session.quit();
    await server.close();
    await Deno.remove(home, { recursive: true });
  }
  await waitUntil(
    async () => (await processesMentioning(media.marker)).length === 0,
    "no ffmpeg left",
    30_000,
  );
});
