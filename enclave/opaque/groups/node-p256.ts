/**
 * P-256 (RFC 9497 §4.3, P256-SHA256) with the multiplications in node:crypto (OpenSSL): the
 * server's fast backend. Elements are 33-byte SEC1 compressed points, scalars 32-byte big-endian;
 * hashing to the group and to scalars is P256Base's (RFC 9380 SSWU on @noble/curves).
 *
 * OpenSSL's ECDH gives only x(k·M). The full point comes from the Okeya–Sakurai y-recovery for
 * short Weierstrass curves: with M = (x0, y0), x1 = x(k·M), x2 = x((k+1)·M) and a = -3,
 *   y(k·M) = [2b + (a + x0·x1)(x0 + x1) − x2·(x0 − x1)²] / (2·y0)   (needs k·M ≠ ±M),
 * so a variable-base multiplication costs one decompression of M (`ECDH.convertKey`, which is
 * also the validation: it rejects x ≥ p, an x with no square root and every bad prefix), two
 * ECDH derivations and one inversion mod p (Lehmer's extended Euclid). k = 1 and k = n − 1 (the
 * k·M = ±M cases, and the only k for which k + 1 ≡ 0) are answered directly. The recovered point
 * is checked to be on the curve before it is returned.
 *
 * Caveats: the y-recovery and the bigint conversions run in variable time on values derived from
 * the secret scalar and from the shared x-coordinates (as @noble/curves' bigint arithmetic does);
 * OpenSSL's multiplications are constant time. OpenSSL keeps the last private key in the ECDH
 * object, so every multiplication ends by loading the public scalar 1 over it (one base
 * multiplication, about 8 µs). Bigints and hex strings holding secrets cannot be wiped.
 */
import { ECDH, createECDH } from 'node:crypto';
import { expectLength } from '../bytes.ts';
import { OpaqueError, OpaqueErrorCode, invalidElement, invalidScalar } from '../errors.ts';
import type { Group } from '../group.ts';
import type { HashPrimitives } from '../hash.ts';
import { expandMessageXmd } from '../hash.ts';
import { P256Base, P256_ORDER, P256_P, decodeP256 } from './noble-p256.ts';

const P = P256_P;
const N = P256_ORDER;
const B = 0x5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604bn;
const TWO_B = (2n * B) % P;
const CURVE = 'prime256v1';

function bufView(b: Uint8Array): Buffer {
  return Buffer.from(b.buffer, b.byteOffset, b.length);
}
/** Big-endian bytes to bigint (through hex: several times faster than a byte loop). */
function toBig(b: Uint8Array): bigint {
  return b.length === 0 ? 0n : BigInt('0x' + bufView(b).toString('hex'));
}
/** bigint in [0, 2^256) to 32 big-endian bytes. */
function toBytes32(x: bigint): Buffer {
  return Buffer.from(x.toString(16).padStart(64, '0'), 'hex');
}

/** A plain Uint8Array copy of `b`, then `b` zeroed (small Buffers share a pool). */
function copyAndWipe(b: Buffer): Uint8Array {
  const r = new Uint8Array(b);
  b.fill(0);
  return r;
}

const TWO_POW_48 = 0x1000000000000n;

/**
 * a⁻¹ mod m for odd m and gcd(a, m) = 1, by Lehmer's extended Euclid (Knuth, TAOCP vol. 2,
 * Algorithm 4.5.2L): runs of quotients are found on the leading 48 bits in double-precision
 * arithmetic (all values stay below 2^53, so they are exact) and applied to the bigints in one
 * 2×2 step. Faster than the plain bigint Euclid, which test/enclave/opaque/groups.test.ts checks it against
 * (figure in bench/README.md). Variable time; for moduli below 2^1000 (the leading bits go through a double).
 */
export function modInverseVartime(a: bigint, m: bigint): bigint {
  let u = m;
  let v = ((a % m) + m) % m;
  let u1 = 0n; // u ≡ u1·a (mod m)
  let v1 = 1n; // v ≡ v1·a (mod m)
  while (v >= TWO_POW_48) {
    let shift = Math.floor(Math.log2(Number(u))) - 47;
    if (shift < 0) shift = 0;
    const sh = BigInt(shift);
    let uh = Number(u >> sh);
    let vh = Number(v >> sh);
    let A = 1;
    let Bc = 0;
    let C = 0;
    let D = 1;
    for (;;) {
      const dc = vh + C;
      const dd = vh + D;
      if (dc === 0 || dd === 0) break;
      const q = Math.floor((uh + A) / dc);
      if (q !== Math.floor((uh + Bc) / dd)) break;
      let t = A - q * C;
      A = C;
      C = t;
      t = Bc - q * D;
      Bc = D;
      D = t;
      t = uh - q * vh;
      uh = vh;
      vh = t;
    }
    if (Bc === 0) {
      // No quotient run found on the leading bits: one full-precision step.
      const q = u / v;
      const t = u - q * v;
      u = v;
      v = t;
      const t1 = u1 - q * v1;
      u1 = v1;
      v1 = t1;
    } else {
      const bA = BigInt(A);
      const bB = BigInt(Bc);
      const bC = BigInt(C);
      const bD = BigInt(D);
      const nu = bA * u + bB * v;
      v = bC * u + bD * v;
      u = nu;
      const nu1 = bA * u1 + bB * v1;
      v1 = bC * u1 + bD * v1;
      u1 = nu1;
    }
  }
  while (v !== 0n) {
    const q = u / v;
    const t = u - q * v;
    u = v;
    v = t;
    const t1 = u1 - q * v1;
    u1 = v1;
    v1 = t1;
  }
  if (u !== 1n) throw new RangeError('not invertible');
  u1 %= m;
  return u1 < 0n ? u1 + m : u1;
}

