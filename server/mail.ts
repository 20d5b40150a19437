/**
 * Routing sealed chat envelopes: the server relays bytes it cannot read to the person named if
 * they are online, holds them in the mailbox (`server/store/`) if they are known but offline,
 * delivers what was held in order when they connect, and deletes each item once their client
 * acknowledges it (at least once: the client drops a redelivery by message id). It also keeps the
 * registry of known people current and hands out prekey bundles, each one-time key once.
 *
 * With `[chat] broadcast` on, every other client online also gets each sealed envelope as a
 * `sealed` message (from, to, bytes) that it cannot open.
 *
 * @module
 */

import { type PublicIdentity, verifyPublished } from "../shared/crypto/mod.ts";
import { errorDetail, messageOf, ReelayError } from "../shared/errors.ts";
import type { Logger } from "../shared/log.ts";
import { nameKey, sameName } from "../shared/names.ts";
import { type Announcement, encodeMessage, type ServerMessage } from "../shared/protocol/mod.ts";
import type { Directory } from "./directory.ts";
import type { Recipient as RelayRecipient } from "./relay.ts";
import type { MailItem, Store } from "./store/mod.ts";

/** What the mailroom needs of a connected person. */
export interface Recipient extends RelayRecipient {
  readonly announcement: Announcement;
  /** Queues a message on the person's connection. */
  notify(message: ServerMessage): void;
  /**
   * Queues a sealed envelope from `from` with its header fields, under the person's inbound
   * limits (throws `rate-limited` or `recipient-busy` to the sender).
   */
  deliverSealed(
    from: string,
    envelope: Uint8Array,
    header: { id: string; fromKeys: PublicIdentity },
  ): boolean;
  /** Bytes waiting on the connection, and a way to wait until they are written. */
  readonly queuedBytes: number;
  drained(): Promise<void>;
  /** Whether the connection is closed. */
  readonly closed: boolean;
}

/** A sealed envelope a client sends. */
export interface Outgoing {
  to: string;
  toKey?: string;
  id?: string;
  envelope: Uint8Array;
}

/** Where a sent envelope went. */
export interface Routed {
  status: "relayed" | "queued";
  to: string;
  id: string;
}

/** Options of {@linkcode Mailroom}. */
export interface RelayOptions {
  /** Every other client also gets each sealed envelope (`[chat] broadcast`). */
  broadcast: boolean;
  log: Logger;
  /**
   * Hands an envelope to someone neither on this node nor known to its store (a cluster's other
   * nodes); returns their name. Without it they are `unknown-recipient`.
   */
  route?: (sender: never, to: string, envelope: Uint8Array, id: string) => Promise<string>;
}

const PAGE = 100;
const PAGE_BYTES = 1024 * 1024;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

interface State {
  fingerprint: string;
  draining: boolean;
  again: boolean;
}

/**
 * Routes envelopes between the members of a {@linkcode Directory}, through a {@linkcode Store}.
 *
 * @example
 * ```ts ignore
 * const relay = new Mailroom(directory, store, { broadcast: true, log });
 * relay.joined(peer, fingerprint); // registers the person and delivers what was held for them
 * const routed = await relay.send(peer, { to: "bob", envelope }); // "relayed" or "queued"
 * ```
 */
export class Mailroom<M extends Recipient> {
  readonly #directory: Directory<M> | undefined;
  readonly #store: Store;
  readonly #options: RelayOptions;
  readonly #state = new WeakMap<M, State>();
  readonly #draining = new Set<Promise<void>>();
  /** Members by fingerprint, for {@linkcode Mailroom.wake}; closed ones pruned on each sweep. */
  readonly #members = new Map<string, Set<M>>();

  /**
   * Routes among `directory`'s members (the people on this node; on a cluster node, people on
   * other nodes look offline and their mail is held here), holding mail in `store`.
   */
  constructor(directory: Directory<M> | undefined, store: Store, options: RelayOptions) {
    this.#directory = directory;
    this.#store = store;
    this.#options = options;
  }

  /** The full key fingerprint of a joined member. */
  fingerprintOf(member: M): string {
    const state = this.#state.get(member);
    if (!state) throw new Error("Member is not registered with the relay");
    return state.fingerprint;
  }

