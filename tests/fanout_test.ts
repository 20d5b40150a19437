import assert from "node:assert/strict";
import { FellBehindError, SharedStream } from "../server/media/fanout.ts";
import { ReelayError } from "../shared/errors.ts";
import { terminate } from "../shared/process.ts";
import { within } from "./_deadline.ts";
import { concat } from "../shared/bytes.ts";
import { framesOf, makeMediaDir, stderrOf } from "./_media.ts";
import { ffmpegChildren } from "./_procs.ts";

/** A source of known bytes in chunks of the given sizes, counting what was pulled from it. */
class TestSource {
  readonly bytes: Uint8Array;
  readonly stream: ReadableStream<Uint8Array>;
  pulled = 0;
  cancelReason: unknown = "not cancelled";
  #next = 0;

  constructor(sizes: number[], options: { failAfter?: number; failure?: Error } = {}) {
    this.bytes = new Uint8Array(sizes.reduce((a, b) => a + b, 0));
    for (let offset = 0; offset < this.bytes.length; offset += 65536) {
      crypto.getRandomValues(this.bytes.subarray(offset, offset + 65536));
    }
    this.stream = new ReadableStream<Uint8Array>({
      pull: (controller) => {
        if (this.#next === options.failAfter) return controller.error(options.failure);
        if (this.#next === sizes.length) return controller.close();
        const size = sizes[this.#next++];
        controller.enqueue(this.bytes.slice(this.pulled, this.pulled + size));
        this.pulled += size;
      },
      cancel: (reason) => {
        this.cancelReason = reason;
      },
    }, { highWaterMark: 0 });
  }
}

const evenChunks = (count: number, size: number) => Array.from({ length: count }, () => size);

async function readAll(stream: ReadableStream<Uint8Array>, yields = 0): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of stream) {
    chunks.push(chunk);
    // A slower reader: let the others run between its reads.
    for (let i = 0; i < yields; i++) await Promise.resolve();
  }
  return concat(chunks);
}

async function readRest(reader: ReadableStreamDefaultReader<Uint8Array>): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  for (let read = await reader.read(); !read.done; read = await reader.read()) {
    chunks.push(read.value);
  }
  return concat(chunks);
}

async function readBytes(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  count: number,
): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  while (total < count) {
    const { done, value } = await reader.read();
    if (done) throw new Error(`Stream ended after ${total} of ${count} bytes`);
    chunks.push(value);
    total += value.length;
  }
  return concat(chunks);
}

Deno.test("five viewers of one source read identical bytes, and the source is read once", async () => {
  const sizes = Array.from({ length: 300 }, (_, i) => 1 + (i * 7919) % 6000);
  const source = new TestSource(sizes);
  const shared = new SharedStream(source.stream, {
    maxBufferBytes: 4 << 20,
    readAheadBytes: 64 << 10,
  });
  const viewers = [0, 1, 2, 3, 4].map(() => shared.join()!);
  const results = await within(
    Promise.all(viewers.map((viewer, i) => readAll(viewer, i * 3))),
    10_000,
    "five viewers",
  );
  for (const result of results) assert.deepEqual(result, source.bytes);
  assert.equal(source.pulled, source.bytes.length);
  assert.deepEqual(await within(shared.ended, 60_000, "the shared stream to end"), {
    kind: "complete",
    bytes: source.bytes.length,
  });
  // A complete part whose start is kept stays for late viewers until it is released.
  assert.equal(shared.stats.retainedBytes, source.bytes.length, "kept for late viewers");
  assert.deepEqual(await readAll(shared.join()!, 0), source.bytes, "a late viewer reads it all");
  shared.release();
  assert.equal(shared.join(), undefined, "released: nobody joins");
  assert.equal(shared.stats.retainedBytes, 0, "the buffer is freed once released");
});

Deno.test("a viewer who joins while byte 0 is kept starts at byte 0", async () => {
  const source = new TestSource(evenChunks(40, 1000));
  const shared = new SharedStream(source.stream, { maxBufferBytes: 64_000, readAheadBytes: 4000 });
  const first = shared.join()!.getReader();
  const start = await readBytes(first, 10_000);
  assert.equal(shared.stats.firstRetainedByte, 0);
  const late = shared.join();
  assert.ok(late, "joined within the window");
  const [rest, lateBytes] = await within(
    Promise.all([readRest(first), readAll(late)]),
    10_000,
    "both viewers to the end",
  );
  assert.deepEqual(concat([start, rest]), source.bytes);
  assert.deepEqual(lateBytes, source.bytes);
  assert.equal((await within(shared.ended, 60_000, "the shared stream to end")).kind, "complete");
});

Deno.test("once byte 0 is dropped, join() says no so the caller transcodes itself", async () => {
  const source = new TestSource(evenChunks(40, 1000));
  const shared = new SharedStream(source.stream, { maxBufferBytes: 12_000, readAheadBytes: 2000 });
  const viewer = shared.join()!.getReader();
  await readBytes(viewer, 7000);
  assert.equal(shared.stats.headBytes, 9000);
  assert.ok(shared.join(), "still joinable while everything is kept");
  // That second viewer never reads: it is detached by the first drop, which ends the window.
  await readBytes(viewer, 4000);
  assert.equal(shared.stats.firstRetainedByte, 1000);
  assert.equal(shared.join(), undefined);
  await viewer.cancel();
});