export class NodeP256 extends P256Base implements Group {
  readonly backend = 'node-ecdh';
  private readonly ecdh = createECDH(CURVE);
  /** The public scalar loaded over each secret one (see the file header). */
  private static readonly SCRUB = toBytes32(1n);

  constructor(hash: HashPrimitives) {
    super(hash);
    if (hash.name !== 'SHA-256') {
      throw new OpaqueError(OpaqueErrorCode.InvalidArgument, 'P-256 (RFC 9497 §4.3) uses SHA-256');
    }
  }

  /** Validates a compressed point and returns its uncompressed form (04 || x || y). */
  private decompress(e: Uint8Array, field: string): Buffer {
    expectLength(e, 33, field);
    if (e[0] !== 2 && e[0] !== 3) throw invalidElement(field, 'not a compressed SEC1 point');
    let u: Buffer;
    try {
      u = ECDH.convertKey(e, CURVE, undefined, undefined, 'uncompressed') as Buffer;
    } catch {
      throw invalidElement(field, 'not a point on P-256');
    }
    if (u.length !== 65 || u[0] !== 4) throw invalidElement(field, 'not a point on P-256');
    return u;
  }

  /** The scalar as a bigint, rejecting zero, unreduced or wrong-length input. */
  private scalarArg(k: Uint8Array): bigint {
    expectLength(k, 32, 'scalar');
    const x = toBig(k);
    if (x === 0n) throw invalidScalar('scalar', 'zero');
    if (x >= N) throw invalidScalar('scalar', 'not reduced');
    return x;
  }

  checkElement(e: Uint8Array, field: string): void {
    this.decompress(e, field);
  }

  scalarMult(k: Uint8Array, e: Uint8Array, field: string): Uint8Array {
    const mu = this.decompress(e, field);
    const kb = this.scalarArg(k);
    // k·M = ±M: the recovery formula divides by zero there, and k + 1 = n has no ECDH key.
    if (kb === 1n) return Uint8Array.from(e);
    if (kb === N - 1n) {
      const r = Uint8Array.from(e);
      r[0] = r[0]! ^ 1;
      return r;
    }
    const ecdh = this.ecdh;
    const k1 = toBytes32(kb + 1n);
    let x1b: Buffer;
    let x2b: Buffer;
    try {
      ecdh.setPrivateKey(k);
      x1b = ecdh.computeSecret(mu);
      ecdh.setPrivateKey(k1);
      x2b = ecdh.computeSecret(mu);
    } finally {
      ecdh.setPrivateKey(NodeP256.SCRUB);
      k1.fill(0);
    }
    try {
      const x0 = toBig(mu.subarray(1, 33));
      const y0 = toBig(mu.subarray(33, 65));
      const x1 = toBig(x1b);
      const x2 = toBig(x2b);
      if (x1 === x0) {
        // Unreachable for a prime-order point and k ∉ {1, n − 1}; kept as a safe fallback.
        return decodeP256(e, field).multiply(kb).toBytes(true);
      }
      const d = x0 - x1;
      let num = (TWO_B + ((x0 * x1 - 3n) % P) * (x0 + x1) - x2 * ((d * d) % P)) % P;
      if (num < 0n) num += P;
      const y1 = (num * modInverseVartime(2n * y0, P)) % P;
      // Fault check: (x1, y1) must be on the curve y² = x³ − 3x + b.
      if ((y1 * y1 - ((((x1 * x1) % P) - 3n) * x1 + B)) % P !== 0n) {
        throw new Error('node-p256: y-coordinate recovery failed');
      }
      const out = new Uint8Array(33);
      out[0] = 2 | Number(y1 & 1n);
      out.set(x1b, 1);
      return out;
    } finally {
      x1b.fill(0);
      x2b.fill(0);
    }
  }

  scalarMultBase(k: Uint8Array): Uint8Array {
    this.scalarArg(k);
    const ecdh = this.ecdh;
    try {
      ecdh.setPrivateKey(k);
      return new Uint8Array(ecdh.getPublicKey(undefined, 'compressed'));
    } finally {
      ecdh.setPrivateKey(NodeP256.SCRUB);
    }
  }

  override scalarInvert(k: Uint8Array): Uint8Array {
    expectLength(k, 32, 'scalar');
    const x = toBig(k) % N;
    if (x === 0n) throw invalidScalar('scalar', 'zero');
    return copyAndWipe(toBytes32(modInverseVartime(x, N)));
  }

  override hashToScalar(msg: Uint8Array, dst: Uint8Array): Uint8Array {
    const u = expandMessageXmd(this.hash, msg, dst, 48);
    const r = copyAndWipe(toBytes32(toBig(u) % N));
    u.fill(0);
    return r;
  }
}
