/**
 * CI-sized runs of the adversarial scripts (test/adversarial/): a few rounds of each, the same
 * checks as the long runs (`npx tsx test/adversarial/<script>.ts`, `npm run soak`). Each test
 * prints its report and expects no violation; the timing test asserts only that its positive
 * control leaks (timing on a shared machine is reported, not gated). The fleet storm's ledger
 * is also fed made-up histories that break each rule, and must say so; the fleet vault storm's
 * positive control rolls a whole fleet back, and must say so.
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
import { fleetStorm } from './adversarial/fleet-storm.ts';
import { fleetVaultStorm } from './adversarial/fleet-vault-storm.ts';
import { ABLE_WAIT_MS } from './adversarial/lib/fleet-faults.ts';
import { FleetLedger, type DurableView, type OpJson } from './adversarial/lib/fleet-ledger.ts';
import type { RecordState } from '../enclave/fleet/rules.ts';

const seed = Number(process.env.BKV_ADVERSARIAL_SEED ?? Date.now() % 1e9);

function clean(r: Report): void {
  printReport(r);
  expect(r.checks).toBeGreaterThan(0);
  expect(r.violations, `${r.name}: replay with BKV_ADVERSARIAL_SEED=${seed}`).toEqual([]);
}

/**
 * A fleet storm's CI round (a leader SIGKILLed, a cut, a restore, a clone: lib/fleet-faults.ts): clean, without an error, each fault dealt once.
 * `lastMayWait`: the fleet vault storm's last fault (the restore) may be left out, counted, when a
 * member came back behind (a catch-up by stored rows) and the fleet had no majority able to serve
 * without the restore's target within 60 s: a liveness limit of 3 members on a loaded machine (two
 * CI rehearsals met it after the clone), never a safety one; the round is still clean.
 */
function everyFleetFault(r: Report, lastMayWait = false): void {
  clean(r);
  expect(r.errors, `replay with BKV_ADVERSARIAL_SEED=${seed}`).toEqual([]);
  expect(r.faults['member SIGKILL (leader)']).toBe(1);
  expect(r.faults['member cut off (proxy)']).toBe(1);
  expect(r.faults['member cloned (a second process from a copy of its folder)']).toBe(1);
  const restored = r.faults['member restored from an old copy of its folder'];
  if (lastMayWait && restored === undefined) {
    console.log(`the restore was left out: a member was behind and no majority could serve without its target (seed ${seed})`);
    expect(r.stats[`faults left out (no majority able to serve without their target within ${ABLE_WAIT_MS / 1000} s)`]).toBe(1);
    expect(Number(r.stats['members found behind after a round'])).toBeGreaterThanOrEqual(1);
    expect(r.kills).toBeGreaterThanOrEqual(2); // the leader, the clone
  } else {
    expect(restored).toBe(1);
    expect(r.kills).toBeGreaterThanOrEqual(3); // the leader, the member before its restore, the clone
  }
}

