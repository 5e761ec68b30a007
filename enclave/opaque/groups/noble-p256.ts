/**
 * P-256 (RFC 9497 §4.3, P256-SHA256) on @noble/curves: the portable reference backend and the
 * browser client's. Elements are 33-byte SEC1 compressed points; scalars 32-byte big-endian.
 * HashToGroup = hash_to_curve P256_XMD:SHA-256_SSWU_RO_; HashToScalar = expand_message_xmd to
 * 48 bytes, big-endian, mod n.
 */
import { p256, p256_hasher } from '@noble/curves/nist.js';
import type { RandomSource } from '../bytes.ts';
import { expectLength } from '../bytes.ts';
import { OpaqueError, OpaqueErrorCode, invalidElement, invalidScalar } from '../errors.ts';
import type { Group } from '../group.ts';
import type { HashPrimitives } from '../hash.ts';
import { expandMessageXmd } from '../hash.ts';
import { nobleHash } from '../hash-noble.ts';
import { modInverse } from './noble-ristretto255.ts';

const Point = p256.Point;
export const P256_ORDER = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;
export const P256_P = 0xffffffff00000001000000000000000000000000ffffffffffffffffffffffffn;

export function beToBigint(b: Uint8Array): bigint {
  let x = 0n;
  for (const v of b) x = (x << 8n) | BigInt(v);
  return x;
}
export function bigintToBe(x: bigint, len: number): Uint8Array {
  const out = new Uint8Array(len);
  for (let i = len - 1; i >= 0; i--, x >>= 8n) out[i] = Number(x & 0xffn);
  return out;
}

/** Shared scalar and hash-to-scalar logic for every P-256 backend. */
export abstract class P256Base implements Pick<Group, 'id' | 'elementLen' | 'scalarLen' | 'hash' | 'checkScalar' | 'scalarInvert' | 'hashToScalar' | 'isZeroScalar' | 'randomScalar' | 'hashToGroup'> {
  readonly id = 'P256' as const;
  readonly elementLen = 33;
  readonly scalarLen = 32;
  constructor(readonly hash: HashPrimitives) {}

  checkScalar(k: Uint8Array, field: string): void {
    expectLength(k, 32, field);
    const x = beToBigint(k);
    if (x === 0n) throw invalidScalar(field, 'zero');
    if (x >= P256_ORDER) throw invalidScalar(field, 'not reduced');
  }
  scalarInvert(k: Uint8Array): Uint8Array {
    return bigintToBe(modInverse(beToBigint(k), P256_ORDER), 32);
  }
  hashToScalar(msg: Uint8Array, dst: Uint8Array): Uint8Array {
    const u = expandMessageXmd(this.hash, msg, dst, 48);
    return bigintToBe(beToBigint(u) % P256_ORDER, 32);
  }
  isZeroScalar(k: Uint8Array): boolean {
    return beToBigint(k) % P256_ORDER === 0n;
  }
  randomScalar(rng: RandomSource): Uint8Array {
    for (let i = 0; i < 1000; i++) {
      const b = rng(32);
      if (!(b instanceof Uint8Array) || b.length !== 32) {
        throw new OpaqueError(OpaqueErrorCode.RandomSourceError, 'random source returned the wrong length');
      }
      const x = beToBigint(b);
      if (x !== 0n && x < P256_ORDER) return Uint8Array.from(b);
    }
    throw new OpaqueError(OpaqueErrorCode.RandomSourceError, 'random source is not random');
  }
  hashToGroup(msg: Uint8Array, dst: Uint8Array): Uint8Array {
    return p256_hasher.hashToCurve(msg, { DST: dst }).toBytes(true);
  }
}

/** Decodes a 33-byte compressed SEC1 point, rejecting everything else with a typed fault. */
export function decodeP256(e: Uint8Array, field: string) {
  expectLength(e, 33, field);
  if (e[0] !== 2 && e[0] !== 3) throw invalidElement(field, 'not a compressed SEC1 point');
  let p;
  try {
    p = Point.fromBytes(e);
    p.assertValidity();
  } catch {
    throw invalidElement(field, 'not a point on P-256');
  }
  if (p.is0()) throw invalidElement(field, 'identity');
  return p;
}

export class NobleP256 extends P256Base implements Group {
  readonly backend = 'noble';
  constructor(hash: HashPrimitives = nobleHash('SHA-256')) {
    super(hash);
  }
  checkElement(e: Uint8Array, field: string): void {
    decodeP256(e, field);
  }
  scalarMult(k: Uint8Array, e: Uint8Array, field: string): Uint8Array {
    const r = decodeP256(e, field).multiply(beToBigint(k));
    if (r.is0()) throw invalidElement(field, 'product is the identity');
    return r.toBytes(true);
  }
  scalarMultBase(k: Uint8Array): Uint8Array {
    return Point.BASE.multiply(beToBigint(k)).toBytes(true);
  }
}
