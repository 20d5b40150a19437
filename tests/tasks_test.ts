import assert from "node:assert/strict";
import { PERMISSIONS, RUNTIME_FLAGS } from "../.ci/compile.ts";
import denoConfig from "../deno.json" with { type: "json" };

const tasks: Record<string, string> = denoConfig.tasks;

function flagsOf(task: string): string[] {
  return task.split(/\s+/).filter((word) => word.startsWith("--allow-"));
}

Deno.test("start and demo run with exactly the compiled binary's permissions", () => {
  for (const name of ["start", "demo"]) {
    assert.deepEqual(flagsOf(tasks[name]), [...PERMISSIONS], `task ${name}`);
  }
});

Deno.test("tests add only running deno and nats-server to the compiled binary's permissions", () => {
  // nats-server: the cluster tests start a real one; the binary itself never runs it.
  const expected = PERMISSIONS.map((flag) =>
    flag.startsWith("--allow-run=") ? `${flag},deno,nats-server` : flag
  );
  assert.deepEqual(flagsOf(tasks.test), expected);
});

Deno.test("every task that runs reelay runs Deno quietly, as the compiled binary does", () => {
  for (const name of ["start", "demo", "test", "test:doc", "bench"]) {
    assert.ok(tasks[name].split(/\s+/).includes("--quiet"), `task ${name}`);
  }
  assert.deepEqual([...RUNTIME_FLAGS], ["--quiet"]);
});

Deno.test("demo:cluster adds only running nats-server to the compiled binary's permissions", () => {
  // It starts a real nats-server; the nodes and the worker run in its process.
  const expected = PERMISSIONS.map((flag) =>
    flag.startsWith("--allow-run=") ? `${flag},nats-server` : flag
  );
  assert.deepEqual(flagsOf(tasks["demo:cluster"]), expected);
  assert.ok(tasks["demo:cluster"].split(/\s+/).includes("--quiet"));
});
