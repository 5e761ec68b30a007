/**
 * The enclave's compact leaf table against a Map model, over random insert/update/delete
 * sequences that force growth and long probe runs (backward-shift deletion).
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { LeafTable, SegmentedLeafTable } from '../../../enclave/vault/leaf-table.ts';

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

describe.each([
  ['LeafTable', () => new LeafTable(16)],
  ['SegmentedLeafTable', () => new SegmentedLeafTable(16)],
] as const)('%s', (_, make) => {
  it('agrees with a Map model', () => {
    // Keys share their first 4 bytes often, so probe runs collide and wrap.
    const key = fc.tuple(fc.integer({ min: 0, max: 3 }), fc.uint8Array({ minLength: 12, maxLength: 12 })).map(([h, rest]) => Uint8Array.of(0, 0, 0, h, ...rest));
    const op = fc.oneof(
      fc.record({ k: fc.constant('set' as const), key, val: fc.uint8Array({ minLength: 16, maxLength: 16 }) }),
      fc.record({ k: fc.constant('del' as const), key }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 400 }), (ops) => {
        const t = make();
        const m = new Map<string, string>();
        const keys: Uint8Array[] = [];
        for (const o of ops) {
          keys.push(o.key);
          if (o.k === 'set') {
            t.set(o.key, o.val);
            m.set(hex(o.key), hex(o.val));
          } else {
            expect(t.delete(o.key)).toBe(m.delete(hex(o.key)));
          }
          expect(t.size).toBe(m.size);
        }
        for (const k of keys) {
          const v = t.get(k);
          expect(v ? hex(v) : undefined).toBe(m.get(hex(k)));
        }
      }),
      { numRuns: 200 },
    );
  });
});

describe('LeafTable sizes', () => {

  it('holds a million entries in at most 1.9 slots each (33 B a slot) when grown, 1.25 when sized ahead', () => {
    const fill = (t: LeafTable, n: number) => {
      const k = new Uint8Array(16);
      const dv = new DataView(k.buffer);
      for (let i = 0; i < n; i++) {
        dv.setUint32(0, Math.imul(i, 2654435761) >>> 0);
        dv.setUint32(4, i);
        t.set(k, k);
      }
      dv.setUint32(0, Math.imul(123456, 2654435761) >>> 0);
      dv.setUint32(4, 123456);
      expect(t.get(k)).toEqual(k);
    };
    const grown = new LeafTable();
    fill(grown, 1_000_000);
    expect(grown.size).toBe(1_000_000);
    expect(grown.capacity / grown.size).toBeLessThanOrEqual(1.9);
    expect(grown.bytes).toBeLessThan(1.9 * 33 * 1_000_000);
    const sized = LeafTable.forEntries(1_000_000);
    const cap = sized.capacity;
    fill(sized, 1_000_000);
    expect(sized.capacity).toBe(cap); // no growth step
    expect(cap / 1_000_000).toBeLessThan(1.26);
    expect(sized.bytes).toBeLessThan(42 * 1_000_000);
  });

  it('forEntries of zero or a few is a normal small table', () => {
    expect(LeafTable.forEntries(0).capacity).toBe(1024);
    expect(LeafTable.forEntries(10).capacity).toBe(1024);
  });

  it('a segmented table of a million entries grows in small steps at the same cost per entry', () => {
    const t = new SegmentedLeafTable();
    const k = new Uint8Array(16);
    const dv = new DataView(k.buffer);
    let biggestStep = 0;
    let cap = t.capacity;
    for (let i = 0; i < 1_000_000; i++) {
      dv.setUint32(0, Math.imul(i, 2654435761) >>> 0);
      dv.setUint32(4, Math.imul(i ^ 0x5bd1e995, 2246822519) >>> 0);
      t.set(k, k);
      if (t.capacity !== cap) {
        biggestStep = Math.max(biggestStep, t.capacity - cap);
        cap = t.capacity;
      }
    }
    expect(t.size).toBe(1_000_000);
    expect(t.capacity / t.size).toBeLessThanOrEqual(1.9);
    // one growth step adds a segment's half: well under 2% of the table (a single table: 50%)
    expect(biggestStep / t.capacity).toBeLessThan(0.02);
    dv.setUint32(0, Math.imul(77, 2654435761) >>> 0);
    dv.setUint32(4, Math.imul(77 ^ 0x5bd1e995, 2246822519) >>> 0);
    expect(t.get(k)).toEqual(k);
    expect(t.delete(k)).toBe(true);
    expect(t.get(k)).toBeUndefined();
    expect(t.size).toBe(999_999);
  });
});
