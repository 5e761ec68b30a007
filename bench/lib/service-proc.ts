/**
 * The vault service as the benches run it: `bkv serve` (bin/bkv.mjs, the real CLI, with its Node
 * flags) in a child process on a free loopback port, ready when GET /health answers 200. Its JSON request log is
 * discarded (a million registrations would log a few hundred MB); stderr goes to a file in the
 * data folder for diagnosis. `authIssuer`: the issuer's public key file (`--auth-issuer`, see
 * bench/lib/auth.ts); without it the service runs with a development issuer of its own, whose
 * tokens the bench can not mint.
 */
import { spawn } from 'node:child_process';
import { openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BKV_NODE_FLAGS } from '../../bin/bundle.mjs';
import { freePorts } from '../../host/ports.ts';
import { ROOT, procRss } from './common.ts';

export interface ServiceProc {
  url: string;
  pid: number;
  /** ms from spawn to /health 200. */
  startMs: number;
  rss(): { rssMB: number; hwmMB: number } | null;
  stderrTail(): string;
  stop(): Promise<number | null>;
}

export { freePorts };

export async function freePort(): Promise<number> {
  return (await freePorts(1))[0]!;
}

export async function startService(dataDir: string, opts: { partitions?: number; token?: string; store?: string; timeoutMs?: number; authIssuer?: string } = {}): Promise<ServiceProc> {
  const port = await freePort();
  const errFile = join(dataDir, `..`, `${dataDir.split('/').pop()}-stderr.log`);
  const err = openSync(errFile, 'a');
  // BKV_BENCH_SERVICE_NODE_ARGS: extra Node flags for the service (for example --cpu-prof).
  const nodeArgs = (process.env.BKV_BENCH_SERVICE_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const argv = [...BKV_NODE_FLAGS, ...nodeArgs, join(ROOT, 'bin/bkv.mjs'), 'serve', '--data', dataDir, '--port', String(port), '--record-limit', 'off', '--address-limit', 'off'];
  if (opts.partitions) argv.push('--partitions', String(opts.partitions));
  if (opts.token) argv.push('--token', opts.token);
  if (opts.store) argv.push('--store', opts.store);
  if (opts.authIssuer) argv.push('--auth-issuer', opts.authIssuer);
  const t0 = performance.now();
  const child = spawn(process.execPath, argv, { cwd: ROOT, stdio: ['ignore', 'ignore', err] });
  let code: number | null | undefined;
  const exited = new Promise<number | null>((r) =>
    child.on('exit', (c) => {
      code = c;
      r(c);
    }),
  );
  const url = `http://127.0.0.1:${port}`;
  const deadline = t0 + (opts.timeoutMs ?? 600_000);
  const tail = () => {
    try {
      return readFileSync(errFile, 'utf8').split('\n').slice(-15).join('\n');
    } catch {
      return '';
    }
  };
  for (;;) {
    if (code !== undefined) throw new Error(`bkv serve exited (${code}) before it was ready:\n${tail()}`);
    if (performance.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`bkv serve not ready within ${(opts.timeoutMs ?? 600_000) / 1000} s:\n${tail()}`);
    }
    try {
      const r = await fetch(`${url}/health`);
      await r.arrayBuffer();
      if (r.status === 200) break;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  const startMs = performance.now() - t0;
  return {
    url,
    pid: child.pid!,
    startMs,
    rss: () => procRss(child.pid!),
    stderrTail: tail,
    stop: () => {
      if (code === undefined) child.kill('SIGTERM');
      return exited;
    },
  };
}
