/**
 * `npm run demo`: the whole escrow story on embedded defaults, in a temporary data folder:
 * enclave devices in worker threads, SQLite storage, the emulated token and NVRAM files.
 *
 *   make a backup key -> escrow it under a password -> "lose the phone" -> a wrong password
 *   (attempts remaining) -> the right one (the key comes back) -> a second user runs out of
 *   guesses (locked; the right password no longer helps)
 *
 * Options: --keep (keep the data folder and print its path), --partitions N, --process
 * (child-process devices instead of worker threads).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { EscrowClient } from '../client/escrow.ts';
import { VaultHost } from '../vault/vault-host.ts';
import { fastSuite } from '../../enclave/opaque/suites-fast.ts';
import { argon2idKsf, DEFAULT_ARGON2ID } from '../../enclave/opaque/ksf.ts';

const te = new TextEncoder();
const args = process.argv.slice(2);
const keep = args.includes('--keep');
const mode = args.includes('--process') ? 'process' : 'worker';
const pIdx = args.indexOf('--partitions');
const partitions = pIdx >= 0 ? Number(args[pIdx + 1]) : undefined;

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const grouped = (b: Uint8Array) => hex(b).match(/.{4}/g)!.join(' ');
const step = (n: number, s: string) => console.log(`\n${n}. ${s}`);
const ms = (t0: number) => `${(performance.now() - t0).toFixed(0)} ms`;

async function main(): Promise<number> {
  const dataDir = mkdtempSync(join(tmpdir(), 'bkv-demo-'));
  let host: VaultHost | undefined;
  try {
    console.log('Backup Key Vault demo');
    console.log(`data folder ${dataDir} (SQLite, emulated token and NVRAM); devices: ${mode}`);
    let t0 = performance.now();
    host = await VaultHost.open({ dataDir, mode, partitions });
    const vault = host;
    console.log(`vault up in ${ms(t0)}: ${host.info.partitions} partition(s), self-tests passed`);
    console.log(`enclave public key (clients pin it): ${hex(host.info.enclavePublicKey)}`);

    const suite = await fastSuite('ristretto255-SHA512');
    const client = new EscrowClient({
      relay: (rid, m) => vault.submit(rid, m),
      enclavePublicKey: host.info.enclavePublicKey,
      suite,
      rng: (n) => new Uint8Array(randomBytes(n)),
      context: te.encode('BackupKeyVault-v1'),
      ksf: argon2idKsf(DEFAULT_ARGON2ID),
    });

    step(1, 'A new backup key (the chat backup would be encrypted with it):');
    const backupKey = new Uint8Array(randomBytes(32));
    console.log(`   ${grouped(backupKey)}`);

    step(2, 'Escrow it under the password "correct horse battery staple", 5 guesses:');
    const alice = te.encode('alice@example');
    t0 = performance.now();
    const reg = await client.register(alice, te.encode('correct horse battery staple'), backupKey, { attemptLimit: 5 });
    console.log(`   registered (two-phase, OPAQUE, Argon2id t=${DEFAULT_ARGON2ID.t} m=${DEFAULT_ARGON2ID.m} KiB) in ${ms(t0)}; attempts remaining ${reg.attemptsRemaining}`);

    step(3, 'The phone is lost. On a new phone the user mistypes the password:');
    t0 = performance.now();
    const wrong = await client.recover(alice, te.encode('correct horse battery stable'));
    if (wrong.ok) throw new Error('a wrong password recovered the key');
    console.log(`   ${wrong.outcome}: attempts remaining ${'attemptsRemaining' in wrong ? wrong.attemptsRemaining : 0} (${ms(t0)}; the guess was charged before the enclave answered)`);

    step(4, 'The right password:');
    t0 = performance.now();
    const right = await client.recover(alice, te.encode('correct horse battery staple'));
    if (!right.ok) throw new Error(`recovery failed: ${right.outcome}`);
    const same = hex(right.backupKey) === hex(backupKey);
    console.log(`   recovered in ${ms(t0)}: ${grouped(right.backupKey)}`);
    console.log(`   matches the original key: ${same ? 'yes' : 'NO'}; attempts reset to ${right.attemptsRemaining}`);
    if (!same) return 1;

    step(5, 'Another user, 3 guesses, and someone trying passwords:');
    const bob = te.encode('bob@example');
    await client.register(bob, te.encode('hunter2'), new Uint8Array(randomBytes(32)), { attemptLimit: 3 });
    for (const guess of ['123456', 'password', 'qwerty']) {
      const r = await client.recover(bob, te.encode(guess));
      if (r.ok) throw new Error('a wrong password recovered the key');
      const left = 'attemptsRemaining' in r ? r.attemptsRemaining : 0;
      console.log(`   "${guess}": ${r.outcome}, attempts remaining ${left}${'locked' in r && r.locked ? ', LOCKED: the key is destroyed' : ''}`);
    }
    const late = await client.recover(bob, te.encode('hunter2'));
    console.log(`   the right password now: ${late.ok ? 'RECOVERED (wrong!)' : late.outcome}`);
    if (late.ok) return 1;

    const st = await host.store.stats();
    console.log(`\nstorage holds ${st.records} sealed records (${st.bytes} bytes); none of it opens without the token.`);
    console.log('demo finished: every step behaved as the vault rules say.');
    return 0;
  } finally {
    await host?.close();
    if (keep) console.log(`data kept in ${dataDir}`);
    else rmSync(dataDir, { recursive: true, force: true });
  }
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    console.error(`demo failed: ${e instanceof Error ? e.message : String(e)}`);
    process.exit(1);
  },
);
