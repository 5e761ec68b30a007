/**
 * The project's code as plain JavaScript, so that no process or thread of a running vault needs
 * a TypeScript loader: esbuild bundles the `bkv` command line (host/cli/bkv.ts), the device's two
 * entries (hsm/worker-main.ts, hsm/process-main.ts) and the default firmware (enclave/main.ts) in
 * one build with shared chunks (each module exists once, as when loaded from source) into
 * `node_modules/.cache/backup-key-vault/build-<hash>/`.
 *
 * Why: tsx's loader runs its module hooks on a thread of its own, a V8 isolate with esbuild's
 * service in it, in every thread that loads TypeScript, so each device thread run from source
 * carries one more isolate. bench/memory.ts measures the service's RSS (figures in
 * bench/README.md).
 *
 * The build runs at most once per process, synchronously, with esbuild's own binary (about 200 ms
 * here). Its output is content-addressed: processes that build the same sources share a folder,
 * and a changed source is never served from a stale one. A process finds the last build of its
 * project root without running esbuild when every file the build read (esbuild's metafile), and
 * every folder holding one, has the size and mtime it had then (`freshBundle`). Packages stay external and resolve from the
 * project's node_modules, which is why the cache lives there.
 *
 * BKV_BUNDLE=0 turns it off (everything runs from source through tsx, as in development);
 * BKV_BUNDLE=build builds afresh even when the last build is fresh; a
 * build that fails (no esbuild, a read-only tree) does the same and says why once on stderr.
 * Plain JavaScript because bin/bkv.mjs calls it before any loader exists.
 */
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Node flags the `bkv` command runs with (its shebang; the npm scripts and the benches pass them too).
 * --max-semi-space-size=4: the main thread's young generation stays small under load.
 * --heap-growing-percent=40: every heap of the process (the main thread's and each device
 * thread's: the flag is process-wide) lets its old generation grow to 1.4 times what the last full
 * collection left live before the next, instead of V8's own factor (up to 4; about 2.5 was seen under
 * registration load): the service's peak RSS at 150,000 records fell from 276 to 214 MB, at no
 * login rate measurable (bench/README.md, 2026-12-06).
 */
export const BKV_NODE_FLAGS = ['--max-semi-space-size=4', '--heap-growing-percent=40'];

const ENTRIES = { cli: 'host/cli/bkv.ts', worker: 'hsm/worker-main.ts', process: 'hsm/process-main.ts', firmware: 'enclave/main.ts' };
/** A build folder no process has used for this long is removed when another build lands. */
const PRUNE_AFTER_MS = 24 * 3600 * 1000;
const MEMO = Symbol.for('backup-key-vault.bundle');

let root;
/**
 * The project's root folder: the nearest folder upward from this module with the project's
 * package.json (this module may itself run from inside a build folder).
 */
export function projectRoot() {
  if (root) return root;
  for (let dir = path.dirname(fileURLToPath(import.meta.url)); ; ) {
    try {
      if (JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')).name === 'backup-key-vault') return (root = dir);
    } catch {
      // no package.json here
    }
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`backup-key-vault's package.json not found above ${fileURLToPath(import.meta.url)}`);
    dir = up;
  }
}

/** Whether the bundle is wanted (BKV_BUNDLE unset, empty, 1, true, or build: built afresh even when the last build is fresh). */
export function bundleEnabled() {
  const v = process.env.BKV_BUNDLE;
  return v === undefined || v === '' || v === '1' || v === 'true' || v === 'build';
}

/**
 * The bundle, built on first use in this process (every copy of this module in the process
 * shares the answer), or again when `rebuild`; undefined when turned off or when it does not build.
 */
export function projectBundle(rebuild = false) {
  const memo = globalThis[MEMO];
  if (memo && !rebuild) return memo.bundle;
  let bundle;
  if (bundleEnabled()) {
    try {
      bundle = (rebuild || process.env.BKV_BUNDLE === 'build' ? undefined : freshBundle()) ?? buildBundle();
    } catch (e) {
      process.stderr.write(`bkv: running from source (tsx): the bundle did not build: ${String(e.message).split('\n')[0]}\n`);
    }
  }
  globalThis[MEMO] = { bundle };
  return bundle;
}

function esbuildBinary() {
  if (process.env.ESBUILD_BINARY_PATH) return process.env.ESBUILD_BINARY_PATH;
  const main = createRequire(path.join(projectRoot(), 'package.json')).resolve('esbuild');
  return path.join(path.dirname(main), '..', 'bin', 'esbuild');
}

function hashFolder(dir) {
  const h = createHash('sha256');
  for (const f of fs.readdirSync(dir).sort()) h.update(f).update('\0').update(fs.readFileSync(path.join(dir, f))).update('\0');
  return h.digest('hex').slice(0, 20);
}

