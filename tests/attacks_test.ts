/**
 * Issue 12's ten attacks, each tried against a real server over loopback and shown to fail: the
 * victim stays connected and keeps chatting, real people get in while one host misbehaves, and
 * memory stays within its budget. Hosts are told apart by address: the misbehaving host is
 * `127.0.0.1` and the people who behave come from `::1` (the server listens on `::`).
 */

import assert from "node:assert/strict";
import { EventFormatter } from "../client/tui/format.ts";
import { wrapText } from "../client/tui/wrap.ts";
import type { Config } from "../shared/config/mod.ts";
import { joinClient, type LoggedServer, startLoggedServer } from "../testing/harness.ts";
import { RawClient, rawIdentity } from "./_raw.ts";

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
    // A lookalike is not an address for the real one either.
    await assert.rejects(bob.session.send("a1ice", "to a lookalike"), /a1ice/);

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
