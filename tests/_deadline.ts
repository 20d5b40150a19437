/**
 * A deadline for any awaited step of a test, so a test that would hang fails with a message
 * saying what it was waiting for.
 *
 * @module
 */

/** Resolves as `promise` does, or rejects after `ms` naming `what`; leaves no timer behind. */
export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`Timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}
