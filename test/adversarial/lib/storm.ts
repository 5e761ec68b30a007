/**
 * Adversarial scripts: what the storm scripts (crash-storm, rollback-storm, storage-faults,
 * token-faults, races) start and end with, written once: the seed and its Rng, the knobs and
 * their defaults, a report, a temporary folder (removed by `finishStorm`'s caller in a finally),
 * the closing stats; and their command line (--rounds --seed --mode --partitions --concurrency).
 */
import { Rng, newReport, parseArgs, tempDir } from './common.ts';
import type { Args, Report } from './common.ts';
import type { Ledger } from './ledger.ts';

/** The knobs every storm takes (each script adds its own). */
export interface StormKnobs<M extends string = string> {
  seed?: number;
  mode?: M;
  partitions?: number;
  concurrency?: number;
  log?: (line: string) => void;
}

export interface Storm<M extends string = string> {
  seed: number;
  rng: Rng;
  mode: M;
  partitions: number;
  concurrency: number;
  log: (line: string) => void;
  report: Report;
  tmp: { dir: string; remove(): void };
  /** performance.now() at the start. */
  t0: number;
}

/**
 * Starts a storm: `o`'s knobs over the defaults (2 partitions; a seed from the clock when none is
 * given), a report titled by `title` (which sees the seed and mode), a temporary folder `bkv-adv-<tmp>-*`.
 */
export function startStorm<M extends string>(
  o: StormKnobs<M>,
  d: { mode: M; concurrency: number; tmp: string },
  title: (seed: number, mode: M) => string,
): Storm<M> {
  const seed = o.seed ?? Date.now() % 1e9;
  const mode = o.mode ?? d.mode;
  return {
    seed,
    rng: new Rng(seed),
    mode,
    partitions: o.partitions ?? 2,
    concurrency: o.concurrency ?? d.concurrency,
    log: o.log ?? (() => undefined),
    report: newReport(title(seed, mode)),
    tmp: tempDir(d.tmp),
    t0: performance.now(),
  };
}

/** Ends a storm's report: the ledger's answers by kind (when it kept one), then the seconds it took. */
export function finishStorm(s: Storm, ledger?: Ledger): Report {
  if (ledger) s.report.stats['answers'] = Object.entries(ledger.answers).map(([k, n]) => `${k}=${n}`).join(' ');
  s.report.stats['seconds'] = Math.round((performance.now() - s.t0) / 100) / 10;
  return s.report;
}

/**
 * A storm's command line: --rounds, --seed, --mode (one of `modes`, the first by default; any
 * other word is refused), --partitions, --concurrency, plus the script's own `flags`. Returns the
 * parsed arguments too, for what only one script reads.
 */
export function stormArgs<M extends string>(
  argv: string[],
  d: { rounds: number; concurrency: number; modes: readonly M[]; flags?: string[] },
): { args: Args; knobs: StormKnobs<M> & { rounds: number; log: (line: string) => void } } {
  const args = parseArgs(argv, ['rounds', 'seed', 'mode', 'partitions', 'concurrency'], d.flags ?? []);
  const mode = (args.get('mode') ?? d.modes[0]) as M;
  if (!d.modes.includes(mode)) throw new Error(`--mode must be ${d.modes.join(', ')}`);
  return {
    args,
    knobs: {
      rounds: args.num('rounds', d.rounds),
      seed: args.get('seed') === undefined ? undefined : args.num('seed', 1),
      mode,
      partitions: args.num('partitions', 2),
      concurrency: args.num('concurrency', d.concurrency),
      log: (l) => console.log(l),
    },
  };
}
