/**
 * The fleet's replication rule (enclave/fleet/) under the seeded simulation (test/sim/world.ts):
 * a few hundred random schedules keep every invariant of the oracle; a seed reproduces exactly;
 * refused messages (forged, replayed, wrong incarnation, stale view or epoch, out-of-order,
 * disallowed transition) are typed faults that change nothing, and the member keeps serving;
 * a member restored from an old image can not win a guess back, nor a clone grant one twice; and
 * the positive controls: a
 * deliberately broken rule makes the oracle report a violation within the CI budget.
 */
import { describe, expect, it } from 'vitest';
import { FleetCode } from '../../enclave/fleet/faults.ts';
import type { Answer, BrokenRule } from '../../enclave/fleet/member.ts';
import type { Op } from '../../enclave/fleet/rules.ts';
import { tipOf } from '../../enclave/fleet/log.ts';
import { ANY_INCARNATION, entryHash, HEADER_BYTES, MAC_BYTES, readHeader, seal, type Body, type Envelope } from '../../enclave/fleet/wire.ts';
import { FAULTS, runSchedule, World, type Proc } from './world.ts';
const CI_SCHEDULES = 300;

async function formed(n: 3 | 5 = 3, broken?: BrokenRule, trace = false): Promise<World> {
  const w = await World.create({ seed: 11, n, faults: [], broken, trace });
  for (let i = 0; i < 80 && !(w.leaders().length === 1 && w.alive().every((p) => p.member!.status === 'normal')); i++) w.step();
  expect(w.leaders()).toHaveLength(1);
  return w;
}

/** Steps until `pred` holds (at most `max` ticks). */
function until(w: World, pred: () => boolean, max = 60): void {
  for (let i = 0; i < max && !pred(); i++) w.step();
}

const okCharges = (answers: readonly Answer[], from = 0) => answers.slice(from).filter((a) => a.ok && a.op.kind === 'charge');

