/**
 * Many clients at once against one `bkv token serve` (hsm/tokens/p11kit/): N client processes of
 * M worker threads each (p11kit-load.mjs), every thread with its own pkcs11js load of
 * p11-kit-client.so 0.24.1, so its own connection, sessions and login. Each thread, until the
 * time is up: opens sessions, checks the login state, creates session objects and finds exactly
 * them again, creates token objects in the shared store (every fifth kept), HMACs under a key of
 * known value (checked against node:crypto) and under a generated key (verify accepts it, refuses
 * a flipped byte), and draws random bytes (never repeated). Checked here: no process or thread
 * crashed or saw an error or a wrong answer, the kept token objects add up to what the threads
 * report, and the server refused nothing; throughput is printed.
 *
 * Size: BKV_P11KIT_LOAD=N,M,SECONDS (default 3,2,3). Skips when p11-kit-client.so is missing
 * and says why; with CI=true it fails instead.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { P11_KIT_CLIENT, startTokenServer } from '../../helpers/p11kit-server.ts';
import type { TokenServerProcess } from '../../helpers/p11kit-server.ts';
import { skipReason, SO_PIN, USER_PIN } from '../../helpers/tokens.ts';

const run = promisify(execFile);
const why = skipReason('p11kit');
const SCRIPT = join(import.meta.dirname, 'p11kit-load.mjs');

function size(): { processes: number; threads: number; seconds: number } {
  const v = process.env.BKV_P11KIT_LOAD ?? '3,2,3';
  const m = /^(\d+),(\d+),(\d+(?:\.\d+)?)$/.exec(v);
  if (!m || Number(m[1]) < 1 || Number(m[2]) < 1 || Number(m[3]) <= 0) throw new Error(`BKV_P11KIT_LOAD must be N,M,SECONDS (e.g. 8,4,60), not ${v}`);
  return { processes: Number(m[1]), threads: Number(m[2]), seconds: Number(m[3]) };
}

interface ThreadStats {
  id: number;
  iterations: number;
  ops: number;
  kept: number;
  errors: string[];
}

const { processes, threads, seconds } = size();

describe.skipIf(why !== null)(`p11-kit server: ${processes} client processes × ${threads} threads for ${seconds} s${why ? ` (skipped: ${why})` : ''}`, () => {
  let server: TokenServerProcess;
  beforeAll(() => {
    server = startTokenServer({ userPin: USER_PIN, soPin: SO_PIN });
  });
  afterAll(() => server?.stop());

  it(
    'no crash, no error, no wrong answer; the kept token objects add up; ops/s reported',
    async () => {
      const env = { ...process.env, P11_KIT_SERVER_ADDRESS: server.address };
      const tag = `load-${process.pid}`;
      const t0 = performance.now();
      const outs = await Promise.all(
        Array.from({ length: processes }, () => run(process.execPath, [SCRIPT, 'run', P11_KIT_CLIENT, USER_PIN, String(threads), String(seconds * 1000), tag], { env, maxBuffer: 1 << 20 })),
      );
      const wallS = (performance.now() - t0) / 1000;
      const results = outs.map((o) => JSON.parse(o.stdout) as { pid: number; elapsedMs: number; threads: ThreadStats[] });
      const all = results.flatMap((r) => r.threads);
      expect(all.length).toBe(processes * threads);
      expect(all.flatMap((t) => t.errors)).toEqual([]);
      for (const t of all) expect(t.iterations).toBeGreaterThan(0);

      // The token objects every thread kept are in the shared store, each once.
      const kept = all.reduce((n, t) => n + t.kept, 0);
      const { stdout } = await run(process.execPath, [SCRIPT, 'count', P11_KIT_CLIENT, USER_PIN, tag], { env });
      expect(JSON.parse(stdout)).toEqual({ count: kept, distinct: kept });
      // The server refused no request and is still up.
      expect(server.stderr()).not.toMatch(/"event":"refused"/);
      expect(() => process.kill(server.pid, 0)).not.toThrow();

      const ops = all.reduce((n, t) => n + t.ops, 0);
      const iterations = all.reduce((n, t) => n + t.iterations, 0);
      const busyS = Math.max(...results.map((r) => r.elapsedMs)) / 1000;
      console.log(
        `p11kit load: ${processes} processes × ${threads} threads, ${iterations} iterations, ${ops} PKCS#11 calls in ${busyS.toFixed(1)} s: ` +
          `${Math.round(ops / busyS)} calls/s (${wallS.toFixed(1)} s with process start); per thread ${all.map((t) => t.ops).join(', ')} calls`,
      );
    },
    seconds * 1000 + 60_000,
  );
});
