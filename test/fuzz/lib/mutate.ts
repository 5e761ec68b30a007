/**
 * Fuzzing: input generation with fast-check. An input is raw bytes, a seed as is, or a seed put
 * through a short chain of mutations: bit flips (and, more often, flips and sets of the first
 * four bytes, where versions, tags, flags and selectors live), byte sets (interesting values),
 * integer and length-field edits (big-endian, 1/2/4/8 bytes: 0, 1, max, sign bit, the remaining length and
 * its neighbours), truncation, extension, insertion, deletion, repetition of a region, copies
 * within the input, and splices with another seed. Everything is drawn by fast-check from a
 * seed, so a run is reproducible.
 */
import fc from 'fast-check';
import { concat } from '../../../enclave/opaque/bytes.ts';

export type Mutation =
  | { op: 'flip'; pos: number; bit: number }
  | { op: 'head'; pos: number; bit: number; value: number }
  | { op: 'set'; pos: number; value: number }
  | { op: 'int'; pos: number; width: 1 | 2 | 4 | 8; kind: number; rand: number }
  | { op: 'truncate'; at: number }
  | { op: 'extend'; bytes: Uint8Array }
  | { op: 'insert'; pos: number; bytes: Uint8Array }
  | { op: 'delete'; pos: number; n: number }
  | { op: 'repeat'; pos: number; n: number; times: number }
  | { op: 'copy'; from: number; to: number; n: number }
  | { op: 'splice'; other: number; pos: number; otherPos: number };

const INTERESTING_BYTES = [0x00, 0x01, 0x02, 0x7f, 0x80, 0x81, 0xfe, 0xff, 0x10, 0x20, 0x40];

const mutationArb = (seeds: number): fc.Arbitrary<Mutation> =>
  fc.oneof(
    { weight: 5, arbitrary: fc.record({ op: fc.constant('flip' as const), pos: fc.nat(), bit: fc.nat({ max: 7 }) }) },
    // The first bytes (version, tag, flags, selectors) decide the most: flip or set one of them.
    { weight: 3, arbitrary: fc.record({ op: fc.constant('head' as const), pos: fc.nat({ max: 3 }), bit: fc.nat({ max: 8 }), value: fc.nat({ max: 255 }) }) },
    {
      weight: 4,
      arbitrary: fc.record({
        op: fc.constant('set' as const),
        pos: fc.nat(),
        value: fc.oneof(fc.constantFrom(...INTERESTING_BYTES), fc.nat({ max: 255 })),
      }),
    },
    {
      weight: 4,
      arbitrary: fc.record({
        op: fc.constant('int' as const),
        pos: fc.nat(),
        width: fc.constantFrom(1 as const, 2 as const, 4 as const, 8 as const),
        kind: fc.nat({ max: 8 }),
        rand: fc.nat(),
      }),
    },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('truncate' as const), at: fc.nat() }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('extend' as const), bytes: fc.uint8Array({ minLength: 1, maxLength: 64 }) }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('insert' as const), pos: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }) }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('delete' as const), pos: fc.nat(), n: fc.integer({ min: 1, max: 16 }) }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('repeat' as const), pos: fc.nat(), n: fc.integer({ min: 1, max: 64 }), times: fc.integer({ min: 1, max: 8 }) }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('copy' as const), from: fc.nat(), to: fc.nat(), n: fc.integer({ min: 1, max: 48 }) }) },
    { weight: seeds > 1 ? 2 : 0, arbitrary: fc.record({ op: fc.constant('splice' as const), other: fc.nat(), pos: fc.nat(), otherPos: fc.nat() }) },
  );

function intValue(kind: number, width: number, remaining: number, rand: number): bigint {
  const max = (1n << BigInt(8 * width)) - 1n;
  const r = BigInt(Math.max(0, remaining));
  const v = [0n, 1n, max, max - 1n, 1n << BigInt(8 * width - 1), r, r + 1n, r > 0n ? r - 1n : 0n, BigInt(rand)][kind] ?? 0n;
  return v & max;
}

