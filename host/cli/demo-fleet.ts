/**
 * `bkv demo --fleet`: the escrow story on a fleet of three member processes on loopback
 * (docs/fleet-vault.md "The vault in the member process"), in a temporary folder:
 *
 *   a fleet folder (bkv fleet init) -> three `bkv serve --fleet` processes, their key ceremony,
 *   one vault-key.pub -> a key escrowed under a password (5 guesses) -> a wrong password ->
 *   the leader killed (SIGKILL) -> the right password through the other two (the key comes back,
 *   the charged guess was not lost with the leader) -> the killed member restarted, catching up
 *   to the same applied batch.
 *
 * Client operations carry tokens of the fleet's development issuer (DIR/auth/). The client is the
 * SDK over the HTTP relay with every member's URL (client/vault-members.ts moves to the leader).
 * Options: --keep (keep the folder); --json: one object with the outcome on stdout.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatBackupKey, generateBackupKey } from '../../client/backup-key.ts';
import { EscrowClient, EscrowError } from '../../client/escrow.ts';
import { httpRelay } from '../../client/http-relay.ts';
import { VaultHttpError, VaultMembersError } from '../../client/vault-errors.ts';
import { DEFAULT_AUDIENCE } from '../../enclave/api/auth.ts';
import { Handling } from '../../enclave/api/codes.ts';
import { argon2idKsf, DEFAULT_ARGON2ID } from '../../enclave/opaque/ksf.ts';
import { fastSuite } from '../../enclave/opaque/suites-fast.ts';
import { mintToken, readIssuerPrivate } from '../auth/issuer.ts';
import { checkFleetConfig, fleetJson, initFleet } from '../fleet/config.ts';
import { freePorts } from '../ports.ts';
import type { MemberStatusJson } from '../fleet/member-host.ts';
import { readVaultKeyFile } from './io.ts';
import type { Output } from './output.ts';

const te = new TextEncoder();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Whether an operation may be asked again after `e`: the fleet changed leader while it ran (a
 * registration stage or login session in the old leader's device: UnknownStage, UnknownSession;
 * a login's guess stays charged), or no member took it (503, or none reachable while a view
 * changes). What a user's client would do: ask again.
 */
function askAgain(e: unknown): boolean {
  if (e instanceof EscrowError) return e.code === Handling.UnknownStage || e.code === Handling.UnknownSession;
  return (e instanceof VaultHttpError && e.status === 503) || e instanceof VaultMembersError;
}

async function retried<T>(fn: () => Promise<T>): Promise<T> {
  for (let i = 1; ; i++) {
    try {
      return await fn();
    } catch (e) {
      if (i >= 4 || !askAgain(e)) throw e;
      console.log(`   (${e instanceof Error ? e.message.split(':')[0] : 'refused'}: the fleet's leader changed meanwhile; asked again)`);
      await sleep(1000);
    }
  }
}

async function statusOf(url: string): Promise<MemberStatusJson | null> {
  try {
    const r = await fetch(`${url}/fleet/status`, { signal: AbortSignal.timeout(2000) });
    return r.ok ? ((await r.json()) as MemberStatusJson) : null;
  } catch {
    return null;
  }
}

