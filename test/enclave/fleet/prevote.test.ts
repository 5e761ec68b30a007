/**
 * Pre-vote (docs/fleet.md "View change"): a member that hears no leader asks the others before it
 * moves to a new view, and moves only once a majority of the member ids has heard no leader
 * either. A member cut off from a working fleet therefore keeps its view, and when the network
 * heals it follows the leader it lost instead of pulling the whole fleet into a view change (VR
 * Revisited §4.2 lets any member that times out move to v + 1; the others join any higher view
 * they hear of). A fleet whose leader is gone still changes view (liveness.test.ts), and so does
 * one whose leader hears no follower while they hear it (a link down one way at the leader): the
 * followers see nothing commit (view-change.ts `stalledFor`), even when the fleet is idle: the
 * leader, hearing fewer than a majority for its view-change wait, counts itself cut off (normal.ts
 * `cutOff`: its host takes no client operation) and puts an empty entry on the way. A leader cut
 * off both ways keeps its view and, healed, follows the new leader without moving the others' view,
 * or resumes where the others could not form a view without it.
 */
import { describe, expect, it } from 'vitest';
import { tipOf } from '../../../enclave/fleet/log.ts';
import { Net, TIMING } from '../../helpers/fleet-net.ts';

const states = (net: Net) => net.members.map((m) => (m ? `${m.id}:${m.status}/v${m.view}` : 'down')).join(' ');

function formed(): Net {
  const net = new Net(3);
  expect(net.until(() => net.leader() !== null, 2000), 'the fleet forms').toBeGreaterThanOrEqual(0);
  return net;
}

/** A leader among the members other than `l`, in a view above `view`, and an op committing under it: that leader. */
function replaced(net: Net, l: number, view: number, id: string): number {
  const took = net.until(() => net.members.some((m, i) => i !== l && m!.isLeader()), 500);
  expect(took, `a new leader among the followers (${states(net)})`).toBeGreaterThanOrEqual(0);
  const nl = net.members.findIndex((m, i) => i !== l && m!.isLeader());
  expect(net.members[nl]!.view).toBeGreaterThan(view);
  const before = net.committed.length;
  net.out(net.members[nl]!.submit({ kind: 'register', id, limit: 5 }, net.now));
  expect(net.until(() => net.committed.length > before, 200), `an op commits in the new view (${states(net)})`).toBeGreaterThanOrEqual(0);
  return nl;
}

