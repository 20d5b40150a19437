/**
 * The cluster's {@linkcode People}: people connected to this node are kept in a local
 * {@linkcode Directory} as on a single server, and their names are claimed cluster-wide in
 * {@linkcode ClusterPresence} first; people on other nodes come from presence (joined and left
 * notices go to this node's members as they appear), and envelopes for them go through
 * {@linkcode ClusterRelay} to their node.
 *
 * @module
 */

import { errorDetail, ReelayError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/log.ts";
import {
  type Announcement,
  encodeMessage,
  MAX_DIRECTORY_PAGE,
  type ServerMessage,
} from "../../shared/protocol/mod.ts";
import { Directory } from "../directory.ts";
import type { People } from "../people.ts";
import { type Recipient, Relay } from "../relay.ts";
import type { NatsConnection } from "./nats.ts";
import {
  ClusterPresence,
  type PresenceEvent,
  type PresenceInfo,
  type PresentPerson,
} from "./presence.ts";
import { ClusterRelay, type LocalDelivery } from "./relay.ts";

/** How a node takes part. */
export interface ClusterPeopleOptions {
  nodeId: string;
  /** See `[cluster] presence_ttl_ms`. */
  presenceTtlMs: number;
  log: Logger;
  /** The presence bucket (tests use their own). */
  bucket?: string;
}

/**
 * The announcement a node published with a person, passed on as it is: the clients verify its
 * signature, and passing it whole keeps this file out of the announcement's fields.
 */
function announcementOf(person: PresentPerson): Announcement | undefined {
  const info = person.info;
  if (typeof info !== "object" || info === null || Array.isArray(info)) return undefined;
  return info.name === person.name ? info as unknown as Announcement : undefined;
}

/**
 * People across the cluster, as one node sees them.
 *
 * @example
 * ```ts ignore
 * const people = await ClusterPeople.open<PeerConnection>(nc, { nodeId: "n1", presenceTtlMs: 6000, log });
 * await people.join(peer); // name-taken if anyone on any node holds the name
 * await people.route(peer, "bob", envelope); // bob may be on another node
 * await people.close();
 * ```
 */
export class ClusterPeople<M extends Recipient> implements People<M> {
  readonly #directory = new Directory<M>();
  readonly #localRelay = new Relay<M>(this.#directory);
  readonly #presence: ClusterPresence;
  readonly #relay: ClusterRelay;
  readonly #log: Logger;
  readonly #stopWatching: () => void;
  readonly #releasing = new Set<Promise<void>>();

  private constructor(presence: ClusterPresence, relay: ClusterRelay, log: Logger) {
    this.#presence = presence;
    this.#relay = relay;
    this.#log = log;
    this.#stopWatching = presence.subscribe((event) => this.#onPresence(event));
  }

  /** Joins the cluster's presence and starts taking deliveries for this node. */
  static async open<M extends Recipient>(
    nc: NatsConnection,
    options: ClusterPeopleOptions,
  ): Promise<ClusterPeople<M>> {
    const { nodeId, log } = options;
    // The relay needs the directory, which the instance owns: deliver through a late binding.
    let deliverHere: LocalDelivery = () => false;
    const relay = await ClusterRelay.start(
      nc,
      nodeId,
      (from, to, envelope, id) => deliverHere(from, to, envelope, id),
      log,
    );
    let presence: ClusterPresence;
    try {
      presence = await ClusterPresence.open(nc, {
        nodeId,
        ttlMs: options.presenceTtlMs,
        bucket: options.bucket,
        log,
        onLost: (name) => log("warn", `${JSON.stringify(name)} is now held on another node`),
      });
    } catch (error) {
      await relay.close();
      throw error;
    }
    const people = new ClusterPeople<M>(presence, relay, log);
    deliverHere = (from, to, envelope, id) => {
      const recipient = people.#directory.get(to);
      return recipient ? recipient.deliver(from, envelope, id) : false;
    };
    return people;
  }

  /** See {@linkcode People.size}: the people on this node. */
  get size(): number {
    return this.#directory.size;
  }

  /** See {@linkcode People.join}. */
  async join(member: M): Promise<Uint8Array[]> {
    const { name } = member.announcement;
    await this.#presence.claim(name, member.announcement as unknown as PresenceInfo);
    let pages: Uint8Array[];
    try {
      pages = this.#directory.join(member);
    } catch (error) {
      await this.#presence.release(name);
      throw error;
    }
    return [...pages, ...this.#remotePages()];
  }

  /** See {@linkcode People.leave}. */
  leave(member: M): Promise<void> {
    const name = member.announcement.name;
    if (this.#directory.get(name) !== member) return Promise.resolve();
    this.#directory.leave(member);
    const releasing = this.#presence.release(name).catch((error) => {
      this.#log("warn", `Could not release ${JSON.stringify(name)}: ${errorDetail(error)}`);
    });
    this.#releasing.add(releasing);
    releasing.finally(() => this.#releasing.delete(releasing));
    return releasing;
  }

  /** See {@linkcode People.here}. */
  here(name: string): M | undefined {
    return this.#directory.get(name);
  }

  /** See {@linkcode People.present}. */
  present(name: string): boolean {
    return this.#directory.get(name) !== undefined || this.#presence.get(name) !== undefined;
  }

  /** See {@linkcode People.route}. */
  async route(sender: M, to: string, envelope: Uint8Array, id?: string): Promise<string> {
    if (this.#directory.get(to)) return this.#localRelay.route(sender, to, envelope, id);
    const remote = this.#presence.get(to);
    if (!remote || remote.node === this.#presence.nodeId) {
      throw new ReelayError("unknown-recipient", `Nobody called ${JSON.stringify(to)} is online`);
    }
    const delivered = await this.#relay.send(
      remote.node,
      sender.announcement.name,
      remote.name,
      envelope,
      id,
    );
    if (!delivered) {
      throw new ReelayError(
        "unknown-recipient",
        `${JSON.stringify(to)} is no longer online: the message was not delivered`,
      );
    }
    return remote.name;
  }

  /** Stops relaying and watching, and gives up this node's names. */
  async close(): Promise<void> {
    this.#stopWatching();
    await Promise.all(this.#releasing);
    await this.#relay.close();
    await this.#presence.close();
  }

  #remotePages(): Uint8Array[] {
    const remote: Announcement[] = [];
    for (const person of this.#presence.people()) {
      if (person.node === this.#presence.nodeId) continue;
      const announcement = announcementOf(person);
      if (announcement) remote.push(announcement);
    }
    const pages: Uint8Array[] = [];
    for (let start = 0; start < remote.length; start += MAX_DIRECTORY_PAGE) {
      const peers = remote.slice(start, start + MAX_DIRECTORY_PAGE);
      pages.push(encodeMessage({ type: "directory", peers }));
    }
    return pages;
  }

  /** Tells this node's members about people joining and leaving on other nodes. */
  #onPresence(event: PresenceEvent): void {
    if (event.person.node === this.#presence.nodeId) return;
    let message: ServerMessage;
    if (event.type === "joined") {
      const peer = announcementOf(event.person);
      if (!peer) {
        this.#log("warn", `Presence of ${JSON.stringify(event.person.name)} has no announcement`);
        return;
      }
      message = { type: "joined", peer };
    } else {
      message = { type: "left", name: event.person.name };
    }
    const frame = encodeMessage(message);
    for (const member of this.#directory.members()) member.sendFrame(frame);
  }
}
