/**
 * Hostile peers over real TCP against a real in-process server: half frames, half joins,
 * garbage, trickles, silence, malformed messages and oversize frames. After each, the people
 * who behave are unaffected and every socket the abuse opened is gone again.
 */

import assert from "node:assert/strict";
import type { Config } from "../shared/config/mod.ts";
import { encodeStreamFrame } from "../shared/protocol/frame.ts";
import { PROTOCOL_VERSION } from "../shared/protocol/mod.ts";
import { joinClient, type LoggedServer, startLoggedServer } from "../testing/harness.ts";
import { openSockets } from "./_procs.ts";
import {
  controlFrame,
  frameHeader,
  mulberry32,
  randomBytes,
  RawClient,
  rawIdentity,
  waitUntil,
} from "./_raw.ts";

type Joined = Awaited<ReturnType<typeof joinClient>>;

/** A server with alice and bob joined, and everything a test opens, closed at the end. */
class Scene {
  readonly server: LoggedServer;
  readonly alice: Joined;
  readonly bob: Joined;
  readonly raws: RawClient[] = [];
  /** Sockets this process had open once alice and bob were in. */
  readonly baselineSockets: number;

  private constructor(server: LoggedServer, alice: Joined, bob: Joined, sockets: number) {
    this.server = server;
    this.alice = alice;
    this.bob = bob;
    this.baselineSockets = sockets;
  }

  static async open(patch: (config: Config) => void = () => {}): Promise<Scene> {
    // Made before any raw client connects: a connection that waits on key generation would be
    // closed by the first-byte deadline on a busy machine.
    await rawIdentity();
    const server = await startLoggedServer(patch);
    const alice = await joinClient(server.port, "alice");
    const bob = await joinClient(server.port, "bob");
    await alice.log.waitFor("joined", (event) => event.name === "bob");
    return new Scene(server, alice, bob, await openSockets());
  }

  async raw(): Promise<RawClient> {
    const client = await RawClient.connect(this.server.port);
    this.raws.push(client);
    return client;
  }

  /** Alice and bob can still talk both ways. */
  async chatStillWorks(tag: string): Promise<void> {
    await this.alice.session.send("bob", `ping ${tag}`);
    await this.bob.log.waitFor("message", (event) => event.text === `ping ${tag}`);
    await this.bob.session.send("alice", `pong ${tag}`);
    await this.alice.log.waitFor("message", (event) => event.text === `pong ${tag}`);
  }

  /** Only the joined clients remain on the server, and this process's sockets are back. */
  async settled(members = 2): Promise<void> {
    for (const raw of this.raws) await raw.close();
    await waitUntil(
      () => this.server.server.connections === members && this.server.server.members === members,
      `server back to ${members} connections (has ${this.server.server.connections})`,
    );
    let sockets = -1;
    await waitUntil(
      async () => (sockets = await openSockets()) === this.baselineSockets,
      `sockets back to ${this.baselineSockets} (last seen ${sockets})`,
    );
  }

  async close(): Promise<void> {
    for (const raw of this.raws) await raw.close();
    for (const client of [this.alice, this.bob]) {
      await client.session.quit();
      await Deno.remove(client.home, { recursive: true });
    }
    await this.server.stop();
  }
}

async function withScene(
  patch: (config: Config) => void,
  body: (scene: Scene) => Promise<void>,
): Promise<void> {
  const scene = await Scene.open(patch);
  try {
    await body(scene);
  } finally {
    await scene.close();
  }
}

/** Every control message the client got, as `type:code` strings, for readable assertions. */
/** What a raw client was told, in order; directory pages (who is online) are left out. */
function codes(raw: RawClient): string[] {
  return raw.messages.filter((message) => message.type !== "directory").map((message) =>
    message.type === "error" ? `error:${message.code}` : String(message.type)
  );
}

Deno.test("a joined client killed mid-frame is removed, its name is free, others go on", async () => {
  await withScene(() => {}, async (scene) => {
    const identity = await rawIdentity();
    const mallory = await scene.raw();
    assert.equal((await mallory.join("mallory", identity)).type, "welcome");
    await scene.alice.log.waitFor("joined", (event) => event.name === "mallory");
    const frame = controlFrame({ type: "send", to: "alice", envelope: "A".repeat(4000) });
    assert.ok(await mallory.write(frame.subarray(0, frame.length / 2)));
    await mallory.close();
    await scene.alice.log.waitFor("left", (event) => event.name === "mallory");
    await scene.bob.log.waitFor("left", (event) => event.name === "mallory");
    assert.match(scene.server.lines.join("\n"), /"mallory" .* disconnected/);

    const again = await scene.raw();
    assert.equal((await again.join("Mallory", identity)).type, "welcome", "the name is free");
    await again.close();
    await scene.chatStillWorks("after mid-frame kill");
    await scene.settled();
  });
});

