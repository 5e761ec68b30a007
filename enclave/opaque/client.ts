/**
 * The OPAQUE-3DH client, RFC 9807: CreateRegistrationRequest (§5.2.1), FinalizeRegistrationRequest
 * (§5.2.3), GenerateKE1 (§6.2.1: CreateCredentialRequest §6.3.2.1 then AuthClientStart §6.4.3)
 * and GenerateKE3 (§6.2.3: RecoverCredentials §6.3.2.3 then AuthClientFinalize §6.4.3).
 *
 * Browser-safe: imports only @noble (through the suite), hash-wasm (through ksf.ts) and project
 * files without node: imports. A wrong password and a failed server authentication are outcome
 * values; malformed messages are typed OpaqueError faults.
 */
import { type RandomSource, concat, zeroize } from './bytes.ts';
import { authClientFinalize, checkContext } from './ake-3dh.ts';
import { recoverCredentials } from './credential-response.ts';
import { checkIdentities, store, type Identities } from './envelope.ts';
import { OpaqueError, OpaqueErrorCode } from './errors.ts';
import { deriveDiffieHellmanKeyPair, randomBytes, randomizePassword } from './derive.ts';
import { identityKsf, type Ksf } from './ksf.ts';
import { decodeKE2, decodeRegistrationResponse } from './encoding.ts';
import { blind, finalize } from './oprf.ts';
import type { Suite } from './suite.ts';

export type { Identities } from './envelope.ts';

export interface ClientOptions { suite: Suite; context: Uint8Array; identities?: Identities; ksf?: Ksf /* default identityKsf */; rng: RandomSource }

export type ClientLoginResult =
  | { ok: true; ke3: Uint8Array; sessionKey: Uint8Array; exportKey: Uint8Array; serverPublicKey: Uint8Array }
  | { ok: false; outcome: 'wrong-password' | 'server-auth-failed' };

declare const regBrand: unique symbol;
declare const loginBrand: unique symbol;
/** The blind of a registration in progress. Single use; opaque. */
export interface ClientRegistrationState { readonly [regBrand]: true }
/** RFC 9807 §6.2 ClientState: blind, client_secret (the keyshare's private key) and KE1. Single use; opaque. */
export interface ClientLoginState { readonly [loginBrand]: true }

interface RegData { suite: Suite; blind: Uint8Array }
interface LoginData { suite: Suite; blind: Uint8Array; clientSecret: Uint8Array; ke1: Uint8Array }
const regStates = new WeakMap<ClientRegistrationState, RegData | null>();
const loginStates = new WeakMap<ClientLoginState, LoginData | null>();

/** Removes and returns a state's data; a second use is StateReused. */
function take<K extends object, V extends { suite: Suite }>(m: WeakMap<K, V | null>, s: K, suite: Suite): V {
  if (!m.has(s)) throw new OpaqueError(OpaqueErrorCode.InvalidArgument, 'not a client state object');
  const d = m.get(s);
  if (!d) throw new OpaqueError(OpaqueErrorCode.StateReused, 'client state already used');
  m.set(s, null);
  if (d.suite.id !== suite.id) throw new OpaqueError(OpaqueErrorCode.InvalidArgument, `client state belongs to ${d.suite.id}, not ${suite.id}`);
  return d;
}

function checkOptions(o: ClientOptions, password: Uint8Array): void {
  checkContext(o.context);
  checkIdentities(o.identities);
  // RFC 9497 §3.3.1 Finalize encodes len(input) on 2 bytes.
  if (!(password instanceof Uint8Array) || password.length > 0xffff) {
    throw new OpaqueError(OpaqueErrorCode.InvalidArgument, 'password: must be a byte string of at most 65535 bytes', 'password');
  }
}

/** RFC 9807 §5.2.1 CreateRegistrationRequest. Draws the blind from `o.rng`. */
export function clientRegistrationStart(o: ClientOptions, password: Uint8Array): { request: Uint8Array; state: ClientRegistrationState } {
  checkOptions(o, password);
  const b = blind(o.suite, password, o.rng);
  const state = Object.freeze({}) as ClientRegistrationState;
  regStates.set(state, { suite: o.suite, blind: b.blind });
  return { request: b.blindedElement, state };
}

