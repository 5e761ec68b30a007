/**
 * Fuzz target: the KSF parameter decoder (`ksfFromParams`, enclave/opaque/ksf.ts), which reads
 * the parameters stored with every registration (RegisterStart.ksf, LoginStarted.ksf).
 * Oracle: only OpaqueError (KsfError) escapes; an accepted encoding re-encodes to the same bytes
 * and its Argon2id parameters are inside ARGON2ID_LIMITS (a login can not be turned into a
 * denial of service). Never stretches (no Argon2id run).
 * Seeds: test/fuzz/seeds/ksf-params/ (identity, the default Argon2id, the largest allowed).
 */
import { ARGON2ID_LIMITS, encodeKsfParams, ksfFromParams } from '../../../enclave/opaque/ksf.ts';
import { OpaqueErrorCode } from '../../../enclave/opaque/errors.ts';
import type { OpaqueError } from '../../../enclave/opaque/errors.ts';
import { equalBytes, typed, violation } from '../lib/oracle.ts';

export const name = 'ksf-params';
export const maxInputLength = 64;

let last: string | undefined;

export function outcome(): string | undefined {
  return last;
}

export async function fuzz(data: Buffer | Uint8Array): Promise<void> {
  const input = new Uint8Array(data);
  const r = typed('ksfFromParams', () => ksfFromParams(input));
  if (!r.ok) {
    const e = r.error as OpaqueError;
    if (e.code !== OpaqueErrorCode.KsfError) violation('wrong-error', `ksfFromParams failed with code ${e.code}, not KsfError`);
    last = `refused:${e.message.replace(/\d+/g, 'N').replace(/0x[0-9a-f]+/g, 'X')}`;
    return;
  }
  const ksf = r.value;
  if (!equalBytes(encodeKsfParams(ksf), input)) violation('round-trip', 'encodeKsfParams(ksfFromParams(x)) differs from x');
  if (ksf.id === 'argon2id') {
    const v = new DataView(input.buffer, input.byteOffset, input.length);
    const t = v.getUint32(1), m = v.getUint32(5), p = v.getUint32(9);
    if (t < 1 || t > ARGON2ID_LIMITS.tMax || p < 1 || p > ARGON2ID_LIMITS.pMax || m < 8 * p || m > ARGON2ID_LIMITS.mMax) {
      violation('limits', `argon2id parameters t=${t} m=${m} p=${p} accepted outside the limits`);
    }
  }
  last = `ok:${ksf.id}`;
}
