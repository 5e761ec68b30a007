/**
 * A re-form without a member gone for good, approved by the operator (docs/fleet.md "Re-form
 * without some members"; enclave/fleet/reform.ts `reformVoters`, member.ts `approveReform`).
 * After a whole-fleet restart a re-form needs the vote of every member id: with one member's
 * machine gone the fleet stands still for good. The operator's approval names the epoch the fleet
 * re-forms out of and the ids to go without; the members it keeps must be a majority of the
 * charter, and the boot (incarnation) of each kept member. The members of the new configuration
 * are exactly those; a member left out comes back as
 * a restarted member does (rejoin, then Admit). Every run here checks the simulation's oracle: no
 * committed entry lost, no guess granted twice (test/sim/oracle.ts).
 */
import { describe, expect, it } from 'vitest';
import { FleetCode, FleetFault } from '../../enclave/fleet/faults.ts';
import { configAt, tipOf } from '../../enclave/fleet/log.ts';
import { World } from './world.ts';
import type { Proc } from './world.ts';

const states = (w: World) => w.alive().map((p) => `p${p.pid}(m${p.id}):${p.member!.status} e${p.member!.epoch}/v${p.member!.view}`).join(' ');

/** A formed fleet of n that committed a registration and two wrong guesses on r0. */
async function formed(n: 3 | 5, seed: number): Promise<{ w: World; epoch: number }> {
  const w = await World.create({ seed, n, faults: [] });
  for (let i = 0; i < 400 && !(w.leaders().length === 1 && w.alive().every((p) => p.member!.status === 'normal')); i++) w.step();
  expect(w.leaders(), states(w)).toHaveLength(1);
  for (const intent of [{ kind: 'register', id: 'r0', limit: 5 }, { kind: 'charge', id: 'r0', session: 1 }, { kind: 'charge', id: 'r0', session: 2 }] as const) {
    const had = w.answers.length;
    w.submit(w.leaders()[0]!, intent);
    for (let i = 0; i < 100 && !w.answers.slice(had).some((a) => a.ok); i++) w.step();
    expect(w.answers.slice(had).some((a) => a.ok), `${intent.kind} committed (${states(w)})`).toBe(true);
  }
  // idle until every member knows the last commit (the leader's heartbeats): a member the re-form
  // goes without then has its commit point at the re-form's chosen tip, and must still take the
  // new epoch's snapshot when it rejoins (catchup.ts serveCatchup)
  const top = w.leaders()[0]!.member!.durable.commit;
  for (let i = 0; i < 100 && !w.alive().every((p) => p.member!.durable.commit === top); i++) w.step();
  expect(w.alive().map((p) => p.member!.durable.commit), 'every member knows the last commit').toEqual(w.alive().map(() => top));
  // and has it on disk, as a vault member has once it applied the batch (member.ts persistCommit)
  for (const p of w.alive()) p.member!.persistCommit(top);
  expect(w.alive().map((p) => p.disk.state.commit), 'on disk').toEqual(w.alive().map(() => top));
  return { w, epoch: w.leaders()[0]!.member!.epoch };
}

/** Every process crashed; those of `back` started again from their disks. */
function restartOnly(w: World, back: readonly number[]): Proc[] {
  for (const p of w.alive()) w.crash(p);
  return back.map((id) => w.restart(id));
}

/** Runs up to `ticks`, a touch of r0 offered to every leader every 4 ticks; the tick an op committed with every running member normal in one epoch and view, or -1. */
function serveWithin(w: World, ticks: number): number {
  const had = w.answers.length;
  for (let t = 0; t < ticks; t++) {
    if (t % 4 === 0) for (const l of w.leaders()) w.submit(l, { kind: 'touch', id: 'r0' });
    w.step();
    const lead = w.leaders()[0]?.member;
    if (lead && w.answers.slice(had).some((a) => a.ok) && w.alive().every((p) => p.member!.status === 'normal' && p.member!.epoch === lead.epoch && p.member!.view === lead.view)) return t;
  }
  return -1;
}

