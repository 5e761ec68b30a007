/**
 * The OPAQUE-3DH AKE, RFC 9807 §6.4: the preamble (§6.4.2.1), Expand-Label / Derive-Secret
 * and DeriveKeys (§6.4.2.2), TripleDH input keying material, AuthServerRespond (§6.4.4) and
 * AuthClientFinalize (§6.4.3). Labels are encoded once per suite; the preamble is hashed as
 * parts, never concatenated, and once only: Hash(preamble || server_mac) continues from the saved
 * state (`hashPrefix`). Each secret that keys two HMACs (the PRK, the handshake secret) has its
 * pads hashed once (`hmacKey`). On the fast suite that leaves 42 SHA-512 compressions per login.
 */
import { type RandomSource, ctEqual, i2osp, utf8, zeroize } from './bytes.ts';
import { OpaqueError, OpaqueErrorCode } from './errors.ts';
import type { CleartextCredentials } from './envelope.ts';
import { type HmacKey, hashPrefix, hmacKey } from './hash.ts';
import { deriveDiffieHellmanKeyPair, extract, randomBytes } from './derive.ts';
import type { Suite } from './suite.ts';

const PREAMBLE_LABEL = utf8('OPAQUEv1-');

interface AkeLabels {
  /** CustomLabel for Derive-Secret(·, "HandshakeSecret", Hash(preamble)) without the hash. */
  handshakeSecret: Uint8Array;
  /** CustomLabel for Derive-Secret(·, "SessionKey", Hash(preamble)) without the hash. */
  sessionKey: Uint8Array;
  /** Complete CustomLabels for Derive-Secret(·, "ServerMAC", "") and (·, "ClientMAC", ""). */
  serverMac: Uint8Array;
  clientMac: Uint8Array;
}
const labelCache = new WeakMap<Suite, AkeLabels>();

/**
 * RFC 9807 §6.4.2.1 CustomLabel { uint16 length = Nx; opaque label<8..255> = "OPAQUE-" + Label;
 * uint8 context<0..255> }, up to (and including) the context length byte.
 */
function customLabelPrefix(nx: number, label: string, contextLen: number): Uint8Array {
  const l = utf8('OPAQUE-' + label);
  const out = new Uint8Array(2 + 1 + l.length + 1);
  out.set(i2osp(nx, 2), 0);
  out[2] = l.length;
  out.set(l, 3);
  out[3 + l.length] = contextLen;
  return out;
}

function labels(suite: Suite): AkeLabels {
  let l = labelCache.get(suite);
  if (!l) {
    const { Nx, Nh } = suite;
    l = {
      handshakeSecret: customLabelPrefix(Nx, 'HandshakeSecret', Nh),
      sessionKey: customLabelPrefix(Nx, 'SessionKey', Nh),
      serverMac: customLabelPrefix(Nx, 'ServerMAC', 0),
      clientMac: customLabelPrefix(Nx, 'ClientMAC', 0),
    };
    labelCache.set(suite, l);
  }
  return l;
}

const ONE = Uint8Array.of(1);

/**
 * Derive-Secret(secret, label, transcript) = Expand(secret, CustomLabel, Nx), Nx <= Nh: one HMAC,
 * with `secret` already set up as an HMAC key (each secret derives two others).
 */
function deriveSecret(suite: Suite, secret: HmacKey, label: Uint8Array, transcriptHash?: Uint8Array): Uint8Array {
  const t = transcriptHash ? secret.mac(label, transcriptHash, ONE) : secret.mac(label, ONE);
  if (t.length === suite.Nx) return t;
  const out = t.slice(0, suite.Nx);
  zeroize(t);
  return out;
}

/** Checks the shared context at the API boundary (its length is encoded on 2 bytes). */
export function checkContext(context: Uint8Array): void {
  if (!(context instanceof Uint8Array) || context.length > 0xffff) {
    throw new OpaqueError(OpaqueErrorCode.InvalidArgument, 'context: must be a byte string of at most 65535 bytes', 'context');
  }
}

/**
 * RFC 9807 §6.4.2.1 Preamble as hash parts. `ke2Prefix` is credential_response || server_nonce ||
 * server_public_keyshare, optionally followed by server_mac (then the parts hash to
 * Hash(concat(preamble, server_mac))).
 */
export function preambleParts(context: Uint8Array, c: CleartextCredentials, ke1: Uint8Array, ke2Prefix: Uint8Array): Uint8Array[] {
  return [
    PREAMBLE_LABEL, i2osp(context.length, 2), context,
    i2osp(c.clientIdentity.length, 2), c.clientIdentity,
    ke1,
    i2osp(c.serverIdentity.length, 2), c.serverIdentity,
    ke2Prefix,
  ];
}

export interface AkeKeys { km2: Uint8Array; km3: Uint8Array; sessionKey: Uint8Array }

/** RFC 9807 §6.4.2.2 DeriveKeys(ikm, preamble), given Hash(preamble). */
export function deriveKeys(suite: Suite, ikm: Uint8Array, preambleHash: Uint8Array): AkeKeys {
  const l = labels(suite);
  const prk = extract(suite, ikm);
  const prkKey = hmacKey(suite.hash, prk);
  let handshakeSecret: Uint8Array, sessionKey: Uint8Array;
  try {
    handshakeSecret = deriveSecret(suite, prkKey, l.handshakeSecret, preambleHash);
    sessionKey = deriveSecret(suite, prkKey, l.sessionKey, preambleHash);
  } finally {
    prkKey.dispose();
    zeroize(prk);
  }
  const hsKey = hmacKey(suite.hash, handshakeSecret);
  try {
    const km2 = deriveSecret(suite, hsKey, l.serverMac);
    const km3 = deriveSecret(suite, hsKey, l.clientMac);
    return { km2, km3, sessionKey };
  } finally {
    hsKey.dispose();
    zeroize(handshakeSecret);
  }
}

