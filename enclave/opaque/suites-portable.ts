/**
 * Suites on @noble/curves and @noble/hashes only: no WebAssembly, no node: imports. The browser
 * client and the reference for every other backend.
 */
import { NobleP256 } from './groups/noble-p256.ts';
import { NobleRistretto255 } from './groups/noble-ristretto255.ts';
import { nobleHash } from './hash-noble.ts';
import type { Suite, SuiteId } from './suite.ts';
import { makeSuite } from './suite.ts';

const cache = new Map<SuiteId, Suite>();

export function portableSuite(id: SuiteId): Suite {
  let s = cache.get(id);
  if (!s) {
    if (id === 'ristretto255-SHA512') {
      const h = nobleHash('SHA-512');
      s = makeSuite(id, new NobleRistretto255(h), h);
    } else {
      const h = nobleHash('SHA-256');
      s = makeSuite(id, new NobleP256(h), h);
    }
    cache.set(id, s);
  }
  return s;
}
