/**
 * Baseline for memory per idle client: the least a Deno TCP server can hold per connection while
 * it keeps reading from it, one pending `read` into a 16 KiB buffer (the size reelay's frame
 * decoder starts with). Prints `Listening on 127.0.0.1:PORT` on stderr, like the real server;
 * exits on SIGTERM.
 *
 * Run by scale.ts: `deno run --allow-net bench/_idle_server.ts`
 *
 * @module
 */

const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
const encoder = new TextEncoder();
Deno.stderr.writeSync(encoder.encode(`Listening on 127.0.0.1:${listener.addr.port}\n`));
Deno.addSignalListener("SIGTERM", () => {
  listener.close();
  Deno.exit(0);
});

async function hold(conn: Deno.TcpConn): Promise<void> {
  const buffer = new Uint8Array(16 * 1024);
  try {
    while ((await conn.read(buffer)) !== null) {
      // Discard.
    }
  } catch {
    // Reset by the peer.
  }
  try {
    conn.close();
  } catch {
    // Already closed.
  }
}

try {
  for await (const conn of listener) void hold(conn);
} catch {
  // Listener closed.
}
