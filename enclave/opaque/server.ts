/**
 * The OPAQUE-3DH server, RFC 9807: CreateRegistrationResponse (§5.2.2), GenerateKE2 (§6.2.2:
 * CreateCredentialResponse §6.3.2.2 then AuthServerRespond §6.4.4), the fake record for unknown
 * credential identifiers (§6.3.2.2) and ServerFinish (§6.2.4 / AuthServerFinalize §6.4.4).
 *
 * Hot path: serverLoginStart is synchronous and costs 4 variable-base multiplications (OPRF
 * evaluation, dh1, dh2, dh3) plus 1 base multiplication (the server keyshare), each of which
 * validates its input element naming the RFC field; the KE2 is written in place. Everything
 * else (10 HMACs, 2 hash-to-scalars, the preamble hash, 3 random draws) is about 5% of a login
 * on the fast suite (bench/opaque.ts). Message inputs are checked for exact length first.
 * Secrets are wiped once used.
 */
import { type Alloc, type RandomSource, ctEqual, newBytes, zeroize } from './bytes.ts';
import { authServerRespond, checkContext } from './ake-3dh.ts';
import { fakeEnvelope, writeCredentialResponse } from './credential-response.ts';
import { checkIdentities, createCleartextCredentials, type Identities } from './envelope.ts';
import { OpaqueError, OpaqueErrorCode, invalidLength } from './errors.ts';
import { deriveDiffieHellmanKeyPair, deriveOprfKey, randomBytes } from './derive.ts';
import { messageLength, splitMessage } from './encoding.ts';
import { blindEvaluate } from './oprf.ts';
import type { Suite, SuiteId } from './suite.ts';

export type { Identities } from './envelope.ts';

export interface ServerKeys {
  oprfSeed: Uint8Array /* Nh bytes */;
  serverPrivateKey: Uint8Array;
  serverPublicKey: Uint8Array;
  /**
   * DH with a server private key held outside this process (an HSM token): k·element, validating
   * `element` and naming `field`. When set, serverPrivateKey is unused (may be empty) and only
   * serverPublicKey is checked.
   */
  serverDh?: (element: Uint8Array, field: string) => Uint8Array;
}
export interface ServerOptions { suite: Suite; context: Uint8Array; identities?: Identities; rng: RandomSource }
/** RFC 9807 §6.3.2.2 fake record for unknown users (its envelope is zeroes(Nn + Nm)). */
export interface FakeRecord { clientPublicKey: Uint8Array; maskingKey: Uint8Array }
export type ServerLoginResult = { ok: true; sessionKey: Uint8Array } | { ok: false; outcome: 'wrong-password' };

declare const serverStateBrand: unique symbol;
/** RFC 9807 §6.4 ServerAkeState (expected_client_mac, session_key). Single use; opaque. */
export interface ServerLoginState { readonly [serverStateBrand]: true }
interface StateData { suite: Suite; mac: Uint8Array | null; key: Uint8Array | null }

/**
 * The state object: a frozen instance with no visible properties whose data sits in a private
 * field (a WeakMap from objects to data costs more per login in set-up and collection:
 * bench/opaque.ts, figure in bench/README.md).
 */
class LoginState {
  readonly #d: StateData;
  constructor(d: StateData) {
    this.#d = d;
    Object.freeze(this);
  }
  static data(s: unknown): StateData | undefined {
    return typeof s === 'object' && s !== null && #d in s ? (s as LoginState).#d : undefined;
  }
}

function newState(suite: Suite, mac: Uint8Array, key: Uint8Array): ServerLoginState {
  return new LoginState({ suite, mac, key }) as unknown as ServerLoginState;
}

/** Hands out the state's secrets once; every later use is StateReused. */
function takeState(s: ServerLoginState, suite: Suite): { mac: Uint8Array; key: Uint8Array } {
  const d = LoginState.data(s);
  if (!d) throw new OpaqueError(OpaqueErrorCode.InvalidArgument, 'not a ServerLoginState');
  if (!d.mac || !d.key) throw new OpaqueError(OpaqueErrorCode.StateReused, 'server login state already used');
  const out = { mac: d.mac, key: d.key };
  d.mac = d.key = null;
  if (d.suite.id !== suite.id) {
    zeroize(out.mac, out.key);
    throw new OpaqueError(OpaqueErrorCode.InvalidArgument, `server login state belongs to ${d.suite.id}, not ${suite.id}`);
  }
  return out;
}

/** ServerKeys objects already validated for a suite (validation costs a base multiplication). */
const checkedKeys = new WeakMap<ServerKeys, SuiteId>();

