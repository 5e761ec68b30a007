/**
 * The server's default suites (RFC 9807 §7 configurations):
 * - ristretto255-SHA512: the group on the machine's native libsodium through FFI when it loads
 *   (groups/sodium-native.ts), else on libsodium's WebAssembly build, with one line on stderr that
 *   says why; SHA-512 on the WebAssembly build (hash-sodium.ts: on OPAQUE's short inputs it beats
 *   node:crypto's per-call cost);
 * - P256-SHA256 on node:crypto (OpenSSL) with node:crypto SHA-256.
 * Same bytes as `suites-portable.ts` (checked by test/enclave/opaque/groups.test.ts), several
 * times faster. Node only; the first call waits for libsodium's WebAssembly to load.
 */
import { loadNativeSodium } from './groups/sodium-native.ts';
import { createSodiumRistretto255 } from './groups/sodium-ristretto255.ts';
import { NodeP256 } from './groups/node-p256.ts';
import { nodeHash } from './hash-node.ts';
import { createSodiumSha512 } from './hash-sodium.ts';
import type { Suite, SuiteId } from './suite.ts';
import { makeSuite } from './suite.ts';

const cache = new Map<SuiteId, Promise<Suite>>();
let noticed = false;

/** One line per process on stderr when native libsodium does not load (the WebAssembly build serves instead). */
function fallbackNotice(reason: string): void {
  if (noticed) return;
  noticed = true;
  console.warn(`bkv: ristretto255 on libsodium WebAssembly (native libsodium: ${reason})`);
}

async function build(id: SuiteId): Promise<Suite> {
  if (id === 'ristretto255-SHA512') {
    const h = await createSodiumSha512();
    const native = await loadNativeSodium();
    if (!native.engine) fallbackNotice(native.reason);
    return makeSuite(id, await createSodiumRistretto255(h, native.engine ? { native: native.engine } : {}), h);
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
