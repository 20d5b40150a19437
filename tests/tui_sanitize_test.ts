import assert from "node:assert/strict";
import { BLANK_RUN_MARKER, SANITIZE_DEFAULTS, sanitizeForDisplay } from "../client/tui/sanitize.ts";

const clean = (text: string) => sanitizeForDisplay(text);

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

const hex = (code: number) => `U+${code.toString(16).toUpperCase().padStart(4, "0")}`;

/** The invisible characters issue 12 names, and their relatives. */
const INVISIBLE = [
  ...range(0x200b, 0x200f),
  ...range(0x202a, 0x202e),
  ...range(0x2060, 0x2064),
  ...range(0x2066, 0x2069),
  0xfeff,
  0x061c,
  0x180e,
  ...range(0xe0000, 0xe007f),
  // Relatives: soft hyphen, grapheme joiner, Hangul fillers, Khmer invisible vowels, Mongolian
  // free variation selectors, deprecated format characters, interlinear annotation.
  0x00ad,
  0x034f,
  0x115f,
  0x1160,
  0x3164,
  0xffa0,
  0x17b4,
  0x17b5,
  ...range(0x180b, 0x180d),
  ...range(0x206a, 0x206f),
  ...range(0xfff9, 0xfffb),
];

Deno.test("sanitize: every invisible character is removed, alone and between letters", () => {
  for (const code of INVISIBLE) {
    const char = String.fromCodePoint(code);
    assert.equal(clean(`a${char}b`), "ab", hex(code));
    assert.equal(clean(char), "", hex(code));
    assert.equal(clean(`${char}${char}x${char}`), "x", hex(code));
  }
});

Deno.test("sanitize: invisible characters cannot hide in an emoji or after an accent", () => {
  // A skin tone cut off from its emoji by an invisible character is a stray and goes too.
  assert.equal(clean("👍\u200B🏽"), "👍");
  assert.equal(clean("\t\u{E0041}🏽x"), " x");
  assert.equal(clean("e\u0301\u2066x"), "e\u0301x");
  assert.equal(clean("🏴\u{E0067}\u{E0062}\u{E0073}\u{E0063}\u{E0074}\u{E007F}"), "🏴");
  // The emoji joiner goes too: terminals that do not join draw the parts, three times wider.
  assert.equal(clean("👨\u200D👩\u200D👧"), "👨👩👧");
});

Deno.test("sanitize: C0 controls become visible symbols, C1 controls U+FFFD", () => {
  for (const code of [...range(0x00, 0x08), ...range(0x0a, 0x1f)]) {
    assert.equal(
      clean(`a${String.fromCharCode(code)}b`),
      `a${String.fromCharCode(0x2400 + code)}b`,
    );
  }
  assert.equal(clean("a\x7fb"), "a\u2421b");
  for (const code of range(0x80, 0x9f)) {
    assert.equal(clean(`a${String.fromCharCode(code)}b`), "a\uFFFDb", hex(code));
  }
});

Deno.test("sanitize: escape sequences are shown, never obeyed", () => {
  const attacks = [
    "\x1b[2J\x1b[H",
    "\x1b]0;pwned\x07",
    "\x1b]8;;http://evil\x1b\\link\x1b]8;;\x1b\\",
    "\x9b31m",
    "\x1bP+q\x1b\\",
    "back\x08\x08\x08\x08fake",
    "over\rwrite",
  ];
  for (const attack of attacks) {
    const shown = clean(attack);
    // deno-lint-ignore no-control-regex -- asserting that no control survives
    assert.doesNotMatch(shown, /[\x00-\x1f\x7f-\x9f]/, JSON.stringify(attack));
  }
  assert.equal(clean("hi\x1b[2J"), "hi␛[2J");
  assert.equal(clean("a\r\nb"), "a␍␊b");
});

