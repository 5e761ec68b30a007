/**
 * OPAQUE test support shared by the RFC vector tests, the malformed-input tests and the OPAQUE
 * fuzz targets: every message's decoder and encoder, an injected queue RNG (as noble and
 * opaque-ke reproduce vectors) and one valid run of every RFC 9807 message (§4-§6) between a
 * client and a server.
 */
import { concat } from '../../enclave/opaque/bytes.ts';
import type { RandomSource } from '../../enclave/opaque/bytes.ts';
import { clientLoginFinish, clientLoginStart, clientRegistrationFinish, clientRegistrationStart } from '../../enclave/opaque/client.ts';
import * as M from '../../enclave/opaque/encoding.ts';
import { OpaqueError, OpaqueErrorCode } from '../../enclave/opaque/errors.ts';
import { serverLoginStart, serverRegistrationResponse } from '../../enclave/opaque/server.ts';
import type { ServerKeys } from '../../enclave/opaque/server.ts';
import type { Suite } from '../../enclave/opaque/suite.ts';

/** Every RFC 9807 message's decoder (§4-§6), by name. */
export const MESSAGE_DECODERS: Record<M.MessageName, (s: Suite, b: Uint8Array) => unknown> = {
  RegistrationRequest: M.decodeRegistrationRequest,
  RegistrationResponse: M.decodeRegistrationResponse,
  RegistrationRecord: M.decodeRegistrationRecord,
  Envelope: M.decodeEnvelope,
  CredentialRequest: M.decodeCredentialRequest,
  CredentialResponse: M.decodeCredentialResponse,
  AuthRequest: M.decodeAuthRequest,
  AuthResponse: M.decodeAuthResponse,
  KE1: M.decodeKE1,
  KE2: M.decodeKE2,
  KE3: M.decodeKE3,
};

/** Every RFC 9807 message's encoder, by name (the value is what the decoder returned). */
export const MESSAGE_ENCODERS: Record<M.MessageName, (s: Suite, m: never) => Uint8Array> = {
  RegistrationRequest: M.encodeRegistrationRequest,
  RegistrationResponse: M.encodeRegistrationResponse,
  RegistrationRecord: M.encodeRegistrationRecord,
  Envelope: M.encodeEnvelope,
  CredentialRequest: M.encodeCredentialRequest,
  CredentialResponse: M.encodeCredentialResponse,
  AuthRequest: M.encodeAuthRequest,
  AuthResponse: M.encodeAuthResponse,
  KE1: M.encodeKE1,
  KE2: M.encodeKE2,
  KE3: M.encodeKE3,
};

/** Hands out the given bytes in order; running dry is a RandomSourceError. */
export function queueRng(...chunks: Uint8Array[]): RandomSource {
  const q = concat(...chunks);
  let off = 0;
  return (n) => {
    if (off + n > q.length) throw new OpaqueError(OpaqueErrorCode.RandomSourceError, 'queue RNG ran dry');
    off += n;
    return q.slice(off - n, off);
  };
}

/**
 * A registration then a login of `password` for `id` against `keys`, and every message of the
 * run by its RFC 9807 name (the composite ones split into their parts: §6.1 KE1 = CredentialRequest
 * || AuthRequest, KE2 = CredentialResponse || AuthResponse; §4.1.1 the Envelope inside the record).
 */
export async function opaqueMessages(
  o: { suite: Suite; context: Uint8Array; rng: RandomSource },
  keys: ServerKeys,
  password: Uint8Array,
  id: Uint8Array,
): Promise<Record<M.MessageName, Uint8Array>> {
  const { suite } = o;
  const reg = clientRegistrationStart(o, password);
  const response = serverRegistrationResponse(o, keys, reg.request, id);
  const { record } = await clientRegistrationFinish(o, reg.state, password, response);
  const { ke1, state } = clientLoginStart(o, password);
  const { ke2 } = serverLoginStart(o, keys, ke1, id, record);
  const fin = await clientLoginFinish(o, state, password, ke2);
  if (!fin.ok) throw new Error(`opaque fixture: login failed (${fin.outcome})`);
  const credRespLen = M.messageLength(suite, 'CredentialResponse');
  return {
    RegistrationRequest: reg.request,
    RegistrationResponse: response,
    RegistrationRecord: record,
    Envelope: record.slice(suite.Npk + suite.Nh),
    CredentialRequest: ke1.slice(0, suite.Noe),
    CredentialResponse: ke2.slice(0, credRespLen),
    AuthRequest: ke1.slice(suite.Noe),
    AuthResponse: ke2.slice(credRespLen),
    KE1: ke1,
    KE2: ke2,
    KE3: fin.ke3,
  };
}
