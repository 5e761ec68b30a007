/**
 * Every (suite, backend) combination the tests run against. Each backend must pass the same
 * vectors and properties; add a backend here and every parameterised test picks it up.
 */
import type { Suite, SuiteId } from '../../enclave/opaque/suite.ts';
import { SUITE_IDS, makeSuite } from '../../enclave/opaque/suite.ts';
import { fastSuite } from '../../enclave/opaque/suites-fast.ts';
import { portableSuite } from '../../enclave/opaque/suites-portable.ts';
import { createSodiumRistretto255 } from '../../enclave/opaque/groups/sodium-ristretto255.ts';
import { createSodiumSha512 } from '../../enclave/opaque/hash-sodium.ts';
import { loadNativeShaOn } from '../../enclave/opaque/hash-native.ts';
import { loadNativeSodium } from '../../enclave/opaque/groups/sodium-native.ts';

export interface NamedSuite {
  name: string;
  suite: Suite;
}

export async function allSuites(): Promise<NamedSuite[]> {
  const out: NamedSuite[] = [];
  for (const id of SUITE_IDS) out.push({ name: `${id}/noble`, suite: portableSuite(id) });
  for (const id of SUITE_IDS) out.push({ name: `${id}/fast`, suite: await fastSuite(id) });
  // The fast ristretto255 suite runs on native libsodium where it loads, its SHA-512 on Node's
  // OpenSSL (hash-native.ts): the fallbacks a machine can end up with are tested on their own too.
  // The WebAssembly build whole (neither native library),
  const fast = out.find((s) => s.name === 'ristretto255-SHA512/fast')!;
  if (fast.suite.group.backend !== 'sodium-wasm') {
    const h = await createSodiumSha512();
    out.push({ name: 'ristretto255-SHA512/wasm', suite: makeSuite('ristretto255-SHA512', await createSodiumRistretto255(h), h) });
  }
  // the native group with native libsodium's SHA-512 (BKV_OPENSSL_NATIVE=0),
  const native = await loadNativeSodium();
  const sodiumHash = (await loadNativeShaOn('libsodium', 512)).sha;
  if (native.engine && sodiumHash && fast.suite.hash.backend !== sodiumHash.backend) {
    out.push({ name: 'ristretto255-SHA512/native+sodium-sha512', suite: makeSuite('ristretto255-SHA512', await createSodiumRistretto255(sodiumHash, { native: native.engine }), sodiumHash) });
  }
  // and the WebAssembly group with OpenSSL's SHA-512 (native libsodium missing).
  const opensslHash = (await loadNativeShaOn('openssl', 512)).sha;
  if (opensslHash) out.push({ name: 'ristretto255-SHA512/wasm+openssl-sha512', suite: makeSuite('ristretto255-SHA512', await createSodiumRistretto255(opensslHash), opensslHash) });
  return out;
}

export async function suitesFor(id: SuiteId): Promise<NamedSuite[]> {
  return (await allSuites()).filter((s) => s.suite.id === id);
}
