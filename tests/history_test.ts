/**
 * Message history as a person meets it: the real `reelay client` (main.ts, as a child process)
 * against a real server on loopback, restarted between runs, with bob as an in-process client.
 * The thief reads the store's file without the identity and finds nothing that was said.
 */
import assert from "node:assert/strict";
import { containsBytes } from "./_bytes.ts";
import { historyCiphertexts } from "./_thief.ts";
import type { ClientEvent } from "../client/events.ts";
import { serverStoreId } from "../client/server_store.ts";
import { ClientStore } from "../client/store/mod.ts";
import { Identity } from "../shared/crypto/mod.ts";
import { ReelayError } from "../shared/errors.ts";
import { joinClient, startTestServer, testServerKey } from "../testing/harness.ts";
import { Cli, clientArgs } from "./_procs.ts";

/** The folder of the test server key's client store. */
const testStoreId = async () => serverStoreId((await testServerKey()).fingerprint);

type Joined = Awaited<ReturnType<typeof joinClient>>;

/** One run of `reelay client` as alice; `during` acts while it runs, then input ends. */
async function runAlice(
  port: number,
  home: string,
  lines: string[],
  options: {
    json?: boolean;
    flags?: string[];
    /** The exit code expected (0; 3 in `--json` when a command failed). */
    code?: number;
    during?: (cli: Cli) => Promise<void>;
  } = {},
): Promise<string> {
  const json = options.json ?? true;
  const cli = new Cli(
    clientArgs(port, "alice", home, [...(json ? ["--json"] : []), ...(options.flags ?? [])]),
  );
  try {
    await cli.waitFor(json ? /"event":"welcome"/ : /Connected to/);
    await options.during?.(cli);
    for (const line of lines) await cli.writeLine(line);
    await cli.closeStdin();
    const status = await cli.exit(60_000);
    assert.equal(status.code, options.code ?? 0, `stdout: ${cli.stdout}\nstderr: ${cli.stderr}`);
    return cli.stdout;
  } finally {
    await cli.dispose();
  }
}

function events(stdout: string): ClientEvent[] {
  return stdout.split("\n").filter((line) => line !== "").map((line) => JSON.parse(line));
}

function historyEvents(stdout: string): Extract<ClientEvent, { event: "history" }>[] {
  return events(stdout).filter((event) => event.event === "history") as Extract<
    ClientEvent,
    { event: "history" }
  >[];
}

/** A server, bob in-process, and alice's home; everything is ended after `test`. */
async function withPeople(
  test: (port: number, home: string, bob: Joined) => Promise<void>,
): Promise<void> {
  const server = await startTestServer();
  const home = await Deno.makeTempDir({ prefix: "reelay-home-history-" });
  const bob = await joinClient(server.port, "bob");
  try {
    await test(server.port, home, bob);
  } finally {
    await bob.session.quit();
    await server.close();
    await Deno.remove(home, { recursive: true });
    await Deno.remove(bob.home, { recursive: true });
  }
}

const SAID = "hello bob, the door code is 4711";
const ANSWER = "hi alice, noted the code";

