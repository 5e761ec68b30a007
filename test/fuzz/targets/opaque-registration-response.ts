/**
 * Fuzz target: RFC 9807 §5.1 RegistrationResponse (evaluated_message, server_public_key); also fed to clientRegistrationFinish.
 * Decoded on both suites and both group backends; the oracle is in lib/opaque-target.ts.
 * Seeds: test/fuzz/seeds/opaque-registration-response/ (a valid message of each suite).
 */
import { opaqueMessageTarget } from '../lib/opaque-target.ts';

const t = opaqueMessageTarget('RegistrationResponse');

export const name = 'opaque-registration-response';
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