describe('adversarial (CI-sized)', () => {
  it('crash storm: 3 rounds of SIGKILL under load (failpoint, device, whole service)', { timeout: 120_000 }, async () => {
    const r = await crashStorm({ rounds: 3, seed, loadMs: [400, 700], concurrency: 8 });
    clean(r);
    expect(Object.values(r.faults).reduce((a, b) => a + b, 0)).toBeGreaterThan(0);
  });

  it('fleet storm: a round on 3 member processes with a leader SIGKILLed, a member cut off, one restored from an old copy, one cloned', { timeout: 240_000 }, async () => {
    // about 50 s on a quiet machine; the bound is for a CI machine running other suites beside it
    const r = await fleetStorm({ rounds: 1, seed, members: 3, actions: ['kill-leader', 'cut', 'restore', 'clone'] });
    everyFleetFault(r);
    expect(Number(r.stats['operations acknowledged'])).toBeGreaterThan(20);
  });

  it('fleet storm, positive control: members that take half the fleet for a majority (BKV_FLEET_BROKEN_RULE=half-quorum) acknowledge on the cut-off side, and the storm reports it', { timeout: 120_000 }, async () => {
    const r = await fleetStorm({ rounds: 1, seed, members: 3, actions: ['cut'], broken: 'half-quorum', cutLeader: true });
    printReport(r);
    expect(r.faults['member cut off (proxy)']).toBe(1);
    // the cut-off side commits on its own: a fork of the histories, its acknowledgements not what the history holds
    expect(r.violations.join('\n')).toMatch(/fork at entry \d+|while it could not reach a majority|not a majority|is not what the history holds there/);
  });

  it('fleet vault storm: a round on 3 member processes serving the vault, with a leader SIGKILLed, a member cut off, one cloned, one restored from an old copy', { timeout: 240_000 }, async () => {
    // 40 to 65 s on this 2-core machine shared with other runs; the bound is for a CI machine running other suites beside it
    // quiet faults: the load waits until the fleet is whole before each; the restore last, since it brings a member back behind
    const r = await fleetVaultStorm({ rounds: 1, seed, members: 3, actions: ['kill-leader', 'cut', 'clone', 'restore'], quiet: 1 });
    everyFleetFault(r, true);
    expect(Number(r.stats['Status answers checked'])).toBeGreaterThan(5);
  });

  it('fleet vault storm, positive control: every member rolled back at once to copies of a few seconds before reads as refunded guesses or lost registrations', { timeout: 180_000 }, async () => {
    const r = await fleetVaultStorm({ rounds: 1, seed, members: 3, actions: [], control: 'restore-all' });
    printReport(r);
    expect(r.faults['every member restored from copies of one moment (positive control)']).toBe(1);
    expect(r.violations.join('\n')).toMatch(/a refunded guess|an acknowledged registration is gone/);
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

describe('the fleet storm\'s ledger catches what it must (made-up histories)', () => {
  const line = (index: number, ops: OpJson[], hash = `h${index}`) => JSON.stringify({ index, hash, ops });
  const trail = (lines: string[]) => lines.join('\n') + '\n';
  /** A member's durable view holding entries 1..tip (hashes h1..), with `records` at its commit. */
  const view = (member: number, tip: number, records: [string, RecordState][] = [], hash = (i: number) => `h${i}`): DurableView => ({
    name: `m${member}`,
    member,
    counts: true,
    commit: tip,
    tip,
    points: new Map(Array.from({ length: tip + 1 }, (_, i) => [i, i === 0 ? 'genesis' : hash(i)])),
    records: new Map(records),
  });
  const reg = (id: string, base: number, limit: number): OpJson => ({ kind: 'register', id, base, limit });
  const charge = (id: string, base: number, guess: number, session: number): OpJson => ({ kind: 'charge', id, base, guess, session });
  const reset = (id: string, base: number, session: number): OpJson => ({ kind: 'reset', id, base, session });
  /** A ledger with every intent of `ops` sent and each op acknowledged at its entry. */
  function ledger(entries: OpJson[][], views: DurableView[], o: { sent?: boolean; acks?: [number, OpJson, string?][] } = {}): string[] {
    const report = newReport('ledger');
    const l = new FleetLedger(report, { seed: 1, fleet: 'made up', n: 3 });
    for (const ops of entries) for (const op of ops) if (o.sent !== false) l.sentIntent(intentOf(op));
    for (const [index, op, hash] of o.acks ?? entries.flatMap((ops, i) => ops.map((op) => [i + 1, op] as [number, OpJson]))) l.ack({ index, hash: hash ?? `h${index}`, op, by: 'm0', round: 1 });
    l.addTrail('m0', trail(entries.map((ops, i) => line(i + 1, ops))), 1);
    expect(l.check(1, views)).toBeGreaterThan(0);
    return report.violations;
  }
  const intentOf = (op: OpJson): OpJson => {
    const { base: _b, guess: _g, ...rest } = op;
    return rest;
  };
  const good = [[reg('a', 0, 2)], [charge('a', 1, 1, 10)], [charge('a', 2, 2, 11)], [reset('a', 3, 11)], [charge('a', 4, 3, 12)]];
  const atEnd: [string, RecordState][] = [['a', { version: 5, status: 'registered', limit: 2, used: 1, total: 3 }]];
  const all = () => [view(0, 5, atEnd), view(1, 5, atEnd), view(2, 5, atEnd)];

  it('a clean history held by every member: no violation', () => {
    expect(ledger(good, all())).toEqual([]);
  });

  it('a charge, a new registration and a charge in one entry: two registrations, no violation', () => {
    const entries = [[reg('a', 0, 3)], [charge('a', 1, 1, 10), { kind: 'replace', id: 'a', base: 2, limit: 3 }, charge('a', 3, 1, 11)]];
    const recs: [string, RecordState][] = [['a', { version: 4, status: 'registered', limit: 3, used: 1, total: 1 }]];
    expect(ledger(entries, [view(0, 2, recs), view(1, 2, recs), view(2, 2, recs)])).toEqual([]);
  });

  it('a new registration in an entry no trail holds: guess 1 twice is not taken for a double grant; with the entry known, it is one', () => {
    const entries = [[reg('a', 0, 3)], [charge('a', 1, 1, 10)], [{ kind: 'replace', id: 'a', base: 2, limit: 3 }], [charge('a', 3, 1, 11)]];
    const report = newReport('ledger');
    const l = new FleetLedger(report, { seed: 1, fleet: 'made up', n: 3 });
    for (const op of entries.flat()) l.sentIntent(intentOf(op));
    l.ack({ index: 2, hash: 'h2', op: charge('a', 1, 1, 10), by: 'm0', round: 1 });
    l.ack({ index: 4, hash: 'h4', op: charge('a', 3, 1, 11), by: 'm0', round: 1 });
    l.addTrail('m0', trail([line(1, entries[0]!), line(2, entries[1]!), line(4, entries[3]!)]), 1);
    l.check(1, [view(0, 4), view(1, 4), view(2, 4)]);
    expect(report.violations).toEqual([]);
    expect([l.gaps, l.undetermined]).toEqual([1, 1]);
    // the same guesses with no registration between them, and no gap: reported
    const v = ledger([[reg('a', 0, 3)], [charge('a', 1, 1, 10)], [{ kind: 'touch', id: 'a', base: 2 }], [charge('a', 3, 1, 11)]], [view(0, 4), view(1, 4), view(2, 4)]).join('\n');
    expect(v).toMatch(/a registered at entry 1 op 0, guess 1: acknowledged to sessions 10 and 11/);
  });

  it('a refunded guess in a member\'s durable record', () => {
    const refunded: [string, RecordState][] = [['a', { version: 5, status: 'registered', limit: 2, used: 0, total: 3 }]];
    expect(ledger(good, [view(0, 5, refunded), view(1, 5, atEnd), view(2, 5, atEnd)]).join('\n')).toMatch(/m0 holds a at version 5 with 0 attempts used, the history 1: a refunded guess/);
  });

  it('a reset nobody sent, a guess granted twice, a charge past the limit, a reset with nothing charged', () => {
    const sentOnly = (v: string[]) => v.join('\n');
    const report = newReport('ledger');
    const l = new FleetLedger(report, { seed: 1, fleet: 'made up', n: 3 });
    const entries = [[reg('a', 0, 2)], [charge('a', 1, 1, 10)], [reset('a', 2, 99)], [charge('a', 3, 1, 11)], [charge('a', 4, 2, 12)], [charge('a', 5, 3, 13)], [reset('a', 6, 13)], [reset('a', 7, 13)]];
    for (const op of entries.flat()) if (op.session !== 99) l.sentIntent(intentOf(op));
    l.addTrail('m0', trail(entries.map((ops, i) => line(i + 1, ops))), 1);
    l.check(1, [view(0, 8), view(1, 8), view(2, 8)]);
    const v = sentOnly(report.violations);
    expect(v).toMatch(/entry 3: .*"reset".*was sent by no client/);
    expect(v).toMatch(/entry 4: guess 1 of a after guess 1/);
    expect(v).toMatch(/entry 6: a charged past its limit 2/);
    expect(v).toMatch(/entry 8: a reset of a with nothing charged/);
  });

  it('one guess number of a registration acknowledged to two sessions', () => {
    const entries = [[reg('a', 0, 3)], [charge('a', 1, 1, 10)], [charge('a', 2, 1, 77)]];
    const v = ledger(entries, [view(0, 3), view(1, 3), view(2, 3)]).join('\n');
    expect(v).toMatch(/a registered at entry 1 op 0, guess 1: acknowledged to sessions 10 and 77/);
    expect(v).toMatch(/entry 3: guess 1 of a after guess 1/);
  });

  it('an acknowledged registration lost: in no history, or held by one member only', () => {
    const lost = ledger(good, all(), { acks: [[6, reg('b', 0, 3), 'h6']] });
    expect(lost.join('\n')).toMatch(/acknowledged .*"b".* at entry 6 by m0 .* is in no member's committed history/);
    expect(lost.join('\n')).toMatch(/at entry 6 .* held by 0 of 3 members' durable logs/);
    const entries = [...good, [reg('b', 0, 3)]];
    const one = ledger(entries, [view(0, 6), view(1, 5, atEnd), view(2, 5, atEnd)]);
    expect(one.join('\n')).toMatch(/"b".* at entry 6 by m0 .* held by 1 of 3 members' durable logs \(m0\), not a majority/);
  });

  it('a fork: two trails, or a member\'s committed log, disagree at an index', () => {
    const report = newReport('ledger');
    const l = new FleetLedger(report, { seed: 1, fleet: 'made up', n: 3 });
    for (const op of good.flat()) l.sentIntent(intentOf(op));
    l.addTrail('m0', trail(good.map((ops, i) => line(i + 1, ops))), 1);
    l.addTrail('m1', trail([line(1, good[0]!), line(2, [charge('a', 1, 1, 10)], 'other')]), 1);
    l.check(1, [view(0, 5, atEnd), view(1, 5, atEnd, (i) => (i === 4 ? 'x4' : `h${i}`)), view(2, 5, atEnd)]);
    expect(report.violations.join('\n')).toMatch(/fork at entry 2: h2 \(m0\) and other/);
    expect(report.violations.join('\n')).toMatch(/m1's committed log holds x4 at entry 4, the history h4/);
  });
});
