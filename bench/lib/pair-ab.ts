/**
 * A/B of one device's cost per operation between two source trees, both measured at the same
 * time: bench/lib/device-profile.ts from tree A and from tree B run at once, each pinned to a core
 * of its own (`taskset`), the cores swapped every round. On a machine whose speed drifts by more
 * than a change is worth between runs a minute apart (bench/README.md, 2026-12-06 (arena): runs
 * of the same code from 0.61 to 0.70 enclaveVsRaw), running both sides at once puts the drift on
 * both alike. It measures the device tool's setting (one device, its host and SQLite in one
 * thread), not the service on all cores: a tool for deciding a change, not a benchmark of record.
 *
 *   npx tsx bench/lib/pair-ab.ts --a DIR --b DIR [--rounds 4] -- [device-profile.ts args]
 *   npx tsx bench/lib/pair-ab.ts --a ../wt-before --b . --rounds 6 -- --ms 4000 --records 4096 --concurrency 256
 *
 * Prints each round's operations per second and process CPU per operation (all threads, and the
 * other threads apart) for A and B, then the medians and B over A.
 */
import { spawn } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';
import { median } from './stats.ts';

const argv = process.argv.slice(2);
const dash = argv.indexOf('--');
const own = dash < 0 ? argv : argv.slice(0, dash);
const passed = dash < 0 ? ['--ms', '4000', '--records', '4096', '--concurrency', '256'] : argv.slice(dash + 1);
const opt = (name: string): string | undefined => {
  const i = own.indexOf(`--${name}`);
  return i < 0 ? undefined : own[i + 1];
};
const a = opt('a');
const b = opt('b');
const rounds = Number(opt('rounds') ?? 4);
if (!a || !b || !Number.isInteger(rounds) || rounds < 1) {
  console.error('usage: npx tsx bench/lib/pair-ab.ts --a DIR --b DIR [--rounds N] -- [bench/lib/device-profile.ts args]');
  process.exit(2);
}
if (availableParallelism() < 2) {
  console.error('pair-ab: needs 2 cores (one per side)');
  process.exit(2);
}

interface Run {
  opsPerSec: number;
  cpuUs: number;
  otherUs: number;
}

/** One device-profile run in `dir`, pinned to `core`; its first line parsed. */
function run(dir: string, core: number): Promise<Run> {
  return new Promise((done, fail) => {
    const child = spawn('taskset', ['-c', String(core), process.execPath, '--import', 'tsx', 'bench/lib/device-profile.ts', ...passed], { cwd: resolve(dir), stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', fail);
    child.on('close', (code) => {
      // "login: N ops in T ms = R/s; in the device D us/op (C calls); process CPU P us/op (this thread X, other threads Y); ..."
      const m = /= (\d+)\/s;.*process CPU (\d+) us\/op \(this thread \d+, other threads (\d+)\)/.exec(out);
      if (code !== 0 || !m) return fail(new Error(`device-profile in ${dir} (exit ${code}): ${(err || out).slice(-400)}`));
      done({ opsPerSec: Number(m[1]), cpuUs: Number(m[2]), otherUs: Number(m[3]) });
    });
  });
}

const A: Run[] = [];
const B: Run[] = [];
console.log(`A = ${resolve(a)}, B = ${resolve(b)}; bench/lib/device-profile.ts ${passed.join(' ')}; ${rounds} rounds, both at once, cores swapped each round`);
for (let r = 0; r < rounds; r++) {
  const [ca, cb] = r % 2 === 0 ? [0, 1] : [1, 0];
  const [ra, rb] = await Promise.all([run(a, ca), run(b, cb)]);
  A.push(ra);
  B.push(rb);
  console.log(`round ${r + 1}: A (core ${ca}) ${ra.opsPerSec}/s ${ra.cpuUs} us/op (other threads ${ra.otherUs}) | B (core ${cb}) ${rb.opsPerSec}/s ${rb.cpuUs} us/op (other threads ${rb.otherUs}) | B/A ops ${(rb.opsPerSec / ra.opsPerSec).toFixed(3)}, CPU ${(rb.cpuUs / ra.cpuUs).toFixed(3)}`);
}
const med = (xs: Run[], k: keyof Run) => median(xs.map((x) => x[k]));
console.log(`medians: A ${med(A, 'opsPerSec')}/s ${med(A, 'cpuUs')} us/op | B ${med(B, 'opsPerSec')}/s ${med(B, 'cpuUs')} us/op`);
console.log(`B/A per round: ops ${A.map((x, i) => (B[i]!.opsPerSec / x.opsPerSec).toFixed(3)).join(' ')}; CPU ${A.map((x, i) => (B[i]!.cpuUs / x.cpuUs).toFixed(3)).join(' ')}`);
