/**
 * The benchmark runner: runs each subsystem script in a process of its own (isolation: one
 * script's JIT state, heap and threads do not disturb the next), collects their JSON, and writes
 * bench/results/latest.json, latest.md and latest.svg, then prints the table and the targets with
 * MET / NOT MET.
 *
 *   npm run bench                      # full (tsx bench/run.ts)
 *   npm run bench:quick                # a minute or two (the fleet starts nine processes); also smoke-run in CI
 *   tsx bench/run.ts [--quick] [--only opaque,enclave,...] [--records N] [--keep-going]
 *                    [--reuse memory=FILE,...]
 *
 * --reuse NAME=FILE takes subsystem NAME's output from FILE (what `bench/NAME.ts --json FILE`
 * wrote, on this machine) instead of running it: for the hour-long 1M-record memory run. The
 * report says so beside that subsystem (its commit, date, and load average) and in the rows of
 * the targets it feeds (serviceRssMB1M, storedBytesPerRecord: which commit was measured), and a
 * quick output is refused in a full report.
 *
 * Subsystems (bench/<name>.ts): opaque (per core: ours, the peers, the floor), enclave (the
 * message boundary, worker pool, durable charging, group commit; scaling and latency; the raw
 * server on all cores beside it), service (HTTP end to end), fleet (the single vault against
 * fleets of 3 and 5 member processes on loopback: fleet3VsSingle, fleet5VsSingle), tokens
 * (emulator against SoftHSM2), storage (SQLite against PostgreSQL), memory (1 million records, a
 * 1 GiB backup), and, in the full run only, groups (group backends) and breakdown (where an
 * enclave login's time goes).
 *
 * Peers are installed into bench/peers on first use (`npm ci --prefix bench/peers`). PostgreSQL:
 * BKV_PG_URL when set; otherwise, in the full run, a throwaway cluster from
 * scripts/ci-postgres.sh when PostgreSQL is installed (never installed by the bench).
 *
 * A subsystem over its time limit gets SIGTERM (bench/fleet.ts then stops its member processes),
 * and SIGKILL 15 s later.
 *
 * Exit status: 0 when every subsystem ran, whatever the targets say; 1 when one broke.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BENCH_DIR, RESULTS_DIR, ROOT, args, machine, machineLine, round } from './lib/common.ts';
import type { BenchResult, Machine, SubsystemOutput } from './lib/common.ts';
import { renderMarkdown, renderSvg, renderTable } from './lib/report.ts';
import type { Report, Target } from './lib/report.ts';

const A = args();
const QUICK = A.quick;
const ALL = ['opaque', 'enclave', 'service', 'fleet', 'tokens', 'storage', 'memory', 'groups', 'breakdown'];
const QUICK_SET = ['opaque', 'enclave', 'service', 'fleet', 'tokens', 'storage', 'memory'];
const only = A.get('only')?.split(',').map((s) => s.trim()).filter(Boolean);
for (const o of only ?? []) if (!ALL.includes(o)) throw new Error(`--only: unknown subsystem ${o} (known: ${ALL.join(', ')})`);
const selected = ALL.filter((s) => (only ? only.includes(s) : QUICK ? QUICK_SET.includes(s) : true));
const reuse = new Map<string, string>();
for (const item of A.get('reuse')?.split(',').map((s) => s.trim()).filter(Boolean) ?? []) {
  const [name, file] = item.split('=', 2) as [string, string | undefined];
  if (!ALL.includes(name) || !file) throw new Error(`--reuse: expected NAME=FILE with NAME one of ${ALL.join(', ')}, got ${item}`);
  if (!existsSync(file)) throw new Error(`--reuse: ${file} does not exist`);
  reuse.set(name, file);
}

/** Per subsystem: extra arguments and a time limit. */
const PLAN: Record<string, { args: string[]; timeoutS: number }> = {
  opaque: { args: [], timeoutS: QUICK ? 120 : 900 },
  enclave: { args: [], timeoutS: QUICK ? 120 : 1800 },
  service: { args: QUICK ? [] : ['--seconds', '3'], timeoutS: QUICK ? 120 : 900 },
  fleet: { args: [], timeoutS: QUICK ? 120 : 1200 },
  tokens: { args: [], timeoutS: QUICK ? 120 : 900 },
  storage: { args: [], timeoutS: QUICK ? 120 : 900 },
  memory: { args: [...(A.get('records') ? ['--records', A.get('records')!] : []), ...(A.get('budget-s') ? ['--budget-s', A.get('budget-s')!] : [])], timeoutS: QUICK ? 120 : 4 * 3600 },
  groups: { args: [], timeoutS: 600 },
  breakdown: { args: [], timeoutS: 600 },
};

