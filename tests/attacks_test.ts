/**
 * Issue 12's ten attacks, each tried against a real server over loopback and shown to fail: the
 * victim stays connected and keeps chatting, real people get in while one host misbehaves, and
 * memory stays within its budget. Hosts are told apart by address: the misbehaving host is
 * `127.0.0.1` and the people who behave come from `::1` (the server listens on `::`).
 */

import assert from "node:assert/strict";
import type { StreamSink } from "../client/player.ts";
import { runClientApp } from "../client/tui/app.ts";
import { EventFormatter } from "../client/tui/format.ts";
import type { InputEnd, LineInput } from "../client/tui/terminal.ts";
import { AsyncQueue } from "../shared/async.ts";
import { wrapText } from "../client/tui/wrap.ts";
import type { Config } from "../shared/config/mod.ts";
import { joinClient, type LoggedServer, startLoggedServer } from "../testing/harness.ts";
import { generateVideo } from "../testing/sample_video.ts";
import { within } from "./_deadline.ts";
import { Cli, startCliServer } from "./_procs.ts";
import { HostileProxy } from "./_proxy.ts";
import { RawClient, rawIdentity, waitUntil } from "./_raw.ts";

type Joined = Awaited<ReturnType<typeof joinClient>>;

/** The address people who behave come from; the misbehaving host is 127.0.0.1. */
const GOOD_HOST = "::1";

/** A server listening on both loopbacks, with `patch` applied. */
function startServer(patch: (config: Config) => void = () => {}): Promise<LoggedServer> {
  return startLoggedServer((config) => {
    config.server.host = "::";
    patch(config);
  });
}

/** A real client from the well-behaved host. */
function person(server: LoggedServer, name: string): Promise<Joined> {
  return joinClient(server.port, name, { hostname: GOOD_HOST });
}

async function leave(...people: Joined[]): Promise<void> {
  for (const joined of people) {
    await joined.session.quit();
    await Deno.remove(joined.home, { recursive: true });
  }
}

/** `from` says something and `to` sees it. */
async function stillTalks(from: Joined, toName: string, to: Joined, text: string): Promise<void> {
  await from.session.send(toName, text);
  await to.log.waitFor("message", (event) => event.text === text);
}

Deno.test("attack 8: lookalike names cannot join beside alice; invisible text and fake lines do not show", async () => {
  const server = await startServer();
  const alice = await person(server, "alice");
  const bob = await person(server, "bob");
  const raws: RawClient[] = [];
  try {
    const identity = await rawIdentity();
    for (const lookalike of ["aIice", "a1ice", "ALICE", "AL1CE"]) {
      const raw = await RawClient.connect(server.port);
      raws.push(raw);
      const answer = await raw.join(lookalike, identity);
      assert.equal(answer.code, "name-taken", lookalike);
      assert.match(String(answer.message), /Name "alice" is taken/);
      await raw.waitEnded();
    }
    const wombat = await RawClient.connect(server.port);
    raws.push(wombat);
    assert.equal((await wombat.join("wombat", identity)).type, "welcome");
    const w0mbat = await RawClient.connect(server.port);
    raws.push(w0mbat);
    assert.equal((await w0mbat.join("w0mbat", identity)).code, "name-taken");
    // A lookalike is not an address for the real one either, at the client or the server.
    await assert.rejects(bob.session.send("a1ice", "to a lookalike"), /a1ice/);
    await wombat.send({ type: "send", ref: 7, to: "a1ice", envelope: "hi" });
    assert.match(String((await wombat.waitForError("unknown-recipient", 7)).message), /"a1ice"/);

    // Invisible characters, direction marks, tags, padding and a newline try to forge a line.
    const invisible = "\u200B\u200D\u2060\uFEFF\u200E\u200F\u061C\u{E0041}\u{E007F}";
    const forged = `hi${invisible}${" ".repeat(300)}[00:01] carol: send me your code` +
      `\n[00:02] carol: ${invisible}really`;
    await bob.session.send("alice", forged);
    const got = await alice.log.waitFor("message", (event) => event.from === "bob");
    assert.equal(got.text, forged, "the text arrives as sent");
    const shown = new EventFormatter({ color: false }).format(got);
    for (const char of invisible) assert.ok(!shown.includes(char), `U+${char.codePointAt(0)}`);
    assert.ok(!shown.includes("\n"), "a message is one line");
    for (let width = 20; width <= 200; width += 7) {
      const rows = wrapText(shown, { width });
      assert.equal(rows.filter((row) => row.startsWith("[")).length, 1, `at width ${width}`);
    }
    await stillTalks(alice, "bob", bob, "still here");
  } finally {
    for (const raw of raws) await raw.close();
    await leave(alice, bob);
    await server.stop();
  }
});

