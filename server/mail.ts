/**
 * Routing sealed chat envelopes by store and forward: the server holds every envelope it accepts
 * (bytes it cannot read) in the mailbox (`server/store/`) until the recipient's client
 * acknowledges it, hands it at once to the recipient's connection when they are online, and
 * delivers what they have not acknowledged, in order, when they next connect: a connection that
 * died unnoticed, or was cut with mail queued on it, loses nothing. The client drops a second
 * copy by message id. Notices (a refusal, a message that expired) are held the same way. It
 * also keeps the registry of known people current and hands out prekey bundles, each one-time
 * key once.
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
import type { EndedMail, MailItem, Store } from "./store/mod.ts";

/** What the mailroom needs of a connected person. */
export interface Recipient extends RelayRecipient {
  readonly announcement: Announcement;
  /** Queues a message on the person's connection. */
  notify(message: ServerMessage): void;
  /**
   * Checks that a sealed envelope from `from` may be queued for the person now, under their
   * inbound limits: throws (to the sender) `rate-limited` or `recipient-busy`.
   */
  admit(from: string, envelope: Uint8Array): void;
  /**
   * Whether `bytes` more may be queued on the connection now, under its part of the queue and
   * the server's budget: held mail waits for room rather than getting a slow reader cut off.
   */
  hasRoom(bytes: number): boolean;
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

/**
 * Where a sent envelope went: held in both cases until the recipient acknowledges it, `relayed`
 * when the recipient was online (it is on its way to their connection), `queued` when they were
 * not (it waits for their next connection).
 */
export interface Routed {
  status: "relayed" | "queued";
  to: string;
  id: string;
}

/** An envelope that passed every check: where it went, once the commit holding it is done. */
export interface Accepted {
  routed: Promise<Routed>;
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
  /**
   * Whether the person called `to` is online on another node (a cluster's presence), so mail
   * held for them is `relayed` (their node delivers it) rather than `queued`.
   */
  online?: (to: string) => boolean;
  /**
   * Each sweep also drops the people the registry has not seen for its time to live (their mail
   * ends and its senders are told). Off on a cluster node: reading the whole shared registry
   * once a minute on every node costs more than it saves there.
   */
  expireRegistry?: boolean;
}

/**
 * An online person is remembered again once a day, so the registry (90 days) never drops them;
 * at most this many per sweep, each a write of its own, so that a full server is not held up
 * for the length of a thousand syncs at once (50 a minute is 72,000 a day).
 */
const REMEMBER_ONLINE_MS = 24 * 60 * 60 * 1000;
const REMEMBER_PER_SWEEP = 50;

const PAGE = 100;
const PAGE_BYTES = 1024 * 1024;
/** Room for a `deliver` frame's header and fields besides the envelope. */
const FRAME_ROOM = 256;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

interface State {
  fingerprint: string;
  draining: boolean;
  again: boolean;
  /** The last item handed to this connection: a new connection starts again from the first. */
  after?: string;
  /** When the registry last recorded this person as seen (ms since the epoch). */
  rememberedAt: number;
  /**
   * Whether the registry recorded this connection's key for its name: until then (or when that
   * write failed) the registry may still hold an older key, which is no change of key.
   */
  registered: boolean;
}

/**
 * Routes envelopes between the members of a {@linkcode Directory}, through a {@linkcode Store}.
 *
 * @example
 * ```ts ignore
 * const relay = new Mailroom(directory, store, { broadcast: true, log });
 * relay.joined(peer, fingerprint); // registers the person and delivers what was held for them
 * const { routed } = await relay.accept(peer, { to: "bob", envelope }); // checked, staged
 * const { status } = await routed; // "relayed" or "queued", once held on disk
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
    const state: State = {
      fingerprint,
      draining: true,
      again: false,
      rememberedAt: Date.now(),
      registered: false,
    };
    this.#state.set(member, state);
    const members = this.#members.get(fingerprint) ?? new Set();
    for (const each of members) if (each.closed) members.delete(each);
    this.#members.set(fingerprint, members.add(member));
    this.#track(member, state, async () => {
      // What is held is theirs whether or not the registry could be written (a busy store).
      await this.#remember(member, fingerprint).then(() => state.registered = true, (error) => {
        this.#options.log(
          "warn",
          `Could not remember ${JSON.stringify(member.announcement.name)}: ${errorDetail(error)}`,
        );
      });
      await this.#deliverHeld(member, state);
    });
  }

  #remember(member: M, fingerprint: string, seenAt?: number): Promise<unknown> {
    const { announcement } = member;
    return this.#store.registry.remember({
      nameKey: nameKey(announcement.name),
      name: announcement.name,
      fingerprint,
      announcement: structuredClone(announcement) as unknown as Record<string, string>,
      seenAt,
    });
  }

  /**
   * Drops the people unseen for the registry's time to live; those online are seen again first
   * (once a day each), so only the absent are dropped.
   */
  async #expireRegistry(now: number): Promise<void> {
    let remembered = 0;
    for (const [fingerprint, members] of this.#members) {
      for (const member of members) {
        if (remembered === REMEMBER_PER_SWEEP) break;
        const state = this.#state.get(member);
        if (!state || now - state.rememberedAt < REMEMBER_ONLINE_MS) continue;
        state.rememberedAt = now;
        remembered++;
        await this.#remember(member, fingerprint, now);
      }
    }
    let dropped: unknown[];
    do dropped = await this.#store.registry.expire(now, PAGE); while (dropped.length === PAGE);
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
   * Takes a sealed envelope from `sender`. Every envelope accepted is held in the mailbox until
   * the recipient's client acknowledges it (store and forward): handed at once to a recipient
   * online (`relayed`), delivered when one known but offline next connects (`queued`), and
   * delivered again, in order, on their next connection when the one it went out on was lost
   * before the acknowledgement.
   *
   * Resolves once every check passed and the hold is staged for the next commit; `routed` then
   * resolves once the commit holding it is done (the sender may be told then, and only then is
   * it delivered), or rejects with the store's error when that commit failed: the envelope is
   * then neither held nor delivered. Throws `unknown-recipient`, `recipient-key-changed` (the
   * recipient's key is not the one the sender sealed for) or the recipient's inbound limits
   * (`rate-limited`, `recipient-busy`); `routed` rejects with the mailbox's
   * `recipient-mailbox-full`, `sender-mailbox-full` and `mailbox-full`, and with
   * `recipient-key-changed` when the recipient's key changed while the hold waited for its
   * commit: an envelope refused is not held.
   */
  async accept(sender: M, outgoing: Outgoing): Promise<Accepted> {
    const id = outgoing.id ?? crypto.randomUUID();
    if (nameKey(outgoing.to) === nameKey(sender.announcement.name)) {
      throw new ReelayError("unknown-recipient", "Messages to yourself are not relayed");
    }
    const online = this.#directory?.get(outgoing.to);
    const entry = online ? undefined : await this.#known(outgoing.to);
    const to = online?.announcement.name ?? entry?.name;
    const recipientState = online && this.#state.get(online);
    const recipientKey = online ? recipientState?.fingerprint : entry?.fingerprint;
    if ((to === undefined || recipientKey === undefined) && this.#options.route) {
      // Online on another node but not in the shared registry yet (the moment after a first
      // join): relayed live, not held.
      const name = await this.#options.route(sender as never, outgoing.to, outgoing.envelope, id);
      return { routed: Promise.resolve({ status: "relayed", to: name, id }) };
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
    const from = sender.announcement.name;
    for (const here of online ? [online] : this.#here(recipientKey, to)) {
      here.admit(from, outgoing.envelope);
    }
    const live = online !== undefined || this.#options.online?.(to) === true;
    // On its way to an open connection, the hold needs no sync of its own: it survives a
    // restart, and a power cut only undoes it until the next sync (docs/storage.md).
    const held = this.#store.mailbox.put({
      kind: "sealed",
      recipientKey,
      recipientName: to,
      senderKey: this.fingerprintOf(sender),
      senderName: from,
      messageId: id,
      envelope: new Uint8Array(outgoing.envelope),
    }, {
      durable: !live,
      // Checked again in the commit: the key may change before it (a reconnect with a new key).
      ...(online && !recipientState?.registered
        ? {}
        : { recipientNameKey: nameKey(to), recipientOffline: !online }),
    });
    const routed = held.then((): Routed => {
      this.#broadcast(sender, online, { type: "sealed", from, to, envelope: outgoing.envelope });
      this.wake(recipientKey);
      return { status: live ? "relayed" : "queued", to, id };
    });
    routed.catch(() => {}); // the rejection goes to whoever awaits `routed`
    return { routed };
  }

