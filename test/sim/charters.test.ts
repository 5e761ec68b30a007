/**
 * Charter changes in the replication core (docs/fleet.md, "Membership changes"), scripted in the
 * simulated world (world.ts, no random faults): a member added counts in quorums once admitted, a
 * member removed counts in none and retires, a replacement (an addition, then a removal) keeps a
 * majority throughout; what a leader refuses to propose and what a follower refuses to append; a
 * new leader commits an entry of its own view before it proposes a change; two changes of one
 * serial racing across a partition: one commits, the other is dropped; a member of three gone for
 * good replaced by a removal then an addition (3 -> 2 -> 3); a member restored from an image that
 * predates the addition of the leader rejoins through a follower (catchup.ts `relayRejoin`). The random schedules
 * with charter changes, and the positive control charter-two: sim.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { FleetCode } from '../../enclave/fleet/faults.ts';
import { checkCharterChange, configAt, tipOf } from '../../enclave/fleet/log.ts';
import type { CharterState } from '../../enclave/fleet/messages.ts';
import { entryHash, seal, type Envelope } from '../../enclave/fleet/wire.ts';
import { World, type Proc } from './world.ts';

/** A formed 3-member fleet with a plan of four changes (add 3, remove one, add 4, remove one). */
async function formed(seed = 11): Promise<World> {
  const w = await World.create({ seed, n: 3, faults: [], charters: true });
  for (let i = 0; i < 80 && !(w.leaders().length === 1 && w.alive().every((p) => p.member!.status === 'normal')); i++) w.step();
  expect(w.leaders()).toHaveLength(1);
  expect(w.plan).toHaveLength(4);
  return w;
}

/** Steps until `pred` holds (at most `max` ticks); `pred` may act (it is called once per tick, and its last answer is returned). */
function until(w: World, pred: () => boolean, max = 200): boolean {
  for (let i = 0; i < max; i++) {
    if (pred()) return true;
    w.step();
  }
  return pred();
}

/** Makes the next change of the plan: approved, proposed until committed. */
function change(w: World): void {
  const before = w.stats.charters;
  w.startCharter();
  expect(
    until(w, () => {
      w.driveCharter();
      return w.stats.charters > before;
    }),
  ).toBe(true);
}

/** Submits a charge to the leader and steps until an answer; whether it was answered ok. */
function charged(w: World, max = 60): boolean {
  const from = w.answers.length;
  const lead = w.leaders()[0];
  if (!lead) return false;
  w.submit(lead, { kind: 'register', id: `x${w.now}`, limit: 3 });
  return until(w, () => w.answers.slice(from).some((a) => a.ok), max);
}

const status = (p: Proc) => p.member?.status;

describe('charter changes: a member of three that is gone for good, replaced 3 -> 2 -> 3', () => {
  it('with one of three down for good, the removal commits on the two left (a charter of 2, none of 1), the addition after it, and the new three tolerate one down again', async () => {
    const w = await World.create({ seed: 11, n: 3, faults: [], charters: true, shrinkFirst: true });
    for (let i = 0; i < 80 && !(w.leaders().length === 1 && w.alive().every((p) => p.member!.status === 'normal')); i++) w.step();
    expect(w.plan.map((s) => (s.removed === null ? 'add' : 'remove')), 'the plan removes first').toEqual(['remove', 'add', 'remove', 'add']);
    const gone = w.plan[0]!.removed!;
    expect(charged(w)).toBe(true);
    // the member the plan removes is gone for good: the two left still commit (2 of 3)
    w.crash(w.aliveOf(gone)[0]!);
    expect(until(w, () => w.leaders().length === 1 && w.alive().every((p) => p.member!.status === 'normal'), 300)).toBe(true);
    // 3 -> 2: the removal commits on the two left
    change(w);
    const sizes = () => w.alive().map((p) => configAt(p.member!.durable, p.member!.durable.commit).charter.identities.filter((k) => k !== null).length);
    expect(until(w, () => sizes().join() === '2,2'), `a charter of 2 committed at both (${sizes().join()})`).toBe(true);
    // and no charter goes below 2 (log.ts MIN_MEMBERS): from these two, a removal breaks the rules
    const cfg = configAt(w.alive()[0]!.member!.durable, w.alive()[0]!.member!.durable.commit);
    const one = cfg.charter.identities.map((k, i) => (i === w.alive()[0]!.id ? k : null));
    expect(checkCharterChange(cfg, { kind: 'charter', serial: cfg.charter.serial + 1, identities: one }), 'a charter of one').toBe(false);
    expect(charged(w), 'the two commit').toBe(true);
    // 2 -> 3: the new member is added, boots with its grant, is admitted by the two, and counts
    change(w);
    const added = w.plan[1]!.joined[0]!.member;
    const j = w.aliveOf(added)[0]!;
    expect(until(w, () => status(j) === 'normal', 400), `the added member serves (${w.alive().map((p) => `m${p.id}:${status(p)}`).join(' ')})`).toBe(true);
    expect(charged(w)).toBe(true);
    // and the three tolerate one down again: any one of them crashed, the other two commit
    const lead = w.leaders()[0]!;
    w.crash(w.alive().find((p) => p !== lead)!);
    expect(charged(w, 200), 'two of the new three commit').toBe(true);
    w.checkRecords();
    expect(w.oracle.violations).toEqual([]);
  });
});

