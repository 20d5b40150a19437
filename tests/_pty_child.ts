/**
 * Runs a command inside a pseudo-terminal, for tests that drive the client as a person would
 * (Tab, arrows, the status line). util-linux `script` makes the terminal; this file exists so
 * the tests, which may run only `deno`, can start it:
 *
 *   deno run --allow-run=script tests/_pty_child.ts COLUMNS ROWS PROGRAM ARGS...
 *
 * Its stdin is typed into the terminal, the terminal's output is its stdout, and it exits with
 * the program's exit code. SIGTERM is passed on to `script`, which hangs up the terminal.
 *
 * @module
 */

function shellQuote(word: string): string {
  return `'${word.replaceAll("'", `'\\''`)}'`;
}

const [columns, rows, ...command] = Deno.args;
const child = new Deno.Command("script", {
  args: [
    "--quiet",
    "--flush",
    "--return",
    "--echo",
    "never",
    "--command",
    `stty cols ${Number(columns)} rows ${Number(rows)}; exec ${command.map(shellQuote).join(" ")}`,
    "/dev/null",
  ],
  stdin: "inherit",
  stdout: "inherit",
  stderr: "inherit",
}).spawn();
Deno.addSignalListener("SIGTERM", () => child.kill("SIGTERM"));
Deno.exit((await child.status).code);
