/**
 * A member whose vault applies nothing from the log (it is behind, waiting for a catch-up by stored
 * rows that does not come) keeps at most MAX_UNAPPLIED_ENTRIES committed entries for it: past that,
 * compaction folds them unapplied (the vault is then behind: fleet-seat.ts), and the member's state
 * always fits its state file (durable.ts MAX_DURABLE_ENTRIES). Before the bound such a member kept
 * every entry the fleet committed until encodeDurable refused its state and the member process
 * died (a CI run of test/host/fleet/charter.test.ts, 2026-12-06). Three members on a network this
 * file drives tick by tick, as in liveness.test.ts.
 */
import { randomBytes } from 'node:crypto';
import { expect, it } from 'vitest';
import { MAX_UNAPPLIED_ENTRIES } from '../../../enclave/fleet/core.ts';
import { MAX_DURABLE_ENTRIES, encodeDurable } from '../../../enclave/fleet/durable.ts';
import { genesis, type DurableState } from '../../../enclave/fleet/log.ts';
import { Member, type Output } from '../../../enclave/fleet/member.ts';
import { readHeader } from '../../../enclave/fleet/wire.ts';
import { fuzzSecrets } from '../../fuzz/targets/fleet-wire.ts';

const TIMING = { viewChangeTicks: 20, reformTicks: 60, resendTicks: 2 } as const;

it('a member that applies nothing keeps a bounded log: its state always encodes, the others keep their few entries', () => {
  const n = 3;
  const disks: DurableState[] = Array.from({ length: n }, (_, i) => genesis(i, fuzzSecrets(0).charter.identities));
  let now = 0;
  let flight: { at: number; to: number; msg: Uint8Array }[] = [];
  const members = disks.map(
    (d, i) => new Member(d, { random: (k) => new Uint8Array(randomBytes(k)), persist: (s) => (disks[i] = s) }, { n, secrets: fuzzSecrets(i), ...TIMING }, now),
  );
  const out = (o: Output) => {
    for (const msg of o.send) flight.push({ at: now + 1, to: readHeader(msg).to, msg });
  };
  const step = () => {
    now++;
    const due = flight.filter((f) => f.at <= now);
    flight = flight.filter((f) => f.at > now);
    for (const f of due) out(members[f.to]!.receive(f.msg, now));
    for (const m of members) out(m.tick(now));
  };
  const leader = () => members.find((m) => m.status === 'normal' && m.isLeader()) ?? null;
  for (let t = 0; t < 2000 && !(leader() && members.every((m) => m.status === 'normal')); t++) step();
  const l = leader();
  expect(l, 'the fleet forms').not.toBeNull();
  const lagger = members.find((m) => m !== l)!;
  // every payload applied at once, except on the lagger, whose vault applies none
  for (const m of members) m.setApplied(m === lagger ? () => false : () => true);

  const batches = MAX_UNAPPLIED_ENTRIES + 300;
  let mostKept = 0;
  for (let i = 0; i < batches; i++) {
    const before = l!.durable.commit;
    const r = l!.submitBatch([{ kind: 'register', id: `r${i}`, limit: 5 }], Uint8Array.of(1, i & 0xff, i >> 8), now);
    expect(typeof r.index, `batch ${i} taken: ${String(r.index)}`).toBe('number');
    out(r.out);
    for (let t = 0; t < 50 && l!.durable.commit === before; t++) step();
    expect(l!.durable.commit, `batch ${i} commits`).toBeGreaterThan(before);
    mostKept = Math.max(mostKept, disks[members.indexOf(lagger)]!.entries.length);
  }
  for (let t = 0; t < 20; t++) step();
  const lag = disks[members.indexOf(lagger)]!;
  // bounded: never more than the unapplied bound and the entries not committed yet
  expect(mostKept, 'entries the lagger kept at most').toBeLessThanOrEqual(MAX_UNAPPLIED_ENTRIES + 8);
  expect(mostKept, 'the lagger kept entries for its vault up to the bound').toBeGreaterThanOrEqual(MAX_UNAPPLIED_ENTRIES);
  expect(lag.base.index, 'its snapshot moved past entries its vault never applied').toBeGreaterThan(batches - MAX_UNAPPLIED_ENTRIES - 10);
  expect(MAX_UNAPPLIED_ENTRIES).toBeLessThan(MAX_DURABLE_ENTRIES);
  expect(() => encodeDurable(lag)).not.toThrow();
  // members whose vault applies keep only the few entries behind the commit point
  for (const m of members.filter((x) => x !== lagger)) expect(disks[members.indexOf(m)]!.entries.length).toBeLessThan(40);
  expect(lagger.status).toBe('normal');
});
