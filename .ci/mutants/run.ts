/**
 * `deno task mutants`: proves the tests notice when a promise of the product breaks. Each entry of
 * `list.ts` is a one-line break (a mutant); this applies one at a time to a scratch copy of the
 * checkout, runs the tests that cover it, and prints a table: mutant, covering test, killed or
 * survived. Exits 1 if any mutant survives, if a `find` string no longer occurs exactly once (the
 * list must stay in step with the code), or if a covering test already fails unmutated. After the
 * table, where CI's tail of the output shows them: the last lines of each covering test that
 * failed unmutated, then one `mutants: NOT KILLED` line per mutant not killed, then the count.
 *
 * Why our own and not a general tool: StrykerJS, the maintained mutation tool for TypeScript,
 * runs tests through node runner plugins (jest, mocha, vitest, ...); under Deno only its
 * `command` runner applies, which knows no per-test coverage and so runs the whole suite (minutes
 * here) for each of its thousands of generated mutants: days on a 2-core machine. Its generated
 * mutants also carry no meaning; the point here is a short list named after the promises in
 * `docs/security.md`, each paired with the test that claims to show it.
 *
 * Usage: `deno task mutants [--only TEXT]... [--jobs N] [--no-baseline] [--list] [--check]`
 *
 * `--check` only checks the list against the code (each `find` exactly once, every file there)
 * and runs nothing: `deno task ok` runs it, so an edit that leaves a mutant stale fails there and
 * not half an hour into CI's mutant run.
 *
 * The checkout is never written: files are copied (tracked and untracked, minus what git ignores)
 * into one scratch folder per job, and each mutant is applied and undone there.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { dirname, join } from "node:path";
import { mutants as allMutants } from "./list.ts";
import type { CoveringTest, Mutant } from "./types.ts";

const root = join(dirname(new URL(import.meta.url).pathname), "..", "..");

/** Outcome of one mutant. */
type Verdict = "killed" | "survived" | "stale" | "baseline-fails" | "timeout";

interface Row {
  mutant: string;
  test: string;
  verdict: Verdict;
  seconds: number;
}

/** A covering test that failed unmutated, with its last output lines. */
interface BaselineFailure {
  label: string;
  tail: string[];
}

interface Options {
  only: string[];
  jobs: number;
  baseline: boolean;
  list: boolean;
  check: boolean;
  timeoutMs: number;
}

function options(): Options {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      only: { type: "string", multiple: true, default: [] },
      jobs: { type: "string", default: "2" },
      "no-baseline": { type: "boolean", default: false },
      list: { type: "boolean", default: false },
      check: { type: "boolean", default: false },
      "timeout-s": { type: "string", default: "600" },
    },
  });
  const jobs = Number(values.jobs);
  const timeoutS = Number(values["timeout-s"]);
  if (!Number.isInteger(jobs) || jobs < 1) usage(`Bad --jobs ${JSON.stringify(values.jobs)}`);
  if (!(timeoutS > 0)) usage(`Bad --timeout-s ${JSON.stringify(values["timeout-s"])}`);
  return {
    only: values.only,
    jobs,
    baseline: !values["no-baseline"],
    list: values.list,
    check: values.check,
    timeoutMs: timeoutS * 1000,
  };
}

function usage(problem: string): never {
  say(
    Deno.stderr,
    `${problem}
Usage: deno task mutants [--only TEXT]... [--jobs N] [--no-baseline] [--timeout-s S] [--list] [--check]`,
  );
  Deno.exit(2);
}

function say(to: { writeSync(bytes: Uint8Array): number }, text: string): void {
  const bytes = new TextEncoder().encode(text + "\n");
  for (let at = 0; at < bytes.length;) at += to.writeSync(bytes.subarray(at));
}

function covering(test: string | CoveringTest): CoveringTest {
  return typeof test === "string" ? { file: test } : test;
}

function label(test: CoveringTest): string {
  return test.filter === undefined ? test.file : `${test.file} "${test.filter}"`;
}

function count(text: string, find: string): number {
  let n = 0;
  for (let at = text.indexOf(find); at !== -1; at = text.indexOf(find, at + 1)) n++;
  return n;
}

/** Problems with the list itself: duplicates, missing files, `find` not exactly once. */
function checkList(list: Mutant[]): Map<string, string> {
  const problems = new Map<string, string>();
  const names = new Set<string>();
  for (const mutant of list) {
    if (names.has(mutant.name)) problems.set(mutant.name, "duplicate name");
    names.add(mutant.name);
    let text: string;
    try {
      text = Deno.readTextFileSync(join(root, mutant.file));
    } catch {
      problems.set(mutant.name, `file ${mutant.file} not found`);
      continue;
    }
    const n = count(text, mutant.find);
    if (n !== 1) {
      problems.set(mutant.name, `find ${JSON.stringify(mutant.find)} occurs ${n} times`);
    } else if (mutant.find === mutant.replace) {
      problems.set(mutant.name, "replace equals find");
    } else if (mutant.tests.length === 0) {
      problems.set(mutant.name, "no covering test");
    }
    for (const test of mutant.tests.map(covering)) {
      try {
        Deno.statSync(join(root, test.file));
      } catch {
        problems.set(mutant.name, `test ${test.file} not found`);
      }
    }
  }
  return problems;
}

