import assert from "node:assert/strict";
import { PartCache, partKey, sourceIdentity } from "../server/media/part_cache.ts";
import { within } from "./_deadline.ts";
import { concat } from "../shared/bytes.ts";
import { framesOf, makeMediaDir } from "./_media.ts";
import { ffmpegChildren } from "./_procs.ts";

const SOURCE = { path: "/srv/videos/cats.mp4", size: 1000, mtimeMs: 1_700_000_000_000 };
const PART = { startFrame: 0, endFrame: 300, width: 256, height: 144, encoder: "libx264", args: 1 };

/** A fake clock the cache reads, starting at a plausible date. */
class Clock {
  ms = 1_700_000_000_000;
  readonly now = () => this.ms;
}

function bytesOf(size: number, seed: number): Uint8Array {
  return Uint8Array.from({ length: size }, (_, i) => (i * 31 + seed) & 255);
}

async function readAll(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of stream) chunks.push(chunk);
  return concat(chunks);
}

/** Streams `bytes` in 100-byte chunks through a writer to a viewer, then commits. */
async function store(cache: PartCache, key: string, bytes: Uint8Array): Promise<boolean> {
  const writer = await cache.write(key);
  assert.ok(writer, "a writer for a new key");
  const chunks = [];
  for (let i = 0; i < bytes.length; i += 100) chunks.push(bytes.slice(i, i + 100));
  const viewed = await readAll(writer.tee(ReadableStream.from(chunks)));
  assert.deepEqual(viewed, bytes, "the viewer gets every byte");
  return await writer.commit();
}

async function cached(cache: PartCache, key: string): Promise<Uint8Array | undefined> {
  const part = await cache.read(key);
  return part ? await readAll(part.stream) : undefined;
}

async function names(dir: string): Promise<string[]> {
  const found = [];
  for await (const entry of Deno.readDir(dir)) found.push(entry.name);
  return found.sort();
}

