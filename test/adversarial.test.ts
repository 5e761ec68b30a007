/**
 * CI-sized runs of the adversarial scripts (test/adversarial/): a few rounds of each, the same
 * checks as the long runs (`npx tsx test/adversarial/<script>.ts`, `npm run soak`). Each test
 * prints its report and expects no violation; the timing test asserts only that its positive
 * control leaks (timing on a shared machine is reported, not gated).
 */
import { describe, expect, it } from 'vitest';
import { printReport } from './adversarial/lib/common.ts';
import type { Report } from './adversarial/lib/common.ts';
import { crashStorm } from './adversarial/crash-storm.ts';
import { storageFaults, ambiguousCommit } from './adversarial/storage-faults.ts';
import { tokenFaults } from './adversarial/token-faults.ts';
import { rollbackStorm } from './adversarial/rollback-storm.ts';
import { races } from './adversarial/races.ts';
import { replays } from './adversarial/replays.ts';
import { stranger } from './adversarial/stranger.ts';
import { soak } from './adversarial/soak.ts';
import { timing } from './adversarial/timing.ts';
import { Rng, newReport } from './adversarial/lib/common.ts';

const seed = Number(process.env.BKV_ADVERSARIAL_SEED ?? Date.now() % 1e9);

function clean(r: Report): void {
  printReport(r);
  expect(r.checks).toBeGreaterThan(0);
  expect(r.violations, `${r.name}: replay with BKV_ADVERSARIAL_SEED=${seed}`).toEqual([]);
}

describe('adversarial (CI-sized)', () => {
  it('crash storm: 3 rounds of SIGKILL under load (failpoint, device, whole service)', { timeout: 120_000 }, async () => {
    const r = await crashStorm({ rounds: 3, seed, loadMs: [400, 700], concurrency: 8 });
    clean(r);
    expect(Object.values(r.faults).reduce((a, b) => a + b, 0)).toBeGreaterThan(0);
  });

  it('storage faults: write errors, read errors, an outage and a full disk under load', { timeout: 120_000 }, async () => {
    clean(await storageFaults({ rounds: 4, seed, loadMs: 400, ambiguous: false, concurrency: 8 }));
  });

  it('storage faults: an ambiguous commit (applied, then failed) leaves a vault that comes back after a restart', { timeout: 60_000 }, async () => {
    const r = newReport('ambiguous commit');
    await ambiguousCommit(r, new Rng(seed), 'worker', () => undefined);
    clean(r);
  });

  it('token faults on a live vault: no silent partition, the ledger holds after a restart', { timeout: 60_000 }, async () => {
    clean(await tokenFaults({ rounds: 1, seed, silentMs: 2000 }));
  });

  it('rollback storm: records, database, NVRAM rolled back: always refused, nothing refunded', { timeout: 120_000 }, async () => {
    const r = await rollbackStorm({ rounds: 2, seed, loadMs: 500 });
    clean(r);
    expect(r.faults['record rolled back (live vault)'] ?? 0).toBeGreaterThan(0);
  });

  it('races: concurrent wrong logins never pass the limit; concurrent password changes leave one password', { timeout: 120_000 }, async () => {
    clean(await races({ trials: 1, attackers: 32, seed }));
  });

  it('strangers without a valid token, against a host that skips its own checks: 0 guesses charged', { timeout: 120_000 }, async () => {
    const r = await stranger({ rounds: 2, victims: 3 });
    clean(r);
    expect(Object.values(r.faults).reduce((a, b) => a + b, 0)).toBe(2 * 3 * 7 * 6);
  });

  it('replays after later changes gain nothing', { timeout: 60_000 }, async () => {
    clean(await replays());
  });

  it('soak: 20 s of the mix at a low rate, zero errors', { timeout: 120_000 }, async () => {
    const r = await soak({ minutes: 20 / 60, rate: 8, seed, population: 128 });
    clean(r);
    // The service's own figures were read from /metrics (lib/scrape.ts): a server latency and batches.
    expect(String(r.stats['inside the service'])).toMatch(/^\s+1\s+\d+\.\d\s+\d+\.\d\d\s+\d/m);
  });

  it('timing: the positive control leaks (the measurements are reported, not gated)', { timeout: 60_000 }, async () => {
    const r = await timing({ samples: 150, seed, target: 'engine', only: ['compare', 'login-start'] });
    printReport(r);
    const control = r.results.find((x) => x.name.startsWith('control: early-exit'));
    expect(control?.leak).toBe(true);
  });
});
