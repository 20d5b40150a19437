import assert from "node:assert/strict";
import {
  DEFAULT_FAST_START,
  detectEncoder,
  type Encoder,
  encoderArgs,
  keyframeExpression,
  parseEncoderSetting,
  type Runner,
  runProgram,
  trialArgs,
} from "../server/media/encoders.ts";
import { ReelayError, UsageError } from "../shared/errors.ts";
import { within } from "./_deadline.ts";
import { makeMediaDir, stderrOf, streamsOf } from "./_media.ts";
import { generateVideo } from "../testing/sample_video.ts";
import { run } from "../testing/processes.ts";
import { ffmpegChildren, stillRunning } from "./_procs.ts";
import { joinClient, startLoggedServer } from "../testing/harness.ts";

const FAKE = new URL("./_fake_ffmpeg.ts", import.meta.url).pathname;
const VAAPI: Encoder = { kind: "vaapi", device: "/dev/dri/renderD128" };
const PART = { width: 1280, height: 720, fps: 30, maxrate: 3_317_760 };
const COLOUR = "-colorspace bt709 -color_primaries bt709 -color_trc bt709 -color_range tv"
  .split(" ");
const CPU_720 = "scale=1280:720:out_color_matrix=bt709:out_range=tv";
const FAST_KEYS =
  "expr:if(isnan(prev_forced_t),1,gte(t-prev_forced_t,if(lte(n_forced,2),0.5,2)-0.016667))";

/** The fake ffmpeg as a runner: `hardware` is what the pretend machine has. */
function fakeMachine(dir: string, hardware: string[], hang?: string): Runner {
  const flags = [`--hardware=${hardware.join(",")}`, `--log=${dir}/trials.log`];
  if (hang) flags.push(`--hang=${hang}`);
  return (_program, args, timeoutMs) =>
    runProgram(
      "deno",
      ["run", "--quiet", `--allow-write=${dir}`, FAKE, ...flags, "--", ...args],
      timeoutMs,
    );
}

async function trialLog(dir: string): Promise<{ pid: number; codec: string }[]> {
  const text = await Deno.readTextFile(`${dir}/trials.log`).catch(() => "");
  return text.split("\n").filter((line) => line !== "").map((line) => JSON.parse(line));
}

Deno.test("the encoder setting accepts its five values in any case and quotes a bad one", () => {
  assert.equal(parseEncoderSetting(" Auto "), "auto");
  assert.equal(parseEncoderSetting("VAAPI"), "vaapi");
  assert.equal(parseEncoderSetting("software"), "software");
  assert.throws(
    () => parseEncoderSetting("cuda"),
    (error: unknown) =>
      error instanceof UsageError && error.code === "bad-encoder" &&
      error.message.includes('"cuda"'),
  );
});

Deno.test("software arguments: CRF 23 with the cap, 2 s GOP, CPU scale into bt709", () => {
  assert.deepEqual(encoderArgs({ kind: "software" }, PART), {
    deviceArgs: [],
    perInputArgs: [],
    filterTail: `${CPU_720},format=yuv420p,setsar=1`,
    outputArgs: [
      ...["-c:v", "libx264", "-preset", "veryfast", "-crf", "23"],
      ...["-maxrate", "3317760", "-bufsize", "6635520", "-g", "60"],
      ...COLOUR,
    ],
  });
  const custom = encoderArgs({ kind: "software" }, {
    ...PART,
    preset: "ultrafast",
    quality: 28,
    gopSeconds: 4,
  });
  assert.deepEqual(custom.outputArgs.slice(0, 12), [
    ...["-c:v", "libx264", "-preset", "ultrafast", "-crf", "28"],
    ...["-maxrate", "3317760", "-bufsize", "6635520", "-g", "120"],
  ]);
});

