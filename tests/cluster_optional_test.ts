import assert from "node:assert/strict";
import { capture } from "../testing/processes.ts";

interface Dependency {
  code?: { specifier: string };
  isDynamic?: boolean;
}

interface ModuleInfo {
  specifier: string;
  dependencies?: Dependency[];
}

Deno.test("a single server never loads NATS: the cluster is reached only by a dynamic import", async () => {
  const main = new URL("../main.ts", import.meta.url).pathname;
  const { code, stdout, stderr } = await capture("deno", ["info", "--json", main]);
  assert.equal(code, 0, stderr);
  const graph = JSON.parse(stdout) as { roots: string[]; modules: ModuleInfo[] };
  const modules = new Map(graph.modules.map((module) => [module.specifier, module]));
  const loaded = new Set<string>();
  const dynamic = new Set<string>();
  const visit = (specifier: string) => {
    if (loaded.has(specifier)) return;
    loaded.add(specifier);
    for (const dependency of modules.get(specifier)?.dependencies ?? []) {
      if (!dependency.code) continue; // a type-only import loads nothing
      if (dependency.isDynamic) dynamic.add(dependency.code.specifier);
      else visit(dependency.code.specifier);
    }
  };
  for (const root of graph.roots) visit(root);
  assert.ok([...loaded].some((specifier) => specifier.endsWith("/server/server.ts")), "walked");
  const nats = [...loaded].filter((specifier) => /nats|server\/cluster\//.test(specifier));
  assert.deepEqual(nats, [], "modules a single server would load");
  // And the cluster is still in the graph (so `deno compile` bundles it), behind the dynamic import.
  assert.ok([...dynamic].some((specifier) => specifier.endsWith("/server/cluster/mod.ts")));
});
