/**
 * The fuzz driver: runs every target of test/fuzz/targets/ (jazzer.js-style modules, see
 * lib/engine.ts) for its share of a time budget, each in its own worker thread, with inputs from
 * fast-check over the checked-in seeds and regression inputs (lib/mutate.ts).
 *
 *   npx tsx test/fuzz/run.ts --seconds N [--target NAME[,NAME]] [--seed S] [--runs R]
 *                            [--jobs J] [--timeout MS] [--rss-mb MB] [--heap-mb MB] [--no-save]
 *
 *   --seconds   total fuzzing time, shared between targets by their `weight` (default 60)
 *   --target    only these targets          --seed   run seed (default 1): same seed, same inputs
 *   --runs      also stop each target after R inputs (then the run is reproducible exactly)
 *   --jobs      targets run at once (default 2, or 1 on a one-core machine)
 *   --timeout   per-input bound in ms (default: the target's, else 2000); a synchronous hang is
 *               caught by a watchdog (no progress for 3 x timeout) that terminates the worker
 *   --rss-mb    resident memory growth over a target's run that counts as a violation (default 768)
 *   --heap-mb   heap limit of a worker (default 2048): running out is a violation
 *   --no-save   do not write findings
 *   --strict    also fail on violations that match a known issue (test/fuzz/known-issues.ts)
 *
 * Prints, per target: executions, violations, exec/s, corpus size, distinct outcomes, setup time.
 * Each finding is printed (kind, message, input hex) and saved as test/fuzz/findings/<target>/
 * <kind>-<hash>.bin with a .txt note. Exits 1 if any target had a violation that matches no known
 * issue (with --strict: any violation).
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { FINDINGS_DIR, SHARED_HEADER, targetFiles, targetNameOf } from './lib/engine.ts';
import type { Finding, WorkerData, WorkerMessage } from './lib/engine.ts';
import { KNOWN_ISSUES, knownIssueOf } from './known-issues.ts';

interface Args {
  seconds: number;
  targets: string[] | null;
  seed: number;
  runs?: number;
  jobs: number;
  timeoutMs?: number;
  rssMb: number;
  heapMb: number;
  save: boolean;
  strict: boolean;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { seconds: 60, targets: null, seed: 1, jobs: Math.min(2, availableParallelism()), rssMb: 768, heapMb: 2048, save: true, strict: false };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i]!;
    const val = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${k} needs a value`);
      return v;
    };
    const num = () => {
      const n = Number(val());
      if (!Number.isFinite(n) || n < 0) throw new Error(`${k}: not a number`);
      return n;
    };
    if (k === '--seconds') a.seconds = num();
    else if (k === '--target') a.targets = [...(a.targets ?? []), ...val().split(',')];
    else if (k === '--seed') a.seed = Math.floor(num());
    else if (k === '--runs') a.runs = Math.floor(num());
    else if (k === '--jobs') a.jobs = Math.max(1, Math.floor(num()));
    else if (k === '--timeout') a.timeoutMs = num();
    else if (k === '--rss-mb') a.rssMb = num();
    else if (k === '--heap-mb') a.heapMb = num();
    else if (k === '--no-save') a.save = false;
    else if (k === '--strict') a.strict = true;
    else if (k === '--') continue;
    else throw new Error(`unknown argument ${k}`);
  }
  return a;
}

interface Result {
  target: string;
  executions: number;
  violations: number;
  known: number;
  elapsedMs: number;
  setupMs: number;
  corpus: number;
  outcomes: number;
  heapMb: number;
  rssGrowthMb: number;
  skipped?: string;
  findings: Finding[];
}

const weightOf = (file: string): number => {
  const m = /export const weight = (\d+(?:\.\d+)?)/.exec(readFileSync(file, 'utf8'));
  return m ? Number(m[1]) : 1;
};
const timeoutOf = (file: string): number => {
  const m = /export const timeoutMs = (\d+)/.exec(readFileSync(file, 'utf8'));
  return m ? Number(m[1]) : 2000;
};

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const WORKER_URL = new URL('./worker.ts', import.meta.url).href;

/** Runs one target for `timeMs` in workers (a new one after a hang or a crash). */
async function runTargetInWorkers(file: string, timeMs: number, args: Args, onFinding: (f: Finding) => void): Promise<Result> {
  const target = targetNameOf(file);
  const res: Result = { target, executions: 0, violations: 0, known: 0, elapsedMs: 0, setupMs: 0, corpus: 0, outcomes: 0, heapMb: 0, rssGrowthMb: 0, findings: [] };
  const timeoutMs = args.timeoutMs ?? timeoutOf(file);
  const hangMs = Math.max(10_000, 3 * timeoutMs);
  let startIndex = 0;
  let remaining = timeMs;
  const rss0 = process.memoryUsage().rss;
  let rssPeak = rss0;
  const finding = (f: Finding) => {
    f.known = knownIssueOf(f)?.id;
    res.findings.push(f);
    onFinding(f);
  };
  for (let attempt = 0; remaining > 200 && attempt < 50; attempt++) {
    const shared = new SharedArrayBuffer(SHARED_HEADER + (1 << 17));
    const head = new Int32Array(shared, 0, 3);
    Atomics.store(head, 0, -1);
    Atomics.store(head, 1, startIndex);
    const data: WorkerData = { file, seed: args.seed, timeMs: remaining, runs: args.runs === undefined ? undefined : Math.max(0, args.runs - res.executions), startIndex, timeoutMs: args.timeoutMs, shared };
    // A worker does not inherit tsx's loader: register it first, then load the TypeScript entry.
    const boot = `import('tsx/esm/api').then((m) => { m.register(); return import(${JSON.stringify(WORKER_URL)}); })`;
    const worker = new Worker(boot, { eval: true, workerData: data, resourceLimits: { maxOldGenerationSizeMb: args.heapMb } });
    const t0 = performance.now();
    let fuzzStart = 0;
    const outcome = await new Promise<{ kind: 'done' | 'skip' | 'hang' | 'crash'; message?: string }>((resolve) => {
      let lastDone = startIndex;
      let lastProgress = performance.now();
      let settled = false;
      const settle = (v: { kind: 'done' | 'skip' | 'hang' | 'crash'; message?: string }) => {
        if (settled) return;
        settled = true;
        clearInterval(watch);
        resolve(v);
      };
      const watch = setInterval(() => {
        rssPeak = Math.max(rssPeak, process.memoryUsage().rss);
        const done = Atomics.load(head, 1);
        if (done !== lastDone) {
          lastDone = done;
          lastProgress = performance.now();
        } else if (fuzzStart && performance.now() - lastProgress > hangMs) {
          void worker.terminate();
          settle({ kind: 'hang', message: `no progress for ${Math.round(hangMs / 1000)} s (a synchronous hang): the worker was terminated` });
        }
      }, 250);
      worker.on('message', (m: WorkerMessage) => {
        if (m.type === 'ready') {
          res.setupMs += m.setupMs;
          res.corpus = m.corpus;
          fuzzStart = performance.now();
          lastProgress = fuzzStart;
        } else if (m.type === 'skip') {
          res.skipped = m.reason;
        } else if (m.type === 'finding') {
          finding(m.finding);
        } else if (m.type === 'done') {
          res.executions += m.stats.executions;
          res.violations += m.stats.violations;
          res.known += m.stats.known;
          res.corpus = Math.max(res.corpus, m.stats.corpus);
          res.outcomes = Math.max(res.outcomes, m.stats.outcomes);
          res.heapMb = Math.max(res.heapMb, m.heapMb);
        }
      });
      worker.on('error', (e: Error & { code?: string }) => {
        const oom = e.code === 'ERR_WORKER_OUT_OF_MEMORY';
        settle({ kind: 'crash', message: oom ? `the worker ran out of heap (limit ${args.heapMb} MB)` : `the worker crashed: ${e.stack ?? String(e)}` });
      });
      worker.on('exit', () => settle({ kind: res.skipped ? 'skip' : 'done' }));
    });
    const elapsed = performance.now() - (fuzzStart || t0);
    res.elapsedMs += fuzzStart ? elapsed : 0;
    if (outcome.kind === 'done' || outcome.kind === 'skip') break;
    // A hang or a crash: the input in shared memory is the culprit; count it and go on after it.
    const index = Atomics.load(head, 0);
    const len = Atomics.load(head, 2);
    const input = new Uint8Array(shared, SHARED_HEADER, len).slice();
    if (!fuzzStart) {
      finding({ target, index: -1, kind: 'setup', message: outcome.message ?? 'setup failed', input: new Uint8Array(0) });
      res.violations++;
      break;
    }
    const doneInWorker = Atomics.load(head, 1) - startIndex;
    res.executions += doneInWorker + 1;
    res.violations++;
    finding({ target, index, kind: outcome.kind === 'hang' ? 'hang' : 'memory', message: outcome.message ?? '', input });
    startIndex = index + 1;
    remaining -= elapsed;
  }
  res.rssGrowthMb = (rssPeak - rss0) / 2 ** 20;
  if (res.rssGrowthMb > args.rssMb) {
    res.violations++;
    finding({ target, index: -1, kind: 'memory', message: `resident memory grew by ${Math.round(res.rssGrowthMb)} MB during the run (bound ${args.rssMb} MB)`, input: new Uint8Array(0) });
  }
  return res;
}

