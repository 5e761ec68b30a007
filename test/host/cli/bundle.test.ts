/**
 * bin/bundle.mjs: the project built to plain JavaScript (the CLI, both device entries, the
 * default firmware) so no thread of a running vault carries a TypeScript loader. Checks the build
 * and its content addressing, which entry a channel starts (the bundle for the default firmware,
 * the source boot for a firmware given by path or with BKV_BUNDLE=0), devices booted from the
 * bundle in both isolation modes answering the real firmware, and the `bkv` command both ways.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BKV_NODE_FLAGS, buildBundle, bundleEnabled, freshBundle, projectBundle, projectRoot, stampsMatch, stampsOf } from '../../../bin/bundle.mjs';
import { deviceBootPath, deviceEntry } from '../../../host/channel/channel.ts';
import type { DeviceConfig } from '../../../enclave/api/device.ts';
import { createChannel } from '../../../host/channel/pool.ts';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'bkv-bundle-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

describe('the bundle', () => {
  it('builds every entry as JavaScript that imports no TypeScript', () => {
    const b = projectBundle();
    expect(b, 'the bundle must build here (esbuild is a devDependency, installed in a checkout)').toBeDefined();
    for (const f of [b!.cli, b!.worker, b!.process, b!.firmware]) {
      expect(fs.existsSync(f), f).toBe(true);
      expect(path.dirname(f)).toBe(b!.dir);
    }
    for (const f of fs.readdirSync(b!.dir)) {
      const text = fs.readFileSync(path.join(b!.dir, f), 'utf8');
      // every relative import is to another file of the build, never to a .ts source
      for (const m of text.matchAll(/(?:from|import)\s*\(?\s*["'](\.[^"']*)["']/g)) {
        expect(m[1]!.endsWith('.js'), `${f} imports ${m[1]}`).toBe(true);
        expect(fs.existsSync(path.join(b!.dir, m[1]!)), `${f} imports ${m[1]}`).toBe(true);
      }
    }
    expect(b!.dir.startsWith(path.join(projectRoot(), 'node_modules', '.cache'))).toBe(true);
  });

  it('is content-addressed: the same sources build into the same folder, with no leftovers', () => {
    const a = buildBundle();
    const b = buildBundle();
    expect(b.dir).toBe(a.dir);
    const cache = path.dirname(a.dir);
    expect(fs.readdirSync(cache).filter((n) => n.startsWith('tmp-') && n.includes(`-${process.pid}-`))).toEqual([]);
  });

  it('a later process takes the last build without running esbuild while nothing it was built from changed', () => {
    const built = buildBundle();
    // esbuild made unreachable: the child can only answer by taking the build as it is.
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', `const m = await import(${JSON.stringify(path.join(projectRoot(), 'bin', 'bundle.mjs'))}); console.log(m.projectBundle()?.dir ?? 'none')`], {
      encoding: 'utf8',
      env: { ...process.env, ESBUILD_BINARY_PATH: path.join(root, 'no-esbuild'), BKV_BUNDLE: '1' },
    });
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe(built.dir);
    expect(freshBundle()?.dir).toBe(built.dir);
  });

  it('counts a build stale once a file or folder it read changed size or mtime, or is gone', () => {
    const top = fs.mkdtempSync(path.join(root, 'stamps-'));
    fs.mkdirSync(path.join(top, 'a', 'b'), { recursive: true });
    fs.writeFileSync(path.join(top, 'a', 'b', 'x.ts'), 'export const x = 1;\n');
    fs.writeFileSync(path.join(top, 'a', 'y.ts'), 'export const y = 2;\n');
    const fresh = () => stampsOf(top, ['a/b/x.ts', 'a/y.ts']);
    let stamps = fresh();
    expect(stamps.map((s) => s[0])).toEqual(['a', 'a/b', 'a/b/x.ts', 'a/y.ts']);
    // a file stamped alone brings no folder of its own
    expect(stampsOf(top, ['a/y.ts'], ['a/b/x.ts']).map((s) => s[0])).toEqual(['a', 'a/b/x.ts', 'a/y.ts']);
    expect(stampsMatch(top, stamps)).toBe(true);
    // edited in place: same size, a later mtime
    const x = path.join(top, 'a', 'b', 'x.ts');
    const t = fs.statSync(x).mtime;
    fs.writeFileSync(x, 'export const x = 3;\n');
    fs.utimesSync(x, t, new Date(t.getTime() + 1000));
    expect(stampsMatch(top, stamps)).toBe(false);
    stamps = fresh();
    // another size with the mtime put back
    const t2 = fs.statSync(x).mtime;
    fs.writeFileSync(x, 'export const x = 30;\n');
    fs.utimesSync(x, t2, t2);
    expect(stampsMatch(top, stamps)).toBe(false);
    stamps = fresh();
    // a file added next to an input (an import could now resolve to it), then that stamp's file gone
    fs.writeFileSync(path.join(top, 'a', 'b', 'x.js'), '');
    expect(stampsMatch(top, stamps)).toBe(false);
    stamps = fresh();
    expect(stampsMatch(top, stamps)).toBe(true);
    fs.rmSync(path.join(top, 'a', 'y.ts'));
    expect(stampsMatch(top, stamps)).toBe(false);
    // stamps that are not stamps, or name a path outside the root
    for (const bad of [undefined, 'junk', [], [['a', 0]], [['../a', 0, 0]], [[path.join(top, 'a'), 0, 0]], [[1, 0, 0]]]) expect(stampsMatch(top, bad as never)).toBe(false);
  });

  it('finds the project root from wherever it runs', () => {
    expect(JSON.parse(fs.readFileSync(path.join(projectRoot(), 'package.json'), 'utf8')).name).toBe('backup-key-vault');
  });

  it('is on unless BKV_BUNDLE says 0', () => {
    const saved = process.env.BKV_BUNDLE;
    try {
      for (const [v, on] of [[undefined, true], ['', true], ['1', true], ['true', true], ['build', true], ['0', false], ['false', false], ['off', false]] as const) {
        if (v === undefined) delete process.env.BKV_BUNDLE;
        else process.env.BKV_BUNDLE = v;
        expect(bundleEnabled(), `BKV_BUNDLE=${v}`).toBe(on);
      }
    } finally {
      if (saved === undefined) delete process.env.BKV_BUNDLE;
      else process.env.BKV_BUNDLE = saved;
    }
  });
});

describe('which entry a channel starts', () => {
  const base = (): DeviceConfig => ({ dataDir: root, partition: 0, partitions: 1 });

  it('the bundle for the default firmware, with the bundled firmware in the config', () => {
    const b = projectBundle()!;
    const w = base();
    expect(deviceEntry('worker', w)).toBe(b.worker);
    expect(w.firmware).toBe(b.firmware);
    const p = base();
    expect(deviceEntry('process', p)).toBe(b.process);
    expect(p.firmware).toBe(b.firmware);
  });

  it('the source boot for a firmware given by path, which is left as given', () => {
    const c = { ...base(), firmware: '/somewhere/firmware.ts' };
    expect(deviceEntry('worker', c)).toBe(deviceBootPath());
    expect(c.firmware).toBe('/somewhere/firmware.ts');
    expect(fs.existsSync(deviceBootPath())).toBe(true);
  });
});

describe.each(['worker', 'process'] as const)('a %s device from the bundle', (mode) => {
  it('boots the real firmware and answers malformed input with a typed fault, not a failure', async () => {
    const ch = createChannel(mode, { dataDir: path.join(root, mode), forwardStderr: false });
    try {
      await ch.ready;
      const res = await ch.request(new Uint8Array([0xff, 0xff, 0xff]));
      // an encoded fault message: bytes, never an empty answer or a thrown 'fail'
      expect(res).toBeInstanceOf(Uint8Array);
      expect(res.length).toBeGreaterThan(0);
    } finally {
      await ch.close();
    }
  }, 60_000);
});

describe('the bkv command', () => {
  const bkv = path.join(projectRoot(), 'bin', 'bkv.mjs');
  it.each([['bundled', '1'], ['from source', '0']])('runs %s', (_, flag) => {
    const out = execFileSync(process.execPath, [bkv, 'help'], { env: { ...process.env, BKV_BUNDLE: flag }, encoding: 'utf8' });
    expect(out).toContain('bkv: Backup Key Vault');
    expect(out).toContain('bkv serve');
  });

  it('says why and runs from source when the bundle can not build', () => {
    const r = spawnSync(process.execPath, [bkv, 'help'], {
      // build: not the last build, which it would otherwise take without esbuild (freshBundle)
      env: { ...process.env, BKV_BUNDLE: 'build', ESBUILD_BINARY_PATH: path.join(root, 'no-such-esbuild') },
      encoding: 'utf8',
    });
    expect(r.status).toBe(0);
    expect(r.stderr).toMatch(/running from source \(tsx\): the bundle did not build: .*no-such-esbuild|ENOENT/);
    expect(r.stdout).toContain('bkv: Backup Key Vault');
  });
});

describe('the Node flags of bkv', () => {
  it('are the same in the shebang, the npm scripts and BKV_NODE_FLAGS (the benches pass the constant)', () => {
    const shebang = fs.readFileSync(path.join(projectRoot(), 'bin', 'bkv.mjs'), 'utf8').split('\n')[0]!;
    expect(shebang).toBe(`#!/usr/bin/env -S node ${BKV_NODE_FLAGS.join(' ')}`);
    const scripts = JSON.parse(fs.readFileSync(path.join(projectRoot(), 'package.json'), 'utf8')).scripts as Record<string, string>;
    const using = Object.entries(scripts).filter(([, cmd]) => cmd.includes('bin/bkv.mjs'));
    expect(using.map(([k]) => k).sort()).toEqual(['demo', 'serve']);
    for (const [, cmd] of using) expect(cmd.startsWith(`node ${BKV_NODE_FLAGS.join(' ')} bin/bkv.mjs `), cmd).toBe(true);
  });

  it('run the command through its shebang', () => {
    const out = execFileSync(path.join(projectRoot(), 'bin', 'bkv.mjs'), ['help'], { encoding: 'utf8' });
    expect(out).toContain('bkv: Backup Key Vault');
  });
});
