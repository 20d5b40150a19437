/**
 * A real server on a loopback port, real clients with their own homes, and a way to wait for
 * events without sleeping: what the tests and the benchmarks start reelay with.
 *
 * @module
 */

import {
  type ClientEvent,
  type ClientSession,
  type OpenOptions,
  openSession,
} from "../client/mod.ts";
import { type Config, defaultConfig } from "../shared/config/mod.ts";
import { silentLogger } from "../shared/log.ts";
import { type RunningServer, startServer } from "../server/mod.ts";
import { withTimeout } from "../shared/async.ts";
import { ServerKey } from "../shared/channel/mod.ts";

/**
 * Taps of test servers by the client port the server sees: a test playing a hostile server
 * registers a wrapper for one connection (by the port it dials from), and every test server
 * applies it to that connection's decrypted side.
 */
export const serverTaps: Map<number, (conn: Deno.Conn) => Deno.Conn> = new Map();

function tapByPort(conn: Deno.Conn): Deno.Conn {
  const address = conn.remoteAddr;
  const tap = address.transport === "tcp" ? serverTaps.get(address.port) : undefined;
  return tap ? tap(conn) : conn;
}

/** One server key for the test servers of a process (each client pins it on first use). */
let sharedKey: Promise<ServerKey> | undefined;

/**
 * The server key test servers use unless given one: made once per process, kept in no file.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { testServerKey } from "./harness.ts";
 * assert.equal((await testServerKey()).fingerprint, (await testServerKey()).fingerprint);
 * ```
 */
export function testServerKey(): Promise<ServerKey> {
  sharedKey ??= ServerKey.generate();
  return sharedKey;
}

/**
 * A test config: loopback, a free port, the given videos folder, and state inside it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { testConfig } from "./harness.ts";
 * assert.equal(testConfig("/tmp/v", (config) => config.limits.maxClients = 3).server.port, 0);
 * ```
 */
export function testConfig(videos: string, patch: (config: Config) => void = () => {}): Config {
  const config = defaultConfig();
  config.server.host = "127.0.0.1";
  config.server.port = 0;
  config.server.videos = videos;
  // The server key (when one is written) goes away with the temporary videos folder.
  config.server.state = `${videos}/.state`;
  patch(config);
  return config;
}

/**
 * Starts a server on a free loopback port with an empty (or given) videos folder.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { startTestServer } from "./harness.ts";
 * const server = await startTestServer();
 * assert.ok(server.port > 0);
 * await server.close();
 * ```
 */
export async function startTestServer(
  options: { videos?: string; patch?: (config: Config) => void; serverKey?: ServerKey } = {},
): Promise<RunningServer & { videos: string }> {
  const videos = options.videos ?? await Deno.makeTempDir({ prefix: "reelay-videos-" });
  const running = await startServer(testConfig(videos, options.patch), {
    log: silentLogger,
    serverKey: options.serverKey ?? await testServerKey(),
    tap: tapByPort,
  });
  return Object.assign(running, { videos });
}

/** A server whose log lines are kept, for tests that check why a connection ended. */
export interface LoggedServer extends RunningServer {
  readonly videos: string;
  readonly lines: string[];
  /** Closes the server and removes its temporary videos folder. */
  stop(): Promise<void>;
}

/**
 * Starts a server on a free loopback port that keeps its log lines, with limits from `patch`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { startLoggedServer } from "./harness.ts";
 * const server = await startLoggedServer();
 * assert.ok(server.lines.some((line) => line.startsWith("info Listening on")));
 * await server.stop();
 * ```
 */
export async function startLoggedServer(
  patch: (config: Config) => void = () => {},
): Promise<LoggedServer> {
  const videos = await Deno.makeTempDir({ prefix: "reelay-videos-" });
  const lines: string[] = [];
  const running = await startServer(testConfig(videos, patch), {
    log: (level, message) => lines.push(`${level} ${message}`),
    serverKey: await testServerKey(),
    tap: tapByPort,
  });
  return Object.assign(running, {
    videos,
    lines,
    async stop() {
      await running.close();
      await Deno.remove(videos, { recursive: true });
    },
  });
}

