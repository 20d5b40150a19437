/**
 * Programs run to their end for tests and benchmarks, and a look at which processes are alive:
 * Deno lets only `--allow-all` read /proc, so a short `deno eval` (which runs with every
 * permission; the test and bench tasks may run `deno`) reads it and answers in JSON.
 *
 * @module
 */

const decoder = new TextDecoder();

/**
 * Runs a program to its end; returns its exit code and output as text (throws only when it
 * cannot start).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { capture } from "./processes.ts";
 * const { code, stdout } = await capture("ffmpeg", ["-hide_banner", "-version"]);
 * assert.equal(code, 0);
 * assert.match(stdout, /^ffmpeg version/);
 * ```
 */
export async function capture(
  program: string,
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string; bytes: Uint8Array }> {
  const output = await new Deno.Command(program, {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
    bytes: output.stdout,
  };
}

/**
 * Runs a program to the end and returns its stdout; throws with stderr when it fails.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { run } from "./processes.ts";
 * const version = new TextDecoder().decode(await run("ffmpeg", ["-version"]));
 * assert.match(version, /ffmpeg version/);
 * await assert.rejects(run("ffmpeg", ["-no-such-option"]));
 * ```
 */
export async function run(program: string, args: string[]): Promise<Uint8Array> {
  const result = await capture(program, args);
  if (result.code !== 0) {
    throw new Error(`${program} ${args.join(" ")} failed: ${result.stderr}`);
  }
  return result.bytes;
}

/**
 * Process ids whose command line mentions `marker`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { processesMentioning } from "./processes.ts";
 * assert.deepEqual(await processesMentioning(`no-process-says-${crypto.randomUUID()}`), []);
 * ```
 */
export async function processesMentioning(marker: string): Promise<number[]> {
  const code = `
    const found = [];
    for (const entry of Deno.readDirSync("/proc")) {
      if (!/^\\d+$/.test(entry.name) || entry.name === String(Deno.pid)) continue;
      try {
        const cmdline = Deno.readTextFileSync("/proc/" + entry.name + "/cmdline");
        if (cmdline.includes(Deno.args[0])) found.push(Number(entry.name));
      } catch { /* it ended while we looked */ }
    }
    console.log(JSON.stringify(found));`;
  const stdout = await run("deno", ["eval", code, marker]);
  return JSON.parse(decoder.decode(stdout));
}

/**
 * The command-line arguments of `reelay server` on a free loopback port serving `videos`, with
 * its state (the server key) in `videos/.state` so it goes away with the folder, then `extra`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { loopbackServerArgs } from "./processes.ts";
 * assert.deepEqual(loopbackServerArgs("v").slice(0, 3), ["server", "--host", "127.0.0.1"]);
 * ```
 */
export function loopbackServerArgs(videos: string, extra: string[] = []): string[] {
  return [
    "server",
    "--host",
    "127.0.0.1",
    "--port",
    "0",
    "--videos",
    videos,
    "--state",
    `${videos}/.state`,
    ...extra,
  ];
}