describe('fleet simulation: random schedules', () => {
  it(`${CI_SCHEDULES} seeded schedules keep every invariant, with every fault kind exercised`, async () => {
    const totals = { acked: 0, restores: 0, clones: 0, partitions: 0, crashes: 0, reforms: 0, forged: 0, charters: 0, n3: 0, n5: 0 };
    const failing: string[] = [];
    for (let seed = 1; seed <= CI_SCHEDULES; seed++) {
      const r = await runSchedule({ seed });
      if (r.violations.length > 0) failing.push(`seed ${seed}: ${r.violations[0]} (npm run sim -- --seed ${seed} --schedules 1)`);
      for (const k of ['acked', 'restores', 'clones', 'partitions', 'crashes', 'reforms', 'forged', 'charters'] as const) totals[k] += r.stats[k];
      if (r.n === 3) totals.n3++;
      else totals.n5++;
    }
    expect(failing).toEqual([]);
    // the runs did something: answers, and each kind of fault, on both fleet sizes
    expect(totals.acked).toBeGreaterThan(20 * CI_SCHEDULES);
    for (const k of ['restores', 'clones', 'partitions', 'crashes', 'reforms', 'n3', 'n5'] as const) expect(totals[k], k).toBeGreaterThan(10);
    // charter changes (members added and removed) committed in about half of the schedules, among the faults
    expect(totals.charters).toBeGreaterThan(CI_SCHEDULES / 2);
    // forged messages reached members in about half of the schedules, and each was refused (or the run would fail)
    expect(totals.forged).toBeGreaterThan(10 * CI_SCHEDULES);
  }, 240_000);

  it('liveness: after each of 100 schedules without charter changes, every member running again on a healed network, the fleet serves (a leader commits, every member follows it)', async () => {
    // with charter changes the check has two waived limits (docs/fleet.md "Limits of this slice");
    // without, none may be waived: `npm run sim -- --liveness 3000` runs it on every schedule
    const failing: string[] = [];
    let served = 0;
    for (let seed = 1; seed <= 100; seed++) {
      const r = await runSchedule({ seed, charters: false, liveness: 3000 });
      if (r.violations.length > 0) failing.push(`seed ${seed}: ${r.violations[0]} (npm run sim -- --seed ${seed} --schedules 1 --charters off --liveness 3000)`);
      served += r.stats.livenessServed;
    }
    expect(failing).toEqual([]);
    expect(served).toBe(100);
  }, 240_000);

  it('charters of 2 on the way: 60 schedules of 3 members whose changes start with a removal (3 -> 2 -> 3 -> 2 -> 3), under every fault, keep every rule', async () => {
    const failing: string[] = [];
    let charters = 0;
    for (let seed = 1; seed <= 60; seed++) {
      const r = await runSchedule({ seed, n: 3, charters: true, shrinkFirst: true });
      if (r.violations.length > 0) failing.push(`seed ${seed}: ${r.violations[0]} (npm run sim -- --seed ${seed} --schedules 1 --n 3 --charters on --shrink-first)`);
      charters += r.stats.charters;
    }
    expect(failing).toEqual([]);
    // most schedules reach the 2-member charter and go back to 3 (each removal then addition commits)
    expect(charters, 'charter changes committed').toBeGreaterThan(60);
  }, 240_000);

  it('liveness with a charter change in every schedule (60): where a re-form waits on one of its limits, the operator approves one without the members it waits for, and the fleet serves', async () => {
    // waived stay only schedules with no approvable re-form (the members it would keep include a
    // damaged one, or are too few) or a member that can not hear its leader (docs/fleet.md "Limits
    // of this slice"); with the operator's re-form switched off these seeds wait: 8 of 60 served
    // through it when this test was written
    const failing: string[] = [];
    const t = { served: 0, operator: 0, waived: 0 };
    for (let seed = 1; seed <= 60; seed++) {
      const r = await runSchedule({ seed, charters: true, liveness: 3000 });
      if (r.violations.length > 0) failing.push(`seed ${seed}: ${r.violations[0]} (npm run sim -- --seed ${seed} --schedules 1 --charters on --liveness 3000)`);
      t.served += r.stats.livenessServed;
      t.operator += r.stats.livenessOperator;
      t.waived += r.stats.livenessWaived;
    }
    expect(failing).toEqual([]);
    expect(t.served + t.operator + t.waived).toBe(60);
    expect(t.operator, 'schedules served through the operator\'s re-form').toBeGreaterThan(0);
    expect(t.waived, `waived: at most a tenth (${JSON.stringify(t)})`).toBeLessThanOrEqual(6);
  }, 240_000);

  it('the forging adversary changes nothing: a schedule runs the same with and without it, but for the forgeries refused', async () => {
    const without = FAULTS.filter((k) => k !== 'forge');
    let compared = 0;
    for (let seed = 1; seed <= 12; seed++) {
      const a = await runSchedule({ seed, trace: true });
      if (a.stats.forged === 0) continue;
      const b = await runSchedule({ seed, trace: true, faults: without });
      compared++;
      expect(a.trace.filter((l) => !l.includes('forged')), `seed ${seed}`).toEqual(b.trace);
      const rest = (r: typeof a) => ({ ...r.stats, forged: 0, refused: {} });
      expect(rest(a), `seed ${seed}`).toEqual(rest(b));
      const refusedA = Object.values(a.stats.refused).reduce((x, y) => x + y, 0);
      const refusedB = Object.values(b.stats.refused).reduce((x, y) => x + y, 0);
      expect(refusedA - refusedB, `seed ${seed}`).toBe(a.stats.forged);
    }
    expect(compared).toBeGreaterThan(2);
  });

  it('a seed reproduces exactly: same trace, same answers, same faults', async () => {
    const a = await runSchedule({ seed: 42, trace: true });
    const b = await runSchedule({ seed: 42, trace: true });
    expect(a.trace.length).toBeGreaterThan(100);
    expect(b).toEqual(a);
    expect((await runSchedule({ seed: 43, trace: true })).trace).not.toEqual(a.trace);
  });
});

