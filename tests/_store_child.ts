/**
 * A second process for the store tests, run with only `--allow-read --allow-write`:
 *
 * - `take DIR FINGERPRINT`: opens the store, prints `ready`, waits for a line on stdin, then
 *   takes bundles until no one-time key is left and prints the ids it got as JSON.
 * - `write DIR`: writes batches for ever (a person, 200 one-time keys in one transaction, a
 *   held message), printing `writing N` before the keys and `committed N` after the message,
 *   until it is killed.
 *
 * @module
 */

import { openSqliteStore } from "../server/store/sqlite.ts";
import type { OneTimeKind } from "../server/store/mod.ts";
import { fp, oneTimeKeys, sealed } from "./_store.ts";

/** One-time keys per batch of the `write` mode, each of `WRITE_KEY_BYTES`. */
export const WRITE_BATCH = 200;
const WRITE_KEY_BYTES = 1024;

function say(line: string): void {
  Deno.stdout.writeSync(new TextEncoder().encode(`${line}\n`));
}

async function waitForStart(): Promise<void> {
  const reader = Deno.stdin.readable.getReader();
  try {
    await reader.read();
  } finally {
    reader.releaseLock();
  }
}

async function take(dir: string, fingerprint: string): Promise<void> {
  await using store = await openSqliteStore(dir);
  say("ready");
  await waitForStart();
  const taken: Record<OneTimeKind, number[]> = { x25519: [], mlkem768: [] };
  while (true) {
    const bundle = await store.prekeys.takeBundle(fingerprint);
    if (bundle === undefined) throw new Error("No bundle published");
    if (bundle.oneTime.x25519 === undefined && bundle.oneTime.mlkem768 === undefined) break;
    if (bundle.oneTime.x25519) taken.x25519.push(bundle.oneTime.x25519.id);
    if (bundle.oneTime.mlkem768) taken.mlkem768.push(bundle.oneTime.mlkem768.id);
  }
  say(JSON.stringify(taken));
}

async function write(dir: string): Promise<void> {
  await using store = await openSqliteStore(dir);
  // Numbering goes on from the people an earlier, killed run left.
  for (let n = await store.registry.count();; n++) {
    const person = 1000 + n;
    await store.registry.remember({
      nameKey: `p${person}`,
      name: `p${person}`,
      fingerprint: fp(person),
      announcement: { name: `p${person}` },
    });
    // Said before the batch, so that a kill sent on this line lands while it is being written.
    say(`writing ${n}`);
    await store.prekeys.addOneTime(
      fp(person),
      "x25519",
      oneTimeKeys(0, WRITE_BATCH, WRITE_KEY_BYTES),
    );
    await store.mailbox.put(sealed(1, person, `m${n}`, 4096));
    say(`committed ${n}`);
  }
}

if (import.meta.main) {
  const [mode, dir, fingerprint] = Deno.args;
  if (mode === "take") await take(dir, fingerprint);
  else if (mode === "write") await write(dir);
  else throw new Error(`Unknown mode ${mode}`);
}
