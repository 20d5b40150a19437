/**
 * Which client store a connection uses: the one of the server's **key**, opened only after the
 * handshake has authenticated that key (`server_trust.ts`). One person reaching one server, or a
 * cluster whose nodes share one server key, through two addresses therefore has one set of
 * prekeys and one set of conversations, while the pins of server keys stay per address
 * (`known_servers.json`, like ssh's `known_hosts`).
 *
 * Stores from before were kept per address (`HOME/servers/<address>/client.db`). On the first
 * connection to that address whose key matched the key pinned for it, its folder is moved to
 * the key's folder, unless the key already has a store (two stores cannot be merged, so the
 * older one is left where it was). After an accepted key change the old store belongs to the old
 * key and is left alone.
 *
 * @module
 */

import { posix } from "node:path";
import { fromBase64, toHex } from "../shared/bytes.ts";
import { messageOf, ReelayError } from "../shared/errors.ts";
import { exists } from "../shared/files.ts";
import type { ServerKeyStatus } from "./server_trust.ts";
import { ClientStore, type ClientStoreOptions, serverFolderName } from "./store/mod.ts";

/** A server whose key the handshake authenticated. */
export interface AuthenticatedServer {
  /** `host:port` as dialled. */
  address: string;
  /** The key's fingerprint (`SHA256:` and base64, as `reelay server --fingerprint` shows it). */
  fingerprint: string;
  /** How the key compared with the pin for `address`. */
  keyStatus: ServerKeyStatus;
}

/**
 * The folder name of a server key's store: `sha256-` and the key hash in hex.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { serverStoreId } from "./server_store.ts";
 * const id = serverStoreId("SHA256:W5vGJRkl3jm2XhKQRXhM6Ujyr1YzpfedUoJncoWIrBU");
 * assert.match(id, /^sha256-[0-9a-f]{64}$/);
 * assert.throws(() => serverStoreId("127.0.0.1:9000"), RangeError);
 * ```
 */
export function serverStoreId(fingerprint: string): string {
  const hash = /^SHA256:([A-Za-z0-9+/]{43})$/.exec(fingerprint);
  const bytes = hash && fromBase64(`${hash[1]}=`);
  if (!bytes || bytes.length !== 32) {
    throw new RangeError(`Server fingerprint "${fingerprint}" is not SHA256: and 43 base64 digits`);
  }
  return `sha256-${toHex(bytes)}`;
}

/**
 * Opens the store of `server`'s key under `home`, first moving the address's store from before
 * to it when the key is the one pinned for that address (see the module header).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Identity } from "../shared/crypto/mod.ts";
 * import { openServerStore, serverStoreId } from "./server_store.ts";
 * const home = await Deno.makeTempDir();
 * const identity = await Identity.generate();
 * const fingerprint = "SHA256:W5vGJRkl3jm2XhKQRXhM6Ujyr1YzpfedUoJncoWIrBU";
 * const server = { address: "10.0.0.1:9000", fingerprint, keyStatus: "pinned" as const };
 * const store = await openServerStore({ home, identity, server });
 * assert.ok(store.file.includes(`/servers/${serverStoreId(fingerprint)}/`));
 * store.close();
 * await Deno.remove(home, { recursive: true });
 * ```
 */
export async function openServerStore(
  options: Omit<ClientStoreOptions, "server"> & { server: AuthenticatedServer },
): Promise<ClientStore> {
  const { server, ...rest } = options;
  const id = serverStoreId(server.fingerprint);
  if (server.keyStatus === "pinned") await adoptAddressStore(rest.home, server.address, id);
  return await ClientStore.open({ ...rest, server: id });
}

/** Moves `HOME/servers/<address>` to `HOME/servers/<id>` when only the first exists. */
async function adoptAddressStore(home: string, address: string, id: string): Promise<void> {
  const from = posix.dirname(ClientStore.path(home, serverFolderName(address)));
  const to = posix.dirname(ClientStore.path(home, id));
  if (!await exists(from) || await exists(to)) return;
  try {
    await Deno.rename(from, to);
  } catch (error) {
    // Another client of this home got there first: the key's store is the one to open.
    if (await exists(to)) return;
    throw new ReelayError(
      "client-store-unusable",
      `Cannot move the client store "${from}" to "${to}": ${messageOf(error)}`,
      { cause: error },
    );
  }
}
