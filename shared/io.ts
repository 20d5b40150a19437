/**
 * Byte output that survives short writes: sockets, pipes and terminals all accept fewer bytes
 * than offered at times.
 *
 * @module
 */

/** Anything with a `write` that may accept only part of what it is given. */
export interface PartialWriter {
  write(bytes: Uint8Array): Promise<number>;
}

/**
 * Writes all of `bytes`, calling `write` again for whatever a short write left over.
 *
 * @example
 * ```ts
 * import { writeAll } from "./io.ts";
 * await writeAll(Deno.stdout, new TextEncoder().encode("done\n"));
 * ```
 */
export async function writeAll(writer: PartialWriter, bytes: Uint8Array): Promise<void> {
  let rest = bytes;
  while (rest.length > 0) {
    const written = await writer.write(rest);
    // A writer that accepts nothing would spin forever; treat it as broken.
    if (written <= 0) throw new Error("The output accepted no bytes");
    rest = rest.subarray(written);
  }
}

/** Anything with a synchronous `writeSync` that may accept only part of what it is given. */
export interface PartialSyncWriter {
  writeSync(bytes: Uint8Array): number;
}

/**
 * Writes all of `bytes` synchronously (for output that must never interleave with other
 * output, such as lines printed above a prompt).
 *
 * @example
 * ```ts
 * import { writeAllSync } from "./io.ts";
 * writeAllSync(Deno.stderr, new TextEncoder().encode("done\n"));
 * ```
 */
export function writeAllSync(writer: PartialSyncWriter, bytes: Uint8Array): void {
  let rest = bytes;
  while (rest.length > 0) {
    const written = writer.writeSync(rest);
    if (written <= 0) throw new Error("The output accepted no bytes");
    rest = rest.subarray(written);
  }
}

/**
 * Writes one line to stderr (for messages that end the program).
 *
 * @example
 * ```ts
 * import { printError } from "./io.ts";
 * await printError("reelay: port 9000 is in use");
 * ```
 */
export async function printError(line: string): Promise<void> {
  await writeAll(Deno.stderr, new TextEncoder().encode(line.endsWith("\n") ? line : `${line}\n`));
}

/**
 * Writes one line to stdout (a command's one result, such as a fingerprint).
 *
 * @example
 * ```ts
 * import { printLine } from "./io.ts";
 * await printLine("SHA256:...");
 * ```
 */
export async function printLine(line: string): Promise<void> {
  await writeAll(Deno.stdout, new TextEncoder().encode(line.endsWith("\n") ? line : `${line}\n`));
}
