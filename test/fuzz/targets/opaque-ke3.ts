/**
 * Fuzz target: RFC 9807 §6.1 KE3; also fed to serverLoginFinish, which must accept only the client's own KE3.
 * Decoded on both suites and both group backends; the oracle is in lib/opaque-target.ts.
 * Seeds: test/fuzz/seeds/opaque-ke3/ (a valid message of each suite).
 */
import { opaqueMessageTarget } from '../lib/opaque-target.ts';

const t = opaqueMessageTarget('KE3');

export const name = 'opaque-ke3';
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