Deno.test("clients killed mid-join never hold a name or a slot", async () => {
  await withScene(() => {}, async (scene) => {
    const identity = await rawIdentity();
    // Half a hello, a hello header alone, and a connection that sends nothing: all then close.
    const hello = controlFrame({ type: "hello", protocol: 1, name: "mallory" });
    for (const bytes of [hello.subarray(0, hello.length - 3), hello.subarray(0, 4), undefined]) {
      const quitter = await scene.raw();
      if (bytes) assert.ok(await quitter.write(bytes));
      await quitter.close();
    }
    await waitUntil(() => scene.server.server.pending === 0, "half-joined connections gone");
    const mallory = await scene.raw();
    assert.equal((await mallory.join("mallory", identity)).type, "welcome");
    await scene.alice.log.waitFor("joined", (event) => event.name === "mallory");
    await mallory.close();
    await scene.alice.log.waitFor("left", (event) => event.name === "mallory");
    await scene.chatStillWorks("after mid-join kills");
    await scene.settled();
  });
});

Deno.test("clients sending random bytes get an error when possible and are closed", async () => {
  const seed = Number(Deno.env.get("REELAY_FUZZ_SEED") ?? Date.now()) >>> 0;
  const random = mulberry32(seed);
  // A few random headers claim a frame that never completes: the join deadline ends those. It
  // has seconds of headroom, since every raw client must finish its handshake within it.
  await withScene((config) => {
    config.limits.joinTimeoutMs = 3000;
    config.limits.maxFrameBytes = 64 * 1024;
  }, async (scene) => {
    const noisy: RawClient[] = [];
    for (let i = 0; i < 24; i++) {
      const raw = await scene.raw();
      noisy.push(raw);
      await raw.write(randomBytes(random, 1 + Math.floor(random() * 8192)));
    }
    for (const raw of noisy) {
      await raw.waitEnded();
      const seen = codes(raw);
      assert.equal(seen.length, 1, `seed ${seed}: one error then close, got ${seen}`);
      assert.match(
        seen[0],
        /^error:(frame-too-large|malformed-frame|malformed-message|unknown-message|not-joined|unexpected-frame|join-timeout)$/,
        `seed ${seed}`,
      );
    }
    await scene.chatStillWorks("after random bytes");
    await scene.settled();
  });
});

Deno.test("a client blasting garbage without pause still gets its error, then is cut off", async () => {
  await withScene((config) => config.limits.maxFrameBytes = 64 * 1024, async (scene) => {
    const random = mulberry32(7);
    const blaster = await scene.raw();
    const garbage = randomBytes(random, 64 * 1024);
    garbage.set(frameHeader(0xffff_fff0), 0);
    while (await blaster.write(garbage)) {
      if (blaster.isEnded) break;
    }
    await blaster.waitEnded();
    assert.deepEqual(codes(blaster), ["error:frame-too-large"]);
    await scene.chatStillWorks("after blaster");
    await scene.settled();
  });
});

Deno.test("a client trickling its hello a byte at a time is cut off by the join timeout", async () => {
  // Seconds of headroom: alice and bob must still join in time on a loaded machine.
  await withScene((config) => config.limits.joinTimeoutMs = 3000, async (scene) => {
    const identity = await rawIdentity();
    const { signAnnouncement, newEpoch } = await import("../shared/crypto/mod.ts");
    const hello = controlFrame({
      type: "hello",
      protocol: 1,
      ...(await signAnnouncement(identity, "trickle", newEpoch())),
    });
    const trickler = await scene.raw();
    let sent = 0;
    // The pace of an attacker, not a synchronisation: one byte every 20 ms (a hello of over 1 KiB
    // takes 20 s) never finishes in time.
    const pump = setInterval(() => {
      if (sent < hello.length && !trickler.isEnded) {
        void trickler.write(hello.subarray(sent, ++sent));
      }
    }, 20);
    try {
      await trickler.waitEnded();
    } finally {
      clearInterval(pump);
    }
    assert.ok(sent < hello.length, "the hello never completed");
    assert.deepEqual(codes(trickler), ["error:join-timeout"]);
    assert.equal(
      scene.alice.log.of("joined").filter((event) => event.name === "trickle").length,
      0,
    );
    await scene.chatStillWorks("after trickle");
    await scene.settled();
  });
});