async function withDir(test: (dir: string) => Promise<void>): Promise<void> {
  const { dir } = await makeMediaDir("cache");
  try {
    await test(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("the key changes with the source's path, size, mtime and every part field", async () => {
  const key = await partKey(SOURCE, PART);
  assert.match(key, /^[0-9a-f]{64}$/);
  assert.equal(await partKey({ ...SOURCE }, { ...PART }), key);
  const reordered = Object.fromEntries(Object.entries(PART).reverse());
  assert.equal(await partKey(SOURCE, reordered), key, "field order does not matter");
  const variants = [
    partKey({ ...SOURCE, path: "/srv/videos/dogs.mp4" }, PART),
    partKey({ ...SOURCE, size: 1001 }, PART),
    partKey({ ...SOURCE, mtimeMs: SOURCE.mtimeMs + 1 }, PART),
    partKey(SOURCE, { ...PART, endFrame: 301 }),
    partKey(SOURCE, { ...PART, encoder: "h264_vaapi" }),
    partKey(SOURCE, { ...PART, args: 2 }),
    partKey(SOURCE, { ...PART, args: "1" }),
  ];
  const keys = new Set([key, ...await Promise.all(variants)]);
  assert.equal(keys.size, 8);
  await assert.rejects(
    () => partKey(SOURCE, { ...PART, startFrame: NaN }),
    /"startFrame" is "NaN"/,
  );
});

Deno.test("a committed part is served whole; an unknown key is a miss", async () => {
  await withDir(async (dir) => {
    const cache = await PartCache.open({ dir, maxBytes: 100_000, maxAgeMs: 60_000 });
    const key = await partKey(SOURCE, PART);
    assert.equal(await cached(cache, key), undefined);
    const bytes = bytesOf(5432, 1);
    assert.equal(await store(cache, key, bytes), true);
    const part = await cache.read(key);
    assert.equal(part?.size, 5432);
    assert.deepEqual(await readAll(part!.stream), bytes);
    assert.deepEqual(await cache.usage(), { files: 1, bytes: 5432 });
    assert.deepEqual(await names(dir), [`${key}.ts`]);
    assert.equal(await cache.write(key), undefined, "no second write of a cached part");
    await assert.rejects(() => cache.read("../etc/passwd"), /"..\/etc\/passwd"/);
  });
});

Deno.test("a new mtime on the source is a miss", async () => {
  await withDir(async (dir) => {
    const source = `${dir}/video.mp4`;
    await Deno.writeFile(source, bytesOf(100, 7));
    const cache = await PartCache.open({
      dir: `${dir}/chunks`,
      maxBytes: 100_000,
      maxAgeMs: 60_000,
    });
    const before = await partKey(await sourceIdentity(source), PART);
    await store(cache, before, bytesOf(1000, 2));
    assert.ok(await cached(cache, before));
    await Deno.utime(source, new Date(2_000_000_000_000), new Date(2_000_000_000_000));
    const after = await partKey(await sourceIdentity(source), PART);
    assert.notEqual(after, before);
    assert.equal(await cached(cache, after), undefined);
  });
});

Deno.test("over maxBytes, the least recently used parts go first", async () => {
  await withDir(async (dir) => {
    const clock = new Clock();
    const cache = await PartCache.open({
      dir,
      maxBytes: 2500,
      maxAgeMs: 3_600_000,
      now: clock.now,
    });
    const [a, b, c] = await Promise.all(
      [1, 2, 3].map((n) => partKey(SOURCE, { ...PART, args: n })),
    );
    await store(cache, a, bytesOf(1000, 1));
    clock.ms += 1000;
    await store(cache, b, bytesOf(1000, 2));
    clock.ms += 1000;
    assert.ok(await cached(cache, a), "reading a makes it recently used");
    clock.ms += 1000;
    assert.equal(await store(cache, c, bytesOf(1000, 3)), true);
    assert.deepEqual(await cache.usage(), { files: 2, bytes: 2000 });
    assert.equal(await cached(cache, b), undefined, "b was the least recently used");
    assert.deepEqual(await cached(cache, a), bytesOf(1000, 1));
    assert.deepEqual(await cached(cache, c), bytesOf(1000, 3));
  });
});

Deno.test("parts unused for longer than maxAgeMs are gone, at read and at open", async () => {
  await withDir(async (dir) => {
    const clock = new Clock();
    const options = { dir, maxBytes: 100_000, maxAgeMs: 1000, now: clock.now };
    const cache = await PartCache.open(options);
    const [a, b] = await Promise.all([1, 2].map((n) => partKey(SOURCE, { ...PART, args: n })));
    await store(cache, a, bytesOf(300, 1));
    await store(cache, b, bytesOf(300, 2));
    clock.ms += 600;
    assert.ok(await cached(cache, a), "used within its age");
    clock.ms += 600;
    assert.equal(await cached(cache, b), undefined, "b was last used 1200 ms ago");
    assert.ok(await cached(cache, a), "a was last used 600 ms ago");
    clock.ms += 5000;
    await PartCache.open(options);
    assert.deepEqual(await names(dir), []);
  });
});

Deno.test("an aborted, failed, abandoned or oversized part leaves nothing", async () => {
  await withDir(async (dir) => {
    const cache = await PartCache.open({ dir, maxBytes: 5000, maxAgeMs: 60_000 });
    const key = await partKey(SOURCE, PART);

    const aborted = (await cache.write(key))!;
    const reader = aborted.tee(ReadableStream.from([bytesOf(100, 1), bytesOf(100, 2)])).getReader();
    await reader.read();
    assert.equal(await cached(cache, key), undefined, "a part being written is never served");
    await aborted.abort();
    assert.equal(await aborted.commit(), false);
    await reader.cancel();
    assert.deepEqual(await names(dir), []);

    const failing = new ReadableStream<Uint8Array>({
      start: (controller) => {
        controller.enqueue(bytesOf(100, 3));
        controller.error(new Error("ffmpeg exited with code 1"));
      },
    });
    const failed = (await cache.write(key))!;
    await assert.rejects(() => readAll(failed.tee(failing)), /code 1/);
    assert.equal(await failed.commit(), false, "a failed source is never committed");

    const abandoned = (await cache.write(key))!;
    const viewer = abandoned.tee(ReadableStream.from([bytesOf(100, 4), bytesOf(100, 5)]));
    await viewer.cancel();
    assert.equal(await abandoned.commit(), false);

    const oversized = (await cache.write(key))!;
    const big = bytesOf(6000, 6);
    assert.deepEqual(await readAll(oversized.tee(ReadableStream.from([big]))), big);
    assert.equal(await oversized.commit(), false, "larger than the whole cache");
    assert.deepEqual(await names(dir), []);
  });
});

Deno.test("concurrent writers of one key: one writer per cache, one commit per folder", async () => {
  await withDir(async (dir) => {
    const first = await PartCache.open({ dir, maxBytes: 100_000, maxAgeMs: 60_000 });
    const second = await PartCache.open({ dir, maxBytes: 100_000, maxAgeMs: 60_000 });
    const key = await partKey(SOURCE, PART);
    const [one, again] = await Promise.all([first.write(key), first.write(key)]);
    assert.ok(one);
    assert.equal(again, undefined, "this cache is writing it already");
    const other = (await second.write(key))!;
    const bytes = bytesOf(3000, 9);
    const [viewA, viewB] = await Promise.all([
      readAll(one.tee(ReadableStream.from([bytes.slice(0, 1500), bytes.slice(1500)]))),
      readAll(other.tee(ReadableStream.from([bytes]))),
    ]);
    assert.deepEqual(viewA, bytes);
    assert.deepEqual(viewB, bytes);
    const results = await Promise.all([one.commit(), other.commit()]);
    assert.deepEqual(results.sort(), [false, true]);
    assert.deepEqual(await names(dir), [`${key}.ts`], "no temp file is left");
    assert.deepEqual(await cached(second, key), bytes);
  });
});

Deno.test("temp files left by a crash are removed at open", async () => {
  await withDir(async (dir) => {
    const key = await partKey(SOURCE, PART);
    await Deno.writeFile(`${dir}/${key}.0123456789abcdef.tmp`, bytesOf(100, 1));
    await Deno.writeFile(`${dir}/notes.txt`, bytesOf(10, 1));
    const cache = await PartCache.open({ dir, maxBytes: 100_000, maxAgeMs: 60_000 });
    assert.deepEqual(await names(dir), ["notes.txt"], "only the cache's own leftovers go");
    assert.equal(await cached(cache, key), undefined);
  });
});

Deno.test("symlinks are never followed: not served, not counted, their targets untouched", async () => {
  await withDir(async (dir) => {
    const outside = `${dir}/outside.bin`;
    await Deno.writeFile(outside, bytesOf(50_000, 1));
    const chunks = `${dir}/chunks`;
    const clock = new Clock();
    const cache = await PartCache.open({
      dir: chunks,
      maxBytes: 2000,
      maxAgeMs: 1000,
      now: clock.now,
    });
    const [planted, real] = await Promise.all(
      [1, 2].map((n) => partKey(SOURCE, { ...PART, args: n })),
    );
    await Deno.symlink(outside, `${chunks}/${planted}.ts`);
    await store(cache, real, bytesOf(1500, 2));
    assert.deepEqual(await cache.usage(), { files: 1, bytes: 1500 }, "the symlink is not a part");
    clock.ms += 10_000;
    await cache.evict();
    assert.equal((await Deno.stat(outside)).size, 50_000, "eviction never reaches through");
    assert.equal(await cached(cache, planted), undefined);
    assert.deepEqual(await names(chunks), [], "the planted link is removed, the part expired");
    assert.equal((await Deno.stat(outside)).size, 50_000);
  });
});

Deno.test("a real ffmpeg part is cached while it streams and served back byte for byte", async () => {
  await withDir(async (dir) => {
    const cache = await PartCache.open({
      dir: `${dir}/chunks`,
      maxBytes: 50 << 20,
      maxAgeMs: 60_000,
    });
    const key = await partKey(SOURCE, PART);
    const child = new Deno.Command("ffmpeg", {
      args: [
        ...["-hide_banner", "-nostdin", "-loglevel", "error", "-f", "lavfi"],
        ...["-i", "testsrc2=size=256x144:rate=25", "-t", "2", "-c:v", "libx264"],
        ...["-f", "mpegts", "pipe:1"],
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).spawn();
    const writer = (await cache.write(key))!;
    const viewed = await within(readAll(writer.tee(child.stdout)), 30_000, "the part");
    const status = await within(child.status, 10_000, "ffmpeg's exit");
    assert.equal(status.success, true);
    assert.equal(await writer.commit(), true, "ffmpeg succeeded, so the part is complete");
    assert.equal(await ffmpegChildren(), 0);
    assert.deepEqual(await cached(cache, key), viewed);
    assert.equal((await framesOf(`${cache.dir}/${key}.ts`)).length, 50);
  });
});
