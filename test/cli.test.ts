/**
 * The `bkv` command line, end to end on real processes: `bkv serve` in a child process, and the
 * key, backup and escrow commands run as separate processes against it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';

const root = resolve(import.meta.dirname, '..');
const bin = join(root, 'bin', 'bkv.mjs');
let dir: string;
let server: ChildProcess;
let url: string;

function bkv(args: string[], input?: string) {
  const r = spawnSync(process.execPath, [bin, ...args], { cwd: dir, encoding: 'utf8', input, timeout: 60_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

/** Runs and expects an exit code, showing the command's stderr when it differs. */
function expectCode(args: string[], code: number) {
  const r = bkv(args);
  expect(r.code, `bkv ${args.join(' ')}\n${r.err}`).toBe(code);
  return r;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'bkv-cli-'));
  server = spawn(process.execPath, [bin, 'serve', '--data', join(dir, 'vault'), '--port', '0', '--partitions', '2', '--record-limit', '60/20'], { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  url = await new Promise<string>((res, rej) => {
    let buf = '';
    const t = setTimeout(() => rej(new Error(`serve did not start: ${buf}`)), 60_000);
    server.stderr!.on('data', (d: Buffer) => {
      buf += d.toString();
      const m = /listening on (http:\/\/\S+)/.exec(buf);
      if (m && buf.includes('clients pin')) {
        clearTimeout(t);
        res(m[1]!);
      }
    });
    server.on('exit', (c) => rej(new Error(`serve exited ${c}: ${buf}`)));
  });
}, 90_000);

afterAll(async () => {
  if (server && server.exitCode === null) {
    const done = new Promise((r) => server.on('exit', r));
    server.kill('SIGTERM');
    await done;
  }
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
    const common = ['--vault', url, '--vault-key', join(dir, 'vault', 'vault-key.pub'), '--id', 'carol'];
    expect(bkv(['key', 'new', '--out', 'carol.key']).code).toBe(0);
    writeFileSync(join(dir, 'pw'), 'tr0ub4dor\n');
    writeFileSync(join(dir, 'bad'), 'guess\n');
    writeFileSync(join(dir, 'pw2'), 'new passphrase\n');
    expectCode(['escrow', 'register', ...common, '--key-file', 'carol.key', '--password-file', 'pw', '--attempts', '4'], 0);
    const wrong = expectCode(['escrow', 'recover', ...common, '--password-file', 'bad'], 2);
    expect(wrong.err).toMatch(/wrong password; attempts remaining 3/);
    expectCode(['escrow', 'recover', ...common, '--password-file', 'pw', '--out', 'recovered.key'], 0);
    const norm = (s: string) => s.replace(/\s+/g, '').slice(0, 64);
    expect(norm(readFileSync(join(dir, 'recovered.key'), 'utf8'))).toBe(norm(readFileSync(join(dir, 'carol.key'), 'utf8')));
    expectCode(['escrow', 'change-password', ...common, '--password-file', 'pw', '--new-password-file', 'pw2'], 0);
    expectCode(['escrow', 'recover', ...common, '--password-file', 'pw'], 2);
    expect(bkv(['escrow', 'status', ...common]).out).toMatch(/attempts remaining 3 of 4/);
    expectCode(['escrow', 'delete', ...common, '--password-file', 'pw'], 2); // the old password proves nothing
    expect(expectCode(['escrow', 'delete', ...common, '--key-file', 'carol.key'], 0).out).toMatch(/deleted/);
    expect(bkv(['escrow', 'status', ...common]).out).toMatch(/not registered/);
  }, 120_000);

  it('refuses a vault whose key does not match the pinned one, and bad usage', () => {
    const pub = JSON.parse(readFileSync(join(dir, 'vault', 'vault-key.pub'), 'utf8')) as Record<string, unknown>;
    pub.enclavePublicKey = Buffer.alloc(32, 1).toString('base64url');
    writeFileSync(join(dir, 'other.pub'), JSON.stringify(pub));
    const r = bkv(['escrow', 'status', '--vault', url, '--vault-key', 'other.pub', '--id', 'x']);
    expect(r.code).toBe(64);
    expect(r.err).toMatch(/pinned/);
    expect(bkv(['escrow', 'status', '--vault', url]).code).toBe(64);
    expect(bkv(['nonsense']).code).toBe(64);
    expect(bkv(['backup', 'encrypt', 'a', '--key-file']).code).toBe(64);
  }, 60_000);
});
