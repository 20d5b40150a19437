/**
 * The client's copy of the directory: who is online, each person's verified announcement, the
 * key pinned for them (kept per server in the {@linkcode ClientStore}), the epochs seen, and
 * what `/verify` and `/trust` decided. The one place a key is pinned, checked and trusted.
 *
 * A key is pinned when we interact with its holder (send to them, take a message from them,
 * `/verify` them), not when the server merely shows them online: a flood of names costs no
 * writes. States: `new` (not verified: first seen, or pinned on first use), `verified` (`/trust`
 * after `/verify`), `changed` (differs from the pin: nothing goes to or comes from them until
 * `/verify` and `/trust`).
 *
 * @module
 */

import {
  fingerprint,
  fingerprintHash,
  type Identity,
  safetyNumber,
  verifyAnnouncement,
} from "../shared/crypto/mod.ts";
import { messageOf, ReelayError } from "../shared/errors.ts";
import { nameKey, sameName } from "../shared/names.ts";
import type { Announcement } from "../shared/protocol/mod.ts";
import type { ClientEvent, PeerView } from "./events.ts";
import type { ClientStore } from "./store/mod.ts";

/**
 * The most people the client keeps in its copy of the directory, whatever the server sends
 * (a server's own `max_clients` is 1000 by default): a hostile server cannot grow it without
 * bound. Further announcements are ignored with `too-many-peers`.
 */
export const MAX_PEERS = 20_000;
/** Epochs remembered per name (to refuse a replayed announcement). */
const MAX_EPOCHS_PER_NAME = 64;

/** A person online, as verified and checked against the pins. */
export interface Peer {
  /** Their verified announcement for their current connection. */
  announcement: Announcement;
  /** The short fingerprint of their announced keys. */
  fingerprint: string;
  /** The full fingerprint (64 hex digits) of their announced keys. */
  fullFingerprint: string;
  /** How their keys compare with the pinned ones. */
  trust: PeerView["trust"];
}

/** Who we are, for the checks that involve ourselves. */
export interface Self {
  name: string;
  identity: Identity;
}

/**
 * The directory copy of one session. Every change is reported through `emit`.
 *
 * @example
 * ```ts ignore
 * const peers = new Peers(self, store, (event) => console.log(event));
 * await peers.add(announcement, true); // "joined", and "key-changed" when the key differs
 * const bob = peers.sendable("bob");
 * ```
 */
export class Peers {
  readonly #self: Self;
  readonly #known: ClientStore;
  readonly #emit: (event: ClientEvent) => void;
  readonly #peers = new Map<string, Peer>();
  readonly #epochsSeen = new Map<string, Set<string>>();
  /** The fingerprint `/verify` showed for each person, which `/trust` may then accept. */
  readonly #verified = new Map<string, string>();

  /** A directory copy for `self`, pinning through `known`. */
  constructor(self: Self, known: ClientStore, emit: (event: ClientEvent) => void) {
    this.#self = self;
    this.#known = known;
    this.#emit = emit;
  }

  /** How many other people are online. */
  get size(): number {
    return this.#peers.size;
  }

