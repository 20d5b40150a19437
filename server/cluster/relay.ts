/**
 * Relaying sealed envelopes between nodes over NATS. Each node answers requests on
 * `reelay.node.<id>.deliver`; the sender's node finds the recipient's node in presence and asks
 * it to deliver. The payload is the sender's name, the recipient's name, the envelope and the
 * sender's message id (empty when none), each length-prefixed; the envelope stays opaque bytes
 * (sealed end to end by the clients). A payload without the id (a node of the build before it)
 * is taken with none. The reply is one byte: 1 delivered, 0 the recipient is not there (any
 * more). Chat between people both in the shared registry does not come this way: it is held in
 * the cluster's mailbox and delivered by the recipient's node (`server/mail.ts`).
 *
 * @module
 */

import type { Subscription } from "@nats-io/transport-node";
import { ByteReader, encodeFields, fromUtf8 } from "../../shared/bytes.ts";
import { errorDetail, messageOf, ReelayError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/log.ts";
import type { NatsConnection } from "./nats.ts";

/** Delivers to a person connected to this node; false when they are not (any more). */
export type LocalDelivery = (
  from: string,
  to: string,
  envelope: Uint8Array,
  id?: string,
) => boolean;

/** How long a node waits for another to say whether it delivered. */
const DELIVER_TIMEOUT_MS = 5000;
const MAX_NAME_BYTES = 1024;
/** A message id is at most 64 characters (`server/store`); room to spare for the check there. */
const MAX_ID_BYTES = 256;

/** The subject a node takes deliveries on. */
export function deliverSubject(nodeId: string): string {
  return `reelay.node.${nodeId}.deliver`;
}

/**
 * The cluster relay of one node.
 *
 * @example
 * ```ts ignore
 * const relay = await ClusterRelay.start(nc, "n1", deliverHere, log);
 * const delivered = await relay.send("n2", "alice", "bob", envelope);
 * await relay.close();
 * ```
 */
export class ClusterRelay {
  readonly #nc: NatsConnection;
  readonly #subscription: Subscription;
  readonly #serving: Promise<void>;
  readonly #log: Logger;

  private constructor(nc: NatsConnection, nodeId: string, deliver: LocalDelivery, log: Logger) {
    this.#nc = nc;
    this.#log = log;
    this.#subscription = nc.subscribe(deliverSubject(nodeId));
    this.#serving = this.#serve(deliver);
  }

  /** Starts taking deliveries for this node; resolves once NATS has the subscription. */
  static async start(
    nc: NatsConnection,
    nodeId: string,
    deliver: LocalDelivery,
    log: Logger,
  ): Promise<ClusterRelay> {
    const relay = new ClusterRelay(nc, nodeId, deliver, log);
    await nc.flush();
    return relay;
  }

  /**
   * Asks `node` to deliver `envelope` from `from` to `to`; resolves to whether it did. Throws
   * `message-too-large` past NATS's payload limit and `cluster-unavailable` when the node does
   * not answer in time.
   */
  async send(
    node: string,
    from: string,
    to: string,
    envelope: Uint8Array,
    id = "",
  ): Promise<boolean> {
    const payload = encodeFields([from, to, envelope, id]);
    const limit = this.#nc.info?.max_payload;
    if (limit !== undefined && payload.length > limit) {
      throw new ReelayError(
        "message-too-large",
        `Message of ${envelope.length} bytes is over the cluster's ${limit}-byte payload limit`,
      );
    }
    try {
      const reply = await this.#nc.request(deliverSubject(node), payload, {
        timeout: DELIVER_TIMEOUT_MS,
      });
      return reply.data.length === 1 && reply.data[0] === 1;
    } catch (error) {
      // No node answers on that subject: it is gone, so the person is too.
      if (/no responders/i.test(messageOf(error))) return false;
      throw new ReelayError(
        "cluster-unavailable",
        `The node of ${JSON.stringify(to)} did not answer (${messageOf(error)})`,
        { cause: error },
      );
    }
  }

  /** Stops taking deliveries. */
  async close(): Promise<void> {
    this.#subscription.unsubscribe();
    await this.#serving;
  }

  async #serve(deliver: LocalDelivery): Promise<void> {
    for await (const message of this.#subscription) {
      let delivered = false;
      try {
        const { from, to, envelope, id } = decodeDelivery(message.data);
        delivered = deliver(from, to, envelope, id === "" ? undefined : id);
      } catch (error) {
        this.#log("warn", `Malformed delivery on ${message.subject}: ${errorDetail(error)}`);
      }
      message.respond(new Uint8Array([delivered ? 1 : 0]));
    }
  }
}

/** One node-to-node delivery, as {@linkcode decodeDelivery} reads it. */
export interface NodeDelivery {
  from: string;
  to: string;
  envelope: Uint8Array;
  /** The sender's message id; "" when none, or from a node of a build before ids crossed. */
  id: string;
}

/**
 * Reads a delivery payload: the sender's and the recipient's names, the envelope, and the
 * message id, each length-prefixed. The id was added without a version, so a payload of the
 * first three fields alone (from a node of the previous build, during a rolling upgrade) is
 * taken with the id "". Throws `RangeError` on anything else.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeFields } from "../../shared/bytes.ts";
 * import { decodeDelivery } from "./relay.ts";
 * const envelope = new Uint8Array([1, 2]);
 * assert.equal(decodeDelivery(encodeFields(["a", "b", envelope, "m1"])).id, "m1");
 * assert.equal(decodeDelivery(encodeFields(["a", "b", envelope])).id, "");
 * ```
 */
export function decodeDelivery(data: Uint8Array): NodeDelivery {
  const reader = new ByteReader(data);
  const fromBytes = reader.prefixed32(1, MAX_NAME_BYTES);
  const toBytes = reader.prefixed32(1, MAX_NAME_BYTES);
  const envelope = reader.prefixed32(0, data.length);
  const read = 3 * 4 + fromBytes.length + toBytes.length + envelope.length;
  const id = read === data.length ? "" : fromUtf8(reader.prefixed32(0, MAX_ID_BYTES));
  reader.end();
  const from = fromUtf8(fromBytes);
  const to = fromUtf8(toBytes);
  if (from === undefined || to === undefined) throw new RangeError("Names are not UTF-8");
  if (id === undefined) throw new RangeError("The message id is not UTF-8");
  return { from, to, envelope, id };
}