const M: Machine = machine();
const t0 = performance.now();
console.log(`bench ${QUICK ? 'quick' : 'full'}: ${selected.join(', ')}`);
console.log(`machine: ${machineLine(M)}${M.commit ? `; commit ${M.commit}` : ''}\n`);

// ---- peers -------------------------------------------------------------------------------------
const peersDir = join(BENCH_DIR, 'peers');
if (selected.includes('opaque') && !existsSync(join(peersDir, 'node_modules', '@serenity-kit', 'opaque-p256', 'package.json'))) {
  console.log('installing the peers: npm ci --prefix bench/peers');
  execFileSync('npm', ['ci', '--prefix', peersDir, '--no-audit', '--no-fund'], { stdio: 'inherit', cwd: ROOT });
}

// ---- PostgreSQL --------------------------------------------------------------------------------
const env = { ...process.env };
let pgDir: string | undefined;
if (selected.includes('storage') && !env.BKV_PG_URL && !QUICK) {
  const have = (() => {
    try {
      execFileSync('sh', ['-c', 'command -v initdb || ls /usr/lib/postgresql/*/bin/initdb'], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  })();
  if (have) {
    try {
      const out = execFileSync('bash', [join(ROOT, 'scripts/ci-postgres.sh')], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
      for (const m of out.matchAll(/^export (BKV_PG_URL|BKV_PG_DIR)=(.*)$/gm)) env[m[1]!] = m[2]!;
      pgDir = env.BKV_PG_DIR;
      console.log(`started a throwaway PostgreSQL for the storage bench (${pgDir})`);
    } catch (e) {
      console.log(`could not start PostgreSQL (${(e as Error).message.split('\n')[0]}): the storage bench runs SQLite only`);
    }
  }
}

// ---- run ---------------------------------------------------------------------------------------
const work = mkdtempSync(join(tmpdir(), 'bkv-bench-run-'));
const outputs: SubsystemOutput[] = [];
const failed: { subsystem: string; reason: string }[] = [];
const durations: Record<string, number> = {};

/** A subsystem's output from an earlier run (--reuse), labelled in its notes. */
function reuseOne(name: string, file: string): void {
  console.log(`\n=== ${name} (reused from ${file}) ${'='.repeat(Math.max(3, 70 - name.length - file.length))}`);
  let o: SubsystemOutput;
  try {
    o = JSON.parse(readFileSync(file, 'utf8')) as SubsystemOutput;
  } catch (e) {
    failed.push({ subsystem: name, reason: `--reuse ${file}: unreadable (${(e as Error).message})` });
    return;
  }
  if (o.subsystem !== name) failed.push({ subsystem: name, reason: `--reuse ${file}: it is the output of ${o.subsystem}` });
  else if (o.quick && !QUICK) failed.push({ subsystem: name, reason: `--reuse ${file}: a quick run, not usable in a full report` });
  else {
    const m = o.machine;
    o.notes = [`REUSED: measured in a separate run of bench/${name}.ts (commit ${m.commit ?? '?'}, ${m.date}, load average ${m.loadavgAtStart.join(' ')} at its start), not in this one`, ...o.notes];
    outputs.push(o);
    durations[name] = 0;
  }
}

/** What is shown again of a failed subsystem's output, at the end of the report. */
const TAIL_CHARS = 6000;
const tails = new Map<string, string>();

function runOne(name: string): Promise<void> {
  const reused = reuse.get(name);
  if (reused) {
    reuseOne(name, reused);
    return Promise.resolve();
  }
  const plan = PLAN[name]!;
  const json = join(work, `${name}.json`);
  const argv = ['--import', 'tsx', join(BENCH_DIR, `${name}.ts`), '--json', json, ...(QUICK ? ['--quick'] : []), ...plan.args];
  console.log(`\n=== ${name} ${'='.repeat(Math.max(3, 90 - name.length))}`);
  const s0 = performance.now();
  return new Promise((resolve) => {
    // The output goes through as it comes; its last lines are kept to be shown again at the end if
    // the subsystem fails (the end of the report is often all a CI log shows).
    const child = spawn(process.execPath, argv, { cwd: ROOT, env, stdio: ['inherit', 'pipe', 'pipe'] });
    let tail = '';
    const keep = (to: NodeJS.WriteStream) => (d: Buffer) => {
      to.write(d);
      tail = (tail + d.toString('utf8')).slice(-TAIL_CHARS);
    };
    child.stdout!.on('data', keep(process.stdout));
    child.stderr!.on('data', keep(process.stderr));
    let kill: NodeJS.Timeout | undefined;
    const timer = setTimeout(() => {
      failed.push({ subsystem: name, reason: `timed out after ${plan.timeoutS} s` });
      child.kill('SIGTERM');
      kill = setTimeout(() => child.kill('SIGKILL'), 15_000);
    }, plan.timeoutS * 1000);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      clearTimeout(kill);
      durations[name] = Math.round((performance.now() - s0) / 100) / 10;
      if (code === 0 && existsSync(json)) {
        try {
          outputs.push(JSON.parse(readFileSync(json, 'utf8')) as SubsystemOutput);
        } catch (e) {
          failed.push({ subsystem: name, reason: `unreadable output: ${(e as Error).message}` });
        }
      } else if (!failed.some((f) => f.subsystem === name)) {
        failed.push({ subsystem: name, reason: `exited ${code ?? signal}` });
      }
      if (failed.some((f) => f.subsystem === name)) tails.set(name, tail);
      resolve();
    });
  });
}

try {
  for (const name of selected) await runOne(name);
} finally {
  if (pgDir) {
    try {
      execFileSync('bash', [join(ROOT, 'scripts/ci-postgres-stop.sh'), pgDir], { stdio: 'ignore' });
    } catch {
      console.log(`could not stop the PostgreSQL cluster in ${pgDir}`);
    }
  }
  rmSync(work, { recursive: true, force: true });
}

// ---- collect -----------------------------------------------------------------------------------
M.loadavgAtEnd = machine().loadavgAtStart;
const results: (BenchResult & { subsystem: string })[] = outputs.flatMap((o) => o.results.map((r) => ({ subsystem: o.subsystem, ...r })));
const allRatios: Record<string, number> = Object.assign({}, ...outputs.map((o) => o.ratios));
const missing: Record<string, string> = Object.assign({}, ...outputs.map((o) => o.missing ?? {}));
const figures: Record<string, Record<string, number>> = Object.fromEntries(outputs.filter((o) => o.figures).map((o) => [o.subsystem, o.figures!]));
const REQUIRED = ['loginVsSerenity', 'loginVsNativeFloor', 'loginVsFloor', 'enclaveVsRaw', 'softhsmVsEmulator', 'p256LoginVsSerenityP256', 'fleet3VsSingle', 'fleet5VsSingle'];
const owner: Record<string, string> = { loginVsSerenity: 'opaque', loginVsNativeFloor: 'opaque', loginVsFloor: 'opaque', p256LoginVsSerenityP256: 'opaque', enclaveVsRaw: 'enclave', softhsmVsEmulator: 'tokens', fleet3VsSingle: 'fleet', fleet5VsSingle: 'fleet' };
for (const k of REQUIRED) {
  if (typeof allRatios[k] !== 'number' && !missing[k]) {
    const sub = owner[k]!;
    missing[k] = !selected.includes(sub) ? `not measured: subsystem ${sub} not run (--only)` : failed.some((f) => f.subsystem === sub) ? `not measured: subsystem ${sub} failed` : 'not measured';
  }
}
const ratios: Record<string, number | null> = {};
for (const k of REQUIRED) ratios[k] = typeof allRatios[k] === 'number' ? allRatios[k]! : null;
for (const [k, v] of Object.entries(allRatios)) if (!(k in ratios)) ratios[k] = v;

const mem = figures.memory;
const targets: Target[] = [];
const ratioTarget = (key: string, min: number, what: string) => {
  const v = ratios[key];
  targets.push({ key, what, target: `>= ${min}`, value: v ?? null, met: v === null || v === undefined ? null : v >= min, note: v === null || v === undefined ? missing[key] ?? 'not measured' : '' });
};
ratioTarget('loginVsSerenity', 4.0, 'our ristretto255 server login per core / @serenity-kit/opaque');
ratioTarget('loginVsNativeFloor', 0.85, "our ristretto255 login per core / native libsodium's 4 variable-base + 1 base multiplications (the machine's floor)");
ratioTarget('p256LoginVsSerenityP256', 2.0, 'our P-256 server login per core / @serenity-kit/opaque-p256');
ratioTarget('enclaveVsRaw', 0.7, 'login through the enclave path (durable charging, all cores) / raw server on all cores');
{
  const t = targets.at(-1)!;
  const sc = ratios.rawScaling;
  const cpu = ratios.enclaveVsRawCpu;
  const bits = [cpu != null ? `CPU-time ratio ${cpu}` : '', sc != null && sc < 0.75 * M.availableParallelism ? `raw scaled only ${sc}x on ${M.availableParallelism} cores: machine busy` : ''].filter(Boolean);
  if (bits.length) t.note = [t.note, ...bits].filter(Boolean).join('; ');
}
ratioTarget('softhsmVsEmulator', 0.5, 'enclave login on SoftHSM2 / on the emulator token');
ratioTarget('fleet3VsSingle', 0.5, 'logins/s over HTTP: a fleet of 3 member processes / the single vault, on loopback on this machine, at the highest concurrency level');
{
  const t = targets.at(-1)!;
  const f5 = ratios.fleet5VsSingle;
  const paired = ratios.fleet3VsSinglePairedMedian;
  const bits = [paired != null ? `paired median ${paired}` : '', f5 != null ? `fleet of 5: fleet5VsSingle ${f5}` : ''].filter(Boolean);
  if (bits.length) t.note = [t.note, ...bits].filter(Boolean).join('; ');
}
if (mem) {
  const reached = !mem.extrapolated && !mem.notExtrapolated;
  // a reused memory run says in the target row itself which code it measured: a stale one hides a regression
  const memOut = outputs.find((o) => o.subsystem === 'memory');
  const reusedFrom = reuse.has('memory') && memOut ? `REUSED run of commit ${memOut.machine.commit ?? '?'} (${String(memOut.machine.date).slice(0, 10)}), not this code; ` : '';
  const rss = mem.extrapolated ? mem.extrapolatedServicePeakRssMB! : mem.servicePeakRssMB!;
  const n = mem.records!.toLocaleString('en-US');
  targets.push({
    key: 'serviceRssMB1M',
    what: `peak RSS of the service holding ${(mem.recordsTarget ?? 1e6).toLocaleString('en-US')} records (while registering them and after a restart)`,
    target: '< 300 MB',
    value: round(rss, 1),
    met: mem.notExtrapolated ? null : rss < 300,
    note: reusedFrom + (reached
      ? `measured at ${n} records`
      : mem.extrapolated
        ? `EXTRAPOLATED from ${n} records (measured peak there: ${mem.servicePeakRssMB} MB)`
        : `only ${n} records in this run (peak there ${mem.servicePeakRssMB} MB, empty service ${mem.serviceRssMBEmpty} MB): run the full bench`),
  });
  targets.push({
    key: 'storedBytesPerRecord',
    what: 'stored bytes per record (SQLite file after a checkpoint / records)',
    target: '< 600 B',
    value: mem.storedBytesPerRecord!,
    met: mem.storedBytesPerRecord! < 600,
    note: `${reusedFrom}at ${mem.records!.toLocaleString('en-US')} records`,
  });
} else {
  targets.push({ key: 'serviceRssMB1M', what: 'peak RSS of the service with 1,000,000 records', target: '< 300 MB', value: null, met: null, note: 'not measured (memory not run)' });
  targets.push({ key: 'storedBytesPerRecord', what: 'stored bytes per record', target: '< 600 B', value: null, met: null, note: 'not measured (memory not run)' });
}

const report: Report = {
  machine: { ...M, quick: QUICK, subsystems: selected, secondsPerSubsystem: durations, totalSeconds: Math.round((performance.now() - t0) / 1000) },
  results,
  ratios,
  missing,
  targets,
  figures,
  notes: Object.fromEntries(outputs.map((o) => [o.subsystem, o.notes])),
  failed,
};
mkdirSync(RESULTS_DIR, { recursive: true });
writeFileSync(join(RESULTS_DIR, 'latest.json'), `${JSON.stringify(report, null, 2)}\n`);
writeFileSync(join(RESULTS_DIR, 'latest.md'), renderMarkdown(report));
writeFileSync(join(RESULTS_DIR, 'latest.svg'), renderSvg(report));
console.log(`\n${renderTable(report)}`);
console.log(`\nwrote bench/results/latest.json, latest.md, latest.svg (${report.machine.totalSeconds} s)`);
if (failed.length) {
  for (const [name, tail] of tails) console.log(`\n--- the end of ${name}'s output ${'-'.repeat(60)}\n${tail.trimEnd()}\n--- (${name})`);
  console.log(`BROKEN: ${failed.map((f) => `${f.subsystem} (${f.reason})`).join('; ')}`);
  process.exit(1);
}
process.exit(0);
