/**
 * Liveness of the fleet core when a majority of admitted members runs but the network (or the
 * machine) is slow for a while (docs/fleet.md "View change", "Re-form"): a whole-fleet re-form
 * needs every one of the N ids, so a member that can still form a view with a majority must not
 * fall into one on a timer. Three members on a network this file drives tick by tick; one is
 * killed; for a stretch every message takes longer than the re-form timeout; afterwards the two
 * left must elect a leader and commit again without the third. Safety is the simulation's
 * (test/sim); this checks that the fleet comes back, and that the re-forms a fleet needs still
 * happen: a whole fleet restarted, and one admitted member left with two restarted ones. And a
 * restarted member whose Admit committed while it voted for a re-form (it heard neither) is
 * admitted once it asks to rejoin again, where the leader used to refuse it for thousands of ticks;
 * and a follower that lost the last prepare catches up while the fleet is quiet.
 */
import { describe, expect, it } from 'vitest';
import { configAt, tipOf } from '../../../enclave/fleet/log.ts';
import { Net } from '../../helpers/fleet-net.ts';

describe('fleet liveness with a majority running', () => {
  it('after a stretch where every message is slower than the re-form timeout, the two members left elect a leader and commit without the third', () => {
    const net = new Net(3);
    expect(net.until(() => net.leader() !== null, 2000), 'the fleet forms').toBeGreaterThanOrEqual(0);
    // positive control: a registration commits while all three run
    const first = net.leader()!;
    net.out(net.members[first]!.submit({ kind: 'register', id: 'a', limit: 5 }, net.now));
    expect(net.until(() => net.committed.length > 0, 200)).toBeGreaterThanOrEqual(0);

    net.kill(first);
    // a loaded machine: every message takes 80 ticks (the re-form timeout is 60) for 600 ticks
    net.delay = 80;
    for (let t = 0; t < 600; t++) net.step();
    net.delay = 1;
    const took = net.until(() => net.leader() !== null, 1000);
    const states = net.members.map((m) => (m ? `${m.id}:${m.status}/v${m.view}/e${m.epoch}` : 'down')).join(' ');
    expect(took, `a leader of the two left (${states})`).toBeGreaterThanOrEqual(0);
    const l = net.leader()!;
    const before = net.committed.length;
    net.out(net.members[l]!.submit({ kind: 'touch', id: 'a' }, net.now));
    expect(net.until(() => net.committed.length > before, 200), 'an op commits on the two left').toBeGreaterThanOrEqual(0);
  });

  it('a whole fleet restarted re-forms (no admitted member is left: the restarted ones start it on their timer)', () => {
    const net = new Net(3);
    expect(net.until(() => net.leader() !== null, 2000)).toBeGreaterThanOrEqual(0);
    const epoch = net.members[0]!.epoch;
    for (const i of [0, 1, 2]) net.restart(i);
    expect(net.members.every((m) => m!.status === 'recovering')).toBe(true);
    expect(net.until(() => net.leader() !== null, 2000), 'the fleet re-forms').toBeGreaterThanOrEqual(0);
    expect(net.members[0]!.epoch).toBe(epoch + 1);
  });

  it('one admitted member with two restarted ones re-forms: the admitted one joins the vote it sees while it has no working leader', () => {
    const net = new Net(3);
    expect(net.until(() => net.leader() !== null, 2000)).toBeGreaterThanOrEqual(0);
    const epoch = net.members[0]!.epoch;
    const l = net.leader()!;
    const others = [0, 1, 2].filter((i) => i !== l);
    for (const i of others) net.restart(i);
    const took = net.until(() => net.leader() !== null && net.members.every((m) => m!.status === 'normal'), 3000);
    expect(took, `the fleet re-forms (${net.members.map((m) => `${m!.id}:${m!.status}/v${m!.view}/e${m!.epoch}`).join(' ')})`).toBeGreaterThanOrEqual(0);
    // one epoch for all three, later than before (a vote dropped when a working leader showed up costs an epoch)
    const epochs = new Set(net.members.map((m) => m!.epoch));
    expect(epochs.size).toBe(1);
    expect([...epochs][0]).toBeGreaterThan(epoch);
  });

  it('a restarted member whose Admit committed while it voted for a re-form is admitted once it asks to rejoin again', () => {
    const net = new Net(3);
    expect(net.until(() => net.leader() !== null, 2000)).toBeGreaterThanOrEqual(0);
    const l = net.leader()!;
    const r = [0, 1, 2].find((i) => i !== l)!;
    net.restart(r);
    // the leader's prepares and commits do not reach it: it becomes a learner from the catch-up and
    // its Admit commits on the other two, but it hears neither; past the re-form timeout, a learner
    // not admitted votes for a re-form, which the two members with a working leader do not join
    const seen = new Set<string>();
    net.lose = (h) => h.to === r && (h.type === 'prepare' || h.type === 'commit');
    expect(net.until(() => (seen.add(net.members[r]!.status), net.members[r]!.status === 'reform'), 1000), 'it votes').toBeGreaterThanOrEqual(0);
    expect(seen.has('learner')).toBe(true);
    // its Admit is committed on the leader
    const ld = net.members[l]!.durable;
    expect(Buffer.from(configAt(ld, ld.commit).admitted[r]!).equals(Buffer.from(net.members[r]!.incarnation))).toBe(true);
    // the network heals: the leader's next message ends the vote and leaves it recovering; it asks to rejoin
    net.lose = null;
    expect(net.until(() => net.members[r]!.status === 'recovering', 200), 'the vote ends').toBeGreaterThanOrEqual(0);
    const took = net.until(() => net.members[r]!.status === 'normal', 200);
    expect(took, `admitted (${net.members.map((m) => `${m!.id}:${m!.status}/v${m!.view}`).join(' ')})`).toBeGreaterThanOrEqual(0);
    const before = net.committed.length;
    net.out(net.members[l]!.submit({ kind: 'register', id: 'c', limit: 5 }, net.now));
    expect(net.until(() => net.committed.length > before, 200), 'the fleet commits').toBeGreaterThanOrEqual(0);
  });

  it('a follower that lost the last prepare catches up while the fleet is quiet (a commit beyond its log makes it ask)', () => {
    const net = new Net(3);
    expect(net.until(() => net.leader() !== null, 2000)).toBeGreaterThanOrEqual(0);
    const l = net.leader()!;
    const f = [0, 1, 2].find((i) => i !== l)!;
    // the entry commits on the leader and the other follower; this one never gets its prepare
    net.lose = (h) => h.to === f && h.type === 'prepare';
    const before = net.committed.length;
    net.out(net.members[l]!.submit({ kind: 'register', id: 'q', limit: 5 }, net.now));
    expect(net.until(() => net.committed.length > before, 200)).toBeGreaterThanOrEqual(0);
    expect(tipOf(net.members[f]!.durable).index).toBeLessThan(net.members[l]!.durable.commit);
    // no further entry: only the leader's commit heartbeats reach it
    net.lose = null;
    const took = net.until(() => net.members[f]!.durable.commit === net.members[l]!.durable.commit, 200);
    const fd = net.members[f]!.durable;
    expect(took, `follower commit ${fd.commit} tip ${tipOf(fd).index}, leader commit ${net.members[l]!.durable.commit}`).toBeGreaterThanOrEqual(0);
    expect(net.members[f]!.status).toBe('normal');
  });

  it('with every message slower than the view-change timeout for good, a view change still finishes: each one in a row waits twice the last', () => {
    const net = new Net(3);
    expect(net.until(() => net.leader() !== null, 2000)).toBeGreaterThanOrEqual(0);
    net.kill(net.leader()!);
    // a view change takes two message delays (doViewChange, startView): 2 x 30 > the 20-tick timeout
    net.delay = 30;
    const took = net.until(() => net.leader() !== null, 3000);
    expect(took, `a leader of the two left (${net.members.map((m) => (m ? `${m.id}:${m.status}/v${m.view}` : 'down')).join(' ')})`).toBeGreaterThanOrEqual(0);
    const l = net.leader()!;
    const before = net.committed.length;
    net.out(net.members[l]!.submit({ kind: 'register', id: 'b', limit: 5 }, net.now));
    expect(net.until(() => net.committed.length > before, 500), 'an op commits at that delay').toBeGreaterThanOrEqual(0);
  });
});
