/**
 * The enclave's persistent state in its NVRAM region: the only state the host can not roll back.
 *
 * Layout 3 (fixed size, encoded with the API codec, 242 bytes; a region is 256 bytes, so 16
 * partitions fit a 4 KB NVRAM):
 *   magic "BKVN" | layout version | flags |
 *   committed: epoch | record count | index sum (32) | audit sequence | audit head MAC (32) |
 *   intent:    the same five fields for the batch being persisted (epoch 0 = none) |
 *   operator key hash (32) | key check (16) | auth hash (16)
 * `auth hash` is the first 16 bytes of SHA-256 of the provisioned issuer set (enclave/api/auth.ts
 * encodeAuthConfig), all zero when none is provisioned. Layout 2 (no auth hash, 226 bytes) is read
 * as layout 3 with a zero auth hash and written back as layout 3.
 * `index sum` is the keyed additive set hash of every live sealed record of this partition
 * (record-index.ts). A batch writes the NVRAM twice: the intent before the host persists the
 * batch, the committed state after (before any response is released). `key check` ties the
 * NVRAM to the token keys it was provisioned with.
 */
import { decodeFields, encodeFields, fixed, u32, u53, u8 } from '../api/codec.ts';
import { EnclaveFault, PlatformFault } from '../api/codes.ts';

export const NVRAM_MAGIC = Uint8Array.of(0x42, 0x4b, 0x56, 0x4e); // "BKVN"
export const NVRAM_LAYOUT = 3;
const NVRAM_LAYOUT_V2 = 2;
export const FLAG_PROVISIONED = 1;
export const FLAG_ZEROIZED = 2;
/** The device NVRAM (real HSMs have about 4 KB), split into one region per partition. */
export const NVRAM_TOTAL_BYTES = 4096;
export const NVRAM_REGION_BYTES = 256;
export const MAX_PARTITIONS = NVRAM_TOTAL_BYTES / NVRAM_REGION_BYTES;

const slot = [
  ['epoch', u53],
  ['count', u32],
  ['indexSum', fixed(32)],
  ['auditSeq', u53],
  ['auditHead', fixed(32)],
] as const;

const NvramSchemaV2 = [
  ['magic', fixed(4)],
  ['layout', u8],
  ['flags', u8],
  ['committed', { k: 'list', of: slot, max: 1 } as const],
  ['intent', { k: 'list', of: slot, max: 1 } as const],
  ['operatorKeyHash', fixed(32)],
  ['keyCheck', fixed(16)],
] as const;

export const NvramSchema = [...NvramSchemaV2, ['authHash', fixed(16)]] as const;

export interface NvramSlot {
  epoch: number;
  count: number;
  indexSum: Uint8Array;
  auditSeq: number;
  auditHead: Uint8Array;
}

export interface NvramState {
  flags: number;
  committed: NvramSlot;
  /** The batch being persisted, or null. */
  intent: NvramSlot | null;
  operatorKeyHash: Uint8Array;
  keyCheck: Uint8Array;
  /** SHA-256 (first 16 bytes) of the provisioned issuer set; all zero when none is. */
  authHash: Uint8Array;
}

export const EMPTY_SLOT: NvramSlot = Object.freeze({
  epoch: 0,
  count: 0,
  indexSum: new Uint8Array(32),
  auditSeq: 0,
  auditHead: new Uint8Array(32),
});

/** Encoded size: 4 + 1 + 1 + 2 (count) + 84 + 2 (count) + 84 + 32 + 16 + 16, with both slots present. */
export const NVRAM_STATE_SIZE = 242;
const NVRAM_STATE_SIZE_V2 = 226;

export function freshNvramState(keyCheck: Uint8Array, operatorKeyHash: Uint8Array | undefined, authHash?: Uint8Array): NvramState {
  return {
    flags: FLAG_PROVISIONED,
    committed: { ...EMPTY_SLOT, indexSum: new Uint8Array(32), auditHead: new Uint8Array(32) },
    intent: null,
    operatorKeyHash: operatorKeyHash ? Uint8Array.from(operatorKeyHash) : new Uint8Array(32),
    keyCheck: Uint8Array.from(keyCheck),
    authHash: authHash ? Uint8Array.from(authHash) : new Uint8Array(16),
  };
}

export function encodeNvramState(s: NvramState): Uint8Array {
  return encodeFields(NvramSchema, {
    magic: NVRAM_MAGIC,
    layout: NVRAM_LAYOUT,
    flags: s.flags,
    committed: [s.committed],
    intent: s.intent ? [s.intent] : [],
    operatorKeyHash: s.operatorKeyHash,
    keyCheck: s.keyCheck,
    authHash: s.authHash,
  });
}

const corrupt = () => new EnclaveFault(PlatformFault.NvramCorrupt, 'NVRAM contents are not a valid state');

/** null when the region was never written (empty or all zero). Trailing zero padding is allowed. */
export function decodeNvramState(b: Uint8Array): NvramState | null {
  if (b.length === 0 || b.every((x) => x === 0)) return null;
  let end = b.length;
  while (end > 0 && b[end - 1] === 0) end--;
  // The encoding may itself end in zero bytes: try the exact sizes it can have, newest layout first.
  const layouts = [
    [NVRAM_LAYOUT, NvramSchema, NVRAM_STATE_SIZE],
    [NVRAM_LAYOUT_V2, NvramSchemaV2, NVRAM_STATE_SIZE_V2],
  ] as const;
  for (const [layout, schema, full] of layouts) {
    for (const size of [full, full - 84]) {
      if (size < end || size > b.length) continue;
      try {
        const d = decodeFields(schema, b.subarray(0, size), 'nvram');
        if (!d.magic.every((x, i) => x === NVRAM_MAGIC[i]) || d.layout !== layout || d.committed.length !== 1) continue;
        return {
          flags: d.flags,
          committed: d.committed[0]!,
          intent: d.intent[0] ?? null,
          operatorKeyHash: d.operatorKeyHash,
          keyCheck: d.keyCheck,
          authHash: 'authHash' in d ? (d.authHash as Uint8Array) : new Uint8Array(16),
        };
      } catch {
        continue;
      }
    }
  }
  throw corrupt();
}
