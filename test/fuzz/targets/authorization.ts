/**
 * Fuzz target: the authorization decoder (`decodeAuthorization`, enclave/api/authorize.ts), the
 * proof a RegisterFinish over a live record carries (of the backup key, or of a recovered
 * session). It reports malformed input as null, so nothing at all may be thrown.
 * Oracle: no exception; a decoded authorization re-encodes to the same bytes; a MAC check of a
 * decoded proof against a fixed stage accepts only the proof made with the right key.
 * Seeds: test/fuzz/seeds/authorization/ (one per kind: backup-key proof, session proof).
 */
import { createHash } from 'node:crypto';
import {
  AUTH_KIND_BACKUP_KEY, authorizationMac, backupKeyAuthKey, decodeAuthorization, encodeKeyAuthorization, sessionAuthKey,
} from '../../../enclave/api/authorize.ts';
import { ctEqual } from '../../../enclave/opaque/bytes.ts';
import { describeError, equalBytes, violation } from '../lib/oracle.ts';

export const name = 'authorization';
export const maxInputLength = 256;

const te = new TextEncoder();
export const AUTH_STAGE = new Uint8Array(16).fill(0x5a);
export const AUTH_RECORD = te.encode('fuzz-authorization');
export const AUTH_BACKUP_KEY = new Uint8Array(createHash('sha256').update('bkv-fuzz/authorization/backup-key').digest());
export const AUTH_SESSION_KEY = new Uint8Array(createHash('sha512').update('bkv-fuzz/authorization/session-key').digest());
export const AUTH_SESSION_ID = new Uint8Array(16).fill(0x33);

let last: string | undefined;

export function outcome(): string | undefined {
  return last;
}

export async function fuzz(data: Buffer | Uint8Array): Promise<void> {
  const input = new Uint8Array(data);
  let a: ReturnType<typeof decodeAuthorization>;
  try {
    a = decodeAuthorization(input);
  } catch (e) {
    violation('untyped-error', `decodeAuthorization threw ${describeError(e)}`);
  }
  if (!a) {
    last = `null:${input.length === 33 || input.length === 49 ? input.length : 'other'}:${input[0] === 1 || input[0] === 2 ? input[0] : 'x'}`;
    return;
  }
  const re = a.kind === AUTH_KIND_BACKUP_KEY ? Uint8Array.of(a.kind, ...a.mac) : Uint8Array.of(a.kind, ...a.sessionId, ...a.mac);
  if (!equalBytes(re, input)) violation('round-trip', 'a decoded authorization does not re-encode to its input');
  const key = a.kind === AUTH_KIND_BACKUP_KEY ? backupKeyAuthKey(AUTH_BACKUP_KEY) : sessionAuthKey(AUTH_SESSION_KEY);
  const ok = ctEqual(authorizationMac(key, AUTH_STAGE, AUTH_RECORD), a.mac);
  const valid =
    a.kind === AUTH_KIND_BACKUP_KEY
      ? encodeKeyAuthorization(AUTH_BACKUP_KEY, AUTH_STAGE, AUTH_RECORD)
      : Uint8Array.of(a.kind, ...AUTH_SESSION_ID, ...authorizationMac(sessionAuthKey(AUTH_SESSION_KEY), AUTH_STAGE, AUTH_RECORD));
  if (ok && !equalBytes(a.mac, valid.subarray(valid.length - 32))) violation('auth-bypass', 'a MAC other than the right one verified');
  last = `${a.kind}:${ok ? 'valid' : 'invalid'}`;
}
