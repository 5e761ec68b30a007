/**
 * Running the real `bkv` (node bin/bkv.mjs) as a user would, for the CLI tests: one command to
 * its end, or `bkv serve` in a child process until it listens.
 */
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { join, resolve } from 'node:path';

export const root = resolve(import.meta.dirname, '..', '..');
export const bin = join(root, 'bin', 'bkv.mjs');

export interface BkvRun {
  code: number | null;
  out: string;
  err: string;
}

/** Runs `bkv ARGS` in `cwd` to its end; stdin is `input` (a pipe, never a terminal). */
export function runBkv(cwd: string, args: string[], opts: { input?: string; env?: NodeJS.ProcessEnv } = {}): BkvRun {
  const r = spawnSync(process.execPath, [bin, ...args], { cwd, encoding: 'utf8', input: opts.input ?? '', timeout: 120_000, env: { ...process.env, ...opts.env } });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

/** The same without blocking, so that independent commands run side by side. */
export function runBkvAsync(cwd: string, args: string[]): Promise<BkvRun> {
  const p = spawn(process.execPath, [bin, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  p.stdout.on('data', (d: Buffer) => (out += d.toString()));
  p.stderr.on('data', (d: Buffer) => (err += d.toString()));
  return new Promise((res, rej) => {
    p.on('error', rej);
    p.on('close', (code) => res({ code, out, err }));
  });
}

export interface Served {
  proc: ChildProcess;
  /** What it printed on stderr and stdout so far. */
  err(): string;
  out(): string;
  /** The URL it listens on. */
  url: string;
}

/**
 * Starts `bkv serve ARGS` in `cwd` and resolves once it listens and has printed `ready` (default:
 * the line naming the file clients pin) on stderr.
 */
export function startServe(cwd: string, args: string[], env: NodeJS.ProcessEnv = {}, ready: RegExp = /clients pin/): Promise<Served> {
  const proc = spawn(process.execPath, [bin, 'serve', ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  let err = '';
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  return new Promise((res, rej) => {
    const t = setTimeout(() => rej(new Error(`serve did not start: ${err}`)), 60_000);
    const early = (c: number | null) => {
      clearTimeout(t);
      rej(new Error(`serve exited ${c}: ${err}`));
    };
    const check = () => {
      const m = /listening on (http:\/\/\S+)/.exec(err);
      if (!m || !ready.test(err)) return;
      clearTimeout(t);
      proc.stderr!.off('data', check);
      proc.off('exit', early);
      res({ proc, err: () => err, out: () => out, url: m[1]! });
    };
    proc.stderr!.on('data', check);
    proc.on('exit', early);
  });
}

/** Stops a served vault (SIGTERM) and waits for its exit. */
export async function stop(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const done = new Promise((r) => proc.on('exit', r));
  proc.kill('SIGTERM');
  await done;
}
