import assert from "node:assert/strict";
import { within } from "./_deadline.ts";
import { discardSink, playerSink, resolvePlayer } from "../client/player.ts";

Deno.test("auto plays in a window only when there is a display", () => {
  if (Deno.build.os === "linux") assert.deepEqual(resolvePlayer("auto", {}), []);
  const withDisplay = resolvePlayer("auto", { DISPLAY: ":0" });
  assert.deepEqual(withDisplay.map(([program]) => program), ["ffplay", "mpv"]);
  assert.ok(withDisplay[0].includes("-"), "ffplay reads stdin");
});

Deno.test("ffplay and mpv read stdin around options of one's own; others run as given", () => {
  assert.deepEqual(resolvePlayer("none", { DISPLAY: ":0" }), []);
  assert.equal(resolvePlayer("mpv", {})[0].at(-1), "-");
  const [mpv] = resolvePlayer("  mpv   --fs ", {});
  assert.deepEqual(mpv.slice(-2), ["--fs", "-"], "own options come before reading stdin");
  const [ffplay] = resolvePlayer("ffplay -fs", {});
  assert.deepEqual(ffplay.slice(-3), ["720", "-i", "-"]);
  assert.ok(ffplay.includes("-fs"));
  assert.deepEqual(resolvePlayer("vlc -", {}), [["vlc", "-"]]);
  assert.throws(() => resolvePlayer("   ", {}), /is empty/);
});

/** A "player" that counts the bytes on its stdin and writes the count to the file it is given. */
function countingPlayer(file: string): string[] {
  const code = "let n = 0; for await (const c of Deno.stdin.readable) n += c.length; " +
    "Deno.writeTextFileSync(Deno.args[0], String(n));";
  return ["deno", "eval", "--quiet", code, file];
}

Deno.test("a player process receives the whole stream and finish waits for it to exit", async () => {
  const dir = await Deno.makeTempDir({ prefix: "reelay-player-" });
  try {
    const counted = `${dir}/count`;
    const sink = playerSink([countingPlayer(counted)]);
    await within(sink.write(new Uint8Array(100_000)), 30_000, "the first write");
    await within(sink.write(new Uint8Array(23)), 30_000, "the second write");
    await within(sink.finish(), 30_000, "the player to finish");
    // finish resolved only after the player exited, so its count is on disk now.
    assert.equal(await Deno.readTextFile(counted), "100023");
    assert.equal(sink.failure, undefined);
    await within(sink.gone, 30_000, "gone after the player exited");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("abort ends a player that is still reading, without waiting for its input", async () => {
  const dir = await Deno.makeTempDir({ prefix: "reelay-player-" });
  try {
    const counted = `${dir}/count`;
    const sink = playerSink([countingPlayer(counted)]);
    await within(sink.write(new Uint8Array(10)), 30_000, "a write");
    // The player would run until its input closes; abort must end it, not wait for that.
    await within(sink.abort(), 30_000, "abort to end the player");
    await within(sink.gone, 30_000, "gone after abort");
    await assert.rejects(sink.write(new Uint8Array(10)), /Player closed its input/);
    // Killed, not ended normally: it never got to write its count.
    await assert.rejects(Deno.stat(counted), Deno.errors.NotFound);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a missing or disallowed player is a clear error", () => {
  assert.throws(() => playerSink([["vlc", "-"]]), (error: Error & { code?: string }) => {
    assert.ok(["player-missing", "player-not-allowed"].includes(error.code ?? ""));
    return true;
  });
});

Deno.test("the discarding sink takes anything and never goes away by itself", async () => {
  const sink = discardSink();
  let gone = false;
  sink.gone.then(() => gone = true);
  await within(sink.write(new Uint8Array(1000)), 5_000, "a write");
  await within(sink.finish(), 5_000, "finish");
  await within(sink.abort(), 5_000, "abort");
  assert.equal(sink.failure, undefined);
  assert.equal(gone, false, "a sink with no player is never gone");
});

Deno.test("a player that fails says why", async () => {
  const sink = playerSink([["ffmpeg", "-v", "error", "-i", "/nonexistent/input.ts"]]);
  await within(sink.gone, 30_000, "the failing player to exit");
  assert.match(sink.failure ?? "", /No such file or directory/);
  await sink.abort();
});

/** A "player" that never reads its input (it plays a tone it makes itself, in real time). */
const NOT_READING = [
  "ffmpeg",
  "-nostdin",
  "-v",
  "quiet",
  "-re",
  "-f",
  "lavfi",
  "-i",
  "sine",
  "-f",
  "null",
  "-",
];

Deno.test("abort ends a player that stopped reading, even with writes pending", async () => {
  const sink = playerSink([NOT_READING]);
  const pending = sink.write(new Uint8Array(4 * 1024 * 1024)).catch((error) => error);
  await within(sink.abort(), 30_000, "abort to end the player");
  await within(sink.gone, 30_000, "gone after abort");
  assert.match(String(await within(pending, 30_000, "the pending write")), /Player closed/);
});

Deno.test("abort after finish still ends the player at once", async () => {
  const sink = playerSink([NOT_READING]);
  let exited = false;
  sink.gone.then(() => exited = true);
  const finishing = sink.finish();
  // This player never exits by itself, so finish alone would wait forever: abort must end it.
  await within(sink.abort(), 30_000, "abort to end the player");
  await within(finishing, 30_000, "finish to resolve once the player is gone");
  await within(sink.gone, 30_000, "gone");
  assert.ok(exited);
  assert.equal(sink.failure, undefined, "an aborted player is not a failure");
});
