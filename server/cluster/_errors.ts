/**
 * Telling NATS and JetStream failures apart by their API error codes.
 *
 * @module
 */

/** JetStream's "wrong last sequence": an expected-revision write lost a race. */
export const JS_WRONG_LAST_SEQUENCE = 10071;
/** JetStream's "maximum bytes exceeded" under a discard-new limit. */
export const JS_MAXIMUM_BYTES = 10077;

/** The JetStream API error code of `error`, if it has one. */
export function apiCode(error: unknown): number | undefined {
  if (typeof error !== "object" || error === null) return undefined;
  const code = (error as { code?: unknown }).code;
  if (typeof code === "number") return code;
  const apiError = (error as { apiError?: () => { err_code?: number } }).apiError;
  return typeof apiError === "function" ? apiError.call(error)?.err_code : undefined;
}

/** Whether a write with an expected last sequence found another one there. */
export function isWrongLastSequence(error: unknown): boolean {
  return apiCode(error) === JS_WRONG_LAST_SEQUENCE ||
    (error instanceof Error && /wrong last sequence/i.test(error.message));
}
