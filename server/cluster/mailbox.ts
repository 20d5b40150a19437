/**
 * The cluster's {@linkcode Mailbox}: held mail in one JetStream stream, `REELAY_MAIL`, one
 * subject per recipient (`reelay.mail.<recipient key>`), so it survives any node's restart and
 * any node can deliver it. An item's id is its stream sequence.
 *
 * Bounds are checked on counts kept beside the stream (`_mail_counts.ts`: per recipient and per
 * sender, each changed by compare-and-set), so a put reads two counts, not every item held, and
 * two nodes racing past a bound hold exactly the bound. The total bound is the stream's
 * `max_bytes` with discard-new, which counts JetStream's own bytes (subject and our metadata
 * too), so it bites a little before the envelopes alone reach it.
 *
 * A put wakes the nodes with an empty message on `<prefix>-held.<recipient key>` once the item is
 * stored: every node learns that mail came, and only the recipient's node reads it.
 *
 * Mail whose recipient was dropped or changed key is ended by {@linkcode JetStreamMailbox.end}:
 * each item moves to `<prefix>.ended.<recipient key>` with its reason, where no delivery looks
 * and the next {@linkcode JetStreamMailbox.expire} on any node returns it first.
 *
 * @module
 */

import { type JetStreamManager, jetstreamManager, type StoredMsg } from "@nats-io/jetstream";
import type { NatsConnection } from "./nats.ts";
import { ByteReader, type Bytes, encodeFields, fromUtf8, utf8 } from "../../shared/bytes.ts";
import { messageOf, ReelayError } from "../../shared/errors.ts";
import { checkFingerprint, checkLimit, checkMail, checkTime, shown } from "../store/checks.ts";
// The single server's refusals, word for word.
import { checkRecipientRoom, checkSenderRoom } from "../store/checks.ts";
import {
  DEFAULT_STORE_LIMITS,
  type EndedMail,
  type JsonValue,
  type Mailbox,
  type MailboxStats,
  type MailCount,
  type MailEndReason,
  type MailId,
  type MailItem,
  type MailParties,
  MAX_PAGE,
  type NewMail,
  type PendingOptions,
  type PutResult,
  type StoreOptions,
} from "../store/mod.ts";
import { apiCode, JS_MAXIMUM_BYTES } from "./_errors.ts";
import {
  type CountKey,
  MailCounts,
  messageIdKey,
  recipientCount,
  senderCount,
} from "./_mail_counts.ts";

/** The stream's default name. */
export const MAIL_STREAM = "REELAY_MAIL";

/** Bounds and clock of the JetStream mailbox (the same keys as the SQLite store's). */
export type JetStreamMailboxOptions =
  & Pick<
    StoreOptions,
    | "maxItemsPerRecipient"
    | "maxBytesPerRecipient"
    | "maxBytesPerSender"
    | "maxTotalBytes"
    | "ttlMs"
  >
  & {
    /** The stream's name (tests use their own). */
    stream?: string;
    /** The clock, in milliseconds since the epoch. */
    now?: () => number;
  };

/** Held past their time only this long if no node sweeps (the stream's own max age). */
const BACKSTOP_MS = 60 * 60 * 1000;

/** What each stored message carries besides its body. */
interface Meta {
  kind: "sealed" | "notice";
  recipientKey: string;
  recipientName: string;
  senderKey?: string;
  senderName?: string;
  messageId?: string;
  queuedAt: number;
  expiresAt: number;
  /** Set on an item ended before its time. */
  endReason?: MailEndReason;
}

interface Held {
  seq: number;
  meta: Meta;
  body: Bytes;
}

function heldOf(message: StoredMsg): Held {
  try {
    const reader = new ByteReader(message.data);
    const meta = JSON.parse(fromUtf8(reader.prefixed32(2, 64 * 1024)) ?? "") as Meta;
    const body = reader.prefixed32(0, message.data.length);
    reader.end();
    return { seq: message.seq, meta, body };
  } catch (error) {
    throw new ReelayError(
      "store-corrupt",
      `Mail ${message.seq} in the stream is not reelay's (${messageOf(error)})`,
      { cause: error },
    );
  }
}

function partiesOf(meta: Meta): MailParties {
  const { recipientKey, recipientName } = meta;
  if (meta.kind !== "sealed") return { kind: "notice", recipientKey, recipientName };
  return {
    kind: "sealed",
    recipientKey,
    recipientName,
    senderKey: meta.senderKey ?? "",
    senderName: meta.senderName ?? "",
    messageId: meta.messageId ?? "",
  };
}

