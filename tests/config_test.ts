import assert from "node:assert/strict";
import {
  type Config,
  configFromIni,
  DEFAULT_CONFIG,
  loadConfig,
  parseHeights,
  parseHostPort,
} from "../shared/config/mod.ts";
import { UsageError } from "../shared/errors.ts";

const FILE = "test.ini";

function badConfig(text: string, ...patterns: RegExp[]): void {
  assert.throws(() => configFromIni(text, FILE), (error: unknown) => {
    assert.ok(error instanceof UsageError, `expected a UsageError, got ${error}`);
    assert.equal(error.code, "bad-config");
    assert.equal(error.exitCode, 2);
    for (const pattern of patterns) assert.match(error.message, pattern);
    return true;
  });
}

/** Every key, a valid non-default value, and where it lands. */
const KEYS: [
  section: string,
  key: string,
  text: string,
  read: (c: Config) => unknown,
  want: unknown,
][] = [
  ["server", "host", "127.0.0.1", (c) => c.server.host, "127.0.0.1"],
  ["server", "port", "9100", (c) => c.server.port, 9100],
  ["server", "videos", "/srv/films", (c) => c.server.videos, "/srv/films"],
  ["stream", "heights", "240p, 480p, 1080p", (c) => c.stream.heights, [240, 480, 1080]],
  ["stream", "cap_to_source", "false", (c) => c.stream.capToSource, false],
  ["stream", "preset", "ultrafast", (c) => c.stream.preset, "ultrafast"],
  ["stream", "ffmpeg", "/opt/ffmpeg/bin/ffmpeg", (c) => c.stream.ffmpeg, "/opt/ffmpeg/bin/ffmpeg"],
  [
    "stream",
    "ffprobe",
    "/opt/ffmpeg/bin/ffprobe",
    (c) => c.stream.ffprobe,
    "/opt/ffmpeg/bin/ffprobe",
  ],
  ["stream", "max_transcodes", "2", (c) => c.stream.maxTranscodes, 2],
  ["stream", "window_bytes", "131072", (c) => c.stream.windowBytes, 131072],
  ["limits", "max_frame_bytes", "65536", (c) => c.limits.maxFrameBytes, 65536],
  ["limits", "join_timeout_ms", "250", (c) => c.limits.joinTimeoutMs, 250],
  ["limits", "max_pending", "16", (c) => c.limits.maxPending, 16],
  ["limits", "max_clients", "3", (c) => c.limits.maxClients, 3],
  ["limits", "chat_rate", "2.5", (c) => c.limits.chatRate, 2.5],
  ["limits", "chat_burst", "5", (c) => c.limits.chatBurst, 5],
  ["limits", "max_queue_bytes", "2097152", (c) => c.limits.maxQueueBytes, 2097152],
  ["limits", "keepalive_ms", "1000", (c) => c.limits.keepaliveMs, 1000],
  ["limits", "idle_timeout_ms", "60000", (c) => c.limits.idleTimeoutMs, 60000],
  ["client", "server", "10.0.0.2:9100", (c) => c.client.server, "10.0.0.2:9100"],
  ["client", "player", "mpv", (c) => c.client.player, "mpv"],
];

/** Every key with one value it must refuse. */
const BAD_VALUES: [section: string, key: string, text: string][] = [
  ["server", "host", ""],
  ["server", "host", "h".repeat(256)],
  ["server", "port", "65536"],
  ["server", "port", "-1"],
  ["server", "port", "90a"],
  ["server", "port", "1e3"],
  ["server", "videos", " "],
  ["stream", "heights", "144p,720p"],
  ["stream", "cap_to_source", "maybe"],
  ["stream", "preset", "turbo"],
  ["stream", "ffmpeg", ""],
  ["stream", "ffprobe", ""],
  ["stream", "max_transcodes", "0"],
  ["stream", "window_bytes", "1024"],
  ["limits", "max_frame_bytes", "100"],
  ["limits", "join_timeout_ms", "1.5"],
  ["limits", "max_pending", "0"],
  ["limits", "max_clients", "many"],
  ["limits", "chat_rate", "0"],
  ["limits", "chat_rate", "Infinity"],
  ["limits", "chat_burst", "0.5"],
  ["limits", "max_queue_bytes", "1"],
  ["limits", "keepalive_ms", "5"],
  ["limits", "idle_timeout_ms", "0x100"],
  ["client", "server", ""],
  ["client", "player", ""],
];

