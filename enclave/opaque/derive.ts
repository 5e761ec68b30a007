/**
 * Key derivation shared by client and server: the KDF of RFC 9807 §2.2 (HKDF Extract/Expand
 * over the suite hash, with `info` passed as parts so that nothing is concatenated), the
 * per-credential OPRF key (§5.2.2 / §6.3.2.2: Expand(oprf_seed, credential_identifier ||
 * "OprfKey", Nok) then DeriveKeyPair(seed, "OPAQUE-DeriveKeyPair")),
 * DeriveDiffieHellmanKeyPair (§6.4.1) and the RFC 9807 §1.2 random(n) on the injected source.
 */
import { type RandomSource, utf8, zeroize } from './bytes.ts';
import { OpaqueError, OpaqueErrorCode, invalidLength } from './errors.ts';
import { type HmacKey, hmacKey } from './hash.ts';
import type { Ksf } from './ksf.ts';
import { deriveKeyPairInfo, deriveKeyPairScalar } from './oprf.ts';
import type { Suite } from './suite.ts';

/** Labels of RFC 9807 §4.1.2, §5.2.2, §6.3.2.2 and §6.4.1, encoded once. */
export const LABEL = Object.freeze({
  oprfKey: utf8('OprfKey'),
  maskingKey: utf8('MaskingKey'),
  authKey: utf8('AuthKey'),
  exportKey: utf8('ExportKey'),
  privateKey: utf8('PrivateKey'),
  credentialResponsePad: utf8('CredentialResponsePad'),
});
const INFO_OPRF_KEY = deriveKeyPairInfo(utf8('OPAQUE-DeriveKeyPair'));
const INFO_DH_KEY = deriveKeyPairInfo(utf8('OPAQUE-DeriveDiffieHellmanKeyPair'));
const COUNTER = Array.from({ length: 256 }, (_, i) => Uint8Array.of(i));
const EMPTY = new Uint8Array(0);

/**
 * RFC 5869 §2.2 Extract(salt = "", ikm) (RFC 9807 §2.2), ikm = concat(...ikmParts): HMAC keyed
 * with Nh zero bytes, a public constant, so its pads are hashed once per suite (`hmacKey`).
 */
export function extract(suite: Suite, ...ikmParts: Uint8Array[]): Uint8Array {
  let k = extractKeyCache.get(suite);
  if (!k) extractKeyCache.set(suite, (k = hmacKey(suite.hash, zeroSalt(suite))));
  return k.mac(...ikmParts);
}
const extractKeyCache = new WeakMap<Suite, HmacKey>();

/**
 * RFC 9807 §5.2.3 / §6.3.2.3: stretched_oprf_output = Stretch(oprf_output);
 * randomized_password = Extract("", concat(oprf_output, stretched_oprf_output)).
 */
export async function randomizePassword(suite: Suite, ksf: Ksf, oprfOutput: Uint8Array): Promise<Uint8Array> {
  const stretched = await ksf.stretch(oprfOutput, suite.Nh);
  try {
    return extract(suite, oprfOutput, stretched);
  } finally {
    zeroize(stretched);
  }
}
const saltCache = new WeakMap<Suite, Uint8Array>();
function zeroSalt(suite: Suite): Uint8Array {
  let s = saltCache.get(suite);
  if (!s) saltCache.set(suite, (s = new Uint8Array(suite.Nh)));
  return s;
}

/**
 * RFC 5869 §2.3 Expand(prk, info, L) with info = concat(...infoParts). One HMAC when L <= Nh
 * (every use in OPAQUE but the credential response pad).
 */
export function expand(suite: Suite, prk: Uint8Array, length: number, ...infoParts: Uint8Array[]): Uint8Array {
  const h = suite.hash;
  const n = Math.ceil(length / h.outputLen);
  if (n === 1) {
    const t = h.hmac(prk, ...infoParts, COUNTER[1]!);
    return length === t.length ? t : truncate(t, length);
  }
  if (n > 255) throw new RangeError('expand: length too large');
  // One keyed HMAC for all n blocks: each T(i) XORed into zeros (expandXorInto) and wiped.
  const out = new Uint8Array(n * h.outputLen);
  expandXorInto(suite, prk, out, ...infoParts);
  return length === out.length ? out : truncate(out, length);
}

/**
 * target ^= Expand(prk, concat(...infoParts), target.length) (RFC 5869 §2.3), block by block: the
 * credential response's masking (RFC 9807 §6.3.2.2) without the pad in an array of its own (a
 * fresh ArrayBuffer per login; bench/README.md 2026-12-06 (evening)). Each T(i) is wiped.
 */
export function expandXorInto(suite: Suite, prk: Uint8Array, target: Uint8Array, ...infoParts: Uint8Array[]): void {
  const h = suite.hash;
  const n = Math.ceil(target.length / h.outputLen);
  if (n > 255) throw new RangeError('expand: length too large');
  const key = hmacKey(h, prk);
  let t: Uint8Array = EMPTY;
  try {
    for (let i = 1; i <= n; i++) {
      const next = key.mac(t, ...infoParts, COUNTER[i]!);
      zeroize(t);
      t = next;
      const off = (i - 1) * h.outputLen;
      const m = Math.min(h.outputLen, target.length - off);
      for (let j = 0; j < m; j++) target[off + j]! ^= t[j]!;
    }
  } finally {
    zeroize(t);
    key.dispose();
  }
}

/** A copy of the first `length` bytes; the rest of the (secret) block is wiped. */
function truncate(b: Uint8Array, length: number): Uint8Array {
  const out = b.slice(0, length);
  zeroize(b);
  return out;
}

/** RFC 9807 §1.2 random(n) from the injected source, checked. */
export function randomBytes(rng: RandomSource, n: number): Uint8Array {
  const b = rng(n);
  if (!(b instanceof Uint8Array) || b.length !== n) {
    throw new OpaqueError(OpaqueErrorCode.RandomSourceError, `random source returned ${b instanceof Uint8Array ? b.length : typeof b} bytes, wanted ${n}`);
  }
  return b;
}

/**
 * RFC 9807 §5.2.2 / §6.3.2.2: seed = Expand(oprf_seed, concat(credential_identifier, "OprfKey"), Nok);
 * (oprf_key, _) = DeriveKeyPair(seed, "OPAQUE-DeriveKeyPair"). Only the scalar is derived.
 */
export function deriveOprfKey(suite: Suite, oprfSeed: Uint8Array, credentialIdentifier: Uint8Array): Uint8Array {
  if (oprfSeed.length !== suite.Nh) throw invalidLength('oprf_seed', suite.Nh, oprfSeed.length);
  if (!(credentialIdentifier instanceof Uint8Array)) throw invalidLength('credential_identifier', 1, -1);
  const seed = expand(suite, oprfSeed, suite.Nok, credentialIdentifier, LABEL.oprfKey);
  try {
    return deriveKeyPairScalar(suite, seed, INFO_OPRF_KEY);
  } finally {
    zeroize(seed);
  }
}

/** RFC 9807 §6.4.1 DeriveDiffieHellmanKeyPair(seed) = DeriveKeyPair(seed, "OPAQUE-DeriveDiffieHellmanKeyPair"). */
export function deriveDiffieHellmanKeyPair(suite: Suite, seed: Uint8Array): { privateKey: Uint8Array; publicKey: Uint8Array } {
  if (seed.length !== suite.Nseed) throw invalidLength('seed', suite.Nseed, seed.length);
  const privateKey = deriveKeyPairScalar(suite, seed, INFO_DH_KEY);
  return { privateKey, publicKey: suite.group.scalarMultBase(privateKey) };
}
