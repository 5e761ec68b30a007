/**
 * `bkv token serve` as a user runs it (node bin/bkv.mjs): the P11_KIT_SERVER_ADDRESS line on
 * stdout (or, with --json, one object), a PKCS#11 application reaching the token through
 * p11-kit-client.so, usage errors (exit 2), a data folder of another token backend refused
 * (exit 1), and SIGTERM closing the server with exit 0 and its socket removed. The pkcs11-tool
 * step skips, saying why, without p11-kit-client.so or pkcs11-tool; with CI=true it fails.
 */
import { execFile, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { EXIT } from '../../../host/cli/exit-codes.ts';
import { P11_KIT_CLIENT } from '../../../host/cli/cmd-token.ts';
import { bin, runBkv } from '../../helpers/cli.ts';

const run = promisify(execFile);
const ci = process.env.CI === 'true' || process.env.CI === '1';
const dir = mkdtempSync(join(tmpdir(), 'bkv-token-serve-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const hasTool = (p: string) => (process.env.PATH ?? '').split(':').some((d) => d && existsSync(join(d, p)));
const toolsMissing = !existsSync(P11_KIT_CLIENT) || !hasTool('pkcs11-tool') ? 'p11-kit-client.so or pkcs11-tool not installed (apt-get install -y p11-kit-modules opensc)' : null;
if (toolsMissing && ci) throw new Error(`CI=true: ${toolsMissing}`);

/** Starts `bkv token serve ARGS`; resolves with the process and its output once `ready` shows on stdout. */
function start(args: string[], ready: RegExp): Promise<{ proc: ChildProcess; out: () => string; err: () => string }> {
  const proc = spawn(process.execPath, [bin, 'token', 'serve', ...args], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`bkv token serve did not start: ${err}`)), 60_000);
    proc.on('exit', (c) => {
      clearTimeout(t);
      reject(new Error(`bkv token serve exited ${c}: ${err}`));
    });
    proc.stdout!.on('data', () => {
      if (!ready.test(out)) return;
      clearTimeout(t);
      proc.removeAllListeners('exit');
      resolve({ proc, out: () => out, err: () => err });
    });
  });
}

function stopped(proc: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => {
    proc.on('exit', (code) => resolve(code));
    proc.kill('SIGTERM');
  });
}

describe('bkv token serve', () => {
  it('prints P11_KIT_SERVER_ADDRESS on stdout, serves the token, and stops on SIGTERM with exit 0 and its socket removed', async () => {
    const socket = join(dir, 'token.sock');
    const s = await start(['--data', join(dir, 'vault'), '--socket', socket], /P11_KIT_SERVER_ADDRESS=\S+\n/);
    try {
      expect(s.out()).toBe(`P11_KIT_SERVER_ADDRESS=unix:path=${socket}\n`);
      expect(s.err()).toMatch(/token PINs: .*vault\.operator/);
      expect(s.err()).toMatch(/token bkv-[0-9a-f]+ of .* served on /);
      if (toolsMissing) {
        console.warn(`pkcs11-tool step skipped: ${toolsMissing}`);
      } else {
        const { stdout } = await run('pkcs11-tool', ['--module', P11_KIT_CLIENT, '--list-slots'], { env: { ...process.env, P11_KIT_SERVER_ADDRESS: `unix:path=${socket}` } });
        expect(stdout).toContain('token manufacturer : Backup Key Vault');
      }
    } finally {
      expect(await stopped(s.proc)).toBe(0);
    }
    expect(existsSync(socket)).toBe(false);
  }, 90_000);

  it('--json: one object on stdout once it listens', async () => {
    const socket = join(dir, 'json.sock');
    const s = await start(['--data', join(dir, 'vault'), '--socket', socket, '--json'], /\n/);
    try {
      const lines = s.out().trim().split('\n');
      expect(lines).toHaveLength(1);
      expect(JSON.parse(lines[0]!)).toMatchObject({ ok: true, command: 'token serve', status: 'listening', socket, address: `unix:path=${socket}`, module: P11_KIT_CLIENT });
    } finally {
      expect(await stopped(s.proc)).toBe(0);
    }
  }, 90_000);

  it('usage errors exit 2: no --socket, an unknown subcommand, an unknown option', () => {
    expect(runBkv(dir, ['token', 'serve', '--data', 'vault']).err).toMatch(/--socket is required/);
    for (const args of [['token', 'serve', '--data', 'vault'], ['token', 'start'], ['token', 'serve', '--socket', 's', '--sockte', 'x']]) expect(runBkv(dir, args).code, args.join(' ')).toBe(EXIT.usage);
  });

  it('a data folder of the SoftHSM2 backend is refused (exit 1): the server serves the emulator token only', () => {
    const other = join(dir, 'softhsm-vault');
    mkdirSync(other);
    writeFileSync(join(other, 'token.json'), JSON.stringify({ format: 'backup-key-vault token', version: 2, kind: 'softhsm', label: 'bkv-0123456789ab' }));
    const r = runBkv(dir, ['token', 'serve', '--data', other, '--socket', join(dir, 'x.sock')]);
    expect(r.code, r.err).toBe(EXIT.failure);
    expect(r.err).toMatch(/created with the softhsm token/);
  });
});
