/**
 * The prime-order group interface the OPRF (RFC 9497 §2.1) and OPAQUE-3DH (RFC 9807 §6.4)
 * need, and nothing more. Elements and scalars cross it as their canonical encodings
 * (RFC 9497 §4.1 ristretto255: 32-byte elements, 32-byte little-endian scalars;
 * §4.3 P-256: 33-byte SEC1 compressed elements, 32-byte big-endian scalars), so a backend can
 * keep whatever internal form is fastest.
 *
 * Every backend must:
 * - reject, with a typed `OpaqueError` naming the field, any element encoding that is not
 *   canonical, not on the curve, or the identity (RFC 9497 §2.1 DeserializeElement);
 * - reject scalars that are zero or not reduced (DeserializeScalar);
 * - never return the identity from a multiplication (it throws `InvalidElement` instead).
 */
import type { RandomSource } from './bytes.ts';
import type { HashPrimitives } from './hash.ts';

export type GroupId = 'ristretto255' | 'P256';

export interface Group {
  readonly id: GroupId;
  /** A short name of the implementation, printed by benchmarks (for example `noble`, `sodium-wasm`). */
  readonly backend: string;
  /** Encoded element length (Noe = Npk). */
  readonly elementLen: number;
  /** Encoded scalar length (Nok = Nsk). */
  readonly scalarLen: number;
  /** The hash this group's hash-to-curve and hash-to-scalar use (SHA-512 / SHA-256). */
  readonly hash: HashPrimitives;

  /** Throws `InvalidElement` / `InvalidLength` naming `field` unless `e` is a valid non-identity element. */
  checkElement(e: Uint8Array, field: string): void;
  /** Throws `InvalidScalar` / `InvalidLength` naming `field` unless `k` is a reduced non-zero scalar. */
  checkScalar(k: Uint8Array, field: string): void;

  /** k·E. `e` is validated (it may come from the network); a result at the identity throws. */
  scalarMult(k: Uint8Array, e: Uint8Array, field: string): Uint8Array;
  /** k·G. */
  scalarMultBase(k: Uint8Array): Uint8Array;
  /** k⁻¹ mod order. */
  scalarInvert(k: Uint8Array): Uint8Array;

  /** RFC 9380 hash_to_curve with the suite's map (RFC 9497 §4.1 / §4.3 HashToGroup). */
  hashToGroup(msg: Uint8Array, dst: Uint8Array): Uint8Array;
  /** RFC 9497 §4.1 / §4.3 HashToScalar. May return zero (callers that need non-zero check). */
  hashToScalar(msg: Uint8Array, dst: Uint8Array): Uint8Array;
  /** True if the scalar encoding is all zero (after reduction). */
  isZeroScalar(k: Uint8Array): boolean;

  /**
   * RFC 9497 §2.1 RandomScalar by rejection sampling: draw `scalarLen` bytes from `rng`, mask the
   * bits above the order's bit length, accept if reduced and non-zero. A test-vector scalar fed
   * through a queue RNG comes out unchanged.
   */
  randomScalar(rng: RandomSource): Uint8Array;
}
