/**
 * ristretto255 on native libsodium (enclave/opaque/groups/sodium-native.ts): the server default
 * where the library loads, the WebAssembly build with one line on stderr where it does not. The
 * vectors, the agreement with @noble/curves and the malformed-element cases run on it through
 * test/helpers/suites.ts (the fast suite); this file checks loading, the fallback and the wiping.
 * Debian 12's base image has libsodium23, so under CI=true a missing library fails.
 */
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadNativeSodium } from '../../../enclave/opaque/groups/sodium-native.ts';
import { fastSuite } from '../../../enclave/opaque/suites-fast.ts';

const root = resolve(import.meta.dirname, '../../..');
/** The suite's SHA-512 where Node's OpenSSL serves it (enclave/opaque/hash-native.ts). */
const OPENSSL = `node OpenSSL ${process.versions.openssl}`;
const native = await loadNativeSodium();
const ci = process.env.CI === 'true';
if (!native.engine && !ci) console.log(`native libsodium tests skipped: ${native.reason}`);

/** The fast ristretto255 suite's group and hash backends and stderr of a fresh process with `env` added. */
function backendIn(env: Record<string, string>): { backend: string; hash: string; stderr: string } {
  const script = `const { fastSuite } = await import(${JSON.stringify(resolve(root, 'enclave/opaque/suites-fast.ts'))});
    const s = await fastSuite('ristretto255-SHA512');
    await fastSuite('ristretto255-SHA512');
    process.stdout.write(s.group.backend + ' ' + s.hash.backend);`;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: root, env: { ...process.env, ...env }, encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  const [backend, ...hash] = r.stdout.split(' ');
  return { backend: backend!, hash: hash.join(' '), stderr: r.stderr };
}

describe('native libsodium', () => {
  it.skipIf(!native.engine && !ci)('loads, and the fast suite uses it', async () => {
    expect(native.engine, native.engine ? '' : native.reason).not.toBeNull();
    const s = await fastSuite('ristretto255-SHA512');
    expect([s.group.backend, s.hash.backend]).toEqual(['sodium-native', OPENSSL]);
  });

  it.skipIf(!native.engine && !ci)('wipes its scratch after every call, failures included', () => {
    const e = native.engine!;
    const scratch = (e as unknown as { s: Uint8Array }).s;
    const k = new Uint8Array(32).fill(3);
    k[31] = 0;
    const p = e.multBase(k)!;
    expect(p).toHaveLength(32);
    expect(scratch.every((b) => b === 0)).toBe(true);
    expect(e.mult(k, p)).toHaveLength(32);
    expect(scratch.every((b) => b === 0)).toBe(true);
    // A refused element (the identity) leaves nothing behind either.
    expect(e.mult(k, new Uint8Array(32))).toBeNull();
    expect(scratch.every((b) => b === 0)).toBe(true);
    e.reduce(new Uint8Array(64).fill(9));
    e.fromHash(new Uint8Array(64).fill(9));
    e.invert(k);
    expect(scratch.every((b) => b === 0)).toBe(true);
    // HashToGroup and HashToScalar with native SHA-512 write their 64 bytes into the scratch.
    expect(e.fromHashOf((w) => w.fill(9))).toEqual(e.fromHash(new Uint8Array(64).fill(9)));
    expect(scratch.every((b) => b === 0)).toBe(true);
    expect(e.reduceOf((w) => w.fill(9))).toEqual(e.reduce(new Uint8Array(64).fill(9)));
    expect(scratch.every((b) => b === 0)).toBe(true);
  });

  it('falls back to WebAssembly with one line on stderr when the library is missing (SHA-512 stays on Node\'s OpenSSL)', () => {
    const r = backendIn({ BKV_SODIUM_LIBRARY: '/nonexistent/libsodium.so.23' });
    expect([r.backend, r.hash]).toEqual(['sodium-wasm', OPENSSL]);
    const lines = r.stderr.split('\n').filter((l) => l.includes('WebAssembly'));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^bkv: ristretto255 on libsodium WebAssembly \(native libsodium: no native libsodium \(\/nonexistent/);
  });

  it('BKV_SODIUM_NATIVE=0 turns it off; with BKV_OPENSSL_NATIVE=0 as well SHA-512 falls back too, with its own line', () => {
    const r = backendIn({ BKV_SODIUM_NATIVE: '0' });
    expect([r.backend, r.hash]).toEqual(['sodium-wasm', OPENSSL]);
    expect(r.stderr).toContain('turned off (BKV_SODIUM_NATIVE=0)');
    const both = backendIn({ BKV_SODIUM_NATIVE: '0', BKV_OPENSSL_NATIVE: '0' });
    expect([both.backend, both.hash]).toEqual(['sodium-wasm', 'sodium-wasm']);
    const lines = both.stderr.split('\n').filter((l) => l.includes('WebAssembly'));
    expect(lines).toHaveLength(2);
    expect(lines[1]).toMatch(/^bkv: SHA-512 on libsodium WebAssembly \(native hashing: turned off \(BKV_OPENSSL_NATIVE=0\); turned off \(BKV_SODIUM_NATIVE=0\)\)$/);
  });

  it.skipIf(!native.engine && !ci)('with Node\'s OpenSSL hashing off, SHA-512 runs on native libsodium, silently', () => {
    const r = backendIn({ BKV_OPENSSL_NATIVE: '0' });
    expect([r.backend, r.hash]).toEqual(['sodium-native', 'libsodium native']);
    expect(r.stderr).not.toContain('WebAssembly');
  });

  it.skipIf(!native.engine && !ci)('is the default in a fresh process, silently', () => {
    const r = backendIn({});
    expect([r.backend, r.hash]).toEqual(['sodium-native', OPENSSL]);
    expect(r.stderr).not.toContain('native libsodium');
  });

  it('a library without the ristretto255 functions is refused with the reason, not used', async () => {
    // libc loads but has none of libsodium's symbols.
    const r = await loadNativeSodium({ BKV_SODIUM_LIBRARY: 'libc.so.6' });
    expect(r.engine).toBeNull();
    expect(r.engine === null && r.reason).toMatch(/libc\.so\.6/);
  });
});
