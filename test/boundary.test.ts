/**
 * The trust boundary and the tree's shape, checked on the source tree (every relative import,
 * re-export and dynamic import of every .ts / .mjs file):
 * - enclave/ imports only enclave/ and its primitive libraries; no file system, network, child
 *   processes, threads, ambient clock or ambient randomness.
 * - hsm/ (the simulated device: runner, NVRAM, tokens) imports only hsm/, enclave/ and
 *   bin/bundle.mjs: never host/, client/ or test code.
 * - host/ imports from enclave/ only the message API (enclave/api/) and the stateless protocol
 *   code that clients share (enclave/opaque/, without the server half); from hsm/ only its public
 *   surface (HSM_PUBLIC: the token backends table, where PINs come from, durable file writes, the p11-kit token server);
 *   never client/, except the command line (host/cli/), which is a client too.
 * - client/ imports only client/, enclave/api/ and the portable client half of enclave/opaque/;
 *   of packages only @noble and @hpke/core, and node: built-ins only in `*-node.ts` files.
 * Each rule has a positive control: the checker, given a planted bad import, reports it.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = resolve(import.meta.dirname, '..');

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...sourceFiles(p));
    else if (/\.(ts|mjs)$/.test(p)) out.push(p);
  }
  return out;
}

/** The module specifiers a source text imports: static, type-only, re-exports, side-effect and dynamic imports. */
function importsOf(src: string): string[] {
  const re = /(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)|import\s+['"]([^'"]+)['"]/g;
  const out: string[] = [];
  for (const m of src.matchAll(re)) out.push((m[1] ?? m[2] ?? m[3])!);
  return out;
}

function stripComments(src: string): string {
  return src.replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[^:])\/\/.*$/gm, '$1');
}

