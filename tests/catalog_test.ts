import assert from "node:assert/strict";
import { Catalog, type CatalogChange, probeVideo, requireVideo } from "../server/media/mod.ts";
import { ReelayError } from "../shared/errors.ts";
import { within } from "./_deadline.ts";
import { makeBroken, makeMediaDir } from "./_media.ts";
import { generateVideo } from "../testing/sample_video.ts";

/** The next change of `catalog` that is `wanted`; fails after 30 s naming `what`. */
function nextChange(
  catalog: Catalog,
  wanted: (change: CatalogChange) => boolean,
  what: string,
): Promise<CatalogChange> {
  const { promise, resolve } = Promise.withResolvers<CatalogChange>();
  const off = catalog.onChange((change) => {
    if (wanted(change)) resolve(change);
  });
  return within(promise, 30_000, what).finally(off);
}

Deno.test("catalog", async (t) => {
  const { dir } = await makeMediaDir("catalog");
  const spare = await Deno.makeTempDir({ prefix: "reelay-catalog-spare-" });
  try {
    await generateVideo(`${dir}/a.mp4`, {
      width: 320,
      height: 180,
      rate: "30",
      seconds: 3,
      audioRate: 48000,
      channels: 2,
    });
    await generateVideo(`${dir}/ntsc.mkv`, {
      width: 318,
      height: 242,
      rate: "30000/1001",
      seconds: 3,
      audioRate: 44100,
    });
    await generateVideo(`${dir}/silent.mp4`, { width: 160, height: 90, rate: "25", seconds: 2 });
    await makeBroken(`${dir}/broken.mp4`);
    await Deno.writeTextFile(`${dir}/notes.txt`, "not a video");
    await Deno.copyFile(`${dir}/silent.mp4`, `${dir}/.hidden.mp4`);

    const logs: string[] = [];
    const catalog = await Catalog.open(dir, {
      watch: false,
      log: (level, message) => logs.push(`${level}: ${message}`),
    });
    try {
      await t.step("lists readable videos only, probed", () => {
        assert.deepEqual(catalog.list().map((v) => v.name), ["a.mp4", "ntsc.mkv", "silent.mp4"]);
        const a = requireVideo(catalog, "a.mp4");
        assert.equal(a.width, 320);
        assert.equal(a.height, 180);
        assert.deepEqual(a.frameRate, { num: 30, den: 1 });
        assert.ok(Math.abs(a.duration - 3) <= 1 / 30, `duration ${a.duration}`);
        assert.equal(a.hasAudio, true);
        assert.equal(a.audioSampleRate, 48000);
        assert.equal(a.audioChannels, 2);
        assert.equal(a.path, `${catalog.dir}/a.mp4`);

        const ntsc = requireVideo(catalog, "ntsc.mkv");
        assert.deepEqual(ntsc.frameRate, { num: 30000, den: 1001 });
        assert.equal(ntsc.width, 318);
        assert.equal(ntsc.height, 242);
        assert.equal(ntsc.audioSampleRate, 44100);
        assert.ok(Math.abs(ntsc.duration - 3) <= 2 * 1001 / 30000, `duration ${ntsc.duration}`);

        const silent = requireVideo(catalog, "silent.mp4");
        assert.equal(silent.hasAudio, false);
        assert.equal(silent.audioSampleRate, undefined);
      });

      await t.step("leaves out an unreadable file with a logged reason", () => {
        assert.equal(catalog.get("broken.mp4"), undefined);
        const line = logs.find((l) => l.includes(`"broken.mp4"`));
        assert.ok(line?.startsWith("warn: "), `log: ${logs.join("\n")}`);
        assert.match(line ?? "", /Left out of the catalog: File "broken.mp4"/);
      });

      await t.step("never resolves paths or unknown names", () => {
        for (const name of ["../a.mp4", `${catalog.dir}/a.mp4`, "./a.mp4", "nope.mp4", ""]) {
          assert.equal(catalog.get(name), undefined, name);
        }
        assert.throws(
          () => requireVideo(catalog, "../secret.mp4"),
          (error: unknown) =>
            error instanceof ReelayError && error.code === "unknown-video" &&
            error.message === `Video "../secret.mp4" is not in the catalog`,
        );
      });

      await t.step("refresh probes only what changed", async () => {
        const before = logs.length;
        const unchanged = await catalog.refresh();
        assert.deepEqual(unchanged, { added: [], removed: [], updated: [] });
        assert.equal(logs.length, before, "nothing is probed again");

        await generateVideo(`${spare}/a.mp4`, { width: 256, height: 144, rate: "24", seconds: 2 });
        await Deno.rename(`${spare}/a.mp4`, `${dir}/a.mp4`);
        const replaced = await catalog.refresh();
        assert.deepEqual(replaced.updated, ["a.mp4"]);
        assert.equal(catalog.get("a.mp4")?.height, 144);
        assert.equal(catalog.get("a.mp4")?.hasAudio, false);

        await Deno.remove(`${dir}/silent.mp4`);
        const removed = await catalog.refresh();
        assert.deepEqual(removed.removed, ["silent.mp4"]);
        assert.equal(catalog.get("silent.mp4"), undefined);
      });
    } finally {
      await catalog.close();
    }

    await t.step("a watched folder notices added and removed files", async () => {
      const watched = await Catalog.open(dir, { debounceMs: 50 });
      try {
        await generateVideo(`${spare}/new.mp4`, {
          width: 160,
          height: 120,
          rate: "25",
          seconds: 1,
        });
        const added = nextChange(
          watched,
          (c) => c.added.includes("new.mp4"),
          "the watcher to add new.mp4",
        );
        await Deno.rename(`${spare}/new.mp4`, `${dir}/new.mp4`);
        await added;
        assert.equal(watched.get("new.mp4")?.width, 160);

        const removed = nextChange(
          watched,
          (c) => c.removed.includes("new.mp4"),
          "the watcher to remove new.mp4",
        );
        await Deno.remove(`${dir}/new.mp4`);
        await removed;
        assert.equal(watched.get("new.mp4"), undefined);
      } finally {
        await watched.close();
      }
    });

    await t.step("a missing folder is a clear error", async () => {
      await assert.rejects(
        () => Catalog.open(`${dir}/nope`, { watch: false }),
        (error: unknown) =>
          error instanceof ReelayError && error.code === "videos-folder-missing" &&
          error.message.includes(`"${dir}/nope"`),
      );
    });

    await t.step("probing a broken file says why", async () => {
      await assert.rejects(
        () => probeVideo(`${dir}/broken.mp4`),
        (error: unknown) =>
          error instanceof ReelayError && error.code === "probe-failed" &&
          error.message.startsWith(`File "broken.mp4" cannot be read by ffprobe`),
      );
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
    await Deno.remove(spare, { recursive: true });
  }
});
