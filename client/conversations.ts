/**
 * Lasting conversations, the client's side: our prekeys published to the server, a Double
 * Ratchet per person started from their prekey bundle (`shared/crypto/agreement.ts`), every state
 * persisted in the {@linkcode ClientStore} before a message leaves or is acknowledged, receipts
 * that are ratchet messages themselves (so only the real recipient can make one), signed
 * refusals, and the message history.
 *
 * Envelope on the wire: one kind byte, then either a ratchet message (`1`) or an initial message
 * (`2`: the signed init and the first ratchet message, attached until the peer answered). Inside
 * the ratchet, the plaintext is JSON: `{k: "m", id, text, at}` for a message, `{k: "r", ids}` for
 * a receipt.
 *
 * A refusal is `refuse {to, toKey, id, reason, signature}`: the refusing person's RSA-PSS
 * signature over fields("reelay-refuse-v1", refuser fingerprint, sender fingerprint, id,
 * reason), which the sender checks against the key it pinned for them before it reports the
 * message `failed`; the server passes it on and cannot forge one.
 *
 * It never touches the terminal and does not know about sockets: the session hands it a
 * {@linkcode ConversationLink}.
 *
 * @module
 */

import { SerialQueue } from "../shared/async.ts";
import { type Bytes, concat, encodeFields, fromBase64, toBase64 } from "../shared/bytes.ts";
import {
  ConversationError,
  decodeInitialMessage,
  encodeInitialMessage,
  fingerprintHash,
  type Identity,
  importVerifyKey,
  initiate,
  PrekeyStore,
  type PublicIdentity,
  Ratchet,
  readInit,
  respond,
  verifyPss,
} from "../shared/crypto/mod.ts";
import { messageOf, ReelayError } from "../shared/errors.ts";
import { nameKey } from "../shared/names.ts";
import type { ClientMessage, ServerMessage } from "../shared/protocol/mod.ts";
import type { ClientEvent } from "./events.ts";
import { GroupCommit } from "../shared/group_commit.ts";
import type {
  ClientStore,
  DeliveryStatus,
  HistoryEntry,
  OwedReceipt,
  SealedEntry,
} from "./store/mod.ts";

/** One-time prekeys of each kind made at first, and again whenever the server runs low. */
export const PREKEY_BATCH = 10;
/** Below this many one-time prekeys on the server, a new batch is uploaded. */
export const PREKEY_LOW = 3;

const KIND_RATCHET = 1;
const KIND_INITIAL = 2;
const REFUSE_LABEL = "reelay-refuse-v1";
/** Most message ids one receipt carries (the receiver takes no more). */
const RECEIPT_IDS = 64;
/** Longest message text a person can send, in UTF-8 bytes (before it is put in JSON). */
export const MAX_TEXT_BYTES = 16 * 1024;

/** Refusal reasons after which the sender starts the conversation over. */
const RESTART_REASONS = new Set(["no-conversation", "not-authentic", "bad-init", "unknown-prekey"]);

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** How the conversations reach the server (the session provides it). */
export interface ConversationLink {
  /** Sends a request and resolves with the server's answer (rejects with its error). */
  request(message: ClientMessage & { ref?: number }): Promise<ServerMessage>;
  /** Sends a message that needs no answer. */
  post(message: ClientMessage): void;
}

/** Someone to write to: their name and the keys we hold for them. */
export interface Correspondent {
  name: string;
  keys: PublicIdentity;
  /** Full fingerprint (64 hex digits) of `keys`. */
  fingerprint: string;
}

/** What became of a sent message at the server. */
export type SendStatus = "relayed" | "queued";

interface Live {
  ratchet: Ratchet;
  fingerprint: string;
  init: Bytes | null;
}

type Plain =
  | { k: "m"; id: string; text: string; at: number }
  | { k: "r"; ids: string[] };

/** An envelope opened: what it said, and `persist`, which writes what opening it changed. */
interface Opened {
  plain: Plain;
  missing: number;
  /** The conversation it was opened in, when that is the one kept. */
  live?: Live;
  persist: () => void;
}

/** A deliver message from the server. */
export type Delivery = ServerMessage & { type: "deliver" };

/**
 * The conversations of one session.
 *
 * @example
 * ```ts ignore
 * const conversations = new Conversations({ identity, name: "alice", store, link, emit });
 * await conversations.publishPrekeys();
 * await conversations.send({ name: "bob", keys, fingerprint }, "hello"); // "relayed" or "queued"
 * ```
 */