describe('fleet: a re-form without a member gone for good, approved by the operator', () => {
  it('three members, one never back: stands still without the approval; with it the two re-form and serve, and the third rejoins when it comes back', async () => {
    const { w, epoch } = await formed(3, 31);
    const back = restartOnly(w, [0, 1]);
    // the control: without the approval the re-form waits for member 2's vote, for good
    expect(serveWithin(w, 1500), `nothing served without the approval (${states(w)})`).toBe(-1);
    expect(w.alive().every((p) => p.member!.status === 'reform'), states(w)).toBe(true);
    for (const p of back) w.approveReform(p, epoch, [2]);
    expect(back.map((p) => p.member!.reformApproval), 'the approval applies').toEqual(back.map(() => ({ fromEpoch: epoch, without: [2], kept: [0, 1], applies: true })));
    expect(serveWithin(w, 1500), `the two members re-form and serve (${states(w)})`).toBeGreaterThanOrEqual(0);
    const lead = w.leaders()[0]!.member!;
    expect(lead.epoch).toBeGreaterThan(epoch);
    const cfg = lead.durable.base.config;
    expect(cfg.epoch, 'installed by the re-form').toBe(lead.epoch);
    expect(cfg.admitted.map((x) => x !== null), 'the new configuration admits members 0 and 1 only').toEqual([true, true, false]);
    expect(lead.reformApproval?.applies, 'the approval does not outlive its epoch').toBe(false);
    // member 2 comes back from its own disk, with no op in flight (its commit point is the re-form's
    // chosen tip, the new epoch's snapshot point): it takes that snapshot, is admitted, follows
    w.restart(2);
    const followed = () => w.alive().every((p) => p.member!.status === 'normal' && p.member!.epoch === lead.epoch);
    for (let t = 0; t < 1000 && !followed(); t++) w.step();
    expect(followed(), `member 2 rejoins in the new epoch with the fleet idle (${states(w)})`).toBe(true);
    expect(serveWithin(w, 2000), `and the three serve (${states(w)})`).toBeGreaterThanOrEqual(0);
    expect(w.alive().map((p) => p.member!.status)).toEqual(['normal', 'normal', 'normal']);
    const d = w.leaders()[0]!.member!.durable;
    expect(configAt(d, tipOf(d).index).admitted.map((x) => x !== null), 'member 2 admitted again (an Admit in the log)').toEqual([true, true, true]);
    w.checkRecords();
    expect(w.oracle.violations).toEqual([]);
  });

  it('five members, three back: an approval that keeps fewer than a majority, or names another epoch, changes nothing; one that keeps three serves', async () => {
    const { w, epoch } = await formed(5, 32);
    const back = restartOnly(w, [0, 1]);
    for (const p of back) w.approveReform(p, epoch, [2, 3, 4]);
    expect(back.map((p) => p.member!.reformApproval?.applies), 'two of five are not a majority').toEqual([false, false]);
    expect(serveWithin(w, 1200), `nothing served (${states(w)})`).toBe(-1);
    back.push(w.restart(2));
    for (const p of back) w.approveReform(p, epoch + 1, [3, 4]);
    expect(back.map((p) => p.member!.reformApproval?.applies), 'the approval of another epoch').toEqual([false, false, false]);
    expect(serveWithin(w, 1200), `nothing served (${states(w)})`).toBe(-1);
    for (const p of back) w.approveReform(p, epoch, [3, 4]);
    expect(serveWithin(w, 1500), `three of five re-form and serve (${states(w)})`).toBeGreaterThanOrEqual(0);
    expect(w.leaders()[0]!.member!.durable.base.config.admitted.map((x) => x !== null)).toEqual([true, true, true, false, false]);
    w.checkRecords();
    expect(w.oracle.violations).toEqual([]);
  });

  it('an approval held by one of the two members it keeps installs nothing: the other still waits for every id', async () => {
    const { w, epoch } = await formed(3, 33);
    const [p0, p1] = restartOnly(w, [0, 1]);
    w.approveReform(p0!, epoch, [2]);
    expect(serveWithin(w, 1500), `nothing served (${states(w)})`).toBe(-1);
    expect(w.alive().every((p) => p.member!.epoch === epoch), 'no member installed a new epoch').toBe(true);
    w.approveReform(p1!, epoch, [2]);
    expect(serveWithin(w, 1500), `both approved: served (${states(w)})`).toBeGreaterThanOrEqual(0);
    w.checkRecords();
    expect(w.oracle.violations).toEqual([]);
  });

  it('an approval is bound to the boots it names: a kept member restarted since (or restored from an old image) does not take it, and its old boot\'s vote counts for nothing', async () => {
    const { w, epoch } = await formed(3, 35);
    const [p0, p1] = restartOnly(w, [0, 1]);
    const boots = w.keptBoots([2]);
    w.approveReform(p0!, epoch, [2], boots);
    // member 1 restarts after the operator read its incarnation: the approval, replayed to its new boot, applies to nothing
    w.crash(p1!);
    const p1b = w.restart(1);
    w.approveReform(p1b, epoch, [2], boots);
    expect(p1b.member!.reformApproval?.applies, 'the new boot is not the one approved').toBe(false);
    expect(serveWithin(w, 1500), `nothing served (${states(w)})`).toBe(-1);
    expect(w.alive().every((p) => p.member!.epoch === epoch), 'no member installed a new epoch').toBe(true);
    // the operator reads the boots again and approves anew
    for (const p of [p0!, p1b]) w.approveReform(p, epoch, [2]);
    expect(serveWithin(w, 1500), `approved for these boots: served (${states(w)})`).toBeGreaterThanOrEqual(0);
    w.checkRecords();
    expect(w.oracle.violations).toEqual([]);
  });

  it('a member the approval leaves out plans nothing; a malformed approval is refused with BadValue', async () => {
    const { w, epoch } = await formed(3, 34);
    const [p0] = restartOnly(w, [0, 1]);
    const m = p0!.member!;
    const boots = w.keptBoots([2]);
    const inc = boots.get(0)!;
    const cases: [number, number[], Map<number, Uint8Array>][] = [
      [-1, [2], boots],
      [1.5, [2], boots],
      [epoch, [], boots],
      [epoch, [7], boots],
      [epoch, [-1], boots],
      [epoch, [0.5], boots],
      [epoch, [2], new Map()],
      [epoch, [2], new Map([[0, inc.subarray(0, 15)]])],
      [epoch, [2], new Map([[2, inc]])],
      [epoch, [2], new Map([[7, inc]])],
    ];
    for (const [e, ids, kept] of cases) {
      let got: unknown = null;
      try {
        m.approveReform(e, ids, kept, w.now);
      } catch (err) {
        got = err;
      }
      expect(got instanceof FleetFault && got.code === FleetCode.BadValue, `approveReform(${e}, [${ids.join(',')}], ${[...kept].map(([k, v]) => `${k}:${v.length}`).join(',')})`).toBe(true);
    }
    expect(m.reformApproval, 'nothing held after the refusals').toBeNull();
    w.approveReform(p0!, epoch, [0]);
    expect(m.reformApproval).toEqual({ fromEpoch: epoch, without: [0], kept: [1], applies: true });
    expect(serveWithin(w, 1200), `nothing served (${states(w)})`).toBe(-1);
    expect(w.oracle.violations).toEqual([]);
  });
});
