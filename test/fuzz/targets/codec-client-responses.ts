/**
 * Fuzz target: the strict message codec (enclave/api/codec.ts) on the ClientResponses family
 * (enclave/api/messages.ts). Oracle in lib/codec-target.ts.
 * Seeds: test/fuzz/seeds/codec-client-responses/, one per client response type (RegisterStarted, Registered, LoginStarted, Recovered, WrongPassword, Locked, NotRegistered, StatusResult, Deleted, Fault).
 */
import type { Family, Schema } from '../../../enclave/api/codec.ts';
import { ClientResponses } from '../../../enclave/api/messages.ts';
import { codecTarget } from '../lib/codec-target.ts';

export const { name, maxInputLength, fuzz, outcome } = codecTarget('codec-client-responses', ClientResponses as unknown as Family<Record<string, Schema>>, 'ClientResponses');
