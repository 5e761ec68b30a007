/**
 * Shared pieces of the adversarial scripts (test/adversarial/*.ts): argument parsing, a seeded
 * random source for fault choices (keys, passwords and HPKE stay on node:crypto), temporary
 * folders, statistics (percentiles, linear fit, Welch's t), child process helpers, and the
 * report every script prints (faults injected, checks run, violations found).
 */
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(fileURLToPath(new URL('../../..', import.meta.url)));
export const te = new TextEncoder();

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** True when the module at `url` is the script node was started with (tsx passes its path as argv[1]). */
export function isMain(url: string): boolean {
  const arg = process.argv[1];
  if (!arg) return false;
  const me = fileURLToPath(url);
  const given = resolve(arg);
  return given === me || given === me.replace(/\.ts$/, '');
}

// ---- arguments ----

export interface Args {
  get(name: string): string | undefined;
  num(name: string, dflt: number): number;
  flag(name: string): boolean;
}

/** `--name value`, `--name=value` and bare `--flag`; unknown names are an error. */
export function parseArgs(argv: string[], options: string[], flags: string[] = []): Args {
  const opts = new Map<string, string>();
  const set = new Set<string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') continue;
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${a}`);
    const eq = a.indexOf('=');
    const name = eq < 0 ? a.slice(2) : a.slice(2, eq);
    if (flags.includes(name)) {
      set.add(name);
      continue;
    }
    if (!options.includes(name)) throw new Error(`unknown option --${name} (options: ${[...options, ...flags].map((o) => `--${o}`).join(' ')})`);
    const v = eq < 0 ? argv[++i] : a.slice(eq + 1);
    if (v === undefined) throw new Error(`--${name} needs a value`);
    opts.set(name, v);
  }
  return {
    get: (n) => opts.get(n),
    num(n, dflt) {
      const v = opts.get(n);
      if (v === undefined) return dflt;
      const x = Number(v);
      if (!Number.isFinite(x)) throw new Error(`--${n} must be a number`);
      return x;
    },
    flag: (n) => set.has(n),
  };
}

// ---- seeded randomness for fault choices ----

/** sfc32: small, fast, seedable; for choosing faults and timings, never for secrets. */
export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;
  constructor(readonly seed: number) {
    this.a = 0x9e3779b9;
    this.b = 0x243f6a88;
    this.c = 0xb7e15162;
    this.d = seed >>> 0;
    for (let i = 0; i < 15; i++) this.next();
  }
  next(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return (t >>> 0) / 4294967296;
  }
  /** Integer in [lo, hi]. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(xs: readonly T[]): T {
    if (xs.length === 0) throw new Error('pick from an empty list');
    return xs[Math.floor(this.next() * xs.length)]!;
  }
  /** Exponential with the given mean (Poisson arrivals). */
  exp(mean: number): number {
    return -Math.log(1 - this.next()) * mean;
  }
}

// ---- temporary folders ----

export function tempDir(prefix: string): { dir: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), `bkv-adv-${prefix}-`));
  // `${dir}.operator`: the token PINs' operator folder when `dir` itself is a data folder.
  return { dir, remove: () => [dir, `${dir}.operator`].forEach((x) => rmSync(x, { recursive: true, force: true })) };
}

// ---- statistics ----

export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

export function sortedCopy(xs: ArrayLike<number>): Float64Array {
  return Float64Array.from(xs).sort();
}

export function mean(xs: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < xs.length; i++) s += xs[i]!;
  return xs.length ? s / xs.length : NaN;
}

/** Least-squares line through (x, y): slope and intercept. */
export function linearFit(xs: number[], ys: number[]): { slope: number; intercept: number } {
  const n = xs.length;
  if (n < 2) return { slope: 0, intercept: ys[0] ?? 0 };
  const mx = mean(xs);
  const my = mean(ys);
  let sxy = 0;
  let sxx = 0;
  for (let i = 0; i < n; i++) {
    sxy += (xs[i]! - mx) * (ys[i]! - my);
    sxx += (xs[i]! - mx) ** 2;
  }
  const slope = sxx === 0 ? 0 : sxy / sxx;
  return { slope, intercept: my - slope * mx };
}

/** Online mean and variance (Welford), as dudect keeps per class. */
export class Moments {
  n = 0;
  mean = 0;
  private m2 = 0;
  push(x: number): void {
    this.n++;
    const d = x - this.mean;
    this.mean += d / this.n;
    this.m2 += d * (x - this.mean);
  }
  get variance(): number {
    return this.n > 1 ? this.m2 / (this.n - 1) : 0;
  }
}

/** Welch's t statistic of two samples (0 when either is too small). */
export function welchT(a: Moments, b: Moments): number {
  if (a.n < 2 || b.n < 2) return 0;
  const se = Math.sqrt(a.variance / a.n + b.variance / b.n);
  return se === 0 ? 0 : (a.mean - b.mean) / se;
}

// ---- processes ----

/** The direct children of `pid` (from /proc; empty where there is no /proc). */
export function childPids(pid: number): number[] {
  const out: number[] = [];
  let names: string[];
  try {
    names = readdirSync('/proc');
  } catch {
    return out;
  }
  for (const n of names) {
    if (!/^\d+$/.test(n)) continue;
    try {
      const stat = readFileSync(`/proc/${n}/stat`, 'utf8');
      // pid (comm) state ppid ...: comm may hold spaces and parentheses; the last ')' ends it.
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(rest[1]) === pid) out.push(Number(n));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // A zombie is dead for our purposes.
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return true;
  }
}

/** Waits until every pid is gone; SIGKILLs what is left after `ms`. Returns how many had to be killed. */
export async function waitGone(pids: number[], ms = 5000): Promise<number> {
  const deadline = performance.now() + ms;
  while (pids.some(alive) && performance.now() < deadline) await sleep(20);
  let killed = 0;
  for (const p of pids.filter(alive)) {
    try {
      process.kill(p, 'SIGKILL');
      killed++;
    } catch {
      // gone
    }
  }
  while (pids.some(alive)) await sleep(10);
  return killed;
}

/** Resident set size of a process in bytes (Linux /proc), or NaN. */
export function rssOf(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : NaN;
  } catch {
    return NaN;
  }
}

// ---- reports ----

export interface Report {
  name: string;
  /** Faults injected, by kind. */
  faults: Record<string, number>;
  /** Invariant checks run. */
  checks: number;
  violations: string[];
  /** SIGKILLs delivered to a vault's or a fleet's processes (a device, a service, a member, a clone). */
  kills: number;
  /**
   * Runs that could not be made (a fleet that did not start or come back within its timeout, a
   * port taken): not a broken rule, but a round that did not run as planned; counted apart.
   */
  errors: string[];
  /** Other numbers worth printing (operations, errors seen, timings). */
  stats: Record<string, number | string>;
  /** Observations that are not violations (limitations found, things refused as expected). */
  notes: string[];
}

export function newReport(name: string): Report {
  return { name, faults: {}, checks: 0, violations: [], kills: 0, errors: [], stats: {}, notes: [] };
}

export function bump(map: Record<string, number>, key: string, by = 1): void {
  map[key] = (map[key] ?? 0) + by;
}

/** Adds a note once (repeated observations are counted in its text). */
export function note(r: Report, text: string): void {
  const i = r.notes.findIndex((n) => n === text || n.startsWith(`${text} (x`));
  if (i < 0) {
    r.notes.push(text);
    return;
  }
  const m = /\(x(\d+)\)$/.exec(r.notes[i]!);
  r.notes[i] = `${text} (x${m ? Number(m[1]) + 1 : 2})`;
}

export function printReport(r: Report): void {
  const lines = [`== ${r.name}`];
  lines.push(`faults injected: ${Object.entries(r.faults).map(([k, v]) => `${k}=${v}`).join(' ') || 'none'} (total ${Object.values(r.faults).reduce((a, b) => a + b, 0)})`);
  lines.push(`checks: ${r.checks}`);
  if (r.kills > 0) lines.push(`SIGKILLs delivered: ${r.kills}`);
  for (const [k, v] of Object.entries(r.stats)) lines.push(`${k}: ${v}`);
  for (const n of r.notes) lines.push(`note: ${n}`);
  lines.push(`violations: ${r.violations.length}`);
  for (const v of r.violations.slice(0, 50)) lines.push(`  VIOLATION ${v}`);
  if (r.violations.length > 50) lines.push(`  ... ${r.violations.length - 50} more`);
  if (r.errors.length) lines.push(`errors: ${r.errors.length}`);
  for (const e of r.errors.slice(0, 20)) lines.push(`  ERROR ${e}`);
  console.log(lines.join('\n'));
}

/** Runs a script's main: prints the report, exits 1 on a violation or an error (2 on a crash of the script itself). */
export function runMain(main: () => Promise<Report | Report[]>, opts: { alwaysZero?: boolean; print?: boolean } = {}): void {
  main().then(
    (out) => {
      const reports = Array.isArray(out) ? out : [out];
      if (opts.print !== false) for (const r of reports) printReport(r);
      const bad = reports.some((r) => r.violations.length > 0 || r.errors.length > 0);
      process.exit(bad && !opts.alwaysZero ? 1 : 0);
    },
    (e: unknown) => {
      console.error(e);
      process.exit(2);
    },
  );
}
