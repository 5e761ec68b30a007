/**
 * Portable `HashPrimitives` on @noble/hashes (SHA-256, SHA-512, HMAC). Runs in a browser.
 */
import { sha256, sha512 } from '@noble/hashes/sha2.js';
import { hmac } from '@noble/hashes/hmac.js';
import type { HashName, HashPrimitives } from './hash.ts';

export function nobleHash(name: HashName): HashPrimitives {
  const fn = name === 'SHA-256' ? sha256 : sha512;
  return {
    name,
    backend: '@noble/hashes',
    outputLen: fn.outputLen,
    blockLen: fn.blockLen,
    hash(...parts) {
      const h = fn.create();
      for (const p of parts) h.update(p);
      return h.digest();
    },
    hmac(key, ...parts) {
      const m = hmac.create(fn, key);
      for (const p of parts) m.update(p);
      return m.digest();
    },
  };
}
