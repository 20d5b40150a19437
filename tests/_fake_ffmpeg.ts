/**
 * A stand-in for ffmpeg on a machine with GPUs, for the encoder-detection tests: it plays the
 * hardware this machine lacks. Run as
 * `deno run --allow-write=LOG _fake_ffmpeg.ts --hardware=vaapi,qsv [--hang=nvenc] --log=LOG -- ARGS`.
 *
 * For a trial encode (`-c:v CODEC` among ARGS) it checks what the real device would need (an
 * opened VA-API device and uploaded frames, the pixel format NVENC or Quick Sync reads), appends
 * `{"pid", "codec"}` to LOG, and exits 0 when that hardware is "present", 1 with an ffmpeg-like
 * message when it is not. `--hang` makes that encoder's trial hang like a wedged driver, deaf to
 * SIGTERM, so only SIGKILL ends it.
 *
 * @module
 */

const separator = Deno.args.indexOf("--");
const flags = new Map(
  Deno.args.slice(0, separator).map((flag) =>
    flag.replace(/^--/, "").split("=", 2) as [
      string,
      string,
    ]
  ),
);
const args = Deno.args.slice(separator + 1);
const present = new Set((flags.get("hardware") ?? "").split(",").filter((name) => name !== ""));
const codec = valueAfter("-c:v") ?? "";
const kind = codec.replace(/^h264_/, "");

await Deno.writeTextFile(
  flags.get("log") ?? "",
  `${JSON.stringify({ pid: Deno.pid, codec })}\n`,
  { append: true },
);

if (flags.get("hang") === kind) {
  Deno.addSignalListener("SIGTERM", () => {});
  await new Promise(() => setInterval(() => {}, 60_000));
}

const problem = present.has(kind) ? missingSetup() : absent();
if (problem) {
  await Deno.stderr.write(new TextEncoder().encode(`${problem}\n`));
  Deno.exit(1);
}

function valueAfter(option: string): string | undefined {
  const index = args.indexOf(option);
  return index >= 0 ? args[index + 1] : undefined;
}

/** What real ffmpeg says when the hardware is not there. */
function absent(): string {
  if (kind === "vaapi") return "No VA display found for device /dev/dri/renderD128.";
  if (kind === "nvenc") return "[h264_nvenc] Cannot load libcuda.so.1";
  if (kind === "qsv") return "[h264_qsv] Error initializing an internal MFX session";
  return `Unknown encoder '${codec}'`;
}

/** Why the hardware would refuse these arguments, or undefined when it would encode. */
function missingSetup(): string | undefined {
  const filters = valueAfter("-vf") ?? "";
  if (kind === "vaapi") {
    const device = valueAfter("-init_hw_device") ?? "";
    const named = /^vaapi=(\w+):\/dev\/dri\/renderD\d+$/.exec(device)?.[1];
    if (!named || valueAfter("-filter_hw_device") !== named) return "No VA-API device opened";
    if (!/hwupload,scale_vaapi=/.test(filters)) return "Impossible to convert between the formats";
  }
  if (kind === "nvenc" && !filters.endsWith("format=yuv420p,setsar=1")) {
    return "[h264_nvenc] Unsupported pixel format";
  }
  if (kind === "qsv" && !filters.endsWith("format=nv12,setsar=1")) {
    return "[h264_qsv] Unsupported pixel format";
  }
  return undefined;
}
