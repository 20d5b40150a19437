/**
 * Helpers for the cluster tests: a real nats-server per test, node connections with its
 * credentials, and waiting for presence events with a deadline.
 *
 * @module
 */

import { deferred } from "../shared/async.ts";
import type { LogLevel } from "../shared/log.ts";
import { connectNats, type NatsConnection } from "../server/cluster/nats.ts";
import type { ClusterPresence, PresenceEvent } from "../server/cluster/presence.ts";
import { NATS_SERVER_PRESENT, NATS_SKIP_NOTE, TestNats } from "../testing/nats_server.ts";
import { within } from "./_deadline.ts";

export { NATS_SERVER_PRESENT, NATS_SKIP_NOTE, TestNats };

/** Log lines kept for assertions. */
export class Lines {
  readonly lines: string[] = [];
  readonly log = (level: LogLevel, message: string): void => {
    this.lines.push(`${level}: ${message}`);
  };
}

/** A NATS connection as a node makes it. */
export function connectNode(
  nats: TestNats,
  name: string,
  lines = new Lines(),
): Promise<NatsConnection> {
  return connectNats({ url: nats.url, credentials: nats.credentials, name, log: lines.log });
}

/** Resolves with the first event `presence` reports that `matches`, within `ms`. */
export function nextEvent(
  presence: ClusterPresence,
  matches: (event: PresenceEvent) => boolean,
  ms: number,
  what: string,
): Promise<PresenceEvent> {
  const found = deferred<PresenceEvent>();
  const stop = presence.subscribe((event) => {
    if (matches(event)) found.resolve(event);
  });
  return within(found.promise, ms, what).finally(stop);
}
