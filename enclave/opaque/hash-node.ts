/**
 * Fast `HashPrimitives` on node:crypto (OpenSSL). Server side only: a browser client uses
 * `hash-noble.ts`. Produces the same bytes (checked by test/enclave/opaque/groups.test.ts).
 */
import { createHash, createHmac } from 'node:crypto';
import type { HashName, HashPrimitives } from './hash.ts';

export function nodeHash(name: HashName): HashPrimitives {
  const algo = name === 'SHA-256' ? 'sha256' : 'sha512';
  const outputLen = name === 'SHA-256' ? 32 : 64;
  const blockLen = name === 'SHA-256' ? 64 : 128;
  const view = (b: Buffer): Uint8Array => new Uint8Array(b.buffer, b.byteOffset, b.length);
  return {
    name,
    backend: 'node:crypto',
    outputLen,
    blockLen,
    hash(...parts) {
      const h = createHash(algo);
      for (const p of parts) h.update(p);
      return view(h.digest());
    },
    hmac(key, ...parts) {
      const m = createHmac(algo, key);
      for (const p of parts) m.update(p);
      return view(m.digest());
    },
  };
}