Deno.test("history: kept across restarts, shown by /history and /query, unreadable without the identity, gone after /history clear", async () => {
  await withPeople(async (port, home, bob) => {
    const first = await runAlice(port, home, [], {
      during: async (cli) => {
        await cli.writeLine(`/msg bob ${SAID}`);
        await bob.log.waitFor("message", (event) => event.text === SAID);
        await bob.session.send("alice", ANSWER);
        await cli.waitFor(/"event":"message"/);
        await cli.waitFor(/"event":"delivered"/);
      },
    });

    // The thief: the store's file, without identity.json.
    const file = ClientStore.path(home, await testStoreId());
    const raw = await Deno.readFile(file);
    for (const text of [SAID, ANSWER, "4711", "door code"]) {
      assert.equal(new TextDecoder("latin1").decode(raw).includes(text), false, text);
    }
    const sealed = historyCiphertexts(file);
    assert.equal(sealed.length, 2);
    const stranger = await ClientStore.open({
      home,
      server: await testStoreId(),
      identity: await Identity.generate(),
    });
    await assert.rejects(stranger.history(undefined, 10), (error: unknown) => {
      assert.ok(error instanceof ReelayError && error.code === "client-store-foreign");
      return true;
    });
    stranger.close();

    const [withBob, lastOne] = historyEvents(
      await runAlice(port, home, ["/history bob", "/history 1"]),
    );
    assert.equal(withBob.name, "bob");
    assert.deepEqual(
      withBob.entries.map(({ peer, direction, text, status }) => ({
        peer,
        direction,
        text,
        status,
      })),
      [
        { peer: "bob", direction: "out", text: SAID, status: "delivered" },
        { peer: "bob", direction: "in", text: ANSWER, status: "received" },
      ],
    );
    assert.ok(withBob.entries.every((entry) => entry.at > Date.now() - 3_600_000));
    const received = events(first).find((event) => event.event === "message");
    assert.equal(withBob.entries[1].at, received?.event === "message" ? received.sentAt : NaN);
    assert.deepEqual(lastOne.entries.map((entry) => entry.text), [ANSWER]);
    assert.equal(lastOne.name, undefined, "no conversation open: everyone's");

    const screen = await runAlice(port, home, ["/query bob"], { json: false });
    const shown = screen.split("\n");
    const title = shown.findIndex((line) => line === "── earlier with bob (history) ──");
    assert.ok(title > 0, screen);
    assert.match(shown[title + 1], new RegExp(`^│ \\[[^\\]]+\\] alice → bob: ${SAID} ✓✓$`));
    assert.match(shown[title + 2], new RegExp(`^│ \\[[^\\]]+\\] bob: ${ANSWER}$`));

    // In --json, /query answers with the conversation only; /history alone shows that one.
    const cleared = events(
      await runAlice(port, home, ["/query bob", "/history clear", "/history"]),
    ).filter((event) => !["welcome", "verify-hint"].includes(event.event));
    assert.deepEqual(cleared, [
      { event: "conversation", name: "bob" },
      { event: "history-cleared", deleted: 2 },
      { event: "history", name: "bob", entries: [] },
    ]);
    const after = await Deno.readFile(file);
    assert.equal(sealed.filter((data) => containsBytes(after, data)).length, 0);
    assert.ok(sealed[0].length > 16, "the search looked for whole ciphertexts");
  });
});

Deno.test("history: --no-history keeps nothing; /history off stops keeping, also next time, /history on starts again", async () => {
  await withPeople(async (port, home, bob) => {
    const refused = events(
      await runAlice(port, home, ["/msg bob not kept one", "/history on"], {
        flags: ["--no-history"],
        code: 3,
      }),
    );
    assert.equal(refused.find((event) => event.event === "error")?.code, "history-forced-off");
    assert.equal(refused.filter((event) => event.event === "sent").length, 1, "the /msg went");
    await bob.log.waitFor("message", (event) => event.text === "not kept one");
    const file = ClientStore.path(home, await testStoreId());
    assert.equal(historyCiphertexts(file).length, 0);

    const off = historyEvents(
      await runAlice(port, home, ["/history off", "/msg bob not kept two", "/history"]),
    );
    assert.deepEqual(off[0].entries, []);
    assert.equal(off[0].off, true, "the answer says history is off");
    await bob.log.waitFor("message", (event) => event.text === "not kept two");
    assert.equal(historyCiphertexts(file).length, 0);
    const on = historyEvents(
      await runAlice(port, home, ["/history", "/history on", "/msg bob kept three", "/history"]),
    );
    assert.deepEqual(on[0].entries, [], "off was remembered");
    assert.deepEqual(on[1].entries.map((entry) => entry.text), ["kept three"]);
    assert.equal(on[1].off, undefined);
    await bob.log.waitFor("message", (event) => event.text === "kept three");
    assert.equal(historyCiphertexts(file).length, 1, "only kept three");
  });
});
