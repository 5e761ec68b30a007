/**
 * The server's default suites (RFC 9807 §7 configurations):
 * - ristretto255-SHA512: the group on the machine's native libsodium through FFI when it loads
 *   (groups/sodium-native.ts), SHA-512 on Node's own OpenSSL or native libsodium through FFI
 *   (hash-native.ts); each on libsodium's WebAssembly build where its native code does not load
 *   (hash-sodium.ts: on OPAQUE's short inputs it beats node:crypto's per-call cost), with one line
 *   on stderr that says why;
 * - P256-SHA256 on node:crypto (OpenSSL) with node:crypto SHA-256.
 * Same bytes as `suites-portable.ts` (checked by test/enclave/opaque/groups.test.ts), several
 * times faster. Node only; the first call waits for libsodium's WebAssembly to load.
 */
import { loadNativeSodium } from './groups/sodium-native.ts';
import { createSodiumRistretto255 } from './groups/sodium-ristretto255.ts';
import { NodeP256 } from './groups/node-p256.ts';
import { nodeHash } from './hash-node.ts';
import { loadNativeSha512 } from './hash-native.ts';
import { createSodiumSha512 } from './hash-sodium.ts';
import type { Suite, SuiteId } from './suite.ts';
import { makeSuite } from './suite.ts';

const cache = new Map<SuiteId, Promise<Suite>>();
const noticed = new Set<string>();

/** One line per process on stderr for each of the group and the hash that runs on libsodium's WebAssembly build, and why. */
function fallbackNotice(what: 'ristretto255' | 'SHA-512', reason: string): void {
  if (noticed.has(what)) return;
  noticed.add(what);
  console.warn(`bkv: ${what} on libsodium WebAssembly (native ${what === 'SHA-512' ? 'hashing' : 'libsodium'}: ${reason})`);
}

async function build(id: SuiteId): Promise<Suite> {
  if (id === 'ristretto255-SHA512') {
    const native = await loadNativeSodium();
    if (!native.engine) fallbackNotice('ristretto255', native.reason);
    const nativeHash = await loadNativeSha512();
    if (!nativeHash.sha512) fallbackNotice('SHA-512', nativeHash.reason);
    const h = nativeHash.sha512 ?? (await createSodiumSha512());
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
