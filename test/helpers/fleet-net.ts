/**
 * Fleet members (enclave/fleet/member.ts) on a network a test drives tick by tick: each message
 * takes `delay` ticks, members can be killed and restarted from their durable state. Used by
 * test/enclave/fleet/liveness.test.ts and log-bound.test.ts.
 */
import { randomBytes } from 'node:crypto';
import { Member, type Output } from '../../enclave/fleet/member.ts';
import { genesis, type DurableState } from '../../enclave/fleet/log.ts';
import { readHeader, type Header } from '../../enclave/fleet/wire.ts';
import { fuzzSecrets } from '../fuzz/targets/fleet-wire.ts';

/** The member processes' timing (host/fleet/member-host.ts MEMBER_TIMING). */
export const TIMING = { viewChangeTicks: 20, reformTicks: 60, resendTicks: 2 } as const;

export class Net {
  now = 0;
  delay = 1;
  readonly up: boolean[];
  readonly disks: DurableState[];
  readonly members: (Member | null)[];
  private flight: { at: number; to: number; msg: Uint8Array }[] = [];
  readonly committed: number[] = [];
  /** Messages the network loses while it returns true (null: none). */
  lose: ((h: Header) => boolean) | null = null;
  /** Told of every message a member sends, before `lose` (null: nobody). */
  watch: ((h: Header) => void) | null = null;

  constructor(readonly n: number) {
    this.up = new Array<boolean>(n).fill(true);
    this.disks = Array.from({ length: n }, (_, i) => genesis(i, fuzzSecrets(0).charter.identities));
    this.members = this.disks.map((d, i) => this.boot(i, d));
  }

  private boot(i: number, d: DurableState): Member {
    return new Member(d, { random: (k) => new Uint8Array(randomBytes(k)), persist: (s) => (this.disks[i] = s) }, { n: this.n, secrets: fuzzSecrets(i), ...TIMING }, this.now);
  }

  /** Puts a member's output on the network (its messages, its answers). */
  out(o: Output): void {
    for (const msg of o.send) {
      const h = readHeader(msg);
      this.watch?.(h);
      if (!this.lose?.(h)) this.flight.push({ at: this.now + this.delay, to: h.to, msg });
    }
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
