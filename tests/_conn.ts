/**
 * Connection helpers for the test taps and proxies: a connection that forwards everything to
 * another one (the base of the taps that change only part of a server's connection: when its
 * writes go, what its frames say), and a close for connections the other side may have ended.
 *
 * @module
 */

/**
 * Closes `conn`, ignoring that it is closed already (a peer or a relay's other task got there
 * first).
 *
 * @example
 * ```ts ignore
 * for (const conn of conns) closeQuietly(conn);
 * ```
 */
export function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // Already closed.
  }
}

/**
 * Forwards every member of `Deno.Conn` to `inner`; a subclass overrides only what it changes.
 * The streams are the inner connection's own, so they bypass an overridden `read` or `write`.
 *
 * @example
 * ```ts ignore
 * class CountingConn extends DelegatingConn {
 *   written = 0;
 *   override write(p: Uint8Array): Promise<number> {
 *     this.written += p.length;
 *     return super.write(p);
 *   }
 * }
 * ```
 */
export class DelegatingConn implements Deno.Conn {
  /** The connection everything is forwarded to. */
  protected readonly inner: Deno.Conn;

  constructor(inner: Deno.Conn) {
    this.inner = inner;
  }

  get remoteAddr(): Deno.Addr {
    return this.inner.remoteAddr;
  }

  get localAddr(): Deno.Addr {
    return this.inner.localAddr;
  }

  get readable(): ReadableStream<Uint8Array<ArrayBuffer>> {
    return this.inner.readable;
  }

  get writable(): WritableStream<Uint8Array<ArrayBufferLike>> {
    return this.inner.writable;
  }

  read(p: Uint8Array): Promise<number | null> {
    return this.inner.read(p);
  }

  write(p: Uint8Array): Promise<number> {
    return this.inner.write(p);
  }

  close(): void {
    this.inner.close();
  }

  closeWrite(): Promise<void> {
    return this.inner.closeWrite();
  }

  ref(): void {
    this.inner.ref();
  }

  unref(): void {
    this.inner.unref();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