/** A private key given as its scalar, or as a function computing k·element (a key held in an HSM). */
export type DhKey = Uint8Array | ((element: Uint8Array, field: string) => Uint8Array);

/** TripleDH ikm = concat(dh1, dh2, dh3) (RFC 9807 §6.4.3 / §6.4.4); each product is validated and wiped. */
function tripleDh(suite: Suite, pairs: readonly [DhKey, Uint8Array, string][]): Uint8Array {
  const n = suite.Noe;
  const ikm = new Uint8Array(3 * n);
  for (let i = 0; i < 3; i++) {
    const [k, e, field] = pairs[i]!;
    const dh = typeof k === 'function' ? k(e, field) : suite.group.scalarMult(k, e, field);
    ikm.set(dh, i * n);
    zeroize(dh);
  }
  return ikm;
}

/**
 * RFC 9807 §6.4.4 AuthServerRespond, written in place: `ke2` is the whole KE2 buffer whose
 * credential_response is already filled in; server_nonce, server_public_keyshare and server_mac
 * are written here. Draws server_nonce = random(Nn) then server_keyshare_seed = random(Nseed).
 * Returns the server AKE state (expected_client_mac, session_key).
 */
export function authServerRespond(
  suite: Suite, ke2: Uint8Array, context: Uint8Array, cleartext: CleartextCredentials, serverPrivateKey: DhKey,
  clientPublicKey: Uint8Array, ke1: Uint8Array, clientPublicKeyshare: Uint8Array, rng: RandomSource,
): { expectedClientMac: Uint8Array; sessionKey: Uint8Array } {
  const { Nn, Npk, Nm } = suite;
  const at = ke2.length - (Nn + Npk + Nm);
  ke2.set(randomBytes(rng, Nn), at);
  const seed = randomBytes(rng, suite.Nseed);
  const { privateKey: keyshare, publicKey } = deriveDiffieHellmanKeyPair(suite, seed);
  zeroize(seed);
  ke2.set(publicKey, at + Nn);
  let ikm: Uint8Array;
  try {
    ikm = tripleDh(suite, [
      [keyshare, clientPublicKeyshare, 'client_public_keyshare'],
      [serverPrivateKey, clientPublicKeyshare, 'client_public_keyshare'],
      [keyshare, clientPublicKey, 'client_public_key'],
    ]);
  } finally {
    zeroize(keyshare);
  }
  // Hash(preamble) now and Hash(concat(preamble, server_mac)) later share the preamble's blocks.
  const preamble = hashPrefix(suite.hash, preambleParts(context, cleartext, ke1, ke2.subarray(0, ke2.length - Nm)));
  let expectedClientMac: Uint8Array, sessionKey: Uint8Array;
  try {
    const keys = deriveKeys(suite, ikm, preamble.digest);
    zeroize(ikm);
    sessionKey = keys.sessionKey;
    // server_mac = MAC(Km2, Hash(preamble))
    const serverMac = suite.hash.hmac(keys.km2, preamble.digest);
    ke2.set(serverMac, ke2.length - Nm);
    // expected_client_mac = MAC(Km3, Hash(concat(preamble, server_mac)))
    expectedClientMac = suite.hash.hmac(keys.km3, preamble.extend(serverMac));
    zeroize(keys.km2, keys.km3);
  } finally {
    preamble.dispose();
    zeroize(ikm);
  }
  return { expectedClientMac, sessionKey };
}

export type AuthClientResult = { ok: true; ke3: Uint8Array; sessionKey: Uint8Array } | { ok: false };

/**
 * RFC 9807 §6.4.3 AuthClientFinalize. `ke2` is the received KE2; its server_public_keyshare is
 * validated by the multiplications. A server MAC mismatch (ServerAuthenticationError) is `{ ok: false }`.
 */
export function authClientFinalize(
  suite: Suite, context: Uint8Array, cleartext: CleartextCredentials, clientSecret: Uint8Array,
  clientPrivateKey: Uint8Array, ke1: Uint8Array, ke2: Uint8Array, serverPublicKeyshare: Uint8Array,
): AuthClientResult {
  const { Nm } = suite;
  const ikm = tripleDh(suite, [
    [clientSecret, serverPublicKeyshare, 'server_public_keyshare'],
    [clientSecret, cleartext.serverPublicKey, 'server_public_key'],
    [clientPrivateKey, serverPublicKeyshare, 'server_public_keyshare'],
  ]);
  const preamble = hashPrefix(suite.hash, preambleParts(context, cleartext, ke1, ke2.subarray(0, ke2.length - Nm)));
  let ke3: Uint8Array, sessionKey: Uint8Array;
  try {
    const keys = deriveKeys(suite, ikm, preamble.digest);
    zeroize(ikm);
    sessionKey = keys.sessionKey;
    const expectedServerMac = suite.hash.hmac(keys.km2, preamble.digest);
    zeroize(keys.km2);
    if (!ctEqual(ke2.subarray(ke2.length - Nm), expectedServerMac)) {
      zeroize(keys.km3, sessionKey);
      return { ok: false };
    }
    // client_mac = MAC(Km3, Hash(concat(preamble, expected_server_mac))); the received mac equals it.
    ke3 = suite.hash.hmac(keys.km3, preamble.extend(expectedServerMac));
    zeroize(keys.km3);
  } finally {
    preamble.dispose();
    zeroize(ikm);
  }
  return { ok: true, ke3, sessionKey };
}