function itemOf(held: Held): MailItem {
  const stamp = {
    id: String(held.seq),
    queuedAt: held.meta.queuedAt,
    expiresAt: held.meta.expiresAt,
    bytes: held.body.length,
  };
  const parties = partiesOf(held.meta);
  if (parties.kind === "sealed") return { ...parties, envelope: held.body, ...stamp };
  const notice = JSON.parse(fromUtf8(held.body) ?? "null") as JsonValue;
  return { ...parties, notice, ...stamp };
}

function countItems(held: readonly Held[]): MailCount {
  return { items: held.length, bytes: held.reduce((sum, item) => sum + item.body.length, 0) };
}

function seqOf(id: MailId): number | undefined {
  return /^[1-9]\d{0,15}$/.test(id) ? Number(id) : undefined;
}

/**
 * Offline delivery through JetStream.
 *
 * @example
 * ```ts ignore
 * const mailbox = await JetStreamMailbox.open(nc, { ttlMs: 7 * 24 * 3600_000 });
 * await mailbox.put({ kind: "notice", recipientKey: "b0".repeat(32), recipientName: "bob", notice: {} });
 * ```
 */
export class JetStreamMailbox implements Mailbox {
  readonly #jsm: JetStreamManager;
  readonly #nc: NatsConnection;
  readonly #stream: string;
  readonly #limits: Required<Omit<JetStreamMailboxOptions, "stream" | "now">>;
  readonly #now: () => number;
  readonly #counts: MailCounts;

