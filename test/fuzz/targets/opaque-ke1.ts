/**
 * Fuzz target: RFC 9807 §6.1 KE1; also fed to serverLoginStart with a real and a fake record.
 * Decoded on both suites and both group backends; the oracle is in lib/opaque-target.ts.
 * Seeds: test/fuzz/seeds/opaque-ke1/ (a valid message of each suite).
 */
import { opaqueMessageTarget } from '../lib/opaque-target.ts';

const t = opaqueMessageTarget('KE1');

export const name = 'opaque-ke1';
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
