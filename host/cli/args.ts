/**
 * A small strict argument parser for the `bkv` CLI: positional words, `--flag` booleans and
 * `--name value` options; unknown options and missing values are clear errors.
 */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export interface Parsed {
  positional: string[];
  opts: Map<string, string>;
  /** Every value of each option, in order (for repeatable ones such as --auth-issuer); `opts` keeps the last. */
  all: Map<string, string[]>;
  flags: Set<string>;
}

export function parseArgs(argv: string[], spec: { options?: string[]; flags?: string[] }): Parsed {
  const options = new Set(spec.options ?? []);
  const flagNames = new Set(spec.flags ?? []);
  const out: Parsed = { positional: [], opts: new Map(), all: new Map(), flags: new Set() };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('--')) {
      out.positional.push(a);
      continue;
    }
    const [name, inline] = a.slice(2).split('=', 2) as [string, string | undefined];
    if (flagNames.has(name)) {
      if (inline !== undefined) throw new UsageError(`--${name} takes no value`);
      out.flags.add(name);
    } else if (options.has(name)) {
      const v = inline ?? argv[++i];
      if (v === undefined || (inline === undefined && v.startsWith('--'))) throw new UsageError(`--${name} needs a value`);
      out.opts.set(name, v);
      out.all.set(name, [...(out.all.get(name) ?? []), v]);
    } else {
      throw new UsageError(`unknown option --${name}`);
    }
  }
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
