/**
 * What the mailbox, the prekeys and the registry of one SQLite store share: the connection,
 * the bounds and the clock.
 *
 * @module
 */

import { checkTime } from "./_check.ts";
import type { Db } from "./_db.ts";
import type { StoreLimits } from "./mod.ts";

/**
 * The base of each part of the SQLite store.
 *
 * @example
 * ```ts ignore
 * class SqliteThing extends SqlitePart {}
 * new SqliteThing(db, DEFAULT_STORE_LIMITS, Date.now);
 * ```
 */
export abstract class SqlitePart {
  /** The store's one connection. */
  protected readonly db: Db;
  /** The bounds, every default filled in. */
  protected readonly limits: StoreLimits;
  readonly #clock: () => number;

  /** Serves from `db` with these bounds and clock. */
  constructor(db: Db, limits: StoreLimits, clock: () => number) {
    this.db = db;
    this.limits = limits;
    this.#clock = clock;
  }

  /** The store's clock, checked: milliseconds since the epoch. */
  protected now(): number {
    return checkTime(this.#clock(), "Clock");
  }
}
