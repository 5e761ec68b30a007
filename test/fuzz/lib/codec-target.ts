/**
 * Fuzzing: the shared body of the API codec targets (test/fuzz/targets/codec-*.ts), one per
 * message family (HostRequests, HostResponses, ClientRequests, ClientResponses).
 * Oracle: decodeMessage throws only an EnclaveFault with a codec code (2001-2009); what it
 * accepts is within the family's size bound, re-encodes to exactly the same bytes (one encoding
 * per message), and has a known type.
 */
import { decodeMessage, encodeMessage } from '../../../enclave/api/codec.ts';
import type { Family, Schema } from '../../../enclave/api/codec.ts';
import { Codec, EnclaveFault } from '../../../enclave/api/codes.ts';
import { equalBytes, typed, violation } from './oracle.ts';

const CODEC_CODES = new Set<number>(Object.values(Codec));
// The codec's generic types are too deep for a family typed as a plain record of schemas.
const decode = decodeMessage as unknown as (f: unknown, b: Uint8Array) => { type: string };
const encode = encodeMessage as unknown as (f: unknown, m: { type: string }) => Uint8Array;

/** One target module (name, maxInputLength, fuzz, outcome) for one message family. */
export function codecTarget(name: string, family: Family<Record<string, Schema>>, label: string, maxInputLength = 16 * 1024) {
  let last: string | undefined;
  async function fuzz(data: Buffer | Uint8Array): Promise<void> {
    const input = new Uint8Array(data);
    const r = typed(`decodeMessage(${label})`, () => decode(family, input));
    if (!r.ok) {
      if (!(r.error instanceof EnclaveFault) || !CODEC_CODES.has(r.error.code)) {
        violation('wrong-error', `decodeMessage(${label}) failed with ${r.error.name} ${(r.error as EnclaveFault).code}, not a codec fault`);
      }
      last = `F${(r.error as EnclaveFault).code}:${(r.error as EnclaveFault).field ?? ''}`;
      return;
    }
    const msg = r.value;
    if (!(msg.type in family.schemas)) violation('oracle', `decodeMessage(${label}) returned unknown type ${msg.type}`);
    if (input.length > family.maxSize) violation('oracle', `decodeMessage(${label}) accepted ${input.length} bytes, over ${family.maxSize}`);
    const re = typed(`encodeMessage(${label})`, () => encode(family, msg));
    if (!re.ok) violation('round-trip', `encodeMessage(${label}) refused what decodeMessage accepted: ${re.error.message}`);
    if (!equalBytes(re.value, input)) violation('round-trip', `encodeMessage(decodeMessage(x)) differs from x (${label} ${msg.type})`);
    last = msg.type;
  }
  return { name, maxInputLength, fuzz, outcome: (): string | undefined => last };
}
