/**
 * A small strict argument parser for the `bkv` CLI: positional words, `--flag` booleans and
 * `--name value` options; unknown options (with the closest known one) and missing values are
 * clear errors. Every command also takes `--json` and `--help` / `-h`: help wins over any other
 * error of the same command line, so `bkv escrow register --vualt x --help` prints the help.
 */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** `--help` or `-h` was given: `positional` says which subcommand's help is wanted. */
export class HelpRequested extends Error {
  override readonly name = 'HelpRequested';
  constructor(readonly positional: string[]) {
    super('help');
  }
}

export interface Parsed {
  positional: string[];
  opts: Map<string, string>;
  /** Every value of each option, in order (for repeatable ones such as --auth-issuer); `opts` keeps the last. */
  all: Map<string, string[]>;
  flags: Set<string>;
}

/** Flags every command takes (bkv.ts acts on them). */
export const GENERIC_FLAGS = ['json', 'help'] as const;

export function parseArgs(argv: string[], spec: { options?: string[]; flags?: string[] }): Parsed {
  const options = new Set(spec.options ?? []);
  const flagNames = new Set([...(spec.flags ?? []), ...GENERIC_FLAGS]);
  const out: Parsed = { positional: [], opts: new Map(), all: new Map(), flags: new Set() };
  let error: UsageError | undefined;
  const fail = (m: string) => void (error ??= new UsageError(m));
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '-h') {
      out.flags.add('help');
      continue;
    }
    if (!a.startsWith('--')) {
      out.positional.push(a);
      continue;
    }
    const [name, inline] = a.slice(2).split('=', 2) as [string, string | undefined];
    if (flagNames.has(name)) {
      if (inline !== undefined) fail(`--${name} takes no value`);
      else out.flags.add(name);
    } else if (options.has(name)) {
      const v = inline ?? argv[i + 1];
      if (v === undefined || (inline === undefined && (v.startsWith('--') || v === '-h'))) {
        fail(`--${name} needs a value`);
        continue;
      }
      if (inline === undefined) i++;
      out.opts.set(name, v);
      out.all.set(name, [...(out.all.get(name) ?? []), v]);
    } else {
      const near = closest(name, [...options, ...flagNames]);
      fail(`unknown option --${name}${near ? `; did you mean --${near}?` : ''}`);
    }
  }
  if (out.flags.has('help')) throw new HelpRequested(out.positional);
  if (error) throw error;
  return out;
}

export function required(p: Parsed, name: string): string {
  const v = p.opts.get(name);
  if (v === undefined) throw new UsageError(`--${name} is required`);
  return v;
}

export function intOption(p: Parsed, name: string, min: number, max: number): number | undefined {
  const v = p.opts.get(name);
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) throw new UsageError(`--${name} must be an integer in ${min}..${max}`);
  return Number(v);
}

/**
 * The known word closest to `word` (a typo: at most 1 edit for words of up to 4 letters, 2
 * beyond; or a word it begins), or undefined. Edits are the optimal string alignment distance:
 * insertions, deletions, substitutions and swaps of neighbours (`vualt` is one from `vault`).
 */
export function closest(word: string, known: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const k of known) {
    const d = word.length >= 3 && k.startsWith(word) ? 1 : editDistance(word, k);
    if (d < bestD) [best, bestD] = [k, d];
  }
  return bestD <= (word.length <= 4 ? 1 : 2) ? best : undefined;
}

function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i]![j] = Math.min(d[i]![j]!, d[i - 2]![j - 2]! + 1);
    }
  }
  return d[a.length]![b.length]!;
}
