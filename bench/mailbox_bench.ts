// deno-lint-ignore-file no-console
/**
 * What store and forward costs the server per relayed message, on this disk, every commit
 * durable (WAL, synchronous=FULL): each message is put in the mailbox, read back to go out
 * (`pending` after the last one handed to the connection) and removed when its acknowledgement
 * comes. Four ways, each against the same run's others:
 *
 * - `acks one by one`: a transaction per acknowledgement, as the client sends them (one id each);
 * - `acks in batches`: the acknowledgements of a burst removed in one transaction (`--batch`
 *   ids at a time), as the server does when several arrived before it got to them;
 * - `put and read`: the hold and the read that sends it, nothing removed;
 * - `put only`: the hold alone, the floor of any store and forward with a durable hold;
 * - `puts of a turn together`: `--batch` puts staged in one turn of the event loop, which the
 *   mailbox writes in one transaction with one sync (group commit), as the server does with the
 *   sends it reads in one turn;
 * - `a turn together: put, read, acks`: the same puts, one read of the page they make, and their
 *   removals staged together (one more commit), as a server relaying a burst does.
 *
 * The four run side by side, each on its own store, in turns of 50 messages, so a disk shared
 * with other work weighs on each alike. Prints microseconds per message (median of the
 * repetitions) and messages a second; asserts nothing. Run:
 * `deno run -A bench/mailbox_bench.ts [messages] [repetitions] [batch] [synced|relayed]`
 * (defaults 2000, 3, 32, synced: every put synced, as for a message `queued`; `relayed`: puts
 * unsynced, as for a message to someone online).
 *
 * @module
 */

import { openSqliteStore } from "../server/store/sqlite.ts";
import type { Store } from "../server/store/mod.ts";
import { median } from "./_stats.ts";

const messages = Number(Deno.args[0] ?? 2000);
const repetitions = Number(Deno.args[1] ?? 3);
const batch = Number(Deno.args[2] ?? 32);
const durable = (Deno.args[3] ?? "synced") === "synced";
/** A sealed one-line chat message with its ratchet header is about this size. */
const envelope = new Uint8Array(400).fill(7);
const bob = "b0".repeat(32);
const alice = "a1".repeat(32);

function put(store: Store, i: number) {
  return store.mailbox.put({
    kind: "sealed",
    recipientKey: bob,
    recipientName: "bob",
    senderKey: alice,
    senderName: "alice",
    messageId: `m${i}`,
    envelope,
  }, { durable });
}

/** Whether message `i` ends a batch: a full one, the end of a turn of ways, or the last. */
function endsBatch(i: number): boolean {
  return (i + 1) % batch === 0 || (i + 1) % CHUNK === 0 || i + 1 === messages;
}

/** Put, then read back from the last one handed out, as the server's drain does. */
async function putAndRead(store: Store, i: number, state: { after?: string }): Promise<string> {
  await put(store, i);
  const options = state.after === undefined ? {} : { after: state.after };
  const [item] = await store.mailbox.pending(bob, 100, options);
  state.after = item.id;
  return item.id;
}

const ways: Record<string, (store: Store, i: number, state: State) => Promise<void>> = {
  "put only": async (store, i) => {
    await put(store, i);
  },
  "put and read": async (store, i, state) => {
    await putAndRead(store, i, state);
  },
  "acks one by one": async (store, i, state) => {
    const id = await putAndRead(store, i, state);
    await store.mailbox.remove(bob, [id]);
  },
  "acks in batches": async (store, i, state) => {
    state.acked.push(await putAndRead(store, i, state));
    if (state.acked.length >= batch) await store.mailbox.remove(bob, state.acked.splice(0));
  },
  "puts of a turn together": async (store, i, state) => {
    state.staged.push(put(store, i));
    if (endsBatch(i)) await Promise.all(state.staged.splice(0));
  },
  "a turn together: put, read, acks": async (store, i, state) => {
    state.staged.push(put(store, i));
    if (!endsBatch(i)) return;
    const count = state.staged.length;
    await Promise.all(state.staged.splice(0));
    const options = state.after === undefined ? {} : { after: state.after };
    const page = await store.mailbox.pending(bob, count, options);
    state.after = page.at(-1)?.id;
    await Promise.all(page.map((item) => store.mailbox.remove(bob, [item.id])));
  },
};

type State = { after?: string; acked: string[]; staged: Promise<unknown>[] };

/** Messages of each way in one turn of the ways. */
const CHUNK = 64;

/**
 * Runs every way on a store of its own, interleaved in chunks of `CHUNK` messages, so that each
 * sees the same moments of a disk shared with other work; returns microseconds per message.
 */
async function interleaved(): Promise<Map<string, number>> {
  const spent = new Map<string, number>();
  const stores: { name: string; store: Store; state: State; close(): Promise<void> }[] = [];
  for (const name of Object.keys(ways)) {
    const dir = await Deno.makeTempDir({ prefix: "reelay-mailbox-bench-" });
    const store = await openSqliteStore(dir, { maxItemsPerRecipient: 1_000_000 });
    await store.registry.remember({
      nameKey: "bob",
      name: "bob",
      fingerprint: bob,
      announcement: {},
    });
    const close = async () => {
      await store.close();
      await Deno.remove(dir, { recursive: true });
    };
    stores.push({ name, store, state: { acked: [], staged: [] }, close });
  }
  try {
    for (let start = 0; start < messages; start += CHUNK) {
      for (const { name, store, state } of stores) {
        const began = performance.now();
        for (let i = start; i < Math.min(messages, start + CHUNK); i++) {
          await ways[name](store, i, state);
        }
        spent.set(name, (spent.get(name) ?? 0) + performance.now() - began);
      }
    }
  } finally {
    for (const { close } of stores) await close();
  }
  return new Map([...spent].map(([name, ms]) => [name, ms * 1000 / messages]));
}

const results = new Map<string, number[]>();
for (let round = 0; round < repetitions; round++) {
  for (const [name, micros] of await interleaved()) {
    results.set(name, [...results.get(name) ?? [], micros]);
  }
}
console.log(
  `${messages} messages of ${envelope.length} bytes, puts ${durable ? "synced" : "unsynced"}, ` +
    `batches of ${batch}, median of ${repetitions} runs`,
);
console.log("way                 µs/message   messages/s   vs put only");
const floor = median(results.get("put only")!);
for (const [name, values] of results) {
  const micros = median(values);
  console.log(
    `${name.padEnd(18)}  ${micros.toFixed(0).padStart(10)}   ${
      (1e6 / micros).toFixed(0).padStart(10)
    }   ${(micros / floor).toFixed(2).padStart(11)}`,
  );
}
