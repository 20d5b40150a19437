/**
 * Test helpers that look at processes through Linux's /proc: children by program name, open
 * file descriptors and sockets, resident memory.
 *
 * Deno lets only `--allow-all` read /proc, and the tests run with narrower permissions, so a
 * short-lived `deno eval` (which runs with every permission) reads it and answers in JSON. The
 * test command allows running `deno` by name; that is how it is started.
 *
 * @module
 */

import { PERMISSIONS } from "../.ci/compile.ts";
import { settlesWithin } from "../shared/async.ts";
import { terminate } from "../shared/process.ts";
import { loopbackServerArgs } from "../testing/processes.ts";

/** What /proc says about one process. */
export interface ProcSnapshot {
  /** Targets of the open file descriptors (`socket:[123]`, `/dev/null`, ...). */
  fds: string[];
  /** Resident memory in bytes (VmRSS). */
  rss: number;
  /** Direct children: pid and program name. */
  children: { pid: number; comm: string }[];
}

const PROBE = `
const pid = Number(Deno.args[0]);
const fds = [];
for (const entry of Deno.readDirSync("/proc/" + pid + "/fd")) {
  try { fds.push(Deno.readLinkSync("/proc/" + pid + "/fd/" + entry.name)); } catch { /* gone */ }
}
const status = Deno.readTextFileSync("/proc/" + pid + "/status");
const rss = Number(/^VmRSS:\\s+(\\d+)\\s+kB$/m.exec(status)?.[1] ?? "0") * 1024;
const children = [];
for (const entry of Deno.readDirSync("/proc")) {
  if (!/^\\d+$/.test(entry.name)) continue;
  let stat;
  try { stat = Deno.readTextFileSync("/proc/" + entry.name + "/stat"); } catch { continue; }
  const close = stat.lastIndexOf(")");
  const ppid = Number(stat.slice(close + 2).split(" ")[1]);
  if (ppid === pid) children.push({ pid: Number(entry.name), comm: stat.slice(stat.indexOf("(") + 1, close) });
}
console.log(JSON.stringify({ fds, rss, children }));
`;

