/**
 * Fuzz target: the client side of the end-to-end channel (`openResponse` of `sealRequest`,
 * client/e2e-seal.ts): what a client does with the bytes a (malicious) host hands back.
 * A response can only open under the key of the request it answers, which is fresh per request,
 * so the input is an edit of a valid response: the target seals a request, lets the enclave side
 * open it and seal a known answer, then XORs the input over that answer (the input's length is
 * the response's length: shorter truncates, longer appends). All zeroes is the valid response.
 * A fresh request (and key) every 64 inputs.
 * Oracle: only EnclaveFault BadPayload escapes; a response opens only if it is exactly the
 * enclave's answer, and then to exactly the plaintext the enclave sealed.
 * Seeds: test/fuzz/seeds/e2e-open-response/ (the all-zero edit: the valid response).
 */
import { randomBytes } from 'node:crypto';
import { Handling, EnclaveFault } from '../../../enclave/api/codes.ts';
import { deriveE2eKeyPair, openRequest, sealRequest } from '../../../client/e2e-seal.ts';
import type { E2eKeyPair } from '../../../client/e2e-seal.ts';
import { encodeMessage } from '../../../enclave/api/codec.ts';
import { ClientResponses } from '../../../enclave/api/messages.ts';
import { equalBytes, typedAsync, violation } from '../lib/oracle.ts';
import { E2E_IKM, E2E_RECORD_IDS } from './e2e-open-request.ts';

export const name = 'e2e-open-response';
export const maxInputLength = 1024;

/** The plaintext the enclave seals: a LoginStarted of the ristretto255 sizes (its largest common answer). */
export const RESPONSE_PLAINTEXT = encodeMessage(ClientResponses, {
  type: 'LoginStarted',
  sessionId: new Uint8Array(16).fill(7),
  ke2: new Uint8Array(320).fill(9),
  ksf: Uint8Array.of(0),
  attemptsRemaining: 10,
});

let kp: E2eKeyPair | null = null;
let ctx: { open(r: Uint8Array): Promise<Uint8Array>; response: Uint8Array } | null = null;
let uses = 0;
let last: string | undefined;

async function fresh(): Promise<void> {
  kp ??= await deriveE2eKeyPair(E2E_IKM);
  const rid = E2E_RECORD_IDS[0]!;
  const { message, openResponse } = await sealRequest(kp.publicKey, rid, Uint8Array.of(1, 5));
  const opened = await openRequest(kp, rid, message, (n) => new Uint8Array(randomBytes(n)));
  ctx = { open: openResponse, response: await opened.sealResponse(RESPONSE_PLAINTEXT) };
  uses = 0;
}

export async function setup(): Promise<void> {
  await fresh();
}

export function outcome(): string | undefined {
  return last;
}

export async function fuzz(data: Buffer | Uint8Array): Promise<void> {
  if (!ctx || uses++ >= 64) await fresh();
  const mask = new Uint8Array(data);
  const valid = ctx!.response;
  const edited = new Uint8Array(mask.length);
  for (let i = 0; i < mask.length; i++) edited[i] = (valid[i] ?? 0) ^ mask[i]!;
  const r = await typedAsync('openResponse', () => ctx!.open(edited));
  if (!r.ok) {
    if (!(r.error instanceof EnclaveFault) || r.error.code !== Handling.BadPayload) violation('wrong-error', `openResponse failed with ${r.error.name}, not BadPayload`);
    last = edited.length === valid.length ? 'refused:same-length' : 'refused:other-length';
    return;
  }
  if (!equalBytes(edited, valid)) violation('e2e-integrity', `an edited response opened (${edited.length} bytes, valid is ${valid.length})`);
  if (!equalBytes(r.value, RESPONSE_PLAINTEXT)) violation('e2e-integrity', 'the valid response opened to another plaintext');
  last = 'opened';
}
