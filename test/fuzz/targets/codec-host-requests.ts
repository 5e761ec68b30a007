/**
 * Fuzz target: the strict message codec (enclave/api/codec.ts) on the HostRequests family
 * (enclave/api/messages.ts). Oracle in lib/codec-target.ts.
 * Seeds: test/fuzz/seeds/codec-host-requests/, one per host request type (HostRequests in enclave/api/messages.ts).
 */
import type { Family, Schema } from '../../../enclave/api/codec.ts';
import { HostRequests } from '../../../enclave/api/messages.ts';
import { codecTarget } from '../lib/codec-target.ts';

const t = codecTarget(HostRequests as unknown as Family<Record<string, Schema>>, 'HostRequests');

export const name = 'codec-host-requests';
export const maxInputLength = 16 * 1024;

export function outcome(): string | undefined {
  return t.outcome();
}

export async function fuzz(data: Buffer | Uint8Array): Promise<void> {
  await t.fuzz(data);
}