Deno.test("sanitize: a long run of blanks becomes one marker, short runs stay", () => {
  const fake = "hi" + " ".repeat(200) + "[00:01] bob: hi";
  assert.equal(clean(fake), `hi${BLANK_RUN_MARKER}[00:01] bob: hi`);
  const max = SANITIZE_DEFAULTS.maxBlankRun;
  assert.equal(clean(`a${" ".repeat(max)}b`), `a${" ".repeat(max)}b`);
  assert.equal(clean(`a${" ".repeat(max + 1)}b`), `a${BLANK_RUN_MARKER}b`);
  // Every kind of blank counts toward a run: tabs, no-break, ideographic, braille blank.
  assert.equal(clean("a\t\u00a0\u3000\u2800\u2003 b"), `a${BLANK_RUN_MARKER}b`);
  assert.equal(clean("a\u00a0b\u3000c"), "a b c");
  // Invisible characters between the blanks do not split the run.
  assert.equal(clean(`a${" \u200B".repeat(50)}b`), `a${BLANK_RUN_MARKER}b`);
  assert.equal(clean(" ".repeat(30)), BLANK_RUN_MARKER);
  assert.equal(sanitizeForDisplay("x", { maxBlankRun: 0 }), "x");
  assert.equal(sanitizeForDisplay("a  b", { maxBlankRun: 1 }), `a${BLANK_RUN_MARKER}b`);
});

Deno.test("sanitize: newlines show as ␊ unless kept for wrapping", () => {
  assert.equal(clean("one\ntwo"), "one␊two");
  assert.equal(sanitizeForDisplay("one\r\ntwo\nthree", { newlines: "keep" }), "one\ntwo\nthree");
  assert.equal(sanitizeForDisplay("one\rtwo", { newlines: "keep" }), "one␍two");
  assert.equal(clean("a\u2028b\u2029c"), "a␤b␤c");
});

Deno.test("sanitize: real text is unchanged", () => {
  const texts = [
    "hello, world!",
    "日本語のテキスト 한국어",
    "café naïve e\u0301",
    "❤️ 👍🏽 🇫🇷 1️⃣ ☺︎",
    "مرحبا بالعالم",
    "שלום",
    "क्षि स्त्री",
    "Ελληνικά Кириллица",
    "a\u00a0b".replace("\u00a0", " "),
    "\u0600123",
  ];
  for (const text of texts) assert.equal(clean(text), text, text);
});

Deno.test("sanitize: variation selectors only right after the character they modify", () => {
  assert.equal(clean("\u2764\uFE0F"), "\u2764\uFE0F");
  assert.equal(clean("\uFE0Fx"), "x");
  assert.equal(clean("\u2764\uFE0F\uFE0F\uFE0E"), "\u2764\uFE0F");
  assert.equal(clean(" \uFE0F"), " ");
  assert.equal(clean("\u845B\u{E0100}"), "\u845B\u{E0100}");
});

Deno.test("sanitize: stacked accents are capped, stray ones dropped", () => {
  const zalgo = "a" + "\u0301".repeat(100) + "b";
  const max = SANITIZE_DEFAULTS.maxMarks;
  assert.equal(clean(zalgo), "a" + "\u0301".repeat(max) + "b");
  assert.equal(clean("\u0301\u0302start"), "start");
  assert.equal(clean(`x ${"\u0301".repeat(10)}y`), "x y");
  assert.equal(sanitizeForDisplay(zalgo, { maxMarks: 1 }), "a\u0301b");
});

Deno.test("sanitize: lone surrogates become U+FFFD", () => {
  assert.equal(clean("\ud800z\udfff"), "\uFFFDz\uFFFD");
});

/** A small deterministic generator, so a failure can be replayed. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state * 1664525 + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

const HOSTILE_POOL = [
  ...range(0x00, 0x20),
  ...range(0x7f, 0xa0),
  ...INVISIBLE,
  0x0301,
  0x0302,
  0xfe0f,
  0xfe0e,
  0x2028,
  0x3000,
  0x2800,
  0x1f44d,
  0x1f3fd,
  0x65e5,
  0x61,
  0x5b,
  0x20,
];

Deno.test("sanitize: random hostile text comes out clean, and the same when sanitized again", () => {
  const next = random(12);
  const forbidden = new Set(INVISIBLE.concat(range(0x00, 0x1f), range(0x7f, 0x9f), [0x2028]));
  for (let round = 0; round < 500; round++) {
    const codes = Array.from(
      { length: Math.floor(next() * 80) },
      () => HOSTILE_POOL[Math.floor(next() * HOSTILE_POOL.length)],
    );
    const text = String.fromCodePoint(...codes);
    const shown = clean(text);
    for (const char of shown) {
      const code = char.codePointAt(0)!;
      assert.ok(!forbidden.has(code), `${hex(code)} survived in ${JSON.stringify(text)}`);
    }
    assert.ok(!shown.includes(" ".repeat(SANITIZE_DEFAULTS.maxBlankRun + 1)), JSON.stringify(text));
    assert.equal(clean(shown), shown, JSON.stringify(text));
  }
});