Deno.test("software fast start: zerolatency, short first GOP, small probe", () => {
  const args = encoderArgs({ kind: "software" }, { ...PART, fastStart: DEFAULT_FAST_START });
  assert.deepEqual(args.perInputArgs, ["-probesize", "65536", "-analyzeduration", "0"]);
  assert.deepEqual(args.outputArgs, [
    ...["-c:v", "libx264", "-preset", "veryfast", "-crf", "23"],
    ...["-maxrate", "3317760", "-bufsize", "6635520", "-g", "60"],
    ...["-force_key_frames", FAST_KEYS, "-tune", "zerolatency"],
    ...COLOUR,
  ]);
});

Deno.test("VA-API arguments: device opened, frames uploaded, GPU scale, VBR under the cap", () => {
  assert.deepEqual(encoderArgs(VAAPI, PART), {
    deviceArgs: [
      ...["-init_hw_device", "vaapi=reelay_va:/dev/dri/renderD128"],
      ...["-filter_hw_device", "reelay_va"],
    ],
    perInputArgs: [],
    filterTail: "setsar=1,format=nv12,hwupload," +
      "scale_vaapi=w=1280:h=720:format=nv12:out_color_matrix=bt709:out_range=tv",
    outputArgs: [
      ...["-c:v", "h264_vaapi", "-rc_mode", "VBR", "-b:v", "1658880"],
      ...["-maxrate", "3317760", "-bufsize", "6635520", "-g", "60"],
      ...COLOUR,
    ],
  });
  const fast = encoderArgs(VAAPI, { ...PART, fastStart: DEFAULT_FAST_START });
  assert.deepEqual(fast.outputArgs.slice(12, -8), [
    ...["-force_key_frames", FAST_KEYS, "-bf", "0", "-async_depth", "1"],
  ]);
});

Deno.test("NVENC arguments: constant-quality VBR with the cap, IDR keyframes when fast", () => {
  assert.deepEqual(encoderArgs({ kind: "nvenc" }, PART), {
    deviceArgs: [],
    perInputArgs: [],
    filterTail: `${CPU_720},format=yuv420p,setsar=1`,
    outputArgs: [
      ...["-c:v", "h264_nvenc", "-preset", "p4", "-rc", "vbr", "-cq", "23", "-b:v", "0"],
      ...["-maxrate", "3317760", "-bufsize", "6635520", "-g", "60"],
      ...COLOUR,
    ],
  });
  const fast = encoderArgs({ kind: "nvenc" }, { ...PART, fastStart: DEFAULT_FAST_START });
  assert.deepEqual(fast.outputArgs.slice(16, -8), [
    ...["-force_key_frames", FAST_KEYS, "-forced-idr", "1"],
    ...["-tune", "ll", "-zerolatency", "1", "-delay", "0", "-bf", "0"],
  ]);
});

Deno.test("Quick Sync arguments: NV12 from the CPU, VBR under the cap, IDR keyframes when fast", () => {
  assert.deepEqual(encoderArgs({ kind: "qsv" }, PART), {
    deviceArgs: [],
    perInputArgs: [],
    filterTail: `${CPU_720},format=nv12,setsar=1`,
    outputArgs: [
      ...["-c:v", "h264_qsv", "-preset", "veryfast", "-b:v", "1658880"],
      ...["-maxrate", "3317760", "-bufsize", "6635520", "-g", "60"],
      ...COLOUR,
    ],
  });
  const fast = encoderArgs({ kind: "qsv" }, { ...PART, fastStart: DEFAULT_FAST_START });
  assert.deepEqual(fast.outputArgs.slice(12, -8), [
    ...["-force_key_frames", FAST_KEYS, "-forced_idr", "1"],
    ...["-bf", "0", "-async_depth", "1", "-look_ahead", "0"],
  ]);
});

