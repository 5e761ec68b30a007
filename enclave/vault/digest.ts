/**
 * SHA-256 in one call: the vault hashes every record id (partition and index key) and every
 * stored and sealed blob (index leaves). For node:crypto's SHA-256, `crypto.hash` (Node >= 20.12)
 * makes no Hash object for each; other backends (the enclave's libsodium SHA-256, which makes no
 * native object at all) and an older Node go through the HashPrimitives given. The bytes are the same.
 */
import * as nodeCrypto from 'node:crypto';
import type { HashPrimitives } from '../opaque/hash.ts';

type OneShot = (algorithm: string, data: Uint8Array, outputEncoding: 'buffer') => Buffer;
const oneShot = (nodeCrypto as unknown as { hash?: OneShot }).hash;

/** SHA-256(data) when `h` is SHA-256; h.hash(data) otherwise. */
export function digestOf(h: HashPrimitives, data: Uint8Array): Uint8Array {
  if (oneShot === undefined || h.name !== 'SHA-256' || h.backend !== 'node:crypto') return h.hash(data);
  const b = oneShot('sha256', data, 'buffer');
  return new Uint8Array(b.buffer, b.byteOffset, b.length);
}
