/**
 * Fuzzing: the loop shared by the driver (test/fuzz/run.ts, one worker thread per target) and the
 * vitest (test/fuzz.test.ts, in process).
 *
 * A target is a module with the jazzer.js signature: `export async function fuzz(data)` (throwing
 * is a violation) and `export const name`, optionally `setup`, `teardown`, `reset` (after a
 * violation or a time-out: rebuild any state the input may have wedged), `outcome` (a short label
 * of what the last input reached; a new label adds the input to the in-memory corpus, a cheap
 * stand-in for coverage feedback), `maxInputLength`, `weight` (its share of the time budget),
 * `timeoutMs` and `skip` (a reason not to run, e.g. a missing module).
 *
 * Inputs come from fast-check (lib/mutate.ts) in chunks of 64 drawn from (seed, target, chunk),
 * so a run is deterministic given its seed; a time budget only decides where it stops.
 */
import { readdirSync, readFileSync, existsSync, statSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { knownIssueOf } from '../known-issues.ts';
import { sampleChunk } from './mutate.ts';
import { Violation } from './oracle.ts';

export interface TargetModule {
  name: string;
  fuzz(data: Buffer | Uint8Array): Promise<void>;
  setup?(): Promise<void>;
  teardown?(): Promise<void>;
  reset?(): Promise<void>;
  outcome?(): string | undefined;
  maxInputLength?: number;
  weight?: number;
  timeoutMs?: number;
  skip?: string | (() => Promise<string | undefined>);
}

export interface Finding {
  target: string;
  index: number;
  kind: string;
  message: string;
  input: Uint8Array;
  /** The id of the known issue (test/fuzz/known-issues.ts) it matches, if any. */
  known?: string;
}

export interface TargetStats {
  target: string;
  executions: number;
  /** Violations that match no known issue. */
  violations: number;
  /** Violations that match a known issue. */
  known: number;
  findings: Finding[];
  elapsedMs: number;
  corpus: number;
  outcomes: number;
}

export interface RunOptions {
  seed: number;
  /** Stop after this long (ms) ... */
  timeMs?: number;
  /** ... or after this many inputs (whichever comes first). */
  runs?: number;
  /** Index of the first input (a restarted worker continues where the last one stopped). */
  startIndex?: number;
  /** Per-input bound; an input still running after it is a `hang` violation. */
  timeoutMs?: number;
  /** Seeds and regression inputs to start from. */
  corpus: Uint8Array[];
  /** Distinct findings kept (all violations are counted). */
  maxFindings?: number;
  onInput?(index: number, data: Uint8Array): void;
  onDone?(index: number): void;
  onFinding?(f: Finding): void;
}

/** What the driver hands a worker (test/fuzz/worker.ts). */
export interface WorkerData {
  file: string;
  seed: number;
  timeMs: number;
  runs?: number;
  startIndex: number;
  timeoutMs?: number;
  /** Int32 [current index, inputs done, input length] then the input bytes. */
  shared: SharedArrayBuffer;
}

export type WorkerMessage =
  | { type: 'ready'; setupMs: number; corpus: number }
  | { type: 'skip'; reason: string }
  | { type: 'finding'; finding: Finding }
  | { type: 'done'; stats: TargetStats; heapMb: number };

/** Bytes of the Int32 header of the shared input buffer. */
export const SHARED_HEADER = 12;

export const FUZZ_DIR = resolve(import.meta.dirname, '..');
export const TARGETS_DIR = join(FUZZ_DIR, 'targets');
export const SEEDS_DIR = join(FUZZ_DIR, 'seeds');
export const REGRESSIONS_DIR = join(FUZZ_DIR, 'corpus-regressions');
export const FINDINGS_DIR = join(FUZZ_DIR, 'findings');

/** Every target module file, sorted. */
export function targetFiles(): string[] {
  return readdirSync(TARGETS_DIR)
    .filter((f) => f.endsWith('.ts'))
    .sort()
    .map((f) => join(TARGETS_DIR, f));
}

export async function loadTarget(file: string): Promise<TargetModule> {
  const m = (await import(pathToFileURL(file).href)) as Partial<TargetModule>;
  if (typeof m.fuzz !== 'function' || typeof m.name !== 'string') throw new Error(`${file}: not a fuzz target (needs name and fuzz)`);
  return m as TargetModule;
}

export const targetNameOf = (file: string): string => basename(file, '.ts');

function binFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  for (const f of readdirSync(dir).sort()) {
    const p = join(dir, f);
    if (statSync(p).isDirectory()) out.push(...binFiles(p));
    else if (f.endsWith('.bin')) out.push(p);
  }
  return out;
}

