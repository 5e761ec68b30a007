/**
 * A member whose vault applies nothing from the log (it is behind, waiting for a catch-up by stored
 * rows that does not come) keeps at most MAX_UNAPPLIED_ENTRIES committed entries for it: past that,
 * compaction folds them unapplied (the vault is then behind: fleet-seat.ts), and the member's state
 * always fits its state file (durable.ts MAX_DURABLE_ENTRIES). Before the bound such a member kept
 * every entry the fleet committed until encodeDurable refused its state and the member process
 * died (a CI run of test/host/fleet/charter.test.ts, 2026-12-06). Three members on the test's network
 * (test/helpers/fleet-net.ts).
 */
import { expect, it } from 'vitest';
import { MAX_UNAPPLIED_ENTRIES } from '../../../enclave/fleet/core.ts';
import { MAX_DURABLE_ENTRIES, encodeDurable } from '../../../enclave/fleet/durable.ts';
import { Net } from '../../helpers/fleet-net.ts';

it('a member that applies nothing keeps a bounded log: its state always encodes, the others keep their few entries', () => {
  const net = new Net(3);
  const all = () => net.members.map((m) => m!);
  net.until(() => net.leader() !== null && all().every((m) => m.status === 'normal'), 2000);
  const li = net.leader();
  expect(li, 'the fleet forms').not.toBeNull();
  const l = net.members[li!]!;
  const lag = [0, 1, 2].find((i) => i !== li)!;
  // every payload applied at once, except on the lagger, whose vault applies none
  all().forEach((m, i) => m.setApplied(i === lag ? () => false : () => true));

  const batches = MAX_UNAPPLIED_ENTRIES + 300;
  let mostKept = 0;
  for (let i = 0; i < batches; i++) {
    const before = l.durable.commit;
    const r = l.submitBatch([{ kind: 'register', id: `r${i}`, limit: 5 }], Uint8Array.of(1, i & 0xff, i >> 8), net.now);
    expect(typeof r.index, `batch ${i} taken: ${String(r.index)}`).toBe('number');
    net.out(r.out);
    net.until(() => l.durable.commit > before, 50);
    expect(l.durable.commit, `batch ${i} commits`).toBeGreaterThan(before);
    mostKept = Math.max(mostKept, net.disks[lag]!.entries.length);
  }
  for (let t = 0; t < 20; t++) net.step();
  const d = net.disks[lag]!;
  // bounded: never more than the unapplied bound and the entries not committed yet
  expect(mostKept, 'entries the lagger kept at most').toBeLessThanOrEqual(MAX_UNAPPLIED_ENTRIES + 8);
  expect(mostKept, 'the lagger kept entries for its vault up to the bound').toBeGreaterThanOrEqual(MAX_UNAPPLIED_ENTRIES);
  expect(d.base.index, 'its snapshot moved past entries its vault never applied').toBeGreaterThan(batches - MAX_UNAPPLIED_ENTRIES - 10);
  expect(MAX_UNAPPLIED_ENTRIES).toBeLessThan(MAX_DURABLE_ENTRIES);
  expect(() => encodeDurable(d)).not.toThrow();
  // members whose vault applies keep only the few entries behind the commit point
  for (const i of [0, 1, 2].filter((x) => x !== lag)) expect(net.disks[i]!.entries.length).toBeLessThan(40);
  expect(net.members[lag]!.status).toBe('normal');
});
