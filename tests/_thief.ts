/**
 * What a thief does with a client store's file and without the identity: reads the history
 * rows' ciphertexts straight from SQLite (to search the file's bytes for them).
 *
 * @module
 */

import { DatabaseSync } from "node:sqlite";
import { nameKey } from "../shared/names.ts";

/** The ciphertexts of the history rows (with `peer` only, when given), read from `file`. */
export function historyCiphertexts(file: string, peer?: string): Uint8Array[] {
  const db = new DatabaseSync(file, { readOnly: true });
  try {
    const rows = peer === undefined
      ? db.prepare("SELECT data FROM history").all()
      : db.prepare("SELECT data FROM history WHERE name_key = ?").all(nameKey(peer));
    return rows.map((row) => new Uint8Array(row.data as Uint8Array));
  } finally {
    db.close();
  }
}

/** The ids of the one-time prekeys (X25519 and ML-KEM) whose private halves `file` holds. */
export function heldOneTimePrekeys(file: string): number[] {
  const db = new DatabaseSync(file, { readOnly: true });
  try {
    const row = db.prepare("SELECT value FROM meta WHERE key = 'prekeys'").get();
    if (!row) return [];
    const value = row.value instanceof Uint8Array
      ? new TextDecoder().decode(row.value)
      : String(row.value);
    const stored = JSON.parse(value) as { oneTime: { id: number }[]; pqOneTime: { id: number }[] };
    return [...stored.oneTime, ...stored.pqOneTime].map((key) => key.id);
  } finally {
    db.close();
  }
}
