/**
 * One process at a time on a data folder: `VaultHost.open` holds `DATA/vault.lock` (O_EXCL, the
 * holder's pid inside) until `close`. Two processes on one folder would each drive their own
 * devices over the same NVRAM and storage: an operator command run beside a serving vault (a
 * zeroize whose flag the server's next NVRAM write overwrites, a second server charging the same
 * guesses twice). A lock whose holder is no longer alive (a crash, a kill -9) is taken over. In
 * one process the lock is shared (counted): tests open a folder again before the first host closed.
 */
import { closeSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { processAlive } from '../../hsm/durable-file.ts';

export const FOLDER_LOCK_FILE = 'vault.lock';

export class FolderBusyError extends Error {
  override readonly name = 'FolderBusyError';
  constructor(
    readonly dataDir: string,
    readonly pid: number,
  ) {
    super(`the data folder ${dataDir} is in use by process ${pid} (a running bkv serve or operator command); stop it first`);
  }
}

const held = new Map<string, number>();

/** Takes the folder's lock (or a share of this process's) and returns its release. Throws FolderBusyError. */
export function lockDataFolder(dataDir: string): () => void {
  const path = join(dataDir, FOLDER_LOCK_FILE);
  const count = held.get(path) ?? 0;
  if (count === 0) {
    for (let attempt = 0; ; attempt++) {
      try {
        const fd = openSync(path, 'wx', 0o600);
        try {
          writeSync(fd, `${process.pid}\n`);
        } finally {
          closeSync(fd);
        }
        break;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 0) throw e;
        let pid = NaN;
        try {
          pid = Number.parseInt(readFileSync(path, 'utf8'), 10);
        } catch {
          // gone meanwhile, or unreadable: try again
        }
        if (Number.isSafeInteger(pid) && pid > 0 && pid !== process.pid && processAlive(pid)) throw new FolderBusyError(dataDir, pid);
        // The holder died (or the file is damaged): take the lock over.
        try {
          unlinkSync(path);
        } catch {
          // another process took it over first; the next openSync says so
        }
      }
    }
  }
  held.set(path, count + 1);
  let released = false;
  return () => {
    if (released) return;
    released = true;
    const n = (held.get(path) ?? 1) - 1;
    if (n > 0) {
      held.set(path, n);
      return;
    }
    held.delete(path);
    try {
      unlinkSync(path);
    } catch {
      // already gone
    }
  };
}
