/**
 * Files that survive a crash or a power cut, and the cross-process lock files of the data folder.
 *
 * - Whole-file writes: temp file, fsync, rename (or link, to create without replacing), fsync of
 *   the folder (POSIX rename(2) is atomic; the folder's fsync makes the new name durable). The
 *   device's files (NVRAM, the emulator's token store, the token configuration, the operator
 *   folder) and the host's issuer key files are written this way.
 * - Lock files (O_EXCL create, the owner's pid inside; a lock whose owner process is gone, or
 *   older than its stale time, is broken): the token lock of a data folder and the emulator's
 *   token store lock. Waiting is synchronous (`sleepSync`), as the PKCS#11 calls that wait are.
 * It is the part of hsm/ the host may import.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { threadId } from 'node:worker_threads';

const tempName = (file: string): string => `${file}.${randomBytes(8).toString('hex')}.tmp`;

/** Writes `data` to a new temp file beside `file` and syncs it; returns the temp file's name. */
function writeTemp(file: string, data: Uint8Array | string): string {
  const tmp = tempName(file);
  const bytes = typeof data === 'string' ? Buffer.from(data) : data;
  const fd = fs.openSync(tmp, 'wx', 0o600);
  try {
    fs.writeSync(fd, bytes, 0, bytes.length, 0);
    fs.fsyncSync(fd);
  } catch (e) {
    fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  fs.closeSync(fd);
  return tmp;
}

/** Writes a whole file atomically and durably: temp file, fsync, rename, fsync of the folder. */
export function writeFileDurably(file: string, data: Uint8Array | string): void {
  const tmp = writeTemp(file, data);
  fs.renameSync(tmp, file);
  fsyncDir(path.dirname(file));
}

/**
 * Creates `file` atomically and durably unless it exists (temp file, fsync, link, fsync of the
 * folder): a file already there stands, whoever wrote it. Returns whether this call created it.
 */
export function createFileDurably(file: string, data: Uint8Array | string): boolean {
  const tmp = writeTemp(file, data);
  let created = true;
  try {
    fs.linkSync(tmp, file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    created = false;
  } finally {
    fs.unlinkSync(tmp);
  }
  fsyncDir(path.dirname(file));
  return created;
}

export function fsyncDir(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

const sleeper = new Int32Array(new SharedArrayBuffer(4));

/** Blocks the calling thread for `ms` milliseconds. */
export function sleepSync(ms: number): void {
  Atomics.wait(sleeper, 0, 0, ms);
}

export interface FileLockOptions {
  /** Give up waiting after this long (default 30 s): `FileLockTimeout`. */
  timeoutMs?: number;
  /** A lock older than this is taken as left by a crash and broken (default 30 s). */
  staleMs?: number;
  /** How long to sleep between attempts (default 2 ms). */
  pollMs?: number;
}

/** The lock stayed held by another owner for longer than the timeout. */
export class FileLockTimeout extends Error {
  override readonly name = 'FileLockTimeout';
}

/**
 * Runs `fn` holding the exclusive lock file `file` (O_EXCL create; a lock whose owner process is
 * gone, or older than `staleMs`, is broken). Not reentrant: a nested call on the same file by
 * the same thread would wait for itself, so callers keep locked sections flat. A failure to
 * create the lock file other than "it exists" is thrown as it is.
 */
export function withFileLock<T>(file: string, fn: () => T, opts: FileLockOptions = {}): T {
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const staleMs = opts.staleMs ?? 30_000;
  const pollMs = opts.pollMs ?? 2;
  const deadline = performance.now() + timeoutMs;
  const me = `${process.pid} ${threadId} ${randomBytes(8).toString('hex')}`;
  for (;;) {
    try {
      const fd = fs.openSync(file, 'wx', 0o600);
      fs.writeSync(fd, me);
      fs.closeSync(fd);
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      if (breakIfStale(file, staleMs)) continue;
      if (performance.now() > deadline) throw new FileLockTimeout(`lock ${file} held for more than ${timeoutMs} ms`);
      sleepSync(pollMs);
    }
  }
  try {
    return fn();
  } finally {
    try {
      if (fs.readFileSync(file, 'utf8') === me) fs.unlinkSync(file);
    } catch {
      // broken by another process's stale check: nothing to release
    }
  }
}

/** Removes the lock file if its owner process is gone or it is older than `staleMs`; true when it is gone. */
function breakIfStale(file: string, staleMs: number): boolean {
  let owner: string;
  let st: fs.Stats;
  try {
    owner = fs.readFileSync(file, 'utf8');
    st = fs.statSync(file);
  } catch {
    return true;
  }
  const pid = Number(owner.split(' ')[0]);
  const dead = Number.isSafeInteger(pid) && pid > 0 && pid !== process.pid && !processAlive(pid);
  if (!dead && Date.now() - st.mtimeMs <= staleMs) return false;
  try {
    if (fs.readFileSync(file, 'utf8') === owner) fs.unlinkSync(file);
  } catch {
    // gone already
  }
  return true;
}

/** Whether a process with this pid runs (EPERM: it does, as another user). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
