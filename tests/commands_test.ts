import assert from "node:assert/strict";
import {
  COMMAND_SPECS,
  CommandError,
  HELP_TEXT,
  parseCommand,
  usageLine,
} from "../client/tui/commands.ts";
import { UsageError } from "../shared/errors.ts";

function usageOf(line: string): CommandError {
  try {
    parseCommand(line);
  } catch (error) {
    assert.ok(error instanceof CommandError, `expected a CommandError for ${line}`);
    return error;
  }
  assert.fail(`expected ${JSON.stringify(line)} to be rejected`);
}

Deno.test("commands: every command without arguments", () => {
  assert.deepEqual(parseCommand("/help"), { command: "help" });
  assert.deepEqual(parseCommand("/who"), { command: "who" });
  assert.deepEqual(parseCommand("/videos"), { command: "videos" });
  assert.deepEqual(parseCommand("/stop"), { command: "stop" });
  assert.deepEqual(parseCommand("/quit"), { command: "quit" });
  assert.deepEqual(parseCommand("/exit"), { command: "quit" });
});

Deno.test("commands: /msg keeps the text's inner spaces", () => {
  assert.deepEqual(parseCommand("/msg bob hello   there, bob!"), {
    command: "msg",
    to: "bob",
    text: "hello   there, bob!",
  });
  assert.deepEqual(parseCommand("  /msg   bob    hi  "), { command: "msg", to: "bob", text: "hi" });
  assert.deepEqual(parseCommand("/msg bob /who is not a command here"), {
    command: "msg",
    to: "bob",
    text: "/who is not a command here",
  });
  assert.deepEqual(parseCommand("/msg bob héllo 👋\ttab"), {
    command: "msg",
    to: "bob",
    text: "héllo 👋\ttab",
  });
});

Deno.test("commands: /msg without text or name is a usage error", () => {
  for (const line of ["/msg", "/msg bob", "/msg bob    "]) {
    const error = usageOf(line);
    assert.equal(error.code, "usage");
    assert.equal(error.usage, "Usage: /msg NAME TEXT");
    assert.match(error.message, /Usage: \/msg NAME TEXT$/);
    assert.ok(error instanceof UsageError);
  }
  assert.match(usageOf("/msg bob").message, /^Missing TEXT/);
  assert.match(usageOf("/msg").message, /^Missing NAME/);
});

Deno.test("commands: names are checked with the server's rules", () => {
  const error = usageOf("/msg ../etc hi");
  assert.match(error.message, /not allowed/);
  assert.equal(error.usage, "Usage: /msg NAME TEXT");
  assert.equal(usageOf("/verify -bob").usage, "Usage: /verify NAME");
});

Deno.test("commands: /verify and /trust take exactly one name", () => {
  assert.deepEqual(parseCommand("/verify bob"), { command: "verify", name: "bob" });
  assert.deepEqual(parseCommand("/trust Bob.K"), { command: "trust", name: "Bob.K" });
  assert.equal(usageOf("/verify").usage, "Usage: /verify NAME");
  assert.equal(usageOf("/trust bob carol").usage, "Usage: /trust NAME");
  assert.match(usageOf("/trust bob carol").message, /^Too many arguments/);
});

Deno.test("commands: /play takes the rest of the line as the video name", () => {
  assert.deepEqual(parseCommand("/play cats.mp4"), { command: "play", video: "cats.mp4" });
  assert.deepEqual(parseCommand("/play  My Holiday  2024.mkv "), {
    command: "play",
    video: "My Holiday  2024.mkv",
  });
  assert.equal(usageOf("/play").usage, "Usage: /play VIDEO");
});

Deno.test("commands: /pause, /resume, /seek POSITION and /play VIDEO --from POSITION", () => {
  assert.deepEqual(parseCommand("/pause"), { command: "pause" });
  assert.deepEqual(parseCommand("/resume"), { command: "resume" });
  assert.deepEqual(parseCommand("/seek -10"), { command: "seek", position: "-10" });
  assert.deepEqual(parseCommand("/play My Cats.mp4 --from 1:30"), {
    command: "play",
    video: "My Cats.mp4",
    from: "1:30",
  });
  assert.equal(usageOf("/seek").usage, "Usage: /seek POSITION");
});

Deno.test("commands: arguments to commands that take none are rejected", () => {
  assert.equal(usageOf("/who bob").usage, "Usage: /who");
  assert.equal(usageOf("/quit now").usage, "Usage: /quit");
});

Deno.test("commands: blank lines are nothing", () => {
  assert.equal(parseCommand(""), undefined);
  assert.equal(parseCommand("   \t "), undefined);
});

Deno.test("commands: command names ignore case", () => {
  assert.deepEqual(parseCommand("/WHO"), { command: "who" });
  assert.deepEqual(parseCommand("/Msg bob Hi"), { command: "msg", to: "bob", text: "Hi" });
});

Deno.test("commands: unknown commands point to /help", () => {
  const error = usageOf("/frobnicate now");
  assert.equal(error.code, "unknown-command");
  assert.match(error.message, /Unknown command "\/frobnicate"/);
  assert.match(error.message, /\/help/);
  assert.equal(usageOf("/").code, "unknown-command");
});

