/**
 * Fuzz target: the strict message codec (enclave/api/codec.ts) on the ClientResponses family
 * (enclave/api/messages.ts). Oracle in lib/codec-target.ts.
 * Seeds: test/fuzz/seeds/codec-client-responses/, one per client response type (RegisterStarted, Registered, LoginStarted, Recovered, WrongPassword, Locked, NotRegistered, StatusResult, Deleted, Fault).
 */
import type { Family, Schema } from '../../../enclave/api/codec.ts';
import { ClientResponses } from '../../../enclave/api/messages.ts';
import { codecTarget } from '../lib/codec-target.ts';

const t = codecTarget(ClientResponses as unknown as Family<Record<string, Schema>>, 'ClientResponses');

export const name = 'codec-client-responses';
export const maxInputLength = 16 * 1024;

export function outcome(): string | undefined {
  return t.outcome();
}

export async function fuzz(data: Buffer | Uint8Array): Promise<void> {
  await t.fuzz(data);
}