describe('fleet simulation: positive controls (a broken rule is caught within the CI budget)', () => {
  it('a quorum of n/2 forks the logs or double-grants a guess (consequences only, no direct quorum check)', async () => {
    let found: string[] = [];
    for (let seed = 1; seed <= 40 && found.length === 0; seed++) found = [...(await runSchedule({ seed, broken: 'half-quorum', effectsOnly: true })).violations];
    expect(found.length).toBeGreaterThan(0);
    expect(found.join('\n')).toMatch(/fork|granted to sessions|not in the committed history|drops committed/);
  });

  it('a charter change that adds two members at once (charter-two) is reported: two majorities of the old and new charters may not meet', async () => {
    let found: string[] = [];
    for (let seed = 1; seed <= 40 && found.length === 0; seed++) found = [...(await runSchedule({ seed, broken: 'charter-two' })).violations];
    expect(found.join('\n')).toMatch(/two majorities of charters 0 and 1 may not meet/);
    // with the rule kept, a leader refuses that change (charters.test.ts, "the leader proposes only ...")
  });

  it('a member that takes messages without checking their MAC takes a forgery, and the run reports it', async () => {
    let found: string[] = [];
    for (let seed = 1; seed <= 40 && found.length === 0; seed++) found = [...(await runSchedule({ seed, broken: 'skip-mac' })).violations];
    expect(found.join('\n')).toMatch(/forged .* not refused cleanly/);
  });

  it('one key for every pair (shared-key): a member forging in another member\'s name is taken, and the run reports it', async () => {
    let found: string[] = [];
    for (let seed = 1; seed <= 40 && found.length === 0; seed++) found = [...(await runSchedule({ seed, broken: 'shared-key' })).violations];
    expect(found.join('\n')).toMatch(/forged \(impersonate\) .* not refused cleanly/);
  });

  it('a re-form with the votes of any majority, no operator approval asked, is reported', async () => {
    let found: string[] = [];
    for (let seed = 1; seed <= 40 && found.length === 0; seed++) found = [...(await runSchedule({ seed, broken: 'reform-majority' })).violations];
    expect(found.join('\n')).toMatch(/re-form of epoch \d+ without member [\d,]+, which no operator approval names/);
  });

  it('counting an unadmitted incarnation (a booted member resuming from its disk) is reported', async () => {
    let found: string[] = [];
    for (let seed = 1; seed <= 40 && found.length === 0; seed++) found = [...(await runSchedule({ seed, broken: 'count-unadmitted' })).violations];
    expect(found.length).toBeGreaterThan(0);
  });
});

/**
 * Guesses charged through {leader, C} while B is cut off; C is then restored from an image taken
 * before them, and B and the restored C are cut off from the leader together. With the rule, they
 * commit nothing (C's new incarnation is not admitted, B alone is no majority); with the broken
 * rule they grant the same guesses again.
 */
async function rollback(broken?: BrokenRule, trace = false): Promise<{ world: World; before: number; violations: readonly string[] }> {
  const w = await formed(3, broken, trace);
  const leader = w.leaders()[0]!;
  const [b, c] = w.alive().filter((p) => p !== leader) as [Proc, Proc];
  w.submit(leader, { kind: 'register', id: 'r0', limit: 3 });
  until(w, () => c.member!.durable.commit >= 1 && b.member!.durable.commit >= 1 && w.answers.some((a) => a.ok));
  const image = c.disk.state;
  w.partition((p) => (p.id === b.id ? 1 : 0));
  for (let s = 1; s <= 3; s++) {
    const had = okCharges(w.answers).length;
    w.submit(leader, { kind: 'charge', id: 'r0', session: s });
    until(w, () => okCharges(w.answers).length > had, 10);
  }
  expect(okCharges(w.answers).map((a) => a.ok && a.op.kind === 'charge' && a.op.guess)).toEqual([1, 2, 3]);
  w.crash(c);
  const c2 = w.restart(c.id, image);
  w.partition((p) => (p.id === leader.id ? 1 : 0));
  const before = w.answers.length;
  for (let t = 0; t < 120 && w.failedAt < 0; t++) {
    for (const p of [b, c2]) if (p.member) w.submit(p, { kind: 'charge', id: 'r0', session: 100 + t });
    w.step();
  }
  return { world: w, before, violations: w.oracle.violations };
}

describe('fleet: a rolled-back member can not win a guess back', () => {
  it('with the rule: the cut-off pair (one member restored from an old image) grants nothing, and the fleet heals', async () => {
    const { world: w, before, violations } = await rollback();
    expect(violations).toEqual([]);
    expect(okCharges(w.answers, before)).toEqual([]);
    w.partition(null);
    for (let t = 0; t < 150; t++) w.step();
    w.checkRecords();
    expect(w.oracle.violations).toEqual([]);
    expect(w.oracle.modelOf('r0')).toMatchObject({ used: 3, total: 3, limit: 3 });
  });

  it('with a member that resumes from its disk as if admitted: the same guesses are granted again (positive control)', async () => {
    const { violations } = await rollback('count-unadmitted');
    expect(violations.join('\n')).toMatch(/granted to sessions|fork|not in the committed history/);
  });
});

/**
 * A clone of C runs beside it; the fleet splits into {leader, C} and {B, clone}. Each side is
 * asked for the same guesses. With the rule only the side with two admitted incarnations grants
 * them; with the broken rule both do.
 */