export class Conversations {
  readonly #identity: Identity;
  readonly #name: string;
  readonly #store: ClientStore;
  readonly #link: ConversationLink;
  readonly #emit: (event: ClientEvent) => void;
  /** Open conversations by name key; `null`: ended, its delete waiting for the next commit. */
  readonly #live = new Map<string, Live | null>();
  readonly #queue = new SerialQueue();
  readonly #commits: GroupCommit;
  /** Receipts owed, by name key: sealed by `#sealReceipts` before each commit. */
  readonly #receipts = new Map<string, { peer: Correspondent; ids: string[] }>();
  /** Messages being sent, by id: whether one failed before the server's answer was told. */
  readonly #sending = new Map<string, { failed: boolean }>();
  /** Receipts kept in the store (by `seq`) whose request is on its way, or taken. */
  readonly #receiptsSending = new Set<number>();
  /** Receipts the server took (by `seq`), deleted from the store with the next commit. */
  readonly #receiptsTaken: number[] = [];
  /** Ids of messages opened whose `seen` row waits for its commit (see `#hasSeen`). */
  readonly #seenStaged = new Set<string>();
  readonly #now: () => number;
  #prekeys: PrekeyStore | undefined;
  #prekeysLoaded: Promise<PrekeyStore> | undefined;
  #ownFingerprint: string | undefined;
  #historyClaimed: Promise<void> | undefined;
  /** Whether the last history write failed (reported when it started failing). */
  #historyFailing = false;

