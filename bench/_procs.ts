/**
 * Processes for the benchmarks: the real `reelay server` CLI as a child process (its port, its
 * RSS, a clean SIGTERM shutdown), programs run to the end, and facts about this machine.
 *
 * @module
 */

/** The repository root (where main.ts and deno.json live). */
export const REPO_ROOT: string = new URL("..", import.meta.url).pathname;

import { withTimeout } from "../shared/async.ts";
import { terminate } from "../shared/process.ts";
import { capture, loopbackServerArgs } from "../testing/processes.ts";

/**
 * Reads files under /proc. Deno asks for --allow-all to read /proc, so one long-lived
 * `deno eval` helper (the benchmark may run `deno`) reads them on request: one path per line in,
 * one JSON string (or null when unreadable) per line out.
 */
class ProcReader {
  readonly #child: Deno.ChildProcess;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly #waiting: ((text: string | null) => void)[] = [];
  readonly #reading: Promise<void>;

  constructor() {
    const code = `
      const lines = Deno.stdin.readable.pipeThrough(new TextDecoderStream());
      let carry = "";
      for await (const text of lines) {
        carry += text;
        let newline;
        while ((newline = carry.indexOf("\\n")) >= 0) {
          const path = carry.slice(0, newline);
          carry = carry.slice(newline + 1);
          let answer = null;
          try { answer = Deno.readTextFileSync(path); } catch { answer = null; }
          Deno.stdout.writeSync(new TextEncoder().encode(JSON.stringify(answer) + "\\n"));
        }
      }`;
    const child = new Deno.Command("deno", {
      args: ["eval", code],
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    this.#child = child;
    this.#writer = child.stdin.getWriter();
    this.#reading = (async () => {
      let carry = "";
      for await (const text of child.stdout.pipeThrough(new TextDecoderStream())) {
        carry += text;
        let newline: number;
        while ((newline = carry.indexOf("\n")) >= 0) {
          const line = carry.slice(0, newline);
          carry = carry.slice(newline + 1);
          this.#waiting.shift()?.(JSON.parse(line));
        }
      }
      for (const waiter of this.#waiting.splice(0)) waiter(null);
    })();
  }

  /** The text of `path`, or null when it cannot be read. */
  async read(path: string): Promise<string | null> {
    const answer = new Promise<string | null>((resolve) => this.#waiting.push(resolve));
    await this.#writer.write(new TextEncoder().encode(path + "\n"));
    return await answer;
  }

  async close(): Promise<void> {
    await this.#writer.close().catch(() => {});
    await this.#reading;
    await this.#child.status;
  }
}

let procReader: ProcReader | undefined;

/** Reads a file under /proc (through the helper); null when it cannot be read. */
export function readProc(path: string): Promise<string | null> {
  procReader ??= new ProcReader();
  return procReader.read(path);
}

/** Stops the /proc helper (call once at the end of the run). */
export async function closeProcReader(): Promise<void> {
  const reader = procReader;
  procReader = undefined;
  await reader?.close();
}

/** Resident memory of process `pid` in bytes (VmRSS from /proc), or NaN when it is gone. */
export async function rssOf(pid: number): Promise<number> {
  const status = await readProc(`/proc/${pid}/status`);
  const match = status === null ? null : /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
  return match ? Number(match[1]) * 1024 : NaN;
}

/** The soft and hard limits on open files of this process (children inherit them). */
export async function openFileLimit(): Promise<{ soft: number; hard: number }> {
  const limits = await readProc(`/proc/${Deno.pid}/limits`) ?? "";
  const match = /^Max open files\s+(\S+)\s+(\S+)/m.exec(limits);
  const read = (text: string | undefined) =>
    text === undefined ? NaN : text === "unlimited" ? Infinity : Number(text);
  return { soft: read(match?.[1]), hard: read(match?.[2]) };
}

/** What the report says about the machine the figures come from. */
export interface MachineInfo {
  cpuModel: string;
  cores: number;
  memoryBytes: number;
  os: string;
  deno: string;
  v8: string;
  ffmpeg: string;
}

/** Describes this machine: CPU model and core count, memory, Deno and ffmpeg versions. */
export async function machineInfo(): Promise<MachineInfo> {
  let cpuModel = "unknown";
  let cores = navigator.hardwareConcurrency;
  const cpuinfo = await readProc("/proc/cpuinfo");
  if (cpuinfo !== null) {
    cpuModel = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1].trim() ?? cpuModel;
    const processors = cpuinfo.match(/^processor\s*:/gm)?.length;
    if (processors) cores = processors;
  }
  let memoryBytes = NaN;
  try {
    memoryBytes = Deno.systemMemoryInfo().total;
  } catch {
    // Needs --allow-sys.
  }
  const ffmpeg = (await capture("ffmpeg", ["-hide_banner", "-version"])).stdout.split("\n")[0]
    .replace(/ Copyright.*$/, "");
  return {
    cpuModel,
    cores,
    memoryBytes,
    os: `${Deno.build.os} ${Deno.osRelease()} ${Deno.build.arch}`,
    deno: Deno.version.deno,
    v8: Deno.version.v8,
    ffmpeg,
  };
}

/** A `reelay server` running as its own process. */
export interface ServerProcess {
  readonly pid: number;
  readonly port: number;
  /** Its current resident memory in bytes. */
  rss(): Promise<number>;
  /** The last log lines it printed (for error messages). */
  tail(): string;
  /** The inspector's WebSocket URL, when started with `inspect`. */
  readonly inspector?: string;
  /** SIGTERM (the server shuts down cleanly, killing its ffmpeg), SIGKILL after 10 s. */
  stop(): Promise<{ code: number; signal: Deno.Signal | null }>;
  /** SIGKILL at once, as a crash would; resolves once it has exited. */
  kill(): Promise<void>;
}

/**
 * Starts `deno run … main.ts server` on a free loopback port with `configIni` as its config and
 * `videos` as its folder, and waits for its `Listening on HOST:PORT` line.
 */
export async function spawnServer(options: {
  videos: string;
  configIni: string;
  tempDir: string;
  /** Open the V8 inspector on a free loopback port (to force a GC and read heap sizes). */
  inspect?: boolean;
}): Promise<ServerProcess> {
  const configPath = `${options.tempDir}/bench-config-${crypto.randomUUID().slice(0, 8)}.ini`;
  await Deno.writeTextFile(configPath, options.configIni);
  const args = [
    "run",
    "--allow-net",
    "--allow-read",
    "--allow-write",
    "--allow-env",
    "--allow-run=ffmpeg,ffprobe",
    ...(options.inspect ? ["--inspect=127.0.0.1:0"] : []),
    "main.ts",
    ...loopbackServerArgs(options.videos, ["--config", configPath]),
  ];
  return await spawnListening(args);
}

/**
 * Starts `deno <args>` in the repository and waits for a `Listening on HOST:PORT` line on its
 * stderr, which is read all along (a full pipe would block the server's logging).
 */
export async function spawnListening(args: string[]): Promise<ServerProcess> {
  const child = new Deno.Command("deno", {
    args,
    cwd: REPO_ROOT,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const lines: string[] = [];
  const listening = Promise.withResolvers<number>();
  let inspector: string | undefined;
  const drained = (async () => {
    let carry = "";
    const textDecoder = new TextDecoder();
    for await (const chunk of child.stderr) {
      carry += textDecoder.decode(chunk, { stream: true });
      let newline: number;
      while ((newline = carry.indexOf("\n")) >= 0) {
        const line = carry.slice(0, newline);
        carry = carry.slice(newline + 1);
        lines.push(line);
        if (lines.length > 50) lines.shift();
        inspector ??= /Debugger listening on (ws:\/\/\S+)/.exec(line)?.[1];
        const match = /Listening on \S+:(\d+)/.exec(line);
        if (match) listening.resolve(Number(match[1]));
      }
    }
    listening.reject(new Error(`Server exited before listening:\n${lines.join("\n")}`));
  })();
  let port: number;
  try {
    port = await withTimeout(
      listening.promise,
      30_000,
      () => new Error("Server did not listen within 30 s"),
    );
  } catch (error) {
    await terminate(child, child.status, 0);
    await drained;
    throw error;
  }
  let stopping: Promise<{ code: number; signal: Deno.Signal | null }> | undefined;
  return {
    pid: child.pid,
    port,
    inspector,
    rss: () => rssOf(child.pid),
    tail: () => lines.join("\n"),
    stop: () => {
      stopping ??= (async () => {
        await terminate(child, child.status, 10_000);
        const status = await child.status;
        await drained;
        return { code: status.code, signal: status.signal };
      })();
      return stopping;
    },
    kill: async () => {
      try {
        child.kill("SIGKILL");
      } catch {
        // It has already exited.
      }
      await child.status;
      await drained;
    },
  };
}

/** Heap figures V8 reports (`Runtime.getHeapUsage`), in bytes. */
export interface HeapUsage {
  usedSize: number;
  totalSize: number;
  /** Bytes held by ArrayBuffers (outside the JS heap). */
  backingStorageSize: number;
}

/** A connection to a process's V8 inspector, for forcing a full GC and reading heap sizes. */
export class Inspector {
  readonly #socket: WebSocket;
  readonly #waiting = new Map<number, (result: Record<string, unknown>) => void>();
  #nextId = 1;

  private constructor(socket: WebSocket) {
    this.#socket = socket;
    socket.onmessage = (event) => {
      const message = JSON.parse(String(event.data));
      if (typeof message.id === "number") {
        this.#waiting.get(message.id)?.(message.result ?? {});
        this.#waiting.delete(message.id);
      }
    };
  }

  /** Connects to the inspector at `url` (a `ws://` URL printed by `--inspect`). */
  static async connect(url: string): Promise<Inspector> {
    const socket = new WebSocket(url);
    await new Promise<void>((resolve, reject) => {
      socket.onopen = () => resolve();
      socket.onerror = () => reject(new Error(`Cannot reach the inspector at ${url}`));
    });
    return new Inspector(socket);
  }

  #call(method: string): Promise<Record<string, unknown>> {
    const id = this.#nextId++;
    return new Promise((resolve) => {
      this.#waiting.set(id, resolve);
      this.#socket.send(JSON.stringify({ id, method, params: {} }));
    });
  }

  /** Runs a full garbage collection in the inspected process. */
  async collectGarbage(): Promise<void> {
    await this.#call("HeapProfiler.collectGarbage");
  }

  /** The inspected process's heap sizes. */
  async heapUsage(): Promise<HeapUsage> {
    const result = await this.#call("Runtime.getHeapUsage");
    return {
      usedSize: Number(result.usedSize),
      totalSize: Number(result.totalSize),
      backingStorageSize: Number(result.backingStorageSize),
    };
  }

  /** Closes the connection. */
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.#socket.onclose = () => resolve());
    this.#socket.close();
    await closed;
  }
}

/** Resolves after `ms`. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