async function cloneSplit(broken?: BrokenRule): Promise<{ world: World; violations: readonly string[] }> {
  const w = await formed(3, broken);
  const leader = w.leaders()[0]!;
  const [b, c] = w.alive().filter((p) => p !== leader) as [Proc, Proc];
  w.submit(leader, { kind: 'register', id: 'r0', limit: 3 });
  until(w, () => c.member!.durable.commit >= 1 && b.member!.durable.commit >= 1 && w.answers.some((a) => a.ok));
  const c2 = w.clone(c, 1);
  w.partition((p) => (p.id === b.id || p === c2 ? 1 : 0));
  for (let t = 0; t < 120 && w.failedAt < 0; t++) {
    if (t % 4 === 0) for (const p of [leader, b, c, c2]) if (p.member) w.submit(p, { kind: 'charge', id: 'r0', session: 1000 * p.pid + t });
    w.step();
  }
  return { world: w, violations: w.oracle.violations };
}

describe('fleet: a clone can not grant guesses a second time', () => {
  it('with the rule: only the side with a majority of admitted incarnations grants, each guess once', async () => {
    const { world: w, violations } = await cloneSplit();
    expect(violations).toEqual([]);
    const granted = okCharges(w.answers).map((a) => (a.ok && a.op.kind === 'charge' ? a.op.guess : 0));
    expect(granted).toEqual([1, 2, 3]);
    w.partition(null);
    for (let t = 0; t < 150; t++) w.step();
    w.checkRecords();
    expect(w.oracle.violations).toEqual([]);
  });

  it('with a member that resumes from its disk as if admitted: both sides grant (positive control)', async () => {
    const { violations } = await cloneSplit('count-unadmitted');
    expect(violations.join('\n')).toMatch(/granted to sessions|fork|not in the committed history/);
  });
});

describe("the simulation's damage budget (a minority of ids: world.ts damaged())", () => {
  it('a clone standing in for its downed original counts until the fleet admits it; then it does not', async () => {
    const w = await formed(3);
    const orig = w.primaryOf(1);
    expect(w.damaged()).toEqual(new Set());
    const clone = w.clone(orig, orig.side);
    expect(w.damaged()).toEqual(new Set([1])); // running twice
    // the original acknowledges more after the copy, then goes down: the clone alone holds the old state
    const base = w.answers.length;
    for (let k = 1; k <= 3; k++) {
      w.submit(w.leaders()[0]!, { kind: 'register', id: `d${k}`, limit: 3 });
      until(w, () => w.answers.length >= base + k);
    }
    expect(w.answers.slice(base).filter((a) => a.ok)).toHaveLength(3);
    w.crash(orig);
    expect(w.aliveOf(1)).toEqual([clone]);
    expect(w.damaged(), 'a clone not admitted, its original down').toEqual(new Set([1]));
    // admitted, it holds the current log: no longer damage
    until(w, () => w.oracle.configFor(w.oracle.historyTop + 1).admitted[1] === clone.inc, 300);
    expect(w.oracle.configFor(w.oracle.historyTop + 1).admitted[1]).toBe(clone.inc);
    expect(w.damaged()).toEqual(new Set());
  });

  it('seed 7300126: a second member restored while a stale clone stood in for the first lost a committed entry in a re-form; the budget now forbids that restore', async () => {
    const r = await runSchedule({ seed: 7300126 });
    expect(r.violations).toEqual([]);
    expect(r.stats.clones).toBeGreaterThan(0);
  });
});

