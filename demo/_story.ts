/**
 * How the demos tell their story: numbered steps naming the files that do the work, and each
 * client event shown as the terminal client shows it.
 *
 * @module
 */

import {
  type ClientEvent,
  type ClientSession,
  openSession,
  type StreamSink,
} from "../client/mod.ts";
import { EventFormatter } from "../client/tui/format.ts";
import { errorDetail } from "../shared/errors.ts";
import { printError, writeAll } from "../shared/io.ts";

const color = Deno.stdout.isTerminal() && !Deno.env.get("NO_COLOR");
/** Colours `text` with the SGR `code` when stdout is a colour terminal. */
export const paint = (code: string, text: string): string =>
  color ? `\x1b[${code}m${text}\x1b[0m` : text;
const formatter = new EventFormatter({ color });
let step = 0;

/** Prints one line. */
export async function out(line: string): Promise<void> {
  await writeAll(Deno.stdout, new TextEncoder().encode(`${line}\n`));
}

/** Starts the next numbered step, naming the files that do it. */
export async function chapter(title: string, where: string): Promise<void> {
  step++;
  await out(`\n${paint("1", `${step}. ${title}`)}  ${paint("2", `(${where})`)}`);
}

/** Shows a client event as the terminal client would, after who saw it. */
export function say(who: string, event: ClientEvent): Promise<void> {
  const [first, ...rest] = formatter.format(event).split("\n");
  const indent = " ".repeat(9);
  return out(
    [`   ${paint("36", who.padEnd(5))} ${first}`, ...rest.map((line) => indent + line)].join("\n"),
  );
}

/** Resolves with the first event from `session` that matches. */
export function next<N extends ClientEvent["event"]>(
  events: ClientEvent[],
  session: ClientSession,
  name: N,
  where: (event: Extract<ClientEvent, { event: N }>) => boolean = () => true,
): Promise<Extract<ClientEvent, { event: N }>> {
  const match = (event: ClientEvent): event is Extract<ClientEvent, { event: N }> =>
    event.event === name && where(event as Extract<ClientEvent, { event: N }>);
  const seen = events.find(match);
  if (seen) return Promise.resolve(seen);
  return new Promise((resolve) => session.onEvent((event) => match(event) && resolve(event)));
}

/** Joins a scripted client on loopback, recording its events. */
export async function join_(
  port: number,
  name: string,
  home: string,
  sinks?: (video: string) => StreamSink,
): Promise<{ session: ClientSession; events: ClientEvent[] }> {
  const session = await openSession({ hostname: "127.0.0.1", port, name, home, sinks });
  const events: ClientEvent[] = [];
  session.onEvent((event) => events.push(event));
  return { session, events };
}

/** Runs a demo in a temporary folder it removes afterwards; returns the exit code. */
export async function runDemo(
  prefix: string,
  demo: (root: string) => Promise<void>,
): Promise<number> {
  const root = await Deno.makeTempDir({ prefix });
  try {
    await demo(root);
    return 0;
  } catch (error) {
    await printError(`demo failed: ${errorDetail(error)}`);
    return 1;
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}
