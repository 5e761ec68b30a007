/**
 * What a vault write is in the fleet's rules (enclave/fleet/rules.ts; docs/fleet-vault.md, "What
 * an entry carries"): the change from the record an op read to the record it wrote, named as the
 * op a fleet member checks against its own state before it makes an entry durable.
 *
 *   before                     after                              change
 *   none, deleted or locked    registered, a new registration     register (its limit)
 *   registered                 registered, another registration   replace (its limit): a password change or a new key
 *   registered                 same registration, used + 1        charge (LoginStart)
 *   registered, used >= 1      same registration, used 0          reset (a valid KE3)
 *   registered or locked       the same record                    touch (a KE3 that releases nothing)
 *   registered, used = limit   locked                             lock
 *   registered or locked       deleted                            delete
 *
 * Anything else (attempts used going down without a valid KE3, a limit or suite changed within a
 * registration, a lock below the limit) is no change the fleet's rules know: `null`, and the
 * leader's device refuses its batch rather than replicate it. test/enclave/vault/model.test.ts
 * maps every write of its random runs and checks the fleet's rules allow it and agree with the
 * record written.
 */
import { ctEqual } from '../opaque/bytes.ts';
import { STATUS_ACTIVE, STATUS_LOCKED } from './record.ts';
import type { VaultRecord } from './record.ts';

/** The change kinds on the wire (Prepared's and Apply's ops, `change`): the fleet codec's op tags (enclave/fleet/codec.ts). */
export const CHANGE_TAGS = { register: 1, charge: 2, reset: 3, lock: 4, delete: 5, replace: 7, touch: 8 } as const;

/** One op's change as a fleet member's batch names it (Prepared and Apply, enclave/api/messages.ts). */
export interface ChangeOp {
  recordId: Uint8Array;
  change: number;
  /** The version the op read. */
  base: number;
  /** A register's or replace's attempt limit; 0 for the others. */
  limit: number;
}

export function changeOp(recordId: Uint8Array, c: FleetChange, base: number): ChangeOp {
  return { recordId, change: CHANGE_TAGS[c.kind], base, limit: 'limit' in c ? c.limit : 0 };
}

export type FleetChange =
  | { readonly kind: 'register' | 'replace'; readonly limit: number }
  | { readonly kind: 'charge' | 'reset' | 'touch' | 'lock' | 'delete' };

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && ctEqual(a, b);
}

/** Same registration, same fields but attempts used, the last guess's time and (for a lock) the secrets. */
function sameRegistration(a: VaultRecord, b: VaultRecord): boolean {
  return sameBytes(a.registrationId, b.registrationId) && a.suite === b.suite && a.attemptLimit === b.attemptLimit && a.registeredAt === b.registeredAt && a.pacing === b.pacing;
}


function unchanged(a: VaultRecord, b: VaultRecord): boolean {
  return (
    sameRegistration(a, b) &&
    a.status === b.status &&
    a.attemptsUsed === b.attemptsUsed &&
    a.lastGuessAt === b.lastGuessAt &&
    sameBytes(a.ksf, b.ksf) &&
    sameBytes(a.opaqueRecord, b.opaqueRecord) &&
    sameBytes(a.backupKey, b.backupKey)
  );
}

/**
 * The fleet change of one op's write. `before`: the record the op read (null: none, or a
 * tombstone); `after`: what it wrote (null: a deletion).
 */
export function fleetChangeOf(before: VaultRecord | null, after: VaultRecord | null): FleetChange | null {
  if (after === null) return before === null ? null : { kind: 'delete' };
  if (after.status === STATUS_ACTIVE && after.attemptsUsed === 0 && (before === null || (before.status === STATUS_LOCKED && !sameBytes(before.registrationId, after.registrationId)))) {
    return { kind: 'register', limit: after.attemptLimit };
  }
  if (before === null) return null;
  if (unchanged(before, after)) return before.status === STATUS_ACTIVE || before.status === STATUS_LOCKED ? { kind: 'touch' } : null;
  if (before.status !== STATUS_ACTIVE) return null;
  if (after.status === STATUS_ACTIVE && !sameBytes(before.registrationId, after.registrationId)) {
    return after.attemptsUsed === 0 ? { kind: 'replace', limit: after.attemptLimit } : null;
  }
  if (!sameRegistration(before, after)) return null;
  if (after.status === STATUS_LOCKED) {
    return before.attemptsUsed >= before.attemptLimit && after.attemptsUsed === after.attemptLimit ? { kind: 'lock' } : null;
  }
  if (after.status !== STATUS_ACTIVE || !sameBytes(before.opaqueRecord, after.opaqueRecord) || !sameBytes(before.backupKey, after.backupKey)) return null;
  if (after.attemptsUsed === before.attemptsUsed + 1 && before.attemptsUsed < before.attemptLimit) return { kind: 'charge' };
  if (after.attemptsUsed === 0 && before.attemptsUsed >= 1 && after.lastGuessAt === before.lastGuessAt) return { kind: 'reset' };
  return null;
}
