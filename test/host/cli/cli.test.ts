/**
 * The `bkv` command line, end to end on real processes: `bkv serve` in a child process, and the
 * key, backup and escrow commands run as separate processes against it; where `bkv serve` and
 * `bkv demo` keep the token PINs (never in the data folder), and that `bkv serve` prints no
 * credential of a store URL.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import Database from 'better-sqlite3';

import { listeningLine } from '../../../host/cli/cmd-serve.ts';
import { scrubCredentials } from '../../../host/cli/redact.ts';
import { bin, runBkv, startServe as serveIn, stop } from '../../helpers/cli.ts';

let dir: string;
let server: ChildProcess;
let url: string;
/** What `bkv serve` printed on stderr until it listened. */
let serveErr = '';

const bkv = (args: string[], input?: string, env: NodeJS.ProcessEnv = {}) => runBkv(dir, args, { input, env });
const startServe = (args: string[], env: NodeJS.ProcessEnv = {}) => serveIn(dir, args, env);

/** Every file under `d` whose bytes contain `needle`. */
function filesContaining(d: string, needle: string): string[] {
  const hits: string[] = [];
  for (const e of readdirSync(d, { withFileTypes: true, recursive: true })) {
    const p = join(e.parentPath, e.name);
    if (e.isFile() && readFileSync(p).includes(Buffer.from(needle))) hits.push(p);
  }
  return hits;
}

/** Runs and expects an exit code, showing the command's stderr when it differs. */
function expectCode(args: string[], code: number) {
  const r = bkv(args);
  expect(r.code, `bkv ${args.join(' ')}\n${r.err}`).toBe(code);
  return r;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'bkv-cli-'));
  // One record's escrow flow below makes about 25 requests in a few seconds: a burst of 20 let a
  // fast machine run past it (exit 7, retry later, at the last delete or status). The limiter has
  // its own tests (test/host/service); here the burst holds the whole flow.
  const s = await serveIn(dir, ['--data', join(dir, 'vault'), '--port', '0', '--partitions', '2', '--record-limit', '600/100'], {}, /bkv auth token/);
  server = s.proc;
  url = s.url;
  serveErr = s.err();
}, 90_000);

afterAll(async () => {
  if (server) await stop(server);
  rmSync(dir, { recursive: true, force: true });
});

