import assert from "node:assert/strict";
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

Deno.test("a player process receives the stream and is awaited", async () => {
  const sink = playerSink([[
    "ffmpeg",
    "-v",
    "error",
    "-f",
    "mpegts",
    "-i",
    "-",
    "-f",
    "null",
    "-",
  ]]);
  await sink.write(new Uint8Array(188 * 10).map((_, i) => i % 188 === 0 ? 0x47 : 0xff));
  await sink.finish();
  await sink.gone;
});

Deno.test("abort ends a player at once", async () => {
  const sink = playerSink([[
    "ffmpeg",
    "-v",
    "quiet",
    "-f",
    "mpegts",
    "-i",
    "-",
    "-f",
    "null",
    "-",
  ]]);
  await sink.abort();
  await sink.gone;
  await assert.rejects(sink.write(new Uint8Array(10)), /Player closed its input/);
});

Deno.test("a missing or disallowed player is a clear error", () => {
  assert.throws(() => playerSink([["vlc", "-"]]), (error: Error & { code?: string }) => {
    assert.ok(["player-missing", "player-not-allowed"].includes(error.code ?? ""));
    return true;
  });
});

Deno.test("the discarding sink takes anything", async () => {
  const sink = discardSink();
  await sink.write(new Uint8Array(1000));
  await sink.finish();
  await sink.abort();
});

Deno.test("a player that fails says why", async () => {
  const sink = playerSink([["ffmpeg", "-v", "error", "-i", "/nonexistent/input.ts"]]);
  await sink.gone;
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
  await sink.abort();
  await sink.gone;
  assert.match(String(await pending), /Player closed its input/);
});

Deno.test("abort after finish still ends the player at once", async () => {
  const sink = playerSink([NOT_READING]);
  const finishing = sink.finish();
  await sink.abort();
  await finishing;
});