  /** The people online, as shown to the person. */
  who(): PeerView[] {
    return [...this.#peers.values()].map((peer) => ({
      name: peer.announcement.name,
      fingerprint: peer.fingerprint,
      trust: peer.trust,
    }));
  }

  /** The person called `name` (any case, but not a lookalike: `b0b` is not `bob`), if online. */
  find(name: string): Peer | undefined {
    const peer = this.#peers.get(nameKey(name));
    return peer && sameName(peer.announcement.name, name) ? peer : undefined;
  }

  /**
   * Verifies an announcement from the server and adds (or updates) the person, checking their
   * keys against the pin. Emits `joined` when `announce` is set, `key-changed` when the keys
   * differ from the pinned ones, and `error` for an announcement that is refused.
   */
  async add(value: Announcement, announce: boolean): Promise<void> {
    let announcement: Announcement;
    try {
      announcement = await verifyAnnouncement(value);
    } catch (error) {
      return this.#emit({ event: "error", code: "bad-announcement", message: messageOf(error) });
    }
    const refused = this.#refuse(announcement);
    if (refused) return this.#emit({ event: "error", ...refused });
    const print = await fingerprint(announcement.keys);
    const fullFingerprint = await fingerprintHash(announcement.keys);
    const trust = this.#stateOf(announcement.name, fullFingerprint);
    const peer: Peer = { announcement, fingerprint: print, fullFingerprint, trust };
    this.#peers.set(nameKey(announcement.name), peer);
    const name = announcement.name;
    if (announce) this.#emit({ event: "joined", name, fingerprint: print, trust });
    if (trust === "changed") {
      const pinned = this.#known.pinned(name);
      this.#emit({
        event: "key-changed",
        name,
        fingerprint: print,
        pinnedFingerprint: pinned ? await fingerprint(pinned.keys) : "unknown",
      });
    }
  }

  /** Pins the keys `peer` shows, if nothing is pinned for the name yet (first interaction). */
  interact(peer: Peer): void {
    if (this.#known.pinned(peer.announcement.name)) return;
    this.#known.pin(peer.announcement.name, peer.announcement.keys, peer.fullFingerprint);
  }

  #stateOf(name: string, fullFingerprint: string): PeerView["trust"] {
    const pinned = this.#known.pinned(name);
    if (!pinned) return "new";
    return pinned.fingerprint === fullFingerprint ? pinned.state : "changed";
  }

  /** The person left: emits `left`. */
  remove(name: string): void {
    const peer = this.find(name);
    if (!peer) return;
    this.#peers.delete(nameKey(name));
    this.#emit({ event: "left", name: peer.announcement.name });
  }

  /** The person called `name`; throws `self` or `unknown-recipient`. */
  require(name: string): Peer {
    if (nameKey(name) === nameKey(this.#self.name)) {
      throw new ReelayError("self", `${JSON.stringify(name)} is you: name someone else`);
    }
    const peer = this.find(name);
    if (!peer) {
      throw new ReelayError(
        "unknown-recipient",
        `Nobody called ${JSON.stringify(name)} is online (see /who)`,
      );
    }
    return peer;
  }

  /** The person called `name`, if messages may go to them; throws `key-changed` otherwise. */
  sendable(name: string): Peer {
    const peer = this.require(name);
    const shown = peer.announcement.name;
    if (peer.trust === "changed") {
      throw new ReelayError(
        "key-changed",
        `Key of ${JSON.stringify(shown)} changed: compare /verify ${shown} ` +
          `with them, then /trust ${shown} to send again`,
      );
    }
    return peer;
  }

  /** The 60-digit safety number both people compare out of band, and both fingerprints. */
  async verify(
    name: string,
  ): Promise<{ code: string; fingerprint: string; yourFingerprint: string }> {
    const peer = this.require(name);
    const { identity } = this.#self;
    const { announcement } = peer;
    const code = await safetyNumber(
      this.#self.name,
      identity.public,
      announcement.name,
      announcement.keys,
    );
    this.#verified.set(nameKey(name), peer.fingerprint);
    if (peer.trust !== "changed") this.interact(peer);
    return { code, fingerprint: peer.fingerprint, yourFingerprint: identity.fingerprint };
  }

  /**
   * Accepts the key `name` shows, replacing the pinned one: only the key whose code `/verify`
   * showed, so a key swapped in between the two commands is never the one trusted. Emits
   * `trusted`.
   */
  async trust(name: string): Promise<void> {
    const peer = this.require(name);
    const verified = this.#verified.get(nameKey(name));
    if (verified !== peer.fingerprint) {
      throw new ReelayError(
        "verify-first",
        verified === undefined
          ? `Run /verify ${name} and compare the code with them before /trust ${name}`
          : `The key of ${JSON.stringify(name)} changed since /verify: run /verify ${name} again`,
      );
    }
    this.#known.pin(
      peer.announcement.name,
      peer.announcement.keys,
      peer.fullFingerprint,
      "verified",
    );
    await this.#known.flush();
    peer.trust = "verified";
    this.#emit({ event: "trusted", name: peer.announcement.name, fingerprint: peer.fingerprint });
  }

  /**
   * Why a verified announcement must still be ignored: it claims our own name, or it brings back
   * an epoch this person already replaced (a server replaying an old connection to replay its
   * sessions). Epochs are remembered for the whole connection.
   */
  #refuse(announcement: Announcement): { code: string; message: string } | undefined {
    const key = nameKey(announcement.name);
    const shown = JSON.stringify(announcement.name);
    if (!this.#peers.has(key) && this.#peers.size >= MAX_PEERS) {
      return {
        code: "too-many-peers",
        message: `The server announced more than ${MAX_PEERS} people online: ${shown} ignored`,
      };
    }
    if (key === nameKey(this.#self.name)) {
      return {
        code: "impersonation",
        message: `The server announced someone else as you (${shown}): ignored`,
      };
    }
    const seen = this.#epochsSeen.get(key) ?? new Set<string>();
    const current = this.find(announcement.name)?.announcement.epoch;
    if (seen.has(announcement.epoch) && current !== announcement.epoch) {
      return {
        code: "replayed-announcement",
        message: `An old announcement of ${shown} was replayed: ignored`,
      };
    }
    seen.add(announcement.epoch);
    // Bounded whatever a server sends: the oldest epochs of a name, and the names least
    // recently announced, are forgotten first (Sets and Maps keep insertion order).
    if (seen.size > MAX_EPOCHS_PER_NAME) seen.delete(seen.values().next().value!);
    this.#epochsSeen.delete(key);
    this.#epochsSeen.set(key, seen);
    if (this.#epochsSeen.size > 2 * MAX_PEERS) {
      this.#epochsSeen.delete(this.#epochsSeen.keys().next().value!);
    }
    return undefined;
  }
}