const AMBIENT = [
  /Date\.now\s*\(/,
  /Math\.random\s*\(/,
  /new Date\s*\(/,
  /crypto\.getRandomValues/,
  /crypto\.randomUUID/,
  /performance\.now/,
  /import\s*\{[^}]*\brandom\w*[^}]*\}\s*from\s*['"]node:crypto['"]/,
];

const ENCLAVE_PACKAGES = [/^koffi$/, /^@noble\//, /^libsodium-wrappers-sumo$/, /^hash-wasm$/, /^@hpke\/core$/, /^node:crypto$/, /^jose$/];
const CLIENT_PACKAGES = [/^@noble\//, /^@hpke\/core$/];
/**
 * What host/ may import from hsm/: the token backends table (their names, and the environment a
 * device needs from the host's process: hostEnv; the host opens no token), where a device's PINs
 * come from, durable file writes; the data folder's token.json (which module and token a `pkcs11`
 * vault uses: names, no secret); the fleet member's device (hsm/fleet/device.ts: the host hands it
 * bytes, intents and ticks, and gets sealed messages with their receiver and answers back; it reads
 * no key); and the p11-kit token server, which `bkv token serve` runs as
 * the device's own process (the host hands it a data folder and a socket, and reads no key).
 */
const HSM_PUBLIC = ['hsm/tokens/backends.ts', 'hsm/tokens/token-pins.ts', 'hsm/tokens/config.ts', 'hsm/durable-file.ts', 'hsm/tokens/p11kit/index.ts', 'hsm/fleet/device.ts'];
/** enclave/opaque/ that the client does not use: the server, the index that re-exports it, the Node and WebAssembly backends. */
const OPAQUE_NOT_CLIENT = /^enclave\/opaque\/(server|index|suites-fast|hash-node|hash-sodium|groups\/(node|sodium)-[\w-]+)\.ts$/;
/**
 * Imports that break a rule today, each with its way out. The test fails when one disappears, so
 * the list only shrinks.
 */
const KNOWN: Record<string, string> = {};

/** The root-relative file a relative specifier in `file` names. */
const targetOf = (file: string, spec: string): string => relative(root, resolve(root, dirname(file), spec));
const under = (p: string, dir: string): boolean => p.startsWith(dir + '/');

/** Why `file` (root-relative) may not import `spec`, or null when it may. */
function violation(file: string, spec: string): string | null {
  const rel = spec.startsWith('.');
  const target = rel ? targetOf(file, spec) : spec;
  const no = (why: string) => `${file} -> ${target}: ${why}`;
  if (under(file, 'enclave')) {
    if (rel) return under(target, 'enclave') ? null : no('enclave/ imports only enclave/');
    return ENCLAVE_PACKAGES.some((re) => re.test(spec)) ? null : no('not a library the enclave may use');
  }
  if (under(file, 'hsm')) {
    if (!rel) return null;
    return under(target, 'hsm') || under(target, 'enclave') || target === 'bin/bundle.mjs' ? null : no('hsm/ imports only hsm/, enclave/ and bin/bundle.mjs');
  }
  if (under(file, 'host')) {
    if (!rel) return null;
    const cli = under(file, 'host/cli');
    if (under(target, 'client') && !cli) return no('host/ does not import client/ (only host/cli/ does)');
    if (under(target, 'hsm') && !HSM_PUBLIC.includes(target)) return no("host/ imports from hsm/ only its public surface");
    if (under(target, 'enclave') && !under(target, 'enclave/api') && !(under(target, 'enclave/opaque') && target !== 'enclave/opaque/server.ts')) {
      return no('host/ imports from enclave/ only the API and the client-shared protocol code');
    }
    return null;
  }
  if (under(file, 'client')) {
    if (rel) {
      const ok = under(target, 'client') || under(target, 'enclave/api') || (under(target, 'enclave/opaque') && !OPAQUE_NOT_CLIENT.test(target));
      return ok ? null : no('client/ imports only client/, enclave/api/ and the client half of enclave/opaque/');
    }
    if (spec.startsWith('node:')) return /-node\.ts$/.test(file) ? null : no('node: built-ins only in *-node.ts (the rest runs in a browser)');
    return CLIENT_PACKAGES.some((re) => re.test(spec)) ? null : no('not a library the client may use');
  }
  // Tests and benchmarks share helpers through test/helpers/ and bench/lib/ only inside their own
  // tree; test/bench/ tests the bench's helpers and is the one test folder that imports bench/.
  if (under(file, 'bench')) return rel && under(target, 'test') ? no('bench/ does not import test/') : null;
  if (under(file, 'test') && !under(file, 'test/bench')) return rel && under(target, 'bench') ? no('test/ imports bench/ only from test/bench/') : null;
  return null;
}

describe('trust boundary', () => {
  const dirs = ['enclave', 'hsm', 'host', 'client', 'test', 'bench'] as const;
  const files = Object.fromEntries(dirs.map((d) => [d, sourceFiles(join(root, d)).map((f) => relative(root, f))])) as Record<(typeof dirs)[number], string[]>;
  const all = dirs.flatMap((d) => files[d]);
  const found = all.flatMap((f) => importsOf(stripComments(readFileSync(join(root, f), 'utf8'))).map((spec) => violation(f, spec))).filter((v): v is string => v !== null);
  const known = (v: string) => Object.keys(KNOWN).some((k) => v.startsWith(k + ':'));

  it('finds the sources it checks', () => {
    expect(files.enclave.length).toBeGreaterThan(10);
    expect(files.hsm.length).toBeGreaterThan(10);
    expect(files.host.length).toBeGreaterThan(10);
    expect(files.client.length).toBeGreaterThan(5);
    expect(files.test.length).toBeGreaterThan(50);
    expect(files.bench.length).toBeGreaterThan(5);
    for (const f of HSM_PUBLIC) expect(all).toContain(f);
  });

  it('every import keeps to its folder’s rule', () => {
    expect(found.filter((v) => !known(v))).toEqual([]);
  });

  it('every known exception still exists (remove it from KNOWN once it is gone)', () => {
    for (const k of Object.keys(KNOWN)) expect(found.some((v) => v.startsWith(k + ':')), k).toBe(true);
  });

  it('enclave/ uses no ambient clock or randomness', () => {
    const bad: string[] = [];
    for (const f of files.enclave) {
      const src = stripComments(readFileSync(join(root, f), 'utf8'));
      for (const pat of AMBIENT) {
        if (pat.test(src)) bad.push(`${f}: ${pat}`);
      }
    }
    expect(bad).toEqual([]);
  });

  describe('positive controls: planted violations are reported', () => {
    it('the import scanner finds every form of import', () => {
      const planted = [
        "import { a } from '../host/x.ts';",
        "import type {\n  B,\n  C,\n} from '../client/y.ts';",
        "export { d } from './z.ts';",
        "export * from 'node:fs';",
        "import './side-effect.ts';",
        "const m = await import('../hsm/w.ts');",
      ].join('\n');
      expect(importsOf(planted)).toEqual(['../host/x.ts', '../client/y.ts', './z.ts', 'node:fs', './side-effect.ts', '../hsm/w.ts']);
    });

    it('the ambient scanner catches a clock and randomness', () => {
      const planted = "import { readFileSync } from 'node:fs';\nimport { randomBytes } from 'node:crypto';\nconst t = Date.now();";
      expect(AMBIENT.filter((p) => p.test(planted)).length).toBe(2);
    });

    /** [importing file, specifier, whether the rule allows it]: a bad and a good import per rule. */
    const cases: Record<string, [string, string, boolean][]> = {
      'enclave/: nothing outside enclave/, only its libraries': [
        ['enclave/vault/vault.ts', '../../host/storage/types.ts', false],
        ['enclave/vault/vault.ts', '../../hsm/runner.ts', false],
        ['enclave/api/codec.ts', '../../client/escrow.ts', false],
        ['enclave/vault/vault.ts', 'node:fs', false],
        ['enclave/vault/vault.ts', 'pg', false],
        ['enclave/vault/vault.ts', '../api/codec.ts', true],
        ['enclave/vault/vault.ts', '@noble/hashes/sha2.js', true],
      ],
      'hsm/: never host/, client/ or test code': [
        ['hsm/runner.ts', '../host/vault/engine.ts', false],
        ['hsm/tokens/open.ts', '../../client/escrow.ts', false],
        ['hsm/tokens/emulator/module.ts', '../../../test/helpers/tokens.ts', false],
        ['hsm/runner.ts', './tokens/open.ts', true],
        ['hsm/runner.ts', '../enclave/platform.ts', true],
        ['hsm/tokens/softhsm.ts', '../../bin/bundle.mjs', true],
      ],
      'host/: hsm/ only through its public surface, client/ only from the CLI, enclave/ only the API and client-shared OPAQUE': [
        ['host/vault/engine.ts', '../../client/escrow.ts', false],
        ['host/vault/engine.ts', '../../hsm/runner.ts', false],
        ['host/cli/demo.ts', '../../hsm/tokens/emulator/module.ts', false],
        ['host/channel/channel.ts', '../../hsm/tokens/softhsm.ts', false],
        ['host/channel/channel.ts', '../../hsm/tokens/open.ts', false],
        ['host/cli/cmd-serve.ts', '../../hsm/tokens/config.ts', true],
        ['host/vault/engine.ts', '../../enclave/vault/vault.ts', false],
        ['host/service/routes.ts', '../../enclave/opaque/server.ts', false],
        ['host/cli/demo.ts', '../../client/escrow.ts', true],
        ['host/service/server.ts', '../../hsm/tokens/token-pins.ts', true],
        ['host/channel/channel.ts', '../../hsm/tokens/backends.ts', true],
        ['host/service/routes.ts', '../../enclave/api/http.ts', true],
      ],
      'client/: only client/, enclave/api/ and the portable client half of enclave/opaque/': [
        ['client/escrow.ts', '../host/service/routes.ts', false],
        ['client/escrow.ts', '../hsm/runner.ts', false],
        ['client/escrow.ts', '../enclave/vault/ops.ts', false],
        ['client/escrow.ts', '../enclave/opaque/server.ts', false],
        ['client/escrow.ts', '../enclave/opaque/suites-fast.ts', false],
        ['client/escrow.ts', 'node:fs', false],
        ['client/escrow.ts', 'pg', false],
        ['client/escrow.ts', '../enclave/opaque/client.ts', true],
        ['client/escrow.ts', '../enclave/api/codec.ts', true],
        ['client/backup-file-node.ts', 'node:fs', true],
      ],
      'test/ and bench/: no test imports bench/ (test/bench/ excepted), no bench imports test/': [
        ['test/adversarial/races.ts', '../../bench/lib/stats.ts', false],
        ['bench/lib/vault-load.ts', '../../test/helpers/auth.ts', false],
        ['test/bench/stats.test.ts', '../../bench/lib/stats.ts', true],
        ['bench/enclave.ts', '../enclave/api/expect.ts', true],
      ],
    };
    for (const [rule, list] of Object.entries(cases)) {
      it(rule, () => {
        for (const [file, spec, allowed] of list) expect(violation(file, spec) === null, `${file} -> ${spec}`).toBe(allowed);
      });
    }
  });
});