/** Copies the checkout (what git tracks or would track) into a fresh scratch folder. */
async function scratchCopy(): Promise<string> {
  const listed = await new Deno.Command("git", {
    args: ["ls-files", "-z", "--cached", "--others", "--exclude-standard"],
    cwd: root,
    stdout: "piped",
  }).output();
  if (!listed.success) throw new Error(`git ls-files failed in ${JSON.stringify(root)}`);
  const dir = await Deno.makeTempDir({ prefix: "reelay-mutants-" });
  const files = new TextDecoder().decode(listed.stdout).split("\0").filter((f) => f !== "");
  for (const file of files) {
    const from = join(root, file);
    try {
      const info = await Deno.lstat(from);
      if (!info.isFile) continue;
    } catch {
      continue; // deleted in the worktree but still tracked
    }
    await Deno.mkdir(dirname(join(dir, file)), { recursive: true });
    await Deno.copyFile(from, join(dir, file));
  }
  return dir;
}

/** The test command of deno.json's `test` task, minus its `tests/` argument. */
function testCommand(): string[] {
  const config = JSON.parse(Deno.readTextFileSync(join(root, "deno.json")));
  const words = String(config.tasks.test).split(/\s+/).filter((w) => w !== "");
  if (words[0] !== "deno" || words[1] !== "test" || words.at(-1) !== "tests/") {
    throw new Error(`Unexpected test task ${JSON.stringify(config.tasks.test)} in deno.json`);
  }
  // Mutants are judged by the tests, not the type checker: skip checking for speed.
  return ["test", "--no-check", ...words.slice(2, -1)];
}

/** How many of a test run's last output lines are kept, to show why a baseline failed. */
const TAIL_LINES = 30;

/** What one run of a covering test came to, and its last output lines. */
interface TestRun {
  /** true if it passed; "timeout" if it ran past the deadline. */
  result: boolean | "timeout";
  tail: string[];
}