export async function fleetDemo(keep: boolean, out: Output): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'bkv-demo-fleet-'));
  const procs: (ChildProcess | null)[] = [null, null, null];
  const logs = ['', '', ''];
  const start = (i: number, file: string) => {
    const c = spawn(process.execPath, [...process.execArgv, process.argv[1]!, 'serve', '--fleet', file, '--member', String(i)], { stdio: ['ignore', 'ignore', 'pipe'] });
    c.stderr!.on('data', (d: Buffer) => (logs[i] = (logs[i]! + d.toString()).slice(-20_000)));
    procs[i] = c;
  };
  const until = async <T>(what: string, ms: number, fn: () => Promise<T | null | false>): Promise<T> => {
    const end = Date.now() + ms;
    for (;;) {
      const v = await fn();
      if (v !== null && v !== false) return v;
      if (Date.now() > end) throw new Error(`the demo waited too long for ${what}\n${logs.map((l, i) => `member ${i}:\n${l.split('\n').slice(-8).join('\n')}`).join('\n')}`);
      await sleep(200);
    }
  };
  try {
    console.log('Backup Key Vault demo: a fleet of three member processes');
    await initFleet({ dir, members: 3 });
    const file = join(dir, 'fleet.json');
    const cfg = checkFleetConfig(JSON.parse(readFileSync(file, 'utf8')));
    const ports = await freePorts(6);
    writeFileSync(file, fleetJson({ ...cfg, members: cfg.members.map((m, i) => ({ ...m, api: { host: '127.0.0.1', port: ports[2 * i]! }, peer: { host: '127.0.0.1', port: ports[2 * i + 1]! } })) }));
    const urls = [0, 1, 2].map((i) => `http://127.0.0.1:${ports[2 * i]}`);
    console.log(`fleet folder ${dir}; members on ${urls.join(', ')}`);

    console.log('\n1. Three member processes: their key ceremony, one vault key for the fleet:');
    for (const i of [0, 1, 2]) start(i, file);
    const keyFile = join(dir, 'vault-key.pub');
    await until('vault-key.pub', 120_000, async () => existsSync(keyFile));
    const leaderOf = async (): Promise<number | null> => {
      const all = await Promise.all(urls.map((u, i) => (procs[i] ? statusOf(u) : null)));
      const l = all.find((s) => s?.status === 'normal' && s.leader?.id === s.member && s.appliedBatch !== undefined);
      return l ? l.member : null;
    };
    const first = await until('a leader', 60_000, leaderOf);
    console.log(`   ${keyFile} written; member ${first} leads`);

    const pinned = readVaultKeyFile(keyFile);
    const issuer = readIssuerPrivate(join(dir, 'auth', 'issuer.key'));
    const client = new EscrowClient({
      relay: httpRelay({ baseUrl: urls, enclavePublicKey: pinned.enclavePublicKey }),
      enclavePublicKey: pinned.enclavePublicKey,
      suite: await fastSuite('ristretto255-SHA512'),
      rng: (n) => new Uint8Array(randomBytes(n)),
      context: pinned.opaqueContext,
      ksf: argon2idKsf(DEFAULT_ARGON2ID),
      auth: (rid) => mintToken(issuer, { subject: new TextDecoder().decode(rid), audience: DEFAULT_AUDIENCE }),
    });
    const alice = te.encode('alice@example');
    const key = generateBackupKey();
    const shown = formatBackupKey(key);

    console.log('\n2. Escrow a backup key under "correct horse battery staple", 5 guesses:');
    const reg = await retried(() => client.register(alice, te.encode('correct horse battery staple'), key, { attemptLimit: 5 }));
    console.log(`   ${shown}\n   registered through the leader, on a majority's logs; attempts remaining ${reg.attemptsRemaining}`);

    console.log('\n3. A wrong password:');
    const wrong = await retried(() => client.recover(alice, te.encode('correct horse battery stable')));
    if (wrong.ok) throw new Error('a wrong password recovered the key');
    console.log(`   ${wrong.outcome}: attempts remaining ${'attemptsRemaining' in wrong ? wrong.attemptsRemaining : 0}`);

    const killed = (await leaderOf()) ?? first;
    console.log(`\n4. The leader, member ${killed}, is killed (SIGKILL):`);
    const dead = procs[killed]!;
    const exited = new Promise((r) => dead.once('exit', r));
    dead.kill('SIGKILL');
    await exited;
    procs[killed] = null;
    const next = await until('a new leader', 60_000, leaderOf);
    console.log(`   member ${next} leads now`);

    console.log('\n5. The right password, through the members still up:');
    const st = await retried(() => client.status(alice));
    console.log(`   the record says attempts remaining ${st.type === 'StatusResult' ? st.attemptsRemaining : '?'} (the charged guess survived the leader)`);
    const right = await retried(() => client.recover(alice, te.encode('correct horse battery staple')));
    if (!right.ok) throw new Error(`recovery failed: ${right.outcome}`);
    const same = formatBackupKey(right.backupKey) === shown;
    console.log(`   recovered: ${formatBackupKey(right.backupKey)}; the escrowed key: ${same ? 'yes' : 'NO'}; attempts reset to ${right.attemptsRemaining}`);
    if (!same) return 1;

    console.log(`\n6. Member ${killed} restarted catches up:`);
    start(killed, file);
    const caught = await until(`member ${killed} to catch up`, 60_000, async () => {
      const all = await Promise.all(urls.map(statusOf));
      const l = all.find((s) => s?.leader?.id === s?.member && s?.status === 'normal');
      const me = all[killed];
      return l && me?.status === 'normal' && me.appliedBatch === l.appliedBatch ? me.appliedBatch! : null;
    });
    console.log(`   every member has applied batch ${caught}`);
    out.set({ recovered: true, killed, leaderAfter: next, appliedBatch: caught });
    console.log('\ndemo finished: the fleet kept the charged guess and the key through the loss of its leader.');
    return 0;
  } catch (e) {
    console.error(`the demo stopped; the members' last lines:\n${logs.map((l, i) => `member ${i}:\n${l.split('\n').slice(-12).join('\n')}`).join('\n')}`);
    throw e;
  } finally {
    await Promise.all(
      procs.map((c) => {
        if (!c || c.exitCode !== null || c.signalCode !== null) return undefined;
        const done = new Promise((r) => c.once('exit', r));
        c.kill('SIGTERM');
        return done;
      }),
    );
    if (keep) {
      out.set({ dataDir: dir });
      console.log(`fleet folder kept in ${dir}`);
    } else rmSync(dir, { recursive: true, force: true });
  }
}
