/**
 * The decoders of what reaches a member's device from the operator through its host
 * (hsm/fleet/charters.ts): `parseChange` (POST /fleet/charter), `parseReformWithout` (POST
 * /fleet/reform) and `parseJoinFile` (a new member's join.json). Any JSON value, and any mutation of
 * a valid one, is either read into fields that keep their rules or refused with a
 * ChangeFormatError: never another exception, never a field out of range.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ChangeFormatError, parseChange, parseJoinFile, parseReformWithout } from '../../hsm/fleet/charters.ts';

const RUNS = 3000;
const hex = (n: number) => fc.uint8Array({ minLength: n, maxLength: n }).map((b) => Buffer.from(b).toString('hex'));
/** Values near the valid ones: small integers, ids, hex of the right and wrong lengths, nulls, odd types. */
const near = fc.oneof(
  fc.integer({ min: -2, max: 9 }),
  fc.constantFrom(0.5, -0, 2 ** 53, Number.NaN, '', '0', null, true, [], {}),
  hex(16),
  hex(32),
  hex(31),
  fc.string({ maxLength: 40 }),
);
const value = fc.oneof(near, fc.array(near, { maxLength: 8 }), fc.array(fc.record({ member: near, incarnation: near }, { requiredKeys: [] }), { maxLength: 8 }), fc.jsonValue({ maxDepth: 3 }));

function only<T>(fn: () => T): T | null {
  try {
    return fn();
  } catch (e) {
    if (e instanceof ChangeFormatError) return null;
    throw e;
  }
}

describe('the operator approval decoders', () => {
  it('parseReformWithout: any input is read within its rules or refused with a ChangeFormatError', () => {
    fc.assert(
      fc.property(value, value, value, (e, w, k) => {
        const r = only(() => parseReformWithout(e, w, k));
        if (r === null) return;
        expect(Number.isSafeInteger(r.fromEpoch) && r.fromEpoch >= 0).toBe(true);
        expect(r.without.length >= 1 && r.without.length <= 6 && new Set(r.without).size === r.without.length && r.without.every((m) => Number.isInteger(m) && m >= 0 && m <= 6)).toBe(true);
        expect(r.kept.size >= 1 && [...r.kept].every(([m, inc]) => Number.isInteger(m) && m >= 0 && m <= 6 && !r.without.includes(m) && inc.length === 16)).toBe(true);
      }),
      { numRuns: RUNS },
    );
  });

  it('parseReformWithout: every one-field mutation of a valid approval is refused or still valid', () => {
    const valid = { fromEpoch: 3, without: [2], kept: [{ member: 0, incarnation: '00'.repeat(16) }, { member: 1, incarnation: 'ab'.repeat(16) }] };
    expect(parseReformWithout(valid.fromEpoch, valid.without, valid.kept).kept.size).toBe(2);
    const seen = { read: 0, refused: 0 };
    fc.assert(
      fc.property(fc.constantFrom('fromEpoch', 'without', 'kept'), value, (field, v) => {
        const o = { ...valid, [field]: v } as Record<string, unknown>;
        const r = only(() => parseReformWithout(o.fromEpoch, o.without, o.kept));
        seen[r ? 'read' : 'refused']++;
        if (r) expect(r.kept.size >= 1 && r.without.length >= 1 && [...r.kept.keys()].every((m) => !r.without.includes(m))).toBe(true);
      }),
      { numRuns: RUNS },
    );
    expect(seen.read, 'some mutations stay valid (the property is not only refusals)').toBeGreaterThan(0);
    expect(seen.refused).toBeGreaterThan(0);
  });

  it('parseChange and parseJoinFile: any input is read within their rules or refused with a ChangeFormatError', () => {
    fc.assert(
      fc.property(value, value, value, value, (serial, identities, granter, grant) => {
        const c = only(() => parseChange({ serial, identities }));
        if (c) expect(Number.isInteger(c.serial) && c.serial >= 1 && c.identities.length >= 1 && c.identities.length <= 7 && c.identities.every((k) => k === null || k.length === 32)).toBe(true);
        const j = only(() => parseJoinFile(JSON.stringify({ granter, serial, identities, grant }), 'join.json'));
        if (j) expect(Number.isInteger(j.granter) && j.granter >= 0 && j.granter <= 6 && j.grant.length >= 1).toBe(true);
      }),
      { numRuns: RUNS },
    );
    expect(only(() => parseJoinFile('{', 'join.json'))).toBeNull();
  });
});
