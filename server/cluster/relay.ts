/**
 * Relaying sealed envelopes between nodes over NATS. Each node answers requests on
 * `reelay.node.<id>.deliver`; the sender's node finds the recipient's node in presence and asks
 * it to deliver. The payload is the sender's name, the recipient's name, the envelope and the
 * sender's message id (empty when none), each length-prefixed; the envelope stays opaque bytes
 * (sealed end to end by the clients). A payload without the id (a node of the build before it)
 * is taken with none. The reply is one byte, 1 delivered or 0 the recipient is not there (any
 * more); or, when the recipient's inbound limits refuse the envelope, the byte 2 then the
 * refusal's code (`rate-limited`, `recipient-busy`) and message, length-prefixed, which the
 * sender's node throws as that error, as one node does (a node of an earlier build takes it as
 * not delivered). Chat between people both in the shared registry does not come this way: it is
 * held in the cluster's mailbox and delivered by the recipient's node (`server/mail.ts`).
 *
 * @module
 */

import type { Msg, Subscription } from "@nats-io/transport-node";
import { ByteReader, concat, encodeFields, fromUtf8 } from "../../shared/bytes.ts";
import { errorDetail, messageOf, ReelayError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/log.ts";
import type { NatsConnection } from "./nats.ts";

/**
 * Delivers to a person connected to this node; false when they are not (any more). Throws
 * `rate-limited` or `recipient-busy` when their inbound limits refuse it.
 */
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
/** A refusal's message (it names the recipient and a limit) is cut to this many characters. */
const MAX_REFUSAL_CHARS = 1000;

const DELIVERED = new Uint8Array([1]);
const NOT_DELIVERED = new Uint8Array([0]);
const REFUSED = 2;
/** What a recipient's node passes back to the sender's: the recipient's inbound limits. */
const REFUSALS = new Set(["rate-limited", "recipient-busy"]);

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
   * `message-too-large` past NATS's payload limit, `cluster-unavailable` when the node does not
   * answer in time, and the recipient's refusal (`rate-limited`, `recipient-busy`) as their
   * node gave it.
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
    let reply: Msg;
    try {
      reply = await this.#nc.request(deliverSubject(node), payload, {
        timeout: DELIVER_TIMEOUT_MS,
      });
    } catch (error) {
      // No node answers on that subject: it is gone, so the person is too.
      if (/no responders/i.test(messageOf(error))) return false;
      throw new ReelayError(
        "cluster-unavailable",
        `The node of ${JSON.stringify(to)} did not answer (${messageOf(error)})`,
        { cause: error },
      );
    }
    const refusal = reply.data[0] === REFUSED ? decodeRefusal(reply.data) : undefined;
    if (refusal) throw refusal;
    return reply.data.length === 1 && reply.data[0] === 1;
  }

  /** Stops taking deliveries. */
  async close(): Promise<void> {
    this.#subscription.unsubscribe();
    await this.#serving;
  }

  async #serve(deliver: LocalDelivery): Promise<void> {
    for await (const message of this.#subscription) {
      message.respond(this.#answer(deliver, message));
    }
  }

  #answer(deliver: LocalDelivery, message: Msg): Uint8Array {
    let delivery: NodeDelivery;
    try {
      delivery = decodeDelivery(message.data);
    } catch (error) {
      this.#log("warn", `Malformed delivery on ${message.subject}: ${errorDetail(error)}`);
      return NOT_DELIVERED;
    }
    const { from, to, envelope, id } = delivery;
    try {
      return deliver(from, to, envelope, id === "" ? undefined : id) ? DELIVERED : NOT_DELIVERED;
    } catch (error) {
      // The recipient is there but refuses more now: the sender is told why, as on one node,
      // not that they are gone.
      if (error instanceof ReelayError && REFUSALS.has(error.code)) return encodeRefusal(error);
      this.#log("error", `Delivery to ${JSON.stringify(to)} failed: ${errorDetail(error)}`);
      return NOT_DELIVERED;
    }
  }
}

function encodeRefusal(error: ReelayError): Uint8Array {
  const fields = encodeFields([error.code, error.message.slice(0, MAX_REFUSAL_CHARS)]);
  return concat([new Uint8Array([REFUSED]), fields]);
}

/** The refusal a recipient's node answered; undefined for a reply that is not one. */
function decodeRefusal(data: Uint8Array): ReelayError | undefined {
  try {
    const reader = new ByteReader(data);
    reader.u8();
    const code = fromUtf8(reader.prefixed32(1, 64));
    const message = fromUtf8(reader.prefixed32(0, 3 * MAX_REFUSAL_CHARS));
    reader.end();
    if (code === undefined || message === undefined || !REFUSALS.has(code)) return undefined;
    return new ReelayError(code, message);
  } catch {
    return undefined;
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
