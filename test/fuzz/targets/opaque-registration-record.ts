/**
 * Fuzz target: RFC 9807 §5.1 RegistrationRecord (client_public_key, masking_key, envelope); also used as the stored record of serverLoginStart.
 * Decoded on both suites and both group backends; the oracle is in lib/opaque-target.ts.
 * Seeds: test/fuzz/seeds/opaque-registration-record/ (a valid message of each suite).
 */
import { opaqueMessageTarget } from '../lib/opaque-target.ts';

const t = opaqueMessageTarget('RegistrationRecord');

export const name = 'opaque-registration-record';
export const maxInputLength = 512;

export async function setup(): Promise<void> {
  await t.setup();
}

export function outcome(): string | undefined {
  return t.outcome();
}

export async function fuzz(data: Buffer | Uint8Array): Promise<void> {
  await t.fuzz(data);
}