/** Builds (or finds) the bundle; throws when esbuild fails or the cache can not be written. */
export function buildBundle() {
  const top = projectRoot();
  const cache = cacheDir(top);
  fs.mkdirSync(cache, { recursive: true });
  const tmp = path.join(cache, `tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  const started = Date.now();
  try {
    execFileSync(
      esbuildBinary(),
      [
        ...Object.values(ENTRIES),
        '--bundle',
        '--splitting',
        '--format=esm',
        '--platform=node',
        '--target=node20',
        '--packages=external',
        '--entry-names=[name]',
        '--chunk-names=chunk-[hash]',
        '--log-level=error',
        `--outdir=${tmp}`,
        `--metafile=${tmp}.meta.json`,
      ],
      { cwd: top, stdio: ['ignore', 'ignore', 'pipe'], timeout: 60_000 },
    );
    const dir = path.join(cache, `build-${hashFolder(tmp)}`);
    try {
      fs.renameSync(tmp, dir);
    } catch (e) {
      // Another process landed the same build first: use its folder.
      if (!fs.existsSync(path.join(dir, 'main.js'))) throw e;
      fs.rmSync(tmp, { recursive: true, force: true });
      const now = new Date();
      fs.utimesSync(dir, now, now);
    }
    prune(cache, dir);
    try {
      const inputs = Object.keys(JSON.parse(fs.readFileSync(`${tmp}.meta.json`, 'utf8')).inputs);
      const stamps = stampsOf(top, inputs, STAMPED);
      // A file changed while esbuild ran may be in the build as it was before: no stamp then.
      if (stamps.every((st) => st[2] < started - 50)) writeStamp(cache, { dir: path.basename(dir), stamps });
    } catch {
      // no stamp: the next process builds again
    }
    return bundleIn(dir);
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    const stderr = e?.stderr?.toString().trim();
    throw new Error(stderr ? `esbuild: ${stderr}` : e.message);
  } finally {
    fs.rmSync(`${tmp}.meta.json`, { force: true });
  }
}

/** Where builds and their stamps live: the project's node_modules, where its packages resolve from. */
const cacheDir = (top) => path.join(top, 'node_modules', '.cache', 'backup-key-vault');

const bundleIn = (dir) => {
  const at = (name) => path.join(dir, `${name}.js`);
  return { dir, cli: at('bkv'), worker: at('worker-main'), process: at('process-main'), firmware: at('main') };
};

/**
 * Files whose change must rebuild besides the build's inputs: this file (the build's options) and
 * the esbuild that builds.
 */
const STAMPED = ['bin/bundle.mjs', 'node_modules/esbuild/package.json', 'package.json'];

/**
 * What a build's freshness is checked by, without building: every input esbuild read (its
 * metafile) and every folder holding one, each as [path from the root, size, mtime in ms] (a
 * folder's size and mtime change when a file is added to it or removed, which can change what an
 * import resolves to). A file edited in place changes its mtime. `alone`: files stamped without
 * their folders (bin/bundle.mjs, package.json, esbuild's version: nothing resolves next to them,
 * and node_modules' own mtime moves whenever anything is installed or its cache folder is made).
 */
export function stampsOf(top, files, alone = []) {
  const paths = new Set(alone);
  for (const f of files) {
    paths.add(f);
    for (let d = path.dirname(f); d !== '.' && d !== '/' && d !== ''; d = path.dirname(d)) paths.add(d);
  }
  return [...paths].sort().map((p) => {
    const st = fs.statSync(path.join(top, p));
    return [p, st.isDirectory() ? 0 : st.size, st.mtimeMs];
  });
}

/** Whether every stamped file and folder under `top` is as it was (same size and mtime). */
export function stampsMatch(top, stamps) {
  if (!Array.isArray(stamps) || stamps.length === 0) return false;
  for (const s of stamps) {
    if (!Array.isArray(s) || s.length !== 3 || typeof s[0] !== 'string' || path.isAbsolute(s[0]) || s[0].split(/[\\/]/).includes('..')) return false;
    let st;
    try {
      st = fs.statSync(path.join(top, s[0]));
    } catch {
      return false;
    }
    if ((st.isDirectory() ? 0 : st.size) !== s[1] || st.mtimeMs !== s[2]) return false;
  }
  return true;
}

/** The stamp file of this project root (worktrees that share node_modules share the cache, not the stamp). */
const stampFile = (cache) => path.join(cache, `fresh-${createHash('sha256').update(projectRoot()).digest('hex').slice(0, 16)}.json`);

function writeStamp(cache, stamp) {
  const f = stampFile(cache);
  const tmp = `${f}.${process.pid}-${randomBytes(4).toString('hex')}`;
  fs.writeFileSync(tmp, JSON.stringify(stamp));
  fs.renameSync(tmp, f);
}

/**
 * The last build of this root when nothing it was built from has changed since (stampsMatch), or
 * undefined: so a process starts in a few milliseconds instead of running esbuild (about 200 ms on
 * the bench machine). The folder's mtime is renewed, so that `prune` keeps it.
 */
export function freshBundle() {
  try {
    const top = projectRoot();
    const cache = cacheDir(top);
    const stamp = JSON.parse(fs.readFileSync(stampFile(cache), 'utf8'));
    if (typeof stamp?.dir !== 'string' || !/^build-[0-9a-f]{20}$/.test(stamp.dir)) return undefined;
    const dir = path.join(cache, stamp.dir);
    const b = bundleIn(dir);
    if (![b.cli, b.worker, b.process, b.firmware].every((f) => fs.existsSync(f))) return undefined;
    if (!stampsMatch(top, stamp.stamps)) return undefined;
    const now = new Date();
    fs.utimesSync(dir, now, now);
    return b;
  } catch {
    return undefined;
  }
}

function prune(cache, keep) {
  const now = Date.now();
  for (const name of fs.readdirSync(cache)) {
    const p = path.join(cache, name);
    if (p === keep) continue;
    try {
      // tmp- folders of builds that died; build- folders no process has used for a day
      if (now - fs.statSync(p).mtimeMs > (name.startsWith('tmp-') ? 600_000 : PRUNE_AFTER_MS)) fs.rmSync(p, { recursive: true, force: true });
    } catch {
      // raced with another process's prune
    }
  }
}
