/**
 * Whole-file writes that survive a crash or a power cut: temp file, fsync, rename, fsync of the
 * folder (POSIX rename(2) is atomic; the folder's fsync makes the new name durable). The device's
 * files (NVRAM, the emulator's token store, the operator folder) and the host's issuer key files
 * are written this way; it is the part of hsm/ the host may import.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

/** Writes a whole file atomically and durably: temp file, fsync, rename, fsync of the folder. */
export function writeFileDurably(file: string, data: Uint8Array): void {
  const tmp = `${file}.${randomBytes(8).toString('hex')}.tmp`;
  const fd = fs.openSync(tmp, 'wx', 0o600);
  try {
    fs.writeSync(fd, data, 0, data.length, 0);
    fs.fsyncSync(fd);
  } catch (e) {
    fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  fs.closeSync(fd);
  fs.renameSync(tmp, file);
  fsyncDir(path.dirname(file));
}

export function fsyncDir(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}
