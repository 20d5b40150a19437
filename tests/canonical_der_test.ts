import assert from "node:assert/strict";
import { ReelayError } from "../shared/errors.ts";
import {
  fingerprintHash,
  Identity,
  parsePublicIdentity,
  safetyNumberHalf,
} from "../shared/crypto/mod.ts";

const me = await Identity.generate();

/** DER length octets (short form, or 0x81/0x82 long form). */
function derLength(length: number): number[] {
  if (length < 0x80) return [length];
  if (length < 0x100) return [0x81, length];
  return [0x82, length >> 8, length & 0xff];
}

function tlv(tag: number, body: Uint8Array): Uint8Array<ArrayBuffer> {
  return Uint8Array.from([tag, ...derLength(body.length), ...body]);
}

/** Reads the tag-length-value at `offset`: returns where its body starts and ends. */
function element(bytes: Uint8Array, offset: number): { start: number; end: number } {
  let length = bytes[offset + 1];
  let header = 2;
  if (length & 0x80) {
    const count = length & 0x7f;
    length = 0;
    for (let i = 0; i < count; i++) length = length * 256 + bytes[offset + 2 + i];
    header += count;
  }
  return { start: offset + header, end: offset + header + length };
}

/**
 * The same RSA key in another encoding: the AlgorithmIdentifier without its NULL parameters,
 * which Deno's SPKI parser accepts.
 */
function withoutNullParameters(spki: Uint8Array): Uint8Array<ArrayBuffer> {
  const outer = element(spki, 0);
  const algorithm = element(spki, outer.start);
  const oid = spki.subarray(algorithm.start, element(spki, algorithm.start).end);
  const rest = spki.subarray(algorithm.end, outer.end);
  return tlv(0x30, Uint8Array.from([...tlv(0x30, oid), ...rest]));
}

Deno.test("a second DER encoding of one RSA key is refused, so one key has one fingerprint", async () => {
  const signing = Uint8Array.fromBase64(me.public.signingKey);
  const variant = withoutNullParameters(signing);
  assert.notEqual(variant.toHex(), signing.toHex());
  // The platform parser takes it as the very same key: that is the problem being fixed.
  const params = { name: "RSA-PSS", hash: "SHA-256" };
  const parsed = await crypto.subtle.importKey("spki", variant, params, true, ["verify"]);
  const reexported = new Uint8Array(await crypto.subtle.exportKey("spki", parsed));
  assert.equal(reexported.toHex(), signing.toHex());
  const twin = { ...me.public, signingKey: variant.toBase64() };
  assert.notEqual(await fingerprintHash(twin), await fingerprintHash(me.public));
  for (const attempt of [() => parsePublicIdentity(twin), () => safetyNumberHalf("me", twin)]) {
    await assert.rejects(attempt(), (error: unknown) => {
      assert.ok(error instanceof ReelayError);
      assert.equal(error.code, "bad-key");
      assert.match(error.message, /canonical DER/);
      return true;
    });
  }
  assert.deepEqual(await parsePublicIdentity(me.public), me.public);
});
