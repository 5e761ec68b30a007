/**
 * One process at a time on a data folder (host/vault/folder-lock.ts): a live holder refuses
 * others with FolderBusyError, a dead holder's lock is taken over, and one process shares its own.
 * `test/host/cli/cli.test.ts` ("audit-verify") runs an operator command beside a serving vault: refused.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FOLDER_LOCK_FILE, FolderBusyError, lockDataFolder } from '../../../host/vault/folder-lock.ts';
import { thrownBy } from '../../helpers/errors.ts';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
const fresh = () => {
  const d = mkdtempSync(join(tmpdir(), 'bkv-lock-'));
  dirs.push(d);
  return d;
};

describe('the data folder lock', () => {
  it('is shared within one process and gone when the last share is released', () => {
    const d = fresh();
    const a = lockDataFolder(d);
    const b = lockDataFolder(d);
    expect(readFileSync(join(d, FOLDER_LOCK_FILE), 'utf8').trim()).toBe(String(process.pid));
    a();
    a(); // a second release of one share changes nothing
    expect(existsSync(join(d, FOLDER_LOCK_FILE))).toBe(true);
    b();
    expect(existsSync(join(d, FOLDER_LOCK_FILE))).toBe(false);
  });

  it('refuses while another live process holds it, and takes it over once that process is gone', async () => {
    const d = fresh();
    const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
    try {
      writeFileSync(join(d, FOLDER_LOCK_FILE), `${child.pid}\n`);
      const err = thrownBy(() => lockDataFolder(d));
      expect(err).toBeInstanceOf(FolderBusyError);
      expect((err as FolderBusyError).pid).toBe(child.pid);
      expect((err as Error).message).toMatch(/in use by process/);
    } finally {
      child.kill('SIGKILL');
      await new Promise((r) => child.once('exit', r));
    }
    const release = lockDataFolder(d);
    expect(readFileSync(join(d, FOLDER_LOCK_FILE), 'utf8').trim()).toBe(String(process.pid));
    release();
  });

  it('takes over the lock of a process that died without releasing it, or a damaged lock file', () => {
    const d = fresh();
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
    writeFileSync(join(d, FOLDER_LOCK_FILE), `${dead.stdout}\n`);
    lockDataFolder(d)();
    writeFileSync(join(d, FOLDER_LOCK_FILE), 'not a pid');
    lockDataFolder(d)();
    expect(existsSync(join(d, FOLDER_LOCK_FILE))).toBe(false);
  });
});
