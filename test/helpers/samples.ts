/**
 * Deterministic sample values for any codec schema: every field present, lists with one item,
 * byte fields filled with a position pattern. Used by the golden-file and malformed-input tests.
 */
import type { Kind, Schema } from '../../enclave/api/codec.ts';

function sampleKind(kind: Kind, seed: number): unknown {
  switch (kind.k) {
    case 'u8':
      return (seed * 7 + 3) & 0xff;
    case 'u16':
      return (seed * 257 + 5) & 0xffff;
    case 'u32':
      return (seed * 65537 + 11) >>> 0;
    case 'u53':
      return seed * 1_000_003 + 13;
    case 'fixed':
      return Uint8Array.from({ length: kind.len }, (_, i) => (i + seed) % 251);
    case 'bytes': {
      const len = Math.min(kind.max, Math.max(kind.min, 3));
      return Uint8Array.from({ length: len }, (_, i) => (i * 3 + seed) % 251);
    }
    case 'list':
      return kind.max > 0 ? [sampleFields(kind.of, seed + 1)] : [];
    case 'opt':
      return sampleKind(kind.of, seed + 2);
  }
}

export function sampleFields(schema: Schema, seed = 1): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  schema.forEach(([name, kind], i) => (out[name] = sampleKind(kind, seed + i)));
  return out;
}
