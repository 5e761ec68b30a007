/**
 * Fuzz target: the strict message codec (enclave/api/codec.ts) on the ClientRequests family
 * (enclave/api/messages.ts). Oracle in lib/codec-target.ts.
 * Seeds: test/fuzz/seeds/codec-client-requests/, one per client request type (RegisterStart, RegisterFinish, LoginStart, LoginFinish, Status, Delete).
 */
import type { Family, Schema } from '../../../enclave/api/codec.ts';
import { ClientRequests } from '../../../enclave/api/messages.ts';
import { codecTarget } from '../lib/codec-target.ts';

export const { name, maxInputLength, fuzz, outcome } = codecTarget('codec-client-requests', ClientRequests as unknown as Family<Record<string, Schema>>, 'ClientRequests');
