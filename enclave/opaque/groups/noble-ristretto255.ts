/**
 * ristretto255 (RFC 9496) on @noble/curves: the portable reference backend, and what a browser
 * client uses. RFC 9497 §4.1: HashToGroup = hash_to_ristretto255 (expand_message_xmd SHA-512,
 * 64 bytes, one-way map); HashToScalar = expand_message_xmd to 64 bytes, little-endian, mod L.
 *
 * Caveat (noble's own): variable-base multiplication of a non-base point by a secret scalar is
 * not blinded, so its timing can depend on the scalar.
 */
import { ristretto255, ristretto255_hasher } from '@noble/curves/ed25519.js';
import type { RandomSource } from '../bytes.ts';
import { expectLength } from '../bytes.ts';
import { OpaqueError, OpaqueErrorCode, invalidElement, invalidScalar } from '../errors.ts';
import type { Group } from '../group.ts';
import type { HashPrimitives } from '../hash.ts';
import { expandMessageXmd } from '../hash.ts';
import { nobleHash } from '../hash-noble.ts';

const Point = ristretto255.Point;
export const RISTRETTO_ORDER = 2n ** 252n + 27742317777372353535851937790883648493n;

export function leToBigint(b: Uint8Array): bigint {
  let x = 0n;
  for (let i = b.length - 1; i >= 0; i--) x = (x << 8n) | BigInt(b[i]!);
  return x;
}
export function bigintToLe(x: bigint, len: number): Uint8Array {
  const out = new Uint8Array(len);
  for (let i = 0; i < len; i++, x >>= 8n) out[i] = Number(x & 0xffn);
  return out;
}

export function modInverse(a: bigint, m: bigint): bigint {
  let [r0, r1] = [((a % m) + m) % m, m];
  let [s0, s1] = [1n, 0n];
  while (r1 !== 0n) {
    const q = r0 / r1;
    [r0, r1] = [r1, r0 - q * r1];
    [s0, s1] = [s1, s0 - q * s1];
  }
  if (r0 !== 1n) throw new RangeError('not invertible');
  return ((s0 % m) + m) % m;
}

/** Shared scalar and hash-to-scalar logic for every ristretto255 backend. */
export abstract class Ristretto255Base implements Pick<Group, 'id' | 'elementLen' | 'scalarLen' | 'hash' | 'checkScalar' | 'scalarInvert' | 'hashToScalar' | 'isZeroScalar' | 'randomScalar'> {
  readonly id = 'ristretto255' as const;
  readonly elementLen = 32;
  readonly scalarLen = 32;
  constructor(readonly hash: HashPrimitives) {}

  checkScalar(k: Uint8Array, field: string): void {
    expectLength(k, 32, field);
    const x = leToBigint(k);
    if (x === 0n) throw invalidScalar(field, 'zero');
    if (x >= RISTRETTO_ORDER) throw invalidScalar(field, 'not reduced');
  }
  scalarInvert(k: Uint8Array): Uint8Array {
    return bigintToLe(modInverse(leToBigint(k), RISTRETTO_ORDER), 32);
  }
  hashToScalar(msg: Uint8Array, dst: Uint8Array): Uint8Array {
    const u = expandMessageXmd(this.hash, msg, dst, 64);
    return bigintToLe(leToBigint(u) % RISTRETTO_ORDER, 32);
  }
  isZeroScalar(k: Uint8Array): boolean {
    return leToBigint(k) % RISTRETTO_ORDER === 0n;
  }
  randomScalar(rng: RandomSource): Uint8Array {
    for (let i = 0; i < 1000; i++) {
      const b = rng(32);
      if (!(b instanceof Uint8Array) || b.length !== 32) {
        throw new OpaqueError(OpaqueErrorCode.RandomSourceError, 'random source returned the wrong length');
      }
      const k = Uint8Array.from(b);
      k[31]! &= 0x1f; // the order is below 2^253
      const x = leToBigint(k);
      if (x !== 0n && x < RISTRETTO_ORDER) return k;
    }
    throw new OpaqueError(OpaqueErrorCode.RandomSourceError, 'random source is not random');
  }
}

export class NobleRistretto255 extends Ristretto255Base implements Group {
  readonly backend = 'noble';
  constructor(hash: HashPrimitives = nobleHash('SHA-512')) {
    super(hash);
  }
  private decode(e: Uint8Array, field: string) {
    expectLength(e, 32, field);
    let p;
    try {
      p = Point.fromBytes(e);
    } catch {
      throw invalidElement(field, 'not a canonical ristretto255 encoding');
    }
    if (p.is0()) throw invalidElement(field, 'identity');
    return p;
  }
  checkElement(e: Uint8Array, field: string): void {
    this.decode(e, field);
  }
  scalarMult(k: Uint8Array, e: Uint8Array, field: string): Uint8Array {
    const r = this.decode(e, field).multiply(leToBigint(k));
    if (r.is0()) throw invalidElement(field, 'product is the identity');
    return r.toBytes();
  }
  scalarMultBase(k: Uint8Array): Uint8Array {
    return Point.BASE.multiply(leToBigint(k)).toBytes();
  }
  hashToGroup(msg: Uint8Array, dst: Uint8Array): Uint8Array {
    const u = expandMessageXmd(this.hash, msg, dst, 64);
    // RFC 9496 §4.3.4 one-way map (noble calls it deriveToCurve).
    return ristretto255_hasher.deriveToCurve!(u).toBytes();
  }
}
