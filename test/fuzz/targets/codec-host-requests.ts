/**
 * Fuzz target: the strict message codec (enclave/api/codec.ts) on the HostRequests family
 * (enclave/api/messages.ts). Oracle in lib/codec-target.ts.
 * Seeds: test/fuzz/seeds/codec-host-requests/, one per host request type (HostRequests in enclave/api/messages.ts).
 */
import type { Family, Schema } from '../../../enclave/api/codec.ts';
import { HostRequests } from '../../../enclave/api/messages.ts';
import { codecTarget } from '../lib/codec-target.ts';

export const { name, maxInputLength, fuzz, outcome } = codecTarget('codec-host-requests', HostRequests as unknown as Family<Record<string, Schema>>, 'HostRequests');