  /** Conversations as `name` holding `identity`, kept in `store`. */
  constructor(options: {
    identity: Identity;
    name: string;
    store: ClientStore;
    link: ConversationLink;
    emit: (event: ClientEvent) => void;
    /** The clock prekey rotation reads (ms since the epoch); tests move it. */
    now?: () => number;
  }) {
    this.#identity = options.identity;
    this.#name = options.name;
    this.#store = options.store;
    this.#link = options.link;
    this.#emit = options.emit;
    this.#now = options.now ?? Date.now;
    // A flush waits a turn of the event loop, so that the deliveries read together and the
    // sends made together join it, then runs as a task of the queue: never halfway through
    // sealing or opening a message. What one turn stages is bounded by what one turn reads.
    this.#commits = new GroupCommit({
      schedule: (flush) =>
        setTimeout(() =>
          void this.#queue.run(async () => {
            await this.#sealReceipts().catch((error) => this.#receiptsFailed(error));
            this.#forgetTakenReceipts();
            flush();
          }), 0),
      transaction: (body) => this.#store.transaction(body),
      failed: () => this.#forgetUncommitted(),
      closed: () => new ReelayError("client-store-closed", "The store is closed"),
    });
  }

  /**
   * A commit failed: conversations and prekeys in memory are ahead of the file, with keys of
   * messages that were neither acknowledged nor sent. Dropped, so that the next use reads the
   * last commit again: the held copies then open as they first did, and no key is used twice.
   */
  #forgetUncommitted(): void {
    this.#live.clear();
    this.#prekeys = undefined;
    this.#prekeysLoaded = undefined;
  }

  /**
   * Makes our prekeys on first use, replaces the signed ones when a week old, and gives the
   * server those it does not have yet, and a new batch when it runs low. Resolves once the
   * server stored them. Also checks, once, that the message history is this identity's (see
   * `ClientStore.claimHistory`), saying so when it was not.
   */
  async publishPrekeys(): Promise<void> {
    await (this.#historyClaimed ??= this.#claimHistory());
    const prekeys = await this.#loadPrekeys();
    await this.#queue.run(async () => {
      const before = prekeys.counts().previous;
      const rotated = await prekeys.rotateIfDue(this.#identity, this.#now());
      if (rotated || prekeys.counts().previous !== before) {
        this.#store.savePrekeys(prekeys.toJSON());
      }
    });
    let answer = await this.#upload(prekeys);
    if (answer.oneTime < PREKEY_LOW || answer.pqOneTime < PREKEY_LOW) {
      await this.#queue.run(async () => {
        await prekeys.addOneTimePrekeys(PREKEY_BATCH);
        await prekeys.addPqOneTimePrekeys(this.#identity, PREKEY_BATCH);
        this.#store.savePrekeys(prekeys.toJSON());
      });
      answer = await this.#upload(prekeys);
    }
  }

  /**
   * Seals `text` for `to` (starting a conversation from their prekey bundle if there is none
   * with these keys) and sends it; resolves with its id and what the server did with it. Emits
   * `sent` or `queued`, and `failed` when the server refused it for a reason about the message
   * (the recipient's key changed, their mailbox is full), then throws that error.
   */
  async send(to: Correspondent, text: string): Promise<{ id: string; status: SendStatus }> {
    if (encoder.encode(text).length > MAX_TEXT_BYTES) {
      throw new ReelayError(
        "message-too-long",
        `A message is at most ${MAX_TEXT_BYTES} bytes of UTF-8 text`,
      );
    }
    const id = newId();
    const failed = { failed: false };
    this.#sending.set(id, failed);
    try {
      return await this.#send(to, text, id, failed);
    } finally {
      this.#sending.delete(id);
    }
  }

  async #send(
    to: Correspondent,
    text: string,
    id: string,
    failed: { failed: boolean },
  ): Promise<{ id: string; status: SendStatus }> {
    const at = Date.now();
    // The bundle is fetched outside the queue (its answer comes through the read loop, which may
    // need the queue) once a run found no conversation: a refusal may end one between two runs.
    let bundle: ServerMessage | undefined;
    const seal = () =>
      this.#queue.run(async () => {
        const live = await this.#conversation(to) ?? (bundle && await this.#start(to, bundle));
        if (!live) return undefined;
        const envelope = await this.#seal(live, { k: "m", id, text, at });
        const row = await this.#sealHistory({
          peer: to.name,
          direction: "out",
          id,
          text,
          at,
          status: "sending",
        });
        // The ratchet state is on disk before the message leaves (ratchet.ts), with its history
        // row, in the next group commit: a burst of sends waits for the disk once.
        this.#save(to, live);
        let reply: Promise<ServerMessage> | undefined;
        const committed = this.#commits.stage(
          () => this.#keepHistory(row),
          () => reply = this.#post(to, id, envelope),
        );
        return { reply: committed.then(() => reply!) };
      });
    let sent = await seal();
    while (!sent) {
      bundle = await this.#bundle(to);
      sent = await seal();
    }
    let reply: ServerMessage;
    try {
      reply = await sent.reply;
    } catch (error) {
      if (error instanceof ReelayError && MESSAGE_FAILURES.has(error.code)) {
        await this.#tellFailed(to.name, id, error.code);
      }
      throw error;
    }
    const status: SendStatus = reply.type === "queued" ? "queued" : "relayed";
    // Written with the other answers of the moment (statuses are history, best effort). Failed
    // meanwhile (their signed refusal overtook the server's answer): the history keeps `failed`,
    // and so does what is told.
    await this.#commits.stage(
      () => this.#markHistory(to.name, id, status === "queued" ? "queued" : "sent"),
      () => {
        if (failed.failed) return;
        this.#emit({ event: status === "queued" ? "queued" : "sent", to: to.name, id });
      },
    );
    return { id, status };
  }

  /**
   * Records message `id` to `to` as failed (`onlyFrom`: see {@linkcode ClientStore.markHistory})
   * and says so, both with the next commit: after what earlier messages wait to say, in the
   * history's order. Said even when the store cannot take it.
   */
  async #tellFailed(
    to: string,
    id: string,
    reason: string,
    onlyFrom?: readonly DeliveryStatus[],
  ): Promise<void> {
    const sending = this.#sending.get(id);
    if (sending) sending.failed = true;
    let told = false;
    const tell = () => {
      told = true;
      this.#emit({ event: "failed", to, id, reason });
    };
    await this.#commits.stage(() => this.#markHistory(to, id, "failed", onlyFrom), tell)
      .catch(() => {
        if (!told) tell();
      });
  }

  /**
   * Takes a delivered envelope from `from` whose keys are `keys` (as pinned or announced);
   * `pinned` is the fingerprint we pinned for them, if any. Opens it, persists, acknowledges,
   * emits `message` (and sends a receipt) or `delivered`, or refuses it with a reason.
   * `opened` runs once the envelope opened (it came from the holder of `keys`), before anything
   * is told.
   */
  async receive(
    message: Delivery,
    keys: PublicIdentity | undefined,
    pinned?: string,
    opened?: () => void,
  ): Promise<void> {
    const staged = await this.#queue.run(() => this.#receive(message, keys, pinned, opened));
    // Not awaited: the session reads on, so the messages that came together commit together.
    staged?.committed.catch((error) => this.#commitFailed(error));
  }

  /**
   * Writes what is staged (states of messages opened or sealed, ids seen, history) before the
   * store closes, with the receipts still owed sealed and kept, to leave with the next session;
   * the session calls it as it ends, once nothing else uses the conversations.
   */
  async close(): Promise<void> {
    try {
      await this.#queue.run(() => this.#sealReceipts()).catch((error) =>
        this.#receiptsFailed(error)
      );
    } finally {
      this.#forgetTakenReceipts();
      this.#commits.close();
    }
  }

  /** A refusal the server passed on: checked against `keys` (the refuser's pinned keys). */
  async refused(
    message: ServerMessage & { type: "refused" },
    keys: PublicIdentity | undefined,
  ): Promise<void> {
    this.#ack(message.mail);
    const authentic = keys !== undefined && await verifyPss(
      await importVerifyKey(keys),
      fromBase64(message.signature) ?? new Uint8Array(),
      encodeFields([
        REFUSE_LABEL,
        await fingerprintHash(keys),
        await this.#selfFingerprint(),
        message.id,
        message.reason,
      ]),
    ).catch(() => false);
    if (!authentic) {
      this.#emit({
        event: "error",
        code: "forged-refusal",
        message: `A refusal said to come from ${JSON.stringify(message.from)} is not signed by ` +
          "them: ignored",
      });
      return;
    }
    if (RESTART_REASONS.has(message.reason)) {
      await this.#queue.run(() => {
        // Ended in memory at once: the file keeps the old state until the delete commits, and a
        // send meanwhile must start a new conversation, not reload the old one (a key used twice).
        this.#live.set(key(message.from), null);
        // Staged like a save, so it replaces one of this conversation still waiting to commit.
        void this.#commits.stage(
          () => this.#store.deleteConversation(message.from),
          undefined,
          conversationWrite(message.from),
        );
        return Promise.resolve();
      });
    }
    // Not awaited: the session reads on while it commits.
    void this.#tellFailed(message.from, message.id, message.reason);
  }

  /**
   * A message the server itself says failed (it expired, its recipient was forgotten). Its word
   * is not signed, so the history takes it only for a message the server held or never took:
   * it cannot undo `sent` or the recipient's own `delivered`.
   */
  failed(message: ServerMessage & { type: "failed" }): void {
    this.#ack(message.mail);
    void this.#tellFailed(message.to, message.id, message.reason, SERVER_MAY_FAIL);
  }

  /** Test hook: the ratchet of the conversation with `name`, if one is open. */
  ratchetWith(name: string): Ratchet | undefined {
    return this.#live.get(key(name))?.ratchet;
  }

  async #receive(
    message: Delivery,
    keys: PublicIdentity | undefined,
    pinned: string | undefined,
    authentic?: () => void,
  ): Promise<{ committed: Promise<void> } | void> {
    const from = message.from;
    const id = message.id ?? "";
    if (this.#store.isIgnored(from)) return this.#ack(message.mail);
    if (!keys) {
      this.#ack(message.mail);
      return this.#reject(
        "unknown-sender",
        `Message from ${JSON.stringify(from)}, whose keys are unknown`,
      );
    }
    const fingerprint = await fingerprintHash(keys);
    if (pinned !== undefined && pinned !== fingerprint) {
      this.#ack(message.mail);
      await this.#refuse(from, fingerprint, id, "key-changed");
      return this.#reject(
        "key-changed",
        `Message from ${JSON.stringify(from)} refused: their key changed (see /verify ${from}); ` +
          "they were told",
      );
    }
    if (id !== "" && this.#hasSeen(from, id)) {
      // Held mail delivered again (its ack was lost) or a message sent again after a reconnect:
      // taken already, so dropped without a word (the ratchet would refuse it anyway).
      return this.#ack(message.mail);
    }
    const peer: Correspondent = { name: from, keys, fingerprint };
    let opened: Opened;
    try {
      opened = await this.#open(peer, message.envelope);
    } catch (error) {
      if (!(error instanceof ConversationError) && !(error instanceof ReelayError)) throw error;
      this.#ack(message.mail);
      if (REFUSE_ON.has(error.code) && id !== "") {
        await this.#refuse(from, fingerprint, id, error.code);
      }
      return this.#reject(
        error.code,
        `Rejected a message from ${JSON.stringify(from)}: ${error.message}`,
      );
    }
    authentic?.();
    const { plain } = opened;
    opened.persist();
    this.#stageSeen(from, id);
    if (plain.k === "r") {
      // The opened state, the id seen and the statuses are on disk before the ack.
      const committed = this.#commits.stage(() => {
        for (const delivered of plain.ids) this.#markHistory(from, delivered, "delivered");
      }, () => {
        this.#ack(message.mail);
        for (const delivered of plain.ids) {
          this.#emit({ event: "delivered", to: from, id: delivered });
        }
      });
      return { committed };
    }
    // Best effort: a history row that cannot be made never keeps the message from being shown.
    const kept = await this.#sealHistory({
      peer: from,
      direction: "in",
      id: plain.id,
      text: plain.text,
      // The time the message line showed (the sender's clock), unless it is no time at all.
      at: Number.isSafeInteger(plain.at) && plain.at > 0 ? plain.at : Date.now(),
      status: "received",
    });
    this.#owesReceipt(peer, plain.id);
    // The state after opening the message, the id seen and the history row are on disk before
    // the ack, the message shown and its receipt (sealed with the others of the turn, see
    // `#sealReceipts`).
    const committed = this.#commits.stage(() => this.#keepHistory(kept), () => {
      this.#ack(message.mail);
      this.#emit({
        event: "message",
        from,
        text: plain.text,
        id: plain.id,
        sentAt: plain.at,
        missing: opened.missing,
      });
    });
    return { committed };
  }

  /** Notes that `peer` is owed a receipt for message `id`, sealed before the next commit. */
  #owesReceipt(peer: Correspondent, id: string): void {
    const owed = this.#receipts.get(key(peer.name));
    if (owed && owed.peer.fingerprint === peer.fingerprint) owed.ids.push(id);
    else this.#receipts.set(key(peer.name), { peer, ids: [id] });
  }

  /**
   * Seals the receipts owed (one per person for the messages of this turn, up to
   * {@linkcode RECEIPT_IDS} ids each) in the conversations they came in, before the commit that
   * saves those states; each is kept in the store in that commit and leaves after it (see
   * {@linkcode Conversations.resendReceipts}). A receipt per message would turn the ratchet, and
   * cost the sender an opening and a commit, for every message.
   */
  async #sealReceipts(): Promise<void> {
    const owed = [...this.#receipts.values()];
    this.#receipts.clear();
    for (const { peer, ids } of owed) {
      // Not loaded from the store: one refused meanwhile is gone from memory, and its row may
      // only be waiting for this commit to be deleted.
      const live = this.#live.get(key(peer.name));
      if (live?.fingerprint !== peer.fingerprint) continue; // ended meanwhile: nothing to answer
      for (let start = 0; start < ids.length; start += RECEIPT_IDS) {
        const envelope = await this.#seal(live, {
          k: "r",
          ids: ids.slice(start, start + RECEIPT_IDS),
        });
        this.#save(peer, live);
        const receipt: OwedReceipt = {
          seq: 0,
          name: peer.name,
          fingerprint: peer.fingerprint,
          id: newId(),
          envelope,
        };
        void this.#commits.stage(
          () => receipt.seq = this.#store.oweReceipt(receipt),
          () => void this.#sendReceipt(receipt),
        );
      }
    }
  }

  /**
   * Sends the receipts kept in the store that are not on their way (all of them at the start of
   * a session; after a reconnect, those whose request failed), oldest first, each as it was
   * sealed: one its sender already took is dropped there by its id. Called before anything else
   * is sent on a connection, since the ratchet keeps no key of a skipped message: a receipt
   * arriving after a later message from us would be refused as late.
   */
  resendReceipts(): void {
    for (const receipt of this.#store.receiptsOwed()) void this.#sendReceipt(receipt);
  }

  /** Stages the delete of the receipts taken since the last commit into the commit about to run. */
  #forgetTakenReceipts(): void {
    if (this.#receiptsTaken.length === 0) return;
    const seqs = this.#receiptsTaken.splice(0);
    const forgotten = () => {
      for (const seq of seqs) this.#receiptsSending.delete(seq);
    };
    this.#commits.stage(() => this.#store.receiptsTaken(seqs)).then(forgotten, forgotten);
  }

  /** Sends a kept receipt, unless on its way; forgets it once the server took it. */
  async #sendReceipt(receipt: OwedReceipt): Promise<void> {
    if (this.#receiptsSending.has(receipt.seq)) return;
    this.#receiptsSending.add(receipt.seq);
    try {
      await this.#post(receipt, receipt.id, receipt.envelope);
    } catch (error) {
      // Refused for good (their key changed, a mailbox is full): sending it again would not do.
      // Else (the connection or the session ended) it stays, to be sent again.
      if (!(error instanceof ReelayError && MESSAGE_FAILURES.has(error.code))) {
        this.#receiptsSending.delete(receipt.seq);
        return;
      }
    }
    // Forgotten with the next commit (not one of its own), on its way until then. If the
    // process ends first, it is sent again next time and dropped by its id.
    this.#receiptsTaken.push(receipt.seq);
  }

  /**
   * Opens an envelope; what changed (the conversation, prekeys consumed) is written by the
   * returned `persist`, which the caller runs in the message's transaction.
   */
  async #open(peer: Correspondent, envelope: Uint8Array): Promise<Opened> {
    if (envelope.length < 2) throw new ConversationError("bad-message", "The envelope is empty");
    const body = envelope.slice(1) as Bytes;
    if (envelope[0] === KIND_INITIAL) return await this.#openInitial(peer, body);
    if (envelope[0] !== KIND_RATCHET) {
      throw new ConversationError("bad-message", `Envelope kind "${envelope[0]}" is unknown`);
    }
    const live = await this.#conversation(peer);
    if (!live) {
      throw new ReelayError("no-conversation", "There is no conversation with them to continue");
    }
    const opened = await live.ratchet.decrypt(body);
    const plain = parsePlain(opened.plaintext);
    if (live.init && live.ratchet.hasReceived) live.init = null;
    return { plain, missing: opened.missing, live, persist: () => this.#save(peer, live) };
  }

  async #openInitial(peer: Correspondent, body: Bytes): Promise<Opened> {
    const { init, message } = decodeInitialMessage(body);
    const existing = await this.#conversation(peer);
    if (existing && !existing.init && existing.ratchet.hasReceived) {
      // They attach the init until they hear from us: an ordinary message of this conversation.
      const summary = readInit(init);
      if (summary.initiatorFingerprint === peer.fingerprint) {
        try {
          const opened = await existing.ratchet.decrypt(message);
          return {
            plain: parsePlain(opened.plaintext),
            missing: opened.missing,
            live: existing,
            persist: () => this.#save(peer, existing),
          };
        } catch (error) {
          if (!(error instanceof ConversationError) || error.code !== "not-authentic") throw error;
          // Another conversation they started over: answer it below.
        }
      }
    }
    const prekeys = await this.#loadPrekeys();
    const answered = await respond({
      identity: this.#identity,
      name: this.#name,
      prekeys,
      peerName: peer.name,
      peerIdentity: peer.keys,
      init,
      message,
    });
    const plain = parsePlain(answered.plaintext);
    // Both started at once: the conversation started by the lower fingerprint wins, on both sides.
    const keepOurs = existing?.init && await this.#selfFingerprint() < peer.fingerprint;
    if (keepOurs) {
      return {
        plain,
        missing: answered.missing,
        persist: () => this.#savePrekeys(prekeys),
      };
    }
    const live: Live = { ratchet: answered.ratchet, fingerprint: peer.fingerprint, init: null };
    this.#live.set(key(peer.name), live);
    return {
      plain,
      missing: answered.missing,
      live,
      persist: () => this.#save(peer, live, prekeys),
    };
  }

  /**
   * Seals `plain` in `live` into an envelope. The ratchet moved: save `live` before the envelope
   * leaves (`shared/crypto/ratchet.ts`).
   */
  async #seal(live: Live, plain: Plain): Promise<Uint8Array> {
    const sealed = await live.ratchet.encrypt(encoder.encode(JSON.stringify(plain)) as Bytes);
    return live.init
      ? concat([new Uint8Array([KIND_INITIAL]), encodeInitialMessage(live.init, sealed)])
      : concat([new Uint8Array([KIND_RATCHET]), sealed]);
  }

  /**
   * Sends a sealed envelope; returns the server's answer to wait for outside the queue (the
   * answer comes through the read loop, which may need the queue).
   */
  #post(
    to: { name: string; fingerprint: string },
    id: string,
    envelope: Uint8Array,
  ): Promise<ServerMessage> {
    const reply = this.#link.request({
      type: "send",
      to: to.name,
      toKey: to.fingerprint,
      id,
      envelope,
    });
    reply.catch(() => {}); // handled by whoever awaits it; the answer may come before they do
    return reply;
  }

  async #start(to: Correspondent, bundle: ServerMessage | undefined): Promise<Live> {
    if (!bundle || bundle.type !== "bundle") {
      throw new ReelayError("no-prekeys", `No prekey bundle for ${JSON.stringify(to.name)}`);
    }
    const started = await initiate({
      identity: this.#identity,
      name: this.#name,
      peerName: to.name,
      peerIdentity: to.keys,
      bundle: { ...bundle.bundle, identity: bundle.identity },
    }).catch((error) => {
      if (error instanceof ConversationError && error.code === "wrong-peer") {
        throw new ReelayError(
          "recipient-key-changed",
          `The server's keys for ${JSON.stringify(to.name)} are not the ones you hold`,
        );
      }
      throw error;
    });
    const live: Live = {
      ratchet: started.ratchet,
      fingerprint: to.fingerprint,
      init: started.init,
    };
    this.#live.set(key(to.name), live);
    return live;
  }

  async #bundle(to: Correspondent): Promise<ServerMessage> {
    return await this.#link.request({ type: "bundle", name: to.name });
  }

  /** The open conversation with `peer`'s current keys, loaded from the store if needed. */
  async #conversation(peer: Correspondent): Promise<Live | undefined> {
    let live = this.#live.get(key(peer.name));
    if (live === null) return undefined;
    if (!live) {
      const stored = this.#store.conversation(peer.name);
      if (!stored) return undefined;
      live = {
        ratchet: await Ratchet.fromJSON(stored.ratchet),
        fingerprint: stored.fingerprint,
        init: stored.init,
      };
      this.#live.set(key(peer.name), live);
    }
    return live.fingerprint === peer.fingerprint ? live : undefined;
  }

  /**
   * Stages the state of `live` (as it will be at the commit: its latest) and, when consumed,
   * our prekeys, for the next group commit.
   */
  #save(peer: Correspondent, live: Live, prekeys?: PrekeyStore): void {
    void this.#commits.stage(
      () =>
        this.#store.saveConversation({
          name: peer.name,
          fingerprint: live.fingerprint,
          ratchet: live.ratchet.toJSON(),
          init: live.init,
        }),
      undefined,
      conversationWrite(peer.name),
    );
    if (prekeys) this.#savePrekeys(prekeys);
  }

  /** Stages our prekeys (as they will be at the commit) for the next group commit. */
  #savePrekeys(prekeys: PrekeyStore): void {
    void this.#commits.stage(() => this.#store.savePrekeys(prekeys.toJSON()), undefined, "prekeys");
  }

  async #refuse(to: string, toKey: string, id: string, reason: string): Promise<void> {
    const data = encodeFields([REFUSE_LABEL, await this.#selfFingerprint(), toKey, id, reason]);
    const signature = toBase64(await this.#identity.sign(data));
    this.#link.post({ type: "refuse", to, toKey, id, reason, signature });
  }

  /**
   * Encrypts `entry` for the history, best effort: a message is shown and acknowledged (or sent)
   * whether or not it could be kept. Checks first that the history is this identity's.
   */
  async #sealHistory(entry: HistoryEntry): Promise<SealedEntry | undefined> {
    await (this.#historyClaimed ??= this.#claimHistory());
    try {
      return await this.#store.sealHistory(entry);
    } catch (error) {
      this.#historyFailed(error);
    }
  }

  /**
   * Writes a row from {@linkcode #sealHistory}, best effort: inside a message's transaction, a
   * failed write undoes only itself (a savepoint), never the message.
   */
  #keepHistory(row: SealedEntry | undefined): void {
    if (row && this.#historyWrite(() => this.#store.insertHistory(row))) {
      this.#historyFailing = false;
    }
  }

  /** Records where a kept message stands, best effort (see {@linkcode #keepHistory}). */
  #markHistory(
    peer: string,
    id: string,
    status: DeliveryStatus,
    onlyFrom?: readonly DeliveryStatus[],
  ): void {
    this.#historyWrite(() => this.#store.markHistory(peer, id, status, onlyFrom));
  }

  /**
   * Runs a history write; whether it was made. A failure is told and passed over, unless SQLite
   * undid the whole transaction it ran in: the batch's later writes would then each commit alone,
   * outside it (a message's id seen without its state: lost on its redelivery), so it stops here.
   */
  #historyWrite(write: () => void): boolean {
    const inside = this.#store.inTransaction;
    try {
      write();
      return true;
    } catch (error) {
      if (inside && !this.#store.inTransaction) throw error;
      this.#historyFailed(error);
      return false;
    }
  }

  async #claimHistory(): Promise<void> {
    try {
      const deleted = await this.#store.claimHistory();
      if (deleted === undefined) return;
      const lost = deleted === 1
        ? "its 1 kept message cannot be read here: it was deleted"
        : `its ${deleted} kept messages cannot be read here: they were deleted`;
      this.#reject(
        "history-restarted",
        `The history in "${this.#store.file}" was kept for another identity (identity.json was ` +
          `replaced), so ${lost}; new messages are kept under this identity`,
      );
    } catch (error) {
      this.#historyFailed(error);
    }
  }

  #receiptsFailed(error: unknown): void {
    this.#reject(
      "receipt-failed",
      `Receipts could not be sealed (${messageOf(error)}): the messages were taken, but their ` +
        "senders will not see them delivered",
    );
  }

  /**
   * The store refused a commit of received messages: they were not acknowledged (held mail comes
   * again after a reconnect), but their state did not reach the file either.
   */
  #commitFailed(error: unknown): void {
    if (error instanceof ReelayError && error.code === "client-store-closed") return; // it ended
    this.#reject(
      "client-store-failed",
      `Cannot write to "${this.#store.file}" (${messageOf(error)}): the messages just received ` +
        "were not acknowledged. Free disk space or make the file writable",
    );
  }

  /** Told once, until a write succeeds again: a message per failed write would drown the rest. */
  #historyFailed(error: unknown): void {
    if (this.#historyFailing) return;
    this.#historyFailing = true;
    this.#reject(
      "history-unavailable",
      `Messages cannot be kept in "${this.#store.file}" (${messageOf(error)}); they are still ` +
        "shown and acknowledged, only not kept. Free disk space or make the file writable, or " +
        "stop keeping them with /history off",
    );
  }

  /** Says so, after what earlier messages wait to say (their commit): events keep their order. */
  #reject(code: string, message: string): void {
    this.#commits.afterPending(() => this.#emit({ event: "error", code, message }));
  }

  /** Acknowledges held mail, after the messages before it (their commit). */
  #ack(mail: string | undefined): void {
    if (mail === undefined) return;
    this.#commits.afterPending(() => this.#link.post({ type: "ack", mail: [mail] }));
  }

  /** Stages `id` from `from` as seen: known at once, on disk with the next commit. */
  #stageSeen(from: string, id: string): void {
    if (id === "") return;
    const staged = seenKey(from, id);
    this.#seenStaged.add(staged);
    const forget = () => this.#seenStaged.delete(staged);
    this.#commits.stage(() => this.#store.markSeen(from, id)).then(forget, forget);
  }

  /**
   * Whether message `id` from `from` was taken: committed, or opened and waiting for its commit
   * (a copy read in the same turn as the original).
   */
  #hasSeen(from: string, id: string): boolean {
    return this.#seenStaged.has(seenKey(from, id)) || this.#store.hasSeen(from, id);
  }

  async #selfFingerprint(): Promise<string> {
    this.#ownFingerprint ??= await fingerprintHash(this.#identity.public);
    return this.#ownFingerprint;
  }

  /**
   * Our prekeys, loaded (or made) once. The load is shared: held mail opened at join and the
   * publishing of prekeys start together, and two copies would each erase and rotate their own
   * keys, the last one saved bringing back what the other erased.
   */
  #loadPrekeys(): Promise<PrekeyStore> {
    return this.#prekeysLoaded ??= this.#readPrekeys();
  }

  async #readPrekeys(): Promise<PrekeyStore> {
    if (this.#prekeys) return this.#prekeys;
    const stored = this.#store.prekeys();
    const own = await this.#selfFingerprint();
    if (stored && stored.owner === own) {
      this.#prekeys = PrekeyStore.fromJSON(stored);
    } else {
      this.#prekeys = await PrekeyStore.generate(this.#identity, {
        oneTime: PREKEY_BATCH,
        pqOneTime: PREKEY_BATCH,
      });
      this.#store.savePrekeys(this.#prekeys.toJSON());
      this.#store.uploadedPrekeyId = 0;
    }
    return this.#prekeys;
  }

  async #upload(prekeys: PrekeyStore): Promise<{ oneTime: number; pqOneTime: number }> {
    const uploaded = this.#store.uploadedPrekeyId;
    const all = prekeys.published();
    const published = {
      ...all,
      oneTime: all.oneTime.filter((k) => k.id > uploaded),
      pqOneTime: all.pqOneTime.filter((k) => k.id > uploaded),
    };
    const answer = await this.#link.request({ type: "prekeys", published: { ...published } });
    const ids = [...published.oneTime, ...published.pqOneTime].map((k) => k.id);
    if (ids.length > 0) this.#store.uploadedPrekeyId = Math.max(uploaded, ...ids);
    if (answer.type !== "prekeys-stored") return { oneTime: 0, pqOneTime: 0 };
    return { oneTime: answer.oneTime, pqOneTime: answer.pqOneTime };
  }
}

