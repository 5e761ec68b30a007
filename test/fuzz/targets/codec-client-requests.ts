/**
 * Fuzz target: the strict message codec (enclave/api/codec.ts) on the ClientRequests family
 * (enclave/api/messages.ts). Oracle in lib/codec-target.ts.
 * Seeds: test/fuzz/seeds/codec-client-requests/, one per client request type (RegisterStart, RegisterFinish, LoginStart, LoginFinish, Status, Delete).
 */
import type { Family, Schema } from '../../../enclave/api/codec.ts';
import { ClientRequests } from '../../../enclave/api/messages.ts';
import { codecTarget } from '../lib/codec-target.ts';

const t = codecTarget(ClientRequests as unknown as Family<Record<string, Schema>>, 'ClientRequests');

export const name = 'codec-client-requests';
export const maxInputLength = 16 * 1024;

export function outcome(): string | undefined {
  return t.outcome();
}

export async function fuzz(data: Buffer | Uint8Array): Promise<void> {
  await t.fuzz(data);
}