describe('fleet: refused messages are typed faults, change nothing, and the member keeps serving', () => {
  async function setup(broken?: BrokenRule) {
    const w = await formed(3, broken);
    const leader = w.leaders()[0]!;
    w.submit(leader, { kind: 'register', id: 'r0', limit: 3 });
    until(w, () => w.alive().every((p) => p.member!.durable.commit >= tipOf(leader.member!.durable).index) && w.answers.some((a) => a.ok));
    const follower = w.alive().find((p) => p !== leader)!;
    const m = follower.member!;
    const d = m.durable;
    const tip = tipOf(d);
    const base = { from: leader.id, to: follower.id, fromInc: leader.member!.incarnation, toInc: ANY_INCARNATION };
    // the test's messages in the leader's name take the sequence numbers after the last the leader
    // used, as the leader's own would: the follower then refuses the leader's next few as replays
    // and hears it again after them (a number far above would leave the follower deaf to this
    // leader for good, which only a key holder could do)
    let seq = Math.max(...w.sent.map(readHeader).filter((h) => h.from === leader.id).map((h) => h.seq));
    const KEY = w.messageKey(leader.id, follower.id);
    /** A message in the leader's name to the follower, MACed under the key of the pair the header names. */
    const msg = (body: Body, over: Partial<Omit<Envelope, 'body'>> = {}): Uint8Array => {
      const e = { ...base, seq: ++seq, body, ...over };
      return seal(e.from === leader.id ? KEY : w.messageKey(e.from, e.to), e);
    };
    const entry = (ops: Op[], index = tip.index + 1, prev = tip.hash) => ({
      index,
      view: m.view,
      prevHash: prev,
      hash: entryHash(prev, index, m.view, ops),
      ops,
      payload: new Uint8Array(0),
    });
    const prepare = (e: ReturnType<typeof entry>, over: Partial<{ epoch: number; view: number }> = {}): Body => ({ type: 'prepare', epoch: m.epoch, view: m.view, commit: d.commit, entry: e, ...over });
    const charge = [{ kind: 'charge' as const, id: 'r0', base: 1, guess: 1, session: 9 }];
    return { w, leader, follower, m, msg, entry, prepare, charge, tip, base, KEY };
  }

  it('each refusal carries its code and leaves the durable state untouched; then the fleet still commits', async () => {
    const { w, leader, follower, m, msg, entry, prepare, charge, tip, base, KEY } = await setup();
    const good = msg(prepare(entry(charge)));
    const goodSeq = readHeader(good).seq;
    // the header and MAC of one message around the body of another
    const other = seal(KEY, { ...base, seq: goodSeq, body: prepare(entry([{ ...charge[0]!, session: 666 }])) });
    const forged = new Uint8Array([...good.subarray(0, HEADER_BYTES), ...other.subarray(HEADER_BYTES, other.length - MAC_BYTES), ...good.subarray(good.length - MAC_BYTES)]);
    const otherKey = seal(new Uint8Array(32).fill(1), { ...base, seq: goodSeq + 1, body: prepare(entry(charge)) });
    const toOther = good.slice();
    toOther[3] = 7; // the receiver id in the header (wire.ts)
    const retired = new Uint8Array(16).fill(0xaa);
    const cases: [string, Uint8Array, number][] = [
      ['forged body (MAC of another message)', forged, FleetCode.BadMac],
      ['MAC under another key', otherKey, FleetCode.BadMac],
      ['to a member id the fleet does not have', toOther, FleetCode.UnknownMember],
      ['to another incarnation of the receiver', msg(prepare(entry(charge)), { toInc: new Uint8Array(16).fill(3) }), FleetCode.WrongIncarnation],
      ['from an incarnation the configuration does not admit', msg(prepare(entry(charge)), { fromInc: retired }), FleetCode.NotAdmitted],
      ['from a member that does not lead the view', msg(prepare(entry(charge)), { from: [0, 1, 2].find((x) => x !== leader.id && x !== follower.id)! }), FleetCode.NotLeader],
      ['an older view', msg(prepare(entry(charge), { view: m.view - 1 })), FleetCode.StaleView],
      ['another epoch', msg(prepare(entry(charge), { epoch: m.epoch + 1 })), FleetCode.StaleEpoch],
      ['an index past the tip', msg(prepare(entry(charge, tip.index + 2))), FleetCode.WrongIndex],
      ['a previous hash that is not the tip', msg(prepare(entry(charge, tip.index + 1, new Uint8Array(32).fill(9)))), FleetCode.WrongPrevHash],
      ['an op on another version', msg(prepare(entry([{ ...charge[0]!, base: 0 }]))), FleetCode.BaseVersion],
      ['a guess past the numbering', msg(prepare(entry([{ ...charge[0]!, guess: 2 }]))), FleetCode.TransitionNotAllowed],
      ['a reset with nothing charged', msg(prepare(entry([{ kind: 'reset', id: 'r0', base: 1, session: 1 }]))), FleetCode.TransitionNotAllowed],
      ['a charge on a record never registered', msg(prepare(entry([{ kind: 'charge', id: 'zz', base: 0, guess: 1, session: 1 }]))), FleetCode.TransitionNotAllowed],
      ['a register over a live record (not a replace)', msg(prepare(entry([{ kind: 'register', id: 'r0', base: 1, limit: 3 }]))), FleetCode.TransitionNotAllowed],
      ['a replace of a record never registered', msg(prepare(entry([{ kind: 'replace', id: 'zz', base: 0, limit: 3 }]))), FleetCode.TransitionNotAllowed],
      ['a touch of a record never registered', msg(prepare(entry([{ kind: 'touch', id: 'zz', base: 0 }]))), FleetCode.TransitionNotAllowed],
      ['a replace with limit 0 (the decoder refuses it)', msg(prepare(entry([{ kind: 'replace', id: 'r0', base: 1, limit: 0 }]))), FleetCode.BadValue],
    ];
    for (const [what, env, code] of cases) {
      const before = m.durable;
      const out = m.receive(env, w.now);
      expect(out.faults.map((f) => f.code), what).toEqual([code]);
      expect(out.faults[0]!.name).toBe('FleetFault');
      expect(m.durable, what).toBe(before);
      // a gap asks the leader for its log; nothing else is sent
      expect(out.send.map((e) => readHeader(e).type), what).toEqual(code === FleetCode.WrongIndex ? ['catchupRequest'] : []);
      expect(m.status, what).toBe('normal');
    }
    // a genuine message of the leader, delivered once already, is refused when replayed
    const genuine = w.sent.filter((e) => { const h = readHeader(e); return h.type === 'prepare' && h.from === leader.id && h.to === follower.id; }).at(-1)!;
    expect(genuine).toBeDefined();
    const before = m.durable;
    const replayed = m.receive(genuine, w.now);
    expect(replayed.faults.map((f) => f.code)).toEqual([FleetCode.Replay]);
    expect(m.durable).toBe(before);
    // the fleet keeps serving: the next change commits, on every member
    const had = w.answers.length;
    w.submit(leader, { kind: 'charge', id: 'r0', session: 1 });
    until(w, () => w.answers.slice(had).some((a) => a.ok));
    expect(w.answers.slice(had).filter((a) => a.ok)).toHaveLength(1);
    until(w, () => follower.member!.durable.commit === tipOf(leader.member!.durable).index, 200);
    expect(follower.member!.durable.commit, w.alive().map((p) => `${p.id}:${p.member!.status}/v${p.member!.view} c${p.member!.durable.commit} t${tipOf(p.member!.durable).index}`).join(" ")).toBe(tipOf(leader.member!.durable).index);
    expect(w.oracle.violations).toEqual([]);
  });

  /** A prepare of the next entry in the leader's name, to the follower, MACed by the third member under each key its device holds. */
  function impersonations(s: Awaited<ReturnType<typeof setup>>): [string, Uint8Array][] {
    const { w, leader, follower, entry, prepare, charge, base } = s;
    const third = w.alive().find((p) => p !== leader && p !== follower)!.id;
    const k = w.keys[third]!;
    const body = prepare(entry(charge));
    const out: [string, Uint8Array][] = [];
    let seq = 2_000_000;
    for (let i = 0; i < 3; i++) {
      if (k.send[i]) out.push([`member ${third}'s key to member ${i}`, seal(k.send[i]!, { ...base, seq: ++seq, body })]);
      if (k.receive[i]) out.push([`member ${third}'s key from member ${i}`, seal(k.receive[i]!, { ...base, seq: ++seq, body })]);
    }
    return out;
  }

  it("a member forging in another member's name, with every key of its own, is refused (BadMac) and changes nothing", async () => {
    const s = await setup();
    const { w, m, follower, leader } = s;
    const forged = impersonations(s);
    expect(forged).toHaveLength(4);
    for (const [what, msg] of forged) {
      const before = m.durable;
      const out = m.receive(msg, w.now);
      expect(out.faults.map((f) => f.code), what).toEqual([FleetCode.BadMac]);
      expect(out.send.length + out.answers.length + out.events.length, what).toBe(0);
      expect(m.durable, what).toBe(before);
    }
    // the same message under the key of (leader, follower) is taken: the forgeries failed for their key only
    const genuine = seal(w.messageKey(leader.id, follower.id), { ...s.base, seq: 3_000_000, body: s.prepare(s.entry(s.charge)) });
    const out = m.receive(genuine, w.now);
    expect(out.faults).toEqual([]);
    expect(tipOf(m.durable).index).toBe(s.tip.index + 1);
  });

  it('with one key for every pair (shared-key, positive control), the same forgery is taken as the leader\'s', async () => {
    const s = await setup('shared-key');
    const [what, msg] = impersonations(s)[0]!;
    const out = s.m.receive(msg, s.w.now);
    expect(out.faults, what).toEqual([]);
    expect(tipOf(s.m.durable).index, what).toBe(s.tip.index + 1);
  });
});
