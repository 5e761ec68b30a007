/**
 * What every subsystem script shares: arguments (--quick, --json FILE), the machine
 * description, the result format the runner (bench/run.ts) collects (statistics: bench/lib/stats.ts).
 *
 * A subsystem script prints its own table for a human and, with `--json FILE`, writes
 *   { subsystem, quick, machine, results: BenchResult[], ratios: { key: number }, notes: string[], missing?: { key: reason } }
 * (without --json it writes bench/results/<subsystem>-latest.json).
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { machineBusyMs } from './threads.ts';

export const BENCH_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const ROOT = resolve(BENCH_DIR, '..');
export const RESULTS_DIR = join(BENCH_DIR, 'results');

export interface BenchResult {
  /** Unique within the run: "<group>: <configuration>". */
  name: string;
  /** For the chart and the table: e.g. "login KE1->KE2 per core". */
  group: string;
  opsPerSec: number;
  p50Ms?: number;
  p99Ms?: number;
  /** Whose: 'ours', 'peer', 'floor' (the chart colours). */
  kind?: 'ours' | 'peer' | 'floor' | 'other';
  /** Anything else worth keeping (mean batch size, concurrency, CPU time, units). */
  [extra: string]: unknown;
}

export interface SubsystemOutput {
  subsystem: string;
  quick: boolean;
  machine: Machine;
  results: BenchResult[];
  ratios: Record<string, number>;
  /** Ratios that could not be measured, with the reason. */
  missing?: Record<string, string>;
  notes: string[];
  /** Figures that are not operations per second (bytes, MB, seconds). */
  figures?: Record<string, number>;
  /** Script-specific detail kept in the JSON. */
  detail?: unknown;
}

export interface Machine {
  cpu: string;
  logicalCores: number;
  availableParallelism: number;
  memoryGiB: number;
  node: string;
  platform: string;
  loadavgAtStart: number[];
  loadavgAtEnd?: number[];
  date: string;
  commit?: string;
}

/**
 * `--help` / `-h` for every bench script: prints the script's leading docblock (its usage and
 * what it measures) and exits 0, before anything is measured.
 */
function helpAndExit(script: string | undefined): never {
  const text = script ? readFileSync(script, 'utf8') : '';
  const block = /^\s*\/\*\*([\s\S]*?)\*\//.exec(text)?.[1] ?? ' * (no description)';
  console.log(block.split('\n').map((l) => l.replace(/^\s*\* ?/, '')).join('\n').trim());
  process.exit(0);
}

export function args(argv = process.argv.slice(2)) {
  if (argv.includes('--help') || argv.includes('-h')) helpAndExit(process.argv[1]);
  const get = (name: string): string | undefined => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  return {
    quick: argv.includes('--quick'),
    json: get('json'),
    get,
    has: (name: string) => argv.includes(`--${name}`),
    num: (name: string, dflt: number) => {
      const v = get(name);
      if (v === undefined) return dflt;
      const n = Number(v.replace(/_/g, ''));
      if (!Number.isFinite(n)) throw new Error(`--${name} wants a number, got ${v}`);
      return n;
    },
    list: (name: string, dflt: number[]) => (get(name) ?? dflt.join(',')).split(',').map(Number),
  };
}

const la = (): number[] => loadavg().map((x) => Number(x.toFixed(2)));

export function machine(): Machine {
  let commit: string | undefined;
  try {
    commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    commit = undefined;
  }
  return {
    cpu: cpus()[0]?.model.trim() ?? 'unknown',
    logicalCores: cpus().length,
    availableParallelism: availableParallelism(),
    memoryGiB: Number((totalmem() / 2 ** 30).toFixed(1)),
    node: process.version,
    platform: `${process.platform}/${process.arch}`,
    loadavgAtStart: la(),
    date: new Date().toISOString(),
    ...(commit && { commit }),
  };
}

