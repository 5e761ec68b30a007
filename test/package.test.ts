/**
 * The package as a new user gets it (issue 17, "The package"): `npm pack` (whose `prepare`
 * runs `npm run build`), the tarball unpacked into an empty project, then plain `node` (no tsx,
 * no loader) runs scripts against its entry points:
 *
 * - test/package/entry-points.mjs: the bare `backup-key-vault` import and every entry point it names;
 * - test/package/opaque-interop.mjs: ristretto255 and P-256 logins between
 *   `backup-key-vault/opaque` and @serenity-kit/opaque(-p256), both directions;
 * - test/package/vault.mjs: an in-process vault through `backup-key-vault/vault`, an escrow and
 *   a recovery relayed by `vault.submit`;
 * - examples/embedded-service.mjs --once: the service mounted in a plain node:http server, a key
 *   escrowed and recovered over HTTP with `backup-key-vault/client` and development-mode tokens;
 * - examples/browser-client/build.mjs: `backup-key-vault/client` bundled for the browser;
 * - test/package/browser.mjs: `backup-key-vault/client` from the installed package bundled by
 *   esbuild and run in headless Chromium against the service (test/helpers/chromium.ts; without
 *   Chromium skipped with a printed reason, except with CI=true, where it fails);
 * - the `bkv` command (bin/bkv.mjs, which runs dist/): `bkv demo` with child-process devices;
 * - a TypeScript consumer typechecked against the shipped declaration files.
 *
 * The tarball is unpacked, not `npm install`ed: npm's offline cache holds the locked tarballs
 * but not the registry metadata an install of a new package resolves against, so an offline
 * install fails (ENOTCACHED), and an online one would compile better-sqlite3 and pkcs11js again
 * (about a minute). The empty project's node_modules links, from this project's installed
 * packages, what an install would bring: the package's declared `dependencies` and their
 * transitive closure as package-lock.json records it, plus the consumer's own tools
 * (@serenity-kit/*, esbuild, playwright-core, @types/node and their closures). Nothing else: a run-time import
 * that the package does not declare (a dev tool, a forgotten dependency) fails here. Node runs
 * with NODE_PRESERVE_SYMLINKS=1, so a linked package resolves its own imports from the empty
 * project's node_modules, not from this project's, and the closure is checked at every level.
 *
 * Without @serenity-kit the interop part is skipped with a printed reason, except with CI=true,
 * where it fails.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHROMIUM, CHROMIUM_ARGS, browserRuns, requireChromium } from './helpers/chromium.ts';

const root = resolve(import.meta.dirname, '..');
const modules = realpathSync(join(root, 'node_modules'));
const ci = process.env.CI === 'true';
const haveSerenity = existsSync(join(modules, '@serenity-kit', 'opaque')) && existsSync(join(modules, '@serenity-kit', 'opaque-p256'));
const runsInBrowser = browserRuns('test/package.test.ts');
if (!haveSerenity && !ci) console.warn('test/package.test.ts: skipping the OPAQUE interop run: @serenity-kit/opaque(-p256) are not installed (npm ci installs them)');

interface LockEntry {
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  peerDependenciesMeta?: Record<string, { optional?: boolean }>;
}

/**
 * The names in `roots` and everything they need, transitively, as package-lock.json records it
 * (dependencies, optional dependencies that are installed, peer dependencies that are not
 * optional). The lock has no nested node_modules (checked), so every package is top-level.
 */
function dependencyClosure(lock: { packages: Record<string, LockEntry> }, roots: string[]): Set<string> {
  const nested = Object.keys(lock.packages).filter((k) => k.lastIndexOf('node_modules/') > 0);
  if (nested.length > 0) throw new Error(`package-lock.json has nested packages, which this closure does not resolve: ${nested.join(', ')}`);
  const seen = new Set<string>();
  const todo = [...roots];
  for (let name = todo.pop(); name !== undefined; name = todo.pop()) {
    if (seen.has(name)) continue;
    const entry = lock.packages[`node_modules/${name}`];
    if (!entry) throw new Error(`${name} is needed but not in package-lock.json`);
    seen.add(name);
    const peers = Object.keys(entry.peerDependencies ?? {}).filter((p) => !entry.peerDependenciesMeta?.[p]?.optional);
    const optional = Object.keys(entry.optionalDependencies ?? {}).filter((p) => lock.packages[`node_modules/${p}`] && existsSync(join(modules, p)));
    todo.push(...Object.keys(entry.dependencies ?? {}), ...optional, ...peers);
  }
  return seen;
}