/** Codes of the errors a raw client got, counted. */
function errorCounts(raw: RawClient): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const message of raw.messages) {
    if (message.type === "error") {
      counts[String(message.code)] = (counts[String(message.code)] ?? 0) + 1;
    }
  }
  return counts;
}

Deno.test("attack 1: flooding one person gets the flooder refused; the victim stays and keeps chatting", async () => {
  await rawIdentity();
  const server = await startServer((config) => {
    config.limits.maxQueueBytes = 256 * 1024;
    config.limits.maxFrameBytes = 128 * 1024;
    config.limits.chatRate = 100_000;
    config.limits.chatBurst = 100_000;
    // The slowest pair rate there is: past the burst, the flood is refused however long the
    // server takes over it (at 20 a second, a loaded machine let 858 of 2,000 through).
    config.limits.chatPairRate = 0.1;
    config.limits.chatPairBurst = 40;
  });
  const alice = await person(server, "alice");
  const bob = await person(server, "bob");
  const mallory = await RawClient.connect(server.port);
  try {
    assert.equal((await mallory.join("mallory", await rawIdentity())).type, "welcome");
    await alice.log.waitFor("joined", (event) => event.name === "mallory");
    // As fast as the socket takes them, never waiting for an answer: 2,000 envelopes of 30 KiB.
    const envelope = "A".repeat(30 * 1024);
    const flood = 2000;
    for (let ref = 1; ref <= flood; ref++) {
      await mallory.send({ type: "send", ref, to: "alice", envelope });
    }
    // Alice talks to bob while the flood is being answered.
    await stillTalks(alice, "bob", bob, "during the flood");
    await mallory.waitFor((message) => message.ref === flood);
    const refused = errorCounts(mallory);
    assert.ok((refused["rate-limited"] ?? 0) > flood / 2, JSON.stringify(refused));
    const refusal = mallory.messages.find((message) => message.code === "rate-limited");
    assert.match(String(refusal?.message), /Too many messages to "alice"/);
    // Alice was never cut off for what mallory sent, and talks both ways after it.
    assert.equal(alice.log.of("disconnected").length, 0);
    assert.equal(bob.log.of("left").length, 0);
    assert.ok(!server.lines.some((line) => line.includes("slow-consumer")));
    await stillTalks(alice, "bob", bob, "after the flood");
    await stillTalks(bob, "alice", alice, "after the flood too");
  } finally {
    await mallory.close();
    await leave(alice, bob);
    await server.stop();
  }
});

Deno.test("attack 1b: a flood within the rates but faster than the victim reads is refused as recipient-busy", async () => {
  const identity = await rawIdentity();
  const server = await startServer((config) => {
    config.limits.maxQueueBytes = 256 * 1024;
    config.limits.maxFrameBytes = 128 * 1024;
    config.limits.chatRate = 100_000;
    config.limits.chatBurst = 100_000;
  });
  const alice = await person(server, "alice");
  const victim = await RawClient.connect(server.port);
  const mallory = await RawClient.connect(server.port);
  try {
    assert.equal((await victim.join("victim", identity)).type, "welcome");
    assert.equal((await mallory.join("mallory", identity)).type, "welcome");
    // The victim's program is busy: it reads nothing for now, as a slow phone would.
    victim.stopReading();
    const envelope = "A".repeat(30 * 1024);
    let ref = 0;
    while (!mallory.messages.some((message) => message.code === "recipient-busy")) {
      ref++;
      await mallory.send({ type: "send", ref, to: "victim", envelope });
      await mallory.waitFor((message) => message.ref === ref);
      assert.ok(ref < 10_000, "mallory was never refused");
    }
    assert.equal(server.server.members, 3, "the victim is still in");
    assert.ok(!server.lines.some((line) => line.includes("slow-consumer")));
    // Someone else's notice still reaches the victim's queue without cutting it off.
    const carol = await person(server, "carol");
    assert.equal(server.server.members, 4);
    await stillTalks(carol, "alice", alice, "hello alice");
    await leave(carol);
  } finally {
    await victim.close();
    await mallory.close();
    await leave(alice);
    await server.stop();
  }
});