Deno.test("bad sizes, rates, caps and device paths are refused with the value quoted", () => {
  assert.throws(() => encoderArgs({ kind: "software" }, { ...PART, width: 1279 }), /"1279x720"/);
  assert.throws(() => encoderArgs({ kind: "software" }, { ...PART, fps: 0 }), /"0"/);
  assert.throws(() => encoderArgs({ kind: "software" }, { ...PART, maxrate: -1 }), /"-1"/);
  assert.throws(
    () => encoderArgs({ kind: "vaapi", device: "/dev/dri/x,y=z" }, PART),
    (error: unknown) => error instanceof UsageError && error.message.includes('"/dev/dri/x,y=z"'),
  );
  assert.throws(() => encoderArgs({ kind: "vaapi" }, PART), /VA-API device ""/);
  assert.throws(
    () => keyframeExpression(30, 2, { shortGopSeconds: 0, shortWindowSeconds: 1 }),
    /"0\/1\/2"/,
  );
});

Deno.test("a trial encodes one frame through the part's own device, filter and codec options", () => {
  const args = trialArgs(VAAPI);
  const parts = encoderArgs(VAAPI, { width: 256, height: 144, fps: 25, maxrate: 300_000 });
  assert.deepEqual(args.slice(5, 9), parts.deviceArgs);
  assert.equal(args[args.indexOf("-vf") + 1], parts.filterTail);
  assert.equal(args[args.indexOf("-frames:v") + 1], "1");
  assert.deepEqual(args.slice(-3), ["-f", "null", "-"]);
  assert.ok(args.indexOf("-init_hw_device") < args.indexOf("-i"));
});

Deno.test("real ffmpeg here: every hardware trial fails cleanly and software is chosen", async () => {
  const { encoder, trials } = await within(
    detectEncoder({ vaapiDevice: "/dev/dri/renderD128", trialTimeoutMs: 10_000 }),
    40_000,
    "detection with real ffmpeg",
  );
  assert.deepEqual(encoder, { kind: "software" });
  assert.deepEqual(trials.map((trial) => [trial.kind, trial.ok]), [
    ["vaapi", false],
    ["nvenc", false],
    ["qsv", false],
  ]);
  for (const trial of trials) {
    // ffmpeg's own words (no device, no driver) come with the exit code.
    assert.match(trial.detail, /^ffmpeg exited with code \d+:\n\S/, trial.detail);
  }
  assert.equal(await ffmpegChildren(), 0, "no ffmpeg left behind");
});

Deno.test("real ffmpeg here: forcing NVENC is a startup error naming it and quoting ffmpeg", async () => {
  const error = await within(
    detectEncoder({ setting: "nvenc" }).then(() => undefined, (error: unknown) => error),
    20_000,
    "forced NVENC",
  );
  assert.ok(error instanceof ReelayError, String(error));
  assert.equal(error.code, "encoder-unavailable");
  assert.match(error.message, /^Encoder "nvenc" \(h264_nvenc\) failed its trial encode: ffmpeg/);
  assert.ok(error.message.split("\n").length > 1, "ffmpeg's last lines are quoted");
  assert.equal(await ffmpegChildren(), 0);
});

Deno.test("real ffmpeg past its deadline is killed and awaited, not left running", async () => {
  const result = await within(runProgram("ffmpeg", trialArgs(VAAPI), 1), 10_000, "the kill");
  assert.equal(result.timedOut, true);
  assert.notEqual(result.code, 0);
  assert.equal(await ffmpegChildren(), 0);
});

Deno.test("forcing software runs no trial at all", async () => {
  let runs = 0;
  const counting: Runner = () => {
    runs++;
    return Promise.resolve({ code: 0, stderr: "", timedOut: false });
  };
  const detection = await detectEncoder({ setting: "software", run: counting });
  assert.deepEqual(detection, { encoder: { kind: "software" }, trials: [] });
  assert.equal(runs, 0);
});