/** Server refusals that are about one message, reported as `failed`. */
const MESSAGE_FAILURES = new Set([
  "recipient-key-changed",
  "recipient-mailbox-full",
  "sender-mailbox-full",
  "mailbox-full",
]);
/** What the server's unsigned `failed` may move a kept message from. */
const SERVER_MAY_FAIL: readonly DeliveryStatus[] = ["sending", "queued"];
/** Receiver-side failures the sender is told about with a signed refusal. */
const REFUSE_ON = new Set([
  "no-conversation",
  "not-authentic",
  "bad-init",
  "unknown-prekey",
  "wrong-peer",
  "bad-signature",
]);
function key(name: string): string {
  return nameKey(name);
}

function seenKey(from: string, id: string): string {
  return `${nameKey(from)} ${id}`;
}

/** The group-commit key of a conversation's state: a later write replaces an earlier one. */
function conversationWrite(name: string): string {
  return `conversation ${nameKey(name)}`;
}

function newId(): string {
  return toBase64(crypto.getRandomValues(new Uint8Array(12))).replace(/[+/=]/g, "_");
}

function parsePlain(bytes: Uint8Array): Plain {
  let value: unknown;
  try {
    value = JSON.parse(decoder.decode(bytes));
  } catch (error) {
    throw new ConversationError("bad-message", `The message is not JSON: ${messageOf(error)}`);
  }
  const raw = value as Record<string, unknown>;
  if (
    raw?.k === "m" && typeof raw.id === "string" && typeof raw.text === "string" &&
    Number.isFinite(raw.at)
  ) {
    return { k: "m", id: raw.id.slice(0, 64), text: raw.text, at: Number(raw.at) };
  }
  if (
    raw?.k === "r" && Array.isArray(raw.ids) && raw.ids.length <= RECEIPT_IDS &&
    raw.ids.every((i) => typeof i === "string")
  ) {
    return { k: "r", ids: raw.ids.map((i: string) => i.slice(0, 64)) };
  }
  throw new ConversationError("bad-message", "The message has an unknown form");
}