/** Runs one covering test in `dir`. */
async function runTest(dir: string, test: CoveringTest, timeoutMs: number): Promise<TestRun> {
  const args = [...testCommand()];
  if (test.filter !== undefined) args.push("--filter", test.filter);
  args.push(test.file);
  // setsid puts the test run in its own process group, so a hung run can be ended with
  // everything it started (servers, ffmpeg). sh joins stderr to stdout, in the order written.
  const child = new Deno.Command("setsid", {
    args: ["sh", "-c", 'exec "$@" 2>&1', "sh", "deno", ...args],
    cwd: dir,
    stdin: "null",
    stdout: "piped",
    stderr: "null",
    env: { NO_COLOR: "1" },
  }).spawn();
  const tail = lastLines(child.stdout, TAIL_LINES, child.status);
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      Deno.kill(-child.pid, "SIGKILL");
    } catch {
      child.kill("SIGKILL");
    }
  }, timeoutMs);
  try {
    const status = await child.status;
    return { result: timedOut ? "timeout" : status.success, tail: await tail };
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The last `count` lines of `stream` once it ends, which is when every process holding it has
 * exited; a process that outlives the test run is waited for `graceMs` at most.
 */
async function lastLines(
  stream: ReadableStream<Uint8Array>,
  count: number,
  exited: Promise<unknown>,
  graceMs = 5000,
): Promise<string[]> {
  let lines: string[] = [];
  let partial = "";
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  const ended = (async () => {
    for (let read = await reader.read(); !read.done; read = await reader.read()) {
      const parts = (partial + read.value).split("\n");
      partial = parts.pop() ?? "";
      lines = lines.concat(parts).slice(-count);
    }
  })().catch(() => {});
  await exited;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const grace = new Promise<void>((resolve) => timer = setTimeout(resolve, graceMs));
  await Promise.race([ended, grace]);
  clearTimeout(timer);
  await reader.cancel().catch(() => {});
  return lines.concat(partial === "" ? [] : [partial]).slice(-count);
}

/** Applies `mutant` in `dir`, runs its tests until one fails, undoes it. */
async function judge(dir: string, mutant: Mutant, timeoutMs: number): Promise<Row> {
  const path = join(dir, mutant.file);
  const original = await Deno.readTextFile(path);
  const started = performance.now();
  await Deno.writeTextFile(path, original.replace(mutant.find, () => mutant.replace));
  const tests = mutant.tests.map(covering);
  try {
    for (const test of tests) {
      const { result } = await runTest(dir, test, timeoutMs);
      if (result !== true) {
        return {
          mutant: mutant.name,
          test: label(test),
          verdict: result === "timeout" ? "timeout" : "killed",
          seconds: (performance.now() - started) / 1000,
        };
      }
    }
    return {
      mutant: mutant.name,
      test: tests.map(label).join(", "),
      verdict: "survived",
      seconds: (performance.now() - started) / 1000,
    };
  } finally {
    await Deno.writeTextFile(path, original);
  }
}

/** Runs `work` over `items` with at most `jobs` at once, each job with its own scratch copy. */
async function pool<T, R>(
  items: T[],
  jobs: number,
  work: (dir: string, item: T) => Promise<R>,
): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const workers = Array.from({ length: Math.min(jobs, items.length) }, async () => {
    const dir = await scratchCopy();
    try {
      while (next < items.length) {
        const index = next++;
        results[index] = await work(dir, items[index]);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
  await Promise.all(workers);
  return results;
}

function table(rows: Row[]): string {
  const lines = ["| mutant | covering test | result | s |", "| --- | --- | --- | --- |"];
  for (const row of rows) {
    const shown = row.verdict === "timeout" ? "killed (timeout)" : row.verdict;
    lines.push(`| ${row.mutant} | ${row.test} | ${shown} | ${row.seconds.toFixed(0)} |`);
  }
  return lines.join("\n");
}

function baselineReport(failure: BaselineFailure): string {
  const lines = failure.tail.map((line) => `  ${line}`);
  return [`mutants: baseline of ${failure.label} failed unmutated; its last lines:`, ...lines]
    .join("\n");
}

async function main(): Promise<void> {
  const opts = options();
  const chosen = allMutants.filter((m) =>
    opts.only.length === 0 || opts.only.some((text) => m.name.includes(text))
  );
  if (opts.list) {
    for (const m of chosen) {
      say(Deno.stdout, `${m.name}\t${m.file}\t${m.tests.map(covering).map(label)}`);
    }
    return;
  }
  const started = performance.now();
  const problems = checkList(chosen);
  if (opts.check) {
    for (const [name, problem] of problems) say(Deno.stdout, `mutants: STALE ${name} (${problem})`);
    say(Deno.stdout, `mutants: ${chosen.length} checked, ${problems.size} stale`);
    if (problems.size > 0) Deno.exit(1);
    return;
  }
  const rows: Row[] = [];
  for (const [name, problem] of problems) {
    rows.push({ mutant: name, test: problem, verdict: "stale", seconds: 0 });
  }
  let runnable = chosen.filter((m) => !problems.has(m.name));
  const baselineFailures: BaselineFailure[] = [];

  if (opts.baseline) {
    // A test that fails unmutated would "kill" every mutant: run each distinct test once first.
    const distinct = [
      ...new Map(runnable.flatMap((m) => m.tests.map(covering)).map((t) => [label(t), t]))
        .values(),
    ];
    say(Deno.stderr, `mutants: baseline, ${distinct.length} covering tests unmutated`);
    const passed = await pool(distinct, opts.jobs, async (dir, test) => {
      const run = await runTest(dir, test, opts.timeoutMs);
      return { label: label(test), ok: run.result === true, tail: run.tail };
    });
    baselineFailures.push(...passed.filter((p) => !p.ok));
    const failing = new Set(baselineFailures.map((p) => p.label));
    for (const m of runnable) {
      const bad = m.tests.map(covering).map(label).filter((l) => failing.has(l));
      if (bad.length > 0) {
        rows.push({ mutant: m.name, test: bad.join(", "), verdict: "baseline-fails", seconds: 0 });
      }
    }
    runnable = runnable.filter((m) => !m.tests.map(covering).some((t) => failing.has(label(t))));
  }

  say(Deno.stderr, `mutants: ${runnable.length} mutants, ${opts.jobs} at a time`);
  const judged = await pool(runnable, opts.jobs, async (dir, mutant) => {
    const row = await judge(dir, mutant, opts.timeoutMs);
    say(Deno.stderr, `mutants: ${row.verdict.padEnd(8)} ${row.mutant}`);
    return row;
  });
  rows.push(...judged);
  const order = new Map(chosen.map((m, i) => [m.name, i]));
  rows.sort((a, b) => (order.get(a.mutant) ?? 0) - (order.get(b.mutant) ?? 0));

  say(Deno.stdout, table(rows));
  // CI shows only the end of the output: name what was not killed, and why baselines failed.
  for (const failure of baselineFailures) say(Deno.stdout, baselineReport(failure));
  const notKilled = rows.filter((r) => r.verdict !== "killed" && r.verdict !== "timeout");
  for (const row of notKilled) {
    say(Deno.stdout, `mutants: NOT KILLED ${row.mutant} (${row.verdict}, ${row.test})`);
  }
  const killed = rows.length - notKilled.length;
  const bad = notKilled.length;
  const minutes = ((performance.now() - started) / 60000).toFixed(1);
  // .ci/run reads this line to count each mutant as one check.
  say(Deno.stdout, `mutants: ${killed} killed, ${bad} not killed (${minutes} min)`);
  if (bad > 0) Deno.exit(1);
}

if (import.meta.main) await main();