const lock = JSON.parse(readFileSync(join(root, 'package-lock.json'), 'utf8'));
const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
/** What the consumer project installs itself to run the scripts: the interop peers, the browser bundler and driver, Node's types. */
const CONSUMER_TOOLS = ['@types/node', 'esbuild', 'playwright-core', ...(haveSerenity ? ['@serenity-kit/opaque', '@serenity-kit/opaque-p256'] : [])];
const linked = dependencyClosure(lock, [...Object.keys(manifest.dependencies), ...CONSUMER_TOOLS]);

let dir: string;
let project: string;
let tarball: string;

/** Runs `node file` in the empty project, with no loader inherited; returns the last stdout line parsed. */
function run(file: string, args: string[] = [], extraEnv: Record<string, string> = {}): Record<string, any> {
  const env: NodeJS.ProcessEnv = { ...process.env, ...extraEnv };
  delete env.NODE_OPTIONS;
  delete env.NODE_PATH;
  env.NODE_PRESERVE_SYMLINKS = '1';
  const r = spawnSync(process.execPath, [file, ...args], { cwd: project, env, encoding: 'utf8', timeout: 85_000 });
  if (r.status !== 0) throw new Error(`node ${file} exited ${r.status}: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!);
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'bkv-package-'));
  // npm pack runs `prepare` (npm run build) first.
  const out = execFileSync('npm', ['pack', '--json', '--pack-destination', dir], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const info = JSON.parse(out.slice(out.indexOf('[')))[0];
  tarball = join(dir, info.filename);
  project = join(dir, 'project');
  const nm = join(project, 'node_modules');
  mkdirSync(nm, { recursive: true });
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module', dependencies: { 'backup-key-vault': `file:${tarball}` } }));
  execFileSync('tar', ['xzf', tarball, '-C', nm]);
  renameSync(join(nm, 'package'), join(nm, 'backup-key-vault'));
  for (const name of linked) {
    mkdirSync(dirname(join(nm, name)), { recursive: true });
    symlinkSync(join(modules, name), join(nm, name));
  }
  cpSync(join(root, 'test', 'package'), join(project, 'scripts'), { recursive: true });
  cpSync(join(root, 'examples'), join(project, 'examples'), { recursive: true, filter: (f) => !f.endsWith('app.bundle.js') });
}, 120_000);

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('the packed tarball in an empty project, from plain node', () => {
  it('ships dist/ with declarations, the LICENSE, and no TypeScript sources, tests or build tools', () => {
    const files = execFileSync('tar', ['tzf', tarball], { encoding: 'utf8' }).trim().split('\n');
    expect(files).toContain('package/dist/enclave/opaque/index.d.ts');
    expect(files).toContain('package/dist/host/service/index.js');
    expect(files.filter((f) => /\.ts$/.test(f) && !f.endsWith('.d.ts'))).toEqual([]);
    expect(files.filter((f) => /(^|\/)(test|bench)\//.test(f))).toEqual([]);
    // Outside dist/ only what an installed package uses (package.json `files`, and what npm always adds).
    expect(files.filter((f) => !f.startsWith('package/dist/')).sort()).toEqual(
      ['LICENSE', 'README.md', 'bin/bkv.mjs', 'docs/package.md', 'host/service/openapi.yaml', 'package.json', 'softhsm-config/softhsm2.conf.template'].map((f) => `package/${f}`),
    );
  });

  it('needs no TypeScript loader or bundler at run time: tsx, esbuild and typescript are not in its dependency closure', () => {
    const runtime = dependencyClosure(lock, Object.keys(manifest.dependencies));
    expect(['tsx', 'esbuild', 'typescript', 'vitest'].filter((n) => runtime.has(n))).toEqual([]);
  });

  it('the bare import names every entry point of the exports map, and each one loads', () => {
    const out = run('scripts/entry-points.mjs');
    expect(out.bareExports).toEqual(['ENTRY_POINTS']);
    const subpaths = Object.keys(manifest.exports).filter((k) => k !== '.' && !/\.(ya?ml|json)$/.test(k));
    expect(Object.keys(out.loaded).sort()).toEqual(subpaths.map((k) => `backup-key-vault${k.slice(1)}`).sort());
    for (const [name, count] of Object.entries(out.loaded)) expect(count, name).toBeGreaterThan(0);
  }, 60_000);

  it.runIf(haveSerenity || ci)('backup-key-vault/opaque logs in with @serenity-kit/opaque and opaque-p256, both ways', () => {
    expect(run('scripts/opaque-interop.mjs')).toEqual({
      'ristretto255-SHA512': { theirsToOurs: true, oursToTheirs: true },
      'P256-SHA256': { theirsToOurs: true, oursToTheirs: true },
    });
  }, 60_000);

  it('backup-key-vault/vault opens a vault in-process; an escrow and a recovery through it', () => {
    expect(run('scripts/vault.mjs')).toMatchObject({ partitionsReady: [true], enclavePublicKeyBytes: 32, attemptsRemaining: 5, recovered: true });
  }, 60_000);

  it('examples/embedded-service.mjs: the service in a plain node:http server, a key escrowed and recovered over HTTP', () => {
    expect(run('examples/embedded-service.mjs', ['--once'])).toMatchObject({ health: 'ok', auth: 'development', attemptsRemaining: 5, recovered: true });
  }, 60_000);

  it('examples/browser-client: backup-key-vault/client bundles for the browser (no node: import reachable)', () => {
    expect(run('examples/browser-client/build.mjs').bytes).toBeGreaterThan(10_000);
  }, 60_000);

  it.runIf(runsInBrowser)('backup-key-vault/client from the tarball, bundled by esbuild, escrows and recovers in headless Chromium, across origins (CORS)', () => {
    requireChromium();
    const out = run('scripts/browser.mjs', [], { BKV_CHROMIUM: CHROMIUM, BKV_CHROMIUM_ARGS: JSON.stringify(CHROMIUM_ARGS) });
    const inputs = out.inputs as string[];
    // The client code is the installed package's dist/, not this checkout's sources; no Node built-in.
    expect(inputs.some((p) => p.startsWith('node_modules/backup-key-vault/dist/client/'))).toBe(true);
    expect(inputs.filter((p) => p.startsWith('node:') || /\.ts$/.test(p) || /backup-key-vault\/dist\/(host|hsm)\//.test(p))).toEqual([]);
    // CORS: the page's origin is not the vault's; the vault allows it, and a third origin is refused.
    expect(out.crossOrigin).toBe(true);
    expect(out.strangerError).toMatch(/could not be reached/);
    expect(out.strangerBlockedByCors).toBe(true);
    expect(out).toMatchObject({
      pageErrors: [],
      hasProcess: false,
      registered: 3,
      wrong: { outcome: 'wrong-password', attemptsRemaining: 2 },
      recovered: true,
      backupRoundTrip: true,
    });
    expect(out.userAgent).toMatch(/Chrome\//);
  }, 90_000);

  it('the installed bkv command runs from dist/: the demo, devices in child processes', () => {
    expect(run('node_modules/backup-key-vault/bin/bkv.mjs', ['demo', '--json', '--process', '--partitions', '1'])).toMatchObject({ ok: true, exitCode: 0, command: 'demo', records: 2 });
  }, 90_000);

  it('a TypeScript consumer typechecks against the shipped declarations', () => {
    writeFileSync(
      join(project, 'consumer.ts'),
      `import { ENTRY_POINTS, type EntryPoint } from 'backup-key-vault';
import { fastSuite, portableSuite, type Suite } from 'backup-key-vault/opaque';
import { serverLoginStart } from 'backup-key-vault/opaque/server';
import { clientLoginStart } from 'backup-key-vault/opaque/client';
import { EscrowClient, type RecoverResult } from 'backup-key-vault/client';
import { encryptFile } from 'backup-key-vault/client/node';
import { VaultHost, type VaultHostOptions } from 'backup-key-vault/vault';
import { createVaultHandler, type VaultHandler } from 'backup-key-vault/service';
import { EmulatorModule, CKF_SERIAL_SESSION } from 'backup-key-vault/pkcs11';
const s: Suite = portableSuite('P256-SHA256');
const f: Promise<Suite> = fastSuite('ristretto255-SHA512');
const o: VaultHostOptions = { dataDir: '/tmp/x', partitions: 1 };
const h: (o: { dataDir: string }) => Promise<VaultHandler> = createVaultHandler;
const r = (x: RecoverResult): boolean => x.ok;
const e: EntryPoint = 'backup-key-vault/client';
void [e, ENTRY_POINTS, s, f, o, h, r, serverLoginStart, clientLoginStart, EscrowClient, encryptFile, VaultHost, new EmulatorModule({ storeFile: null }), CKF_SERIAL_SESSION];
`,
    );
    const tsc = join(modules, 'typescript', 'bin', 'tsc');
    const r = spawnSync(
      process.execPath,
      [tsc, '--noEmit', '--strict', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--target', 'es2022', '--lib', 'es2022,dom', '--types', 'node', 'consumer.ts'],
      { cwd: project, encoding: 'utf8' },
    );
    expect(r.stdout + r.stderr).toBe('');
    expect(r.status).toBe(0);
  }, 60_000);
});