/** Applies one mutation; `corpus` is for splices. */
export function applyMutation(input: Uint8Array, m: Mutation, corpus: readonly Uint8Array[], maxLen: number): Uint8Array {
  let b: Uint8Array = Uint8Array.from(input);
  const at = (p: number) => (b.length ? p % b.length : 0);
  switch (m.op) {
    case 'flip':
      if (b.length) b[at(m.pos)]! ^= 1 << m.bit;
      break;
    case 'head':
      if (b.length > m.pos) b[m.pos] = m.bit === 8 ? m.value : b[m.pos]! ^ (1 << m.bit);
      break;
    case 'set':
      if (b.length) b[at(m.pos)] = m.value;
      break;
    case 'int': {
      if (b.length < m.width) break;
      const pos = m.pos % (b.length - m.width + 1);
      let v = intValue(m.kind, m.width, b.length - pos - m.width, m.rand);
      for (let i = m.width - 1; i >= 0; i--, v >>= 8n) b[pos + i] = Number(v & 0xffn);
      break;
    }
    case 'truncate':
      b = b.slice(0, m.at % (b.length + 1));
      break;
    case 'extend':
      b = concat(b, m.bytes);
      break;
    case 'insert': {
      const p = m.pos % (b.length + 1);
      b = concat(b.subarray(0, p), m.bytes, b.subarray(p));
      break;
    }
    case 'delete': {
      const p = at(m.pos);
      b = concat(b.subarray(0, p), b.subarray(p + m.n));
      break;
    }
    case 'repeat': {
      if (!b.length) break;
      const p = at(m.pos);
      const region = b.subarray(p, p + m.n);
      const parts = [b.subarray(0, p + region.length)];
      for (let i = 0; i < m.times; i++) parts.push(region);
      parts.push(b.subarray(p + region.length));
      b = concat(...parts);
      break;
    }
    case 'copy': {
      if (!b.length) break;
      const from = at(m.from);
      const to = at(m.to);
      const chunk = b.slice(from, from + m.n);
      b.set(chunk.subarray(0, Math.max(0, b.length - to)), to);
      break;
    }
    case 'splice': {
      if (!corpus.length) break;
      const other = corpus[m.other % corpus.length]!;
      b = concat(b.subarray(0, m.pos % (b.length + 1)), other.subarray(m.otherPos % (other.length + 1)));
      break;
    }
  }
  return b.length > maxLen ? b.slice(0, maxLen) : b;
}

/** Raw bytes (1 in 10), a seed as is (1 in 10), or a mutated seed (8 in 10). */
export function inputArbitrary(corpus: readonly Uint8Array[], maxLen: number): fc.Arbitrary<Uint8Array> {
  const raw = fc.uint8Array({ maxLength: Math.min(maxLen, 512) });
  if (!corpus.length) return raw;
  const pick = fc.nat({ max: corpus.length - 1 });
  const asIs = pick.map((i) => Uint8Array.from(corpus[i]!));
  const mutated = fc
    .tuple(pick, fc.array(mutationArb(corpus.length), { minLength: 1, maxLength: 5 }))
    .map(([i, ms]) => ms.reduce((b, m) => applyMutation(b, m, corpus, maxLen), corpus[i]! as Uint8Array));
  return fc.oneof({ weight: 1, arbitrary: raw }, { weight: 1, arbitrary: asIs }, { weight: 8, arbitrary: mutated });
}

/** A 31-bit seed for chunk `k` of target `name` under run seed `seed` (FNV-1a). */
export function chunkSeed(seed: number, name: string, k: number): number {
  let h = 0x811c9dc5;
  for (const c of `${seed}/${name}/${k}`) {
    h ^= c.charCodeAt(0);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h & 0x7fffffff;
}

/** `n` inputs of chunk `k`, deterministic for (seed, name, k, corpus). */
export function sampleChunk(corpus: readonly Uint8Array[], maxLen: number, seed: number, name: string, k: number, n: number): Uint8Array[] {
  return fc.sample(inputArbitrary(corpus, maxLen), { seed: chunkSeed(seed, name, k), numRuns: n });
}