export function machineLine(m: Machine): string {
  return `${m.cpu}, ${m.logicalCores} logical cores (${m.availableParallelism} available), ${m.memoryGiB} GiB, Node ${m.node} ${m.platform}, load average ${m.loadavgAtStart.join(' ')}`;
}

/** Writes the subsystem's JSON (to --json FILE, else bench/results/<subsystem>-latest.json). */
export function emit(out: SubsystemOutput, jsonPath: string | undefined): void {
  out.machine.loadavgAtEnd = la();
  const file = jsonPath ?? join(RESULTS_DIR, `${out.subsystem}-latest.json`);
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, `${JSON.stringify(out, null, 2)}\n`);
  if (!jsonPath) console.log(`\nwrote ${file.replace(`${ROOT}/`, '')}`);
}

export const round = (x: number, digits = 3): number => (Number.isFinite(x) ? Number(x.toFixed(digits)) : x);

/** Loads a peer package from bench/peers (installed by bench/run.ts, or `npm ci --prefix bench/peers`). */
export async function loadPeer<T>(name: string): Promise<{ mod: T; version: string }> {
  const dir = join(BENCH_DIR, 'peers', 'node_modules', ...name.split('/'));
  let pkg: { version: string; module?: string; main?: string };
  try {
    pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as typeof pkg;
  } catch {
    throw new Error(`${name} is not installed in bench/peers: run \`npm ci --prefix bench/peers\` (bench/run.ts does it on first use)`);
  }
  const entry = join(dir, pkg.module ?? pkg.main ?? 'index.js');
  const mod = (await import(entry)) as T;
  return { mod, version: pkg.version };
}

/** A line of progress on stderr (long steps). */
export function progress(msg: string): void {
  process.stderr.write(`  .. ${msg}\n`);
}

/** RSS of a process from /proc (kB -> MB): current and peak (VmHWM). */
export function procRss(pid: number): { rssMB: number; hwmMB: number } | null {
  try {
    const s = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(s)?.[1] ?? NaN);
    return { rssMB: kb('VmRSS') / 1024, hwmMB: kb('VmHWM') / 1024 };
  } catch {
    return null;
  }
}

/** CPU time (user + system, all threads) process `pid` has used so far, in ms, from /proc/PID/stat; NaN when it is gone. */
export function procCpuMs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) * 10; // fields 14 and 15 (utime, stime, in 1/100 s: USER_HZ), counted from field 3
  } catch {
    return NaN;
  }
}

/** Cores' worth of CPU that other processes used on the machine above which a window is flagged busy. */
export const BUSY_OTHER_CORES = 0.25;

export interface MachineLoad {
  /** The 1, 5 and 15 minute load averages (they include the bench's own earlier windows). */
  loadavg: number[];
  /** Cores kept busy by processes other than this one and `ours` over the sample (the machine's /proc/stat busy time minus ours). */
  otherCores: number;
  /** Set when `otherCores` is at least BUSY_OTHER_CORES: the figures of the window after it are a floor. */
  warning: string | null;
}

/**
 * How busy the machine is without us: samples the machine's busy CPU time (/proc/stat) and that of
 * this process and of `ours` (child processes: servers under test) over `ms`, and attributes the
 * rest to other processes. Call it while the processes under test are idle, before a window.
 */
export async function machineLoad(ours: readonly number[], ms = 500): Promise<MachineLoad> {
  const mine = () => {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1000 + ours.reduce((s, pid) => s + (procCpuMs(pid) || 0), 0);
  };
  const m0 = machineBusyMs();
  const o0 = mine();
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, ms));
  const wall = performance.now() - t0;
  const other = Math.max(0, machineBusyMs() - m0 - (mine() - o0)) / wall;
  const otherCores = round(other, 2);
  const load = la();
  const cores = availableParallelism();
  const warning =
    otherCores >= BUSY_OTHER_CORES ? `machine busy: other processes used ${otherCores} of ${cores} cores over ${Math.round(wall)} ms (load average ${load.join(' ')}): the next window's figures are a floor` : null;
  return { loadavg: load, otherCores, warning };
}
