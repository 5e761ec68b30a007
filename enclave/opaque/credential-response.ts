/**
 * Credential retrieval, RFC 9807 §6.3.2: CreateCredentialResponse (§6.3.2.2: OPRF evaluation
 * and the masking of server_public_key || envelope), the fake record for unknown credential
 * identifiers (§6.3.2.2, client enumeration defence) and RecoverCredentials (§6.3.2.3).
 */
import { type RandomSource, zeroize } from './bytes.ts';
import { recover, type CleartextCredentials, type Identities } from './envelope.ts';
import { LABEL, expand, expandXorInto, randomBytes, randomizePassword } from './derive.ts';
import type { Ksf } from './ksf.ts';
import type { CredentialResponse } from './encoding.ts';
import { blindEvaluate, finalize } from './oprf.ts';
import type { Suite } from './suite.ts';

/**
 * RFC 9807 §6.3.2.2 CreateCredentialResponse, written in place into `out` (the first
 * Noe + Nn + Npk + Nn + Nm bytes of a KE2) so that the server's hot path allocates no message.
 * Draws masking_nonce = random(Nn). `blindedMessage` is validated by the multiplication.
 */
export function writeCredentialResponse(
  suite: Suite, out: Uint8Array, oprfKey: Uint8Array, blindedMessage: Uint8Array,
  serverPublicKey: Uint8Array, maskingKey: Uint8Array, envelope: Uint8Array, rng: RandomSource,
): void {
  const { Noe, Nn, Npk, Nm } = suite;
  // evaluated_message = SerializeElement(BlindEvaluate(oprf_key, blinded_element))
  out.set(blindEvaluate(suite, oprfKey, blindedMessage, 'blinded_message'), 0);
  const maskingNonce = randomBytes(rng, Nn);
  out.set(maskingNonce, Noe);
  // masked_response = xor(credential_response_pad, concat(server_public_key, envelope)), with
  // credential_response_pad = Expand(masking_key, concat(masking_nonce, "CredentialResponsePad"), Npk + Nn + Nm):
  // the plaintext written in place, then the pad XORed into it.
  const base = Noe + Nn;
  for (let i = 0; i < Npk; i++) out[base + i] = serverPublicKey[i]!;
  for (let i = 0; i < Nn + Nm; i++) out[base + Npk + i] = envelope[i]!;
  expandXorInto(suite, maskingKey, out.subarray(base, base + Npk + Nn + Nm), maskingNonce, LABEL.credentialResponsePad);
}

/** RFC 9807 §6.3.2.2: the fake record's envelope is zeroes(Nn + Nm). */
const fakeEnvelopeCache = new WeakMap<Suite, Uint8Array>();
export function fakeEnvelope(suite: Suite): Uint8Array {
  let e = fakeEnvelopeCache.get(suite);
  if (!e) fakeEnvelopeCache.set(suite, (e = new Uint8Array(suite.Nn + suite.Nm)));
  return e;
}

export type RecoverCredentialsResult =
  | { ok: true; clientPrivateKey: Uint8Array; cleartext: CleartextCredentials; serverPublicKey: Uint8Array; exportKey: Uint8Array }
  | { ok: false };

/**
 * RFC 9807 §6.3.2.3 RecoverCredentials. The evaluated element is validated by Finalize's
 * multiplication (field `evaluated_message`); an envelope that does not open is `{ ok: false }`.
 */
export async function recoverCredentials(
  suite: Suite, ksf: Ksf, password: Uint8Array, blind: Uint8Array, response: CredentialResponse, ids: Identities | undefined,
): Promise<RecoverCredentialsResult> {
  const { Nh, Nn, Npk, Nm } = suite;
  const oprfOutput = finalize(suite, password, blind, response.evaluatedMessage, 'evaluated_message');
  let randomizedPassword: Uint8Array | undefined;
  let maskingKey: Uint8Array | undefined;
  let unmasked: Uint8Array | undefined;
  try {
    randomizedPassword = await randomizePassword(suite, ksf, oprfOutput);
    maskingKey = expand(suite, randomizedPassword, Nh, LABEL.maskingKey);
    unmasked = expand(suite, maskingKey, Npk + Nn + Nm, response.maskingNonce, LABEL.credentialResponsePad);
    // concat(server_public_key, envelope) = xor(credential_response_pad, masked_response)
    for (let i = 0; i < unmasked.length; i++) unmasked[i]! ^= response.maskedResponse[i]!;
    const serverPublicKey = unmasked.slice(0, Npk);
    const r = recover(suite, randomizedPassword, serverPublicKey, unmasked.subarray(Npk), ids);
    if (!r.ok) return r;
    return { ok: true, clientPrivateKey: r.clientPrivateKey, cleartext: r.cleartext, serverPublicKey, exportKey: r.exportKey };
  } finally {
    zeroize(oprfOutput, randomizedPassword, maskingKey, unmasked);
  }
}
