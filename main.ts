/**
 * reelay: one binary, two roles. `reelay server` serves a directory of people, end-to-end
 * encrypted chat relay and on-the-fly transcoded video; `reelay client` talks to it from a
 * terminal or a script.
 *
 * @module
 */

import { Command, CommanderError, Option } from "commander";
import denoConfig from "./deno.json" with { type: "json" };
import { EXIT_CODES, EXIT_USAGE, ReelayError, UsageError } from "./shared/errors.ts";
import { printError } from "./shared/io.ts";
import { runServer, type ServerFlags } from "./server/mod.ts";
import type { WorkerFlags } from "./server/cluster/worker.ts";
import { type ClientFlags, formatWait, HELP_TEXT, runClient } from "./client/mod.ts";
import { DEFAULT_CONFIG } from "./shared/config/mod.ts";

/** The version printed by `reelay --version`. */
export const VERSION: string = denoConfig.version;

function buildProgram(setExitCode: (code: number) => void): Command {
  const program = new Command("reelay")
    .description("LAN chat, end-to-end encrypted, and video transcoded on the fly")
    .version(VERSION, "-V, --version", "print the version")
    .helpOption("-h, --help", "show help")
    .showHelpAfterError()
    .exitOverride();

  program.command("server")
    .description("serve the directory, relay encrypted chat, and stream videos")
    .option("--host <host>", "address to listen on (config: [server] host, default 0.0.0.0)")
    .option("--port <port>", "TCP port; 0 picks a free one (config: [server] port, default 9000)")
    .option(
      "--videos <dir>",
      "folder of videos to offer (config: [server] videos, default ./videos)",
    )
    .option(
      "--state <dir>",
      "folder of the server's private key, owner-only (config: [server] state, default ./state)",
    )
    .option("--fingerprint", "print the server key's fingerprint (creating the key) and exit")
    .option(
      "--cluster <nats-url>",
      "run as a node of a cluster through NATS, e.g. nats://10.0.0.5:4222 (config: [cluster] url)",
    )
    .option("--config <file>", "config file", "config.ini")
    .showHelpAfterError()
    .exitOverride()
    .action(async (flags: ServerFlags, command: Command) => {
      setExitCode(await runServer({ ...flags, configGiven: isExplicit(command, "config") }));
    });

  program.command("worker")
    .description("transcode parts for the server nodes of a cluster (needs --cluster)")
    .option("--cluster <nats-url>", "the cluster's NATS, e.g. nats://10.0.0.5:4222 ([cluster] url)")
    .option("--videos <dir>", "the video library, the same files as the nodes' ([server] videos)")
    .option("--slots <n>", "parts transcoded at once ([cluster] worker_slots, default 2)")
    .option("--config <file>", "config file", "config.ini")
    .showHelpAfterError()
    .exitOverride()
    .action(async (flags: WorkerFlags, command: Command) => {
      // Loaded only here: nothing else of reelay needs the NATS client.
      const { runWorker } = await import("./server/cluster/run_worker.ts");
      setExitCode(await runWorker({ ...flags, configGiven: isExplicit(command, "config") }));
    });

  program.command("client")
    .description("join a server: chat, list and watch videos (reads commands from stdin)")
    .option(
      "--server <host:port>",
      "server to join, or a comma-separated list of one cluster's nodes (config: [client] server, default 127.0.0.1:9000)",
    )
    .option(
      "--name <name>",
      "your name: 1-32 letters, digits, _ - . (default: the one kept in your home; asked in a terminal)",
    )
    .option("--home <dir>", "where your keys live (env REELAY_HOME, default your config folder)")
    .option("--json", "print one JSON object per event on stdout")
    .option(
      "--no-reconnect",
      "when the connection is lost, exit 4 instead of reconnecting (config: [client] reconnect)",
    )
    .option(
      "--no-history",
      "keep no message history in this run (config: [client] history)",
    )
    .option(
      "--accept-server-key <fingerprint>",
      "accept this server key in place of the pinned one (after checking it with the server's owner)",
    )
    .addOption(
      new Option(
        "--player <cmd>",
        "program that plays streams from stdin: auto, ffplay, mpv, none, or a command",
      ),
    )
    .option("--config <file>", "config file", "config.ini")
    .addHelpText(
      "after",
      `\nCommands, typed at the prompt or one per line on stdin:\n${indent(HELP_TEXT)}\n` +
        `\n${reconnectHelp()}\n\nExit codes:\n${
          indent(EXIT_CODES.map(([code, when]) => `${code}  ${when}`).join("\n"))
        }`,
    )
    .showHelpAfterError()
    .exitOverride()
    .action(async (flags: ClientFlags, command: Command) => {
      setExitCode(await runClient({ ...flags, configGiven: isExplicit(command, "config") }));
    });

  return program;
}

/** What the client does when the connection is lost, with the defaults of `[client]`. */
function reconnectHelp(): string {
  const client = DEFAULT_CONFIG.client;
  return `When the connection is lost, the client reconnects: it waits from ` +
    `${formatWait(client.reconnectMinMs)} doubling up to ${formatWait(client.reconnectMaxMs)},\n` +
    `for up to ${formatWait(client.reconnectGiveUpMs)} ([client] reconnect_* in config.ini), ` +
    `with reconnecting/reconnected/gave-up\nevents in --json.`;
}

function indent(text: string): string {
  return text.split("\n").map((line) => `  ${line}`).join("\n");
}

function isExplicit(command: Command, option: string): boolean {
  return command.getOptionValueSource(option) === "cli";
}

/** Runs the command line; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  let exitCode = 0;
  const program = buildProgram((code) => exitCode = code);
  try {
    if (args.length === 0) {
      program.outputHelp({ error: true });
      return EXIT_USAGE;
    }
    await program.parseAsync(args, { from: "user" });
    return exitCode;
  } catch (error) {
    if (error instanceof CommanderError) {
      const ok = ["commander.helpDisplayed", "commander.version", "commander.help"].includes(
        error.code,
      );
      return ok ? 0 : EXIT_USAGE;
    }
    if (error instanceof UsageError) {
      await printError(`reelay: ${error.message}\nRun 'reelay --help' for usage.`);
      return error.exitCode;
    }
    if (error instanceof ReelayError) {
      await printError(`reelay: ${error.message}`);
      return error.exitCode;
    }
    throw error;
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
