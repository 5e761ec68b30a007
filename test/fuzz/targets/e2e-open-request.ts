/**
 * Fuzz target: the enclave side of the end-to-end channel (`openRequest`, client/e2e-seal.ts):
 * HPKE-sealed client requests as the host relays them. Input: one byte choosing the record id
 * the enclave binds (two ids), then the sealed message. The key pair is derived from a fixed
 * secret, so the checked-in seeds (requests sealed to it) stay valid.
 * Oracle: only EnclaveFault BadPayload escapes; a message opens only if it is exactly a seed,
 * for the record id it was sealed to (no tampered, truncated or moved ciphertext opens), with
 * the seed's plaintext; the response sealer works on what opened.
 * Seeds: test/fuzz/seeds/e2e-open-request/ (a sealed request per client request type).
 */
import { createHash, randomBytes } from 'node:crypto';
import { Handling, EnclaveFault } from '../../../enclave/api/codes.ts';
import { deriveE2eKeyPair, openRequest } from '../../../client/e2e-seal.ts';
import { padResponse } from '../../../enclave/api/padding.ts';
import type { E2eKeyPair } from '../../../client/e2e-seal.ts';
import { loadCorpus } from '../lib/engine.ts';
import { equalBytes, hex, typedAsync, violation } from '../lib/oracle.ts';

export const name = 'e2e-open-request';
export const maxInputLength = 1 + 4096 + 64;

const te = new TextEncoder();
export const E2E_IKM = new Uint8Array(createHash('sha256').update('bkv-fuzz/e2e/ikm').digest());
export const E2E_RECORD_IDS = [te.encode('fuzz-e2e-a'), te.encode('fuzz-e2e-b')];

let kp: E2eKeyPair | null = null;
const nonces = (n: number) => new Uint8Array(randomBytes(n));
/** hex(selector || message) -> plaintext, for the inputs that must open. */
const valid = new Map<string, Uint8Array>();
let last: string | undefined;

export async function setup(): Promise<void> {
  kp = await deriveE2eKeyPair(E2E_IKM);
  valid.clear();
  for (const seed of loadCorpus(name)) {
    const rid = E2E_RECORD_IDS[(seed[0] ?? 0) & 1]!;
    try {
      const o = await openRequest(kp, rid, seed.subarray(1), nonces);
      valid.set(hex(Uint8Array.of((seed[0] ?? 0) & 1, ...seed.subarray(1))), o.request);
    } catch {
      // a seed that does not open (mutated regression input)
    }
  }
}

export function outcome(): string | undefined {
  return last;
}

export async function fuzz(data: Buffer | Uint8Array): Promise<void> {
  if (!kp) await setup();
  const input = new Uint8Array(data);
  const sel = (input[0] ?? 0) & 1;
  const message = input.subarray(1);
  const r = await typedAsync('openRequest', () => openRequest(kp!, E2E_RECORD_IDS[sel]!, message, nonces));
  if (!r.ok) {
    if (!(r.error instanceof EnclaveFault) || r.error.code !== Handling.BadPayload) violation('wrong-error', `openRequest failed with ${r.error.name}, not BadPayload`);
    last = `refused:${message.length < 48 ? 'short' : 'long'}`;
    return;
  }
  const expect = valid.get(hex(Uint8Array.of(sel, ...message)));
  if (!expect) violation('e2e-integrity', `a sealed request that is not one of the seeds opened (${message.length} bytes)`);
  if (!equalBytes(expect, r.value.request)) violation('e2e-integrity', 'a seed opened to another plaintext');
  const sealed = await typedAsync('sealResponse', () => r.value.sealResponse(r.value.request));
  if (!sealed.ok || sealed.value.length !== 12 + padResponse(r.value.request).length + 16) violation('oracle', 'sealResponse failed on an opened request');
  last = 'opened';
}