Deno.test("an empty file gives the defaults, and the shipped config.ini equals them", async () => {
  assert.deepEqual(configFromIni("", FILE), DEFAULT_CONFIG);
  assert.deepEqual(configFromIni("; only a comment\n", FILE), DEFAULT_CONFIG);
  const shipped = await Deno.readTextFile(new URL("../config.ini", import.meta.url));
  assert.deepEqual(configFromIni(shipped, "config.ini"), DEFAULT_CONFIG);
});

Deno.test("every key is read into its field", () => {
  for (const [section, key, text, read, want] of KEYS) {
    const config = configFromIni(`[${section}]\n${key} = ${text}\n`, FILE);
    assert.deepEqual(read(config), want, `[${section}] ${key}`);
  }
});

Deno.test("the defaults are not changed by parsing", () => {
  configFromIni("[server]\nport = 1234\n[stream]\nheights = 16,16,16\n", FILE);
  assert.equal(DEFAULT_CONFIG.server.port, 9000);
  assert.deepEqual(DEFAULT_CONFIG.stream.heights, [144, 720, 1440]);
});

Deno.test("a bad value names the section, the key, the file and what was expected", () => {
  for (const [section, key, text] of BAD_VALUES) {
    const escaped = key.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    badConfig(
      `[${section}]\n${key} = ${text}\n`,
      new RegExp(`\\[${section}\\] ${escaped}`),
      new RegExp(FILE.replace(".", "\\.")),
    );
  }
  badConfig("[limits]\nmax_clients = many\n", /expected a whole number from 1 to 1000000/);
});

Deno.test("unknown sections and keys are refused, listing the known ones", () => {
  badConfig(
    "[sever]\nport = 1\n",
    /unknown section \[sever\]/,
    /server, chat, mailbox, stream, limits, client/,
  );
  badConfig("[server]\nprot = 1\n", /unknown key prot in \[server\]/, /host, port, videos, state/);
  badConfig("[limits]\nmax_pendin = 1\n", /unknown key max_pendin/, /test\.ini/);
  badConfig("[server.extra]\nport = 1\n", /unknown section \[server\.extra\]/);
  badConfig(
    "[ limits ]\nmax_pending = 1\n[Limits]\nmax_pending = 2\n",
    /unknown section \[Limits\]/,
  );
  badConfig("[__proto__]\nport = 1\n", /test\.ini/);
});

Deno.test("a key outside any section is refused with a hint", () => {
  badConfig("port = 9000\n", /key port outside any section/, /\[server\]/, /test\.ini/);
});

Deno.test("a repeated key given as a list is refused", () => {
  badConfig("[server]\nport[] = 1\nport[] = 2\n", /\[server\] port(\[\])? in test\.ini/);
});

Deno.test("booleans accept true/false, yes/no, on/off, 1/0 in any case", () => {
  const cases: [string, boolean][] = [
    ["true", true],
    ["TRUE", true],
    ["yes", true],
    ["On", true],
    ["1", true],
    ["false", false],
    ["No", false],
    ["off", false],
    ["0", false],
  ];
  for (const [text, want] of cases) {
    const config = configFromIni(`[stream]\ncap_to_source = ${text}\n`, FILE);
    assert.equal(config.stream.capToSource, want, text);
  }
  badConfig("[stream]\ncap_to_source = 2\n", /expected true or false/);
  // A bare key (no "=") is ini's "true".
  assert.equal(configFromIni("[stream]\ncap_to_source\n", FILE).stream.capToSource, true);
});

