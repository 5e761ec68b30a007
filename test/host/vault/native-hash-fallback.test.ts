/**
 * The enclave's SHA-256 (record index leaves and keys, partitions, the audit chain, the envelope's
 * key schedule) runs on Node's OpenSSL or native libsodium (enclave/opaque/hash-native.ts) and on
 * libsodium's WebAssembly build where neither loads (enclave/vault/vault.ts): the bytes are the
 * same, so a vault's data folder moves between them. Written with both native paths off, it loads,
 * serves and keeps its attempt counts with the defaults, then with libsodium hidden (OpenSSL
 * hashing, WebAssembly ristretto255). Worker-thread devices take the environment as it is when
 * they start, so the test sets BKV_SODIUM_LIBRARY and BKV_OPENSSL_NATIVE for one open and not the
 * next; that the devices really ran without libsodium shows in the fallback notice they print
 * (suites-fast.ts). Under CI=true a missing library fails.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, it, vi } from 'vitest';
import { loadNativeSha256 } from '../../../enclave/opaque/hash-native.ts';
import { VaultHost } from '../../../host/vault/vault-host.ts';
import { testIssuer } from '../../helpers/auth.ts';
import { trackVaults } from '../../helpers/vault-cleanup.ts';
import { hostClient } from '../../helpers/vault-harness.ts';

const te = new TextEncoder();
const { dirs, hosts } = trackVaults();
const native = await loadNativeSha256();
const ci = process.env.CI === 'true';
if (!native.sha256 && !ci) console.log(`native SHA-256 fallback test skipped: ${native.reason}`);
const SWITCHES = ['BKV_SODIUM_LIBRARY', 'BKV_OPENSSL_NATIVE'] as const;
const saved = SWITCHES.map((k) => process.env[k]);
const restore = () =>
  SWITCHES.forEach((k, i) => {
    if (saved[i] === undefined) delete process.env[k];
    else process.env[k] = saved[i];
  });

afterEach(() => {
  restore();
  vi.restoreAllMocks();
});

it.skipIf(!native.sha256 && !ci)('a data folder written without native hashing serves with it, and with OpenSSL hashing alone', { timeout: 120_000 }, async () => {
  expect(native.sha256, native.sha256 ? '' : native.reason).not.toBeNull();
  const dataDir = mkdtempSync(join(tmpdir(), 'bkv-native-hash-'));
  dirs.push(dataDir);
  const issuer = await testIssuer();
  // What the devices print: the notice of the WebAssembly fallback, or nothing.
  const printed: string[] = [];
  const spy = vi.spyOn(process.stderr, 'write').mockImplementation((c: string | Uint8Array) => {
    printed.push(typeof c === 'string' ? c : Buffer.from(c).toString());
    return true;
  });
  /** 'wasm': no native hashing or libsodium; 'native': the defaults; 'openssl': libsodium hidden, OpenSSL hashing on. */
  const open = async (mode: 'wasm' | 'native' | 'openssl') => {
    restore();
    if (mode !== 'native') process.env.BKV_SODIUM_LIBRARY = '/nonexistent/libsodium.so.23';
    if (mode === 'wasm') process.env.BKV_OPENSSL_NATIVE = '0';
    printed.length = 0;
    const host = await VaultHost.open({ auth: issuer.config, dataDir, mode: 'worker', partitions: 2 });
    hosts.push(host);
    // The devices' stderr reaches this thread asynchronously.
    await new Promise((r) => setTimeout(r, 200));
    const fellBack = printed.some((l) => l.includes('ristretto255 on libsodium WebAssembly'));
    const hashFellBack = printed.some((l) => l.includes('SHA-512 on libsodium WebAssembly'));
    return { host, client: await hostClient(host, issuer), fellBack, hashFellBack };
  };
  const [a, b] = [te.encode('alice@example.org'), te.encode('bob@example.org')];
  const keyA = new Uint8Array(32).fill(1);
  const keyB = new Uint8Array(32).fill(2);

  // 1. Without native code: a record, and one wrong guess charged.
  const v1 = await open('wasm');
  expect([v1.fellBack, v1.hashFellBack]).toEqual([true, true]);
  await v1.client.register(a, te.encode('pw-a'), keyA, { attemptLimit: 5 });
  expect(await v1.client.recover(a, te.encode('wrong'))).toMatchObject({ ok: false, outcome: 'wrong-password', attemptsRemaining: 4 });
  await v1.host.close();

  // 2. With it: the stored rows and the audit chain check out (the vault loads), the charge is kept.
  const v2 = await open('native');
  expect([v2.fellBack, v2.hashFellBack]).toEqual([false, false]);
  expect(await v2.client.recover(a, te.encode('wrong'))).toMatchObject({ ok: false, outcome: 'wrong-password', attemptsRemaining: 3 });
  const r2 = await v2.client.recover(a, te.encode('pw-a'));
  expect(r2.ok && Buffer.from(r2.backupKey).equals(Buffer.from(keyA))).toBe(true);
  await v2.client.register(b, te.encode('pw-b'), keyB, { attemptLimit: 5 });
  await v2.host.close();

  // 3. Without libsodium, hashing on OpenSSL: both records, as the native run left them.
  const v3 = await open('openssl');
  expect([v3.fellBack, v3.hashFellBack]).toEqual([true, false]);
  const r3 = await v3.client.recover(b, te.encode('pw-b'));
  expect(r3.ok && Buffer.from(r3.backupKey).equals(Buffer.from(keyB))).toBe(true);
  expect(await v3.client.recover(a, te.encode('wrong'))).toMatchObject({ ok: false, outcome: 'wrong-password', attemptsRemaining: 4 });
  await v3.host.close();
  spy.mockRestore();
});
