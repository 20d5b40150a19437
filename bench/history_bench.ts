// deno-lint-ignore-file no-console
/**
 * The client's message history at its bound: inserts into an empty history against inserts into
 * one holding 50,000 rows (the bound in all, so each insert also deletes the oldest), in the same
 * run, each commit durable. Prints one line per round with the ratio; asserts nothing.
 *
 * Run: `deno run -A bench/history_bench.ts [inserts] [rounds]` (defaults 300 and 3).
 *
 * @module
 */

import { DatabaseSync } from "node:sqlite";
import { ClientStore, MAX_HISTORY_TOTAL } from "../client/store/mod.ts";
import { Identity } from "../shared/crypto/mod.ts";

const inserts = Number(Deno.args[0] ?? 300);
const rounds = Number(Deno.args[1] ?? 3);
const identity = await Identity.generate();
const text = "x".repeat(100);

/** Milliseconds per insert into a history that already holds `prefill` rows. */
async function perInsert(prefill: number): Promise<number> {
  const home = await Deno.makeTempDir({ prefix: "reelay-history-bench-" });
  try {
    const store = await ClientStore.open({ home, server: "s", identity });
    await store.addHistory({ peer: "p", direction: "in", id: "first", text, at: 0 });
    store.close();
    // Rows written straight into the file: only their number matters here, not their content.
    const db = new DatabaseSync(store.file);
    db.exec("BEGIN");
    const insert = db.prepare(
      "INSERT INTO history (name_key, at, nonce, data) VALUES (?, ?, ?, ?)",
    );
    for (let i = 0; i < prefill; i++) {
      insert.run(`p${i % 100}`, i, new Uint8Array(12), new Uint8Array(140));
    }
    db.exec("COMMIT");
    db.close();
    const again = await ClientStore.open({ home, server: "s", identity });
    const start = performance.now();
    for (let i = 0; i < inserts; i++) {
      await again.addHistory({ peer: `q${i % 100}`, direction: "in", id: `n${i}`, text, at: i });
    }
    const each = (performance.now() - start) / inserts;
    again.close();
    return each;
  } finally {
    await Deno.remove(home, { recursive: true });
  }
}

for (let round = 0; round < rounds; round++) {
  const empty = await perInsert(0);
  const full = await perInsert(MAX_HISTORY_TOTAL);
  console.log(
    `round ${round + 1}: empty ${empty.toFixed(2)} ms, at the ${MAX_HISTORY_TOTAL} bound ` +
      `${full.toFixed(2)} ms per insert, ratio ${(full / empty).toFixed(2)}`,
  );
}