  /**
   * Registers a member who just joined, with the full fingerprint of their keys: call at once
   * after the directory took them (before any await), so mail sent to them from then on is held
   * and follows what was held before, in order. The registry remembers them (so mail can be held
   * for them later) and what is held for them is delivered.
   */
  joined(member: M, fingerprint: string): void {
    const state: State = { fingerprint, draining: true, again: false };
    this.#state.set(member, state);
    const members = this.#members.get(fingerprint) ?? new Set();
    for (const each of members) if (each.closed) members.delete(each);
    this.#members.set(fingerprint, members.add(member));
    const { announcement } = member;
    this.#track(member, state, async () => {
      await this.#store.registry.remember({
        nameKey: nameKey(announcement.name),
        name: announcement.name,
        fingerprint,
        announcement: structuredClone(announcement) as unknown as Record<string, string>,
      });
      await this.#deliverHeld(member, state);
    });
  }

  /**
   * Delivers what is held for `recipientKey` to whoever holds that key here: a cluster node calls
   * it when another node held mail for someone connected to this one.
   */
  wake(recipientKey: string): void {
    for (const member of this.#members.get(recipientKey) ?? []) {
      if (!member.closed) this.#drain(member);
    }
  }

  /** Resolves once every delivery of held mail that started has ended. */
  async idle(): Promise<void> {
    while (this.#draining.size > 0) await Promise.all(this.#draining);
  }

  /**
   * Stores the prekeys a member publishes (checked against their identity first); returns how
   * many one-time keys of each kind the server holds for them.
   */
  async publish(
    member: M,
    published: unknown,
  ): Promise<{ oneTime: number; pqOneTime: number }> {
    const checked = await verifyPublished(member.announcement.keys, published).catch((error) => {
      throw new ReelayError("bad-prekeys", `Prekeys refused: ${messageOf(error)}`);
    });
    const fingerprint = this.fingerprintOf(member);
    const { prekeys } = this.#store;
    const signed = { signedPrekey: checked.signedPrekey, pqLastResort: checked.pqLastResort };
    await prekeys.publish(fingerprint, encoder.encode(JSON.stringify(signed)));
    const blob = (key: { id: number }) => ({
      id: key.id,
      key: encoder.encode(JSON.stringify(key)),
    });
    await this.#addOneTime(fingerprint, "x25519", checked.oneTime.map(blob));
    await this.#addOneTime(fingerprint, "mlkem768", checked.pqOneTime.map(blob));
    const counts = await prekeys.oneTimeCount(fingerprint);
    return { oneTime: counts.x25519, pqOneTime: counts.mlkem768 };
  }

  /**
   * Adds one-time keys; when some ids are already held (the same identity published from
   * another copy of its store), adds the others one by one so a person is never left without.
   */
  async #addOneTime(
    fingerprint: string,
    kind: "x25519" | "mlkem768",
    keys: { id: number; key: Uint8Array<ArrayBuffer> }[],
  ): Promise<void> {
    if (keys.length === 0) return;
    try {
      await this.#store.prekeys.addOneTime(fingerprint, kind, keys);
    } catch (error) {
      if (!(error instanceof ReelayError) || error.code !== "duplicate-prekey-id") throw error;
      for (const key of keys) {
        await this.#store.prekeys.addOneTime(fingerprint, kind, [key]).catch((each) => {
          if (!(each instanceof ReelayError) || each.code !== "duplicate-prekey-id") throw each;
        });
      }
    }
  }

  /**
   * A bundle to start a conversation with `name`: their keys, signed prekeys, one PQ prekey
   * (a one-time one while any is left) and one one-time X25519 prekey while any is left. Each
   * one-time key is handed out once. Throws `unknown-recipient` or `no-prekeys`.
   */
  async bundle(
    name: string,
  ): Promise<{ name: string; identity: PublicIdentity; bundle: Record<string, unknown> }> {
    const entry = await this.#known(name);
    if (!entry) {
      throw new ReelayError("unknown-recipient", `Nobody called ${JSON.stringify(name)} is known`);
    }
    const taken = await this.#store.prekeys.takeBundle(entry.fingerprint);
    if (!taken) {
      throw new ReelayError(
        "no-prekeys",
        `${JSON.stringify(entry.name)} has published no prekeys: they must connect once first`,
      );
    }
    const signed = JSON.parse(decoder.decode(taken.signed));
    const parse = (key: { key: Uint8Array } | undefined) =>
      key ? JSON.parse(decoder.decode(key.key)) : undefined;
    const bundle: Record<string, unknown> = {
      signedPrekey: signed.signedPrekey,
      pqPrekey: parse(taken.oneTime.mlkem768) ?? signed.pqLastResort,
    };
    const oneTime = parse(taken.oneTime.x25519);
    if (oneTime) bundle.oneTimePrekey = oneTime;
    const announcement = entry.announcement as unknown as Announcement;
    return { name: entry.name, identity: announcement.keys, bundle };
  }

  /** The registered person called `name`; a lookalike with only the same skeleton is not them. */
  async #known(name: string) {
    const entry = await this.#store.registry.lookup(nameKey(name));
    return entry && sameName(entry.name, name) ? entry : undefined;
  }

  /**
   * Sends a sealed envelope from `sender`: relayed at once to a recipient online, held for one
   * known but offline. Throws `unknown-recipient`, `recipient-key-changed` (the recipient's key
   * is not the one the sender sealed for), or the mailbox's `recipient-mailbox-full` and
   * `mailbox-full`.
   */
  async send(sender: M, outgoing: Outgoing): Promise<Routed> {
    const id = outgoing.id ?? crypto.randomUUID();
    const online = this.#directory?.get(outgoing.to);
    if (online === sender) {
      throw new ReelayError("unknown-recipient", "Messages to yourself are not relayed");
    }
    const entry = online ? undefined : await this.#known(outgoing.to);
    const to = online?.announcement.name ?? entry?.name;
    const recipientKey = online ? this.#state.get(online)?.fingerprint : entry?.fingerprint;
    if ((to === undefined || recipientKey === undefined) && this.#options.route) {
      const name = await this.#options.route(sender as never, outgoing.to, outgoing.envelope, id);
      return { status: "relayed", to: name, id };
    }
    if (to === undefined || recipientKey === undefined) {
      throw new ReelayError(
        "unknown-recipient",
        `Nobody called ${JSON.stringify(outgoing.to)} is online or known`,
      );
    }
    if (outgoing.toKey !== undefined && outgoing.toKey !== recipientKey) {
      throw new ReelayError(
        "recipient-key-changed",
        `${JSON.stringify(to)} now has another key than the one this message was sealed for`,
      );
    }
    if (!online && this.#options.route) {
      // Known to the cluster's shared registry: online on another node gets it now, else held.
      try {
        const name = await this.#options.route(sender as never, outgoing.to, outgoing.envelope, id);
        return { status: "relayed", to: name, id };
      } catch (error) {
        if (!(error instanceof ReelayError) || error.code !== "unknown-recipient") throw error;
      }
    }
    const from = sender.announcement.name;
    const live = online ? this.#state.get(online) : undefined;
    if (online && live && !live.draining && !online.closed) {
      online.deliverSealed(from, outgoing.envelope, { id, fromKeys: sender.announcement.keys });
      this.#broadcast(sender, online, { type: "sealed", from, to, envelope: outgoing.envelope });
      return { status: "relayed", to, id };
    }
    await this.#store.mailbox.put({
      kind: "sealed",
      recipientKey,
      recipientName: to,
      senderKey: this.fingerprintOf(sender),
      senderName: from,
      messageId: id,
      envelope: new Uint8Array(outgoing.envelope),
    });
    this.#broadcast(sender, online, { type: "sealed", from, to, envelope: outgoing.envelope });
    if (online) this.#drain(online);
    return { status: online ? "relayed" : "queued", to, id };
  }

  /** Deletes mail a member's client acknowledged. */
  async ack(member: M, ids: readonly string[]): Promise<void> {
    if (ids.length > 0) await this.#store.mailbox.remove(this.fingerprintOf(member), ids);
  }

  /**
   * Passes a recipient's signed refusal of message `id` back to its sender (held for them if
   * they are offline). Throws `unknown-recipient`.
   */
  async refuse(
    member: M,
    refusal: { to: string; toKey: string; id: string; reason: string; signature: string },
  ): Promise<void> {
    const notice: ServerMessage = {
      type: "refused",
      from: member.announcement.name,
      id: refusal.id,
      reason: refusal.reason,
      signature: refusal.signature,
    };
    const online = this.#directory?.get(refusal.to);
    const live = online ? this.#state.get(online) : undefined;
    if (online && !online.closed && live && live.fingerprint === refusal.toKey && !live.draining) {
      online.notify(notice);
      return;
    }
    const entry = await this.#known(refusal.to);
    if (!entry || entry.fingerprint !== refusal.toKey) {
      throw new ReelayError("unknown-recipient", `Nobody called ${JSON.stringify(refusal.to)}`);
    }
    await this.#store.mailbox.put({
      kind: "notice",
      recipientKey: entry.fingerprint,
      recipientName: entry.name,
      notice: notice as unknown as Record<string, string>,
    });
    if (online) this.#drain(online);
  }

  /**
   * Ends expired mail and tells each sender (a `failed` notice held for them, or at once when
   * online). Returns how many items ended.
   */
  async sweep(now: number = Date.now()): Promise<number> {
    for (const [fingerprint, members] of this.#members) {
      for (const member of members) if (member.closed) members.delete(member);
      if (members.size === 0) this.#members.delete(fingerprint);
    }
    let ended = 0;
    while (true) {
      const page = await this.#store.mailbox.expire(now, PAGE);
      ended += page.length;
      for (const item of page) {
        if (item.kind !== "sealed") continue;
        const notice: ServerMessage = {
          type: "failed",
          to: item.recipientName,
          id: item.messageId,
          reason: item.reason,
        };
        const online = this.#directory?.get(item.senderName);
        const live = online ? this.#state.get(online) : undefined;
        if (online && !online.closed && live?.fingerprint === item.senderKey && !live.draining) {
          online.notify(notice);
          continue;
        }
        await this.#store.mailbox.put({
          kind: "notice",
          recipientKey: item.senderKey,
          recipientName: item.senderName,
          notice: notice as unknown as Record<string, string>,
        }).catch((error) => {
          this.#options.log(
            "warn",
            `Could not tell a sender about expired mail: ${messageOf(error)}`,
          );
        });
      }
      if (page.length < PAGE) return ended;
    }
  }

  #broadcast(sender: M, recipient: M | undefined, message: ServerMessage): void {
    if (!this.#options.broadcast) return;
    let frame: Uint8Array | undefined;
    for (const other of this.#directory?.members() ?? []) {
      if (other === sender || other === recipient) continue;
      frame ??= encodeMessage(message);
      other.sendFrame(frame);
    }
  }

  /** Delivers what is held for `member`, in order; new mail meanwhile is held and follows. */
  #drain(member: M): void {
    const state = this.#state.get(member);
    if (!state) return;
    if (state.draining) {
      state.again = true;
      return;
    }
    state.draining = true;
    this.#track(member, state, () => this.#deliverHeld(member, state));
  }

  #track(member: M, state: State, work: () => Promise<void>): void {
    const task: Promise<void> = work().catch((error) => {
      this.#options.log(
        "error",
        `Delivering held mail to ${JSON.stringify(member.announcement.name)} failed: ` +
          errorDetail(error),
      );
    }).finally(() => {
      state.draining = false;
      this.#draining.delete(task);
    });
    this.#draining.add(task);
  }

  async #deliverHeld(member: M, state: State): Promise<void> {
    let after: string | undefined;
    do {
      state.again = false;
      while (!member.closed) {
        const options = after === undefined
          ? { maxBytes: PAGE_BYTES }
          : { after, maxBytes: PAGE_BYTES };
        const page = await this.#store.mailbox.pending(state.fingerprint, PAGE, options);
        if (page.length === 0) break;
        for (const item of page) await this.#deliverOne(member, item);
        after = page[page.length - 1].id;
        if (member.queuedBytes > PAGE_BYTES) await member.drained();
      }
    } while (state.again && !member.closed);
  }

  async #deliverOne(member: M, item: MailItem): Promise<void> {
    if (item.kind === "notice") {
      member.notify(
        { ...(item.notice as unknown as ServerMessage), mail: item.id } as ServerMessage,
      );
      return;
    }
    const sender = await this.#store.registry.lookup(nameKey(item.senderName));
    const announcement = sender?.announcement as unknown as Announcement | undefined;
    const fromKeys = sender?.fingerprint === item.senderKey ? announcement?.keys : undefined;
    member.notify({
      type: "deliver",
      from: item.senderName,
      ...(fromKeys ? { fromKeys } : {}),
      id: item.messageId,
      mail: item.id,
      envelope: item.envelope,
    });
  }
}
