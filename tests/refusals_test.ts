/**
 * A refusal (`refuse`) is held for the refused message's sender like mail: it must be held to
 * the refuser's account, or one key could fill the whole mailbox with refusals to a name that
 * is offline, and stop everyone's mail to people who are away.
 */
import assert from "node:assert/strict";
import { fingerprintHash, Identity, MAX_SIGNATURE_TEXT } from "../shared/crypto/mod.ts";
import type { Config } from "../shared/config/mod.ts";
import { type LoggedServer, startLoggedServer } from "../testing/harness.ts";
import { RawClient } from "./_raw.ts";

/** Joins `name` with a key of its own; the caller closes the client. */
async function joined(server: LoggedServer, name: string): Promise<[RawClient, Identity]> {
  const identity = await Identity.generate();
  const raw = await RawClient.connect(server.port);
  assert.equal((await raw.join(name, identity)).type, "welcome");
  return [raw, identity];
}

/** Sends `count` refusals of made-up messages to `to`, then waits until the server read them. */
async function refuse(raw: RawClient, to: string, toKey: string, count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    const signature = "A".repeat(MAX_SIGNATURE_TEXT);
    await raw.send({ type: "refuse", to, toKey, id: `m${i}`, reason: "bad-init", signature });
  }
  // A connection's requests are handled in order: the pong comes after every refusal.
  await raw.send({ type: "ping" });
  await raw.waitFor((message) => message.type === "pong");
}

function errorCodes(raw: RawClient): string[] {
  return raw.messages.filter((message) => message.type === "error").map((m) => String(m.code));
}

async function withPuppet(
  patch: (config: Config) => void,
  scene: (server: LoggedServer, puppetKey: string, mallory: RawClient) => Promise<void>,
): Promise<void> {
  const server = await startLoggedServer(patch);
  const clients: RawClient[] = [];
  try {
    // The puppet joins once (so the server knows its key) and goes away.
    const [puppet, puppetIdentity] = await joined(server, "puppet");
    await puppet.close();
    const [mallory] = await joined(server, "mallory");
    clients.push(mallory);
    await scene(server, await fingerprintHash(puppetIdentity.public), mallory);
  } finally {
    for (const client of clients) await client.close();
    await server.stop();
  }
}

Deno.test("refusals to someone away are held to the refuser's share, and mail from others still goes", async () => {
  await withPuppet((config) => {
    config.mailbox.maxTotalBytes = 64 * 1024;
    config.mailbox.maxBytesPerSender = 8 * 1024;
  }, async (server, puppetKey, mallory) => {
    // Forty refusals of ~0.8 KB each: five times the refuser's share, half the whole mailbox.
    await refuse(mallory, "puppet", puppetKey, 40);
    const codes = errorCodes(mallory);
    assert.ok(codes.length > 0, "every refusal was held");
    assert.deepEqual([...new Set(codes)], ["sender-mailbox-full"]);
    const [carol] = await joined(server, "carol");
    try {
      await carol.send({ type: "send", ref: 1, to: "puppet", envelope: "c".repeat(1000) });
      assert.equal((await carol.waitFor((message) => message.ref === 1)).type, "queued");
    } finally {
      await carol.close();
    }
  });
});

Deno.test("refusals take from the same rate as messages", async () => {
  await withPuppet((config) => {
    config.limits.chatRate = 0.1;
    config.limits.chatBurst = 3;
  }, async (_server, puppetKey, mallory) => {
    await refuse(mallory, "puppet", puppetKey, 5);
    assert.deepEqual(errorCodes(mallory), ["rate-limited", "rate-limited"]);
    // The bucket is the one sends draw from: it is empty for messages too.
    await mallory.send({ type: "send", ref: 1, to: "puppet", envelope: "hello" });
    assert.equal((await mallory.waitFor((message) => message.ref === 1)).code, "rate-limited");
  });
});

Deno.test("a refusal's signature longer than the largest key's is malformed", async () => {
  await withPuppet(() => {}, async (_server, puppetKey, mallory) => {
    const signature = "A".repeat(MAX_SIGNATURE_TEXT + 1);
    await mallory.send({
      type: "refuse",
      to: "puppet",
      toKey: puppetKey,
      id: "m",
      reason: "x",
      signature,
    });
    const error = await mallory.waitFor((message) => message.type === "error");
    assert.equal(error.code, "malformed-message");
    assert.match(String(error.message), /signature/);
  });
});