Deno.test("attack 1d: broadcast copies a client does not read are left out, and it is not cut off", async () => {
  const identity = await rawIdentity();
  const server = await startServer((config) => {
    onlyTheBudgetLimits(config, 64 * 1024 * 1024);
    config.limits.maxQueueBytes = 256 * 1024;
    config.chat.broadcast = true;
    // Joins may wait on a loaded machine; the deadline is not what this test is about.
    config.limits.joinTimeoutMs = 120_000;
  });
  const watcher = await RawClient.connect(server.port);
  const mallory = await RawClient.connect(server.port);
  const bob = await RawClient.connect(server.port);
  try {
    assert.equal((await watcher.join("watcher", identity)).type, "welcome");
    assert.equal((await bob.join("bob", identity)).type, "welcome");
    assert.equal((await mallory.join("mallory", identity)).type, "welcome");
    // The watcher's program hangs: the server's writes to it wait from here on (as once its
    // socket buffers are full), so every copy of what mallory sends bob would queue for it, and
    // eight times its queue's cap would cut it off.
    watcher.stopReading();
    const envelope = "A".repeat(60 * 1024);
    const count = Math.ceil((8 * 256 * 1024) / envelope.length);
    for (let ref = 1; ref <= count; ref++) {
      await mallory.send({ type: "send", ref, to: "bob", envelope });
      assert.equal((await mallory.waitFor((message) => message.ref === ref)).type, "relayed");
    }
    assert.ok(!server.lines.some((line) => line.includes("slow-consumer")), "nobody was cut off");
    assert.ok(!mallory.messages.some((message) => message.type === "left"), "nobody left");
  } finally {
    await bob.close();
    await mallory.close();
    await watcher.close();
    await server.stop();
  }
});

Deno.test("attack 1c: many senders together past one person's inbound rate are refused as recipient-busy", async () => {
  const identity = await rawIdentity();
  const server = await startServer((config) => {
    config.limits.chatInboundRate = 0.1;
    config.limits.chatInboundBurst = 3;
  });
  const raws: RawClient[] = [];
  try {
    for (const name of ["sink", "s1", "s2"]) {
      const raw = await RawClient.connect(server.port);
      raws.push(raw);
      assert.equal((await raw.join(name, identity)).type, "welcome");
    }
    const [sink, s1, s2] = raws;
    const answers: string[] = [];
    for (const [ref, sender] of [[1, s1], [2, s2], [3, s1], [4, s2]] as const) {
      await sender.send({ type: "send", ref, to: "sink", envelope: `m${ref}` });
      const answer = await sender.waitFor((message) => message.ref === ref);
      answers.push(answer.type === "error" ? String(answer.code) : String(answer.type));
    }
    assert.deepEqual(answers, ["relayed", "relayed", "relayed", "recipient-busy"]);
    const refusal = s2.messages.find((message) => message.code === "recipient-busy");
    assert.match(String(refusal?.message), /"sink" is receiving more than 0\.1 messages a second/);
    assert.equal(server.server.members, 3, "nobody was cut off");
    await sink.send({ type: "ping" });
    await sink.waitFor((message) => message.type === "pong");
  } finally {
    for (const raw of raws) await raw.close();
    await server.stop();
  }
});

