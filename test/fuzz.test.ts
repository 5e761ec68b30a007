/**
 * The fuzz targets of test/fuzz/ kept working in CI: every target runs briefly (150 inputs or
 * 1.5 s, from its checked-in seeds, seed 1) with no violation, every input in
 * test/fuzz/corpus-regressions/ (inputs that once found a bug) is replayed, the seeds are the
 * ones make-seeds.ts writes, and the oracle itself is checked: it must see a planted secret in a
 * response, an untyped exception inside the enclave, a hang and a throwing target. Violations of
 * a known, reported product bug (test/fuzz/known-issues.ts) are printed and allowed. Long runs:
 * `npx tsx test/fuzz/run.ts --seconds N`.
 */
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { resolve } from 'node:path';
import { encodeMessage } from '../enclave/api/codec.ts';
import { HostRequests } from '../enclave/api/messages.ts';
import { toFault } from '../enclave/vault/compute.ts';
import {
  loadCorpus, loadTarget, regressionFiles, runOne, runTarget, seedFiles, skipReason, targetFiles, targetNameOf,
} from './fuzz/lib/engine.ts';
import type { TargetModule } from './fuzz/lib/engine.ts';
import { sampleChunk } from './fuzz/lib/mutate.ts';
import { SecretScanner, UntypedProbe, Violation } from './fuzz/lib/oracle.ts';
import { CANARY_A } from './fuzz/lib/canary.ts';
import { FuzzVault } from './fuzz/lib/vault.ts';
import { knownIssueOf, KNOWN_ISSUES } from './fuzz/known-issues.ts';

const files = targetFiles();

async function prepared(file: string): Promise<TargetModule | string> {
  const t = await loadTarget(file);
  const skip = await skipReason(t);
  if (skip) return skip;
  await (t.setup as ((o: { seed: number }) => Promise<void>) | undefined)?.({ seed: 1 });
  return t;
}

describe('fuzz targets', () => {
  it('there is a target for every decoder family and the live enclave, each with seeds', () => {
    const names = files.map(targetNameOf);
    for (const n of ['enclave-host', 'enclave-client', 'token-faults', 'codec-host-requests', 'codec-client-responses', 'opaque-ke1', 'opaque-ke3', 'sealed-record', 'nvram-state', 'ksf-params', 'authorization', 'e2e-open-request']) {
      expect(names).toContain(n);
    }
    for (const n of names) if (n !== 'http') expect(seedFiles(n).length, `${n} has seeds`).toBeGreaterThan(0);
  });

  for (const file of files) {
    const name = targetNameOf(file);
    it(`${name}: a short run finds no violation`, async () => {
      const t = await prepared(file);
      if (typeof t === 'string') {
        // In CI every target runs: a missing dependency fails there instead of skipping.
        if (process.env.CI === 'true' || process.env.CI === '1') throw new Error(`${name}: CI=true but the target can not run: ${t}`);
        console.log(`${name}: skipped (${t})`);
        return;
      }
      try {
        const stats = await runTarget(t, { seed: 1, runs: 150, timeMs: 1500, corpus: loadCorpus(name) });
        for (const f of stats.findings) if (f.known) console.log(`${name}: known issue ${f.known} seen`);
        const unknown = stats.findings.filter((f) => !f.known);
        expect(unknown.map((f) => `${f.kind}: ${f.message}\ninput ${Buffer.from(f.input).toString('hex')}`)).toEqual([]);
        expect(stats.violations).toBe(0);
        expect(stats.executions).toBeGreaterThan(0);
      } finally {
        await t.teardown?.();
      }
    });
  }

  it('replays every regression input without an unknown violation', async () => {
    for (const file of files) {
      const name = targetNameOf(file);
      const inputs = regressionFiles(name);
      if (!inputs.length) continue;
      const t = await prepared(file);
      if (typeof t === 'string') continue;
      for (const path of inputs) {
        const f = await runOne(t, new Uint8Array(readFileSync(path)), 0, t.timeoutMs ?? 2000);
        if (f) f.known = knownIssueOf(f)?.id;
        expect(f && !f.known ? `${path}: ${f.kind}: ${f.message}` : null).toBeNull();
      }
      await t.teardown?.();
    }
  });

  it('the checked-in seeds are the ones make-seeds.ts writes', () => {
    const root = resolve(import.meta.dirname, '..');
    const out = execFileSync(process.execPath, ['--import', 'tsx', 'test/fuzz/make-seeds.ts', '--check'], { cwd: root, encoding: 'utf8' });
    expect(out).toMatch(/^checked \d+ seeds/);
  });
});

describe('the fuzz oracle', () => {
  it('sees a planted secret in bytes and as hex, whole or in part', () => {
    const secret = new Uint8Array(32).map((_, i) => i * 7 + 1);
    const s = new SecretScanner([{ name: 'k', bytes: secret }]);
    expect(() => s.scan('x', Uint8Array.of(9, 9, ...secret, 9))).toThrow(Violation);
    expect(() => s.scan('x', Uint8Array.of(...secret.subarray(16), 1, 2, 3))).toThrow(/canary-leak/);
    expect(() => s.scan('x', `msg ${Buffer.from(secret).toString('hex').toUpperCase()}`)).toThrow(/as hex/);
    expect(() => s.scan('x', new Uint8Array(64))).not.toThrow();
  });

  it('catches a canary leaked by the vault, and an untyped exception inside the enclave', async () => {
    const v = await FuzzVault.open(7);
    expect(() => v.scanner.scan('a forged response', Uint8Array.of(1, ...CANARY_A.backupKey))).toThrow(/backup-key\/canary-a/);
    const probe = UntypedProbe.install();
    expect(probe.active).toBe(true);
    probe.drain();
    toFault(new TypeError('planted'));
    expect(() => v.checkProbe('a planted TypeError')).toThrow(/untyped-error[\s\S]*planted/);
    // The real enclave, untouched, passes.
    await v.raw(encodeMessage(HostRequests, { type: 'Info' }));
    await v.endInput('Info');
  });

  it('reports a hang and a throwing target, and generates the same inputs for the same seed', async () => {
    const hang: TargetModule = { name: 'hang', fuzz: () => new Promise<void>(() => undefined) };
    expect((await runOne(hang, new Uint8Array(1), 0, 50))?.kind).toBe('hang');
    const boom: TargetModule = { name: 'boom', fuzz: async (d) => void (d.length > 3 && (null as unknown as { x: number }).x) };
    const stats = await runTarget(boom, { seed: 3, runs: 50, corpus: [new Uint8Array(8)] });
    expect(stats.violations).toBeGreaterThan(0);
    expect(stats.findings[0]!.kind).toBe('exception');
    const a = sampleChunk([Uint8Array.of(1, 2, 3)], 64, 5, 't', 0, 20);
    const b = sampleChunk([Uint8Array.of(1, 2, 3)], 64, 5, 't', 0, 20);
    expect(a).toEqual(b);
  });

  it('every known issue names a target that exists', () => {
    for (const k of KNOWN_ISSUES) expect(files.map(targetNameOf)).toContain(k.target);
  });
});
