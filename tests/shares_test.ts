/**
 * The caps behind the fair shares, on real loopback sockets where a socket is involved: one
 * connection's urgent lane, the server-wide budget shared by many, and the per-host accounting.
 */
import assert from "node:assert/strict";
import { FramedConnection } from "../shared/protocol/framed.ts";
import { hostOf, HostShares, QueueBudget } from "../server/shares.ts";

async function pair(): Promise<[Deno.TcpConn, Deno.TcpConn]> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    return await Promise.all([
      listener.accept(),
      Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }),
    ]);
  } finally {
    listener.close();
  }
}

const notice = (bytes: number) => ({
  type: "deliver" as const,
  from: "x",
  envelope: new Uint8Array(bytes),
});

Deno.test("a connection whose own lane overflows max_queue_bytes is cut off as slow-consumer", async () => {
  const [accepted, dialed] = await pair();
  const server = FramedConnection.forServer(accepted, {
    maxFrameBytes: 1 << 20,
    maxQueueBytes: 256 * 1024,
  });
  try {
    // Queued in one go, before the writer can take any: the cap is what stops it.
    for (let i = 0; i < 10 && !server.closed; i++) server.sendMessage(notice(32 * 1024));
    assert.equal(server.closeReason?.code, "slow-consumer");
    assert.equal(server.queuedBytes, 0, "what it held is dropped");
  } finally {
    server.close();
    dialed.close();
    await server.done;
  }
});

Deno.test("over the server-wide budget, the connection holding more than its part is cut off, the small one is not", async () => {
  const sockets = [await pair(), await pair()];
  const budget = new QueueBudget(256 * 1024, () => 2);
  const options = { maxFrameBytes: 1 << 20, maxQueueBytes: 8 << 20, budget };
  const [hog, small] = sockets.map(([accepted]) => FramedConnection.forServer(accepted, options));
  try {
    for (let i = 0; i < 20 && !hog.closed; i++) hog.sendMessage(notice(32 * 1024));
    assert.equal(hog.closeReason?.code, "slow-consumer");
    assert.match(hog.closeReason?.message ?? "", /over its share of the server's budget/);
    assert.equal(budget.queued, 0, "the hog's bytes went back to the budget");
    small.sendMessage(notice(1024));
    assert.ok(!small.closed);
    await small.drained();
    assert.equal(budget.queued, 0, "written bytes go back too");
  } finally {
    for (const framed of [hog, small]) framed.close();
    for (const [, dialed] of sockets) dialed.close();
    await Promise.all([hog.done, small.done]);
  }
});

Deno.test("host shares: a flood from one host only ever evicts its own oldest", () => {
  const shares = new HostShares<string>({
    maxPending: 10,
    maxPendingPerHost: 4,
    maxClientsPerHost: 2,
  });
  const evicted: string[] = [];
  for (const name of ["good1", "good2"]) assert.deepEqual(shares.admit("10.0.0.2", name).evict, []);
  for (let i = 0; i < 100; i++) evicted.push(...shares.admit("10.0.0.66", `bad${i}`).evict);
  assert.deepEqual(evicted, Array.from({ length: 96 }, (_, i) => `bad${i}`));
  assert.equal(shares.pendingOf("10.0.0.2"), 2);
  assert.equal(shares.pendingOf("10.0.0.66"), 4);
  // Many hosts filling the server: the busiest host pays, not the newcomer.
  for (let i = 0; i < 4; i++) shares.admit(`10.0.1.${i}`, `other${i}`);
  assert.equal(shares.pending, 10);
  assert.deepEqual(shares.admit("10.0.0.3", "newcomer").evict, ["bad96"]);
  assert.equal(shares.pending, 10);
  assert.equal(hostOf("::ffff:10.0.0.66"), "10.0.0.66");
});
