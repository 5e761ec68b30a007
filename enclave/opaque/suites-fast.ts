/**
 * The server's default suites (RFC 9807 §7 configurations): ristretto255-SHA512 on libsodium
 * (WebAssembly) for both the group and SHA-512 (hash-sodium.ts: on OPAQUE's short inputs it beats
 * node:crypto's per-call cost), and P256-SHA256 on node:crypto (OpenSSL) with node:crypto
 * SHA-256. Same bytes as `suites-portable.ts` (checked by test/enclave/opaque/groups.test.ts), several times faster.
 *
 * Node only (node:crypto); the first call waits for libsodium's WebAssembly to load.
 */
import { createSodiumRistretto255 } from './groups/sodium-ristretto255.ts';
import { NodeP256 } from './groups/node-p256.ts';
import { nodeHash } from './hash-node.ts';
import { createSodiumSha512 } from './hash-sodium.ts';
import type { Suite, SuiteId } from './suite.ts';
import { makeSuite } from './suite.ts';

const cache = new Map<SuiteId, Promise<Suite>>();

async function build(id: SuiteId): Promise<Suite> {
  if (id === 'ristretto255-SHA512') {
    const h = await createSodiumSha512();
    return makeSuite(id, await createSodiumRistretto255(h), h);
  }
  const h = nodeHash('SHA-256');
  return makeSuite(id, new NodeP256(h), h);
}

export async function fastSuite(id: SuiteId): Promise<Suite> {
  let p = cache.get(id);
  if (!p) {
    p = build(id);
    cache.set(id, p);
    // A failed build is not cached: the next call tries again.
    p.catch(() => cache.delete(id));
  }
  return p;
}
