/**
 * Interleaved A/B of bench/enclave.ts between two source trees (two commits checked out as git
 * worktrees): runs alternate A, B, B, A, A, B, ... so that drift in the machine's state falls on
 * both alike, each run a fresh process with the same arguments. Prints, per pair and as medians,
 * the enclave login rate at each concurrency level and the raw login rate (the same code in both
 * trees when only the enclave path changed: a control for the machine), and B over A; then each
 * run's own ratios (enclaveVsRaw, its paired median, enclaveVsRawCpu) for A and B.
 *
 *   npx tsx bench/lib/tree-ab.ts --a DIR --b DIR [--pairs 4] [--env-a K=V,...] [--env-b K=V,...] -- [bench/enclave.ts args]
 *   npx tsx bench/lib/tree-ab.ts --a ../wt-before --b . --pairs 4 --env-b BKV_SODIUM_NATIVE=0 -- --levels 128 --partitions 2 --rounds 3
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { median } from './stats.ts';

const argv = process.argv.slice(2);
const dash = argv.indexOf('--');
const own = dash < 0 ? argv : argv.slice(0, dash);
const passed = dash < 0 ? [] : argv.slice(dash + 1);
const opt = (name: string): string | undefined => {
  const i = own.indexOf(`--${name}`);
  return i < 0 ? undefined : own[i + 1];
};
const a = opt('a');
const b = opt('b');
if (!a || !b) {
  console.error('usage: npx tsx bench/lib/tree-ab.ts --a DIR --b DIR [--pairs N] [--env-a K=V,...] [--env-b K=V,...] -- [bench/enclave.ts args]');
  process.exit(2);
}
const pairs = Number(opt('pairs') ?? 4);
if (!Number.isInteger(pairs) || pairs < 1) {
  console.error(`--pairs: expected a positive integer, got ${opt('pairs')}`);
  process.exit(2);
}
const envOf = (spec: string | undefined): Record<string, string> =>
  Object.fromEntries((spec ? spec.split(',') : []).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
const trees = { A: { dir: resolve(a), env: envOf(opt('env-a')) }, B: { dir: resolve(b), env: envOf(opt('env-b')) } };

interface Result {
  name: string;
  opsPerSec: number;
}
/** The ratios of bench/enclave.ts printed per run. */
const RATIOS = ['enclaveVsRaw', 'enclaveVsRawPairedMedian', 'enclaveVsRawCpu'];
const ratios: Record<'A' | 'B', Record<string, number>[]> = { A: [], B: [] };
const tmp = mkdtempSync(join(tmpdir(), 'bkv-tree-ab-'));
const runs: Record<'A' | 'B', Map<string, number>[]> = { A: [], B: [] };

function run(which: 'A' | 'B', n: number): void {
  const t = trees[which];
  const json = join(tmp, `${which}-${n}.json`);
  process.stderr.write(`  .. run ${n + 1}/${pairs} ${which} (${t.dir})\n`);
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'bench/enclave.ts', ...passed, '--json', json], {
    cwd: t.dir,
    env: { ...process.env, ...t.env },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  if (r.status !== 0) throw new Error(`${which}: bench/enclave.ts exited ${r.status}`);
  const out = JSON.parse(readFileSync(json, 'utf8')) as { results: Result[]; ratios?: Record<string, number> };
  ratios[which].push(out.ratios ?? {});
  runs[which].push(new Map(out.results.filter((x) => /^(enclave: login|raw: login)/.test(x.name)).map((x) => [x.name, x.opsPerSec])));
}

try {
  for (let i = 0; i < pairs; i++) {
    const order: ('A' | 'B')[] = i % 2 === 0 ? ['A', 'B'] : ['B', 'A'];
    for (const w of order) run(w, i);
  }
  const names = [...runs.A[0]!.keys()].filter((k) => runs.B.every((m) => m.has(k)));
  console.log(`A = ${trees.A.dir} ${JSON.stringify(trees.A.env)}\nB = ${trees.B.dir} ${JSON.stringify(trees.B.env)}\nbench/enclave.ts ${passed.join(' ')}; ${pairs} pairs, order alternating\n`);
  console.log(`${'figure (logins/s)'.padEnd(52)}${'A median'.padStart(10)}${'B median'.padStart(10)}${'B/A'.padStart(8)}   per pair B/A`);
  for (const k of names) {
    const xa = runs.A.map((m) => m.get(k)!);
    const xb = runs.B.map((m) => m.get(k)!);
    const per = xa.map((x, i) => (xb[i]! / x).toFixed(3)).join(' ');
    console.log(`${k.padEnd(52)}${Math.round(median(xa)).toString().padStart(10)}${Math.round(median(xb)).toString().padStart(10)}${(median(xb) / median(xa)).toFixed(3).padStart(8)}   ${per}`);
  }
  console.log(`\n${'ratio (each run its own)'.padEnd(52)}${'A median'.padStart(10)}${'B median'.padStart(10)}${'B/A'.padStart(8)}   per run A | B`);
  for (const k of RATIOS) {
    const xa = ratios.A.map((r) => r[k]).filter((x): x is number => typeof x === 'number');
    const xb = ratios.B.map((r) => r[k]).filter((x): x is number => typeof x === 'number');
    if (!xa.length || !xb.length) continue;
    console.log(`${k.padEnd(52)}${median(xa).toFixed(3).padStart(10)}${median(xb).toFixed(3).padStart(10)}${(median(xb) / median(xa)).toFixed(3).padStart(8)}   ${xa.join(' ')} | ${xb.join(' ')}`);
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