describe('charter changes: a member whose log predates the change that added the leader', () => {
  it('restored from an image taken before member 3 joined, while member 3 leads: a follower sends it its log, it learns the leader, rejoins and is admitted', async () => {
    const w = await formed();
    const states = () => w.alive().map((p) => `p${p.pid}(m${p.id}):${status(p)} v${p.member!.view}`).join(' ');
    const image = w.primaryOf(2).disk.state; // member 2's disk before the addition
    change(w);
    const j = w.aliveOf(3)[0]!;
    expect(until(w, () => status(j) === 'normal')).toBe(true);
    // member 3 takes the lead: the leaders before it hand the lead on in turn
    const settled = () => w.leaders().length === 1 && w.alive().every((p) => status(p) === 'normal');
    expect(
      until(w, () => {
        const l = w.leaders()[0];
        if (l && l.id !== 3 && settled()) w.stepDown(l);
        return settled() && w.leaders()[0]!.id === 3;
      }, 600),
      `member 3 leads (${states()})`,
    ).toBe(true);
    expect(charged(w)).toBe(true);
    // member 2 restored from its image: its charter has no member 3, whose messages it can not check
    expect(configAt(image, tipOf(image).index).charter.identities[3] ?? null).toBeNull();
    w.crash(w.aliveOf(2)[0]!);
    const r = w.restart(2, image);
    expect(until(w, () => status(r) === 'normal' && r.member!.view === j.member!.view, 400), `the restored member follows member 3 (${states()})`).toBe(true);
    expect(w.leaders().map((p) => p.id)).toEqual([3]);
    // and counts: with member 0 down, 1, 2 and 3 commit
    w.crash(w.aliveOf(0)[0]!);
    expect(charged(w, 100), `a majority with the restored member commits (${states()})`).toBe(true);
    w.checkRecords();
    expect(w.oracle.violations).toEqual([]);
  });

  it('a rejoining member that can hear its leader takes no log from a follower; the same log from the leader it takes', async () => {
    const w = await formed();
    expect(charged(w)).toBe(true);
    const lead = w.leaders()[0]!;
    const [f, g] = w.alive().filter((p) => p !== lead) as [Proc, Proc];
    w.crash(g);
    const r = w.restart(g.id);
    w.partition((p) => (p === r ? 1 : 0)); // its rejoins reach nobody: only the messages below
    for (let i = 0; i < 5; i++) w.step();
    expect(status(r)).toBe('recovering');
    const before = r.member!.durable;
    const logOf = (p: Proc, seq: number): Envelope => {
      const d = p.member!.durable;
      return { from: p.id, to: r.id, fromInc: p.member!.incarnation, toInc: r.member!.incarnation, seq, body: { type: 'catchup', epoch: p.member!.epoch, view: d.view, normalView: d.normalView, commit: d.commit, snapshot: d.base, entries: [...d.entries] } };
    };
    const relayed = r.member!.receive(seal(w.messageKey(f.id, r.id), logOf(f, 1_000_000)), w.now);
    expect(relayed.faults.map((x) => x.code), 'a follower\'s log').toEqual([FleetCode.Unexpected]);
    expect([r.member!.durable, status(r)]).toEqual([before, 'recovering']);
    // positive control: the leader's log, in the same message, is taken (a learner, its tip the leader's)
    const led = r.member!.receive(seal(w.messageKey(lead.id, r.id), logOf(lead, 1_000_000)), w.now);
    expect(led.faults).toEqual([]);
    expect([status(r), tipOf(r.member!.durable).index]).toEqual(['learner', tipOf(lead.member!.durable).index]);
    // (the leader's genuine messages to it are replays of that sequence number now: the test ends here)
    expect(w.oracle.violations).toEqual([]);
  });
});