function save(f: Finding): string {
  const h = createHash('sha256').update(f.input).digest('hex').slice(0, 12);
  const dir = join(FINDINGS_DIR, f.target);
  mkdirSync(dir, { recursive: true });
  const base = join(dir, `${f.kind}-${h}`);
  writeFileSync(`${base}.bin`, f.input);
  writeFileSync(`${base}.txt`, `target: ${f.target}\nkind: ${f.kind}\ninput index: ${f.index}\n\n${f.message}\n\ninput (${f.input.length} bytes):\n${hex(f.input)}\n`);
  return `${base}.bin`;
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  let files = targetFiles();
  if (args.targets) {
    const want = new Set(args.targets);
    files = files.filter((f) => want.has(targetNameOf(f)));
    const missing = [...want].filter((t) => !files.some((f) => targetNameOf(f) === t));
    if (missing.length) throw new Error(`no such target: ${missing.join(', ')} (have: ${targetFiles().map(targetNameOf).join(', ')})`);
  }
  const total = files.reduce((n, f) => n + weightOf(f), 0);
  console.log(`fuzz: ${files.length} targets, ${args.seconds} s, seed ${args.seed}${args.runs !== undefined ? `, at most ${args.runs} inputs each` : ''}, ${args.jobs} at a time; node ${process.version}`);
  const results: Result[] = [];
  const queue = [...files];
  const knownSeen = new Map<string, number>();
  const onFinding = (f: Finding) => {
    const where = args.save && f.input.length + f.message.length > 0 ? save(f) : '(not saved)';
    if (f.known) {
      knownSeen.set(f.known, (knownSeen.get(f.known) ?? 0) + 1);
      console.log(`\n~~ ${f.target}: known issue ${f.known} (${f.kind}) at input ${f.index}; input ${hex(f.input.subarray(0, 96))}${f.input.length > 96 ? '...' : ''}; saved: ${where}`);
      return;
    }
    console.log(`\n!! ${f.target}: ${f.kind} at input ${f.index}\n${f.message.split('\n').map((l) => `   ${l}`).join('\n')}\n   input (${f.input.length} bytes): ${hex(f.input.subarray(0, 512))}${f.input.length > 512 ? '...' : ''}\n   saved: ${where}\n`);
  };
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: Math.min(args.jobs, queue.length) }, async () => {
      for (let f = queue.shift(); f; f = queue.shift()) {
        const share = (args.seconds * 1000 * weightOf(f) * args.jobs) / total;
        const r = await runTargetInWorkers(f, share, args, onFinding);
        results.push(r);
        const rate = r.elapsedMs > 0 ? (r.executions / r.elapsedMs) * 1000 : 0;
        console.log(
          r.skipped
            ? `   ${r.target.padEnd(30)} skipped: ${r.skipped}`
            : `   ${r.target.padEnd(30)} ${String(r.executions).padStart(8)} execs ${String(r.violations).padStart(5)} violations${r.known ? ` (+${r.known} known)` : ''} ${rate.toFixed(1).padStart(9)} exec/s`,
        );
      }
    }),
  );
  results.sort((a, b) => a.target.localeCompare(b.target));
  const w = Math.max(...results.map((r) => r.target.length), 6);
  console.log(`\n${'target'.padEnd(w)}  ${'execs'.padStart(8)}  ${'viol'.padStart(5)}  ${'known'.padStart(5)}  ${'exec/s'.padStart(9)}  ${'corpus'.padStart(6)}  ${'outcomes'.padStart(8)}  ${'setup s'.padStart(7)}  ${'heap MB'.padStart(7)}`);
  let violations = 0;
  let known = 0;
  let executions = 0;
  for (const r of results) {
    violations += r.violations;
    known += r.known;
    executions += r.executions;
    if (r.skipped) {
      console.log(`${r.target.padEnd(w)}  skipped: ${r.skipped}`);
      continue;
    }
    const rate = r.elapsedMs > 0 ? (r.executions / r.elapsedMs) * 1000 : 0;
    console.log(
      `${r.target.padEnd(w)}  ${String(r.executions).padStart(8)}  ${String(r.violations).padStart(5)}  ${String(r.known).padStart(5)}  ${rate.toFixed(1).padStart(9)}  ${String(r.corpus).padStart(6)}  ${String(r.outcomes).padStart(8)}  ${(r.setupMs / 1000).toFixed(1).padStart(7)}  ${r.heapMb.toFixed(0).padStart(7)}`,
    );
  }
  console.log(`${'total'.padEnd(w)}  ${String(executions).padStart(8)}  ${String(violations).padStart(5)}  ${String(known).padStart(5)}   in ${((performance.now() - t0) / 1000).toFixed(1)} s wall, peak RSS ${Math.round(process.memoryUsage().rss / 2 ** 20)} MB`);
  for (const k of KNOWN_ISSUES) if (knownSeen.has(k.id)) console.log(`\nknown issue ${k.id} (${k.target}, ${k.kind}), seen again: ${k.summary}`);
  if (violations || (args.strict && known)) {
    console.log(`\n${violations} violation(s)${known ? ` and ${known} of known issues` : ''}; findings in ${FINDINGS_DIR}`);
    process.exitCode = 1;
  } else {
    console.log(`\nno violations${known ? ` (${known} of known issues, not counted without --strict)` : ''}`);
  }
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exitCode = 2;
});