/** The checked-in seeds of a target (test/fuzz/seeds/<target>/*.bin). */
export function seedFiles(target: string): string[] {
  return binFiles(join(SEEDS_DIR, target));
}

/** Inputs that once found a bug (test/fuzz/corpus-regressions/<target>/*.bin). */
export function regressionFiles(target: string): string[] {
  return binFiles(join(REGRESSIONS_DIR, target));
}

export function loadCorpus(target: string): Uint8Array[] {
  return [...seedFiles(target), ...regressionFiles(target)].map((f) => new Uint8Array(readFileSync(f)));
}

export async function skipReason(t: TargetModule): Promise<string | undefined> {
  if (typeof t.skip === 'string') return t.skip;
  if (typeof t.skip === 'function') return t.skip();
  return undefined;
}

/** The in-memory corpus stops growing here. */
const MAX_CORPUS = 512;

class Timeout extends Error {}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Timeout(`no answer within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** Classifies a thrown value as a finding (kind, one-line message plus detail). */
export function classify(e: unknown): { kind: string; message: string } {
  if (e instanceof Violation) return { kind: e.kind, message: e.message };
  if (e instanceof Timeout) return { kind: 'hang', message: e.message };
  if (e instanceof Error) return { kind: 'exception', message: `${e.name}: ${e.message}\n${(e.stack ?? '').split('\n').slice(1, 8).join('\n')}` };
  return { kind: 'exception', message: String(e) };
}

/** Runs one input through a target: null, or the finding. */
export async function runOne(t: TargetModule, data: Uint8Array, index: number, timeoutMs: number): Promise<Finding | null> {
  try {
    await withTimeout(t.fuzz(Buffer.from(data.buffer, data.byteOffset, data.length)), timeoutMs);
    return null;
  } catch (e) {
    const { kind, message } = classify(e);
    try {
      await t.reset?.();
    } catch (re) {
      return { target: t.name, index, kind, message: `${message}\n(reset failed too: ${String(re)})`, input: data };
    }
    return { target: t.name, index, kind, message, input: data };
  }
}

/** The fuzzing loop (see the header). */
export async function runTarget(t: TargetModule, o: RunOptions): Promise<TargetStats> {
  const t0 = performance.now();
  const corpus = o.corpus.map((c) => Uint8Array.from(c));
  const maxLen = t.maxInputLength ?? 4096;
  const timeoutMs = o.timeoutMs ?? t.timeoutMs ?? 2000;
  const maxFindings = o.maxFindings ?? 20;
  const outcomes = new Set<string>();
  const seenKinds = new Set<string>();
  const stats: TargetStats = { target: t.name, executions: 0, violations: 0, known: 0, findings: [], elapsedMs: 0, corpus: corpus.length, outcomes: 0 };
  let index = o.startIndex ?? 0;
  const CHUNK = 64;
  const timeUp = () => (o.timeMs !== undefined && performance.now() - t0 >= o.timeMs) || (o.runs !== undefined && stats.executions >= o.runs);
  let k = Math.floor(index / CHUNK);
  let skip = index % CHUNK;
  while (!timeUp()) {
    const inputs = sampleChunk(corpus, maxLen, o.seed, t.name, k, CHUNK);
    for (let j = skip; j < inputs.length && !timeUp(); j++, index++) {
      const data = inputs[j]!;
      o.onInput?.(index, data);
      const f = await runOne(t, data, index, timeoutMs);
      stats.executions++;
      o.onDone?.(index + 1);
      if (f) {
        f.known = knownIssueOf(f)?.id;
        if (f.known) stats.known++;
        else stats.violations++;
        const key = f.known ?? `${f.kind}:${f.message.split('\n')[0]!.replace(/\d+/g, 'N').slice(0, 160)}`;
        if (!seenKinds.has(key) && stats.findings.length < maxFindings) {
          seenKinds.add(key);
          stats.findings.push(f);
          o.onFinding?.(f);
        }
        continue;
      }
      const label = t.outcome?.();
      if (label !== undefined && !outcomes.has(label)) {
        outcomes.add(label);
        if ((outcomes.size > 1 || corpus.length === 0) && corpus.length < MAX_CORPUS) corpus.push(Uint8Array.from(data));
      }
    }
    skip = 0;
    k++;
  }
  stats.elapsedMs = performance.now() - t0;
  stats.corpus = corpus.length;
  stats.outcomes = outcomes.size;
  return stats;
}