Deno.test("fake GPUs: detection tries VA-API, NVENC, Quick Sync in order; the first that works wins", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const cases: [string[], string, string[]][] = [
      [["vaapi", "nvenc", "qsv"], "vaapi", ["h264_vaapi"]],
      [["nvenc", "qsv"], "nvenc", ["h264_vaapi", "h264_nvenc"]],
      [["qsv"], "qsv", ["h264_vaapi", "h264_nvenc", "h264_qsv"]],
      [[], "software", ["h264_vaapi", "h264_nvenc", "h264_qsv"]],
    ];
    for (const [hardware, chosen, tried] of cases) {
      await Deno.remove(`${dir}/trials.log`).catch(() => {});
      const detection = await within(
        detectEncoder({
          vaapiDevice: "/dev/dri/renderD129",
          run: fakeMachine(dir, hardware),
          trialTimeoutMs: 20_000,
        }),
        60_000,
        `detection on a machine with ${hardware.join(",") || "no GPU"}`,
      );
      assert.equal(detection.encoder.kind, chosen, `hardware ${hardware}`);
      const log = await trialLog(dir);
      assert.deepEqual(log.map((entry) => entry.codec), tried);
      assert.deepEqual(await stillRunning(log.map((entry) => entry.pid)), []);
      if (chosen === "vaapi") assert.equal(detection.encoder.device, "/dev/dri/renderD129");
      if (chosen === "software") {
        assert.match(detection.trials[1].detail, /exited with code 1:\n.*libcuda/);
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("fake GPUs: a hung trial is killed at its deadline and the next candidate wins", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const detection = await within(
      detectEncoder({
        vaapiDevice: "/dev/dri/renderD128",
        run: fakeMachine(dir, ["vaapi", "qsv"], "vaapi"),
        // Seconds of headroom: the fake ffmpeg is a deno process, slow to start on a busy machine,
        // and the trial that works must finish within the deadline too.
        trialTimeoutMs: 10_000,
      }),
      60_000,
      "detection past a hung VA-API trial",
    );
    assert.equal(detection.encoder.kind, "qsv");
    assert.deepEqual(detection.trials.map((trial) => [trial.kind, trial.ok]), [
      ["vaapi", false],
      ["nvenc", false],
      ["qsv", true],
    ]);
    assert.equal(detection.trials[0].detail, "ffmpeg did not finish within 10000 ms");
    const log = await trialLog(dir);
    assert.deepEqual(await stillRunning(log.map((entry) => entry.pid)), [], "hung trial reaped");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("fake GPUs: a forced encoder whose trial fails names itself and the device's error", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await assert.rejects(
      () =>
        detectEncoder({
          setting: "vaapi",
          vaapiDevice: "/dev/dri/renderD128",
          run: fakeMachine(dir, ["nvenc"]),
          trialTimeoutMs: 20_000,
        }),
      (error: unknown) =>
        error instanceof ReelayError && error.code === "encoder-unavailable" &&
        error.message.includes('Encoder "vaapi" (h264_vaapi)') &&
        error.message.includes("No VA display found"),
    );
    const forced = await detectEncoder({
      setting: "nvenc",
      run: fakeMachine(dir, ["nvenc"]),
      trialTimeoutMs: 20_000,
    });
    assert.deepEqual(forced.encoder, { kind: "nvenc", device: undefined });
    assert.deepEqual(forced.trials.map((trial) => trial.kind), ["nvenc"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

interface KeyPacket {
  time: number;
  key: boolean;
}

async function videoPackets(path: string): Promise<KeyPacket[]> {
  const stdout = await run("ffprobe", [
    ...["-v", "error", "-select_streams", "v:0", "-of", "json"],
    ...["-show_entries", "packet=pts_time,flags", path],
  ]);
  const packets = JSON.parse(new TextDecoder().decode(stdout)).packets as {
    pts_time: string;
    flags: string;
  }[];
  return packets.map((p) => ({ time: Number(p.pts_time), key: p.flags.startsWith("K") }))
    .sort((a, b) => a.time - b.time);
}

/** Encodes `source` with the software arguments as a part would, on a 10 s timestamp base. */
async function encodePart(source: string, out: string, fast: boolean): Promise<void> {
  const parts = encoderArgs({ kind: "software" }, {
    width: 640,
    height: 360,
    fps: 30,
    maxrate: 829_440,
    fastStart: fast ? DEFAULT_FAST_START : undefined,
  });
  await within(
    run("ffmpeg", [
      ...["-hide_banner", "-nostdin", "-loglevel", "error", "-copyts", "-start_at_zero"],
      ...parts.deviceArgs,
      ...parts.perInputArgs,
      ...["-itsoffset", "10", "-i", source, "-map", "0:v:0", "-map", "0:a:0"],
      ...["-vf", parts.filterTail, ...parts.outputArgs, "-c:a", "aac"],
      ...["-muxdelay", "0", "-muxpreload", "0", "-f", "mpegts", "-y", out],
    ]),
    60_000,
    "the software encode",
  );
}

Deno.test("a real software encode with the built arguments is valid MPEG-TS with the asked keyframes", async () => {
  const { dir } = await makeMediaDir("encoders");
  try {
    const source = `${dir}/source.mp4`;
    await generateVideo(source, {
      width: 1280,
      height: 720,
      rate: "30",
      seconds: 5,
      audioRate: 48000,
    });
    for (const fast of [true, false]) {
      const out = `${dir}/part-${fast}.ts`;
      await encodePart(source, out, fast);
      const probed = await run("ffprobe", ["-v", "error", "-of", "json", "-show_format", out]);
      const format = JSON.parse(new TextDecoder().decode(probed)).format;
      assert.equal(format.format_name, "mpegts");
      const video = (await streamsOf(out)).find((stream) => stream.codec_type === "video");
      assert.ok(video);
      assert.deepEqual(
        [video.codec_name, video.width, video.height, video.color_space, video.color_primaries],
        ["h264", 640, 360, "bt709", "bt709"],
      );
      assert.equal(video.color_transfer, "bt709");
      assert.equal(await stderrOf("ffmpeg", ["-v", "error", "-i", out, "-f", "null", "-"]), "");
      const packets = await videoPackets(out);
      assert.equal(packets.length, 150);
      const first = packets[0].time;
      assert.ok(Math.abs(first - 10) < 0.05, `part starts on the 10 s base, at ${first}`);
      const keyframes = packets.filter((p) => p.key).map((p) => Math.round((p.time - first) * 30));
      // Frames, counted from the part's start: 0.5 s apart for the first second, then 2 s.
      assert.deepEqual(keyframes, fast ? [0, 15, 30, 90] : [0, 60, 120], `fast start ${fast}`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the server logs the encoder it chose; /videos shows it; a forced one that fails stops it", async () => {
  const { dir } = await makeMediaDir("encoder");
  await generateVideo(`${dir}/clip.mp4`, { width: 64, height: 36, rate: "10", seconds: 1 });
  try {
    // auto on this machine: the hardware trials fail, software is the fallback.
    const server = await startLoggedServer((config) => config.server.videos = dir);
    try {
      const line = server.lines.find((l) => l.includes("Encoding with"));
      assert.match(line ?? "", /^info Encoding with libx264 \(software\) \(tried .*nvenc: /);
      const viewer = await joinClient(server.port, "ann");
      const [listing] = await viewer.session.listVideos();
      assert.equal(listing.encoder, "libx264 (software)");
      await viewer.session.quit();
    } finally {
      await server.stop();
    }
    await assert.rejects(
      () =>
        startLoggedServer((config) => {
          config.server.videos = dir;
          config.media.encoder = "nvenc";
        }),
      (error: unknown) =>
        error instanceof ReelayError && error.code === "encoder-unavailable" &&
        error.message.includes("h264_nvenc"),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
