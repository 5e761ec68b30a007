/**
 * Fuzz target: the strict message codec (enclave/api/codec.ts) on the HostResponses family
 * (enclave/api/messages.ts). Oracle in lib/codec-target.ts.
 * Seeds: test/fuzz/seeds/codec-host-responses/, one per host response type (HostResponses in enclave/api/messages.ts).
 */
import type { Family, Schema } from '../../../enclave/api/codec.ts';
import { HostResponses } from '../../../enclave/api/messages.ts';
import { codecTarget } from '../lib/codec-target.ts';

export const { name, maxInputLength, fuzz, outcome } = codecTarget('codec-host-responses', HostResponses as unknown as Family<Record<string, Schema>>, 'HostResponses');