Deno.test("heights: three values with an optional p, in play order, 16 to 4320", () => {
  assert.deepEqual(parseHeights("144p,720p,1440p", "h"), [144, 720, 1440]);
  assert.deepEqual(parseHeights(" 1080 , 360P ,16 ", "h"), [1080, 360, 16]);
  assert.deepEqual(parseHeights("4320p,4320p,4320p", "h"), [4320, 4320, 4320]);
  for (const text of ["", "144", "1,2,3", "144p,720p,1440p,2160p", "15,720,1440", "144,720,4321"]) {
    assert.throws(() => parseHeights(text, "[stream] heights in x.ini"), /\[stream\] heights/);
  }
  for (const text of ["144pp,720,1440", "144 p,720,1440", "-144,720,1440", "1e2,720,1440"]) {
    assert.throws(() => parseHeights(text, "h"), UsageError, text);
  }
});

Deno.test("values are trimmed and inline comments are not part of them", () => {
  const config = configFromIni("[server]\nport =   9100   \nhost = 127.0.0.1 ; here\n", FILE);
  assert.equal(config.server.port, 9100);
  assert.equal(config.server.host, "127.0.0.1");
});

Deno.test("idle_timeout_ms must exceed keepalive_ms", () => {
  badConfig(
    "[limits]\nkeepalive_ms = 5000\nidle_timeout_ms = 5000\n",
    /idle_timeout_ms/,
    /keepalive_ms/,
  );
});

Deno.test("max_queue_bytes must hold at least one largest frame", () => {
  badConfig(
    "[limits]\nmax_frame_bytes = 2097152\nmax_queue_bytes = 1048576\n",
    /max_queue_bytes in test\.ini/,
    /max_frame_bytes/,
  );
  const ok = configFromIni("[limits]\nmax_frame_bytes = 65536\nmax_queue_bytes = 65536\n", FILE);
  assert.equal(ok.limits.maxQueueBytes, 65536);
});

Deno.test("loadConfig: a missing default file means defaults, a missing named file is an error", async () => {
  const dir = await Deno.makeTempDir({ prefix: "reelay-config-" });
  try {
    const missing = `${dir}/none.ini`;
    assert.deepEqual(await loadConfig(missing, { explicit: false }), DEFAULT_CONFIG);
    await assert.rejects(loadConfig(missing, { explicit: true }), (error: unknown) => {
      assert.ok(error instanceof UsageError);
      assert.match(error.message, /none\.ini/);
      return true;
    });
    const file = `${dir}/reelay.ini`;
    await Deno.writeTextFile(file, "[limits]\nmax_pending = 0\n");
    await assert.rejects(
      loadConfig(file, { explicit: true }),
      /\[limits\] max_pending in .*reelay\.ini/,
    );
    await assert.rejects(
      loadConfig(dir, { explicit: true }),
      UsageError,
      "a directory is not a file",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("parseHostPort splits host and port, IPv6 in brackets", () => {
  assert.deepEqual(parseHostPort("10.0.0.2:9100", 9000), { hostname: "10.0.0.2", port: 9100 });
  assert.deepEqual(parseHostPort("box", 9000), { hostname: "box", port: 9000 });
  assert.deepEqual(parseHostPort("[::1]:9001", 9000), { hostname: "::1", port: 9001 });
  for (const text of ["", ":9000", "host:0", "host:65536", "host:x", "a:b:c"]) {
    assert.throws(() => parseHostPort(text, 9000), UsageError, text);
  }
});

Deno.test("a key set twice in one section is an error naming it", () => {
  assert.throws(
    () => configFromIni("[server]\nport = 9100\nport = 9200\n", "twice.ini"),
    /Config key \[server\] port in twice\.ini is set twice/,
  );
  assert.equal(
    configFromIni("[server]\nport = 9100\n[client]\nserver = x:1\n", "ok.ini").server.port,
    9100,
  );
});
