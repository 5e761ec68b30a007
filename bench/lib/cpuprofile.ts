/**
 * Summarizes a V8 .cpuprofile (node --cpu-prof): self time per function and per file, as
 * shares of the sampled time, so a report can say where the time goes.
 */
import { readFileSync } from 'node:fs';

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: Node[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface ProfileSummary {
  totalMs: number;
  byFunction: { name: string; ms: number; pct: number }[];
  byFile: { file: string; ms: number; pct: number }[];
  /** Inclusive time of functions whose name matches, by name. */
  inclusive: { name: string; ms: number; pct: number }[];
}

const shortUrl = (u: string): string => {
  if (!u) return '(native)';
  const m = /\/work\/main\/(.*)$/.exec(u.replace(/^file:\/\//, ''));
  if (m) return m[1]!;
  const nm = /node_modules\/(.*)$/.exec(u);
  if (nm) return `node_modules/${nm[1]}`;
  return u.replace(/^file:\/\//, '');
};

export function summarize(file: string, opts: { top?: number; inclusive?: RegExp } = {}): ProfileSummary {
  const p = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  for (let i = 0; i < p.samples.length; i++) self.set(p.samples[i]!, (self.get(p.samples[i]!) ?? 0) + (p.timeDeltas[i] ?? 0));
  let total = 0;
  for (const v of self.values()) total += v;
  const fn = new Map<string, number>();
  const fl = new Map<string, number>();
  for (const [id, us] of self) {
    const n = byId.get(id)!;
    const f = shortUrl(n.callFrame.url);
    const name = `${n.callFrame.functionName || '(anonymous)'} ${f}${n.callFrame.url ? `:${n.callFrame.lineNumber + 1}` : ''}`;
    fn.set(name, (fn.get(name) ?? 0) + us);
    fl.set(f, (fl.get(f) ?? 0) + us);
  }
  // Inclusive time by function name (counted once per sample even under recursion).
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const incl = new Map<string, number>();
  if (opts.inclusive) {
    for (const [id, us] of self) {
      const seen = new Set<string>();
      for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
        const n = byId.get(cur)!;
        const name = `${n.callFrame.functionName || '(anonymous)'} ${shortUrl(n.callFrame.url)}`;
        if (opts.inclusive.test(name) && !seen.has(name)) {
          seen.add(name);
          incl.set(name, (incl.get(name) ?? 0) + us);
        }
      }
    }
  }
  const top = opts.top ?? 25;
  const rows = <K extends string>(m: Map<string, number>, key: K) =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([k, us]) => ({ [key]: k, ms: us / 1000, pct: (100 * us) / total }) as { [P in K]: string } & { ms: number; pct: number });
  return { totalMs: total / 1000, byFunction: rows(fn, 'name'), byFile: rows(fl, 'file'), inclusive: rows(incl, 'name') };
}

export function printSummary(s: ProfileSummary, log: (l: string) => void = console.log): void {
  log(`sampled ${s.totalMs.toFixed(0)} ms`);
  log('self time by file:');
  for (const r of s.byFile) log(`  ${r.pct.toFixed(1).padStart(5)}%  ${r.ms.toFixed(0).padStart(7)} ms  ${r.file}`);
  log('self time by function:');
  for (const r of s.byFunction) log(`  ${r.pct.toFixed(1).padStart(5)}%  ${r.ms.toFixed(0).padStart(7)} ms  ${r.name}`);
  if (s.inclusive.length) {
    log('inclusive time:');
    for (const r of s.inclusive) log(`  ${r.pct.toFixed(1).padStart(5)}%  ${r.ms.toFixed(0).padStart(7)} ms  ${r.name}`);
  }
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].replace(/^.*\/bench\//, '/bench/'))) {
  const f = process.argv[2];
  if (!f) throw new Error('usage: tsx bench/lib/cpuprofile.ts FILE.cpuprofile [regex for inclusive]');
  printSummary(summarize(f, { top: 30, inclusive: process.argv[3] ? new RegExp(process.argv[3]) : undefined }));
}

/** Profiles this thread around `fn` (node:inspector) and writes a .cpuprofile to `file`. */
export async function profileWindow<T>(file: string, fn: () => Promise<T>, intervalUs = 200): Promise<T> {
  const { Session } = await import('node:inspector/promises');
  const { writeFileSync } = await import('node:fs');
  const s = new Session();
  s.connect();
  await s.post('Profiler.enable');
  await s.post('Profiler.setSamplingInterval', { interval: intervalUs });
  await s.post('Profiler.start');
  try {
    return await fn();
  } finally {
    const { profile } = await s.post('Profiler.stop');
    writeFileSync(file, JSON.stringify(profile));
    s.disconnect();
  }
}
