/**
 * A bug while serving one connection (an unexpected exception, not a refusal) ends only that
 * connection: it is logged as a bug, everyone else goes on, and the server keeps serving. The
 * bug is injected through the server's own seam (the viewer factory), not a test-only branch.
 */
import assert from "node:assert/strict";
import { ReelayServer } from "../server/mod.ts";
import type { Store } from "../server/store/mod.ts";
import { openSqliteStore } from "../server/store/sqlite.ts";
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

/** What a server needs, with its log kept in `lines` and every viewer buggy. */
async function depsLoggingTo(
  lines: string[],
  store: Store,
): Promise<Parameters<typeof ReelayServer.listen>[1]> {
  return {
    log: (level, message) => void lines.push(`${level}: ${message}`),
    store,
    serverKey: await testServerKey(),
    verifyAnnouncement: async (announcement: Announcement) => {
      await verifyAnnouncement(announcement);
      return true;
    },
    createViewer: () => buggyViewer(),
  };
}

Deno.test("a bug while serving one connection ends only that connection, logged as a bug", async () => {
  const videos = await Deno.makeTempDir({ prefix: "reelay-videos-bug-" });
  const lines: string[] = [];
  await using store = await openSqliteStore(":memory:");
  const server = ReelayServer.listen(testConfig(videos), await depsLoggingTo(lines, store));
  // Made before carol connects: her join must not wait on key generation past the join deadline.
  const identity = await rawIdentity();
  const alice = await joinClient(server.port, "alice");
  const bob = await joinClient(server.port, "bob");
  let raw: RawClient | undefined;
  try {
    await alice.log.waitFor("joined", (event) => event.name === "bob");
    raw = await RawClient.connect(server.port);
    assert.equal((await raw.join("carol", identity)).type, "welcome");
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
    await raw?.close();
    await alice.session.quit();
    await bob.session.quit();
    await server.close();
    await Deno.remove(videos, { recursive: true });
  }
});

/**
 * A listener whose first `failures` accepts fail as they do when the process is out of file
 * descriptors; then it accepts as usual. Each failure sets a probe timer of half the server's
 * retry pause (100 ms); `retriedBeforeProbe` counts the accepts that came before the last
 * failure's probe fired. Timers fire in the order of their deadlines however late a loaded
 * machine runs them, so a server that waits its pause always lets the probe fire first, and one
 * that retries at once never does.
 */
function failingListener(failures: number) {
  const real = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const probes: ReturnType<typeof setTimeout>[] = [];
  let failed = 0;
  let probeFired = true;
  let retriedBeforeProbe = 0;
  const accept = () => {
    if (!probeFired) retriedBeforeProbe++;
    if (failed === failures) return real.accept();
    failed++;
    probeFired = false;
    probes.push(setTimeout(() => probeFired = true, 50));
    return Promise.reject(new Error("Too many open files (os error 24)"));
  };
  const listener = new Proxy(real, {
    get(target, property) {
      if (property === "accept") return accept;
      const value = Reflect.get(target, property, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  return {
    listener,
    failed: () => failed,
    retriedBeforeProbe: () => retriedBeforeProbe,
    /** Clears the probes still pending (only a server that never paused leaves any). */
    clearProbes: () => probes.forEach(clearTimeout),
  };
}

Deno.test("a failing accept is logged and retried after a pause, never in a spin", async () => {
  const videos = await Deno.makeTempDir({ prefix: "reelay-videos-accept-" });
  const lines: string[] = [];
  await using store = await openSqliteStore(":memory:");
  const failing = failingListener(5);
  const server = ReelayServer.listen(
    testConfig(videos),
    await depsLoggingTo(lines, store),
    failing.listener,
  );
  try {
    // Once the failures are over, people join as usual.
    const alice = await joinClient(server.port, "alice");
    await alice.session.quit();
    assert.equal(failing.failed(), 5);
    const failed = lines.filter((line) =>
      /^error: Accept failed: .*Too many open files/.test(line)
    );
    assert.equal(failed.length, 5, lines.join("\n"));
    // Each retry waited its pause: the probe set at each failure fired before the next accept.
    assert.equal(failing.retriedBeforeProbe(), 0, "accepts retried before half the pause");
  } finally {
    failing.clearProbes();
    await server.close();
    await Deno.remove(videos, { recursive: true });
  }
});
