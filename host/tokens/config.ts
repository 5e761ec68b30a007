/**
 * The vault token's configuration in the data folder (`token.json`) and the cross-process lock
 * its users share. PKCS#11 v2.40 §2.5: a token has a Security Officer PIN and a user PIN; here
 * both are generated at the vault's first start (128 random bits each, hex) and kept in
 * `token.json` with the token's label. That file stands in for the operator's HSM credentials
 * (on a real HSM they live in an operator's hands or a key ceremony's safe, not beside the
 * data): whoever reads it can log in to the token, though never read a key out of it.
 *
 *   { "format": "backup-key-vault token", "version": 1, "kind": "emulator" | "softhsm",
 *     "label": "bkv-<12 hex>", "soPin": "<32 hex>", "userPin": "<32 hex>" }
 *
 * The file is created once (temp file, fsync, link: the first of several racing device
 * processes wins, the others read theirs) and never rewritten; opening a data folder with the
 * other token kind is an error.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { threadId } from 'node:worker_threads';

export type TokenKind = 'emulator' | 'softhsm';
export const TOKEN_KINDS: readonly TokenKind[] = ['emulator', 'softhsm'];
export const TOKEN_CONFIG_FILE = 'token.json';
export const TOKEN_LOCK_FILE = 'token.lock';

export interface VaultTokenConfig {
  format: 'backup-key-vault token';
  version: 1;
  kind: TokenKind;
  label: string;
  soPin: string;
  userPin: string;
}

export function isTokenKind(k: unknown): k is TokenKind {
  return k === 'emulator' || k === 'softhsm';
}

function parse(text: string, file: string): VaultTokenConfig {
  let v: Partial<VaultTokenConfig>;
  try {
    v = JSON.parse(text) as Partial<VaultTokenConfig>;
  } catch {
    throw new Error(`${file}: not JSON`);
  }
  if (v.format !== 'backup-key-vault token' || v.version !== 1 || !isTokenKind(v.kind)) throw new Error(`${file}: not a token configuration`);
  for (const k of ['label', 'soPin', 'userPin'] as const) {
    if (typeof v[k] !== 'string' || v[k]!.length < 4 || Buffer.byteLength(v[k]!) > 32) throw new Error(`${file}: bad ${k}`);
  }
  return v as VaultTokenConfig;
}

/** Reads the data folder's token configuration, creating it for `kind` on first use. */
export function settleTokenConfig(dataDir: string, kind: TokenKind): VaultTokenConfig {
  const file = path.join(dataDir, TOKEN_CONFIG_FILE);
  let text: string | undefined;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  if (text !== undefined) {
    const cfg = parse(text, file);
    if (cfg.kind !== kind) throw new Error(`${dataDir} was created with the ${cfg.kind} token; it can not be opened with the ${kind} token`);
    return cfg;
  }
  fs.mkdirSync(dataDir, { recursive: true });
  const cfg: VaultTokenConfig = {
    format: 'backup-key-vault token',
    version: 1,
    kind,
    label: `bkv-${randomBytes(6).toString('hex')}`,
    soPin: randomBytes(16).toString('hex'),
    userPin: randomBytes(16).toString('hex'),
  };
  const tmp = `${file}.${randomBytes(8).toString('hex')}.tmp`;
  const fd = fs.openSync(tmp, 'wx', 0o600);
  try {
    fs.writeSync(fd, `${JSON.stringify(cfg, null, 2)}\n`);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  try {
    fs.linkSync(tmp, file); // fails if another process got there first: theirs stands
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  } finally {
    fs.unlinkSync(tmp);
  }
  const dfd = fs.openSync(dataDir, 'r');
  try {
    fs.fsyncSync(dfd);
  } finally {
    fs.closeSync(dfd);
  }
  return settleTokenConfig(dataDir, kind);
}

export interface FileLockOptions {
  timeoutMs?: number;
  staleMs?: number;
}

const sleeper = new Int32Array(new SharedArrayBuffer(4));

/**
 * Runs `fn` holding an exclusive lock file (O_EXCL create; a lock whose owner process is gone,
 * or older than `staleMs`, is broken). Not reentrant: a nested call on the same file by the
 * same thread would wait for itself, so callers keep locked sections flat.
 */
export function withFileLock<T>(file: string, fn: () => T, opts: FileLockOptions = {}): T {
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const staleMs = opts.staleMs ?? 30_000;
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
      if (performance.now() > deadline) throw new Error(`lock ${file} held for more than ${timeoutMs} ms`);
      Atomics.wait(sleeper, 0, 0, 2);
    }
  }
  try {
    return fn();
  } finally {
    try {
      if (fs.readFileSync(file, 'utf8') === me) fs.unlinkSync(file);
    } catch {
      // broken by another process's stale check
    }
  }
}

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
  let dead = false;
  if (Number.isSafeInteger(pid) && pid > 0 && pid !== process.pid) {
    try {
      process.kill(pid, 0);
    } catch (e) {
      dead = (e as NodeJS.ErrnoException).code !== 'EPERM';
    }
  }
  if (!dead && Date.now() - st.mtimeMs <= staleMs) return false;
  try {
    if (fs.readFileSync(file, 'utf8') === owner) fs.unlinkSync(file);
  } catch {
    // gone already
  }
  return true;
}
