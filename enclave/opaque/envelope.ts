/**
 * Client credential storage and key recovery, RFC 9807 §4: CleartextCredentials and
 * CreateCleartextCredentials (§4), the Envelope (§4.1.1), Store (§4.1.2) and Recover (§4.1.3).
 * A failed Recover is the wrong-password outcome, returned as a value, never thrown.
 */
import { type RandomSource, ctEqual, i2osp, zeroize } from './bytes.ts';
import { OpaqueError, OpaqueErrorCode, invalidLength } from './errors.ts';
import { LABEL, deriveDiffieHellmanKeyPair, expand, randomBytes } from './derive.ts';
import type { Suite } from './suite.ts';

/** Application identities (RFC 9807 §4); each defaults to the party's public key. */
export interface Identities { client?: Uint8Array; server?: Uint8Array }

/** RFC 9807 §4 CleartextCredentials { server_public_key[Npk]; server_identity<1..2^16-1>; client_identity<1..2^16-1> }. */
export interface CleartextCredentials { serverPublicKey: Uint8Array; serverIdentity: Uint8Array; clientIdentity: Uint8Array }

function checkIdentity(id: Uint8Array | undefined, field: string): void {
  if (id === undefined) return;
  if (!(id instanceof Uint8Array)) throw new OpaqueError(OpaqueErrorCode.InvalidArgument, `${field}: not a byte string`, field);
  // RFC 9807 §4: identities are <1..2^16-1> vectors; "absent" is expressed by leaving them out.
  if (id.length < 1 || id.length > 0xffff) {
    throw new OpaqueError(OpaqueErrorCode.InvalidArgument, `${field}: length ${id.length} outside 1..65535`, field);
  }
}

/** Validates optional identities once, at the API boundary. */
export function checkIdentities(ids: Identities | undefined): void {
  checkIdentity(ids?.client, 'client_identity');
  checkIdentity(ids?.server, 'server_identity');
}

/** RFC 9807 §4 CreateCleartextCredentials: nil identities default to the public keys. */
export function createCleartextCredentials(serverPublicKey: Uint8Array, clientPublicKey: Uint8Array, ids?: Identities): CleartextCredentials {
  return { serverPublicKey, serverIdentity: ids?.server ?? serverPublicKey, clientIdentity: ids?.client ?? clientPublicKey };
}

/** The serialized CleartextCredentials, as parts for a multi-part MAC (no concatenation). */
export function cleartextParts(c: CleartextCredentials): Uint8Array[] {
  return [c.serverPublicKey, i2osp(c.serverIdentity.length, 2), c.serverIdentity, i2osp(c.clientIdentity.length, 2), c.clientIdentity];
}

export interface StoreResult { envelope: Uint8Array; clientPublicKey: Uint8Array; maskingKey: Uint8Array; exportKey: Uint8Array }

/** RFC 9807 §4.1.2 Store. Draws envelope_nonce = random(Nn) from `rng`. Returns the encoded Envelope. */
export function store(suite: Suite, randomizedPassword: Uint8Array, serverPublicKey: Uint8Array, ids: Identities | undefined, rng: RandomSource): StoreResult {
  const { Nh, Nn, Nseed } = suite;
  const envelopeNonce = randomBytes(rng, Nn);
  const maskingKey = expand(suite, randomizedPassword, Nh, LABEL.maskingKey);
  const authKey = expand(suite, randomizedPassword, Nh, envelopeNonce, LABEL.authKey);
  const exportKey = expand(suite, randomizedPassword, Nh, envelopeNonce, LABEL.exportKey);
  const seed = expand(suite, randomizedPassword, Nseed, envelopeNonce, LABEL.privateKey);
  const { privateKey, publicKey: clientPublicKey } = deriveDiffieHellmanKeyPair(suite, seed);
  zeroize(seed, privateKey);
  const cleartext = createCleartextCredentials(serverPublicKey, clientPublicKey, ids);
  // auth_tag = MAC(auth_key, concat(envelope_nonce, cleartext_credentials))
  const authTag = suite.hash.hmac(authKey, envelopeNonce, ...cleartextParts(cleartext));
  zeroize(authKey);
  const envelope = new Uint8Array(Nn + suite.Nm);
  envelope.set(envelopeNonce, 0);
  envelope.set(authTag, Nn);
  return { envelope, clientPublicKey, maskingKey, exportKey };
}

export type RecoverResult =
  | { ok: true; clientPrivateKey: Uint8Array; cleartext: CleartextCredentials; exportKey: Uint8Array }
  | { ok: false };

/** RFC 9807 §4.1.3 Recover. EnvelopeRecoveryError is `{ ok: false }` (a wrong password). */
export function recover(suite: Suite, randomizedPassword: Uint8Array, serverPublicKey: Uint8Array, envelope: Uint8Array, ids: Identities | undefined): RecoverResult {
  const { Nh, Nn, Nm, Nseed } = suite;
  if (envelope.length !== Nn + Nm) throw invalidLength('envelope', Nn + Nm, envelope.length);
  const nonce = envelope.subarray(0, Nn);
  const authTag = envelope.subarray(Nn);
  const authKey = expand(suite, randomizedPassword, Nh, nonce, LABEL.authKey);
  const exportKey = expand(suite, randomizedPassword, Nh, nonce, LABEL.exportKey);
  const seed = expand(suite, randomizedPassword, Nseed, nonce, LABEL.privateKey);
  const { privateKey, publicKey } = deriveDiffieHellmanKeyPair(suite, seed);
  zeroize(seed);
  const cleartext = createCleartextCredentials(serverPublicKey, publicKey, ids);
  const expectedTag = suite.hash.hmac(authKey, nonce, ...cleartextParts(cleartext));
  zeroize(authKey);
  if (!ctEqual(authTag, expectedTag)) {
    zeroize(privateKey, exportKey);
    return { ok: false };
  }
  return { ok: true, clientPrivateKey: privateKey, cleartext, exportKey };
}
