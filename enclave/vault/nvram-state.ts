/**
 * The enclave's persistent state in its NVRAM region: the only state the host can not roll back.
 *
 * Layout (fixed size, encoded with the API codec, 154 bytes):
 *   magic "BKVN" | layout version | flags | epoch | record count | index sum (32) |
 *   audit sequence | audit head MAC (32) | operator key hash (32) | key check (16)
 * `index sum` is the keyed additive set hash of every live sealed record of this partition
 * (see rollback.ts); `epoch` is the last batch made durable; `key check` ties the NVRAM to the
 * token keys it was provisioned with. Written once per committed batch.
 */
import { decodeFields, encodeFields, fixed, u32, u53, u8 } from '../api/codec.ts';
import { EnclaveFault, Platform as PlatformCodes } from '../api/codes.ts';

export const NVRAM_MAGIC = Uint8Array.of(0x42, 0x4b, 0x56, 0x4e); // "BKVN"
export const NVRAM_LAYOUT = 1;
export const FLAG_PROVISIONED = 1;
export const FLAG_ZEROIZED = 2;

export const NvramSchema = [
  ['magic', fixed(4)],
  ['layout', u8],
  ['flags', u8],
  ['epoch', u53],
  ['count', u32],
  ['indexSum', fixed(32)],
  ['auditSeq', u53],
  ['auditHead', fixed(32)],
  ['operatorKeyHash', fixed(32)],
  ['keyCheck', fixed(16)],
] as const;

export interface NvramState {
  flags: number;
  epoch: number;
  count: number;
  indexSum: Uint8Array;
  auditSeq: number;
  auditHead: Uint8Array;
  operatorKeyHash: Uint8Array;
  keyCheck: Uint8Array;
}

export const NVRAM_STATE_SIZE = 4 + 1 + 1 + 8 + 4 + 32 + 8 + 32 + 32 + 16;

export function freshNvramState(keyCheck: Uint8Array, operatorKeyHash: Uint8Array | undefined): NvramState {
  return {
    flags: FLAG_PROVISIONED,
    epoch: 0,
    count: 0,
    indexSum: new Uint8Array(32),
    auditSeq: 0,
    auditHead: new Uint8Array(32),
    operatorKeyHash: operatorKeyHash ? Uint8Array.from(operatorKeyHash) : new Uint8Array(32),
    keyCheck: Uint8Array.from(keyCheck),
  };
}

export function encodeNvramState(s: NvramState): Uint8Array {
  return encodeFields(NvramSchema, { magic: NVRAM_MAGIC, layout: NVRAM_LAYOUT, ...s });
}

/** null when the region was never written (empty or all zero). */
export function decodeNvramState(b: Uint8Array): NvramState | null {
  if (b.length === 0 || b.every((x) => x === 0)) return null;
  const body = b.length > NVRAM_STATE_SIZE && b.subarray(NVRAM_STATE_SIZE).every((x) => x === 0) ? b.subarray(0, NVRAM_STATE_SIZE) : b;
  let d;
  try {
    d = decodeFields(NvramSchema, body, 'nvram');
  } catch {
    throw new EnclaveFault(PlatformCodes.NvramCorrupt, 'NVRAM contents are not a valid state');
  }
  if (!d.magic.every((x, i) => x === NVRAM_MAGIC[i]) || d.layout !== NVRAM_LAYOUT) {
    throw new EnclaveFault(PlatformCodes.NvramCorrupt, 'NVRAM contents are not a valid state');
  }
  const { magic: _m, layout: _l, ...s } = d;
  return s;
}