describe('charter changes: members added and removed', () => {
  it('a replacement keeps a majority: the added member is admitted and counts, the removed one counts in nothing and retires', async () => {
    const w = await formed();
    // add member 3: 4 members, a majority is 3
    change(w);
    const j = w.aliveOf(3)[0]!;
    expect(until(w, () => status(j) === 'normal')).toBe(true);
    expect(configAt(j.member!.durable, j.member!.durable.commit).charter.identities).toHaveLength(4);
    // with one founding follower down, a change commits only with the new member's ack
    const lead = w.leaders()[0]!;
    const follower = w.alive().find((p) => p !== lead && p.id < 3)!;
    w.crash(follower);
    expect(charged(w)).toBe(true);
    w.restart(follower.id);
    expect(until(w, () => w.alive().every((p) => status(p) === 'normal'))).toBe(true);

    // remove a member: back to 3
    const removed = w.plan[1]!.removed!;
    change(w);
    expect(until(w, () => w.aliveOf(removed).every((p) => status(p) === 'retired'))).toBe(true);
    const members = w.ids.filter((id) => w.plan[1]!.change.identities[id]);
    expect(members).toHaveLength(3);
    expect(members).toContain(3);

    // the removed member is up but counts in no quorum: with two of the three members down, nothing commits
    const lead2 = w.leaders()[0]!;
    w.restart(removed); // it boots from its disk, the removal in its log, and takes no part
    const down = members.filter((id) => id !== lead2.id);
    for (const id of down) for (const p of w.aliveOf(id)) w.crash(p);
    expect(charged(w, 40)).toBe(false);
    for (const id of down) w.restart(id);
    expect(until(w, () => w.leaders().length === 1 && members.every((id) => w.aliveOf(id).some((p) => status(p) === 'normal')), 400)).toBe(true);
    expect(charged(w)).toBe(true);

    // the second replacement: member 4 added, another removed
    change(w);
    expect(until(w, () => w.aliveOf(4).some((p) => status(p) === 'normal'))).toBe(true);
    change(w);
    const second = w.plan[3]!.removed!;
    expect(until(w, () => w.aliveOf(second).every((p) => status(p) === 'retired' || p.member === null))).toBe(true);
    expect(charged(w)).toBe(true);
    w.checkRecords();
    expect(w.oracle.violations).toEqual([]);
    expect(w.stats.charters).toBe(4);
    // the removed ids' messages were refused by the members that hold their removal
    expect(w.stats.refused[String(FleetCode.UnknownMember)] ?? 0).toBeGreaterThan(0);
  });

  it('the leader proposes only an approved change that keeps the rules, one at a time', async () => {
    const w = await formed();
    const lead = w.leaders()[0]!;
    const m = lead.member!;
    const ids = configAt(m.durable, tipOf(m.durable).index).charter.identities as Uint8Array[];
    const next = w.plan[0]!.change;
    const code = (c: CharterState, member = m) => {
      const r = member.proposeCharter(c, w.now);
      return typeof r.index === 'number' ? null : r.index.code;
    };
    // not approved in this device
    expect(code(next)).toBe(FleetCode.CharterNotApproved);
    const approve = (c: CharterState) => m.approveCharter(c);
    const bad: [string, CharterState][] = [
      ['a serial not the next', { ...next, serial: 2 }],
      ['two members added at once', { serial: 1, identities: [...next.identities, w.plan[2]!.change.identities[4]!] }],
      ['a kept member with another identity', { serial: 1, identities: [ids[0]!, ids[2]!, ids[1]!] }],
      ['nothing changed', { serial: 1, identities: ids }],
      ['one member left (two removed at once)', { serial: 1, identities: [ids[0]!, null, null] }],
    ];
    for (const [what, c] of bad) {
      approve(c);
      expect(code(c), what).toBe(FleetCode.TransitionNotAllowed);
    }
    // a follower does not propose
    const follower = w.alive().find((p) => p !== lead)!;
    follower.member!.approveCharter(next);
    expect(code(next, follower.member!)).toBe(FleetCode.NotLeader);
    // approved and lawful: appended (after an entry of this view, if the log has none yet)
    approve(next);
    let r = m.proposeCharter(next, w.now);
    if (typeof r.index !== 'number') {
      expect(r.index.code).toBe(FleetCode.Busy);
      expect(until(w, () => m.durable.commit === tipOf(m.durable).index)).toBe(true);
      r = m.proposeCharter(next, w.now);
    }
    expect(typeof r.index).toBe('number');
    // a second change while the first is not committed: Busy
    const removal = { serial: 2, identities: [...next.identities.slice(0, 3), null] as (Uint8Array | null)[] };
    approve(removal);
    expect(code(removal)).toBe(FleetCode.Busy);
    // once committed, the replayed first change is refused by its serial
    expect(until(w, () => configAt(m.durable, m.durable.commit).charter.serial === 1)).toBe(true);
    expect(code(next)).toBe(FleetCode.TransitionNotAllowed);
    // an id once removed is never given again (a follower removed: the leader's own removal is the next test's)
    const victim = [0, 1, 2].find((i) => i !== lead.id)!;
    const r2 = { serial: 2, identities: next.identities.map((k, i) => (i === victim ? null : k)) };
    approve(r2);
    expect(until(w, () => code(r2) === null, 40)).toBe(true);
    expect(until(w, () => configAt(m.durable, m.durable.commit).charter.serial === 2)).toBe(true);
    const reuse = { serial: 3, identities: next.identities };
    approve(reuse);
    expect(code(reuse)).toBe(FleetCode.TransitionNotAllowed);
    expect(w.oracle.violations).toEqual([]);
  });

  it('a leader asked to remove itself hands the lead on; the next leader commits an entry of its view before the change', async () => {
    const w = await formed();
    const lead = w.leaders()[0]!;
    const ids = configAt(lead.member!.durable, 0).charter.identities as Uint8Array[];
    // first a member added (so that a removal leaves three)
    change(w);
    expect(until(w, () => w.aliveOf(3).some((p) => status(p) === 'normal'))).toBe(true);
    const l = w.leaders()[0]!;
    const self = { serial: 2, identities: [0, 1, 2, 3].map((i) => (i === l.id ? null : (ids[i] ?? w.plan[0]!.change.identities[3]!))) };
    for (const p of w.alive()) p.member!.approveCharter(self);
    const r = l.member!.proposeCharter(self, w.now);
    expect(typeof r.index === 'number' ? null : r.index.code).toBe(FleetCode.NotLeader);
    expect(status(l)).toBe('viewchange');
    expect(until(w, () => w.leaders().length === 1 && w.leaders()[0] !== l)).toBe(true);
    const next = w.leaders()[0]!;
    const before = tipOf(next.member!.durable).index;
    // the new view has no entry of its own committed yet: Busy, and an empty entry of this view is appended
    const first = next.member!.proposeCharter(self, w.now);
    const lastEntry = next.member!.durable.entries.at(-1);
    if (typeof first.index !== 'number') {
      expect(first.index.code).toBe(FleetCode.Busy);
      expect(lastEntry?.view).toBe(next.member!.view);
      expect(lastEntry?.ops).toEqual([]);
      expect(tipOf(next.member!.durable).index).toBe(before + 1);
      expect(until(w, () => typeof next.member!.proposeCharter(self, w.now).index === 'number', 40)).toBe(true);
    }
    expect(until(w, () => l.member?.status === 'retired')).toBe(true);
    expect(charged(w)).toBe(true);
    expect(w.oracle.violations).toEqual([]);
  });

  it('a follower refuses an entry whose charter change breaks the rules, and keeps serving', async () => {
    const w = await formed();
    const lead = w.leaders()[0]!;
    const f = w.alive().find((p) => p !== lead)!;
    const fm = f.member!;
    const tip = tipOf(fm.durable);
    const ids = configAt(fm.durable, tip.index).charter.identities as Uint8Array[];
    const before = fm.durable;
    const cases: [string, (Uint8Array | null)[]][] = [
      ['two added', [...ids, w.plan[0]!.change.identities[3]!, new Uint8Array(32).fill(7)]],
      ['a swapped identity', [ids[1]!, ids[0]!, ids[2]!]],
    ];
    let seq = 1_000_000;
    for (const [what, identities] of cases) {
      const ops = [{ kind: 'charter' as const, serial: 1, identities }];
      const entry = { index: tip.index + 1, view: fm.view, prevHash: tip.hash, hash: entryHash(tip.hash, tip.index + 1, fm.view, ops), ops, payload: new Uint8Array(0) };
      const env: Envelope = { from: lead.id, to: f.id, fromInc: lead.member!.incarnation, toInc: fm.incarnation, seq: seq++, body: { type: 'prepare', epoch: fm.epoch, view: fm.view, commit: fm.durable.commit, entry } };
      const out = fm.receive(seal(w.messageKey(lead.id, f.id), env), w.now);
      expect(out.faults.map((x) => x.code), what).toEqual([FleetCode.TransitionNotAllowed]);
      expect(fm.durable, what).toBe(before);
    }
    expect(charged(w)).toBe(true);
    expect(w.oracle.violations).toEqual([]);
  });

  it('two changes of one serial from the leaders of two views: the majority\'s commits, the cut-off leader\'s is dropped with its entry', async () => {
    const w = await World.create({ seed: 12, n: 5, faults: [], charters: true });
    until(w, () => w.leaders().length === 1 && w.alive().every((p) => p.member!.status === 'normal'), 120);
    const a = w.leaders()[0]!;
    const am = a.member!;
    const ids = configAt(am.durable, 0).charter.identities as Uint8Array[];
    // the leader commits an entry of its view first (so that its change is appended at once below)
    expect(charged(w)).toBe(true);
    const others = [0, 1, 2, 3, 4].filter((i) => i !== a.id);
    const x = { serial: 1, identities: ids.map((k, i) => (i === others[0] ? null : k)) };
    am.approveCharter(x);
    w.partition((p) => (p === a ? 1 : 0));
    const r = am.proposeCharter(x, w.now);
    expect(typeof r.index).toBe('number');
    // the four others elect a leader and make another change of serial 1
    expect(until(w, () => w.leaders().some((p) => p !== a), 300)).toBe(true);
    const b = w.leaders().find((p) => p !== a)!;
    const yRemoved = others.find((i) => i !== b.id && i !== others[0])!;
    const y = { serial: 1, identities: ids.map((k, i) => (i === yRemoved ? null : k)) };
    b.member!.approveCharter(y);
    expect(until(w, () => typeof b.member!.proposeCharter(y, w.now).index === 'number', 60)).toBe(true);
    expect(until(w, () => configAt(b.member!.durable, b.member!.durable.commit).charter.serial === 1)).toBe(true);
    // healed: the cut-off leader's change is dropped, it holds the majority's
    w.partition(null);
    expect(until(w, () => a.member !== null && configAt(a.member.durable, a.member.durable.commit).charter.serial === 1, 400)).toBe(true);
    const held = configAt(a.member!.durable, a.member!.durable.commit).charter.identities;
    expect(held[yRemoved]).toBeNull();
    expect(held[others[0]!]).not.toBeNull();
    expect(w.oracle.violations).toEqual([]);
  });
});
