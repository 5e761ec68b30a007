/**
 * A member's durable state and secrets as bytes (enclave/fleet/durable.ts): states a simulated
 * fleet made (a snapshot with records, entries, a re-form record) round-trip exactly, and the
 * decoder refuses every truncation, a trailing byte, another version, another member's file, a
 * count above its bound, a chain that does not follow its snapshot, and a commit beyond the tip,
 * each with a typed FleetFault.
 */
import { describe, expect, it } from 'vitest';
import { decodeDurable, decodeSecrets, encodeDurable, encodeSecrets, MAX_DURABLE_ENTRIES } from '../../../enclave/fleet/durable.ts';
import { FleetCode, FleetFault } from '../../../enclave/fleet/faults.ts';
import { compact, genesis, tipOf, type DurableState } from '../../../enclave/fleet/log.ts';
import { World } from '../../sim/world.ts';
import { ceremony, charterPlan } from '../../sim/ceremony.ts';
import { fuzzSecrets } from '../../fuzz/targets/fleet-wire.ts';

/** Durable states of a 3-member fleet that formed and committed registrations and charges. */
async function states(): Promise<DurableState[]> {
  const w = await World.create({ seed: 7, n: 3, faults: [] });
  let k = 0;
  for (let t = 0; t < 300; t++) {
    const lead = w.leaders()[0];
    if (lead && t % 3 === 0) {
      const id = `r${k % 5}`;
      w.submit(lead, k < 5 ? { kind: 'register', id, limit: 9 } : { kind: 'charge', id, session: k });
      k++;
    }
    w.step();
  }
  return w.procs.map((p) => p.disk.state);
}

function refused(fn: () => unknown, code?: number): FleetFault {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(FleetFault);
    if (code !== undefined) expect((e as FleetFault).code, (e as Error).message).toBe(code);
    return e as FleetFault;
  }
  throw new Error('not refused');
}

describe('durable state bytes', () => {
  it('round-trips states a fleet made: genesis, a snapshot with records, entries, a re-form record', async () => {
    const all = [genesis(1, fuzzSecrets(1).charter.identities), ...(await states())];
    const made = all.at(-1)!;
    expect(made.base.records.size).toBeGreaterThan(0);
    expect(made.entries.length).toBeGreaterThan(0);
    expect(made.reform).not.toBeNull();
    for (const d of all) {
      const b = encodeDurable(d);
      const back = decodeDurable(b, d.member, 3);
      expect(back).toEqual(d);
      expect(encodeDurable(back)).toEqual(b);
    }
  });

  it('refuses every truncation, a trailing byte, another version, another member, another fleet size', async () => {
    const d = (await states())[0]!;
    const b = encodeDurable(d);
    for (let n = 0; n < b.length; n++) refused(() => decodeDurable(b.subarray(0, n), d.member, 3));
    refused(() => decodeDurable(Uint8Array.of(...b, 0), d.member, 3), FleetCode.TrailingBytes);
    refused(() => decodeDurable(Uint8Array.of(2, ...b.subarray(1)), d.member, 3), FleetCode.WireVersion);
    refused(() => decodeDurable(b, (d.member + 1) % 3, 3), FleetCode.BadValue);
    refused(() => decodeDurable(b, d.member, 5), FleetCode.BadValue);
  });

  it('refuses a log that does not hold together: a gap in the chain, a commit past the tip, a count above its bound', async () => {
    const d = (await states())[0]!;
    const withTail = (await states())[0]!;
    expect(withTail.entries.length).toBeGreaterThan(1);
    const gap = { ...withTail, entries: withTail.entries.slice(1) };
    refused(() => decodeDurable(encodeDurable(gap), gap.member, 3), FleetCode.BadValue);
    const far = { ...d, commit: tipOf(d).index + 1 };
    const early = { ...compact(d, 0), commit: compact(d, 0).base.index - 1 };
    refused(() => decodeDurable(encodeDurable(early), d.member, 3), FleetCode.BadValue);
    refused(() => decodeDurable(encodeDurable(far), d.member, 3), FleetCode.BadValue);
    // the entries' count field set above the bound: refused before an item is read
    const b = encodeDurable(genesis(0, fuzzSecrets(0).charter.identities));
    const count = b.length - 4; // entries list(count u16) then reform list(count u16 = 0)
    const over = Uint8Array.from(b);
    new DataView(over.buffer).setUint16(count, MAX_DURABLE_ENTRIES + 1);
    refused(() => decodeDurable(over, 0, 3), FleetCode.TooMany);
  });
});

describe('member secrets bytes', () => {
  it('round-trip; refuse truncation, trailing bytes, another member, a seed not of the charter', async () => {
    const secrets = await ceremony(3, 11);
    for (const s of secrets) expect(decodeSecrets(encodeSecrets(s), s.member)).toEqual(s);
    const s = secrets[1]!;
    const b = encodeSecrets(s);
    for (let n = 0; n < b.length; n++) refused(() => decodeSecrets(b.subarray(0, n), 1));
    refused(() => decodeSecrets(Uint8Array.of(...b, 0), 1), FleetCode.TrailingBytes);
    refused(() => decodeSecrets(b, 2), FleetCode.BadValue);
    refused(() => decodeSecrets(encodeSecrets({ ...s, identitySeed: secrets[2]!.identitySeed }), 1), FleetCode.NotInCharter);
  });

  it('a member a charter change added: its changed charter round-trips (version 2); refused when the changed charter does not name it or drops a founding identity', async () => {
    const founding = await ceremony(3, 11);
    const plan = await charterPlan(founding, 11, 1);
    const j = plan[0]!.joined[0]!;
    const b = encodeSecrets(j);
    expect(b[0]).toBe(2);
    expect(decodeSecrets(b, j.member)).toEqual(j);
    for (let n = 0; n < b.length; n++) refused(() => decodeSecrets(b.subarray(0, n), j.member));
    refused(() => decodeSecrets(Uint8Array.of(...b, 0), j.member), FleetCode.TrailingBytes);
    const ids = j.joined!.identities;
    // the joiner's identity elsewhere: not this member's
    refused(() => decodeSecrets(encodeSecrets({ ...j, joined: { serial: 1, identities: [...ids.slice(0, 3), new Uint8Array(32).fill(5)] } }), j.member), FleetCode.NotInCharter);
    // a founding member's identity swapped: not a charter of this fleet
    refused(() => decodeSecrets(encodeSecrets({ ...j, joined: { serial: 1, identities: [ids[1]!, ids[0]!, ids[2]!, ids[3]!] } }), j.member), FleetCode.BadValue);
    refused(() => decodeSecrets(encodeSecrets({ ...j, joined: { serial: 0, identities: ids } }), j.member), FleetCode.BadValue);
  });
});
