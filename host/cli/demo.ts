/**
 * `bkv demo` (the README's main job, `npm run demo`): the whole escrow story on embedded
 * defaults, in a temporary data folder: enclave devices in worker threads, SQLite storage, the
 * emulated token and NVRAM.
 *
 *   a backup key and an encrypted backup -> escrow the key under a password -> "lose the phone"
 *   -> a wrong password (attempts remaining) -> the right one (the key comes back) -> decrypt the
 *   backup and check it matches -> a stranger without the user's issuer token is refused and
 *   charges nothing -> a second user runs out of guesses (locked for good)
 *
 * Client operations are authorized by tokens of a development issuer (`bkv serve` without
 * `--auth-issuer` does the same): its key pair is made in the data folder.
 * The token's PINs are in development mode: generated into the operator folder beside the vault's
 * data folder (`<tmp>/vault.operator`), never in it; the demo names that folder at start.
 *
 * Options: --keep (keep the data folder), --partitions N, --process (child-process devices),
 * --fleet (the story on a fleet of three member processes instead: demo-fleet.ts);
 * --json: the story on stderr, and on stdout one object with each step's timings and the result.
 */
import { toHex } from '../../enclave/opaque/bytes.ts';
import { mkdtempSync, rmSync, writeFileSync, readFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { EscrowClient, EscrowError } from '../../client/escrow.ts';
import { mintToken, readIssuerPrivate, resolveServeAuth } from '../auth/issuer.ts';
import { faultName } from '../../enclave/api/codes.ts';
import { formatBackupKey, generateBackupKey } from '../../client/backup-key.ts';
import { decryptFile, encryptFile, nodeAead } from '../../client/backup-file-node.ts';
import { VaultHost } from '../vault/vault-host.ts';
import { DEFAULT_OPAQUE_CONTEXT } from '../../enclave/api/messages.ts';
import { fastSuite } from '../../enclave/opaque/suites-fast.ts';
import { argon2idKsf, DEFAULT_ARGON2ID } from '../../enclave/opaque/ksf.ts';
import { defaultOperatorDir } from '../../hsm/tokens/token-pins.ts';
import { intOption, parseArgs } from './args.ts';
import type { Output } from './output.ts';

const te = new TextEncoder();
const step = (n: number, s: string) => console.log(`\n${n}. ${s}`);
const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** A stand-in chat database: a few MiB of message lines. */
function sampleChatDatabase(): Uint8Array {
  const lines: string[] = [];
  const words = ['see', 'you', 'at', 'eight', 'the', 'photos', 'from', 'sunday', 'are', 'great', 'call', 'me', 'later'];
  for (let i = 0; i < 60_000; i++) {
    const n = 4 + (i % 9);
    const msg = Array.from({ length: n }, (_, j) => words[(i * 7 + j * 3) % words.length]).join(' ');
    lines.push(`${1_700_000_000 + i * 37}\t${i % 2 ? 'alice' : 'bob'}\t${msg}`);
  }
  return te.encode(lines.join('\n') + '\n');
}

export async function runDemo(argv: string[], out: Output): Promise<number> {
  const p = parseArgs(argv, { options: ['partitions'], flags: ['keep', 'process', 'fleet'] });
  // three member processes on loopback, one killed midway (demo-fleet.ts)
  if (p.flags.has('fleet')) return (await import('./demo-fleet.ts')).fleetDemo(p.flags.has('keep'), out);
  // Milliseconds of each timed step (--json: "timings").
  const timings: Record<string, number> = {};
  out.set({ timings });
  const took = (name: string, t0: number) => `${(timings[name] = Math.round(performance.now() - t0))} ms`;
  const mode = p.flags.has('process') ? 'process' : 'worker';
  const dataDir = mkdtempSync(join(tmpdir(), 'bkv-demo-'));
  const phone = join(dataDir, 'phone');
  const cloud = join(dataDir, 'cloud');
  mkdirSync(phone);
  mkdirSync(cloud);
  let host: VaultHost | undefined;
  try {
    console.log('Backup Key Vault demo');
    console.log(`data folder ${dataDir} (SQLite, emulated token and NVRAM); devices: ${mode} threads`.replace('process threads', 'child processes'));
    const vaultDir = join(dataDir, 'vault');
    const operatorDir = defaultOperatorDir(vaultDir);
    console.log(`token PINs: ${operatorDir} (development mode: keep this folder apart from the data folder ${vaultDir})`);
    let t0 = performance.now();
    const auth = await resolveServeAuth(vaultDir, { issuerFiles: [] });
    const issuer = readIssuerPrivate(auth.devKeyFile!);
    host = await VaultHost.open({ dataDir: vaultDir, mode, partitions: intOption(p, 'partitions', 1, 16), tokenPins: { operatorDir }, auth: auth.config });
    const vault = host;
    console.log(`issuer (development mode): ${auth.devKeyFile}; every operation carries its token for the user's id`);
    console.log(`vault up in ${took('vaultUp', t0)}: ${host.info.partitions} partition(s), self-tests passed`);
    console.log(`enclave public key (clients pin it): ${toHex(host.info.enclavePublicKey)}`);

    const clientWith = async (token: (rid: Uint8Array) => Promise<string>) =>
      new EscrowClient({
        relay: (rid, m) => vault.submit(rid, m),
        enclavePublicKey: vault.info.enclavePublicKey,
        suite: await fastSuite('ristretto255-SHA512'),
        rng: (n) => new Uint8Array(randomBytes(n)),
        context: DEFAULT_OPAQUE_CONTEXT,
        ksf: argon2idKsf(DEFAULT_ARGON2ID),
        auth: token,
      });
    const client = await clientWith((rid) => mintToken(issuer, { subject: new TextDecoder().decode(rid), audience: auth.config.audience }));

    step(1, 'A new backup key, and the chat backup encrypted with it:');
    const backupKey = generateBackupKey();
    console.log(`   ${formatBackupKey(backupKey)}`);
    const chat = sampleChatDatabase();
    writeFileSync(join(phone, 'chats.db'), chat);
    t0 = performance.now();
    const enc = await encryptFile(backupKey, join(phone, 'chats.db'), join(cloud, 'chats.db.bkv'), { aead: nodeAead });
    console.log(`   chats.db (${enc.bytesIn} bytes, sha256 ${sha256(chat).slice(0, 16)}…) -> cloud/chats.db.bkv (${enc.bytesOut} bytes) in ${took('encrypt', t0)}`);

    step(2, 'Escrow the key under the password "correct horse battery staple", 5 guesses:');
    const alice = te.encode('alice@example');
    t0 = performance.now();
    const reg = await client.register(alice, te.encode('correct horse battery staple'), backupKey, { attemptLimit: 5 });
    console.log(`   registered (two-phase, OPAQUE, Argon2id t=${DEFAULT_ARGON2ID.t} m=${DEFAULT_ARGON2ID.m} KiB) in ${took('register', t0)}; attempts remaining ${reg.attemptsRemaining}`);

    step(3, 'The phone is lost (its copy of the key and the chats are gone). On a new phone the user mistypes:');
    rmSync(phone, { recursive: true });
    backupKey.fill(0);
    t0 = performance.now();
    const wrong = await client.recover(alice, te.encode('correct horse battery stable'));
    if (wrong.ok) throw new Error('a wrong password recovered the key');
    console.log(`   ${wrong.outcome}: attempts remaining ${'attemptsRemaining' in wrong ? wrong.attemptsRemaining : 0} (${took('wrongPassword', t0)}; the guess was charged before the enclave answered)`);

    step(4, 'The right password:');
    t0 = performance.now();
    const right = await client.recover(alice, te.encode('correct horse battery staple'));
    if (!right.ok) throw new Error(`recovery failed: ${right.outcome}`);
    console.log(`   recovered in ${took('recover', t0)}: ${formatBackupKey(right.backupKey)}; attempts reset to ${right.attemptsRemaining}`);

    step(5, 'Decrypt the backup from the cloud with the recovered key:');
    mkdirSync(phone);
    t0 = performance.now();
    await decryptFile(right.backupKey, join(cloud, 'chats.db.bkv'), join(phone, 'chats.db'), { aead: nodeAead });
    const restored = new Uint8Array(readFileSync(join(phone, 'chats.db')));
    const same = sha256(restored) === sha256(chat);
    console.log(`   restored chats.db (${restored.length} bytes) in ${took('decrypt', t0)}; matches the original: ${same ? 'yes' : 'NO'}`);
    if (!same) return 1;

    step(6, "A stranger who knows alice's id but holds no token the issuer signed for her:");
    const stranger = await clientWith(() => mintToken(issuer, { subject: 'mallory@example', audience: auth.config.audience }));
    for (let i = 0; i < 3; i++) {
      try {
        await stranger.recover(alice, te.encode('guess'));
        throw new Error('a stranger got a login started');
      } catch (e) {
        if (!(e instanceof EscrowError)) throw e;
        if (i === 0) console.log(`   refused by the enclave: ${faultName(e.code)} (a token for the stranger's own id)`);
      }
    }
    const after = await client.status(alice);
    const left = after.type === 'StatusResult' ? after.attemptsRemaining : -1;
    console.log(`   3 tries, ${left === reg.attemptLimit ? 'no' : 'SOME'} guesses charged: alice has ${left} of ${reg.attemptLimit} left`);
    if (left !== reg.attemptLimit) return 1;

    step(7, 'Another user, 3 guesses, and someone trying passwords:');
    const bob = te.encode('bob@example');
    await client.register(bob, te.encode('hunter2'), generateBackupKey(), { attemptLimit: 3 });
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
    out.set({ records: st.records, storedBytes: st.bytes });
    console.log(`\nstorage holds ${st.records} sealed records (${st.bytes} bytes); none of it opens without the token.`);
    console.log('demo finished: every step behaved as the vault rules say.');
    return 0;
  } finally {
    await host?.close();
    if (p.flags.has('keep')) {
      out.set({ dataDir });
      console.log(`data kept in ${dataDir}`);
    }
    else rmSync(dataDir, { recursive: true, force: true });
  }
}