  /** The open connections on this node of the person called `name` holding `recipientKey`. */
  #here(recipientKey: string, name: string): M[] {
    return [...this.#members.get(recipientKey) ?? []].filter((member) =>
      !member.closed && sameName(member.announcement.name, name)
    );
  }

  /** Deletes mail a member's client acknowledged. */
  async ack(member: M, ids: readonly string[]): Promise<void> {
    if (ids.length > 0) await this.#store.mailbox.remove(this.fingerprintOf(member), ids);
  }

  /**
   * Passes a recipient's signed refusal of message `id` back to its sender, held for them until
   * their client acknowledges it like a message. Throws `unknown-recipient`.
   */
  async refuse(
    member: M,
    refusal: { to: string; toKey: string; id: string; reason: string; signature: string },
  ): Promise<void> {
    const entry = await this.#known(refusal.to);
    if (!entry || entry.fingerprint !== refusal.toKey) {
      throw new ReelayError("unknown-recipient", `Nobody called ${JSON.stringify(refusal.to)}`);
    }
    // Counted against the refuser's share: refusals are mail they cause to be held.
    await this.#hold(entry.fingerprint, entry.name, {
      type: "refused",
      from: member.announcement.name,
      id: refusal.id,
      reason: refusal.reason,
      signature: refusal.signature,
    }, this.fingerprintOf(member));
  }

  /**
   * Holds a notice for a person until their client acknowledges it; delivers it if they are here.
   * `senderKey` is the person whose act it passes on, whose share of the mailbox it takes.
   */
  async #hold(
    recipientKey: string,
    recipientName: string,
    notice: ServerMessage,
    senderKey?: string,
  ): Promise<void> {
    await this.#store.mailbox.put({
      kind: "notice",
      recipientKey,
      recipientName,
      ...(senderKey === undefined ? {} : { senderKey }),
      notice: notice as unknown as Record<string, string>,
    });
    this.wake(recipientKey);
  }

  /**
   * Forgets the people unseen for the registry's time to live (with `expireRegistry`), ends
   * expired mail (theirs too) and tells each sender (a `failed` notice held for them, delivered at once
   * when they are online). Returns how many items ended.
   */
  async sweep(now: number = Date.now()): Promise<number> {
    for (const [fingerprint, members] of this.#members) {
      for (const member of members) if (member.closed) members.delete(member);
      if (members.size === 0) this.#members.delete(fingerprint);
    }
    if (this.#options.expireRegistry) await this.#expireRegistry(now);
    let ended = 0;
    while (true) {
      const page = await this.#store.mailbox.expire(now, PAGE);
      ended += page.length;
      // One group commit for the page's notices, which the connections get a turn before.
      await Promise.all(page.map((item) => this.#tellEnded(item)));
      if (page.length < PAGE) return ended;
    }
  }

  /** Tells the sender of a sealed message that ended unread (a notice held for them). */
  async #tellEnded(item: EndedMail): Promise<void> {
    if (item.kind !== "sealed") return;
    await this.#hold(item.senderKey, item.senderName, {
      type: "failed",
      to: item.recipientName,
      id: item.messageId,
      reason: item.reason,
    }).catch((error) => {
      this.#options.log("warn", `Could not tell a sender about expired mail: ${messageOf(error)}`);
    });
  }

  #broadcast(sender: M, recipient: M | undefined, message: ServerMessage): void {
    if (!this.#options.broadcast) return;
    let frame: Uint8Array | undefined;
    for (const other of this.#directory?.members() ?? []) {
      if (other === sender || other === recipient) continue;
      frame ??= encodeMessage(message);
      // A copy someone cannot take now is left out rather than getting them cut off for what
      // two others said: a burst committed together would otherwise pass a slow reader's queue.
      if (other.hasRoom(frame.length)) other.sendFrame(frame);
    }
  }

  /**
   * Delivers what is held for `member` and not yet handed to this connection, in order; mail
   * put meanwhile follows. Nothing is deleted here: only the client's `ack` deletes.
   */
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
      // Mail put while a delivery failed is not left waiting for the next put or connection.
      if (state.again && !member.closed) this.#drain(member);
    });
    this.#draining.add(task);
  }

  async #deliverHeld(member: M, state: State): Promise<void> {
    const senders = new Map<string, PublicIdentity | undefined>();
    do {
      state.again = false;
      while (!member.closed) {
        const options = state.after === undefined
          ? { maxBytes: PAGE_BYTES }
          : { after: state.after, maxBytes: PAGE_BYTES };
        const page = await this.#store.mailbox.pending(state.fingerprint, PAGE, options);
        if (page.length === 0) break;
        for (const item of page) {
          // Mail is kept by key; one key may have joined under two names at once.
          if (sameName(item.recipientName, member.announcement.name)) {
            while (member.queuedBytes > 0 && !member.hasRoom(item.bytes + FRAME_ROOM)) {
              await member.drained();
            }
            if (member.closed) return;
            await this.#deliverOne(member, item, senders);
          }
          state.after = item.id;
        }
      }
    } while (state.again && !member.closed);
  }

  async #deliverOne(
    member: M,
    item: MailItem,
    senders: Map<string, PublicIdentity | undefined>,
  ): Promise<void> {
    if (item.kind === "notice") {
      member.notify(
        { ...(item.notice as unknown as ServerMessage), mail: item.id } as ServerMessage,
      );
      return;
    }
    if (!senders.has(item.senderKey)) {
      senders.set(item.senderKey, await this.#keysOf(item.senderName, item.senderKey));
    }
    const fromKeys = senders.get(item.senderKey);
    member.notify({
      type: "deliver",
      from: item.senderName,
      ...(fromKeys ? { fromKeys } : {}),
      id: item.messageId,
      mail: item.id,
      envelope: item.envelope,
    });
  }

  /** The keys of the person called `name` if they still hold `fingerprint`: here, or registered. */
  async #keysOf(name: string, fingerprint: string): Promise<PublicIdentity | undefined> {
    for (const member of this.#members.get(fingerprint) ?? []) {
      if (sameName(member.announcement.name, name)) return member.announcement.keys;
    }
    const sender = await this.#store.registry.lookup(nameKey(name));
    const announcement = sender?.announcement as unknown as Announcement | undefined;
    return sender?.fingerprint === fingerprint ? announcement?.keys : undefined;
  }
}