/**
 * Records a session's events and waits for the ones a test expects.
 *
 * @example
 * ```ts ignore
 * const { log } = await joinClient(server.port, "alice");
 * await log.waitFor("joined", (event) => event.name === "bob");
 * ```
 */
export class EventLog {
  readonly events: ClientEvent[] = [];
  #waiters: { match: (event: ClientEvent) => boolean; resolve: (event: ClientEvent) => void }[] =
    [];

  /** Listens to `session` from now on. */
  constructor(session: ClientSession) {
    session.onEvent((event) => {
      this.events.push(event);
      for (const waiter of [...this.#waiters]) {
        if (waiter.match(event)) {
          this.#waiters.splice(this.#waiters.indexOf(waiter), 1);
          waiter.resolve(event);
        }
      }
    });
  }

  /** Events of one kind seen so far. */
  of<N extends ClientEvent["event"]>(name: N): Extract<ClientEvent, { event: N }>[] {
    return this.events.filter((event) => event.event === name) as Extract<
      ClientEvent,
      { event: N }
    >[];
  }

  /**
   * Resolves with the first event (already seen or future) of kind `name` matching `where`.
   * Fails after `timeoutMs` so a broken test ends instead of hanging.
   */
  waitFor<N extends ClientEvent["event"]>(
    name: N,
    where: (event: Extract<ClientEvent, { event: N }>) => boolean = () => true,
    timeoutMs = 60_000,
  ): Promise<Extract<ClientEvent, { event: N }>> {
    const match = (event: ClientEvent) =>
      event.event === name && where(event as Extract<ClientEvent, { event: N }>);
    const seen = this.events.find(match);
    if (seen) return Promise.resolve(seen as Extract<ClientEvent, { event: N }>);
    const { promise, resolve } = Promise.withResolvers<ClientEvent>();
    this.#waiters.push({ match, resolve });
    const found = withTimeout(promise, timeoutMs, () => {
      this.#waiters = this.#waiters.filter((waiter) => waiter.resolve !== resolve);
      const seen = this.of(name).map((event) => JSON.stringify(event)).slice(-5);
      return new Error(
        `Timed out after ${timeoutMs} ms waiting for event ${name} matching ${where}; ` +
          `${name} events seen: ${seen.length === 0 ? "none" : seen.join(", ")}`,
      );
    });
    return found as Promise<Extract<ClientEvent, { event: N }>>;
  }
}

/**
 * A client joined to `port` as `name`, with its own home (made unless given).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { joinClient, startTestServer } from "./harness.ts";
 * const server = await startTestServer();
 * const { session, log } = await joinClient(server.port, "alice");
 * assert.equal((await log.waitFor("welcome")).name, "alice");
 * await session.quit();
 * await server.close();
 * ```
 */
export async function joinClient(
  port: number,
  name: string,
  options: Partial<OpenOptions> = {},
): Promise<{ session: ClientSession; log: EventLog; home: string }> {
  const home = options.home ?? await Deno.makeTempDir({ prefix: `reelay-home-${name}-` });
  const session = await openSession({ hostname: "127.0.0.1", port, name, ...options, home });
  return { session, log: new EventLog(session), home };
}

/** A client {@linkcode joinClient} joined: its session, its events and its home. */
export type JoinedClient = Awaited<ReturnType<typeof joinClient>>;

/** A test server and the people {@linkcode withPeople} joined to it, by name. */
export interface PeopleScene<N extends string> {
  readonly server: RunningServer & { videos: string };
  readonly people: Record<N, JoinedClient>;
}

/** Who {@linkcode withPeople} joins, to which server. */
export interface PeopleOptions<N extends string> {
  /** Joined in this order; each waits until it has seen every later one join. */
  people: readonly N[];
  /** How some of them open their session (a sink, a home, ...). */
  clients?: { readonly [K in N]?: Partial<OpenOptions> };
  /** The test server's videos folder (else an empty one). */
  videos?: string;
  /** Changes the test server's config. */
  patch?: (config: Config) => void;
}

/**
 * Runs `test` with a test server and people joined to it, who all see each other; then every
 * session quits (again, for one the test quit) and the server closes, however `test` ended.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { withPeople } from "./harness.ts";
 * await withPeople({ people: ["alice", "bob"] }, async ({ people: { alice, bob } }) => {
 *   await bob.session.send("alice", "hi");
 *   assert.equal((await alice.log.waitFor("message")).text, "hi");
 * });
 * ```
 */
export async function withPeople<N extends string>(
  options: PeopleOptions<N>,
  test: (scene: PeopleScene<N>) => Promise<void>,
): Promise<void> {
  const server = await startTestServer(options);
  try {
    await joinedTo(options, () => server.port, (people) => test({ server, people }));
  } finally {
    await server.close();
  }
}

/** What stands between some clients and the server: a recording or tampering proxy. */
export interface Middle {
  /** The port clients behind it connect to. */
  readonly port: number;
  /** Stops it and closes both sides. */
  close(): Promise<void>;
}

/** The server, the proxy and the people {@linkcode withProxy} gives a test. */
export interface ProxiedScene<P extends Middle, N extends string> extends PeopleScene<N> {
  readonly proxy: P;
}

/** Who {@linkcode withProxy} joins, through what, to which server. */
export interface ProxiedOptions<P extends Middle, N extends string> extends PeopleOptions<N> {
  /** Those of `people` who connect through the proxy; the others go straight to the server. */
  behind: readonly N[];
  /** Makes the proxy in front of the server at `serverPort`. */
  proxy: (serverPort: number) => P;
}

/**
 * {@linkcode withPeople} with a proxy in front of the server, which those `behind` it join
 * through; the proxy closes before the server.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { withProxy } from "./harness.ts";
 * // A proxy that is none: bob "behind" it dials the server itself.
 * const proxy = (port: number) => ({ port, close: () => Promise.resolve() });
 * await withProxy({ people: ["alice", "bob"], behind: ["bob"], proxy }, async ({ people }) => {
 *   await people.bob.session.send("alice", "hi");
 *   assert.equal((await people.alice.log.waitFor("message")).text, "hi");
 * });
 * ```
 */
export async function withProxy<P extends Middle, N extends string>(
  options: ProxiedOptions<P, N>,
  test: (scene: ProxiedScene<P, N>) => Promise<void>,
): Promise<void> {
  const server = await startTestServer(options);
  try {
    const proxy = options.proxy(server.port);
    try {
      const portOf = (name: N) => options.behind.includes(name) ? proxy.port : server.port;
      await joinedTo(options, portOf, (people) => test({ server, proxy, people }));
    } finally {
      await proxy.close();
    }
  } finally {
    await server.close();
  }
}

/** Joins the people of `options` in order (each at `portOf` it), runs `test`, quits them all. */
async function joinedTo<N extends string>(
  options: PeopleOptions<N>,
  portOf: (name: N) => number,
  test: (people: Record<N, JoinedClient>) => Promise<void>,
): Promise<void> {
  const names = options.people;
  const joined: JoinedClient[] = [];
  try {
    const people = {} as Record<N, JoinedClient>;
    for (const name of names) {
      people[name] = await joinClient(portOf(name), name, options.clients?.[name]);
      joined.push(people[name]);
    }
    for (const [index, name] of names.entries()) {
      for (const later of names.slice(index + 1)) {
        await people[name].log.waitFor("joined", (event) => event.name === later);
      }
    }
    await test(people);
  } finally {
    await Promise.all(joined.map((client) => client.session.quit()));
  }
}