Deno.test("attack 2: one host holding every joining slot and its whole share of people locks nobody else out", async () => {
  const identity = await rawIdentity();
  const server = await startServer((config) => {
    config.limits.maxPending = 16;
    config.limits.maxPendingPerHost = 8;
    config.limits.maxClients = 40;
    config.limits.maxClientsPerHost = 5;
    config.limits.joinTimeoutMs = 600_000;
  });
  const held: RawClient[] = [];
  let flooding = true;
  try {
    const join = async (name: string) => {
      const raw = await RawClient.connect(server.port);
      held.push(raw);
      return await raw.join(name, identity);
    };
    // Four people from the bad host, then idle sockets without pause, a new one as soon as one
    // is pushed out.
    for (let i = 0; i < 4; i++) assert.equal((await join(`mallory${i}`)).type, "welcome");
    const opener = (async () => {
      while (flooding) held.push(await RawClient.connect(server.port));
    })();
    await waitUntilPending(server, 8);
    // Real people from another host get in meanwhile, one after another.
    const people: Joined[] = [];
    for (const name of ["alice", "bob", "carol"]) people.push(await person(server, name));
    await stillTalks(people[0], "carol", people[2], "we got in");
    assert.ok(server.server.pendingFrom("127.0.0.1") <= 8);
    flooding = false;
    await opener;
    const pushedOut = held.filter((raw) => raw.messages.some((m) => m.code === "too-many-pending"));
    assert.ok(pushedOut.length > 0, "the host's own oldest sockets were pushed out");
    assert.ok(!people.some((joined) => joined.log.of("disconnected").length > 0));
    // Its fifth person fills its share; after that it is refused as host-full as soon as it
    // connects (before it says anything), and others are not.
    assert.equal((await join("mallory4")).type, "welcome");
    const sixth = await RawClient.connect(server.port);
    held.push(sixth);
    const refusal = await sixth.waitFor((message) => message.type === "error");
    assert.equal(refusal.code, "host-full");
    assert.match(String(refusal.message), /from 127\.0\.0\.1 \(the limit is 5 per host\)/);
    people.push(await person(server, "dave"));
    await stillTalks(people[3], "alice", people[0], "dave too");
    await leave(...people);
  } finally {
    flooding = false;
    for (const raw of held) await raw.close();
    await server.stop();
  }
});

Deno.test("attack 2b: a socket that sends nothing is closed at the first-byte deadline, long before the join timeout", async () => {
  const server = await startServer((config) => {
    config.limits.firstByteTimeoutMs = 1000;
    config.limits.joinTimeoutMs = 600_000;
  });
  const idle = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
  try {
    // Not even a handshake, so there is no channel to say why: the socket is just closed.
    const ended = await within(
      idle.read(new Uint8Array(64)).catch(() => null),
      15_000,
      "the close",
    );
    assert.equal(ended, null);
    assert.ok(
      server.lines.some((line) =>
        /sent nothing within 1000 ms: closed \(first-byte-timeout\)/.test(line)
      ),
    );
    assert.equal(server.server.pending, 0);
  } finally {
    idle.close();
    await server.stop();
  }
});

/** Waits until the misbehaving host has `count` connections joining. */
function waitUntilPending(server: LoggedServer, count: number): Promise<void> {
  return waitUntil(
    () => server.server.pendingFrom("127.0.0.1") >= count,
    `${count} connections joining from 127.0.0.1`,
  );
}

Deno.test("attack 4: peers that never read cannot take the server's memory past its queue budget, nor stop chat between others", async () => {
  const identity = await rawIdentity();
  const budget = 2 * 1024 * 1024;
  const server = await startServer((config) => {
    config.limits.maxQueueBytes = 1024 * 1024;
    config.limits.maxFrameBytes = 128 * 1024;
    config.limits.maxTotalQueueBytes = budget;
    config.limits.maxClientsPerHost = 100;
    config.limits.chatRate = 100_000;
    config.limits.chatBurst = 100_000;
    // Mallory's share of the mailbox must not be what refuses first (ten sleepers' worth).
    config.mailbox.maxBytesPerSender = 1024 * 1024 * 1024;
  });
  // Alice and bob are here first: a newcomer's notices would cut the sleepers off themselves.
  const alice = await person(server, "alice");
  const bob = await person(server, "bob");
  const sleepers: RawClient[] = [];
  const mallory = await RawClient.connect(server.port);
  try {
    assert.equal((await mallory.join("mallory", identity)).type, "welcome");
    for (let i = 0; i < 10; i++) {
      const sleeper = await RawClient.connect(server.port);
      sleepers.push(sleeper);
      assert.equal((await sleeper.join(`sleeper${i}`, identity)).type, "welcome");
      sleeper.stopReading();
    }
    // Mallory fills every sleeper's queue; past the budget it is told recipient-busy.
    const envelope = "A".repeat(30 * 1024);
    let ref = 0;
    let peak = 0;
    const budgetSpoke = () =>
      mallory.messages.some((message) =>
        /bytes queued for people who are not reading/.test(String(message.message))
      );
    // Held mail is the other bound: a sleeper's queue spills into the mailbox, which has its own.
    const mailboxSpoke = () => (errorCounts(mallory)["recipient-mailbox-full"] ?? 0) >= 100;
    while (!budgetSpoke() && !mailboxSpoke()) {
      ref++;
      await mallory.send({ type: "send", ref, to: `sleeper${ref % sleepers.length}`, envelope });
      await mallory.waitFor((message) => message.ref === ref);
      peak = Math.max(peak, server.server.queuedBytes);
      assert.ok(ref < 20_000, `never refused: ${JSON.stringify(errorCounts(mallory))}`);
    }
    const refused = errorCounts(mallory);
    assert.ok((refused["recipient-busy"] ?? 0) + (refused["recipient-mailbox-full"] ?? 0) > 0);
    assert.ok(peak <= budget + 64 * 1024, `queued ${peak} bytes against a budget of ${budget}`);
    // The last of the budget, to the byte: no message of bob's fits in what is left.
    const refusals = mallory.messages.filter((message) => message.type === "error").length;
    for (let more = 0; more < 1000; more++) {
      ref++;
      await mallory.send({
        type: "send",
        ref,
        to: `sleeper${ref % sleepers.length}`,
        envelope: "A",
      });
      if ((await mallory.waitFor((message) => message.ref === ref)).type === "error") break;
    }
    assert.ok(mallory.messages.filter((m) => m.type === "error").length > refusals);
    // Bob's message to alice, who reads, is not refused for what the sleepers hold: the largest
    // holders are cut off as slow consumers instead.
    await stillTalks(bob, "alice", alice, "memory is fine");
    assert.ok(server.lines.some((line) => /disconnected \(slow-consumer\)/.test(line)));
    assert.equal(alice.log.of("disconnected").length, 0);
    assert.equal(bob.log.of("disconnected").length, 0);
  } finally {
    for (const sleeper of sleepers) await sleeper.close();
    await mallory.close();
    await leave(alice, bob);
    await server.stop();
  }
});

