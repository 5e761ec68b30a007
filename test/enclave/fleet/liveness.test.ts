/**
 * Liveness of the fleet core when a majority of admitted members runs but the network (or the
 * machine) is slow for a while (docs/fleet.md "View change", "Re-form"): a whole-fleet re-form
 * needs every one of the N ids, so a member that can still form a view with a majority must not
 * fall into one on a timer. Three members on a network this file drives tick by tick; one is
 * killed; for a stretch every message takes longer than the re-form timeout; afterwards the two
 * left must elect a leader and commit again without the third. Safety is the simulation's
 * (test/sim); this checks that the fleet comes back, and that the re-forms a fleet needs still
 * happen: a whole fleet restarted, and one admitted member left with two restarted ones.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { Member, type Output } from '../../../enclave/fleet/member.ts';
import { genesis, type DurableState } from '../../../enclave/fleet/log.ts';
import { readHeader } from '../../../enclave/fleet/wire.ts';
import { fuzzSecrets } from '../../fuzz/targets/fleet-wire.ts';

/** The member processes' timing (host/fleet/member-host.ts MEMBER_TIMING). */
const TIMING = { viewChangeTicks: 20, reformTicks: 60, resendTicks: 2 } as const;

class Net {
  now = 0;
  delay = 1;
  readonly up: boolean[];
  readonly disks: DurableState[];
  readonly members: (Member | null)[];
  private flight: { at: number; to: number; msg: Uint8Array }[] = [];
  readonly committed: number[] = [];

  constructor(readonly n: number) {
    this.up = new Array<boolean>(n).fill(true);
    this.disks = Array.from({ length: n }, (_, i) => genesis(i, fuzzSecrets(0).charter.identities));
    this.members = this.disks.map((d, i) => this.boot(i, d));
  }

  private boot(i: number, d: DurableState): Member {
    return new Member(d, { random: (k) => new Uint8Array(randomBytes(k)), persist: (s) => (this.disks[i] = s) }, { n: this.n, secrets: fuzzSecrets(i), ...TIMING }, this.now);
  }

  private out(o: Output): void {
    for (const msg of o.send) this.flight.push({ at: this.now + this.delay, to: readHeader(msg).to, msg });
    for (const a of o.answers) if (a.ok) this.committed.push(a.index);
  }

  /** A new incarnation of member `i` from its durable state (a process restart). */
  restart(i: number): void {
    this.up[i] = true;
    this.members[i] = this.boot(i, this.disks[i]!);
  }

  kill(i: number): void {
    this.up[i] = false;
    this.members[i] = null;
  }

  step(): void {
    this.now++;
    const due = this.flight.filter((f) => f.at <= this.now);
    this.flight = this.flight.filter((f) => f.at > this.now);
    for (const f of due) {
      const m = this.members[f.to];
      if (m) this.out(m.receive(f.msg, this.now));
    }
    for (const m of this.members) if (m) this.out(m.tick(this.now));
  }

  /** The member that leads a normal view followed by a majority of the running members, or null. */
  leader(): number | null {
    const normal = this.members.filter((m): m is Member => m !== null && m.status === 'normal');
    for (const m of normal) if (m.isLeader() && normal.filter((o) => o.view === m.view && o.epoch === m.epoch).length > this.n / 2) return m.id;
    return null;
  }

  /** Steps until `cond` holds; the ticks it took, or -1 after `max`. */
  until(cond: () => boolean, max: number): number {
    for (let t = 0; t < max; t++) {
      if (cond()) return t;
      this.step();
    }
    return cond() ? max : -1;
  }
}

describe('fleet liveness with a majority running', () => {
  it('after a stretch where every message is slower than the re-form timeout, the two members left elect a leader and commit without the third', () => {
    const net = new Net(3);
    expect(net.until(() => net.leader() !== null, 2000), 'the fleet forms').toBeGreaterThanOrEqual(0);
    // positive control: a registration commits while all three run
    const first = net.leader()!;
    net['out'](net.members[first]!.submit({ kind: 'register', id: 'a', limit: 5 }, net.now));
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
    net['out'](net.members[l]!.submit({ kind: 'touch', id: 'a' }, net.now));
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
    net['out'](net.members[l]!.submit({ kind: 'register', id: 'b', limit: 5 }, net.now));
    expect(net.until(() => net.committed.length > before, 500), 'an op commits at that delay').toBeGreaterThanOrEqual(0);
  });
});
