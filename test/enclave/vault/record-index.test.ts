/**
 * The rollback index's loader (enclave/vault/record-index.ts IndexLoader): a row streamed twice
 * (live or not) is a typed DuplicateRecordInLoad fault, a row of another partition an
 * IndexMismatch, and the index it builds matches the count and sum of the live rows only.
 */
import { expect, it } from 'vitest';
import { EnclaveFault, Handling, Integrity } from '../../../enclave/api/codes.ts';
import { nodeHash } from '../../../enclave/opaque/hash-node.ts';
import { IndexLoader, RecordIndex } from '../../../enclave/vault/record-index.ts';
import { HEADER_LEN, KIND_RECORD, KIND_TOMBSTONE, SEALED_FORMAT, SEALED_MAGIC } from '../../../enclave/vault/record.ts';

const h = nodeHash('SHA-256');
const key = new Uint8Array(32).fill(3);
const te = new TextEncoder();

function blob(kind: number, version: number): Uint8Array {
  const b = new Uint8Array(HEADER_LEN + 16 + 8);
  b.set(SEALED_MAGIC, 0);
  b[4] = SEALED_FORMAT;
  b[5] = kind;
  b[6] = 1;
  new DataView(b.buffer).setUint32(19, version);
  b.fill(version & 0xff, HEADER_LEN);
  return b;
}

function codeOf(fn: () => void): number {
  try {
    fn();
  } catch (e) {
    if (e instanceof EnclaveFault) return e.code;
    throw e;
  }
  throw new Error('expected a fault');
}

it('refuses a row streamed twice, live or tombstone, and a row of another partition', () => {
  const all = () => true;
  for (const [first, second] of [
    [KIND_RECORD, KIND_RECORD],
    [KIND_TOMBSTONE, KIND_TOMBSTONE],
    [KIND_RECORD, KIND_TOMBSTONE],
    [KIND_TOMBSTONE, KIND_RECORD],
  ] as const) {
    const l = new IndexLoader(key, h, all);
    l.add(te.encode('a'), blob(first, 1));
    l.add(te.encode('b'), blob(KIND_RECORD, 1));
    expect(codeOf(() => l.add(te.encode('a'), blob(second, 2)))).toBe(Handling.DuplicateRecordInLoad);
  }
  const l = new IndexLoader(key, h, (id) => id[0] !== 0x7a);
  expect(codeOf(() => l.add(te.encode('z'), blob(KIND_RECORD, 1)))).toBe(Integrity.IndexMismatch);
});

it('the loaded index holds the live rows only, and matches an index built record by record', () => {
  const l = new IndexLoader(key, h, () => true);
  const ref = new RecordIndex(key, h);
  for (let i = 0; i < 3000; i++) {
    const id = te.encode(`user-${i}`);
    const b = blob(i % 7 === 0 ? KIND_TOMBSTONE : KIND_RECORD, i);
    l.add(id, b);
    if (i % 7 !== 0) ref.set(id, ref.leafOf(id, b));
  }
  expect(ref.count).toBe(3000 - Math.ceil(3000 / 7));
  const { index, rolledForward } = l.finish({ count: ref.count, indexSum: ref.sum }, null);
  expect(rolledForward).toBe(false);
  expect(index.count).toBe(ref.count);
  expect(codeOf(() => new IndexLoader(key, h, () => true).finish({ count: ref.count, indexSum: ref.sum }, null))).toBe(Integrity.RollbackDetected);
});
