/**
 * Fuzz target: the strict message codec (enclave/api/codec.ts) on the HostResponses family
 * (enclave/api/messages.ts). Oracle in lib/codec-target.ts.
 * Seeds: test/fuzz/seeds/codec-host-responses/, one per host response type (HostResponses in enclave/api/messages.ts).
 */
import type { Family, Schema } from '../../../enclave/api/codec.ts';
import { HostResponses } from '../../../enclave/api/messages.ts';
import { codecTarget } from '../lib/codec-target.ts';

const t = codecTarget(HostResponses as unknown as Family<Record<string, Schema>>, 'HostResponses');

export const name = 'codec-host-responses';
export const maxInputLength = 16 * 1024;

export function outcome(): string | undefined {
  return t.outcome();
}

export async function fuzz(data: Buffer | Uint8Array): Promise<void> {
  await t.fuzz(data);
}
