/**
 * What a terminal would show after some output: enough of a terminal for the sequences the
 * client writes (CR, LF, erase line, erase below, cursor up, right and to a column; colors are
 * skipped), with unlimited rows so the whole transcript stays readable. Tests use it to count
 * the lines a person would see, apart from the redraws of the status line and the prompt.
 *
 * A full emulator (`@xterm/headless`) would do too, but is built for a browser; this is the
 * dozen sequences the client uses, one character per column (the tests' text is ASCII and a few
 * one-column symbols).
 *
 * @module
 */

/** A terminal screen fed with output. */
export class Screen {
  readonly #rows: string[][] = [[]];
  #row = 0;
  #col = 0;
  /** How many times the bell rang. */
  bells = 0;

  /** Interprets `text`, as the terminal would. */
  feed(text: string): void {
    // deno-lint-ignore no-control-regex -- terminal output is what this reads
    const token = /\x1b\[([0-9;?]*)([A-Za-z])|\x1b\][^\x07]*\x07|\x1b.|[\s\S]/gu;
    for (const match of text.matchAll(token)) {
      if (match[2] !== undefined) this.#csi(match[1], match[2]);
      else if (!match[0].startsWith("\x1b")) this.#char(match[0]);
    }
  }

  /** Every row, without trailing blanks; the last rows are the status line and the prompt. */
  lines(): string[] {
    const lines = this.#rows.map((row) => row.join("").trimEnd());
    while (lines.length > 1 && lines.at(-1) === "") lines.pop();
    return lines;
  }

  #char(char: string): void {
    if (char === "\r") this.#col = 0;
    else if (char === "\n") this.#moveTo(this.#row + 1);
    else if (char === "\x07") this.bells++;
    else if (char >= " ") {
      const row = this.#rows[this.#row];
      while (row.length < this.#col) row.push(" ");
      row[this.#col++] = char;
    }
  }

  #csi(params: string, final: string): void {
    const n = Number(params.split(";")[0]) || 0;
    switch (final) {
      case "K":
        if (n === 2) this.#rows[this.#row] = [];
        else this.#rows[this.#row].length = Math.min(this.#rows[this.#row].length, this.#col);
        break;
      case "J":
        this.#rows.length = this.#row + 1;
        this.#rows[this.#row].length = Math.min(this.#rows[this.#row].length, this.#col);
        break;
      case "A":
        this.#row = Math.max(0, this.#row - Math.max(1, n));
        break;
      case "C":
        this.#col += Math.max(1, n);
        break;
      case "G":
        this.#col = Math.max(0, n - 1);
        break;
    }
  }

  #moveTo(row: number): void {
    this.#row = row;
    while (this.#rows.length <= row) this.#rows.push([]);
  }
}