Deno.test("a viewer that stops reading is detached past the buffer; the others go on", async () => {
  const max = 8000;
  const source = new TestSource(evenChunks(50, 1000));
  const shared = new SharedStream(source.stream, { maxBufferBytes: max, readAheadBytes: 2000 });
  const lead = shared.join()!.getReader();
  const paused = shared.join()!.getReader();
  const follower = shared.join()!.getReader();
  assert.deepEqual(await readBytes(paused, 3000), source.bytes.slice(0, 3000));
  const leadBytes: Uint8Array[] = [];
  const followerBytes: Uint8Array[] = [];
  let detachedAt = -1;
  const pausedEnd = paused.closed.then(
    () => new Error("closed instead of detached"),
    (error: unknown) => {
      detachedAt = shared.stats.firstRetainedByte;
      return error;
    },
  );
  for (let read = await lead.read(); !read.done; read = await lead.read()) {
    leadBytes.push(read.value);
    assert.ok(shared.stats.retainedBytes <= max, `kept ${shared.stats.retainedBytes} bytes`);
    const next = await follower.read();
    if (!next.done) followerBytes.push(next.value);
  }
  followerBytes.push(await readRest(follower));
  assert.deepEqual(concat(leadBytes), source.bytes);
  assert.deepEqual(concat(followerBytes), source.bytes);
  const error = await within(pausedEnd, 5000, "the paused viewer's end");
  assert.ok(error instanceof FellBehindError, String(error));
  assert.equal(error.code, "fell-behind");
  assert.equal(error.position, 3000, "it can go on from where it was");
  // Detached by the first drop that went past it: it was 3000 bytes in, chunks are 1000.
  assert.equal(detachedAt, 4000);
});

Deno.test("a paused viewer within the buffer stalls nobody and reads everything later", async () => {
  const source = new TestSource(evenChunks(20, 1000));
  const shared = new SharedStream(source.stream, { maxBufferBytes: 32_000, readAheadBytes: 2000 });
  const lead = shared.join()!;
  const paused = shared.join()!;
  assert.deepEqual(await within(readAll(lead), 5000, "the lead viewer"), source.bytes);
  assert.deepEqual(await within(readAll(paused), 5000, "the paused viewer"), source.bytes);
});

Deno.test("the source is read no further than the read-ahead past the fastest viewer", async () => {
  const source = new TestSource(evenChunks(100, 1000));
  const shared = new SharedStream(source.stream, { maxBufferBytes: 100_000, readAheadBytes: 4000 });
  const fast = shared.join()!.getReader();
  const slow = shared.join()!.getReader();
  await shared.idle();
  assert.equal(source.pulled, 0, "nothing is read before a viewer reads");
  await readBytes(slow, 1000);
  await shared.idle();
  assert.equal(source.pulled, 5000);
  await readBytes(fast, 5000);
  await shared.idle();
  assert.equal(source.pulled, 9000);
  await readBytes(slow, 4000);
  await shared.idle();
  assert.equal(source.pulled, 9000, "a slower viewer does not pull the source");
  await readBytes(fast, 3000);
  await shared.idle();
  assert.equal(source.pulled, 12_000);
  await fast.cancel();
  await slow.cancel();
});

Deno.test("when every viewer has left, the source is cancelled and nobody can join", async () => {
  const source = new TestSource(evenChunks(100, 1000));
  const shared = new SharedStream(source.stream, { maxBufferBytes: 100_000, readAheadBytes: 4000 });
  const a = shared.join()!.getReader();
  const b = shared.join()!.getReader();
  await readBytes(a, 2000);
  await readBytes(b, 1000);
  await a.cancel();
  assert.equal(source.cancelReason, "not cancelled", "one viewer is still watching");
  await b.cancel();
  const reason: unknown = source.cancelReason;
  assert.ok(reason instanceof ReelayError);
  assert.equal(reason.code, "no-viewers");
  assert.deepEqual(await within(shared.ended, 60_000, "the shared stream to end"), {
    kind: "cancelled",
    bytes: 6000,
  });
  assert.equal(shared.join(), undefined);
  assert.equal(shared.stats.retainedBytes, 0);
});

Deno.test("a source failure reaches every viewer after the bytes it produced", async () => {
  const failure = new ReelayError("transcode-failed", "ffmpeg exited with code 1");
  const source = new TestSource(evenChunks(10, 1000), { failAfter: 3, failure });
  const shared = new SharedStream(source.stream, { maxBufferBytes: 64_000, readAheadBytes: 4000 });
  const readers = [0, 1, 2].map(() => shared.join()!.getReader());
  for (const reader of readers) {
    assert.deepEqual(await readBytes(reader, 3000), source.bytes.slice(0, 3000));
    await assert.rejects(() => within(reader.read(), 5000, "the failure"), (e) => e === failure);
  }
  const end = await within(shared.ended, 60_000, "the shared stream to end");
  assert.equal(end.kind, "failed");
  assert.equal(shared.join(), undefined);
});