describe('fleet pre-vote', () => {
  for (const cut of ['both ways', 'from the leader only'] as const) {
    it(`a follower cut off ${cut} for 20 view-change timeouts does not move the others' view, and follows the same leader once healed`, () => {
      const net = formed();
      const l = net.leader()!;
      const f = [0, 1, 2].find((i) => i !== l)!;
      const g = 3 - l - f;
      const view = net.members[l]!.view;
      // both ways: nothing to or from f; from the leader only: f and g still talk
      net.lose = cut === 'both ways' ? (h) => h.to === f || h.from === f : (h) => (h.to === f && h.from === l) || (h.to === l && h.from === f);
      const moved: string[] = [];
      const watch = () => {
        for (const i of [l, g]) {
          const m = net.members[i]!;
          if (m.status !== 'normal' || m.view !== view) moved.push(`tick ${net.now}: ${states(net)}`);
        }
      };
      for (let t = 0; t < 400; t++) {
        net.step();
        watch();
      }
      expect(moved.slice(0, 3), 'while f is cut off, the leader and the other follower keep their view').toEqual([]);
      // the fleet commits meanwhile on the two that hear each other
      const before = net.committed.length;
      net.out(net.members[l]!.submit({ kind: 'register', id: 'p', limit: 5 }, net.now));
      expect(net.until(() => (watch(), net.committed.length > before), 200), 'an op commits on the leader and g').toBeGreaterThanOrEqual(0);
      expect(net.members[f]!.view, `the cut-off member stays in the view it had (${states(net)})`).toBe(view);
      net.lose = null;
      const took = net.until(() => (watch(), net.members[f]!.status === 'normal' && net.members[f]!.durable.commit === net.members[l]!.durable.commit), 200);
      expect(took, `the cut-off member follows the leader again (${states(net)})`).toBeGreaterThanOrEqual(0);
      for (let t = 0; t < 200; t++) {
        net.step();
        watch();
      }
      expect(moved.slice(0, 3), 'once healed too, the leader and the other follower keep their view').toEqual([]);
      expect(net.leader()).toBe(l);
    });
  }

  it('a leader that hears no follower (every message to it lost) while they hear it: they see the commit point stand still behind their logs, change view, and the fleet commits', () => {
    const net = formed();
    const l = net.leader()!;
    const view = net.members[l]!.view;
    net.lose = (h) => h.to === l;
    // the leader takes an op: its prepare reaches both followers, their acks never reach it
    net.out(net.members[l]!.submit({ kind: 'register', id: 'd', limit: 5 }, net.now));
    replaced(net, l, view, 'e');
  });

  it('an idle fleet whose leader hears no follower while they hear it: the leader counts itself cut off and puts an empty entry on the way, its followers see it stand still, and the fleet commits under another', () => {
    const net = formed();
    for (let t = 0; t < 5 * TIMING.viewChangeTicks; t++) net.step(); // the formation's run of view changes over: the wait is one timeout
    const l = net.leader()!;
    const m = net.members[l]!;
    const view = m.view;
    const tip = tipOf(m.durable).index;
    net.lose = (h) => h.to === l;
    // nothing is outstanding, so its followers see nothing stand still: only the leader can tell
    const cut = net.until(() => m.cutOff, TIMING.viewChangeTicks + 2 * TIMING.resendTicks + 2);
    expect(cut, `the deaf leader counts itself cut off (${states(net)})`).toBeGreaterThanOrEqual(0);
    expect([m.isLeader(), tipOf(m.durable).index, m.durable.commit], 'it keeps its view, with an empty entry on the way').toEqual([true, tip + 1, tip]);
    replaced(net, l, view, 'i');
    net.lose = null;
    expect(net.until(() => net.members.every((x) => x!.status === 'normal' && x!.view === net.members[l]!.view) && net.leader() !== l, 300), `healed, it follows (${states(net)})`).toBeGreaterThanOrEqual(0);
    expect(m.cutOff, 'and counts itself cut off no more').toBe(false);
  });

  it('a fleet whose leader is cut off from both followers changes view (a majority heard no leader); the old leader counts itself cut off, keeps its view, and follows the others once healed', () => {
    const net = formed();
    for (let t = 0; t < 5 * TIMING.viewChangeTicks; t++) net.step();
    const l = net.leader()!;
    const m = net.members[l]!;
    const view = m.view;
    expect(m.cutOff, 'a leader that hears its followers is not cut off').toBe(false);
    net.lose = (h) => h.to === l || h.from === l;
    const cut = net.until(() => m.cutOff, TIMING.viewChangeTicks + 2 * TIMING.resendTicks + 2);
    expect(cut, `the cut-off leader counts itself cut off (${states(net)})`).toBeGreaterThanOrEqual(0);
    const nl = replaced(net, l, view, 'q');
    for (let t = 0; t < 400; t++) net.step();
    expect([m.isLeader(), m.view, m.cutOff], `cut off for 400 ticks, it keeps its view and counts itself cut off (${states(net)})`).toEqual([true, view, true]);
    const working = net.members[nl]!.view;
    // healed: the old leader follows the new view, and the others keep it
    net.lose = null;
    expect(net.until(() => m.status === 'normal' && m.view === net.members[nl]!.view, 300), states(net)).toBeGreaterThanOrEqual(0);
    expect([net.leader(), net.members[nl]!.view], 'the new leader keeps its view').toEqual([nl, working]);
  });

  it('a leader cut off from both followers while they can not form a view without it (one of them restarted, not admitted) keeps its view and resumes once healed', () => {
    const net = formed();
    for (let t = 0; t < 5 * TIMING.viewChangeTicks; t++) net.step();
    const l = net.leader()!;
    const view = net.members[l]!.view;
    const [f, g] = [0, 1, 2].filter((i) => i !== l) as [number, number];
    net.restart(g); // a new incarnation of g: it counts again only once the leader admits it
    net.lose = (h) => h.to === l || h.from === l;
    expect(net.until(() => net.members[l]!.cutOff, 200), states(net)).toBeGreaterThanOrEqual(0);
    for (let t = 0; t < 100; t++) net.step();
    expect(net.members[f]!.view === view || net.members[f]!.status !== 'normal', `f and g form no view without it (${states(net)})`).toBe(true);
    net.lose = null;
    expect(net.until(() => net.leader() !== null && net.members.every((x) => x!.status === 'normal'), 600), `healed, the fleet serves (${states(net)})`).toBeGreaterThanOrEqual(0);
    const before = net.committed.length;
    const lead = net.leader()!;
    net.out(net.members[lead]!.submit({ kind: 'register', id: 'z', limit: 5 }, net.now));
    expect(net.until(() => net.committed.length > before, 200), states(net)).toBeGreaterThanOrEqual(0);
  });
});
