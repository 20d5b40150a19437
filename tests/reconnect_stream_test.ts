/**
 * A stream whose every byte arrived is not cut by a connection loss (review B0d): the player is
 * still writing the tail the client holds, which needs no server.
 */
import assert from "node:assert/strict";
import { DEFAULT_RECONNECT, type SinkFactory } from "../client/mod.ts";
import { deferred } from "../shared/async.ts";
import { joinClient } from "../testing/harness.ts";
import { within } from "./_deadline.ts";
import { clipServer } from "./_media.ts";
import { HostileProxy } from "./_proxy.ts";

Deno.test("a stream that fully arrived plays to its end through a connection loss", async () => {
  const { media, server } = await clipServer("arrived", { file: "clip.mp4", seconds: 3 });
  // The player takes nothing until the test lets it: the stream waits in the client.
  const gate = deferred<void>();
  let written = 0;
  const sinks: SinkFactory = () => ({
    write: async (chunk) => {
      await gate.promise;
      written += chunk.length;
    },
    finish: () => Promise.resolve(),
    abort: () => Promise.resolve(),
    gone: new Promise<void>(() => {}),
  });
  const endSent = deferred<void>();
  const proxy = new HostileProxy(server.port, (direction, message) => {
    if (direction === "to-client" && message.type === "stream-end") endSent.resolve();
    return [message];
  });
  const direct = { hostname: "127.0.0.1", port: server.port };
  const alice = await joinClient(proxy.port, "alice", {
    sinks,
    reconnect: { ...DEFAULT_RECONNECT, minDelayMs: 20, maxDelayMs: 200, address: () => direct },
  });
  try {
    await alice.session.play("clip.mp4");
    await within(endSent.promise, 60_000, "the whole stream to be sent");
    // Answered after the stream's end on the same connection: the client has the end.
    await alice.session.listVideos();
    await proxy.close();
    await alice.log.waitFor("reconnected");
    gate.resolve();
    const ended = await alice.log.waitFor("stream-ended");
    assert.equal(ended.reason, "complete", ended.message);
    assert.equal(written, ended.bytes, "every byte reached the player");
    assert.ok(written > 0);
  } finally {
    gate.resolve();
    await alice.session.quit();
    await server.close();
    await Deno.remove(media.dir, { recursive: true });
  }
});