Deno.test("a joined client trickling a frame is cut off by the idle timeout", async () => {
  // Headroom: alice and bob have 4 s to answer a ping even on a loaded machine, and the trickled
  // frame (4 KiB at a byte per 10 ms) would take 40 s to complete.
  await withScene((config) => {
    config.limits.keepaliveMs = 1000;
    config.limits.idleTimeoutMs = 5000;
  }, async (scene) => {
    const trickler = await scene.raw();
    assert.equal((await trickler.join("trickle", await rawIdentity())).type, "welcome");
    const ping = controlFrame({ type: "ping", padding: "x".repeat(4000) });
    let sent = 0;
    const pump = setInterval(() => {
      if (sent < ping.length && !trickler.isEnded) void trickler.write(ping.subarray(sent, ++sent));
    }, 10);
    try {
      await trickler.waitEnded();
    } finally {
      clearInterval(pump);
    }
    assert.ok(sent < ping.length, "the frame never completed");
    assert.deepEqual(codes(trickler).filter((code) => code !== "ping"), [
      "welcome",
      "error:idle-timeout",
    ]);
    await scene.alice.log.waitFor("left", (event) => event.name === "trickle");
    await scene.chatStillWorks("after idle trickle");
    await scene.settled();
  });
});

Deno.test("keepalive: a peer that goes silent is pinged, then removed, and others see it leave", async () => {
  await withScene((config) => {
    // Headroom: alice and bob have 4 s to answer a ping, even on a loaded machine.
    config.limits.keepaliveMs = 1000;
    config.limits.idleTimeoutMs = 5000;
  }, async (scene) => {
    const identity = await rawIdentity(); // made first: the keygen must not race the idle timer
    const silent = await scene.raw();
    assert.equal((await silent.join("silent", identity)).type, "welcome");
    await silent.waitFor((message) => message.type === "ping");
    await silent.waitForError("idle-timeout");
    await silent.waitEnded();
    const left = await scene.alice.log.waitFor("left", (event) => event.name === "silent");
    assert.equal(left.name, "silent");
    // The server pings a quiet peer at most once a keepalive (by its own clock) until it cuts it
    // off: pings before the cut-off show it waited past the keepalive, the order shows it cut.
    const heard = codes(silent).filter((code) => code === "ping" || code.startsWith("error:"));
    assert.equal(heard.at(-1), "error:idle-timeout", `heard ${heard}`);
    assert.ok(heard.filter((code) => code === "ping").length >= 2, `pinged first: ${heard}`);
    // Alice answered her pings all along, so she is still here and can talk.
    await scene.chatStillWorks("after silence");
    await scene.settled();
  });
});

Deno.test("keepalive: a quiet peer that answers pings stays past the idle timeout", async () => {
  await withScene((config) => {
    // Headroom: every peer has 3 s to answer a ping even on a loaded machine.
    config.limits.keepaliveMs = 1000;
    config.limits.idleTimeoutMs = 4000;
  }, async (scene) => {
    const identity = await rawIdentity(); // made first: the keygen must not race the idle timer
    const quiet = await scene.raw();
    quiet.answerPings = true;
    assert.equal((await quiet.join("quiet", identity)).type, "welcome");
    // Six pings answered, each more than a keepalive (1 s) after the last by the server's own
    // clock, outlast the idle timeout (4 s): still connected.
    await waitUntil(
      () =>
        quiet.messages.filter((message) => message.type === "ping").length >= 6 || quiet.isEnded,
      "six pings",
      30_000,
    );
    assert.ok(!quiet.isEnded, `still connected, got ${codes(quiet)}`);
    assert.equal(scene.server.server.members, 3);
    assert.equal(scene.alice.log.of("left").length, 0);
    await quiet.close();
    await scene.alice.log.waitFor("left", (event) => event.name === "quiet");
    await scene.settled();
  });
});

Deno.test("malformed messages get malformed-message errors; a run of them closes the connection", async () => {
  await withScene(() => {}, async (scene) => {
    const raw = await scene.raw();
    assert.equal((await raw.join("sloppy", await rawIdentity())).type, "welcome");
    const encoder = new TextEncoder();
    const { encodeFrame, KIND_CONTROL } = await import("../shared/protocol/frame.ts");
    await raw.write(encodeFrame(KIND_CONTROL, encoder.encode("{not json")));
    await raw.send({ type: "send", to: 5, envelope: "A", ref: 9 });
    await raw.send({ type: "dance" });
    await raw.send({ type: "hello", protocol: PROTOCOL_VERSION });
    await raw.send({ type: "ping" });
    await raw.waitFor((message) => message.type === "pong");
    assert.deepEqual(codes(raw).slice(1), [
      "error:malformed-message",
      "error:malformed-message",
      "error:unknown-message",
      "error:malformed-message",
      "pong",
    ]);
    // Still joined: a valid request gets its answer.
    await raw.send({ type: "send", ref: 4, to: "nobody", envelope: "A" });
    await raw.waitForError("unknown-recipient", 4);
    // More than 16 in a row: cut off.
    for (let i = 0; i < 17; i++) await raw.write(encodeFrame(KIND_CONTROL, encoder.encode("[")));
    await raw.waitEnded();
    assert.equal(codes(raw).at(-1), "error:too-many-errors");
    await scene.alice.log.waitFor("left", (event) => event.name === "sloppy");
    await scene.chatStillWorks("after malformed");
    await scene.settled();
  });
});

