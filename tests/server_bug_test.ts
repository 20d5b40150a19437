/**
 * A bug while serving one connection (an unexpected exception, not a refusal) ends only that
 * connection: it is logged as a bug, everyone else goes on, and the server keeps serving. The
 * bug is injected through the server's own seam (the viewer factory), not a test-only branch.
 */
import assert from "node:assert/strict";
import { ReelayServer } from "../server/mod.ts";
import type { Viewer } from "../server/media/viewer.ts";
import { verifyAnnouncement } from "../shared/crypto/mod.ts";
import type { Announcement } from "../shared/protocol/messages.ts";
import { joinClient, testConfig, testServerKey } from "../testing/harness.ts";
import { RawClient, rawIdentity, waitUntil } from "./_raw.ts";

/** A viewer whose video listing throws an ordinary exception: a bug, as far as the server knows. */
function buggyViewer(): Viewer {
  return {
    list: () => {
      throw new TypeError("injected bug in list()");
    },
    play: () => Promise.resolve(),
    stop: () => Promise.resolve(),
    credit: () => {},
    pause: () => {},
    resume: () => {},
    playing: false,
    close: () => Promise.resolve(),
  };
}

Deno.test("a bug while serving one connection ends only that connection, logged as a bug", async () => {
  const videos = await Deno.makeTempDir({ prefix: "reelay-videos-bug-" });
  const lines: string[] = [];
  const server = ReelayServer.listen(testConfig(videos), {
    log: (level, message) => void lines.push(`${level}: ${message}`),
    serverKey: await testServerKey(),
    verifyAnnouncement: async (announcement: Announcement) => {
      await verifyAnnouncement(announcement);
      return true;
    },
    createViewer: () => buggyViewer(),
  });
  const alice = await joinClient(server.port, "alice");
  const bob = await joinClient(server.port, "bob");
  const raw = await RawClient.connect(server.port);
  try {
    await alice.log.waitFor("joined", (event) => event.name === "bob");
    assert.equal((await raw.join("carol", await rawIdentity())).type, "welcome");
    await alice.log.waitFor("joined", (event) => event.name === "carol");
    await raw.send({ type: "videos", ref: 1 });
    await raw.waitEnded();
    await alice.log.waitFor("left", (event) => event.name === "carol");
    assert.ok(
      lines.some((line) => /^error: Bug while serving "carol".*injected bug/.test(line)),
      lines.join("\n"),
    );
    // Everyone else goes on, and newcomers are still served.
    await alice.session.send("bob", "still here");
    await bob.log.waitFor("message", (event) => event.text === "still here");
    const dave = await joinClient(server.port, "dave");
    await alice.log.waitFor("joined", (event) => event.name === "dave");
    await dave.session.quit();
    await waitUntil(() => server.connections === 2, "only alice and bob remain");
  } finally {
    await raw.close();
    await alice.session.quit();
    await bob.session.quit();
    await server.close();
    await Deno.remove(videos, { recursive: true });
  }
});
