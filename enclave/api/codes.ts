/**
 * Stable numeric error codes, in ranges per module: `CODE_RANGES` is the one table of every range
 * of the project and the error class and file that own it. Never renumber; add at the end of a
 * range; a new range goes in the table (test/enclave/api/codes.test.ts checks every table against it).
 *
 * The enclave's own ranges (2000-2499) are defined here: faults (malformed input, misuse, broken
 * state) are `EnclaveFault` responses with one of these codes; outcomes (wrong password, locked,
 * not registered) are response values. Every other range keeps its table beside its error class.
 */

/** The enclave's fault ranges, defined in this file. */
const HERE = { owner: 'EnclaveFault', file: 'enclave/api/codes.ts' } as const;

/** Every code range: its table (the const that lists its codes), the error class that carries them, the table's file. */
export const CODE_RANGES = [
  { from: 1000, to: 1099, table: 'OpaqueErrorCode', what: 'OPAQUE core', owner: 'OpaqueError', file: 'enclave/opaque/errors.ts' },
  { from: 2000, to: 2099, table: 'Codec', what: 'message codec', ...HERE },
  { from: 2100, to: 2199, table: 'Handling', what: 'request handling (state, sessions, staging)', ...HERE },
  { from: 2200, to: 2299, table: 'Integrity', what: 'storage integrity (sealing, rollback, index)', ...HERE },
  { from: 2300, to: 2399, table: 'PlatformFault', what: 'platform and token (hsm/ NVRAM errors too)', ...HERE },
  { from: 2400, to: 2499, table: 'Lifecycle', what: 'lifecycle (self-tests, provisioning, zeroization)', ...HERE },
  { from: 2500, to: 2599, table: 'FleetCode', what: 'fleet replication (refused inter-member messages and entries)', owner: 'FleetFault', file: 'enclave/fleet/faults.ts' },
  { from: 3000, to: 3099, table: 'ChannelErrorCode', what: 'the host-device channel', owner: 'ChannelError', file: 'host/channel/channel.ts' },
  { from: 3100, to: 3199, table: 'TokenPinErrorCode', what: "the device's token PINs", owner: 'TokenPinError', file: 'hsm/tokens/token-pins.ts' },
  { from: 3200, to: 3299, table: 'P11KitErrorCode', what: 'the p11-kit RPC token server', owner: 'P11KitError', file: 'hsm/tokens/p11kit/errors.ts' },
  { from: 3300, to: 3399, table: 'TokenCheckCode', what: "what a token must support for the firmware", owner: 'TokenCheckError', file: 'hsm/tokens/requirements.ts' },
  { from: 4000, to: 4099, table: 'StorageCode', what: 'the record store', owner: 'StorageError', file: 'host/storage/types.ts' },
  { from: 5000, to: 5049, table: 'BackupFileErrorCode', what: 'backup files', owner: 'BackupFileError', file: 'client/backup-file.ts' },
  { from: 5050, to: 5099, table: 'BackupKeyErrorCode', what: 'typing a backup key', owner: 'BackupKeyError', file: 'client/backup-key.ts' },
  { from: 6000, to: 6099, table: 'ErrorCode', what: 'HTTP service errors (`num`)', owner: 'ServiceError', file: 'host/service/error-codes.ts' },
] as const;

/** The union of a code table's numbers (`CodeOf<typeof StorageCode>` is 4001 | 4002 | ...). */
export type CodeOf<T extends Record<string, number>> = T[keyof T];

/**
 * The base of the project's coded errors: a stable numeric `code` from one range of
 * `CODE_RANGES`, a fixed message that never carries a secret, and an optional cause.
 */
export class CodedError<C extends number = number> extends Error {
  constructor(
    readonly code: C,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/**
 * The error class of a code table that carries nothing beyond its code: one definition instead of
 * a class per table. Its `name` is fixed here, so a minifier that renames classes does not change
 * what `err.name` says. Tables whose errors carry more (a field, a chunk, a detail) declare their
 * own subclass of CodedError.
 */
export function codedErrorClass<T extends Record<string, number>>(name: string, _table: T) {
  return class extends CodedError<CodeOf<T>> {
    override readonly name = name;
  };
}

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
  /** A replicated batch (Apply, enclave/vault/apply.ts) that does not apply to this member's records. */
  ApplyRefused: 2123,
  /** An Apply to a vault that is no fleet member. */
  NotAFollower: 2124,
  /** A fleet member's vault may not compute or propose this batch now: it does not lead, its log is not all committed, or it is behind (enclave/vault/fleet-seat.ts). */
  FleetRefused: 2125,
  /** A Commit of a batch whose entry the fleet has not committed (yet, or ever): no answer leaves before a majority holds it. */
  FleetNotCommitted: 2126,
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

export const PlatformFault = {
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
  /** A fleet member's token holds vault keys that are not its fleet's (another fleet's, or a single vault's). */
  FleetKeysMismatch: 2407,
} as const;

export type FaultCode =
  | (typeof Codec)[keyof typeof Codec]
  | (typeof Handling)[keyof typeof Handling]
  | (typeof Integrity)[keyof typeof Integrity]
  | (typeof PlatformFault)[keyof typeof PlatformFault]
  | (typeof Lifecycle)[keyof typeof Lifecycle]
  | number;

/** A typed fault. Its message is fixed text chosen by the enclave: it never carries a secret. */
export class EnclaveFault extends CodedError<FaultCode> {
  override readonly name = 'EnclaveFault';
  constructor(
    code: FaultCode,
    message: string,
    readonly field?: string,
  ) {
    super(code, message);
  }
}

const NAMES = new Map<number, string>();
// `Platform.` in names, as they have always read in logs
for (const [mod, table] of Object.entries({ Codec, Handling, Integrity, Platform: PlatformFault, Lifecycle })) {
  for (const [k, v] of Object.entries(table)) NAMES.set(v, `${mod}.${k}`);
}
/** A readable name for a code (`Codec.Truncated`), for logs and CLIs. */
export function faultName(code: number): string {
  return NAMES.get(code) ?? (code >= 1000 && code < 1100 ? `Opaque.${code}` : `Unknown.${code}`);
}