Deno.test("commands: text without a slash is said to the conversation; // sends a slash", () => {
  assert.deepEqual(parseCommand("hello bob "), { command: "say", text: "hello bob " });
  assert.deepEqual(parseCommand("//shrug"), { command: "say", text: "/shrug" });
});

Deno.test("commands: a mistyped command suggests the closest one", () => {
  assert.match(usageOf("/mgs bob hi").message, /Did you mean \/msg\?/);
  assert.match(usageOf("/vid").message, /Did you mean \/videos\?/);
  assert.doesNotMatch(usageOf("/frobnicate").message, /Did you mean/);
});

Deno.test("commands: /query, /reply and /ignore take optional arguments; /q and /r are short", () => {
  assert.deepEqual(parseCommand("/q Bob"), { command: "query", name: "Bob" });
  assert.deepEqual(parseCommand("/query"), { command: "query", name: undefined });
  assert.deepEqual(parseCommand("/r see you  soon"), { command: "reply", text: "see you  soon" });
  assert.deepEqual(parseCommand("/r"), { command: "reply", text: undefined });
  assert.deepEqual(parseCommand("/ignore"), { command: "ignore", name: undefined });
  assert.deepEqual(parseCommand("/unignore eve"), { command: "unignore", name: "eve" });
  assert.equal(usageOf("/query bob carol").usage, "Usage: /query [NAME]");
  assert.equal(usageOf("/unignore").usage, "Usage: /unignore NAME");
});

Deno.test("commands: help shows each command once, aligned, and each line parses as shown", () => {
  // Checked against what the user reads, not against the table help is printed from.
  const lines = HELP_TEXT.split("\n");
  const rows = lines.map((line) => {
    const match = /^(\/\S+(?: \S+)*) {2,}(\S.*)$/.exec(line);
    assert.ok(match, `help line ${JSON.stringify(line)} is "/command ARGS  summary"`);
    return { synopsis: match[1], column: line.length - match[2].length };
  });
  assert.equal(new Set(rows.map((row) => row.column)).size, 1, "one summary column");
  const synopses = rows.map((row) => row.synopsis);
  for (
    const expected of [
      "/help",
      "/who",
      "/msg NAME TEXT",
      "/verify NAME",
      "/trust NAME",
      "/videos",
      "/play VIDEO",
      "/stop",
      "/quit",
    ]
  ) {
    assert.ok(synopses.includes(expected), `help shows ${expected}`);
  }
  const examples: Record<string, string> = {
    NAME: "bob",
    TEXT: "hi there",
    VIDEO: "clip",
    POSITION: "1:30",
  };
  const commands = new Set<string>();
  for (const synopsis of synopses) {
    const [command, ...args] = synopsis.split(" ");
    assert.ok(!commands.has(command), `${command} is listed once`);
    commands.add(command);
    const typed = [
      command,
      ...args.filter((arg) => !arg.startsWith("[")).map((arg) => {
        assert.ok(arg in examples, `argument ${arg} of ${command}`);
        return examples[arg];
      }),
    ].join(" ");
    assert.equal(parseCommand(typed)?.command, command.slice(1), `${typed} parses`);
  }
});

Deno.test("commands: every usage line in the table matches what the parser asks for", () => {
  for (const spec of COMMAND_SPECS) {
    if (spec.args.length === 0) {
      assert.equal(usageOf(`/${spec.command} extra`).usage, usageLine(spec));
    } else if (spec.args[0].optional) {
      assert.equal(parseCommand(`/${spec.command}`)?.command, spec.command);
    } else {
      assert.equal(usageOf(`/${spec.command}`).usage, usageLine(spec));
    }
    for (const alias of spec.aliases) {
      assert.equal(parseCommand(`/${alias}`)?.command, spec.command);
    }
  }
});

Deno.test("commands: /history reads NAME and N, clear, on and off; bad ones say what is wrong", () => {
  const history = (rest: object) => ({ command: "history", ...rest });
  assert.deepEqual(parseCommand("/history"), history({ action: "show" }));
  assert.deepEqual(parseCommand("/history bob"), history({ action: "show", name: "bob" }));
  assert.deepEqual(parseCommand("/history 50"), history({ action: "show", count: 50 }));
  assert.deepEqual(
    parseCommand("/history  bob   5 "),
    history({ action: "show", name: "bob", count: 5 }),
  );
  assert.deepEqual(parseCommand("/history clear"), history({ action: "clear" }));
  assert.deepEqual(parseCommand("/history CLEAR bob"), history({ action: "clear", name: "bob" }));
  assert.deepEqual(parseCommand("/history off"), history({ action: "off" }));
  assert.deepEqual(parseCommand("/history on"), history({ action: "on" }));
  for (
    const [line, why] of [
      ["/history 0", /N is "0": expected a whole number from 1 to 1000/],
      ["/history bob 1001", /N is "1001"/],
      ["/history bob x", /N is "x"/],
      ["/history 5 bob", /NAME comes before N/],
      ["/history on now", /Too many arguments/],
      ["/history clear bob carol", /Too many arguments/],
      ["/history bob 5 6", /Too many arguments/],
      ["/history ../x", /not allowed/],
    ] as const
  ) {
    assert.throws(() => parseCommand(line), (error: unknown) => {
      assert.ok(error instanceof CommandError, line);
      assert.match(error.message, why, line);
      assert.match(error.message, /Usage: \/history \[NAME\] \[N\]/, line);
      return true;
    });
  }
});