  private constructor(
    nc: NatsConnection,
    jsm: JetStreamManager,
    stream: string,
    counts: MailCounts,
    options: JetStreamMailboxOptions,
  ) {
    this.#nc = nc;
    this.#jsm = jsm;
    this.#stream = stream;
    this.#counts = counts;
    this.#limits = {
      maxItemsPerRecipient: options.maxItemsPerRecipient ??
        DEFAULT_STORE_LIMITS.maxItemsPerRecipient,
      maxBytesPerRecipient: options.maxBytesPerRecipient ??
        DEFAULT_STORE_LIMITS.maxBytesPerRecipient,
      maxBytesPerSender: options.maxBytesPerSender ?? DEFAULT_STORE_LIMITS.maxBytesPerSender,
      maxTotalBytes: options.maxTotalBytes ?? DEFAULT_STORE_LIMITS.maxTotalBytes,
      ttlMs: options.ttlMs ?? DEFAULT_STORE_LIMITS.ttlMs,
    };
    this.#now = options.now ?? Date.now;
  }

  /** Opens the stream, creating it or bringing its limits up to date. */
  static async open(
    nc: NatsConnection,
    options: JetStreamMailboxOptions = {},
  ): Promise<JetStreamMailbox> {
    const stream = options.stream ?? MAIL_STREAM;
    try {
      const jsm = await jetstreamManager(nc);
      const maxAgeMs = (options.ttlMs ?? DEFAULT_STORE_LIMITS.ttlMs) + BACKSTOP_MS;
      // The counts live as long as the mail they count: an entry unwritten that long counts
      // nothing still held.
      const counts = await MailCounts.open(nc, `${stream}_COUNTS`, maxAgeMs);
      const mailbox = new JetStreamMailbox(nc, jsm, stream, counts, options);
      const limits = {
        max_bytes: mailbox.#limits.maxTotalBytes,
        max_age: maxAgeMs * 1_000_000,
      };
      const found = await jsm.streams.info(stream).catch(() => undefined);
      if (found) {
        await jsm.streams.update(stream, { ...found.config, ...limits });
      } else {
        await jsm.streams.add({
          name: stream,
          subjects: [`${mailbox.#prefix}.>`],
          discard: "new" as never,
          ...limits,
        });
      }
      return mailbox;
    } catch (error) {
      throw new ReelayError(
        "cluster-unavailable",
        `Cannot open the mail stream ${JSON.stringify(stream)} (${messageOf(error)}): is ` +
          "JetStream enabled (nats-server -js)?",
        { cause: error },
      );
    }
  }

  get #prefix(): string {
    return this.#stream === MAIL_STREAM
      ? "reelay.mail"
      : `reelay.mail-${this.#stream.toLowerCase()}`;
  }

  #subject(recipientKey: string): string {
    return `${this.#prefix}.${recipientKey}`;
  }

  /** Where a put tells every node that mail came for a recipient (outside the stream). */
  get #heldPrefix(): string {
    return `${this.#prefix}-held`;
  }

  /**
   * Calls `onHeld` with the recipient key of every item any node puts from now on, once it is
   * stored, so the node where the recipient is connected can deliver it at once. The wake-up
   * carries no mail: only that node reads it. Returns a function that stops it.
   */
  watch(onHeld: (recipientKey: string) => void): () => void {
    const prefix = `${this.#heldPrefix}.`;
    const subscription = this.#nc.subscribe(`${prefix}*`, {
      callback: (error, message) => {
        if (error === null) onHeld(message.subject.slice(prefix.length));
      },
    });
    return () => subscription.unsubscribe();
  }

  /** See {@linkcode Mailbox.put}. */
  async put(item: NewMail): Promise<PutResult> {
    const { body, ...checked } = checkMail(item);
    const meta: Omit<Meta, "queuedAt" | "expiresAt"> = {
      kind: checked.kind,
      recipientKey: checked.recipientKey,
      recipientName: checked.recipientName,
      ...(checked.kind === "sealed"
        ? {
          senderKey: checked.senderKey ?? "",
          senderName: checked.senderName ?? "",
          messageId: checked.messageId ?? "",
        }
        // A notice passed on from someone (a refusal) takes from their share.
        : checked.senderKey === null
        ? {}
        : { senderKey: checked.senderKey }),
    };
    const idKey = meta.kind === "sealed"
      ? messageIdKey(meta.recipientKey, meta.senderKey ?? "", meta.messageId ?? "")
      : undefined;
    // Both at once, each a round trip or two: a duplicate is rare, and gives its counts back.
    const [same, reserved] = await Promise.allSettled([
      idKey && this.#call(() => this.#heldAs(idKey, meta)),
      this.#call(() => this.#reserve(meta, body.length)),
    ]);
    if (same.status === "fulfilled" && same.value) {
      if (reserved.status === "fulfilled") await this.#unreserve(meta, body.length);
      return same.value;
    }
    if (reserved.status === "rejected") throw reserved.reason;
    if (same.status === "rejected") {
      await this.#unreserve(meta, body.length);
      throw same.reason;
    }
    const queuedAt = this.#now();
    const expiresAt = queuedAt + this.#limits.ttlMs;
    const payload = encodeFields([utf8(JSON.stringify({ ...meta, queuedAt, expiresAt })), body]);
    let seq: number;
    try {
      seq = (await this.#jsm.jetstream().publish(this.#subject(meta.recipientKey), payload)).seq;
    } catch (error) {
      await this.#unreserve(meta, body.length);
      throw this.#putFailure(error, body.length);
    }
    const first = idKey && await this.#call(() => this.#counts.record(idKey, seq));
    if (first) {
      // Another node held the same message at the same moment, and recorded it first.
      await this.#delete(seq);
      await this.#unreserve(meta, body.length);
      return { id: String(first), expiresAt, duplicate: true };
    }
    this.#nc.publish(`${this.#heldPrefix}.${meta.recipientKey}`);
    return { id: String(seq), expiresAt, duplicate: false };
  }

  /** The put result of the item held under a message id's `idKey`, if it is still held. */
  async #heldAs(
    idKey: string,
    meta: Omit<Meta, "queuedAt" | "expiresAt">,
  ): Promise<PutResult | undefined> {
    const seq = await this.#counts.sequence(idKey);
    if (seq === undefined) return undefined;
    const message = await this.#get({ seq });
    if (message?.subject === this.#subject(meta.recipientKey)) {
      const held = heldOf(message);
      return { id: String(seq), expiresAt: held.meta.expiresAt, duplicate: true };
    }
    // Taken out without its id forgotten (a node died in between).
    await this.#counts.forget(idKey);
    return undefined;
  }

  /**
   * Counts the item for its recipient and its sender, refusing it past their bounds (the
   * recipient's refusal first, as on a single server). The two counts are written at once.
   */
  async #reserve(meta: Omit<Meta, "queuedAt" | "expiresAt">, size: number): Promise<void> {
    const recipient = recipientCount(meta.recipientKey);
    const counted = await Promise.allSettled([
      this.#counts.add(
        recipient,
        size,
        (held) => checkRecipientRoom(meta.recipientName, held, size, this.#limits),
        // Mail held before the counts were kept (a node of an older build put it).
        async () => countItems(await this.#all(this.#subject(meta.recipientKey))),
      ),
      meta.senderKey !== undefined && this.#counts.add(
        senderCount(meta.senderKey),
        size,
        (sent) => checkSenderRoom(sent, size, this.#limits.maxBytesPerSender),
        () => Promise.resolve({ items: 0, bytes: 0 }),
      ),
    ]);
    const refused = counted.find((result) => result.status === "rejected");
    if (refused === undefined) return;
    const keys = [recipient, meta.senderKey !== undefined && senderCount(meta.senderKey)];
    await Promise.all(counted.map((result, i) => {
      const key = keys[i];
      if (result.status === "rejected" || !key) return undefined;
      return this.#counts.take(key, 1, size).catch(() => {});
    }));
    throw refused.reason;
  }

  /**
   * Takes back what {@linkcode #reserve} counted for an item not held. When NATS is away the
   * counts stay high (bounds bite early) until they expire.
   */
  async #unreserve(meta: Omit<Meta, "queuedAt" | "expiresAt">, size: number): Promise<void> {
    await this.#uncount([{ meta, size }]).catch(() => {});
  }

  /**
   * Takes items out of the counts, one write per count touched. An ended item left its
   * recipient's count when it ended: only its sender's count still has it.
   */
  async #uncount(
    items: readonly { meta: Omit<Meta, "queuedAt" | "expiresAt">; size: number }[],
  ): Promise<void> {
    const sums = new Map<CountKey, MailCount>();
    const add = (key: CountKey, size: number) => {
      const sum = sums.get(key) ?? { items: 0, bytes: 0 };
      sums.set(key, { items: sum.items + 1, bytes: sum.bytes + size });
    };
    for (const { meta, size } of items) {
      if (meta.endReason === undefined) add(recipientCount(meta.recipientKey), size);
      if (meta.senderKey !== undefined) add(senderCount(meta.senderKey), size);
    }
    await Promise.all([...sums].map(([key, sum]) => this.#counts.take(key, sum.items, sum.bytes)));
  }

  /** Forgets the message ids of items taken out of their recipient's mailbox. */
  async #forgetIds(items: readonly Held[]): Promise<void> {
    await Promise.all(items.map(({ meta }) => {
      if (meta.endReason !== undefined || meta.kind !== "sealed" || meta.senderKey === undefined) {
        return undefined;
      }
      return this.#counts.forget(
        messageIdKey(meta.recipientKey, meta.senderKey, meta.messageId ?? ""),
      );
    }));
  }

  /** Takes removed or expired items out of the counts and forgets their ids. */
  async #takenOut(items: readonly Held[]): Promise<void> {
    await this.#call(() =>
      Promise.all([
        this.#uncount(items.map((held) => ({ meta: held.meta, size: held.body.length }))),
        this.#forgetIds(items),
      ])
    );
  }

  #putFailure(error: unknown, size: number): ReelayError {
    if (apiCode(error) === JS_MAXIMUM_BYTES) {
      return new ReelayError(
        "mailbox-full",
        `The cluster's mailbox is full: ${size} more bytes would pass the most, ` +
          `${this.#limits.maxTotalBytes} bytes`,
      );
    }
    if (/maximum payload/i.test(messageOf(error))) {
      return new ReelayError(
        "message-too-large",
        `Message of ${size} bytes is over the cluster's payload limit ` +
          `(${this.#nc.info?.max_payload} bytes)`,
      );
    }
    return new ReelayError(
      "cluster-unavailable",
      `Cannot hold the message: the cluster does not answer (${messageOf(error)})`,
      { cause: error },
    );
  }

  /** See {@linkcode Mailbox.pending}. */
  async pending(
    recipientKey: string,
    limit: number,
    options: PendingOptions = {},
  ): Promise<MailItem[]> {
    checkFingerprint(recipientKey, "Recipient key");
    checkLimit(limit);
    const after = options.after === undefined ? 0 : seqOf(options.after);
    if (after === undefined) throw new RangeError(`Mail id ${shown(options.after)} is unknown`);
    const now = this.#now();
    const page: MailItem[] = [];
    let bytes = 0;
    for await (const held of this.#walk(this.#subject(recipientKey), after + 1)) {
      if (held.meta.expiresAt <= now) continue;
      if (page.length > 0 && options.maxBytes !== undefined) {
        if (bytes + held.body.length > options.maxBytes) break;
      }
      bytes += held.body.length;
      page.push(itemOf(held));
      if (page.length >= limit) break;
    }
    return page;
  }

  /** See {@linkcode Mailbox.remove}. */
  async remove(recipientKey: string, ids: readonly MailId[]): Promise<number> {
    checkFingerprint(recipientKey, "Recipient key");
    if (ids.length === 0) return 0;
    checkLimit(ids.length, "Number of ids");
    const subject = this.#subject(recipientKey);
    const removed: Held[] = [];
    for (const id of ids) {
      const seq = seqOf(id);
      if (seq === undefined) continue;
      const message = await this.#get({ seq });
      if (message?.subject !== subject) continue;
      if (await this.#delete(seq)) removed.push(heldOf(message));
    }
    await this.#takenOut(removed);
    return removed.length;
  }

  /**
   * Ends every item held for `recipientKey` with `reason` (their recipient was dropped or
   * changed key): no longer pending at once, returned by the next {@linkcode expire}. Returns
   * how many items ended.
   */
  async end(recipientKey: string, reason: MailEndReason): Promise<number> {
    checkFingerprint(recipientKey, "Recipient key");
    const js = this.#jsm.jetstream();
    const ended: Held[] = [];
    for (const held of await this.#all(this.#subject(recipientKey))) {
      const meta: Meta = { ...held.meta, expiresAt: this.#now(), endReason: reason };
      const payload = encodeFields([utf8(JSON.stringify(meta)), held.body]);
      // Moved first, then deleted: a crash between the two tells a sender twice rather than never.
      await this.#call(() =>
        js.publish(`${this.#prefix}.ended.${recipientKey}`, payload, {
          msgID: `ended-${this.#stream}-${held.seq}`,
        })
      );
      if (await this.#delete(held.seq)) ended.push(held);
    }
    // Out of the recipient's count and ids now; in the sender's until a sweep tells them.
    await this.#call(async () => {
      await this.#uncount(ended.map(({ meta, body }) => ({
        meta: { ...meta, senderKey: undefined },
        size: body.length,
      })));
      await this.#forgetIds(ended);
    });
    return ended.length;
  }

  /**
   * See {@linkcode Mailbox.expire}: ended items first (see {@linkcode end}), then the rest in
   * the order they were put.
   */
  async expire(now: number, limit: number = MAX_PAGE): Promise<EndedMail[]> {
    checkTime(now);
    checkLimit(limit);
    const ended: EndedMail[] = [];
    const swept: Held[] = [];
    const walks = [`${this.#prefix}.ended.*`, `${this.#prefix}.*`];
    for (const subjects of walks) {
      for await (const held of this.#walk(subjects, 1)) {
        if (ended.length >= limit || held.meta.expiresAt > now) break;
        if (!(await this.#delete(held.seq))) continue; // another node swept it first
        swept.push(held);
        const { id, queuedAt, expiresAt, bytes } = itemOf(held);
        const reason = held.meta.endReason ?? "expired";
        ended.push({ ...partiesOf(held.meta), id, queuedAt, expiresAt, bytes, reason });
      }
    }
    await this.#takenOut(swept);
    return ended;
  }

  /** See {@linkcode Mailbox.count}. */
  async count(recipientKey: string): Promise<MailCount> {
    checkFingerprint(recipientKey, "Recipient key");
    return countItems(await this.#all(this.#subject(recipientKey)));
  }

  /**
   * See {@linkcode Mailbox.stats}. `bytes` is what JetStream stores (subjects and metadata
   * included), not the envelopes alone.
   */
  async stats(): Promise<MailboxStats> {
    const info = await this.#call(() => this.#jsm.streams.info(this.#stream));
    return {
      items: info.state.messages,
      bytes: info.state.bytes,
      recipients: info.state.num_subjects ?? 0,
    };
  }

  async #all(subject: string): Promise<Held[]> {
    const held: Held[] = [];
    for await (const item of this.#walk(subject, 1)) held.push(item);
    return held;
  }

  /** The messages on `subject` (a wildcard too) from `seq` on, one request each. */
  async *#walk(subject: string, seq: number): AsyncGenerator<Held> {
    while (true) {
      const message = await this.#get({ seq, next_by_subj: subject });
      if (!message) return;
      yield heldOf(message);
      seq = message.seq + 1;
    }
  }

  async #get(query: { seq: number; next_by_subj?: string }): Promise<StoredMsg | null> {
    try {
      // next_by_subj is served by nats-server 2.9 on the plain get too; the type lists it only
      // for direct gets.
      return await this.#jsm.streams.getMessage(this.#stream, query as { seq: number });
    } catch (error) {
      if (/no message found/i.test(messageOf(error))) return null;
      throw this.#failure(error);
    }
  }

  async #delete(seq: number): Promise<boolean> {
    try {
      return await this.#jsm.streams.deleteMessage(this.#stream, seq);
    } catch (error) {
      if (/no message found/i.test(messageOf(error))) return false;
      throw this.#failure(error);
    }
  }

  /** Runs `run`, its NATS failures turned into `cluster-unavailable` (refusals pass as they are). */
  async #call<T>(run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (error) {
      throw error instanceof ReelayError ? error : this.#failure(error);
    }
  }

  #failure(error: unknown): ReelayError {
    return new ReelayError(
      "cluster-unavailable",
      `The cluster's mailbox does not answer (${messageOf(error)})`,
      { cause: error },
    );
  }
}