/**
 * Limits under which only the server-wide queue budget can refuse: the rates, one reader's own
 * cap and the mailbox's bounds are all far above what the attacks 4b and 4c send.
 */
function onlyTheBudgetLimits(config: Config, budget: number): void {
  config.limits.maxQueueBytes = 64 * 1024 * 1024;
  config.limits.maxFrameBytes = 128 * 1024;
  config.limits.maxTotalQueueBytes = budget;
  config.limits.chatRate = 100_000;
  config.limits.chatBurst = 100_000;
  config.limits.chatPairRate = 100_000;
  config.limits.chatInboundRate = 100_000;
  // Everything relayed is held until acknowledged, and a sleeper acknowledges nothing.
  config.mailbox.maxItemsPerRecipient = 100_000;
  config.mailbox.maxBytesPerRecipient = 1024 * 1024 * 1024;
  config.mailbox.maxBytesPerSender = 1024 * 1024 * 1024;
}

Deno.test("attack 4b: past the server-wide budget, the sender is refused and the slow reader stays", async () => {
  const identity = await rawIdentity();
  const budget = 1024 * 1024;
  const server = await startServer((config) => onlyTheBudgetLimits(config, budget));
  const mallory = await RawClient.connect(server.port);
  const sleeper = await RawClient.connect(server.port);
  try {
    assert.equal((await mallory.join("mallory", identity)).type, "welcome");
    assert.equal((await sleeper.join("sleeper", identity)).type, "welcome");
    sleeper.stopReading();
    const envelope = "A".repeat(30 * 1024);
    let answer: Record<string, unknown> = {};
    let peak = 0;
    for (let ref = 1; answer.type !== "error"; ref++) {
      assert.ok(ref < 5_000, "the budget never refused a message");
      await mallory.send({ type: "send", ref, to: "sleeper", envelope });
      answer = await mallory.waitFor((message) => message.ref === ref);
      peak = Math.max(peak, server.server.queuedBytes);
    }
    assert.equal(answer.code, "recipient-busy");
    assert.match(String(answer.message), /bytes queued for people who are not reading/);
    assert.ok(peak <= budget + 64 * 1024, `queued ${peak} bytes against a budget of ${budget}`);
    // The slow reader was refused messages, not cut off: it is still in the directory.
    const bob = await person(server, "bob");
    const seen = bob.session.who();
    assert.ok(seen.some((peer) => peer.name === "sleeper"), "the slow reader is still online");
    await leave(bob);
  } finally {
    await sleeper.close();
    await mallory.close();
    await server.stop();
  }
});