/**
 * Validates `keys` for `suite`: oprf_seed length, server_private_key a reduced non-zero scalar,
 * server_public_key a valid element equal to server_private_key·G. Remembered per object and
 * suite id, so keep one ServerKeys object for the server's lifetime.
 */
export function checkServerKeys(suite: Suite, keys: ServerKeys): void {
  if (checkedKeys.get(keys) === suite.id) return; // every backend of a suite agrees on validity
  if (!keys || !(keys.oprfSeed instanceof Uint8Array)) throw invalidLength('oprf_seed', suite.Nh, -1);
  if (keys.oprfSeed.length !== suite.Nh) throw invalidLength('oprf_seed', suite.Nh, keys.oprfSeed.length);
  if (keys.serverDh) {
    suite.group.checkElement(keys.serverPublicKey, 'server_public_key');
    checkedKeys.set(keys, suite.id);
    return;
  }
  suite.group.checkScalar(keys.serverPrivateKey, 'server_private_key');
  suite.group.checkElement(keys.serverPublicKey, 'server_public_key');
  if (!ctEqual(suite.group.scalarMultBase(keys.serverPrivateKey), keys.serverPublicKey)) {
    throw new OpaqueError(OpaqueErrorCode.InvalidArgument, 'server_public_key does not match server_private_key', 'server_public_key');
  }
  checkedKeys.set(keys, suite.id);
}

/** RFC 9807 §6.4.1 DeriveDiffieHellmanKeyPair(seed): a server AKE key pair from Nseed bytes. */
export function deriveServerKeyPair(suite: Suite, seed: Uint8Array): { privateKey: Uint8Array; publicKey: Uint8Array } {
  return deriveDiffieHellmanKeyPair(suite, seed);
}

/** RFC 9807 §3.1 setup: oprf_seed = random(Nh), then a key pair from random(Nseed). */
export function generateServerKeys(suite: Suite, rng: RandomSource): ServerKeys {
  const oprfSeed = Uint8Array.from(randomBytes(rng, suite.Nh));
  const seed = Uint8Array.from(randomBytes(rng, suite.Nseed));
  const { privateKey, publicKey } = deriveDiffieHellmanKeyPair(suite, seed);
  zeroize(seed);
  const keys: ServerKeys = { oprfSeed, serverPrivateKey: privateKey, serverPublicKey: publicKey };
  checkedKeys.set(keys, suite.id);
  return keys;
}

/**
 * RFC 9807 §6.3.2.2: a fake record (random public key, random masking_key). Create it once and
 * pass it to every serverLoginStart for unknown users so that their KE2 costs the same as a real one.
 */
export function generateFakeRecord(suite: Suite, rng: RandomSource): FakeRecord {
  const seed = Uint8Array.from(randomBytes(rng, suite.Nseed));
  const { privateKey, publicKey } = deriveDiffieHellmanKeyPair(suite, seed);
  zeroize(seed, privateKey);
  return { clientPublicKey: publicKey, maskingKey: Uint8Array.from(randomBytes(rng, suite.Nh)) };
}

/** RFC 9807 §5.2.2 CreateRegistrationResponse: evaluated_message || server_public_key. */
export function serverRegistrationResponse(o: ServerOptions, keys: ServerKeys, request: Uint8Array, credentialIdentifier: Uint8Array): Uint8Array {
  const { suite } = o;
  checkServerKeys(suite, keys);
  const [blindedMessage] = splitMessage(suite, 'RegistrationRequest', request);
  const oprfKey = deriveOprfKey(suite, keys.oprfSeed, credentialIdentifier);
  try {
    const out = new Uint8Array(suite.Noe + suite.Npk);
    out.set(blindEvaluate(suite, oprfKey, blindedMessage!, 'blinded_message'), 0);
    out.set(keys.serverPublicKey, suite.Noe);
    return out;
  } finally {
    zeroize(oprfKey);
  }
}

/**
 * RFC 9807 §6.2.2 GenerateKE2. `record` is the stored RegistrationRecord, or null for an unknown
 * credential identifier: then the §6.3.2.2 fake record `fake` is used (drawn from `rng` when
 * omitted, which costs an extra base multiplication and so is distinguishable by timing).
 * RNG draws, in RFC order: masking_nonce, server_nonce, server_keyshare_seed.
 */
