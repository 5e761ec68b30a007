/**
 * Fuzz target: RFC 9807 §6.1 AuthRequest (client_nonce, client_public_keyshare).
 * Decoded on both suites and both group backends; the oracle is in lib/opaque-target.ts.
 * Seeds: test/fuzz/seeds/opaque-auth-request/ (a valid message of each suite).
 */
import { opaqueMessageTarget } from '../lib/opaque-target.ts';

const t = opaqueMessageTarget('AuthRequest');

export const name = 'opaque-auth-request';
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
