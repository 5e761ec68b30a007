/**
 * The vault rules as a pure transition on an abstract record, checked by every member against its
 * own state before it makes a log entry durable (docs/fleet.md, "What a member checks"). The real
 * records (enclave/vault/) carry secrets; here a record is what the rules need: version, attempts
 * used, the limit, the count of guesses ever charged since registration, and its status.
 *
 * Rules (docs/design.md, "The rules"):
 * - a guess is charged only on a registered record with attempts used < limit; its number is the
 *   next one (`total + 1`), so a committed charge names one (record, registration, guess) once;
 * - attempts used never go down except by a reset, which needs at least one charged guess (a
 *   valid KE3 answers a charged session);
 * - a record at its limit may only be locked (its secrets zeroized) or registered again;
 * - a live record is registered anew only by `replace` (a password change or a new key: the vault
 *   checks the proof, the current backup key or a recovered session, enclave/vault/ops.ts), which
 *   starts a new registration (attempts used and guesses charged from 0);
 * - `touch` rewrites a record that exists (registered or locked) unchanged: the vault rewrites a
 *   record after every KE3 that releases nothing, as it was, so the host can not tell a success
 *   from a failure by what is stored: version + 1 only;
 * - every change names the version it was computed on (`base`) and makes version + 1.
 */
import { FleetCode, type FleetCodeValue } from './faults.ts';

export type RecordStatus = 'registered' | 'locked' | 'deleted';

export interface RecordState {
  readonly version: number;
  readonly status: RecordStatus;
  readonly limit: number;
  /** Wrong or pending guesses since the last success. */
  readonly used: number;
  /** Guesses charged since registration: the number of the last granted guess. */
  readonly total: number;
}

export type RecordOp =
  | { readonly kind: 'register'; readonly id: string; readonly base: number; readonly limit: number }
  | { readonly kind: 'replace'; readonly id: string; readonly base: number; readonly limit: number }
  | { readonly kind: 'touch'; readonly id: string; readonly base: number }
  | { readonly kind: 'charge'; readonly id: string; readonly base: number; readonly guess: number; readonly session: number }
  | { readonly kind: 'reset'; readonly id: string; readonly base: number; readonly session: number }
  | { readonly kind: 'lock'; readonly id: string; readonly base: number }
  | { readonly kind: 'delete'; readonly id: string; readonly base: number };

/** A configuration change: admit `incarnation` for `member`, retiring the one admitted before. */
export interface AdmitOp {
  readonly kind: 'admit';
  readonly member: number;
  readonly incarnation: Uint8Array;
}

/**
 * A charter change (docs/fleet.md, "Membership changes"): the next serial and the identity at
 * every member id (null: removed), one member added (at the next id) or removed; alone in its
 * entry. Members count quorums under it from the moment it is in their log.
 */
export interface CharterOp {
  readonly kind: 'charter';
  readonly serial: number;
  readonly identities: readonly (Uint8Array | null)[];
}

export type Op = RecordOp | AdmitOp | CharterOp;

/** What a client asks for; the leader turns it into a `RecordOp` against its own state (it fills in base and guess). */
export type Intent =
  | { readonly kind: 'register'; readonly id: string; readonly limit: number }
  | { readonly kind: 'replace'; readonly id: string; readonly limit: number }
  | { readonly kind: 'touch'; readonly id: string }
  | { readonly kind: 'charge'; readonly id: string; readonly session: number }
  | { readonly kind: 'reset'; readonly id: string; readonly session: number }
  | { readonly kind: 'lock'; readonly id: string }
  | { readonly kind: 'delete'; readonly id: string };

export const MAX_LIMIT = 255;

/** The record after `op`, or the code of the rule it breaks. */
export function transition(rec: RecordState | undefined, op: RecordOp): RecordState | FleetCodeValue {
  const version = rec?.version ?? 0;
  if (op.base !== version) return FleetCode.BaseVersion;
  const next = version + 1;
  switch (op.kind) {
    case 'register':
      if (rec?.status === 'registered') return FleetCode.TransitionNotAllowed;
      if (!Number.isInteger(op.limit) || op.limit < 1 || op.limit > MAX_LIMIT) return FleetCode.TransitionNotAllowed;
      return { version: next, status: 'registered', limit: op.limit, used: 0, total: 0 };
    case 'replace':
      if (rec?.status !== 'registered') return FleetCode.TransitionNotAllowed;
      if (!Number.isInteger(op.limit) || op.limit < 1 || op.limit > MAX_LIMIT) return FleetCode.TransitionNotAllowed;
      return { version: next, status: 'registered', limit: op.limit, used: 0, total: 0 };
    case 'touch':
      if (rec === undefined || rec.status === 'deleted') return FleetCode.TransitionNotAllowed;
      return { ...rec, version: next };
    case 'charge':
      if (rec?.status !== 'registered' || rec.used >= rec.limit || op.guess !== rec.total + 1) return FleetCode.TransitionNotAllowed;
      return { ...rec, version: next, used: rec.used + 1, total: rec.total + 1 };
    case 'reset':
      if (rec?.status !== 'registered' || rec.used < 1) return FleetCode.TransitionNotAllowed;
      return { ...rec, version: next, used: 0 };
    case 'lock':
      if (rec?.status !== 'registered' || rec.used < rec.limit) return FleetCode.TransitionNotAllowed;
      return { ...rec, version: next, status: 'locked' };
    case 'delete':
      if (rec === undefined || rec.status === 'deleted') return FleetCode.TransitionNotAllowed;
      return { ...rec, version: next, status: 'deleted' };
  }
}

/** The op a leader makes of an intent on its current record (the check happens in `transition`). */
export function opOf(intent: Intent, rec: RecordState | undefined): RecordOp {
  const base = rec?.version ?? 0;
  switch (intent.kind) {
    case 'register':
    case 'replace':
      return { kind: intent.kind, id: intent.id, base, limit: intent.limit };
    case 'touch':
      return { kind: 'touch', id: intent.id, base };
    case 'charge':
      return { kind: 'charge', id: intent.id, base, guess: (rec?.total ?? 0) + 1, session: intent.session };
    case 'reset':
      return { kind: 'reset', id: intent.id, base, session: intent.session };
    case 'lock':
      return { kind: 'lock', id: intent.id, base };
    case 'delete':
      return { kind: 'delete', id: intent.id, base };
  }
}