export function serverLoginStart(
  o: ServerOptions, keys: ServerKeys, ke1: Uint8Array, credentialIdentifier: Uint8Array,
  record: Uint8Array | null, fake?: FakeRecord,
): { ke2: Uint8Array; state: ServerLoginState } {
  const { suite, rng } = o;
  checkServerKeys(suite, keys);
  checkContext(o.context);
  checkIdentities(o.identities);
  const [blindedMessage, , clientPublicKeyshare] = splitMessage(suite, 'KE1', ke1);
  let clientPublicKey: Uint8Array, maskingKey: Uint8Array, envelope: Uint8Array;
  if (record !== null) {
    [clientPublicKey, maskingKey, envelope] = splitMessage(suite, 'RegistrationRecord', record) as [Uint8Array, Uint8Array, Uint8Array];
  } else {
    const f = fake ?? generateFakeRecord(suite, rng);
    if (f.clientPublicKey?.length !== suite.Npk) throw invalidLength('client_public_key', suite.Npk, f.clientPublicKey?.length ?? -1);
    if (f.maskingKey?.length !== suite.Nh) throw invalidLength('masking_key', suite.Nh, f.maskingKey?.length ?? -1);
    ({ clientPublicKey, maskingKey } = f);
    envelope = fakeEnvelope(suite);
  }
  const ke2 = new Uint8Array(messageLength(suite, 'KE2'));
  const oprfKey = deriveOprfKey(suite, keys.oprfSeed, credentialIdentifier);
  try {
    writeCredentialResponse(suite, ke2, oprfKey, blindedMessage!, keys.serverPublicKey, maskingKey, envelope, rng);
  } finally {
    zeroize(oprfKey);
  }
  const cleartext = createCleartextCredentials(keys.serverPublicKey, clientPublicKey, o.identities);
  const { expectedClientMac, sessionKey } = authServerRespond(
    suite, ke2, o.context, cleartext, keys.serverDh ?? keys.serverPrivateKey, clientPublicKey, ke1, clientPublicKeyshare!, rng,
  );
  return { ke2, state: newState(suite, expectedClientMac, sessionKey) };
}

/**
 * RFC 9807 §6.2.4 ServerFinish / §6.4.4 AuthServerFinalize: compares client_mac with ctEqual.
 * A mismatch is `{ ok: false, outcome: 'wrong-password' }`. The state is consumed and wiped by
 * any call, including one that throws on a malformed KE3.
 */
export function serverLoginFinish(o: ServerOptions, state: ServerLoginState, ke3: Uint8Array): ServerLoginResult {
  const { mac, key } = takeState(state, o.suite);
  try {
    const [clientMac] = splitMessage(o.suite, 'KE3', ke3);
    if (ctEqual(clientMac!, mac)) return { ok: true, sessionKey: Uint8Array.from(key) };
    return { ok: false, outcome: 'wrong-password' };
  } finally {
    zeroize(mac, key);
  }
}

const STATE_VERSION = 1;
const SUITE_CODE: Record<SuiteId, number> = { 'ristretto255-SHA512': 1, 'P256-SHA256': 2 };

/**
 * Serializes a login state (version || suite || expected_client_mac || session_key) so an
 * enclave can keep it between KE2 and KE3. The state moves into the bytes: the object is wiped
 * and refuses further use. The bytes are secret and must themselves be used once. `alloc`: where
 * they are put.
 */
export function serverLoginStateEncode(s: ServerLoginState, alloc: Alloc = newBytes): Uint8Array {
  const d = LoginState.data(s);
  if (!d) throw new OpaqueError(OpaqueErrorCode.InvalidArgument, 'not a ServerLoginState');
  const { mac, key } = takeState(s, d.suite);
  const out = alloc(2 + mac.length + key.length);
  out[0] = STATE_VERSION;
  out[1] = SUITE_CODE[d.suite.id];
  out.set(mac, 2);
  out.set(key, 2 + mac.length);
  zeroize(mac, key);
  return out;
}

/** Strict inverse of serverLoginStateEncode for `suite`. */
export function serverLoginStateDecode(suite: Suite, b: Uint8Array): ServerLoginState {
  const len = 2 + suite.Nm + suite.Nx;
  if (!(b instanceof Uint8Array) || b.length !== len) throw invalidLength('ServerLoginState', len, b instanceof Uint8Array ? b.length : -1);
  if (b[0] !== STATE_VERSION) throw new OpaqueError(OpaqueErrorCode.InvalidArgument, `ServerLoginState: unknown version ${b[0]}`, 'ServerLoginState');
  if (b[1] !== SUITE_CODE[suite.id]) throw new OpaqueError(OpaqueErrorCode.InvalidArgument, `ServerLoginState: not a ${suite.id} state`, 'ServerLoginState');
  return newState(suite, b.slice(2, 2 + suite.Nm), b.slice(2 + suite.Nm));
}
