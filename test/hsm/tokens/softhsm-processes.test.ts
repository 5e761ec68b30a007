/**
 * Devices of several partitions open one SoftHSM2 token from their own processes. SoftHSM2
 * writes the token's flags on every C_Login, and a C_GetTokenInfo that another process makes
 * meanwhile fails with CKR_GENERAL_ERROR (SoftHSM 2.6 on this machine: about one call in eight
 * while the two overlap). Pkcs11Token's constructor looks its slot up by label
 * (C_GetSlotList, C_GetTokenInfo): with lockObjectStore it does so under the data folder's token
 * lock, as it logs in, so a device booting while another logs in does not fail its boot (a CI
 * run: "BootFailed: TokenError: CKR_GENERAL_ERROR" at VaultHost.open of two partitions).
 *
 * Four processes for 5 s (test/hsm/tokens/softhsm-race-child.ts): one logs in and out under the
 * lock; two make Pkcs11Token over and over; the control looks slots up without the lock and must
 * see the failure, so that the run shows the processes did overlap.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openVaultToken } from '../../../hsm/tokens/open.ts';
import { skipReason } from '../../helpers/tokens.ts';

/** How long each process runs: without the lock, two opening processes failed 2 to 12 lookups in this time on this machine. */
const MS = 5000;
const child = join(import.meta.dirname, 'softhsm-race-child.ts');
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) for (const x of [d, `${d}.operator`]) rmSync(x, { recursive: true, force: true });
});

interface Report {
  role: string;
  done: number;
  errors: Record<string, number>;
}

function run(role: string, dir: string, ms: number): Promise<Report> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['--import', 'tsx', child, role, dir, String(ms)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('error', reject);
    p.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out.trim().split('\n').pop()!) as Report) : reject(new Error(`${role} exited ${code}: ${err}`))));
  });
}

const why = skipReason('softhsm');
(why ? describe.skip : describe)(`Pkcs11Token on one SoftHSM2 token from several processes${why ? ` skipped: ${why}` : ''}`, () => {
  it("a token opened while another process logs in finds its slot: the constructor's lookup holds the token lock", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bkv-softhsm-procs-'));
    dirs.push(dir);
    openVaultToken(dir, 'softhsm'); // the token made once, before the four start
    const [login, raw, ...opens] = await Promise.all([run('login', dir, MS), run('raw', dir, MS), run('open', dir, MS), run('open', dir, MS)]);
    expect(login.errors).toEqual({});
    expect(login.done).toBeGreaterThan(50);
    // the control: the same lookup without the lock fails while the logins run
    expect(raw.errors['Pkcs11Error: CKR_GENERAL_ERROR'] ?? 0, JSON.stringify(raw)).toBeGreaterThan(0);
    for (const open of opens) {
      expect(open.errors, JSON.stringify(open)).toEqual({});
      expect(open.done).toBeGreaterThan(50);
    }
  }, 30_000);
});