Deno.test("an end that checkEnd rejects (a short part) is an error for every viewer", async () => {
  const source = new TestSource(evenChunks(3, 1000));
  const short = new ReelayError("part-short", "Part 1 ended at 2.0 s of 6.0 s");
  const shared = new SharedStream(source.stream, {
    maxBufferBytes: 64_000,
    readAheadBytes: 4000,
    checkEnd: () => Promise.reject(short),
  });
  const viewers = [shared.join()!, shared.join()!];
  for (const viewer of viewers) {
    await assert.rejects(() => within(readAll(viewer), 5000, "the end"), (e) => e === short);
  }
  assert.equal((await within(shared.ended, 60_000, "the shared stream to end")).kind, "failed");
});

Deno.test("abort ends every viewer with the reason and cancels the source", async () => {
  const source = new TestSource(evenChunks(10, 1000));
  const shared = new SharedStream(source.stream, { maxBufferBytes: 64_000, readAheadBytes: 4000 });
  const reader = shared.join()!.getReader();
  await readBytes(reader, 1000);
  const reason = new ReelayError("shutting-down", "Server is shutting down");
  await shared.abort(reason);
  await assert.rejects(() => reader.read(), (e) => e === reason);
  assert.equal(source.cancelReason, reason);
  assert.equal((await within(shared.ended, 60_000, "the shared stream to end")).kind, "cancelled");
});

Deno.test("bounds that cannot work are refused with the values quoted", () => {
  const stream = new ReadableStream<Uint8Array>();
  assert.throws(
    () => new SharedStream(stream, { maxBufferBytes: 1000, readAheadBytes: 800 }),
    /"1000".*"800"/,
  );
});

/** ffmpeg writing MPEG-TS to stdout, as a source whose cancel kills it (the owner's hook). */
function ffmpegSource(args: string[]): {
  stream: ReadableStream<Uint8Array>;
  status: Promise<Deno.CommandStatus>;
} {
  const child = new Deno.Command("ffmpeg", {
    args: ["-hide_banner", "-nostdin", "-loglevel", "error", ...args, "-f", "mpegts", "pipe:1"],
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const reader = child.stdout.getReader();
  const stream = new ReadableStream<Uint8Array>({
    pull: async (controller) => {
      const { done, value } = await reader.read();
      if (done) controller.close();
      else controller.enqueue(value);
    },
    cancel: async () => {
      await reader.cancel();
      await terminate(child, child.status, 1000);
    },
  }, { highWaterMark: 0 });
  return { stream, status: child.status };
}

const TEST_PATTERN = ["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25"];

Deno.test("three viewers of a real ffmpeg get one identical, valid MPEG-TS stream", async () => {
  const { dir } = await makeMediaDir("fanout");
  try {
    const ffmpeg = ffmpegSource([...TEST_PATTERN, "-t", "2", "-c:v", "libx264", "-g", "25"]);
    const shared = new SharedStream(ffmpeg.stream, {
      maxBufferBytes: 8 << 20,
      readAheadBytes: 256 << 10,
      checkEnd: async () => {
        const status = await within(ffmpeg.status, 60_000, "ffmpeg to exit");
        if (!status.success) throw new Error(`ffmpeg exited with code ${status.code}`);
      },
    });
    const viewers = [shared.join()!, shared.join()!, shared.join()!];
    const [first, ...others] = await within(
      Promise.all(viewers.map((viewer, i) => readAll(viewer, i))),
      30_000,
      "the viewers of ffmpeg",
    );
    for (const other of others) assert.deepEqual(other, first);
    assert.equal((await within(shared.ended, 60_000, "the shared stream to end")).kind, "complete");
    await Deno.writeFile(`${dir}/shared.ts`, first);
    assert.equal((await framesOf(`${dir}/shared.ts`)).length, 50);
    assert.equal(
      await stderrOf("ffmpeg", ["-v", "error", "-i", `${dir}/shared.ts`, "-f", "null", "-"]),
      "",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ffmpeg is stopped when nobody watches", async () => {
  const ffmpeg = ffmpegSource([...TEST_PATTERN, "-t", "600", "-c:v", "libx264"]);
  const shared = new SharedStream(ffmpeg.stream, {
    maxBufferBytes: 8 << 20,
    readAheadBytes: 64 << 10,
  });
  const readers = [shared.join()!.getReader(), shared.join()!.getReader()];
  for (const reader of readers) await within(readBytes(reader, 10_000), 20_000, "some bytes");
  assert.equal(await ffmpegChildren(), 1, "one ffmpeg for two viewers");
  for (const reader of readers) await reader.cancel();
  await within(ffmpeg.status, 5000, "ffmpeg's exit");
  assert.equal(await ffmpegChildren(), 0);
  assert.equal((await within(shared.ended, 60_000, "the shared stream to end")).kind, "cancelled");
});
