/**
 * What the cluster's KV buckets share: the compare-and-set loop and fingerprints as key tokens.
 *
 * @module
 */

import { ReelayError } from "../../shared/errors.ts";
import { checkFingerprint } from "../store/checks.ts";
import { isWrongLastSequence } from "./_errors.ts";

/** How many times a compare-and-set is retried after losing a race. */
const CAS_ATTEMPTS = 32;

/** Runs `step` (a read, then a compare-and-set write) until it does not lose a race. */
export async function withCas<T>(what: string, step: () => Promise<T>): Promise<T> {
  for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
    try {
      return await step();
    } catch (error) {
      if (!isWrongLastSequence(error)) throw error;
    }
  }
  throw new ReelayError("store-busy", `${what} lost ${CAS_ATTEMPTS} races in a row: try again`);
}

/** A fingerprint as a KV key token (":" is not allowed in keys). */
export function token(fingerprint: string): string {
  return checkFingerprint(fingerprint).replaceAll(":", "");
}
