/**
 * Test helpers: a real server on a loopback port, real clients with their own homes, and a
 * way to wait for events without sleeping.
 *
 * @module
 */

import { type Config, DEFAULT_CONFIG } from "../shared/config.ts";
import { type RunningServer, silentLogger, startServer } from "../server/mod.ts";
import type { ClientSession, SessionOptions } from "../client/session.ts";
import { openSession } from "../client/mod.ts";
import type { ClientEvent } from "../client/events.ts";

/** A test config: loopback, a free port, and a temporary videos folder. */
export function testConfig(videos: string, patch: (config: Config) => void = () => {}): Config {
  const config = structuredClone(DEFAULT_CONFIG) as Config;
  config.server.host = "127.0.0.1";
  config.server.port = 0;
  config.server.videos = videos;
  patch(config);
  return config;
}

/** Starts a server on a free loopback port with an empty (or given) videos folder. */
export async function startTestServer(
  options: { videos?: string; patch?: (config: Config) => void } = {},
): Promise<RunningServer & { videos: string }> {
  const videos = options.videos ?? await Deno.makeTempDir({ prefix: "reelay-videos-" });
  const running = await startServer(testConfig(videos, options.patch), { log: silentLogger });
  return Object.assign(running, { videos });
}

/** Records a session's events and waits for the ones a test expects. */
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
    timeoutMs = 20_000,
  ): Promise<Extract<ClientEvent, { event: N }>> {
    const match = (event: ClientEvent) =>
      event.event === name && where(event as Extract<ClientEvent, { event: N }>);
    const seen = this.events.find(match);
    if (seen) return Promise.resolve(seen as Extract<ClientEvent, { event: N }>);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((waiter) => waiter.resolve !== done);
        reject(new Error(`Timed out waiting for event ${name}`));
      }, timeoutMs);
      const done = (event: ClientEvent) => {
        clearTimeout(timer);
        resolve(event as Extract<ClientEvent, { event: N }>);
      };
      this.#waiters.push({ match, resolve: done });
    });
  }
}

/** A client joined to `port` as `name`, with its own home (made unless given). */
export async function joinClient(
  port: number,
  name: string,
  options: Partial<SessionOptions> & { home?: string } = {},
): Promise<{ session: ClientSession; log: EventLog; home: string }> {
  const home = options.home ?? await Deno.makeTempDir({ prefix: `reelay-home-${name}-` });
  const session = await openSession({ hostname: "127.0.0.1", port, name, ...options, home });
  return { session, log: new EventLog(session), home };
}
