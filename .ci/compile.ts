/**
 * `deno task compile`: builds the single `reelay` binary for each platform with exactly the
 * permissions reelay needs baked in.
 *
 * @module
 */

/**
 * The permissions of the compiled binary. `deno task start`, `demo` and `test` use the same set
 * (tests add `deno` to `--allow-run` to drive the command line); `tests/tasks_test.ts` checks it.
 */
export const PERMISSIONS: readonly string[] = [
  "--allow-net",
  "--allow-read",
  "--allow-write",
  "--allow-env",
  "--allow-run=ffmpeg,ffprobe,ffplay,mpv",
];

/**
 * Runtime flags baked in besides the permissions: `--quiet` keeps Deno's own info lines (such as
 * "Failed to resolve 'mpv' for allow-run" on a machine without mpv) away from people; reelay
 * reports a missing player itself when that player is chosen. The tasks run Deno the same way.
 */
export const RUNTIME_FLAGS: readonly string[] = ["--quiet"];

/** Deno's names for the platforms reelay is built for. */
export const TARGETS: readonly string[] = [
  "x86_64-unknown-linux-gnu",
  "aarch64-unknown-linux-gnu",
  "x86_64-apple-darwin",
  "aarch64-apple-darwin",
  "x86_64-pc-windows-msvc",
];

async function compile(target: string): Promise<boolean> {
  const output = `dist/reelay-${target}`;
  const { code, stderr } = await new Deno.Command(Deno.execPath(), {
    args: [
      "compile",
      ...RUNTIME_FLAGS,
      ...PERMISSIONS,
      ...["--target", target, "--output", output, "main.ts"],
    ],
    stdout: "inherit",
    stderr: "piped",
  }).output();
  const message = new TextDecoder().decode(stderr);
  if (code === 0) {
    await say(`built ${output}`);
    return true;
  }
  const offline = /denort|download|dl\.deno\.land|error sending request|dns/i.test(message);
  await say(
    offline
      ? `cannot build ${output}: Deno's compile runtime for ${target} could not be downloaded ` +
        `(no internet?). Run this on a machine that can reach Deno's downloads, or set ` +
        `DENORT_BIN to a local denort binary for this target.`
      : `cannot build ${output}:\n${message.trim()}`,
  );
  return false;
}

async function say(line: string): Promise<void> {
  await Deno.stderr.write(new TextEncoder().encode(`compile: ${line}\n`));
}

if (import.meta.main) {
  const wanted = Deno.args.length > 0 ? Deno.args : TARGETS;
  let failed = 0;
  for (const target of wanted) {
    if (!(await compile(target))) failed++;
  }
  Deno.exit(failed === 0 ? 0 : 1);
}
