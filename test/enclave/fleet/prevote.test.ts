/**
 * Pre-vote (docs/fleet.md "View change"): a member that hears no leader asks the others before it
 * moves to a new view, and moves only once a majority of the member ids has heard no leader
 * either. A member cut off from a working fleet therefore keeps its view, and when the network
 * heals it follows the leader it lost instead of pulling the whole fleet into a view change (VR
 * Revisited §4.2 lets any member that times out move to v + 1; the others join any higher view
 * they hear of). A fleet whose leader is gone still changes view (liveness.test.ts), and so does
 * one whose leader hears no follower while they hear it (a link down one way at the leader): the
 * followers see nothing commit (view-change.ts `stalledFor`).
 */
import { describe, expect, it } from 'vitest';
import { Net } from '../../helpers/fleet-net.ts';

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
    // an idle fleet whose leader is deaf has nothing standing still: no view change is needed, and none is made
    const idle = formed();
    const il = idle.leader()!;
    idle.lose = (h) => h.to === il;
    for (let t = 0; t < 400; t++) idle.step();
    expect(idle.leader(), `an idle fleet keeps its leader (${states(idle)})`).toBe(il);
  });

  it('a fleet whose leader is cut off from both followers changes view (a majority heard no leader)', () => {
    const net = formed();
    const l = net.leader()!;
    const view = net.members[l]!.view;
    net.lose = (h) => h.to === l || h.from === l;
    const nl = replaced(net, l, view, 'q');
    // healed: the old leader follows the new view
    net.lose = null;
    expect(net.until(() => net.members[l]!.status === 'normal' && net.members[l]!.view === net.members[nl]!.view, 300), states(net)).toBeGreaterThanOrEqual(0);
  });
});
