/**
 * Stable numeric codes of the enclave message API, in ranges per module. Never renumber; add at
 * the end of a range. Faults (malformed input, misuse, broken state) are `EnclaveFault` responses
 * with one of these codes; outcomes (wrong password, locked, not registered) are response values.
 *
 *   1000-1099  OPAQUE core (enclave/opaque/errors.ts)
 *   2000-2099  message codec
 *   2100-2199  request handling (state, sessions, staging)
 *   2200-2299  storage integrity (sealing, rollback, index)
 *   2300-2399  platform and token
 *   2400-2499  lifecycle (self-tests, provisioning, zeroization)
 */
export const Codec = {
  UnsupportedVersion: 2001,
  UnknownTag: 2002,
  Truncated: 2003,
  TrailingBytes: 2004,
  FieldTooLong: 2005,
  FieldTooShort: 2006,
  InvalidValue: 2007,
  TooManyItems: 2008,
  MessageTooLarge: 2009,
} as const;

export const Handling = {
  UnknownSession: 2101,
  SessionExpired: 2102,
  UnknownStage: 2103,
  StageExpired: 2104,
  SuiteMismatch: 2105,
  BadProof: 2106,
  AlreadyRegistered: 2107,
  NotAuthorized: 2108,
  InvalidAttemptLimit: 2109,
  BatchOutOfOrder: 2110,
  NoBatchPending: 2111,
  BatchTooLarge: 2112,
  DuplicateRecordInLoad: 2113,
  TooManySessions: 2114,
  BadPayload: 2115,
  /** Per-user authorization (enclave/api/auth.ts): no token in the operation, or the vault has no issuer. */
  AuthRequired: 2116,
  /** A token that does not verify: malformed, unknown key, bad signature, wrong issuer or claims. */
  AuthInvalid: 2117,
  AuthExpired: 2118,
  /** A valid token for another record id. */
  AuthWrongSubject: 2119,
  /** A valid token for another vault. */
  AuthWrongAudience: 2120,
  /** A RegisterStart naming a guess pacing schedule the firmware does not have (api/pacing.ts). */
  InvalidPacing: 2121,
  /** A RegisterStart whose pacing is laxer than the vault's provisioned floor. */
  PacingBelowFloor: 2122,
} as const;

export const Integrity = {
  SealedRecordInvalid: 2201,
  RollbackDetected: 2202,
  IndexMismatch: 2203,
  NotLoaded: 2204,
  AuditChainBroken: 2205,
  /** An AuditVerify whose anchor is not one the enclave gave for that point of its committed chain. */
  AuditAnchorInvalid: 2206,
} as const;

export const Platform = {
  TokenError: 2301,
  NvramError: 2302,
  NvramCorrupt: 2303,
  NvramFull: 2304,
  RandomError: 2305,
} as const;

export const Lifecycle = {
  SelfTestFailed: 2401,
  NotReady: 2402,
  Zeroized: 2403,
  OperatorAuthFailed: 2404,
  NotProvisioned: 2405,
  /** The issuer set a device was booted with is not the one its NVRAM was provisioned with. */
  AuthConfigMismatch: 2406,
} as const;

export type FaultCode =
  | (typeof Codec)[keyof typeof Codec]
  | (typeof Handling)[keyof typeof Handling]
  | (typeof Integrity)[keyof typeof Integrity]
  | (typeof Platform)[keyof typeof Platform]
  | (typeof Lifecycle)[keyof typeof Lifecycle]
  | number;

/** A typed fault. Its message is fixed text chosen by the enclave: it never carries a secret. */
export class EnclaveFault extends Error {
  override readonly name = 'EnclaveFault';
  constructor(
    readonly code: FaultCode,
    message: string,
    readonly field?: string,
  ) {
    super(message);
  }
}

const NAMES = new Map<number, string>();
for (const [mod, table] of Object.entries({ Codec, Handling, Integrity, Platform, Lifecycle })) {
  for (const [k, v] of Object.entries(table)) NAMES.set(v, `${mod}.${k}`);
}
/** A readable name for a code (`Codec.Truncated`), for logs and CLIs. */
export function faultName(code: number): string {
  return NAMES.get(code) ?? (code >= 1000 && code < 1100 ? `Opaque.${code}` : `Unknown.${code}`);
}
