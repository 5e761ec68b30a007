/**
 * Terminal helpers for the `bkv` CLI: passwords from a file or a prompt that does not echo,
 * key files, the pinned vault key file, and progress lines drawn only on a terminal.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { Writable } from 'node:stream';
import { parseBackupKey, formatBackupKey } from '../../client/backup-key.ts';
import { UsageError } from './args.ts';

const te = new TextEncoder();

export function b64url(b: Uint8Array): string {
  return Buffer.from(b).toString('base64url');
}
export function fromB64url(s: string, what: string): Uint8Array {
  if (typeof s !== 'string' || !/^[A-Za-z0-9_-]*$/.test(s)) throw new UsageError(`${what}: not base64url`);
  return new Uint8Array(Buffer.from(s, 'base64url'));
}

/**
 * A password: the file's first line, or typed at a prompt (no echo) when stdin is a terminal;
 * never from argv. `option` names the file option in the error without a terminal.
 */
export async function readPassword(file: string | undefined, prompt: string, option = '--password-file'): Promise<Uint8Array> {
  if (file !== undefined) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8').split(/\r?\n/)[0] ?? '';
    } catch (e) {
      throw new UsageError(`${file}: ${(e as NodeJS.ErrnoException).code ?? 'unreadable'}`);
    }
    if (text.length === 0) throw new UsageError(`${file}: the password file is empty`);
    return te.encode(text);
  }
  if (!process.stdin.isTTY) throw new UsageError(`no terminal to type a password: pass ${option}`);
  let muted = false;
  const out = new Writable({
    write(chunk, _enc, cb) {
      if (!muted) process.stderr.write(chunk);
      cb();
    },
  });
  const rl = createInterface({ input: process.stdin, output: out, terminal: true });
  const answer = await new Promise<string>((resolve) => {
    rl.question(prompt, resolve);
    muted = true;
  });
  rl.close();
  process.stderr.write('\n');
  if (answer.length === 0) throw new UsageError('empty password');
  return te.encode(answer);
}

export function readKeyFile(file: string): Uint8Array {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new UsageError(`${file}: ${(e as Error).message}`);
  }
  return parseBackupKey(text);
}

export function writeKeyFile(file: string, key: Uint8Array): void {
  writeFileSync(file, formatBackupKey(key, { checked: true, groupsPerLine: 4 }) + '\n', { mode: 0o600, flag: 'wx' });
}

export const VAULT_KEY_FORMAT = 'bkv-vault-key/1';

export interface PinnedVault {
  enclavePublicKey: Uint8Array;
  opaqueContext: Uint8Array;
  serverPublicKeys: Record<string, Uint8Array>;
}

/** The text of a vault key file: one text per key (a fleet's members compare theirs byte for byte). */
export function vaultKeyFileText(v: PinnedVault): string {
  const json = {
    format: VAULT_KEY_FORMAT,
    enclavePublicKey: b64url(v.enclavePublicKey),
    opaqueContext: new TextDecoder().decode(v.opaqueContext),
    serverPublicKeys: Object.fromEntries(Object.entries(v.serverPublicKeys).map(([k, b]) => [k, b64url(b)])),
  };
  return JSON.stringify(json, null, 2) + '\n';
}

export function writeVaultKeyFile(file: string, v: PinnedVault): void {
  writeFileSync(file, vaultKeyFileText(v));
}

export function readVaultKeyFile(file: string): PinnedVault {
  let j: Record<string, unknown>;
  try {
    j = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new UsageError(`${file}: not a vault key file (${(e as Error).message})`);
  }
  if (j.format !== VAULT_KEY_FORMAT) throw new UsageError(`${file}: not a ${VAULT_KEY_FORMAT} file`);
  const spk = (j.serverPublicKeys ?? {}) as Record<string, string>;
  return {
    enclavePublicKey: fromB64url(j.enclavePublicKey as string, 'enclavePublicKey'),
    opaqueContext: te.encode(String(j.opaqueContext ?? '')),
    serverPublicKeys: Object.fromEntries(Object.entries(spk).map(([k, v]) => [k, fromB64url(v, k)])),
  };
}

const mib = (n: number) => (n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)} MiB` : `${(n / 1024).toFixed(0)} KiB`);
const secs = (s: number) => (s >= 90 ? `${Math.floor(s / 60)} min ${Math.round(s % 60)} s` : `${Math.ceil(s)} s`);

/**
 * A one-line progress bar on stderr (bytes, rate, time left), drawn only when `enabled`
 * (Output.progress: stderr is a terminal and no --json); at most every 100 ms, and at the end.
 */
export function progressBar(label: string, enabled: boolean): { update(done: number, total: number | undefined): void; end(): void } {
  const t0 = performance.now();
  let last = t0;
  let drawn = false;
  return {
    update(done, total) {
      if (!enabled) return;
      const now = performance.now();
      if (now - last < 100 && done !== total) return;
      last = now;
      const rate = done / Math.max((now - t0) / 1000, 1e-3);
      const width = 30;
      const frac = total ? Math.min(1, done / total) : 0;
      const bar = total ? ` [${'#'.repeat(Math.round(frac * width)).padEnd(width, '.')}]` : '';
      const of = total ? ` / ${mib(total)} ${(frac * 100).toFixed(0)}%` : '';
      const left = total && rate > 0 ? `, ${secs((total - done) / rate)} left` : '';
      process.stderr.write(`\r${label}${bar} ${mib(done)}${of}, ${mib(rate)}/s${left}\x1b[K`);
      drawn = true;
    },
    end() {
      if (drawn) process.stderr.write('\n');
    },
  };
}

/**
 * Work of unknown length, or counted as it goes (`bkv serve` loading its records): `label`, the
 * time so far and the last `count(done, total)` (e.g. `1,200 / 5,000 records 24%, 3,100/s`) on
 * one stderr line, redrawn every 200 ms while `enabled`; `end` clears the line.
 */
export function ticker(label: string, enabled: boolean, unit = 'records'): { count(done: number, total: number): void; end(): void } {
  if (!enabled) return { count() {}, end() {} };
  const t0 = performance.now();
  let counted = '';
  const n = (x: number) => Math.round(x).toLocaleString('en-US');
  const draw = () => process.stderr.write(`\r${label}: ${((performance.now() - t0) / 1000).toFixed(1)} s${counted}\x1b[K`);
  draw();
  const timer = setInterval(draw, 200);
  return {
    count(done, total) {
      const rate = done / Math.max((performance.now() - t0) / 1000, 1e-3);
      const pct = total > 0 ? ` ${Math.min(100, Math.floor((done / total) * 100))}%` : '';
      counted = `, ${n(done)} / ${n(total)} ${unit}${pct}, ${n(rate)}/s`;
      draw();
    },
    end() {
      clearInterval(timer);
      process.stderr.write('\r\x1b[K');
    },
  };
}

/** The operator secret in FILE: 64 hex digits (whitespace around them ignored). */
export function readOperatorSecret(file: string): Uint8Array {
  let text: string;
  try {
    text = readFileSync(file, 'utf8').trim();
  } catch (e) {
    throw new UsageError(`--operator-key-file ${file}: ${(e as NodeJS.ErrnoException).code ?? 'unreadable'}`);
  }
  if (!/^[0-9a-fA-F]{64}$/.test(text)) throw new UsageError(`--operator-key-file ${file}: expected 64 hex digits (bkv operator keygen)`);
  return Uint8Array.from(Buffer.from(text, 'hex'));
}
