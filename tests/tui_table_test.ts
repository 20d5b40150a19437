import assert from "node:assert/strict";
import { renderTable, type TableColumn } from "../client/tui/table.ts";
import { displayWidth } from "../client/tui/width.ts";

const VIDEO_COLUMNS: TableColumn[] = [
  { header: "VIDEO", priority: 3, minWidth: 12 },
  { header: "LENGTH", priority: 2 },
  { header: "SOURCE" },
  { header: "FPS" },
  { header: "AUDIO" },
  { header: "PLAYS AT (BY THIRDS)", priority: 1, minWidth: 16 },
];

const VIDEO_ROWS = [
  ["Big Buck Bunny (2008) 1080p.mp4", "9:56", "1920x1080", "30", "yes", "144p, 720p, 1080p"],
  ["日本の夏.webm", "1:02:05", "3840x2160", "29.97", "no", "144p, 720p, 1440p"],
  ["cats 🐈.mp4", "0:41", "640x360", "25", "yes", "144p, 360p (720p capped), 360p"],
];

const WHO_ROWS = [
  ["alice", "aaaa:bbbb:cccc:dddd:eeee:ffff:0000:1111:2222:3333", "pinned"],
  [
    "bob_the_builder_with_long_name",
    "1234:5678:9abc:def0:1234:5678:9abc:def0:1234:5678",
    "changed",
  ],
];

/** The display column where each header starts, found in the header line. */
function headerColumns(header: string, names: readonly string[]): number[] {
  return names.map((name) => {
    const at = header.indexOf(name);
    return at < 0 ? -1 : displayWidth(header.slice(0, at));
  });
}

Deno.test("table: fits 40, 60, 80 and 120 columns, lines never end in spaces", () => {
  for (const width of [40, 60, 80, 120]) {
    for (
      const [columns, rows] of [[VIDEO_COLUMNS, VIDEO_ROWS], [
        ["NAME", "FINGERPRINT", "TRUST"],
        WHO_ROWS,
      ]] as const
    ) {
      const lines = renderTable(columns, rows, width);
      assert.equal(lines.length, rows.length + 1);
      for (const line of lines) {
        assert.ok(displayWidth(line) <= width, `${JSON.stringify(line)} wider than ${width}`);
        assert.equal(line, line.trimEnd());
      }
    }
  }
});

Deno.test("table: the lowest priority columns go first, the important ones stay", () => {
  const shown = (width: number) => {
    const [header] = renderTable(VIDEO_COLUMNS, VIDEO_ROWS, width);
    return VIDEO_COLUMNS.map((c) => c.header).filter((h) => header.includes(h.slice(0, 5)));
  };
  assert.deepEqual(shown(40), ["VIDEO", "LENGTH", "PLAYS AT (BY THIRDS)"]);
  assert.deepEqual(shown(60), ["VIDEO", "LENGTH", "SOURCE", "FPS", "PLAYS AT (BY THIRDS)"]);
  assert.deepEqual(shown(80), VIDEO_COLUMNS.map((c) => c.header));
  assert.deepEqual(shown(120), VIDEO_COLUMNS.map((c) => c.header));
  // With room, nothing is cut.
  const wide = renderTable(VIDEO_COLUMNS, VIDEO_ROWS, 120).join("\n");
  assert.ok(!wide.includes("…"));
  // Short columns are shown whole or not at all; durations are never cut.
  for (const width of [40, 60, 80]) {
    const text = renderTable(VIDEO_COLUMNS, VIDEO_ROWS, width).join("\n");
    assert.ok(text.includes("1:02:05"), `at ${width}`);
    for (const cell of ["9:56", "0:41", "1920x1080"]) {
      if (width >= 60 || cell.includes(":")) assert.ok(text.includes(cell), `${cell} at ${width}`);
    }
  }
});

Deno.test("table: at 60 columns the /who table keeps every column, cutting fingerprints", () => {
  const lines = renderTable(["NAME", "FINGERPRINT", "TRUST"], WHO_ROWS, 60);
  assert.match(lines[0], /^NAME +FINGERPRINT +TRUST$/);
  assert.match(lines[1], /^alice +aaaa:bbbb:cccc:dddd:\S*… +pinned$/);
  assert.match(lines[2], /^bob_the_builder\S*… +1234:\S*… +changed$/);
});

Deno.test("table: numbers are right-aligned, text left-aligned, by display width", () => {
  const lines = renderTable(VIDEO_COLUMNS, VIDEO_ROWS, 120);
  const [video, length, source, fps] = headerColumns(lines[0], [
    "VIDEO",
    "LENGTH",
    "SOURCE",
    "FPS",
  ]);
  const lengthEnd = length + "LENGTH".length;
  const fpsEnd = fps + "FPS".length;
  for (const [i, row] of VIDEO_ROWS.entries()) {
    const line = lines[i + 1];
    const columnOf = (cell: string) => displayWidth(line.slice(0, line.indexOf(cell)));
    assert.equal(columnOf(row[0]), video);
    assert.equal(columnOf(row[1]) + row[1].length, lengthEnd, line);
    assert.equal(columnOf(row[2]), source, line);
    assert.equal(columnOf(row[3]) + row[3].length, fpsEnd, line);
  }
  const forced = renderTable(
    [{ header: "N", align: "start" }, "X"],
    [["7", "a"], ["1000", "b"]],
    40,
  );
  assert.deepEqual(forced, ["N     X", "7     a", "1000  b"]);
});

Deno.test("table: CJK and emoji cells are cut and padded by columns", () => {
  const lines = renderTable(
    [{ header: "NAME" }, { header: "N" }],
    [["日本語のとても長い名前です", "1"], ["👍🏽👍🏽👍🏽👍🏽👍🏽👍🏽👍🏽👍🏽", "22"]],
    15,
  );
  assert.deepEqual(lines, ["NAME          N", "日本語のと…   1", "👍🏽👍🏽👍🏽👍🏽👍🏽…  22"]);
});

Deno.test("table: tiny widths, missing cells and no rows", () => {
  assert.deepEqual(renderTable(["NAME", "TRUST"], [["alice"]], 40), ["NAME   TRUST", "alice"]);
  assert.deepEqual(renderTable(["NAME", "TRUST"], [], 40), ["NAME  TRUST"]);
  for (const width of [0, 1, 3, 5, 8]) {
    for (const line of renderTable(VIDEO_COLUMNS, VIDEO_ROWS, width)) {
      assert.ok(displayWidth(line) <= width, `${JSON.stringify(line)} wider than ${width}`);
    }
  }
});

Deno.test("table: hostile cells cannot break the table or the terminal", () => {
  const lines = renderTable(["VIDEO", "LENGTH"], [
    ["evil\x1b[2J\nfake line.mp4", "1:00"],
    ["spaces" + " ".repeat(200) + "[00:01] bob: hi", "2:00"],
    ["bidi\u202Egnp.mp4\u200B", "3:00"],
  ], 60);
  assert.equal(lines.length, 4);
  // deno-lint-ignore no-control-regex -- asserting that no control survives
  for (const line of lines) assert.doesNotMatch(line, /[\x00-\x1f\x7f-\x9f\u200B\u202E]/);
  assert.match(lines[1], /^evil␛\[2J␊fake line\.mp4 +1:00$/);
  assert.match(lines[3], /^bidignp\.mp4 +3:00$/);
});
