/**
 * A reelay cluster on NATS: several server nodes share one directory of people
 * ({@linkcode ClusterPresence}, a key-value bucket), relay sealed envelopes to each other
 * ({@linkcode ClusterRelay}, request and reply on per-node subjects), and hold offline mail in
 * one JetStream stream ({@linkcode JetStreamMailbox}, the store's `Mailbox` contract). Every
 * member connects with credentials ({@linkcode connectNats}).
 *
 * Only `reelay server --cluster` loads this module (by dynamic import), so the single binary
 * never needs NATS. The design, subjects and failure behaviour: `docs/cluster.md`.
 *
 * @example Parsing a cluster address
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseClusterUrl } from "./mod.ts";
 * assert.deepEqual(parseClusterUrl("nats://10.0.0.5:4222,nats://10.0.0.6").servers, [
 *   "10.0.0.5:4222",
 *   "10.0.0.6:4222",
 * ]);
 * ```
 *
 * @module
 */

export {
  type ClusterCredentials,
  connectNats,
  DEFAULT_NATS_PORT,
  type NatsConnection,
  type NatsOptions,
  parseClusterUrl,
} from "./nats.ts";
export {
  ClusterPresence,
  PRESENCE_BUCKET,
  type PresenceEvent,
  type PresenceInfo,
  type PresenceOptions,
  type PresentPerson,
} from "./presence.ts";
export { ClusterRelay, deliverSubject, type LocalDelivery } from "./relay.ts";
export { JetStreamMailbox, type JetStreamMailboxOptions, MAIL_STREAM } from "./mailbox.ts";
export { ClusterPeople, type ClusterPeopleOptions } from "./people.ts";
export { clusterCredentials, type ClusterNode, joinCluster } from "./node.ts";