describe('bkv', () => {
  it('key new, backup encrypt and decrypt, and a typo in the key file is caught', () => {
    expect(bkv(['key', 'new', '--out', 'k.txt']).code).toBe(0);
    const data = new Uint8Array(randomBytes(200_000));
    writeFileSync(join(dir, 'plain.bin'), data);
    expect(bkv(['backup', 'encrypt', 'plain.bin', 'enc.bkv', '--key-file', 'k.txt']).code).toBe(0);
    expect(bkv(['backup', 'decrypt', 'enc.bkv', 'out.bin', '--key-file', 'k.txt']).code).toBe(0);
    expect(Buffer.compare(readFileSync(join(dir, 'out.bin')), Buffer.from(data))).toBe(0);
    // A mistyped digit: the check group catches it; nothing is written.
    const typo = readFileSync(join(dir, 'k.txt'), 'utf8').replace(/^(.)/, (c) => (c === '0' ? '1' : '0'));
    writeFileSync(join(dir, 'typo.txt'), typo);
    const r = bkv(['backup', 'decrypt', 'enc.bkv', 'out2.bin', '--key-file', 'typo.txt']);
    expect(r.code).not.toBe(0);
    expect(r.err).toMatch(/mistyped/);
    expect(existsSync(join(dir, 'out2.bin'))).toBe(false);
  }, 60_000);

  it('escrow register, wrong password, recover, change password, status, delete', () => {
    // The service runs in development mode: its issuer key is in the data folder.
    expectCode(['auth', 'token', '--issuer-key', join(dir, 'vault', 'auth', 'issuer.key'), '--id', 'carol', '--out', 'carol.tok'], 0);
    const common = ['--vault', url, '--vault-key', join(dir, 'vault', 'vault-key.pub'), '--id', 'carol', '--auth-token', 'carol.tok'];
    expect(bkv(['key', 'new', '--out', 'carol.key']).code).toBe(0);
    writeFileSync(join(dir, 'pw'), 'tr0ub4dor\n');
    writeFileSync(join(dir, 'bad'), 'guess\n');
    writeFileSync(join(dir, 'pw2'), 'new passphrase\n');
    expectCode(['escrow', 'register', ...common, '--key-file', 'carol.key', '--password-file', 'pw', '--attempts', '4'], 0);
    const wrong = expectCode(['escrow', 'recover', ...common, '--password-file', 'bad'], 3);
    expect(wrong.err).toMatch(/wrong password; attempts remaining 3/);
    expectCode(['escrow', 'recover', ...common, '--password-file', 'pw', '--out', 'recovered.key'], 0);
    const norm = (s: string) => s.replace(/\s+/g, '').slice(0, 64);
    expect(norm(readFileSync(join(dir, 'recovered.key'), 'utf8'))).toBe(norm(readFileSync(join(dir, 'carol.key'), 'utf8')));
    expectCode(['escrow', 'change-password', ...common, '--password-file', 'pw', '--new-password-file', 'pw2'], 0);
    expectCode(['escrow', 'recover', ...common, '--password-file', 'pw'], 3);
    expect(bkv(['escrow', 'status', ...common]).out).toMatch(/attempts remaining 3 of 4/);
    expectCode(['escrow', 'delete', ...common, '--password-file', 'pw'], 3); // the old password proves nothing
    expect(expectCode(['escrow', 'delete', ...common, '--key-file', 'carol.key'], 0).out).toMatch(/deleted/);
    expect(bkv(['escrow', 'status', ...common]).out).toMatch(/not registered/);
  }, 120_000);

  it('refuses a vault whose key does not match the pinned one, and bad usage', () => {
    const pub = JSON.parse(readFileSync(join(dir, 'vault', 'vault-key.pub'), 'utf8')) as Record<string, unknown>;
    pub.enclavePublicKey = Buffer.alloc(32, 1).toString('base64url');
    writeFileSync(join(dir, 'other.pub'), JSON.stringify(pub));
    const r = bkv(['escrow', 'status', '--vault', url, '--vault-key', 'other.pub', '--id', 'x', '--auth-token', 'carol.tok']);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/pinned/);
    expect(bkv(['escrow', 'status', '--vault', url]).code).toBe(2);
    expect(bkv(['nonsense']).code).toBe(2);
    expect(bkv(['backup', 'encrypt', 'a', '--key-file']).code).toBe(2);
  }, 60_000);

  it('--vault with several members: one that refuses connections is passed over, the service answers; a member with another key is named (exit 2)', async () => {
    const port = await new Promise<number>((res) => {
      const s = createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as AddressInfo).port;
        s.close(() => res(p));
      });
    });
    const members = `http://127.0.0.1:${port},${url}`;
    const vk = join(dir, 'vault', 'vault-key.pub');
    expectCode(['auth', 'token', '--issuer-key', join(dir, 'vault', 'auth', 'issuer.key'), '--id', 'erin', '--out', 'erin.tok'], 0);
    expectCode(['key', 'new', '--out', 'erin.key'], 0);
    writeFileSync(join(dir, 'epw'), 'erin pw\n');
    const erin = ['--vault', members, '--vault-key', vk, '--id', 'erin', '--auth-token', 'erin.tok'];
    expectCode(['escrow', 'register', ...erin, '--key-file', 'erin.key', '--password-file', 'epw', '--attempts', '3'], 0);
    expectCode(['escrow', 'recover', ...erin, '--password-file', 'epw', '--out', 'erin.out'], 0);
    expect(expectCode(['escrow', 'status', ...erin], 0).out).toMatch(/attempts remaining 3 of 3/);
    const pub = JSON.parse(readFileSync(vk, 'utf8')) as Record<string, unknown>;
    pub.enclavePublicKey = Buffer.alloc(32, 2).toString('base64url');
    writeFileSync(join(dir, 'other-erin.pub'), JSON.stringify(pub));
    const r = expectCode(['escrow', 'recover', ...erin.slice(0, 2), '--vault-key', 'other-erin.pub', ...erin.slice(4), '--password-file', 'epw', '--json'], 2);
    expect(JSON.parse(r.out).error).toMatchObject({ code: 'usage', name: 'VaultKeyMismatchError', message: `the vault at ${url} does not have the pinned enclave key: refusing to talk to it` });
    expect(expectCode(['escrow', 'status', ...erin], 0).out).toMatch(/attempts remaining 3 of 3/); // nothing was charged
  }, 120_000);

  it('auth: development mode said at start and in /health; keygen and token; exit 6 without a valid token, nothing charged', async () => {
    expect(serveErr).toMatch(/DEVELOPMENT MODE/);
    expect(await (await fetch(`${url}/health`)).json()).toMatchObject({ status: 'ok', auth: 'development' });
    const vk = join(dir, 'vault', 'vault-key.pub');
    const devKey = join(dir, 'vault', 'auth', 'issuer.key');
    expectCode(['key', 'new', '--out', 'dave.key'], 0);
    writeFileSync(join(dir, 'dpw'), 'dave pw\n');
    expectCode(['auth', 'token', '--issuer-key', devKey, '--id', 'dave', '--out', 'dave.tok', '--ttl', '5m'], 0);
    const dave = ['--vault', url, '--vault-key', vk, '--id', 'dave'];
    expectCode(['escrow', 'register', ...dave, '--auth-token', 'dave.tok', '--key-file', 'dave.key', '--password-file', 'dpw', '--attempts', '5'], 0);
    // No token, another id's token, a token from an issuer the vault does not know: exit 6, no guess charged.
    expect(expectCode(['escrow', 'recover', ...dave, '--password-file', 'dpw'], 6).err).toMatch(/not authorized/);
    expectCode(['auth', 'token', '--issuer-key', devKey, '--id', 'mallory', '--out', 'mallory.tok'], 0);
    // The service's early check refuses these before the enclave does (the stranger script and
    // test/enclave/vault/auth.test.ts play a host that skips it).
    expect(expectCode(['escrow', 'recover', ...dave, '--auth-token', 'mallory.tok', '--password-file', 'dpw'], 6).err).toMatch(/not authorized.*AUTH_TOKEN_REFUSED/);
    expectCode(['auth', 'keygen', '--out', 'rogue', '--name', 'rogue'], 0);
    expect(existsSync(join(dir, 'rogue', 'issuer.key')) && existsSync(join(dir, 'rogue', 'issuer.pub'))).toBe(true);
    expectCode(['auth', 'keygen', '--out', 'rogue'], 1); // never overwrites a key
    expectCode(['auth', 'token', '--issuer-key', join('rogue', 'issuer.key'), '--id', 'dave', '--out', 'rogue.tok'], 0);
    expect(expectCode(['escrow', 'recover', ...dave, '--auth-token', 'rogue.tok', '--password-file', 'dpw'], 6).err).toMatch(/not authorized.*AUTH_TOKEN_REFUSED/);
    expect(expectCode(['escrow', 'status', ...dave, '--auth-token', 'dave.tok'], 0).out).toMatch(/attempts remaining 5 of 5/);
    // Usage errors.
    expectCode(['auth', 'token', '--issuer-key', devKey, '--id', 'dave', '--ttl', '2h'], 2);
    expectCode(['auth', 'token', '--id', 'dave'], 2);
    expectCode(['auth', 'nonsense'], 2);
  }, 120_000);

  it('serve --auth-issuer provisions the vault with that issuer and refuses another set later', async () => {
    expectCode(['auth', 'keygen', '--out', 'prod', '--name', 'accounts.example'], 0);
    expectCode(['auth', 'keygen', '--out', 'prod2', '--name', 'other.example'], 0);
    const data = join(dir, 'prod-vault');
    const first = await serveOnce(['--data', data, '--auth-issuer', join('prod', 'issuer.pub')]);
    expect(first.err).not.toMatch(/DEVELOPMENT MODE/);
    expect(first.err).toMatch(/accounts\.example/);
    expect(first.health).toMatchObject({ auth: 'issuers' });
    expect(existsSync(join(data, 'auth', 'issuer.key'))).toBe(false);
    const again = bkv(['serve', '--data', data, '--port', '0', '--partitions', '1', '--auth-issuer', join('prod2', 'issuer.pub')]);
    expect(again.code).toBe(1);
    expect(again.err).toMatch(/another issuer set/);
  }, 120_000);

  it('bkv escrow sends BKV_SERVICE_TOKEN: without it the service answers 401, with it the operation goes through', async () => {
    const data = join(dir, 'vault-bearer');
    const s = await startServe(['--data', data, '--port', '0', '--partitions', '1'], { BKV_SERVICE_TOKEN: 'bearer-secret-1' });
    try {
      const u = /listening on (http:\/\/\S+)/.exec(s.err())![1]!;
      expectCode(['auth', 'token', '--issuer-key', join(data, 'auth', 'issuer.key'), '--id', 'erin', '--out', 'erin.tok'], 0);
      const args = ['escrow', 'status', '--vault', u, '--vault-key', join(data, 'vault-key.pub'), '--id', 'erin', '--auth-token', 'erin.tok'];
      const without = bkv(args, undefined, { BKV_SERVICE_TOKEN: '' });
      expect(without.code).toBe(1);
      expect(without.err).toMatch(/401 UNAUTHORIZED/);
      const withToken = bkv(args, undefined, { BKV_SERVICE_TOKEN: 'bearer-secret-1' });
      expect(withToken.code, withToken.err).toBe(5);
      expect(withToken.out).toMatch(/not registered/);
    } finally {
      await stop(s.proc);
    }
    // The operator sees the token profile of the vault's keys once at start (worker-thread devices).
    expect(s.err().match(/bkv device \d+: token profile [^\n]*/g)).toEqual(['bkv device 0: token profile gcm-ecdh; the token meets gcm-ecdh, ctr-hmac']);
  }, 90_000);

  it('operator: a vault provisioned with an operator secret changes its issuer set only with it', async () => {
    expectCode(['operator', 'keygen', '--out', 'op.key'], 0);
    expectCode(['operator', 'keygen', '--out', 'op.key'], 1); // never overwrites
    expectCode(['operator', 'keygen', '--out', 'other-op.key'], 0);
    expectCode(['auth', 'keygen', '--out', 'iss-a', '--name', 'a.example'], 0);
    expectCode(['auth', 'keygen', '--out', 'iss-b', '--name', 'b.example'], 0);
    const data = join(dir, 'vault-operator');
    const first = await serveOnce(['--data', data, '--auth-issuer', join('iss-a', 'issuer.pub'), '--operator-key-file', 'op.key']);
    expect(first.err).toMatch(/a\.example/);
    const change = ['operator', 'set-issuers', '--data', data, '--auth-issuer', join('iss-b', 'issuer.pub')];
    expect(expectCode([...change, '--operator-key-file', 'other-op.key'], 1).err).toMatch(/refused the operator secret/);
    // The wrong secret changed nothing: the vault still starts under the old set only.
    expect(bkv(['serve', '--data', data, '--port', '0', '--partitions', '1', '--auth-issuer', join('iss-b', 'issuer.pub')]).err).toMatch(/another issuer set/);
    expectCode([...change, '--operator-key-file', 'op.key'], 0);
    const second = await serveOnce(['--data', data, '--auth-issuer', join('iss-b', 'issuer.pub')]);
    expect(second.err).toMatch(/b\.example/);
    expect(bkv(['serve', '--data', data, '--port', '0', '--partitions', '1', '--auth-issuer', join('iss-a', 'issuer.pub')]).err).toMatch(/another issuer set/);
    expectCode(['operator', 'set-issuers', '--data', data, '--operator-key-file', 'op.key'], 2);
  }, 180_000);

  it('operator audit-verify: checks every partition\'s chain; with the operator secret it opens the events; a changed event exits 1', async () => {
    expectCode(['operator', 'keygen', '--out', 'audit-op.key'], 0);
    const data = join(dir, 'vault-audit');
    const s = await startServe(['--data', data, '--port', '0', '--partitions', '2', '--operator-key-file', 'audit-op.key']);
    try {
      const u = /listening on (http:\/\/\S+)/.exec(s.err())![1]!;
      const key = join(data, 'auth', 'issuer.key');
      expectCode(['auth', 'token', '--issuer-key', key, '--id', 'frank', '--out', 'frank.tok'], 0);
      expectCode(['key', 'new', '--out', 'frank.key'], 0);
      writeFileSync(join(dir, 'fpw'), 'frank pw\n');
      writeFileSync(join(dir, 'fpw-wrong'), 'not it\n');
      const frank = ['--vault', u, '--vault-key', join(data, 'vault-key.pub'), '--id', 'frank', '--auth-token', 'frank.tok'];
      expectCode(['escrow', 'register', ...frank, '--key-file', 'frank.key', '--password-file', 'fpw', '--attempts', '5'], 0);
      expect(bkv(['escrow', 'recover', ...frank, '--password-file', 'fpw-wrong', '--out', 'frank-out.key']).code).toBe(3);
      // An operator command beside the serving vault is refused: one process at a time on a folder.
      expect(expectCode(['operator', 'audit-verify', '--data', data], 1).err).toMatch(/in use by process \d+/);
    } finally {
      await stop(s.proc);
    }
    const verify = ['operator', 'audit-verify', '--data', data, '--json'];
    const plain = JSON.parse(expectCode(verify, 0).out);
    expect(plain).toMatchObject({ ok: true, opened: false });
    expect(plain.partitions).toHaveLength(2);
    expect(plain.partitions.reduce((n: number, p: { verified: number }) => n + p.verified, 0)).toBe(3);
    for (const p of plain.partitions) expect(p.entries).toEqual([]);
    const opened = JSON.parse(expectCode([...verify, '--operator-key-file', 'audit-op.key'], 0).out);
    const entries = opened.partitions.flatMap((p: { entries: unknown[] }) => p.entries);
    expect(entries.map((e: { kind: string }) => e.kind)).toEqual(['registered', 'guessUsed', 'wrongPassword']);
    expect(entries.map((e: { attemptsRemaining: number }) => e.attemptsRemaining)).toEqual([5, 4, 4]);
    expectCode(['operator', 'keygen', '--out', 'audit-other.key'], 0);
    expect(expectCode(['operator', 'audit-verify', '--data', data, '--operator-key-file', 'audit-other.key'], 1).err).toMatch(/refused the operator secret/);
    // Human output: one line per event on stdout, the verdict on stderr.
    const human = expectCode(['operator', 'audit-verify', '--data', data, '--operator-key-file', 'audit-op.key'], 0);
    expect(human.out.trim().split('\n')).toHaveLength(3);
    expect(human.err).toMatch(/events verified up to the committed head/);
    // A stored event changed by whoever holds the database: the chain does not verify.
    const db = new Database(join(data, 'vault.db'));
    const row = db.prepare('SELECT partition, seq, event FROM audit ORDER BY seq DESC LIMIT 1').get() as { partition: number; seq: number; event: Buffer };
    row.event[20] = row.event[20]! ^ 1;
    db.prepare('UPDATE audit SET event = ? WHERE partition = ? AND seq = ?').run(row.event, row.partition, row.seq);
    db.close();
    const broken = bkv(verify);
    expect(broken.code).toBe(1);
    expect(JSON.parse(broken.out)).toMatchObject({ ok: false });
  }, 180_000);

  it('operator status and zeroize: status reports every partition; a wrong secret destroys nothing; the right one zeroizes for good', async () => {
    expectCode(['operator', 'keygen', '--out', 'zero-op.key'], 0);
    expectCode(['operator', 'keygen', '--out', 'zero-other.key'], 0);
    const data = join(dir, 'vault-zeroize');
    const served = ['--data', data, '--port', '0', '--partitions', '2'];
    const gina = (u: string) => ['--vault', u, '--vault-key', join(data, 'vault-key.pub'), '--id', 'gina', '--auth-token', 'gina.tok'];
    let s = await startServe([...served, '--operator-key-file', 'zero-op.key']);
    try {
      expectCode(['auth', 'token', '--issuer-key', join(data, 'auth', 'issuer.key'), '--id', 'gina', '--ttl', '1h', '--out', 'gina.tok'], 0);
      expectCode(['key', 'new', '--out', 'gina.key'], 0);
      writeFileSync(join(dir, 'gpw'), 'gina pw\n');
      expectCode(['escrow', 'register', ...gina(s.url), '--key-file', 'gina.key', '--password-file', 'gpw'], 0);
      // hank has one attempt and spends it on a wrong password: his record locks.
      const hank = ['--vault', s.url, '--vault-key', join(data, 'vault-key.pub'), '--id', 'hank', '--auth-token', 'hank.tok'];
      expectCode(['auth', 'token', '--issuer-key', join(data, 'auth', 'issuer.key'), '--id', 'hank', '--out', 'hank.tok'], 0);
      expectCode(['escrow', 'register', ...hank, '--key-file', 'gina.key', '--password-file', 'gpw', '--attempts', '1'], 0);
      writeFileSync(join(dir, 'hpw-wrong'), 'not it\n');
      expectCode(['escrow', 'recover', ...hank, '--password-file', 'hpw-wrong'], 3);
    } finally {
      await stop(s.proc);
    }
    const status = JSON.parse(expectCode(['operator', 'status', '--data', data, '--json'], 0).out);
    expect(status).toMatchObject({ ok: true, serving: true, records: 2, locked: null, issuers: ['bkv-development'], development: true });
    expect(status.partitions).toHaveLength(2);
    for (const p of status.partitions) {
      expect(p).toMatchObject({ state: 'ready', selfTest: 'passed', selfTestFailures: [], operatorSecret: true, loadError: null, locked: null });
      expect(p.nvram.used).toBeGreaterThan(0);
      expect(p.nvram.used).toBeLessThanOrEqual(p.nvram.budget);
    }
    expect(status.partitions.some((p: { epoch: number }) => p.epoch > 0)).toBe(true);
    expect(expectCode(['operator', 'status', '--data', data], 0).out.trim().split('\n')).toHaveLength(2);
    // With the operator secret the devices open every record and count hank's lock.
    const counted = JSON.parse(expectCode(['operator', 'status', '--data', data, '--operator-key-file', 'zero-op.key', '--json'], 0).out);
    expect(counted).toMatchObject({ records: 2, locked: 1 });
    expect(counted.partitions.map((p: { locked: number }) => p.locked).reduce((a: number, b: number) => a + b)).toBe(1);
    expect(expectCode(['operator', 'status', '--data', data, '--operator-key-file', 'zero-other.key'], 1).err).toMatch(/refused the operator secret/);
    const nvram = [0, 1].map((p) => readFileSync(join(data, `nvram-${p}.bin`)));
    // No terminal to confirm on: a usage error, nothing done.
    expect(expectCode(['operator', 'zeroize', '--data', data, '--operator-key-file', 'zero-op.key'], 2).err).toMatch(/--yes/);
    expect(expectCode(['operator', 'zeroize', '--data', data, '--operator-key-file', 'zero-other.key', '--yes'], 1).err).toMatch(/refused the operator secret/);
    // The wrong secret destroyed nothing: the vault serves and gina recovers her key.
    s = await startServe(served);
    try {
      expectCode(['escrow', 'recover', ...gina(s.url), '--password-file', 'gpw', '--out', 'gina-out.key'], 0);
      const digits = (f: string) => readFileSync(join(dir, f), 'utf8').replace(/\s/g, '');
      expect(digits('gina-out.key')).toBe(digits('gina.key'));
    } finally {
      await stop(s.proc);
    }
    const done = JSON.parse(expectCode(['operator', 'zeroize', '--data', data, '--operator-key-file', 'zero-op.key', '--yes', '--json'], 0).out);
    expect(done).toMatchObject({ ok: true, command: 'operator zeroize', zeroized: true, partitions: 2 });
    const after = bkv(['operator', 'status', '--data', data, '--json']);
    expect(after.code).toBe(1);
    expect(JSON.parse(after.out)).toMatchObject({ ok: false, serving: false });
    for (const p of JSON.parse(after.out).partitions) expect(p).toMatchObject({ state: 'zeroized', selfTest: 'notRun' });
    const refused = bkv(['serve', ...served]);
    expect(refused.code).toBe(1);
    expect(refused.err).toMatch(/zeroized by its operator/);
    // The keys are gone, not only flagged: with the NVRAM of before, the devices still can not open a record.
    for (const p of [0, 1]) writeFileSync(join(data, `nvram-${p}.bin`), nvram[p]!);
    const restored = bkv(['serve', ...served]);
    expect(restored.code).toBe(1);
    expect(restored.err).toMatch(/token keys are missing/);
  }, 300_000);

  it('serve on defaults keeps the token PINs in <data>.operator (0700, 0600), names it at start, and no file of the data folder holds them', () => {
    const data = join(dir, 'vault');
    const op = `${data}.operator`;
    expect(serveErr).toContain(`bkv: token PINs: ${op} (development mode: keep this folder apart from the data folder)`);
    expect(statSync(op).mode & 0o777).toBe(0o700);
    const [file] = readdirSync(op);
    expect(file).toMatch(/^token-bkv-[0-9a-f]{12}\.json$/);
    expect(statSync(join(op, file!)).mode & 0o777).toBe(0o600);
    const pins = JSON.parse(readFileSync(join(op, file!), 'utf8')) as { userPin: string; soPin: string };
    for (const pin of [pins.userPin, pins.soPin]) {
      expect(pin).toMatch(/^[0-9a-f]{32}$/);
      expect(filesContaining(data, pin)).toEqual([]);
      expect(serveErr).not.toContain(pin);
    }
    const cfg = JSON.parse(readFileSync(join(data, 'token.json'), 'utf8')) as Record<string, unknown>;
    expect(Object.keys(cfg).sort()).toEqual(['format', 'kind', 'label', 'version']);
  });

  it('serve refuses a token pin file inside the data folder, and two sources of PINs at once', () => {
    const data = join(dir, 'vault-refuse');
    writeFileSync(join(dir, 'outside-pins'), 'user pin 1234\nso pin 5678\n', { mode: 0o600 });
    let r = bkv(['serve', '--data', data, '--port', '0', '--token-pin-file', join(data, 'pins')]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/TokenPinError: the token pin file .*vault-refuse\/pins lies inside the data folder .*vault-refuse: whoever copies the data folder would get the token PINs/);
    r = bkv(['serve', '--data', data, '--port', '0', '--operator-dir', join(data, 'op')]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/the operator folder .* lies inside the data folder/);
    r = bkv(['serve', '--data', data, '--port', '0', '--token-pin-file', 'outside-pins'], undefined, { BKV_TOKEN_PIN: 'user pin 1234' });
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/one place: --token-pin-file and BKV_TOKEN_PIN/);
    expect(existsSync(join(data, 'token.json'))).toBe(false);
  }, 60_000);

  it('serve with --token-pin-file (child-process devices): the token opens with the operator\'s PINs; a copy of the folder without them does not', async () => {
    const data = join(dir, 'vault-pinfile');
    const pinFile = join(dir, 'operator-pins');
    writeFileSync(pinFile, 'operator-user-pin-1\noperator-so-pin-2\n', { mode: 0o600 });
    const s = await startServe(['--data', data, '--port', '0', '--partitions', '1', '--process', '--token-pin-file', pinFile]);
    try {
      expect(s.err()).toContain(`bkv: token PINs: the pin file ${pinFile}`);
    } finally {
      await stop(s.proc);
    }
    // The token profile line once at start, from the child-process device too.
    expect(s.err().match(/bkv device \d+: token profile [^\n]*/g)).toEqual(['bkv device 0: token profile gcm-ecdh; the token meets gcm-ecdh, ctr-hmac']);
    expect(existsSync(`${data}.operator`)).toBe(false);
    for (const pin of ['operator-user-pin-1', 'operator-so-pin-2']) expect(filesContaining(data, pin)).toEqual([]);
    // The same folder on defaults (development mode) finds no PINs: it does not start.
    const r = bkv(['serve', '--data', data, '--port', '0']);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/TokenPinError: the token bkv-[0-9a-f]{12} of .* exists, but its PINs are not in/);
    // The user PIN from the environment opens it.
    const e = await startServe(['--data', data, '--port', '0'], { BKV_TOKEN_PIN: 'operator-user-pin-1' });
    try {
      expect(e.err()).toContain('bkv: token PINs: from BKV_TOKEN_PIN');
    } finally {
      await stop(e.proc);
    }
  }, 120_000);

  it('serve prints no credential of the store URL, from --store or BKV_STORE', () => {
    const secret = 'S3cr3t-pw';
    const store = `postgres://vaultuser:${secret}@127.0.0.1:1/vault?schema=s&password=${secret}2`;
    for (const [args, env] of [
      [['--store', store], {}],
      [[], { BKV_STORE: store }],
    ] as const) {
      const r = bkv(['serve', '--data', join(dir, 'vault-store'), '--port', '0', ...args], undefined, env);
      expect(r.code).toBe(1); // nothing listens on port 1
      expect(r.err).toMatch(/StorageError/);
      expect(r.err + r.out).not.toContain(secret);
      expect(r.err + r.out).not.toContain('vaultuser');
    }
  }, 60_000);

  it('URLs lose their credentials in what serve prints (the start line, error messages)', () => {
    const line = listeningLine('http://127.0.0.1:8080', 2, 'emulator', 'postgres://vault:pa%2Fss@db.example:5432/vault?schema=s&sslpassword=kp', '/d');
    expect(line).toBe('vault listening on http://127.0.0.1:8080 (2 partitions, emulator token, store postgres://***@db.example:5432/vault?schema=s&sslpassword=***)');
    expect(scrubCredentials('connect postgresql://u@h/db failed; retry postgres://u:p@ss@h2/db?password=x#f')).toBe('connect postgresql://***@h/db failed; retry postgres://***@h2/db?password=***#f');
    expect(scrubCredentials('SQLite in /data/vault.db, http://127.0.0.1:80/v1')).toBe('SQLite in /data/vault.db, http://127.0.0.1:80/v1');
  });

  it.skipIf(!process.env.BKV_PG_URL)('serve on PostgreSQL from BKV_STORE prints the store URL without user and password', async () => {
    const secret = 'S3cr3t-pw';
    const u = new URL(process.env.BKV_PG_URL!);
    u.password = secret; // trust authentication on the test cluster: any password passes
    u.searchParams.set('schema', `bkv_cli_${Date.now().toString(36)}`);
    const s = await startServe(['--data', join(dir, 'vault-pg'), '--port', '0', '--partitions', '1'], { BKV_STORE: u.href });
    try {
      expect(s.err()).toMatch(/listening on .*store postgres:\/\/\*\*\*@/);
      expect(s.err() + s.out()).not.toContain(secret);
    } finally {
      await stop(s.proc);
    }
  }, 90_000);

  it('demo runs on embedded defaults and names the token PINs\' folder', () => {
    const r = spawnSync(process.execPath, [bin, 'demo', '--partitions', '1'], { cwd: dir, encoding: 'utf8', timeout: 120_000 });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/token PINs: \S+\/vault\.operator \(development mode: keep this folder apart from the data folder \S+\/vault\)/);
    expect(r.stdout).toMatch(/demo finished/);
  }, 120_000);
});

/** Starts `bkv serve` with `args`, reads /health once it listens, stops it (SIGTERM). */
async function serveOnce(args: string[]): Promise<{ err: string; health: unknown }> {
  const s = await serveIn(dir, ['--port', '0', '--partitions', '1', ...args], {}, /client operations need|DEVELOPMENT MODE/);
  const health = await (await fetch(`${s.url}/health`)).json();
  await stop(s.proc);
  return { err: s.err(), health };
}
