/**
 * Starts test/adversarial/lib/service-child.ts in a child process and hands back its URL, its
 * pid (and its device processes' pids, in process mode), and ways to end it: `kill()` is a
 * SIGKILL of the service alone (its child-process devices then see their IPC channel close and
 * exit; `killed()` waits until they are gone, so that no old device still writes when a new
 * service starts on the same folder), `stop()` a graceful SIGTERM. The service is provisioned
 * with this process's test issuer (test/helpers/auth.ts), passed in BKV_AUTH_CONFIG.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { base64url, encodeAuthConfig } from '../../../enclave/api/auth.ts';
import { testIssuer } from '../../helpers/auth.ts';
import { ROOT, childPids, waitGone } from './common.ts';
import { onJsonLines } from '../../helpers/streams.ts';

export interface ServiceProc {
  url: string;
  pid: number;
  child: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Device processes (process mode). */
  devicePids(): number[];
  /** SIGKILL of the service process; resolves when it and its devices are gone. */
  kill(): Promise<void>;
  /** SIGTERM (graceful); resolves with its exit. */
  stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stderr(): string;
}

export async function startServiceProc(opts: {
  dataDir: string;
  mode?: 'worker' | 'process';
  partitions?: number;
  replayWindowMs?: number;
  /** Extra node flags (e.g. --expose-gc). */
  execArgv?: string[];
  timeoutMs?: number;
}): Promise<ServiceProc> {
  const env: Record<string, string> = {
    ...(process.env as Record<string, string>),
    BKV_DATA_DIR: opts.dataDir,
    BKV_MODE: opts.mode ?? 'worker',
    BKV_PARTITIONS: String(opts.partitions ?? 2),
    BKV_AUTH_CONFIG: base64url(encodeAuthConfig((await testIssuer()).config)),
  };
  if (opts.replayWindowMs !== undefined) env.BKV_REPLAY_WINDOW_MS = String(opts.replayWindowMs);
  const child = spawn(process.execPath, [...(opts.execArgv ?? []), '--import', 'tsx', join(ROOT, 'test/adversarial/lib/service-child.ts')], {
    cwd: ROOT,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString('utf8')).slice(-8192)));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) => child.on('exit', (code, signal) => res({ code, signal })));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`service did not start within ${opts.timeoutMs ?? 60_000} ms: ${stderr}`)), opts.timeoutMs ?? 60_000);
    onJsonLines(child.stdout!, (l) => {
      if (l.msg === 'listening' && typeof l.url === 'string') {
        clearTimeout(timer);
        resolve(l.url);
      }
    });
    void exited.then((x) => {
      clearTimeout(timer);
      reject(new Error(`service exited before listening (${JSON.stringify(x)}): ${stderr}`));
    });
  });
  const pid = child.pid!;
  const devicePids = () => childPids(pid);
  return {
    url,
    pid,
    child,
    exited,
    devicePids,
    async kill() {
      const devices = devicePids();
      child.kill('SIGKILL');
      await exited;
      await waitGone(devices);
    },
    async stop() {
      const devices = devicePids();
      child.kill('SIGTERM');
      const x = await exited;
      await waitGone(devices);
      return x;
    },
    stderr: () => stderr,
  };
}
