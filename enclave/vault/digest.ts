/**
 * SHA-256 in one call where node:crypto has `crypto.hash` (Node >= 20.12): the vault hashes every
 * record id (partition and index key) and every stored and sealed blob (index leaves), and a
 * one-shot digest makes no Hash object for each. Other backends, or an older Node, go through
 * the HashPrimitives given; the bytes are the same.
 */
import * as nodeCrypto from 'node:crypto';
import type { HashPrimitives } from '../opaque/hash.ts';

type OneShot = (algorithm: string, data: Uint8Array, outputEncoding: 'buffer') => Buffer;
const oneShot = (nodeCrypto as unknown as { hash?: OneShot }).hash;

/** SHA-256(data) when `h` is SHA-256; h.hash(data) otherwise. */
export function digestOf(h: HashPrimitives, data: Uint8Array): Uint8Array {
  if (oneShot === undefined || h.name !== 'SHA-256') return h.hash(data);
  const b = oneShot('sha256', data, 'buffer');
  return new Uint8Array(b.buffer, b.byteOffset, b.length);
}
