/**
 * The mutants `deno task mutants` applies: one-line breaks of the product, each named after the
 * promise it breaks, each with the tests that must fail when it breaks. Append an entry for each
 * new check (see the README, "Mutants"). Keep `find` short and stable: it must occur exactly once
 * in `file`, or the run fails as "stale".
 *
 * @module
 */
import type { Mutant } from "./types.ts";

const e2e = "tests/e2e_security_test.ts";
const conversations = "tests/conversation_test.ts";
const reconnect = "tests/reconnect_test.ts";
const forward = "tests/store_forward_test.ts";

/** Every mutant, in the order the table shows them. */
export const mutants: Mutant[] = [
  // Chat: who is who (docs/security.md, "Pinning keys" and the attack table).
  {
    name: "impersonation accepted",
    file: "client/peers.ts",
    find: "if (key === nameKey(this.#self.name)) {",
    replace: "if (false) {",
    tests: [{ file: e2e, filter: "under your own name" }],
  },
  {
    name: "trust takes any key",
    file: "client/peers.ts",
    find: "if (verified !== peer.fingerprint) {",
    replace: "if (verified === undefined) {",
    tests: [{ file: e2e, filter: "/trust takes only" }],
  },
  {
    name: "changed-key messages shown",
    file: "client/conversations.ts",
    find: "if (pinned !== undefined && pinned !== fingerprint) {",
    replace: "if (false) {",
    tests: [{ file: e2e, filter: "changed key" }],
  },
  // Conversations (issue 11): receipts, keys, offline mail, broadcast.
  {
    name: "receipt forged",
    file: "client/conversations.ts",
    find: "opened = await this.#open(peer, message.envelope);",
    replace: 'opened = { plain: { k: "r", ids: [id] }, missing: 0 };',
    tests: [{ file: conversations, filter: "forge a receipt" }],
  },
  {
    name: "sealed for another key relayed",
    file: "server/mail.ts",
    find: "if (outgoing.toKey !== undefined && outgoing.toKey !== recipientKey) {",
    replace: "if (false) {",
    tests: [{ file: e2e, filter: "redirected to another person" }],
  },
  {
    name: "broadcast setting ignored",
    file: "server/mail.ts",
    find: "if (!this.#options.broadcast) return;",
    replace: "if (false) return;",
    tests: [{ file: conversations, filter: "broadcast off" }],
  },
  {
    name: "expired mail not reported to its sender",
    file: "server/mail.ts",
    find: 'if (item.kind !== "sealed") continue;',
    replace: "continue;",
    tests: [{ file: conversations, filter: "held mail that expires" }],
  },
  {
    name: "acknowledged mail kept",
    file: "server/mail.ts",
    find: "if (ids.length > 0) await this.#store.mailbox.remove(",
    replace: "if (false) await this.#store.mailbox.remove(",
    tests: [{ file: conversations, filter: "after a server restart" }],
  },
  // Store and forward: everything relayed is held until the recipient's client acknowledges it.
  {
    name: "relayed mail not held until acknowledged (deleted once handed to the connection)",
    file: "server/mail.ts",
    find: "state.after = item.id;",
    replace:
      "state.after = item.id; await this.#store.mailbox.remove(state.fingerprint, [item.id]);",
    tests: [{ file: forward, filter: "died unnoticed" }],
  },
  {
    name: "relayed mail not held until acknowledged (a new connection starts after the old one's)",
    file: "server/mail.ts",
    find:
      "const state: State = { fingerprint, draining: true, again: false, rememberedAt: Date.now() };",
    replace:
      "const state: State = { fingerprint, draining: true, again: false, rememberedAt: Date.now(), after: [...this.#members.get(fingerprint) ?? []].map((m) => this.#state.get(m)?.after).findLast((a) => a !== undefined) };",
    tests: [{ file: forward, filter: "died unnoticed" }],
  },
  {
    name: "held mail pushed past a slow reader's room (the reader cut off)",
    file: "server/mail.ts",
    find: "while (member.queuedBytes > 0 && !member.hasRoom(item.bytes + FRAME_ROOM)) {",
    replace: "while (false) {",
    tests: [{ file: "tests/attacks_test.ts", filter: "attack 4c" }],
  },
  {
    name: "a delivery from a node of the previous build dropped (review B6)",
    file: "server/cluster/relay.ts",
    find: 'const id = read === data.length ? "" :',
    replace: "const id =",
    tests: [{ file: "tests/cluster_presence_test.ts", filter: "cluster relay" }],
  },
  {
    // Review finding 10: the sender was told "no longer online" by the recipient's own limits.
    name: "a refusal by a recipient's limits on another node told as the recipient gone",
    file: "server/cluster/relay.ts",
    find: "REFUSALS.has(error.code)) return encodeRefusal(error);",
    replace: "REFUSALS.has(error.code)) return NOT_DELIVERED;",
    tests: [{ file: "tests/cluster_presence_test.ts", filter: "limits refuse" }],
  },
  {
    name: "names case-sensitive",
    file: "shared/names.ts",
    find: "for (const char of name.toLowerCase()) key",
    replace: "for (const char of name) key",
    tests: [{ file: "tests/chat_test.ts", filter: "regardless of case" }],
  },
  // Server: fairness and stream limits.
  {
    name: "video before chat",
    file: "shared/protocol/framed.ts",
    find: "if (this.#urgent.length > 0) {",
    replace: "if (this.#urgent.length > 0 && this.#ordered.length === 0) {",
    tests: ["tests/framed_lanes_test.ts"],
  },
  {
    name: "bad-credit unchecked",
    file: "server/media/viewer.ts",
    find: "if (bytes > playing.inFlight) {",
    replace: "if (false) {",
    tests: [{ file: "tests/stream_faults_test.ts", filter: "bad-credit" }],
  },

  // docs/security.md, the attack table: what a hostile server cannot do to chat. The checks live
  // in the conversation layer: shared/crypto/agreement.ts (who started a conversation, with
  // whom) and shared/crypto/ratchet.ts (every later message).
  {
    name: "plaintext on the wire (read a message)",
    file: "shared/crypto/ratchet.ts",
    find: "const ciphertext = new Uint8Array(await crypto.subtle.encrypt(params, key, plaintext));",
    replace: "const ciphertext = plaintext;",
    tests: [{ file: e2e, filter: "never contain a message's plaintext" }],
  },
  {
    name: "initiator signature unchecked (forge a conversation)",
    file: "shared/crypto/agreement.ts",
    find: "if (!await verifyPss(verifyKey, init.signature, transcript(init, init, keys))) {",
    replace: "if (false) {",
    tests: [{ file: "tests/agreement_test.ts", filter: "signed by someone else" }],
  },
  {
    name: "message header not authenticated (change a bit)",
    file: "shared/crypto/ratchet.ts",
    find: "additionalData: concat([this.#ad, header.bytes]),",
    replace: "additionalData: concat([this.#ad, encodeHeader(header.publicKey, 0, header.n)]),",
    tests: [{ file: "tests/ratchet_test.ts", filter: "tampered messages" }],
  },
  {
    name: "replayed message not refused as replayed",
    file: "shared/crypto/ratchet.ts",
    find: "if (header.n < receiving.n) olderMessage(receiving.gaps, header.n);",
    replace: "",
    tests: [{ file: e2e, filter: "a replayed envelope" }],
  },
  {
    name: "signed prekeys never rotated",
    file: "shared/crypto/prekeys.ts",
    find: "const due = this.#current.signed.createdAt + SIGNED_PREKEY_ROTATION_MS <= now;",
    replace: "const due = false;",
    tests: [{ file: "tests/agreement_test.ts", filter: "once a week old" }, {
      file: conversations,
      filter: "week-old signed prekey",
    }],
  },
  {
    name: "a connection that died unnoticed holds the name until its idle timeout",
    file: "server/connection.ts",
    find:
      "if (!earlier || earlier === this || !sameKeys(earlier.announcement, announcement)) return;",
    replace: "return;",
    tests: [{ file: "tests/replace_test.ts", filter: "died unnoticed" }],
  },
  {
    name: "someone else's keys replace a held name",
    file: "server/connection.ts",
    find:
      "if (!earlier || earlier === this || !sameKeys(earlier.announcement, announcement)) return;",
    replace: "if (!earlier || earlier === this) return;",
    tests: [{ file: "tests/replace_test.ts", filter: "someone else's keys" }],
  },
  {
    name: "a replaced client comes back (two clients take turns)",
    file: "client/session.ts",
    find:
      'if (message.code === "replaced") return { code: message.code, reason: message.message };',
    replace: "",
    tests: [{ file: "tests/replace_test.ts", filter: "second running client" }],
  },
  {
    name: "a full cluster registry is read whole at every newcomer's join",
    file: "server/cluster/directory.ts",
    find: "const room = Math.floor(this.#limits.maxRegistered / 100);",
    replace: "const room = 0;",
    tests: [{ file: "tests/cluster_directory_test.ts", filter: "read whole once per 1%" }],
  },
  {
    name: "two copies of the prekeys at join (an erased one-time key saved back)",
    file: "client/conversations.ts",
    find: "return this.#prekeysLoaded ??= this.#readPrekeys();",
    replace: "return this.#readPrekeys();",
    tests: [
      { file: "tests/conversation_prekeys_test.ts", filter: "two publishes at once" },
      { file: conversations, filter: "week-old signed prekey" },
    ],
  },
  {
    name: "a sender pinned before their message opened (the server forces a pin)",
    file: "client/session.ts",
    find: "await this.#conversations.receive(message, keys, pin?.fingerprint, pinSender);",
    replace:
      "pinSender();\n        await this.#conversations.receive(message, keys, pin?.fingerprint);",
    tests: [{ file: e2e, filter: "claimed to come from someone else" }],
  },
  {
    name: "receipts owed grow without bound",
    file: "client/store/mod.ts",
    find:
      'this.#db.prepare("DELETE FROM receipts_owed WHERE seq <= ?").run(seq - MAX_RECEIPTS_OWED);',
    replace: "",
    tests: [{ file: "tests/client_store_test.ts", filter: "receipts owed are kept" }],
  },
  {
    name: "a receipt owed when the session ends is dropped",
    file: "client/session.ts",
    find: "session.#conversations.resendReceipts();",
    replace: "",
    tests: [
      { file: forward, filter: "a receipt that had not left" },
      { file: "tests/store_close_test.ts", filter: "its receipt, owed" },
    ],
  },
  {
    name: "receipts owed at the end of a session not sealed",
    file: "client/conversations.ts",
    find: "await this.#queue.run(() => this.#sealReceipts()).catch((error) =>",
    replace: "await Promise.resolve().catch((error) =>",
    tests: [{ file: "tests/store_close_test.ts", filter: "its receipt, owed" }],
  },
  {
    name: "sent told after a signed refusal (events out of the history's order)",
    file: "client/conversations.ts",
    find: "if (failed.failed) return;",
    replace: "",
    tests: [{ file: conversations, filter: "overtakes the server's answer" }],
  },
  {
    name: "redelivered message not recognised by its id",
    file: "client/conversations.ts",
    find: 'if (id !== "" && this.#hasSeen(from, id)) {',
    replace: "if (false) {",
    tests: [
      { file: e2e, filter: "a redelivered envelope" },
      { file: reconnect, filter: "drops the copy" },
    ],
  },
  {
    name: "gap not reported (reorder, dropped session tail)",
    file: "shared/crypto/ratchet.ts",
    find: "return { plaintext, missing: skip };",
    replace: "return { plaintext, missing: 0 };",
    tests: [{ file: e2e, filter: "reordered envelopes" }, {
      file: "tests/session_tail_test.ts",
      filter: "dropped session tail",
    }],
  },
  {
    name: "unread rest of the previous chain not reported",
    file: "shared/crypto/ratchet.ts",
    find: "return { plaintext, missing: missingBefore + header.n };",
    replace: "return { plaintext, missing: header.n };",
    tests: [{ file: "tests/ratchet_test.ts", filter: "unread rest of the previous chain" }],
  },
  {
    name: "redirected message accepted (responder unchecked)",
    file: "shared/crypto/agreement.ts",
    find: `if (init.responderName !== name || init.initiatorName !== options.peerName) {
    refuse("wrong-peer", \`The init is from "\${init.initiatorName}" to "\${init.responderName}"\`);
  }
  if (
    toHex(ownFp) !== init.responderFingerprint || toHex(peerFp) !== init.initiatorFingerprint ||
    options.prekeys.owner !== init.responderFingerprint
  ) {`,
    replace: `if (init.initiatorName !== options.peerName) {
    refuse("wrong-peer", "redirect unchecked");
  }
  if (toHex(peerFp) !== init.initiatorFingerprint) {`,
    tests: [{ file: e2e, filter: "redirected to another person" }],
  },
  {
    name: "another sender's message accepted (initiator unchecked)",
    file: "shared/crypto/agreement.ts",
    find: `if (init.responderName !== name || init.initiatorName !== options.peerName) {
    refuse("wrong-peer", \`The init is from "\${init.initiatorName}" to "\${init.responderName}"\`);
  }
  if (
    toHex(ownFp) !== init.responderFingerprint || toHex(peerFp) !== init.initiatorFingerprint ||
    options.prekeys.owner !== init.responderFingerprint
  ) {`,
    replace: `if (init.responderName !== name) {
    refuse("wrong-peer", "claimed sender unchecked");
  }
  if (toHex(ownFp) !== init.responderFingerprint || options.prekeys.owner !== init.responderFingerprint) {`,
    tests: [{ file: e2e, filter: "claimed to come from someone else" }],
  },
  {
    name: "sending to a changed key allowed (swap in a new key)",
    file: "client/peers.ts",
    find: 'if (peer.trust === "changed") {',
    replace: "if (false) {",
    tests: [{ file: e2e, filter: "changed key" }],
  },
  {
    name: "replayed announcement accepted (old connection)",
    file: "client/peers.ts",
    find: "if (seen.has(announcement.epoch) && current !== announcement.epoch) {",
    replace: "if (false) {",
    tests: [{ file: e2e, filter: "old connection replayed" }],
  },
  // docs/security.md, threat model: a local user.
  {
    name: "owner-only files readable by others (identity, server key, pins)",
    file: "shared/files.ts",
    find: "const FILE_MODE = 0o600;",
    replace: "const FILE_MODE = 0o644;",
    tests: ["tests/keystore_test.ts", {
      file: "tests/channel_server_test.ts",
      filter: "keeps its key in --state",
    }],
  },
  // docs/security.md, "Limits".
  {
    name: "frame cap off by one (max_frame_bytes)",
    file: "shared/protocol/frame.ts",
    find: "if (length > this.#maxFrameBytes) {",
    replace: "if (length > this.#maxFrameBytes + 1) {",
    tests: [{ file: "tests/frame_test.ts", filter: "exactly the cap" }],
  },
  {
    name: "join timeout never fires (join_timeout_ms)",
    file: "server/connection.ts",
    find: "}, Math.max(0, this.#channel.joinDeadline - Date.now()));",
    replace: "}, joinTimeoutMs * 1000);",
    tests: [{ file: "tests/abuse_test.ts", filter: "trickling its hello" }],
  },
  {
    name: "no cap on joining connections (max_pending)",
    file: "server/shares.ts",
    find: "} else if (this.#pending >= this.#limits.maxPending) {",
    replace: "} else if (false) {",
    tests: [{ file: "tests/limits_test.ts", filter: "500 connections at once" }],
  },
  {
    name: "no cap on clients (max_clients)",
    file: "server/connection.ts",
    find: "if (!this.#context.hasRoomForClient()) {",
    replace: "if (false) {",
    tests: [{ file: "tests/limits_test.ts", filter: "max_clients" }],
  },
  {
    name: "chat not rate limited (chat_rate, chat_burst)",
    file: "server/connection.ts",
    find: "if (!this.#chat.take()) {",
    replace: "if (false) {",
    tests: [{ file: "tests/limits_test.ts", filter: "chat rate limit" }],
  },
  {
    name: "urgent queue unbounded (max_queue_bytes)",
    file: "shared/protocol/framed.ts",
    find: "if (this.#urgentBytes + frame.length > this.#options.maxQueueBytes) {",
    replace: "if (false) {",
    tests: [{ file: "tests/shares_test.ts", filter: "own lane overflows" }],
  },
  // Issue 12: fair shares (docs/security.md, the limits table) and lookalike names.
  {
    name: "joining connections per host uncapped (max_pending_per_host)",
    file: "server/shares.ts",
    find: "if (entry.pending.size >= this.#limits.maxPendingPerHost) {",
    replace: "if (false) {",
    tests: [{ file: "tests/attacks_test.ts", filter: "attack 2:" }, {
      file: "tests/shares_test.ts",
      filter: "only ever evicts its own oldest",
    }],
  },
  {
    name: "newest joining connection evicted, not the oldest",
    file: "server/shares.ts",
    find: "const [oldest] = entry.pending;",
    replace: "const oldest = [...entry.pending].at(-1)!;",
    tests: [{ file: "tests/shares_test.ts", filter: "only ever evicts its own oldest" }],
  },
  {
    name: "first byte deadline never fires (first_byte_timeout_ms)",
    file: "server/server.ts",
    find: "}, firstByteTimeoutMs);",
    replace: "}, firstByteTimeoutMs * 1000);",
    tests: [{ file: "tests/attacks_test.ts", filter: "attack 2b" }],
  },
  {
    name: "a full host still connects (max_clients_per_host)",
    file: "server/shares.ts",
    find: "return this.joinedOf(host) >= this.#limits.maxClientsPerHost;",
    replace: "return false;",
    tests: [{ file: "tests/attacks_test.ts", filter: "attack 2:" }],
  },
  {
    name: "pair rate unchecked (chat_pair_rate)",
    file: "server/connection.ts",
    find: 'if (refusal === "pair") {',
    replace: "if (false) {",
    tests: [{ file: "tests/attacks_test.ts", filter: "attack 1:" }],
  },
  {
    name: "inbound rate unchecked (chat_inbound_rate)",
    file: "server/connection.ts",
    find: 'if (refusal === "recipient") {',
    replace: "if (false) {",
    tests: [{ file: "tests/attacks_test.ts", filter: "attack 1c" }],
  },
  {
    name: "chat fills a recipient's whole queue (kick anyone)",
    file: "server/connection.ts",
    find:
      "return this.framed.queuedBytes + bytes <= this.#context.config.limits.maxQueueBytes / 2;",
    replace: "return true;",
    tests: [{ file: "tests/attacks_test.ts", filter: "attack 1b" }],
  },
  {
    name: "no server-wide queue budget for chat (max_total_queue_bytes)",
    file: "server/connection.ts",
    find: "if (!this.#context.budget.hasRoom(bytes)) {",
    replace: "if (false) {",
    tests: [{ file: "tests/attacks_test.ts", filter: "attack 4" }],
  },
  {
    name: "a queue hog over the budget is never cut off",
    file: "shared/protocol/framed.ts",
    find: "if (this.#options.budget?.reserve(frame.length, this.#urgentBytes) === false) {",
    replace: "if (false) {",
    tests: [{ file: "tests/shares_test.ts", filter: "over the server-wide budget" }],
  },
  {
    name: "streams per host uncapped (max_streams_per_host)",
    file: "server/connection.ts",
    find: "if (others >= maxStreamsPerHost) {",
    replace: "if (false) {",
    tests: [{ file: "tests/attacks_test.ts", filter: "attack 3" }],
  },
  {
    name: "lookalike names allowed (I/l/1)",
    file: "shared/names.ts",
    find: '  "1": "l",',
    replace: '  "1": "1",',
    tests: ["tests/names_test.ts", { file: "tests/attacks_test.ts", filter: "attack 8" }],
  },
  {
    name: "lookalike names allowed (O/0)",
    file: "shared/names.ts",
    find: '  "0": "o",',
    replace: '  "0": "0",',
    tests: ["tests/names_test.ts", { file: "tests/attacks_test.ts", filter: "attack 8" }],
  },
  {
    name: "a lookalike is an address for the real name",
    file: "server/directory.ts",
    find: "return member && sameName(member.announcement.name, name) ? member : undefined;",
    replace: "return member;",
    tests: [{ file: "tests/attacks_test.ts", filter: "attack 8" }],
  },
  {
    name: "log lines carry raw controls (forged log lines)",
    file: "shared/log.ts",
    find: "${escapeForLog(message)}\\n`;",
    replace: "${message}\\n`;",
    tests: [{ file: "tests/attacks_test.ts", filter: "attack 9" }],
  },
  {
    name: "links out of videos/ followed",
    file: "server/media/catalog.ts",
    find: "if (entry.isSymlink && !(await staysInside(root, `${this.dir}/${entry.name}`))) {",
    replace: "if (false) {",
    tests: [{ file: "tests/attacks_test.ts", filter: "attack 9" }],
  },
  {
    name: "home writable by others accepted",
    file: "client/keystore.ts",
    find: 'await assertPrivateFolder(home, "home-unprotected");',
    replace: "void 0;",
    tests: [{ file: "tests/attacks_test.ts", filter: "attack 10" }],
  },
  {
    name: "identity readable by others accepted",
    file: "client/keystore.ts",
    find: 'await assertOwnerOnly(file, "identity-unprotected");',
    replace: "void 0;",
    tests: [{ file: "tests/attacks_test.ts", filter: "attack 10" }],
  },
  {
    name: "identity owned by another user accepted",
    file: "shared/files.ts",
    find: "if (owner) throw new ReelayError(code, `File ${owner}`);",
    replace: "void owner;",
    tests: [{ file: "tests/attacks_test.ts", filter: "attack 10" }],
  },
  {
    name: "client takes the server's window as is",
    file: "client/viewing.ts",
    find: "this.#windowBytes = Math.min(MAX_WINDOW_BYTES, Math.max(MIN_WINDOW_BYTES, bytes));",
    replace: "this.#windowBytes = bytes;",
    tests: [{ file: "tests/attacks_test.ts", filter: "attack 6" }],
  },
  {
    name: "client requests wait forever",
    file: "client/session.ts",
    find: "const timeoutMs = this.#options.requestTimeoutMs ?? REQUEST_TIMEOUT_MS;",
    replace: "const timeoutMs = 2 ** 31 - 1;",
    tests: [
      { file: "tests/attacks_test.ts", filter: "attack 7" },
      // Attack 7 again with reconnect on (the CLI default), the line cut after each welcome.
      { file: "tests/reconnect_flapping_test.ts", filter: "cannot hold a request" },
    ],
  },
  {
    name: "local commands wait behind network ones",
    file: "client/tui/app.ts",
    find: "if (!this.#ordered && isLocal(line)) {",
    replace: "if (false) {",
    tests: [{ file: "tests/attacks_test.ts", filter: "attack 7" }],
  },
  {
    name: "invisible characters and fake lines shown",
    file: "client/tui/format.ts",
    find: "return sanitizeForDisplay(text);",
    replace: "return text;",
    tests: [{ file: "tests/attacks_test.ts", filter: "attack 8" }],
  },
  {
    name: "quiet peers not pinged (keepalive_ms)",
    file: "server/server.ts",
    find: 'peer.notify({ type: "ping" });',
    replace: "void 0;",
    tests: [{ file: "tests/abuse_test.ts", filter: "keepalive: a peer that goes silent" }],
  },
  {
    name: "silent peers never cut off (idle_timeout_ms)",
    file: "server/server.ts",
    find: "if (quiet > idleTimeoutMs) {",
    replace: "if (false) {",
    tests: [{ file: "tests/abuse_test.ts", filter: "trickling a frame" }],
  },
  {
    name: "malformed runs never close (16 in a row)",
    file: "server/connection.ts",
    find: "if (this.#badMessages > MAX_BAD_MESSAGES) {",
    replace: "if (false) {",
    tests: [{ file: "tests/abuse_test.ts", filter: "a run of them closes" }],
  },
  {
    name: "string fields uncapped (message field sizes)",
    file: "shared/protocol/_validate.ts",
    find: "if (value.length > max) fail(key, `is longer",
    replace: "if (false) fail(key, `is longer",
    tests: [{ file: "tests/messages_test.ts", filter: "bad fields" }],
  },
  {
    name: "no cap on transcodes (max_transcodes)",
    file: "server/media/slots.ts",
    find: "if (this.#inUse >= this.max || this.#waiters",
    replace: "if (this.#waiters",
    tests: [{ file: "tests/streaming_test.ts", filter: "transcode cap" }],
  },
  {
    name: "stream window ignored (window_bytes)",
    file: "server/media/viewer.ts",
    find: "playing.inFlight + bytes > windowBytes",
    replace: "playing.inFlight + bytes > windowBytes * 4096",
    tests: [{ file: "tests/stream_faults_test.ts", filter: "cut off as stalled" }],
  },
  // docs/security.md, "Faults".
  {
    name: "a dead client's name is never freed",
    file: "server/connection.ts",
    find: "if (this.#announcement) this.#context.people.leave(this);",
    replace: "void 0;",
    tests: [{ file: "tests/abuse_test.ts", filter: "killed mid-frame" }],
  },
  {
    name: "a client dead mid-join keeps its joining slot",
    file: "server/server.ts",
    find: "      this.#peers.delete(peer);",
    replace: "      void peer;",
    tests: [{ file: "tests/abuse_test.ts", filter: "killed mid-join" }],
  },
  {
    name: "closed without saying why (random bytes)",
    file: "server/connection.ts",
    find: 'this.framed.sendMessage({ type: "error", code: error.code, message: error.message });',
    replace: "void 0;",
    tests: [{ file: "tests/abuse_test.ts", filter: "random bytes" }],
  },
  {
    // fromClient's own stream-data check is backed by this one, so breaking it alone changes
    // nothing a client can see: the kind check is the promise.
    name: "frames of unknown kind parsed as messages",
    file: "shared/protocol/messages.ts",
    find: "if (frame.kind !== KIND_CONTROL && frame.kind !== KIND_BODY) {",
    replace: "if (false) {",
    tests: [{ file: "tests/abuse_test.ts", filter: "before the join" }],
  },
  {
    name: "any protocol version accepted (bad hello)",
    file: "server/connection.ts",
    find: "if (hello.protocol !== PROTOCOL_VERSION) {",
    replace: "if (false) {",
    tests: [{ file: "tests/abuse_test.ts", filter: "before the join" }],
  },
  {
    // The server also catches a failed connection task (#track), so breaking either defence
    // alone still ends only that connection; what shows is whether the bug is logged as one.
    name: "a bug while serving is not logged as a bug",
    file: "server/connection.ts",
    find: '"error", `Bug while serving ${this.label}',
    replace: '"info", `Bug while serving ${this.label}',
    tests: ["tests/server_bug_test.ts"],
  },
  {
    name: "clients not told of shutdown (SIGTERM)",
    file: "server/server.ts",
    find: 'peer.notify({ type: "shutdown", message });',
    replace: "void 0;",
    tests: [{ file: "tests/shutdown_test.ts", filter: "clients hear server-shutdown" }],
  },
  {
    name: "ffmpeg not checked at start",
    file: "server/mod.ts",
    find: "await checkFfmpeg(config.stream.ffmpeg, config.stream.ffprobe);",
    replace: "void 0;",
    tests: [{ file: "tests/shutdown_test.ts", filter: "ffmpeg missing from PATH" }],
  },
  {
    name: "listen failure is a stack trace",
    file: "server/server.ts",
    find: "// A host that does not resolve or is not this machine's",
    replace: "throw error; //",
    tests: [{ file: "tests/shutdown_test.ts", filter: "cannot listen on its host" }],
  },
  {
    name: "port in use not named",
    file: "server/server.ts",
    find: "if (error instanceof Deno.errors.AddrInUse) {",
    replace: "if (false) {",
    tests: [{ file: "tests/shutdown_test.ts", filter: "port in use" }],
  },
  {
    name: "unknown config key accepted",
    file: "shared/config/ini.ts",
    find: "if (!known) {",
    replace: "if (false) {",
    tests: ["tests/config_test.ts"],
  },
  {
    name: "vanished server not named",
    file: "client/session.ts",
    find: "reason: `Server ${this.server} closed the connection`,",
    replace: 'reason: "Disconnected",',
    tests: [{ file: "tests/shutdown_test.ts", filter: "server vanishes mid-session" }],
  },
  {
    name: "stored identity ignored (a new one each run)",
    file: "client/keystore.ts",
    find: "return await Identity.fromJSON(JSON.parse(text));",
    replace: "return await Identity.generate();",
    tests: [{ file: "tests/shutdown_test.ts", filter: "corrupt identity.json" }],
  },
  // Media: honest ends and the fast start (issue 14).
  {
    name: "short part counted complete",
    file: "server/media/honest_end.ts",
    find: "if (covered + shortfallTolerance(promise.fps) < promise.seconds) {",
    replace: "if (false) {",
    tests: [{ file: "tests/playback_test.ts", filter: "streamVideo" }],
  },
  {
    name: "first part not tuned to start fast",
    file: "server/media/playback.ts",
    find: "const fastStart = index === 0 ? DEFAULT_FAST_START : undefined;",
    replace: "const fastStart = undefined;",
    tests: [{ file: "tests/playback_test.ts", filter: "streamVideo" }],
  },
  {
    name: "viewers of a part not shared",
    file: "server/media/part_sources.ts",
    find: "const stream = running?.shared.join();",
    replace: "const stream = running && undefined;",
    tests: [{ file: "tests/sharing_test.ts", filter: "five streams" }],
  },
  {
    name: "cache never read",
    file: "server/media/part_sources.ts",
    find: 'return part && { stream: part.stream, origin: "cache", suspend() {}, unsuspend() {} };',
    replace: "return undefined;",
    tests: [{ file: "tests/sharing_test.ts", filter: "the cache serves" }],
  },
  {
    name: "paused ffmpeg keeps running",
    file: "server/media/transcode.ts",
    find: 'this.#suspended = this.#signal("SIGSTOP");',
    replace: "this.#suspended = false;",
    tests: [{ file: "tests/pause_seek_test.ts", filter: "within the grace time" }],
  },
  {
    name: "paused stream never parked",
    file: "server/media/viewer.ts",
    find: "playing.parked = true;",
    replace: "playing.parked = false;",
    tests: [{ file: "tests/pause_seek_test.ts", filter: "parks ffmpeg" }],
  },
  // Secure channel (docs/security.md, "Server identity").
  {
    name: "server key not checked",
    file: "client/server_trust.ts",
    find: "const check = await pins.check(address, presented);",
    replace: 'const check: string = "match";',
    tests: [{ file: "tests/channel_server_test.ts", filter: "changed key is refused" }],
  },
  {
    name: "any accepted server key",
    file: "client/server_trust.ts",
    find: "if (acceptServerKey.trim() !== handshake.serverFingerprint) {",
    replace: "if (false) {",
    tests: [{ file: "tests/channel_server_test.ts", filter: "changed key is refused" }],
  },
  {
    name: "an address's old store adopted for an accepted new key",
    file: "client/server_store.ts",
    find: 'if (server.keyStatus === "pinned")',
    replace: 'if (server.keyStatus !== "new")',
    tests: [{ file: "tests/server_store_test.ts", filter: "stays where it is" }],
  },
  {
    name: "handshakes not counted as joining",
    file: "server/server.ts",
    find: "for (const old of this.#shares.admit(host, joining).evict) this.#evict(old);",
    replace: "void 0;",
    tests: [{ file: "tests/channel_server_test.ts", filter: "silent one ends" }],
  },
  {
    name: "recorded join accepted (join proof unchecked)",
    file: "server/connection.ts",
    find: "if (!(await verifyJoinProof(announcement, this.#channel.handshakeHash, hello.proof))) {",
    replace: "if (false) {",
    tests: [{ file: "tests/channel_join_test.ts", filter: "recorded in the clear" }],
  },
  {
    name: "replayed join accepted (epoch used twice)",
    file: "server/connection.ts",
    find: "if (!this.#context.joinEpochs.accept(announcement.epoch)) {",
    replace: "if (false) {",
    tests: [{ file: "tests/channel_join_test.ts", filter: "an epoch joins once" }],
  },
  // The client: players and the piped client (issue 16).
  {
    name: "finish does not wait for the player",
    file: "client/player.ts",
    find: "await exited;",
    replace: "void exited;",
    tests: [{ file: "tests/player_test.ts", filter: "receives the whole stream" }],
  },
  {
    name: "abort waits for a player that stopped reading",
    file: "client/player.ts",
    find: "void terminate(child, exited, KILL_GRACE_MS);",
    replace: "void 0;",
    tests: [{ file: "tests/player_test.ts", filter: "abort" }],
  },
  {
    name: "end of piped input quits mid-stream",
    file: "client/session.ts",
    find: "while (!this.#isIdle())",
    replace: "while (false)",
    tests: ["tests/piped_client_test.ts"],
  },
  {
    name: "resolution told on arrival, not on screen",
    file: "client/viewing.ts",
    find: "if (due > 0) {",
    replace: "if (false) {",
    tests: [{ file: "tests/viewing_test.ts", filter: "reaches the part" }],
  },
  {
    name: "one-time prekey handed out twice across cluster nodes",
    file: "server/cluster/directory.ts",
    find: "await this.#kv.update(name, utf8(JSON.stringify(rest)), current.revision);",
    replace: "await this.#kv.put(name, utf8(JSON.stringify(rest)));",
    tests: [{ file: "tests/cluster_directory_test.ts", filter: "never get the same" }],
  },
  // Reconnecting (issue 13): nothing lost, nothing doubled, no retrying what cannot change.
  {
    name: "unacknowledged message lost on reconnect",
    file: "client/session.ts",
    find: "for (const [ref, pending] of waiting) this.#transmit(ref, pending);",
    replace: "void 0;",
    tests: [{ file: reconnect, filter: "sent again" }],
  },
  {
    name: "reconnects forever after a refusal",
    file: "client/reconnect.ts",
    find: "return FINAL_CODES.has(code);",
    replace: "return false;",
    tests: [{ file: reconnect, filter: "another key" }],
  },
  {
    name: "name taken by someone else retried until the give-up time",
    file: "client/reconnect.ts",
    find: 'if (code === "name-taken") return downMs >= policy.nameTakenGraceMs;',
    replace: 'if (code === "name-taken") return false;',
    tests: [{ file: reconnect, filter: "grace time" }],
  },
  {
    name: "never gives up reconnecting",
    file: "client/reconnect.ts",
    find: "if (downMs >= policy.giveUpMs) {",
    replace: "if (false) {",
    tests: [{ file: reconnect, filter: "never comes back" }],
  },
  {
    name: "a video stopped while the server is away resumes anyway",
    file: "client/session.ts",
    find: "if (resume) {",
    replace: "if (false) {",
    tests: [{ file: reconnect, filter: "stays stopped" }],
  },
  {
    name: "typed line dropped on reconnect (the client exits instead)",
    file: "client/mod.ts",
    find: "reconnect: config.client.reconnect ? reconnectPolicy(config.client) : undefined,",
    replace: "reconnect: undefined,",
    tests: [{ file: "tests/reconnect_cli_test.ts", filter: "half-typed line" }],
  },
  {
    name: "gave-up exits like any failure",
    file: "client/tui/app.ts",
    find: 'if (outcome.gone.code === "gave-up") return EXIT_GAVE_UP;',
    replace: "",
    tests: [
      { file: "tests/app_test.ts", filter: "gave-up exits 5" },
      { file: "tests/reconnect_cli_test.ts", filter: "exit 5" },
    ],
  },
  {
    name: "every reconnect attempt floods the transcript beside the status line's countdown",
    file: "client/tui/app.ts",
    find: 'if (event.event === "reconnecting" && event.attempt > 1 && input.setStatus) return;',
    replace: "",
    tests: [{ file: "tests/app_test.ts", filter: "first attempt and the outcome" }],
  },
  {
    name: "a video paused while the server is away comes back playing",
    file: "client/session.ts",
    find: "if (resume.paused) this.#viewing.pause(); // paused while the server was away",
    replace: "",
    tests: [{ file: reconnect, filter: "comes back paused" }],
  },
  {
    name: "the store closes under a message being kept (written after close)",
    file: "client/session.ts",
    find: "await this.#reading; // the message being handled is kept before the store closes",
    replace: "void 0;",
    tests: [{ file: "tests/store_close_test.ts", filter: "store closes after it" }],
  },
  {
    name: "a reconnect dial goes on after the person left (events after quit)",
    file: "client/reconnect.ts",
    find: "await this.#host.rejoin(policy.address?.(attempt), this.#leave.signal);",
    replace: "await this.#host.rejoin(policy.address?.(attempt), new AbortController().signal);",
    tests: [{ file: "tests/reconnect_leave_test.ts", filter: "calls the dial off" }],
  },
  {
    name: "a failure in the reconnect loop kills the process (unhandled rejection)",
    file: "client/session.ts",
    find: "this.#connectionEnded(framed, end)).catch((error) =>",
    replace: "this.#connectionEnded(framed, end)); void ((error: unknown) =>",
    tests: [{ file: "tests/reconnect_leave_test.ts", filter: "throws inside the reconnect loop" }],
  },
  {
    name: "request timeout restarts on reconnect (a flapping server holds it for ever)",
    file: "client/session.ts",
    find: "if (pending.timer !== undefined) return; // sent again: the first deadline holds",
    replace: "clearTimeout(pending.timer);",
    tests: [{ file: "tests/reconnect_flapping_test.ts", filter: "cannot hold a request" }],
  },
  {
    name: "give-up time restarts at every quick loss (a flapping server keeps the client for ever)",
    file: "client/reconnect.ts",
    find:
      "if (previous && backAt !== undefined && now - backAt < (policy.stableMs ?? STABLE_MS)) {",
    replace: "if (false) {",
    tests: [{ file: "tests/reconnect_flapping_test.ts", filter: "counts from the first loss" }],
  },
  {
    name: "reconnects to a server with another key (the session's key not checked)",
    file: "client/server_trust.ts",
    find: "if (expected === undefined || handshake.serverFingerprint === expected) return;",
    replace: "return;",
    tests: [{ file: "tests/reconnect_key_test.ts", filter: "another address with another key" }],
  },
  {
    name: "a stream that fully arrived is cut by a connection loss",
    file: "client/session.ts",
    find: 'if (!this.#viewing.arrived) await this.#viewing.abort(lost.reason, "error", resumes);',
    replace: 'await this.#viewing.abort(lost.reason, "error", resumes);',
    tests: [{ file: "tests/reconnect_stream_test.ts", filter: "fully arrived" }],
  },
  {
    name: "requests waiting for a server that is away unbounded",
    file: "client/session.ts",
    find: "if (this.#pending.size >= MAX_PENDING_REQUESTS) {",
    replace: "if (false) {",
    tests: [{ file: reconnect, filter: "up to a bound" }],
  },
  {
    name: "sender of a message not pinned",
    file: "client/session.ts",
    find: 'if (online && !pin && online.trust !== "changed") this.#peers.interact(online);',
    replace: "",
    tests: [{ file: "tests/pins_test.ts", filter: "interacting pins it" }],
  },
  {
    name: "video playing when the connection was lost not resumed",
    file: "client/session.ts",
    find: "this.#resume = this.#viewing.resumePoint();",
    replace: "this.#resume = undefined;",
    tests: [{ file: reconnect, filter: "resumes where it was" }],
  },
  {
    name: "play past the end of a video accepted",
    file: "server/media/viewer.ts",
    find: "if (from >= info.duration) {",
    replace: "if (from > info.duration * 1e9) {",
    tests: [{ file: "tests/seek_bounds_test.ts", filter: "past it is refused" }],
  },
  {
    name: "status line shows the resolution arriving, not the one on screen",
    file: "client/tui/playing.ts",
    find: "return this.#set({ position: event.shown, buffered: this.#buffered() });",
    replace:
      "return this.#set({ part: event.index + 1, height: event.height, position: event.shown, buffered: this.#buffered() });",
    tests: [{ file: "tests/tui_playing_test.ts", filter: "when the player shows them" }],
  },
  {
    name: "paused viewer dropped from a shared part fails instead of going on",
    file: "server/media/viewer.ts",
    find: "void stream.fellBehind.then((error) =>",
    replace: "void stream.fellBehind.then((error) => error.message.length < 0 &&",
    tests: ["tests/shared_pause_test.ts"],
  },
  {
    name: "paused viewer keeps reading ahead from its parts",
    file: "server/media/playback.ts",
    find: "await held();",
    replace: "held();",
    tests: ["tests/shared_pause_test.ts"],
  },
  // Message history in the client store (issue 13): encrypted at rest, off means off, clear
  // means gone.
  {
    name: "history stored in clear",
    file: "client/store/_history.ts",
    find: "const data = await seal(key, nonce, historyAd(peer, entry.at), plain);",
    replace: "const data = plain;",
    tests: [
      { file: "tests/client_store_test.ts", filter: "encrypted at rest" },
      { file: "tests/history_test.ts", filter: "unreadable without the identity" },
    ],
  },
  {
    name: "history kept when turned off",
    file: "client/store/_history.ts",
    find: "if (!this.kept) return;",
    replace: "if (false) return;",
    tests: [
      { file: "tests/client_store_test.ts", filter: "history turned off" },
      { file: "tests/history_test.ts", filter: "/history off stops keeping" },
    ],
  },
  {
    name: "clear leaves rows",
    file: "client/store/_history.ts",
    find: 'db.prepare("DELETE FROM history WHERE name_key = ?").run(nameKey(peer));',
    replace: 'db.prepare("SELECT ?").run(nameKey(peer));',
    tests: [{ file: "tests/client_store_test.ts", filter: "clearing history" }],
  },
  {
    name: "clear of everyone leaves rows",
    file: "client/store/_history.ts",
    find: 'db.prepare("DELETE FROM history").run()',
    replace: 'db.prepare("SELECT 1").run()',
    tests: [
      { file: "tests/client_store_test.ts", filter: "clearing history" },
      { file: "tests/history_test.ts", filter: "gone after /history clear" },
    ],
  },
  {
    name: "history write failure ends the connection",
    file: "client/conversations.ts",
    find: "this.#keepHistory(kept)",
    replace: "this.#store.insertHistory(kept!)",
    tests: [{ file: "tests/history_faults_test.ts", filter: "a write the file refuses" }],
  },
  {
    name: "history of another identity not restarted",
    file: "client/store/_history.ts",
    find: "if (this.#parts.forcedOff || this.#key || !wrapped) return undefined;",
    replace: "return undefined;",
    tests: [{ file: "tests/history_faults_test.ts", filter: "identity.json is replaced" }],
  },
  {
    name: "server's unsigned failed undoes sent or delivered",
    file: "client/conversations.ts",
    find: "void this.#tellFailed(message.to, message.id, message.reason, SERVER_MAY_FAIL);",
    replace: "void this.#tellFailed(message.to, message.id, message.reason);",
    tests: [{ file: conversations, filter: "unsigned failed" }],
  },
  {
    name: "client store version 2 not upgraded",
    file: "client/store/_db.ts",
    find: "  2: TO_VERSION_3 + TO_VERSION_4,",
    replace: "",
    tests: [{ file: "tests/client_store_test.ts", filter: "version 2 store" }],
  },
  {
    name: "history bound per person ignored",
    file: "client/store/_history.ts",
    find: ").run(peer, peer, maxPerPeer);",
    replace: ").run(peer, peer, Number.MAX_SAFE_INTEGER);",
    tests: [{ file: "tests/client_store_test.ts", filter: "bounded per person" }],
  },
  {
    name: "history bound in all ignored",
    file: "client/store/_history.ts",
    find: "if (rows <= maxTotal) return;",
    replace: "return;",
    tests: [{ file: "tests/client_store_test.ts", filter: "bounded in all" }],
  },
  // Limits and cluster guarantees of docs/security.md that had no mutant (issue 16).
  {
    name: "held mail uncapped per recipient (max_items_per_recipient)",
    file: "server/store/_check.ts",
    find: "if (held.items + 1 > limits.maxItemsPerRecipient) {",
    replace: "if (false) {",
    tests: [{ file: "tests/store_mailbox_test.ts", filter: "item count would pass" }],
  },
  {
    name: "held bytes uncapped per recipient (max_bytes_per_recipient)",
    file: "server/store/_check.ts",
    find: "if (held.bytes + size > limits.maxBytesPerRecipient) {",
    replace: "if (false) {",
    tests: [{ file: "tests/store_mailbox_test.ts", filter: "recipient's bytes would pass" }],
  },
  {
    name: "held mail uncapped in total (max_total_bytes)",
    file: "server/store/_mailbox.ts",
    find: "if (total.bytes + size > limits.maxTotalBytes) {",
    replace: "if (false) {",
    tests: [{ file: "tests/store_mailbox_test.ts", filter: "total bytes would pass" }],
  },
  {
    name: "one sender fills the whole mailbox (max_bytes_per_sender)",
    file: "server/store/_mailbox.ts",
    find: "if (row.senderKey !== null) this.#checkSender(row.senderKey, size);",
    replace: "",
    tests: [
      { file: "tests/store_mailbox_test.ts", filter: "one sender's held bytes would pass" },
      { file: "tests/store_forward_test.ts", filter: "one sender cannot fill the whole mailbox" },
    ],
  },
  {
    name: "held mail kept past its time (ttl_ms)",
    file: "server/store/_mailbox.ts",
    find: "const expiresAt = queuedAt + this.limits.ttlMs;",
    replace: "const expiresAt = queuedAt + this.limits.ttlMs * 1000;",
    tests: [{ file: "tests/store_mailbox_test.ts", filter: "expire on the injected clock" }],
  },
  {
    name:
      "a failed commit leaves memory ahead of the file (a held message then refused as replayed)",
    file: "shared/group_commit.ts",
    find: "this.#options.failed?.(error);",
    replace: "",
    tests: [{ file: "tests/conversation_commit_test.ts", filter: "commit failed" }],
  },
  {
    name: "a transaction SQLite undid lets the rest of the batch commit alone (a message lost)",
    file: "client/conversations.ts",
    find: "if (inside && !this.#store.inTransaction) throw error;",
    replace: "",
    tests: [{ file: "tests/conversation_commit_test.ts", filter: "undoes the whole transaction" }],
  },
  {
    name: "a failed commit drops the acks and error events queued behind it",
    file: "shared/group_commit.ts",
    find: "if (step.needsCommit) step.settled.reject(error);",
    replace: "if (true) step.settled.reject(error);",
    tests: [{ file: "tests/group_commit_test.ts", filter: "still runs what afterPending queued" }],
  },
  {
    name: "one after's throw rejects every stager of the batch",
    file: "shared/group_commit.ts",
    find: "for (const step of batch.steps) settle(step);",
    replace:
      "const first = batch.steps.flatMap((step) => { try { step.run?.(); return []; } catch (error) { return [error]; } })[0]; for (const step of batch.steps) first === undefined ? step.settled.resolve() : step.settled.reject(first);",
    tests: [{ file: "tests/group_commit_test.ts", filter: "rejects only its own stager" }],
  },
  {
    name: "an ended conversation read back from the file before its delete commits",
    file: "client/conversations.ts",
    find: "if (live === null) return undefined;",
    replace: "if (live === null) live = undefined;",
    tests: [{ file: "tests/conversation_commit_test.ts", filter: "right after a refusal" }],
  },
  {
    name: "broadcast copies pushed past a reader's queue (it is cut off for what others said)",
    file: "server/mail.ts",
    find: "if (other.hasRoom(frame.length)) other.sendFrame(frame);",
    replace: "other.sendFrame(frame);",
    tests: [{ file: "tests/attacks_test.ts", filter: "attack 1d" }],
  },
  {
    name: "a send answered before its commit (group commit on the server)",
    file: "server/mail.ts",
    find: "const routed = held.then((): Routed => {",
    replace: "held.catch(() => {}); const routed = Promise.resolve().then((): Routed => {",
    tests: [{ file: "tests/server_commit_test.ts", filter: "a commit that fails" }],
  },
  {
    name: "a failed batch answers only the first of a connection's sends (group commit)",
    file: "server/connection.ts",
    find: "if (answerable(error)) return this.notify(errorAnswer(error, ref));",
    replace: "if (answerable(error)) { this.notify(errorAnswer(error, ref)); throw error; }",
    tests: [{ file: "tests/server_commit_test.ts", filter: "a commit that fails" }],
  },
  {
    name: "people unseen for the registry's time to live kept for ever",
    file: "server/mail.ts",
    find: "if (this.#options.expireRegistry) await this.#expireRegistry(now);",
    replace: "",
    tests: [{ file: "tests/registry_expiry_test.ts", filter: "unseen past the time to live" }],
  },
  {
    name: "someone online dropped by the registry's time to live",
    file: "server/mail.ts",
    find: "if (!state || now - state.rememberedAt < REMEMBER_ONLINE_MS) continue;",
    replace: "continue;",
    tests: [{ file: "tests/registry_expiry_test.ts", filter: "unseen past the time to live" }],
  },
  {
    name: "a slow viewer buffered without bound (share_buffer_bytes)",
    file: "server/media/fanout.ts",
    find: "while (this.#retained > this.#options.maxBufferBytes && this.#chunks.length > 1) {",
    replace: "while (false) {",
    tests: [{ file: "tests/fanout_test.ts", filter: "detached past the buffer" }],
  },
  {
    name: "cache grows past its size (cache_max_bytes)",
    file: "server/media/part_cache.ts",
    find: "if (!expired && total <= this.#options.maxBytes) continue;",
    replace: "if (!expired) continue;",
    tests: [{ file: "tests/part_cache_test.ts", filter: "over maxBytes" }],
  },
  {
    name: "cache keeps parts past their age (cache_max_age_ms)",
    file: "server/media/part_cache.ts",
    find: "const expired = this.#options.now() - entry.usedMs > this.#options.maxAgeMs;",
    replace: "const expired = false;",
    tests: [{ file: "tests/part_cache_test.ts", filter: "unused for longer than maxAgeMs" }],
  },
  {
    name: "ignore list unbounded (1000 names)",
    file: "client/tui/ignore.ts",
    find: "if (!storage.isIgnored(name) && storage.ignored().length >= MAX_IGNORED) {",
    replace: "if (false) {",
    tests: [{ file: "tests/tui_state_test.ts", filter: "at most MAX_IGNORED" }],
  },
  {
    name: "ignore list unbounded in memory (1000 names)",
    file: "client/tui/ignore.ts",
    find: "if (!this.has(name) && this.entries.size >= MAX_IGNORED) {",
    replace: "if (false) {",
    tests: [{ file: "tests/tui_state_test.ts", filter: "at most MAX_IGNORED" }],
  },
  {
    name: "unread counts unbounded (100 people)",
    file: "client/tui/conversation.ts",
    find: "if (this.#unread.size > MAX_UNREAD_PEOPLE) {",
    replace: "if (false) {",
    tests: [{ file: "tests/tui_state_test.ts", filter: "at most MAX_UNREAD_PEOPLE" }],
  },
  {
    name: "input history unbounded (1000 lines)",
    file: "client/tui/history.ts",
    find: "i >= 0 && kept.length < options.limit;",
    replace: "i >= 0;",
    tests: [{ file: "tests/tui_history_test.ts", filter: "bounded in entries" }],
  },
  {
    name: "input history keeps overlong lines (4096 characters)",
    file: "client/tui/history.ts",
    find: "line.length <= options.maxLineLength &&",
    replace: "true &&",
    tests: [{ file: "tests/tui_history_test.ts", filter: "bounded in entries" }],
  },
  {
    name: "message text written to the input history file",
    file: "client/tui/input_history_file.ts",
    find: "return isPlainCommand(line);",
    replace: "return line.trim() !== '';",
    tests: [{ file: "tests/tui_state_test.ts", filter: "message text never written" }],
  },
  {
    name: "racing nodes hold past a recipient's bound (cluster mailbox)",
    file: "server/cluster/_mail_counts.ts",
    find: "else await this.#kv.update(key, next, current.revision);",
    replace: "else await this.#kv.put(key, next);",
    tests: [{ file: "tests/cluster_mailbox_test.ts", filter: "racing past" }],
  },
  {
    name: "one sender fills the cluster's mailbox (max_bytes_per_sender, cluster)",
    file: "server/cluster/mailbox.ts",
    find: "(sent) => checkSenderRoom(sent, size, this.#limits.maxBytesPerSender),",
    replace: "() => {},",
    tests: [{ file: "tests/cluster_mailbox_test.ts", filter: "one sender's held bytes" }],
  },
  {
    name: "cluster mail taken out stays counted against its sender and recipient",
    file: "server/cluster/mailbox.ts",
    find:
      "await Promise.all([...sums].map(([key, sum]) => this.#counts.take(key, sum.items, sum.bytes)));",
    replace: "void sums;",
    tests: [{ file: "tests/cluster_mailbox_test.ts", filter: "one sender's held bytes" }],
  },
  {
    name: "a cluster put reads every item its recipient holds",
    file: "server/cluster/_mail_counts.ts",
    find: 'const held = current?.operation === "PUT" ? countOf(current.value) : await initial();',
    replace: "const held = await initial();",
    tests: [{ file: "tests/cluster_mailbox_test.ts", filter: "same few requests" }],
  },
  {
    name: "every node receives every held envelope whole (cluster mailbox watch)",
    file: "server/cluster/mailbox.ts",
    find: "const prefix = `${this.#heldPrefix}.`;",
    replace: "const prefix = `${this.#prefix}.`;",
    tests: [{ file: "tests/cluster_mailbox_test.ts", filter: "without receiving its envelope" }],
  },
  {
    name: "a name taken twice across cluster nodes",
    file: "server/cluster/presence.ts",
    find: "revision = await this.#kv.create(key, value);",
    replace: "revision = await this.#kv.put(key, value);",
    tests: [{ file: "tests/cluster_presence_test.ts", filter: "exactly one wins" }],
  },
  {
    name: "a dead node's people listed for ever (presence_ttl_ms)",
    file: "server/cluster/presence.ts",
    find: "if (now - heard <= this.#options.ttlMs) continue;",
    replace: "continue;",
    tests: [{ file: "tests/cluster_presence_test.ts", filter: "a node that dies" }],
  },
  {
    // Commit 7d1db1a: the swap let a person back on another node meet 'Name "bob" is taken'
    // right after everyone saw bob leave.
    name: "a dead node's people told gone before their names are free",
    file: "server/cluster/presence.ts",
    find: "const stale = this.#drop(node);",
    replace: "const stale = this.#drop(node); for (const [key] of stale) this.#tellDropped(key);",
    tests: [{ file: "tests/cluster_presence_test.ts", filter: "before anyone is told" }],
  },
  {
    // Review finding 3 (the order of 7d1db1a kept them listed while their entries were deleted):
    // the watch's deletes told them as having left, never as their node gone.
    name: "a dead node's people told they left, not that their node is gone",
    file: "server/cluster/presence.ts",
    find: "const stale = this.#drop(node);",
    replace: "const stale = [...this.#people].filter(([, person]) => person.node === node);",
    tests: [{ file: "tests/cluster_presence_test.ts", filter: "a node that dies" }],
  },
  {
    name: "a worker transcodes a file other than the node's",
    file: "server/cluster/worker.ts",
    find: "if (info.size !== job.size) {",
    replace: "if (false) {",
    tests: [{ file: "tests/cluster_worker_test.ts", filter: "busy worker is offered nothing" }],
  },
  {
    // Two checks keep a full worker from taking a part (it leaves the queue group, and answers
    // busy to an offer that raced that): the break is one more slot than configured.
    name: "a full worker takes more parts (worker_slots)",
    file: "server/cluster/worker.ts",
    find: "this.#options = options;",
    replace: "this.#options = { ...options, slots: options.slots + 1 };",
    tests: [{ file: "tests/cluster_worker_test.ts", filter: "busy worker is offered nothing" }],
  },
  {
    name: "refused cluster credentials not named (cluster-auth)",
    file: "server/cluster/nats.ts",
    find: "if (/auth/i.test(detail)) {",
    replace: "if (false) {",
    tests: [{ file: "tests/cluster_presence_test.ts", filter: "wrong credentials" }],
  },
  {
    name: "cluster registry past max_registered",
    file: "server/cluster/directory.ts",
    find: "const over = Math.max(0, entries.length - this.#limits.maxRegistered + room);",
    replace: "const over = 0;",
    tests: [{ file: "tests/cluster_directory_test.ts", filter: "past max_registered" }],
  },
  {
    name: "cluster mail for a dropped or replaced key never ends",
    file: "server/cluster/node.ts",
    find: "endMail: (key, reason) => held.end(key, reason)",
    replace: "endMail: () => Promise.resolve()",
    tests: [{ file: "tests/cluster_server_test.ts", filter: "owner replaced ends" }],
  },
  {
    name: "failover never tries another address",
    file: "client/mod.ts",
    find: "? { ...rest.reconnect, address: () => ring.next() }",
    replace: "? { ...rest.reconnect, address: () => ring.current }",
    tests: [{ file: "tests/cluster_server_test.ts", filter: "cluster failover" }],
  },
  {
    name: "a changed server key passed for the next address",
    file: "client/failover.ts",
    find: "const passed = error instanceof ReelayError && TRY_NEXT.has(error.code);",
    replace: "const passed = error instanceof ReelayError;",
    tests: [{ file: "tests/failover_test.ts", filter: "changed server key" }],
  },
  {
    name: "a full node ends the first join instead of passing it to the next address",
    file: "client/failover.ts",
    find: '  "server-full",',
    replace: "",
    tests: [{ file: "tests/failover_test.ts", filter: "full server is passed" }],
  },
  {
    name: "a failing accept spins instead of pausing (any exception while serving)",
    file: "server/server.ts",
    find: "await settlesWithin(this.#closeWake.wait(), ACCEPT_RETRY_MS);",
    replace: "void 0;",
    tests: [{ file: "tests/server_bug_test.ts", filter: "failing accept" }],
  },
  // The secure channel's guarantees table (docs/security.md).
  {
    name: "the transcript skips the ephemeral key (Noise as specified)",
    file: "shared/channel/handshake_state.ts",
    find: "await this.#symmetric.mixHash(publicKey);",
    replace: "void publicKey;",
    tests: [{ file: "tests/channel_noise_test.ts", filter: "cacophony" }],
  },
  {
    name: "a record failing authentication dropped silently (flipped bit)",
    file: "shared/channel/transport.ts",
    find:
      'if (plains.some((plain) => plain === undefined)) this.#fail("a record failed authentication");',
    replace: "plains.splice(0, plains.length, ...plains.filter((plain) => plain !== undefined));",
    tests: [{ file: "tests/channel_tcp_test.ts", filter: "one flipped bit" }],
  },
  {
    name: "a record cut off by the end of the stream taken as a clean end",
    file: "shared/channel/transport.ts",
    find: 'if (this.#rawEnd > this.#rawStart) this.#fail("the stream ended inside a record");',
    replace: "void 0;",
    tests: [{ file: "tests/channel_tcp_test.ts", filter: "cut record" }],
  },
  {
    name: "a node ignores the cluster's server key (one server key per cluster)",
    file: "server/mod.ts",
    find: "return await ServerKey.loadOrCreate(`${config.server.state}/${SERVER_KEY_FILE}`);",
    replace:
      "return { ...(await ServerKey.loadOrCreate(`${config.server.state}/${SERVER_KEY_FILE}`)), key: await ServerKey.generate() };",
    tests: [{ file: "tests/cluster_server_test.ts", filter: "same server key" }],
  },
];