Deno.test("attack 4c: a backlog of held mail feeds a slow reader only within the budget, and it stays", async () => {
  const identity = await rawIdentity();
  const budget = 1024 * 1024;
  const server = await startServer((config) => onlyTheBudgetLimits(config, budget));
  const mallory = await RawClient.connect(server.port);
  let sleeper = await RawClient.connect(server.port);
  try {
    assert.equal((await mallory.join("mallory", identity)).type, "welcome");
    assert.equal((await sleeper.join("sleeper", identity)).type, "welcome");
    await sleeper.close();
    await mallory.waitFor((message) => message.type === "left" && message.name === "sleeper");
    // Three times as much held for the sleeper as the budget takes.
    const envelope = "A".repeat(60 * 1024);
    const count = Math.ceil((3 * budget) / envelope.length);
    for (let ref = 1; ref <= count; ref++) {
      await mallory.send({ type: "send", ref, to: "sleeper", envelope });
      assert.equal((await mallory.waitFor((message) => message.ref === ref)).type, "queued");
    }
    // The sleeper comes back and reads nothing, not even its welcome: the server's writes to it
    // wait from the first on (as when its socket buffers are full), so delivering the backlog
    // fills the queue up to the budget and waits there, however the scheduler runs the server;
    // all of it at once would pass the budget and cut the sleeper off.
    sleeper = await RawClient.connect(server.port);
    sleeper.stopReading();
    await sleeper.send(await sleeper.hello("sleeper", identity));
    const full = () => server.server.queuedBytes > budget - 128 * 1024;
    const cutOff = () => server.lines.some((line) => line.includes("slow-consumer"));
    await waitUntil(() => full() || cutOff(), "the held mail to fill the queue budget");
    assert.ok(!cutOff(), server.lines.join("\n"));
    assert.ok(server.server.queuedBytes <= budget, `${server.server.queuedBytes} bytes queued`);
    const bob = await person(server, "bob");
    assert.ok(bob.session.who().some((peer) => peer.name === "sleeper"), "the sleeper stays");
    await leave(bob);
  } finally {
    await sleeper.close();
    await mallory.close();
    await server.stop();
  }
});

Deno.test("attack 3: one host re-sending play cannot take every transcode", async () => {
  const identity = await rawIdentity();
  const server = await startServer((config) => {
    config.stream.maxTranscodes = 3;
    config.stream.maxStreamsPerHost = 1;
    config.stream.heights = [144, 180, 180];
    config.stream.preset = "ultrafast";
  });
  await generateVideo(`${server.videos}/long.mp4`, {
    width: 320,
    height: 180,
    rate: "30",
    seconds: 60,
  });
  const mallories: RawClient[] = [];
  const alice = await person(server, "alice");
  try {
    await waitUntil(
      () => server.catalog.list().some((video) => video.name === "long.mp4"),
      "the catalog to list long.mp4",
      30_000,
    );
    for (let i = 0; i < 3; i++) {
      const raw = await RawClient.connect(server.port);
      mallories.push(raw);
      assert.equal((await raw.join(`mallory${i}`, identity)).type, "welcome");
    }
    // Its first stream plays (and is never read: it holds its transcode), and playing again on
    // the same connection only replaces it. Its other connections are refused.
    await mallories[0].send({ type: "play", ref: 1, video: "long.mp4" });
    await mallories[0].waitFor((message) => message.type === "stream-start");
    await mallories[0].send({ type: "play", ref: 2, video: "long.mp4" });
    await mallories[0].waitFor((message) => message.type === "stream-start" && message.ref === 2);
    for (const [i, raw] of mallories.slice(1).entries()) {
      await raw.send({ type: "play", ref: 3 + i, video: "long.mp4" });
      const refusal = await raw.waitForError("host-busy", 3 + i);
      assert.match(String(refusal.message), /already playing from 127\.0\.0\.1 .*1 per host/);
    }
    // Someone from another host still gets a transcode.
    await alice.session.play("long.mp4");
    await alice.log.waitFor("segment", () => true, 60_000);
    await alice.session.stop();
  } finally {
    for (const raw of mallories) await raw.close();
    await leave(alice);
    await server.stop();
  }
});

