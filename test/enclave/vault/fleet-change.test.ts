/**
 * The fleet change of a vault write (enclave/vault/fleet-change.ts): each change the vault makes
 * is named, and every write that breaks a rule (attempts used going down without a valid KE3, a
 * lock below the limit, a registration's limit changed in place, a charge past the limit) is no
 * change at all, so the leader's device would refuse to replicate it. The vault's own writes are
 * checked against these in test/enclave/vault/model.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { fleetChangeOf } from '../../../enclave/vault/fleet-change.ts';
import { STATUS_ACTIVE, STATUS_LOCKED } from '../../../enclave/vault/record.ts';
import type { VaultRecord } from '../../../enclave/vault/record.ts';

const rec = (o: Partial<VaultRecord> = {}): VaultRecord => ({
  status: STATUS_ACTIVE,
  suite: 1,
  attemptLimit: 3,
  attemptsUsed: 0,
  registrationId: new Uint8Array(16).fill(1),
  ksf: new Uint8Array(0),
  opaqueRecord: new Uint8Array(192).fill(2),
  backupKey: new Uint8Array(32).fill(3),
  registeredAt: 1000,
  pacing: 0,
  lastGuessAt: 0,
  ...o,
});
const locked = (o: Partial<VaultRecord> = {}) => rec({ status: STATUS_LOCKED, attemptsUsed: 3, opaqueRecord: new Uint8Array(0), backupKey: new Uint8Array(0), ...o });
const other = new Uint8Array(16).fill(9);

describe('fleetChangeOf', () => {
  it('names each change the vault makes', () => {
    expect(fleetChangeOf(null, rec())).toEqual({ kind: 'register', limit: 3 });
    expect(fleetChangeOf(locked(), rec({ registrationId: other, attemptLimit: 5 }))).toEqual({ kind: 'register', limit: 5 });
    expect(fleetChangeOf(rec({ attemptsUsed: 2 }), rec({ registrationId: other, attemptLimit: 4 }))).toEqual({ kind: 'replace', limit: 4 });
    expect(fleetChangeOf(rec({ attemptsUsed: 1 }), rec({ attemptsUsed: 2, lastGuessAt: 5000 }))).toEqual({ kind: 'charge' });
    expect(fleetChangeOf(rec({ attemptsUsed: 2, lastGuessAt: 5000 }), rec({ attemptsUsed: 0, lastGuessAt: 5000 }))).toEqual({ kind: 'reset' });
    expect(fleetChangeOf(rec({ attemptsUsed: 2 }), rec({ attemptsUsed: 2 }))).toEqual({ kind: 'touch' });
    expect(fleetChangeOf(locked(), locked())).toEqual({ kind: 'touch' });
    expect(fleetChangeOf(rec({ attemptsUsed: 3 }), locked())).toEqual({ kind: 'lock' });
    expect(fleetChangeOf(rec({ attemptsUsed: 1 }), null)).toEqual({ kind: 'delete' });
    expect(fleetChangeOf(locked(), null)).toEqual({ kind: 'delete' });
  });

  it('is no change for a write that breaks a rule', () => {
    const cases: [string, VaultRecord | null, VaultRecord | null][] = [
      ['attempts used down by one, not to 0', rec({ attemptsUsed: 2 }), rec({ attemptsUsed: 1 })],
      ['attempts used to 0 with nothing charged', rec({ attemptsUsed: 0, pacing: 1 }), rec({ attemptsUsed: 0, pacing: 2 })],
      ['a reset that moved the last guess time', rec({ attemptsUsed: 2, lastGuessAt: 5 }), rec({ attemptsUsed: 0, lastGuessAt: 6 })],
      ['two guesses charged at once', rec({ attemptsUsed: 0 }), rec({ attemptsUsed: 2 })],
      ['a charge past the limit', rec({ attemptsUsed: 3 }), rec({ attemptsUsed: 4 })],
      ['a lock below the limit', rec({ attemptsUsed: 2 }), locked()],
      ['the limit raised in place', rec({ attemptsUsed: 2 }), rec({ attemptsUsed: 2, attemptLimit: 9 })],
      ['the backup key changed in place', rec(), rec({ backupKey: new Uint8Array(32).fill(7) })],
      ['the OPAQUE record changed with a charge', rec(), rec({ attemptsUsed: 1, opaqueRecord: new Uint8Array(192).fill(8) })],
      ['a new registration that starts with guesses used', rec(), rec({ registrationId: other, attemptsUsed: 1 })],
      ['a locked record unlocked in place', locked(), rec({ attemptsUsed: 0 })],
      ['a locked record charged', locked(), locked({ attemptsUsed: 3, lastGuessAt: 9 })],
      ['a deletion of nothing', null, null],
      ['a record that appears with guesses used', null, rec({ attemptsUsed: 1 })],
    ];
    for (const [what, before, after] of cases) expect(fleetChangeOf(before, after), what).toBeNull();
  });
});
