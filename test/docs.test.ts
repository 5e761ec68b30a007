/**
 * Every link and repository path named in the README and in docs/*.md exists:
 * - a Markdown link `[text](target)` that is not a URL or an anchor, resolved from the file's
 *   own folder (its `#fragment` dropped);
 * - a path that starts with one of the tree's top folders (`enclave/`, `hsm/`, `test/`, ...),
 *   anywhere in the text, resolved from the repository root.
 * Bare file names (`batch.ts` beside a full path) are read in context and not checked.
 * A positive control plants a dead link and a dead path and expects both reported.
 * Every `--token a|b|...` a document spells lists exactly the token backends of
 * hsm/tokens/backends.ts, so a new backend can not be missing from the docs.
 * Every `--vault URL` placeholder in a document or in the help (host/cli/help.ts) says it takes a
 * list (`--vault URL[,URL...]`, client/vault-members.ts), and every escrow verb's usage has it.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { TOKEN_KINDS } from '../hsm/tokens/backends.ts';
import { COMMANDS } from '../host/cli/help.ts';

const root = resolve(import.meta.dirname, '..');

const TOP = ['enclave', 'hsm', 'host', 'client', 'test', 'bench', 'bin', 'scripts', 'softhsm-config', 'docs', '.ci'];

/** Outputs a command makes (gitignored, so absent from a clean clone): named, never checked. */
const GENERATED = ['docs/api/'];

function docFiles(): string[] {
  const docs = join(root, 'docs');
  const out = [join(root, 'README.md')];
  if (existsSync(docs)) for (const n of readdirSync(docs)) if (n.endsWith('.md')) out.push(join(docs, n));
  return out;
}

/** The dead links and paths of one Markdown text, as `target` strings. */
function deadPaths(text: string, file: string): string[] {
  const dead = new Set<string>();
  for (const m of text.matchAll(/\]\(([^)\s]+)\)/g)) {
    const target = m[1]!.split('#')[0]!;
    if (!target || /^[a-z]+:/i.test(target)) continue;
    if (!existsSync(resolve(dirname(file), target))) dead.add(target);
  }
  const top = TOP.map((t) => t.replace('.', '\\.')).join('|');
  const re = new RegExp(`(?<![\\w./<>{}@*-])((?:${top})/[\\w./-]*)`, 'g');
  for (const m of text.matchAll(re)) {
    const p = m[1]!.replace(/[.,]+$/, '');
    if (GENERATED.some((g) => p.startsWith(g))) continue;
    if (!existsSync(join(root, p))) dead.add(p);
  }
  return [...dead];
}

describe('docs: every link and path resolves', () => {
  for (const file of docFiles()) {
    it(relative(root, file), () => {
      expect(deadPaths(readFileSync(file, 'utf8'), file)).toEqual([]);
    });
  }

  it('positive control: a dead link and a dead path are reported, live ones are not', () => {
    const text = [
      'See [the design](docs/design.md) and [nothing](docs/no-such-file.md#part).',
      'The rule lives in `enclave/vault/batch.ts`, not in `enclave/vault/no-such-rule.ts`.',
      'Tests: test/boundary.test.ts, and [a site](https://example.com/x).',
    ].join('\n');
    expect(deadPaths(text, join(root, 'README.md')).sort()).toEqual(['docs/no-such-file.md', 'enclave/vault/no-such-rule.ts']);
  });
});

/** Every `--token x|y|...` spelled in `text`, as the list of its kinds. */
function tokenLists(text: string): string[] {
  return [...text.matchAll(/--token ([a-z0-9]+(?:\|[a-z0-9]+)+)/g)].map((m) => m[1]!);
}

describe('docs: token backend lists', () => {
  it('every --token list names exactly the backends of hsm/tokens/backends.ts', () => {
    const all = docFiles().flatMap((f) => tokenLists(readFileSync(f, 'utf8')).map((l) => `${relative(root, f)}: ${l}`));
    expect(all.length).toBeGreaterThan(0);
    for (const l of all) expect(l.split(': ')[1], l).toBe(TOKEN_KINDS.join('|'));
  });

  it('positive control: a list missing a backend is found', () => {
    expect(tokenLists('run with `--token emulator|softhsm` or `--token emulator`')).toEqual(['emulator|softhsm']);
    expect('emulator|softhsm').not.toBe(TOKEN_KINDS.join('|'));
  });
});

/** Every `--vault` placeholder spelled in `text`: `URL`, or `URL[,URL...]`. */
function vaultPlaceholders(text: string): string[] {
  return [...text.matchAll(/--vault (URL(?:\[,URL\.\.\.\])?)/g)].map((m) => m[1]!);
}

describe('docs: --vault takes one URL or several', () => {
  it('every --vault placeholder in the README, docs/*.md and the help reads URL[,URL...]; every escrow verb takes it', () => {
    const help = Object.entries(COMMANDS).flatMap(([cmd, c]) => [
      [`bkv ${cmd}`, `${c.usage} ${c.about}`],
      ...Object.entries(c.verbs ?? {}).map(([verb, v]) => [`bkv ${cmd} ${verb}`, `${v.usage} ${v.about}`]),
    ]);
    const texts = [...docFiles().map((f) => [relative(root, f), readFileSync(f, 'utf8')]), ...help];
    const all = texts.flatMap(([where, text]) => vaultPlaceholders(text!).map((p) => `${where}: ${p}`));
    expect(all.length).toBeGreaterThan(5);
    for (const l of all) expect(l.split(': ')[1], l).toBe('URL[,URL...]');
    for (const [verb, v] of Object.entries(COMMANDS.escrow!.verbs!)) expect(v.usage, verb).toContain('--vault URL[,URL...] ');
  });

  it('positive control: a placeholder for one URL is found', () => {
    expect(vaultPlaceholders('bkv escrow status --vault URL --vault-key F; --vault URL[,URL...]')).toEqual(['URL', 'URL[,URL...]']);
  });
});
