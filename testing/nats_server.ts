/**
 * A real `nats-server` with JetStream for tests, benchmarks and the cluster demo: on loopback, a
 * free port, its own store folder, and a user and password that members must present. It can be
 * restarted on the same port and store (to test that nothing held is lost) and is always reaped.
 *
 * @module
 */

import { settlesWithin } from "../shared/async.ts";
import { terminate } from "../shared/process.ts";

/** Whether `nats-server` can be run here (the cluster tests skip, saying so, when it cannot). */
export const NATS_SERVER_PRESENT: boolean = await (async () => {
  try {
    const { success } = await new Deno.Command("nats-server", {
      args: ["--version"],
      stdout: "null",
      stderr: "null",
    }).output();
    return success;
  } catch {
    return false;
  }
})();

/** What a cluster test's name says when it is skipped. */
export const NATS_SKIP_NOTE: string = NATS_SERVER_PRESENT
  ? ""
  : " (skipped: nats-server is not installed; ./run setup installs it)";

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  listener.close();
  return port;
}

/**
 * A running `nats-server -js`.
 *
 * @example
 * ```ts ignore
 * await using nats = await TestNats.start();
 * const nc = await connectNats({ url: nats.url, credentials: nats.credentials, name: "t", log });
 * ```
 */
export class TestNats {
  readonly port: number;
  readonly dir: string;
  readonly user = "reelay-node";
  readonly password: string;
  #child: Deno.ChildProcess | undefined;
  #draining: Promise<void> = Promise.resolve();
  readonly #ownsDir: boolean;

  private constructor(port: number, dir: string, ownsDir: boolean) {
    this.port = port;
    this.dir = dir;
    this.#ownsDir = ownsDir;
    this.password = crypto.randomUUID();
  }

  /** Starts one on a free loopback port with a fresh store folder (or `dir`). */
  static async start(options: { dir?: string } = {}): Promise<TestNats> {
    const dir = options.dir ?? await Deno.makeTempDir({ prefix: "reelay-nats-" });
    const nats = new TestNats(freePort(), dir, options.dir === undefined);
    await nats.restart();
    return nats;
  }

  /** `nats://127.0.0.1:PORT`, without credentials. */
  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  /** The credentials to pass to `connectNats`. */
  get credentials(): { kind: "password"; user: string; password: string } {
    return { kind: "password", user: this.user, password: this.password };
  }

  /** The process id, while running. */
  get pid(): number | undefined {
    return this.#child?.pid;
  }

  /** Starts it again (same port and store) after {@linkcode stop} or {@linkcode kill}. */
  async restart(): Promise<void> {
    if (this.#child) throw new Error("nats-server is already running");
    const child = new Deno.Command("nats-server", {
      args: [
        "-js",
        "-a",
        "127.0.0.1",
        "-p",
        String(this.port),
        "-sd",
        this.dir,
        "--user",
        this.user,
        "--pass",
        this.password,
      ],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    this.#child = child;
    const ready = Promise.withResolvers<void>();
    ready.promise.catch(() => {}); // awaited below; this only marks the rejection handled
    let log = "";
    this.#draining = (async () => {
      const decoder = new TextDecoder();
      for await (const chunk of child.stderr) {
        if (log.length < 64 * 1024) log += decoder.decode(chunk, { stream: true });
        if (log.includes("Server is ready")) ready.resolve();
      }
      ready.reject(new Error(`nats-server exited before it was ready:\n${log}`));
    })();
    // Seconds of headroom: a loaded machine starts it slowly.
    if (!(await settlesWithin(ready.promise, 30_000))) {
      await this.stop();
      throw new Error(`nats-server was not ready within 30 s:\n${log}`);
    }
    await ready.promise;
  }

  /** Stops it (SIGTERM, SIGKILL after a grace) and waits for it to exit. */
  async stop(): Promise<void> {
    const child = this.#child;
    if (!child) return;
    await terminate(child, child.status, 3000);
    await this.#draining.catch(() => {});
    this.#child = undefined;
  }

  /** Kills it at once (SIGKILL), as a crash would. */
  async kill(): Promise<void> {
    const child = this.#child;
    if (!child) return;
    child.kill("SIGKILL");
    await child.status;
    await this.#draining.catch(() => {});
    this.#child = undefined;
  }

  /** Stops it and removes its store folder (when it made it). */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
    if (this.#ownsDir) await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }
}