/**
 * RFC 9807 §5.2.3 FinalizeRegistrationRequest: returns the RegistrationRecord to upload
 * (client_public_key || masking_key || envelope), the export_key and the server public key the
 * client saw. Draws envelope_nonce from `o.rng`.
 */
export async function clientRegistrationFinish(
  o: ClientOptions, state: ClientRegistrationState, password: Uint8Array, response: Uint8Array,
): Promise<{ record: Uint8Array; exportKey: Uint8Array; serverPublicKey: Uint8Array }> {
  const { suite } = o;
  const d = take(regStates, state, suite);
  let oprfOutput: Uint8Array | undefined, randomizedPassword: Uint8Array | undefined;
  try {
    checkOptions(o, password);
    const r = decodeRegistrationResponse(suite, Uint8Array.from(response));
    oprfOutput = finalize(suite, password, d.blind, r.evaluatedMessage, 'evaluated_message');
    randomizedPassword = await randomizePassword(suite, o.ksf ?? identityKsf, oprfOutput);
    const s = store(suite, randomizedPassword, r.serverPublicKey, o.identities, o.rng);
    const record = concat(s.clientPublicKey, s.maskingKey, s.envelope);
    zeroize(s.maskingKey);
    return { record, exportKey: s.exportKey, serverPublicKey: r.serverPublicKey };
  } finally {
    zeroize(d.blind, oprfOutput, randomizedPassword);
  }
}

/**
 * RFC 9807 §6.2.1 GenerateKE1. Draws, in RFC order, the blind, client_nonce and
 * client_keyshare_seed from `o.rng`.
 */
export function clientLoginStart(o: ClientOptions, password: Uint8Array): { ke1: Uint8Array; state: ClientLoginState } {
  checkOptions(o, password);
  const { suite, rng } = o;
  const b = blind(suite, password, rng);
  try {
    const clientNonce = randomBytes(rng, suite.Nn);
    const seed = Uint8Array.from(randomBytes(rng, suite.Nseed));
    const { privateKey: clientSecret, publicKey: clientPublicKeyshare } = deriveDiffieHellmanKeyPair(suite, seed);
    zeroize(seed);
    const ke1 = concat(b.blindedElement, clientNonce, clientPublicKeyshare);
    const state = Object.freeze({}) as ClientLoginState;
    loginStates.set(state, { suite, blind: b.blind, clientSecret, ke1 });
    return { ke1: ke1.slice(), state };
  } catch (e) {
    zeroize(b.blind);
    throw e;
  }
}

/**
 * RFC 9807 §6.2.3 GenerateKE3. An envelope that does not open is the wrong-password outcome;
 * a server MAC mismatch is server-auth-failed. The state is consumed and wiped by any call.
 */
export async function clientLoginFinish(o: ClientOptions, state: ClientLoginState, password: Uint8Array, ke2: Uint8Array): Promise<ClientLoginResult> {
  const { suite } = o;
  const d = take(loginStates, state, suite);
  try {
    checkOptions(o, password);
    const k2 = Uint8Array.from(ke2);
    const m = decodeKE2(suite, k2);
    const r = await recoverCredentials(suite, o.ksf ?? identityKsf, password, d.blind, m.credentialResponse, o.identities);
    if (!r.ok) return { ok: false, outcome: 'wrong-password' };
    let a;
    try {
      a = authClientFinalize(suite, o.context, r.cleartext, d.clientSecret, r.clientPrivateKey, d.ke1, k2, m.authResponse.serverPublicKeyshare);
    } finally {
      zeroize(r.clientPrivateKey);
    }
    if (!a.ok) {
      zeroize(r.exportKey);
      return { ok: false, outcome: 'server-auth-failed' };
    }
    return { ok: true, ke3: a.ke3, sessionKey: a.sessionKey, exportKey: r.exportKey, serverPublicKey: r.serverPublicKey };
  } finally {
    zeroize(d.blind, d.clientSecret);
  }
}