/** Reads /proc for `pid` (this process by default). */
export async function snapshot(pid: number = Deno.pid): Promise<ProcSnapshot> {
  const output = await new Deno.Command("deno", {
    args: ["eval", "--quiet", PROBE, String(pid)],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!output.success) {
    throw new Error(`Reading /proc/${pid} failed: ${new TextDecoder().decode(output.stderr)}`);
  }
  return JSON.parse(new TextDecoder().decode(output.stdout)) as ProcSnapshot;
}

/** Which of `pids` still exist (zombies included: a zombie is a child nobody awaited). */
export async function stillRunning(pids: number[]): Promise<number[]> {
  const script = `console.log(JSON.stringify(Deno.args.map(Number).filter((pid) => {
    try { Deno.statSync("/proc/" + pid); return true; } catch { return false; }
  })))`;
  const output = await new Deno.Command("deno", {
    args: ["eval", "--quiet", script, ...pids.map(String)],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  return JSON.parse(new TextDecoder().decode(output.stdout)) as number[];
}

/** How many sockets `pid` has open. */
export async function openSockets(pid: number = Deno.pid): Promise<number> {
  return (await snapshot(pid)).fds.filter((target) => target.startsWith("socket:")).length;
}

/** How many ffmpeg processes `pid` (this process by default) has running as children. */
export async function ffmpegChildren(pid: number = Deno.pid): Promise<number> {
  return (await snapshot(pid)).children.filter((child) => child.comm === "ffmpeg").length;
}

/** Resident memory of `pid` in bytes. */
export async function rssBytes(pid: number = Deno.pid): Promise<number> {
  return (await snapshot(pid)).rss;
}

/** Prints a measured number (memory, sockets) so the test output records it. */
export function reportMeasurement(line: string): void {
  Deno.stderr.writeSync(new TextEncoder().encode(`measured: ${line}\n`));
}

/** Bytes as MiB with one decimal, for messages and reports. */
export function mib(bytes: number): string {
  return `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;
}

/**
 * The absolute path of the `deno` found on PATH. The tests may run `deno` by name only, and this
 * path is the one that name resolves to, so it is allowed too, and it still works for a child
 * whose PATH is changed.
 */
export function denoOnPath(): string {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    if (!dir) continue;
    try {
      if (Deno.statSync(`${dir}/deno`).isFile) return `${dir}/deno`;
    } catch {
      // Not in this folder.
    }
  }
  throw new Error("No deno on PATH");
}

const MAIN = new URL("../main.ts", import.meta.url).pathname;
const REPO = new URL("..", import.meta.url).pathname;
const PTY_CHILD = new URL("./_pty_child.ts", import.meta.url).pathname;

/**
 * The arguments of `reelay client` as `name` with `home`, joining the server on loopback `port`
 * with no player; `extra` after them.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { clientArgs } from "./_procs.ts";
 * assert.deepEqual(clientArgs(9000, "bob", "/tmp/bob", ["--json"]).slice(-2), ["none", "--json"]);
 * ```
 */
export function clientArgs(
  port: number,
  name: string,
  home: string,
  extra: string[] = [],
): string[] {
  return [
    "client",
    ...["--server", `127.0.0.1:${port}`, "--name", name, "--home", home, "--player", "none"],
    ...extra,
  ];
}

/**
 * `deno run main.ts ...args` as a child process, with its output collected as it arrives so a
 * test can wait for a line, and with stdin kept open until {@linkcode Cli.closeStdin}.
 */
export class Cli {
  readonly child: Deno.ChildProcess;
  stdout = "";
  stderr = "";
  readonly #stdin: WritableStreamDefaultWriter<Uint8Array>;
  readonly #pumps: Promise<void>;
  #waiters: (() => void)[] = [];
  #stdinClosed = false;

  /**
   * Starts `main.ts` with `args`. With `pty`, it runs in a pseudo-terminal of that size (see
   * `_pty_child.ts`): stdin is what is typed, stdout is what the terminal shows.
   */
  constructor(
    args: string[],
    options: { env?: Record<string, string>; pty?: { columns: number; rows: number } } = {},
  ) {
    const deno = denoOnPath();
    const program = ["run", ...PERMISSIONS, MAIN, ...onDefaults(args)];
    const { pty } = options;
    this.child = new Deno.Command(deno, {
      args: pty
        ? ["run", "--allow-run=script", PTY_CHILD, String(pty.columns), String(pty.rows), deno]
          .concat(program)
        : program,
      cwd: REPO,
      env: { NO_COLOR: "1", ...options.env },
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#stdin = this.child.stdin.getWriter();
    this.#pumps = Promise.all([
      this.#pump(this.child.stdout, (text) => this.stdout += text),
      this.#pump(this.child.stderr, (text) => this.stderr += text),
    ]).then(() => {});
  }

  /**
   * Resolves with the first match of `pattern` in stdout + stderr (in stdout from index `from`
   * on); fails after `timeoutMs`.
   */
  waitFor(pattern: RegExp, timeoutMs = 30_000, from = 0): Promise<RegExpExecArray> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((other) => other !== check);
        reject(
          new Error(
            `Timed out waiting for ${pattern}; stdout: ${this.stdout}\nstderr: ${this.stderr}`,
          ),
        );
      }, timeoutMs);
      const check = () => {
        const match = pattern.exec(this.stdout.slice(from)) ?? pattern.exec(this.stderr);
        if (match) {
          clearTimeout(timer);
          this.#waiters = this.#waiters.filter((other) => other !== check);
          resolve(match);
        }
      };
      this.#waiters.push(check);
      check();
    });
  }

  /** Writes text to the program's stdin as it is (keys, for a pseudo-terminal). */
  async write(text: string): Promise<void> {
    await this.#stdin.write(new TextEncoder().encode(text));
  }

  /** Writes a line to the program's stdin. */
  async writeLine(line: string): Promise<void> {
    await this.#stdin.write(new TextEncoder().encode(`${line}\n`));
  }

  /** Closes stdin (EOF for the program). Idempotent. */
  async closeStdin(): Promise<void> {
    if (this.#stdinClosed) return;
    this.#stdinClosed = true;
    await this.#stdin.close().catch(() => {});
  }

  /** Waits for the exit (bounded by `timeoutMs`, then killed) and all output. */
  async exit(timeoutMs = 30_000): Promise<Deno.CommandStatus> {
    if (!(await settlesWithin(this.child.status, timeoutMs))) await this.#kill();
    const status = await this.child.status;
    await this.closeStdin();
    await this.#pumps;
    return status;
  }

  /** SIGTERM, then SIGKILL at once: a test's leftover process has no time to be polite. */
  async #kill(): Promise<void> {
    await terminate(this.child, this.child.status, 0);
  }

  /** Kills the process if it still runs, and releases everything. */
  async dispose(): Promise<void> {
    await this.#kill();
    await this.exit();
  }

  async #pump(stream: ReadableStream<Uint8Array>, add: (text: string) => void): Promise<void> {
    for await (const text of stream.pipeThrough(new TextDecoderStream())) {
      add(text);
      for (const waiter of [...this.#waiters]) waiter();
    }
  }
}

/**
 * `args` with `--config /dev/null` (an empty config: the defaults) unless they name a config:
 * a run started from the checkout would otherwise read its `config.ini`, which a person may have
 * edited, and a test would pass or fail with their settings.
 */
function onDefaults(args: string[]): string[] {
  const [command, ...rest] = args;
  const readsConfig = command === "server" || command === "client" || command === "worker";
  if (!readsConfig || rest.includes("--config") || rest.includes("--help")) return args;
  return [command, "--config", "/dev/null", ...rest];
}

/** Starts `reelay server` on a free loopback port; resolves once it listens. */
export async function startCliServer(
  videos: string,
  extraArgs: string[] = [],
): Promise<{ cli: Cli; port: number }> {
  const cli = new Cli(loopbackServerArgs(videos, extraArgs));
  try {
    const match = await cli.waitFor(/Listening on [^\s]+:(\d+)/);
    return { cli, port: Number(match[1]) };
  } catch (error) {
    await cli.dispose();
    throw error;
  }
}
