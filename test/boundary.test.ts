/**
 * The trust boundary, checked on the source tree:
 * - enclave/ imports only enclave/ and its primitive libraries; no file system, network, child
 *   processes, threads, ambient clock or ambient randomness.
 * - host/ imports from enclave/ only the message API (enclave/api/) and the stateless protocol
 *   code that clients share (enclave/opaque/, without the server half).
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = resolve(import.meta.dirname, '..');

function tsFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...tsFiles(p));
    else if (p.endsWith('.ts')) out.push(p);
  }
  return out;
}

function imports(file: string): string[] {
  const src = readFileSync(file, 'utf8');
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

const ENCLAVE_PACKAGES = [/^@noble\//, /^libsodium-wrappers-sumo$/, /^hash-wasm$/, /^@hpke\/core$/, /^node:crypto$/, /^jose$/];

describe('trust boundary', () => {
  const enclaveFiles = tsFiles(join(root, 'enclave'));
  const hostFiles = tsFiles(join(root, 'host'));

  it('finds the sources it checks', () => {
    expect(enclaveFiles.length).toBeGreaterThan(10);
    expect(hostFiles.length).toBeGreaterThan(3);
  });

  it('enclave/ imports only enclave/ and its primitive libraries', () => {
    const bad: string[] = [];
    for (const f of enclaveFiles) {
      for (const spec of imports(f)) {
        if (spec.startsWith('.')) {
          const target = resolve(dirname(f), spec);
          if (!target.startsWith(join(root, 'enclave') + '/')) bad.push(`${relative(root, f)} -> ${spec}`);
        } else if (!ENCLAVE_PACKAGES.some((re) => re.test(spec))) {
          bad.push(`${relative(root, f)} -> ${spec}`);
        }
      }
    }
    expect(bad).toEqual([]);
  });

  it('enclave/ uses no ambient clock or randomness', () => {
    const bad: string[] = [];
    for (const f of enclaveFiles) {
      const src = stripComments(readFileSync(f, 'utf8'));
      for (const pat of AMBIENT) {
        if (pat.test(src)) bad.push(`${relative(root, f)}: ${pat}`);
      }
    }
    expect(bad).toEqual([]);
  });

  it('the scanners catch planted violations (positive control)', () => {
    const planted = "import { readFileSync } from 'node:fs';\nimport { randomBytes } from 'node:crypto';\nconst t = Date.now();";
    expect(AMBIENT.filter((p) => p.test(planted)).length).toBe(2);
    expect(ENCLAVE_PACKAGES.some((re) => re.test('node:fs'))).toBe(false);
  });

  it('host/ imports from enclave/ only the API and the client-shared protocol code', () => {
    const bad: string[] = [];
    for (const f of hostFiles) {
      for (const spec of imports(f)) {
        if (!spec.startsWith('.')) continue;
        const target = relative(root, resolve(dirname(f), spec));
        if (!target.startsWith('enclave/')) continue;
        const ok = target.startsWith('enclave/api/') || (target.startsWith('enclave/opaque/') && !/enclave\/opaque\/server\.ts$/.test(target));
        if (!ok) bad.push(`${relative(root, f)} -> ${target}`);
      }
    }
    expect(bad).toEqual([]);
  });

  it('nothing imports hsm/ but hsm/ and tests (the host starts it by path), except the host its token settings', () => {
    const bad: string[] = [];
    for (const f of [...enclaveFiles, ...hostFiles]) {
      for (const spec of imports(f)) {
        if (!spec.startsWith('.')) continue;
        const target = relative(root, resolve(dirname(f), spec));
        if (target.startsWith('hsm/') && !(relative(root, f).startsWith('host/') && target.startsWith('hsm/tokens/'))) bad.push(`${relative(root, f)} -> ${spec}`);
      }
    }
    expect(bad).toEqual([]);
  });
});
