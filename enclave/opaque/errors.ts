/**
 * Typed faults of the OPAQUE core (code range 1000-1099). Codes are stable: never renumber.
 *
 * Faults are for malformed input and misuse. A wrong password is not a fault: it is an
 * outcome value (`{ ok: false, outcome: 'wrong-password' }`) returned by the login functions.
 */
import { CodedError, type CodeOf } from '../api/codes.ts';

export const OpaqueErrorCode = {
  /** A field has the wrong length (message says field, expected and actual length). */
  InvalidLength: 1001,
  /** A group element is not a valid encoding: identity, non-canonical, or not on the curve. */
  InvalidElement: 1002,
  /** A scalar is zero, not reduced, or has the wrong length. */
  InvalidScalar: 1003,
  /** A message has bytes after its last field. */
  TrailingBytes: 1004,
  /** RFC 9497 §3.2.1 DeriveKeyPair found no non-zero scalar in 256 tries. */
  DeriveKeyPairError: 1005,
  /** RFC 9497 §4 InvalidInputError: the input hashes to the identity element. */
  InvalidInput: 1006,
  /** The key stretching function failed or has invalid parameters. */
  KsfError: 1007,
  /** An argument is out of range (identity too long, unknown suite, and so on). */
  InvalidArgument: 1008,
  /** The injected random source returned the wrong number of bytes or ran dry. */
  RandomSourceError: 1009,
  /** A state object was used twice or after it was zeroized. */
  StateReused: 1010,
} as const;
export type OpaqueErrorCode = CodeOf<typeof OpaqueErrorCode>;

export class OpaqueError extends CodedError<OpaqueErrorCode> {
  override readonly name = 'OpaqueError';
  constructor(
    code: OpaqueErrorCode,
    message: string,
    /** The protocol field the fault is about, as named in RFC 9807 (for example `blinded_message`). */
    readonly field?: string,
  ) {
    super(code, message);
  }
}

export function invalidLength(field: string, expected: number, actual: number): OpaqueError {
  return new OpaqueError(
    OpaqueErrorCode.InvalidLength,
    `${field}: expected ${expected} bytes, got ${actual}`,
    field,
  );
}

export function invalidElement(field: string, why: string): OpaqueError {
  return new OpaqueError(OpaqueErrorCode.InvalidElement, `${field}: invalid group element (${why})`, field);
}

export function invalidScalar(field: string, why: string): OpaqueError {
  return new OpaqueError(OpaqueErrorCode.InvalidScalar, `${field}: invalid scalar (${why})`, field);
}
