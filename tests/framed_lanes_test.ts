/**
 * The writer's two lanes over real loopback TCP: chat (the urgent lane) overtakes stream data
 * already queued on the ordered lane, so a viewer's chat is never stuck behind its video.
 */
import assert from "node:assert/strict";
import { FramedConnection, ORDERED_BUDGET_BYTES } from "../shared/protocol/framed.ts";
import { within } from "./_deadline.ts";

const limits = { maxFrameBytes: 1 << 20, maxQueueBytes: 8 << 20 };

Deno.test("chat overtakes stream data already queued for the same peer", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const [accepted, dialed] = await Promise.all([
    listener.accept(),
    Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }),
  ]);
  listener.close();
  const server = FramedConnection.forServer(accepted, limits);
  const viewer = FramedConnection.forClient(dialed, limits);
  try {
    // The viewer reads nothing yet (a closed gate): queue far more video than the lane's budget
    // and the socket's buffers hold, so most of it is still waiting when the chat comes.
    const frames = 64;
    const media = new Uint8Array(64 * 1024);
    assert.ok(frames * media.length > 8 * ORDERED_BUDGET_BYTES);
    const written = Array.from({ length: frames }, (_, i) => server.sendStream(1, i % 3, media));
    server.sendMessage({ type: "deliver", from: "alice", envelope: new Uint8Array([1, 2, 3]) });

    // Open the gate: read until the chat and every stream frame arrived.
    const order: string[] = [];
    const reading = (async () => {
      for await (const item of viewer.receive()) {
        order.push(item.kind === "message" ? item.message.type : item.kind);
        if (order.length === frames + 1) return;
      }
    })();
    await within(reading, 30_000, "the chat and all stream frames");
    await within(Promise.all(written), 30_000, "every stream frame to be written");
    const chatAt = order.indexOf("deliver");
    assert.ok(chatAt >= 0, "the chat arrived");
    // At most the one stream frame the writer had already taken goes before it.
    assert.ok(chatAt <= 1, `chat came after ${chatAt} of ${frames} stream frames`);
    assert.equal(order.filter((kind) => kind === "stream").length, frames);
  } finally {
    server.close();
    viewer.close();
    await Promise.all([server.done, viewer.done]);
  }
});