Deno.test("attack 9: file names cannot write to the operator's terminal or forge log lines; links out of videos/ are not served", async () => {
  const root = await Deno.makeTempDir({ prefix: "reelay-attack9-" });
  const videos = `${root}/videos`;
  await Deno.mkdir(`${videos}/sub`, { recursive: true });
  const sample = { width: 160, height: 90, rate: "10", seconds: 1 };
  await generateVideo(`${root}/secret.mp4`, sample);
  await generateVideo(`${videos}/sub/real.mp4`, sample);
  const evil = "evil\x1b]0;pwned\x07\x1b[2J\nINFO forged line\u202e.mp4";
  await Deno.writeTextFile(`${videos}/${evil}`, "not a video");
  await Deno.symlink(`${root}/secret.mp4`, `${videos}/outside.mp4`);
  await Deno.symlink(`${videos}/sub/../../secret.mp4`, `${videos}/sneaky.mp4`);
  await Deno.symlink("sub/real.mp4", `${videos}/inside.mp4`);
  const { cli, port } = await startCliServer(videos);
  let alice: Joined | undefined;
  try {
    await cli.waitFor(/Left out of the catalog: "outside\.mp4" is a link to a file outside/);
    await cli.waitFor(/"inside\.mp4" is in the catalog/);
    await cli.waitFor(/forged line/);
    alice = await joinClient(port, "alice");
    const names = (await alice.session.listVideos()).map((video) => video.name);
    assert.deepEqual(names, ["inside.mp4"]);
    await assert.rejects(alice.session.play("outside.mp4"), /not in the catalog/);
    // What reached the operator: no escape character, no line the file name started.
    const log = cli.stderr;
    // deno-lint-ignore no-control-regex -- control characters are what must not be there
    assert.ok(!/[\x00-\x08\x0b-\x1f\x7f-\x9f\u202e]/.test(log), JSON.stringify(log));
    const forged = log.split("\n").filter((line) => line.includes("forged line"));
    assert.ok(forged.length > 0);
    for (const line of forged) assert.match(line, /^\d{4}-\d\d-\d\dT\S+ WARN /, "one escaped line");
    assert.match(
      log,
      /evil\\u\{1b\}\]0;pwned\\u\{7\}\\u\{1b\}\[2J\\u\{a\}INFO forged line\\u\{202e\}\.mp4/,
    );
  } finally {
    await alice?.session.quit();
    if (alice) await Deno.remove(alice.home, { recursive: true });
    await cli.dispose();
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("attack 10: a home others may write in, or an identity others may read or own, is refused with the fix", async () => {
  const server = await startServer();
  const home = await Deno.makeTempDir({ prefix: "reelay-home-attack10-" });
  const file = `${home}/identity.json`;
  const refused = async (code: string, fix: RegExp) => {
    await assert.rejects(
      joinClient(server.port, "alice", { home, hostname: GOOD_HOST }),
      (error) => {
        assert.equal((error as { code?: string }).code, code);
        assert.match((error as Error).message, fix);
        return true;
      },
    );
    // The reelay client program says the same and exits 1.
    const cli = new Cli([
      "client",
      "--server",
      `127.0.0.1:${server.port}`,
      "--name",
      "alice",
      "--home",
      home,
    ]);
    try {
      assert.equal((await cli.exit(30_000)).code, 1, cli.stderr);
      assert.match(cli.stderr, fix);
    } finally {
      await cli.dispose();
    }
  };
  try {
    const first = await joinClient(server.port, "alice", { home, hostname: GOOD_HOST });
    await first.session.quit();
    const identity = await Deno.readTextFile(file);

    await Deno.chmod(home, 0o777);
    await refused("home-unprotected", new RegExp(`chmod 700 ${home}`));
    await Deno.chmod(home, 0o700);

    await Deno.chmod(file, 0o644);
    await refused(
      "identity-unprotected",
      new RegExp(`can be read by other users .*chmod 600 ${file}`),
    );
    await Deno.chmod(file, 0o600);

    if ((await Deno.stat(home)).uid === 0) {
      // Only root can give a file away; as root, one owned by "nobody" stands for another user.
      await Deno.chown(file, 65534, null);
      await refused(
        "identity-unprotected",
        /belongs to another user \(uid 65534, you are 0\).*chown 0/,
      );
      await Deno.chown(file, 0, null);
    }
    assert.equal(await Deno.readTextFile(file), identity, "nothing was replaced");
    const again = await joinClient(server.port, "alice", { home, hostname: GOOD_HOST });
    await again.session.quit();
  } finally {
    await Deno.remove(home, { recursive: true });
    await server.stop();
  }
});

/** A player that has hung: it takes no stream data at all. */
function stuckSink(): StreamSink {
  const never = new Promise<void>(() => {});
  return {
    write: () => never,
    finish: () => Promise.resolve(),
    abort: () => Promise.resolve(),
    gone: never,
  };
}

Deno.test("attack 6: a hostile server announcing a huge window and pushing stream data cannot grow the client's memory", async () => {
  const server = await startServer((config) => {
    config.stream.heights = [144, 180, 180];
    config.stream.preset = "ultrafast";
  });
  await generateVideo(`${server.videos}/long.mp4`, {
    width: 320,
    height: 180,
    rate: "30",
    seconds: 60,
  });
  // The hostile server claims a window of 2^53 - 1 bytes and sends every stream frame 64 times.
  const proxy = new HostileProxy(server.port, (direction, message) => {
    if (direction === "to-client" && message.type === "welcome") {
      const limits = message.limits as Record<string, unknown>;
      return [{ ...message, limits: { ...limits, windowBytes: 2 ** 53 - 1 } }];
    }
    return [message];
  });
  proxy.repeatStream = 64;
  const home = await Deno.makeTempDir({ prefix: "reelay-home-attack6-" });
  try {
    await waitUntil(
      () => server.catalog.list().some((video) => video.name === "long.mp4"),
      "the catalog to list long.mp4",
      30_000,
    );
    const alice = await joinClient(proxy.port, "alice", { home, sinks: () => stuckSink() });
    await alice.session.play("long.mp4");
    // Past twice the client's own cap (16 MiB), the client hangs up instead of buffering.
    const ended = await alice.log.waitFor("disconnected", () => true, 60_000);
    assert.equal(ended.code, "window-exceeded", ended.reason);
    assert.match(ended.reason, /more stream data than the window allows/);
    await alice.session.quit();
  } finally {
    await proxy.close();
    await Deno.remove(home, { recursive: true });
    await server.stop();
  }
});

Deno.test("attack 7: a server that never answers cannot freeze the client: requests time out, local commands run at once", async () => {
  const server = await startServer();
  // The hostile server swallows every answer to a request for the catalog.
  const proxy = new HostileProxy(
    server.port,
    (direction, message) => direction === "to-client" && message.type === "videos" ? [] : [message],
  );
  const home = await Deno.makeTempDir({ prefix: "reelay-home-attack7-" });
  const bob = await person(server, "bob");
  try {
    // Seconds of headroom: /who must answer before /videos times out, on a loaded machine too.
    const alice = await joinClient(proxy.port, "alice", { home, requestTimeoutMs: 8000 });
    assert.ok(alice.session.who().some((peer) => peer.name === "bob"));
    const request = assert.rejects(
      within(alice.session.listVideos(), 60_000, "the request to fail"),
      (error) => {
        assert.equal((error as { code?: string }).code, "request-timeout");
        assert.match((error as Error).message, /did not answer "videos" within 8 s/);
        return true;
      },
    );
    // The same at the prompt, meanwhile: /videos hangs, /who answers at once.
    const input = new QueuedLines();
    const app = runClientApp({ session: alice.session, input, color: false });
    input.push("/videos");
    input.push("/who");
    await waitUntil(
      () => input.printed.some((text) => /did not answer "videos" within 8 s/.test(text)),
      `the /videos timeout (printed: ${JSON.stringify(input.printed)})`,
      60_000,
    );
    // /who, typed after /videos, answered while /videos still waited: before its timeout line.
    const who = input.printed.findIndex((text) => /^bob\s/m.test(text));
    const timedOut = input.printed.findIndex((text) => text.includes("did not answer"));
    assert.ok(who !== -1 && who < timedOut, `/videos waits (printed: ${input.printed})`);
    await request;
    input.end();
    // The app ends the session when input ends; bob still talks to a new alice after.
    await within(app, 30_000, "the app to end");
  } finally {
    await proxy.close();
    await Deno.remove(home, { recursive: true });
    await leave(bob);
    await server.stop();
  }
});

/** Lines typed one by one, then the end of input. */
class QueuedLines implements LineInput {
  readonly #queue = new AsyncQueue<string>();
  endReason: InputEnd | undefined;
  push(line: string): void {
    this.#queue.push(line);
  }
  end(): void {
    this.endReason = "eof";
    this.#queue.end();
  }
  lines(): AsyncGenerator<string> {
    return this.#queue.drain();
  }
  readonly printed: string[] = [];
  print(text: string): void {
    this.printed.push(text);
  }
  close(): void {
    this.end();
  }
}
