/**
 * host/vault/overlap.ts: which queued operations may go to the device while a batch is prepared
 * (staged behind it: none on a record of that batch) and once it is durable (any, in order).
 */
import { describe, expect, it } from 'vitest';
import { MAX_BATCH_OPS } from '../../../enclave/api/messages.ts';
import { planNext, planStaged } from '../../../host/vault/overlap.ts';

const op = (key: string, n: number) => ({ key, n });
const names = (ops: { key: string; n: number }[]) => ops.map((o) => `${o.key}${o.n}`);

describe('planStaged (rule 1: staged behind a prepared batch)', () => {
  it('takes the ops whose record the prepared batch does not name, in queue order; the others keep their places', () => {
    const prepared = [op('a', 0), op('b', 0)];
    const queue = [op('a', 1), op('c', 1), op('b', 1), op('d', 1), op('c', 2), op('a', 2)];
    const { batch, rest } = planStaged(prepared, queue);
    expect(names(batch)).toEqual(['c1', 'd1', 'c2']);
    expect(names(rest)).toEqual(['a1', 'b1', 'a2']);
  });

  it('takes nothing when every queued op names a record of the prepared batch', () => {
    const { batch, rest } = planStaged([op('a', 0)], [op('a', 1), op('a', 2)]);
    expect(batch).toEqual([]);
    expect(names(rest)).toEqual(['a1', 'a2']);
  });

  it('takes at most MAX_BATCH_OPS (or `max`); what is left over keeps its order behind the refused ones', () => {
    const queue = Array.from({ length: MAX_BATCH_OPS + 3 }, (_, i) => op(`r${i}`, 0));
    const full = planStaged([], queue);
    expect(full.batch).toHaveLength(MAX_BATCH_OPS);
    expect(full.rest.map((o) => o.key)).toEqual(['r256', 'r257', 'r258']);
    const small = planStaged([op('r1', 9)], queue.slice(0, 6), 3);
    expect(small.batch.map((o) => o.key)).toEqual(['r0', 'r2', 'r3']);
    expect(small.rest.map((o) => o.key)).toEqual(['r1', 'r4', 'r5']);
  });

  it('with `half`, takes the first half (rounded up) of the ops that may go, within `max`; the rest keeps its order', () => {
    const prepared = [op('a', 0)];
    const queue = [op('a', 1), op('b', 1), op('c', 1), op('d', 1), op('e', 1), op('f', 1)];
    const h = planStaged(prepared, queue, MAX_BATCH_OPS, true);
    expect(names(h.batch)).toEqual(['b1', 'c1', 'd1']); // 5 may go: 3 of them
    expect(names(h.rest)).toEqual(['a1', 'e1', 'f1']);
    expect(names(planStaged(prepared, queue, 4, true).batch)).toEqual(['b1', 'c1']); // half of the 4 `max` allows
    expect(names(planStaged(prepared, [op('a', 1), op('b', 1)], MAX_BATCH_OPS, true).batch)).toEqual(['b1']);
    expect(planStaged(prepared, [op('a', 1)], MAX_BATCH_OPS, true).batch).toEqual([]);
  });

  it('every op lands in exactly one of batch and rest, and no batch op names a prepared record', () => {
    let seed = 7;
    const rand = (n: number) => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % n;
    for (let round = 0; round < 200; round++) {
      const prepared = Array.from({ length: rand(6) }, (_, i) => op(`k${rand(10)}`, i));
      const queue = Array.from({ length: rand(30) }, (_, i) => op(`k${rand(10)}`, i));
      const max = 1 + rand(8);
      const { batch, rest } = planStaged(prepared, queue, max);
      expect(batch.length).toBeLessThanOrEqual(max);
      expect([...batch, ...rest].sort((x, y) => x.n - y.n)).toEqual([...queue].sort((x, y) => x.n - y.n));
      const busy = new Set(prepared.map((p) => p.key));
      expect(batch.some((o) => busy.has(o.key))).toBe(false);
      // queue order kept within each part
      expect(batch.map((o) => queue.indexOf(o))).toEqual([...batch.map((o) => queue.indexOf(o))].sort((x, y) => x - y));
      expect(rest.map((o) => queue.indexOf(o))).toEqual([...rest.map((o) => queue.indexOf(o))].sort((x, y) => x - y));
    }
  });
});

describe('planNext (rule 3: once the batch ahead is durable, or from an idle engine)', () => {
  it('takes the first ops whatever their records, at most `max`', () => {
    const queue = [op('a', 1), op('a', 2), op('b', 1), op('c', 1)];
    expect(names(planNext(queue, 3).batch)).toEqual(['a1', 'a2', 'b1']);
    expect(names(planNext(queue, 3).rest)).toEqual(['c1']);
    expect(planNext(queue).batch).toHaveLength(4);
  });
});