Deno.test("before the join, anything but a valid hello or ping is an error and a close", async () => {
  await withScene(() => {}, async (scene) => {
    const encoder = new TextEncoder();
    const { encodeFrame, KIND_CONTROL } = await import("../shared/protocol/frame.ts");
    const cases: [Uint8Array, string][] = [
      [encodeFrame(KIND_CONTROL, encoder.encode("}{")), "malformed-message"],
      [controlFrame({ type: "videos", ref: 1 }), "not-joined"],
      [controlFrame({ type: "hello", protocol: PROTOCOL_VERSION, name: "x" }), "malformed-message"],
      [encodeStreamFrame(1, 0, new Uint8Array(10)), "unexpected-frame"],
      [encodeFrame(9, new Uint8Array(3)), "unexpected-frame"],
      [frameHeader(0).subarray(0, 4), "malformed-frame"],
    ];
    for (const [bytes, code] of cases) {
      const raw = await scene.raw();
      await raw.send({ type: "ping" });
      await raw.write(bytes);
      await raw.waitEnded();
      assert.deepEqual(codes(raw), ["pong", `error:${code}`]);
    }
    const identity = await rawIdentity();
    const { signAnnouncement, newEpoch } = await import("../shared/crypto/mod.ts");
    // The proof is never reached: each case fails on the announcement first.
    const signed = { ...await signAnnouncement(identity, "honest", newEpoch()), proof: "AAAA" };
    const helloCases: [Record<string, unknown>, string][] = [
      // Version 1 carried envelopes as base64 text: its clients are refused by name.
      [{ type: "hello", protocol: 1, ...signed }, "unsupported-protocol"],
      [{ type: "hello", protocol: PROTOCOL_VERSION, ...signed, name: "forger" }, "bad-signature"],
      [{ type: "hello", protocol: PROTOCOL_VERSION, ...signed, name: "../etc" }, "bad-name"],
      [{ type: "hello", protocol: PROTOCOL_VERSION, ...signed, name: "alice" }, "bad-signature"],
      [
        {
          type: "hello",
          protocol: PROTOCOL_VERSION,
          ...signed,
          keys: { ...signed.keys, signingKey: "AAAA" },
        },
        "bad-key",
      ],
    ];
    for (const [hello, code] of helloCases) {
      const raw = await scene.raw();
      await raw.send(hello);
      await raw.waitEnded();
      assert.deepEqual(codes(raw), [`error:${code}`], JSON.stringify(hello).slice(0, 80));
    }
    // A joined client saying hello again is told so and stays.
    const twice = await scene.raw();
    assert.equal((await twice.join("twice", identity)).type, "welcome");
    await twice.send({ type: "hello", protocol: PROTOCOL_VERSION, ...signed });
    await twice.waitForError("already-joined");
    await twice.send({ type: "ping" });
    await twice.waitFor((message) => message.type === "pong");
    await scene.chatStillWorks("after bad hellos");
    await twice.close();
    await scene.settled();
  });
});

Deno.test("an oversize frame gets frame-too-large and a close, before or after the join", async () => {
  await withScene((config) => config.limits.maxFrameBytes = 64 * 1024, async (scene) => {
    for (const claimed of [64 * 1024 + 1, 2 ** 32 - 1]) {
      const early = await scene.raw();
      await early.write(frameHeader(claimed));
      await early.waitEnded();
      assert.deepEqual(codes(early), ["error:frame-too-large"]);
    }
    const joined = await scene.raw();
    assert.equal((await joined.join("big", await rawIdentity())).type, "welcome");
    const big = controlFrame({ type: "send", to: "alice", envelope: "A".repeat(64 * 1024) });
    await joined.write(big);
    await joined.waitEnded();
    assert.deepEqual(codes(joined).filter((code) => code !== "joined"), [
      "welcome",
      "error:frame-too-large",
    ]);
    await scene.alice.log.waitFor("left", (event) => event.name === "big");
    assert.equal(scene.bob.log.of("message").length, 0, "nothing of the big frame was relayed");
    await scene.chatStillWorks("after oversize");
    await scene.settled();
  });
});
