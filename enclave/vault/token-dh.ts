/**
 * The P-256 server key's Diffie-Hellman done in the token (RFC 9807 §6.4.4 dh2 =
 * DH(server_private_key, client_public_keyshare); RFC 9497 §4.3 P-256 encoding), for tokens
 * with CKM_ECDH1_DERIVE (PKCS#11 v2.40 §2.3.8): the private key k never leaves the token.
 *
 * CKM_ECDH1_DERIVE with CKD_NULL gives only x(k·M). For the whole point Q = k·M:
 *   x1 = x(k·M) and x2 = x(k·(M + G)) = x(Q + K), K = k·G being the public key, which the
 *   enclave knows in full. Then (Okeya-Sakurai y-recovery with the known point K = (xK, yK),
 *   a = -3):   y(Q) = [2b + (a + xK·x1)(xK + x1) − x2·(xK − x1)²] / (2·yK)   for Q ≠ ±K.
 * Q = ±K only when M = ±G: then Q = ±K is answered directly (M = -G has no M + G). The result
 * is checked to lie on the curve. Cost: two token derivations, one point addition and a
 * handful of multiplications mod p (the inverse of 2·yK is computed once).
 *
 * What passes through enclave memory: x1, x2 and the product k·M (a DH share of the 3DH input,
 * which the enclave hashes anyway); k itself does not. Bigints can not be wiped.
 */
import { EnclaveFault, PlatformFault } from '../api/codes.ts';
import { ECDH } from 'node:crypto';
import { invalidElement } from '../opaque/errors.ts';
import { modInverseVartime } from '../opaque/groups/node-p256.ts';
import { P256_P } from '../opaque/groups/noble-p256.ts';
import type { KeyHandle, Token } from '../token.ts';

const P = P256_P;
const A = P - 3n;
const B = 0x5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604bn;
const GX = 0x6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296n;
const GY = 0x4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5n;

const mod = (x: bigint) => ((x % P) + P) % P;
const big = (b: Uint8Array) => BigInt('0x' + Buffer.from(b.buffer, b.byteOffset, b.length).toString('hex'));
const bytes32 = (x: bigint) => Buffer.from(x.toString(16).padStart(64, '0'), 'hex');

function uncompressed(x: bigint, y: bigint): Uint8Array {
  return Buffer.concat([Buffer.from([4]), bytes32(x), bytes32(y)]);
}

function compressed(x: bigint, y: bigint): Uint8Array {
  return Buffer.concat([Buffer.from([y & 1n ? 3 : 2]), bytes32(x)]);
}

function onCurve(x: bigint, y: bigint): boolean {
  return mod(y * y) === mod(x * x * x + A * x + B);
}

/** A 33-byte compressed P-256 element, validated, as affine coordinates. */
function decodeElement(e: Uint8Array, field: string): { x: bigint; y: bigint } {
  if (e.length !== 33 || (e[0] !== 2 && e[0] !== 3)) throw invalidElement(field, 'not a compressed SEC1 point');
  let u: Buffer;
  try {
    u = ECDH.convertKey(e, 'prime256v1', undefined, undefined, 'uncompressed') as Buffer;
  } catch {
    throw invalidElement(field, 'not a point on P-256');
  }
  return { x: big(u.subarray(1, 33)), y: big(u.subarray(33, 65)) };
}

export interface TokenP256Key {
  /** The public key K, 33-byte compressed SEC1 (the OPAQUE server_public_key). */
  publicKey: Uint8Array;
  /** k·M for a compressed element M (validated, naming `field`), compressed. */
  dh(element: Uint8Array, field: string): Uint8Array;
}

/** Token output of an exact length, or a typed fault (a faulty token must not crash the enclave). */
function exact(b: unknown, len: number, what: string): Uint8Array {
  if (!(b instanceof Uint8Array) || b.length !== len) throw new EnclaveFault(PlatformFault.TokenError, `token: ${what} has the wrong length`);
  return b;
}

export function tokenP256Key(token: Token, key: KeyHandle): TokenP256Key {
  if (!token.ecPublicKey || !token.ecdhX) throw new EnclaveFault(PlatformFault.TokenError, 'token has no EC support');
  const pub = exact(token.ecPublicKey(key), 65, 'EC public key');
  if (pub[0] !== 4) throw new EnclaveFault(PlatformFault.TokenError, 'token: EC public key is not an uncompressed point');
  const rawEcdhX = token.ecdhX.bind(token);
  const ecdhX = (k: KeyHandle, p: Uint8Array) => exact(rawEcdhX(k, p), 32, 'ECDH result');
  const kx = big(pub.subarray(1, 33));
  const ky = big(pub.subarray(33, 65));
  const inv2ky = modInverseVartime(mod(2n * ky), P);
  const publicKey = compressed(kx, ky);
  return {
    publicKey,
    dh(element: Uint8Array, field: string): Uint8Array {
      const m = decodeElement(element, field);
      if (m.x === GX) return m.y === GY ? Uint8Array.from(publicKey) : compressed(kx, mod(-ky)); // M = ±G
      const x1 = big(ecdhX(key, uncompressed(m.x, m.y)));
      // S = M + G (affine, M ≠ ±G)
      const lambda = mod((GY - m.y) * modInverseVartime(mod(GX - m.x), P));
      const sx = mod(lambda * lambda - m.x - GX);
      const sy = mod(lambda * (m.x - sx) - m.y);
      const x2 = big(ecdhX(key, uncompressed(sx, sy)));
      if (x1 === kx) return Uint8Array.from(publicKey); // Q = K (Q = -K needs M = -G, handled above)
      const y1 = mod((2n * B + (A + kx * x1) * (kx + x1) - x2 * mod(kx - x1) ** 2n) * inv2ky);
      if (!onCurve(x1, y1)) throw invalidElement(field, 'token ECDH result is not on P-256');
      return compressed(x1, y1);
    },
  };
}
