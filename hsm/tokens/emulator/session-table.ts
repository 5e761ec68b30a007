/**
 * Sessions, session states and handles, PKCS#11 v2.40 §2.6 (sessions, Table 2 session states,
 * §2.6.5 read/write access rules) and §5.6 (session management), kept per module instance (per
 * process) as a real library keeps them:
 * - one counter hands out session and object handles (as SoftHSM2 does);
 * - the login state belongs to the token and is shared by all of the process's sessions on it;
 * - logging out drops the handles of private objects and destroys private session objects;
 *   closing the last session of a token logs out and drops every object handle of that token.
 * A session runs at most one operation at a time (find, encrypt, decrypt, sign, verify).
 */
import * as P from '../../../enclave/api/pkcs11.ts';
import type { HmacHash, SecretKey } from './mechanisms.ts';

/** A multi-part encryption in progress (AES-GCM's GcmStream, or a node:crypto AES-ECB cipher). */
export interface CipherStream {
  update(b: Buffer): Buffer;
  final(): Buffer;
}

export type Who = 'user' | 'so' | null;

export type Operation =
  | { kind: 'find'; handles: number[] }
  // `raw`: the AES key's bytes (its CKA_VALUE, never modified in place) beside `key`, its KeyObject: the native AES-GCM path (mechanisms.ts).
  | { kind: 'encrypt'; ecb: boolean; key: SecretKey; raw: Buffer; iv: Buffer; aad: Buffer; tagBytes: number; single: boolean; multi: boolean; stream: CipherStream | null }
  | { kind: 'decrypt'; ecb: boolean; key: SecretKey; raw: Buffer; iv: Buffer; aad: Buffer; tagBytes: number; single: boolean; multi: boolean; chunks: Buffer[] }
  | ({ kind: 'sign' } & (MacState | EcdsaState))
  | ({ kind: 'verify' } & (MacState | EcdsaState));

interface MacState {
  ecdsa: false;
  hash: HmacHash;
  key: SecretKey;
  single: boolean;
  multi: boolean;
  chunks: Buffer[];
}

/**
 * CKM_ECDSA (PKCS#11 v2.40 Current Mechanisms §2.3.6): single-part only (§2.3.1 Table 26), so
 * `multi` is false. `key` is the operation's own copy of the private scalar d (sign) or the SEC 1
 * point Q (verify), wiped when the operation ends.
 */
interface EcdsaState {
  ecdsa: true;
  key: Buffer;
  single: true;
  multi: false;
}

export interface Session {
  handle: number;
  serial: string;
  rw: boolean;
  op: Operation | null;
}

export type HandleEntry =
  | { kind: 'session' }
  | { kind: 'object'; serial: string; uid: string; private: boolean; session: number | null };

export function sessionState(rw: boolean, who: Who): number {
  if (who === 'so') return P.CKS_RW_SO_FUNCTIONS;
  if (who === 'user') return rw ? P.CKS_RW_USER_FUNCTIONS : P.CKS_RO_USER_FUNCTIONS;
  return rw ? P.CKS_RW_PUBLIC_SESSION : P.CKS_RO_PUBLIC_SESSION;
}

/** May a session in `state` read an object (v2.40 §2.6.5)? 0 or the CKR_ code. */
export function haveRead(state: number, _isToken: boolean, isPrivate: boolean): number {
  if (state === P.CKS_RO_USER_FUNCTIONS || state === P.CKS_RW_USER_FUNCTIONS) return 0;
  return isPrivate ? P.CKR.CKR_USER_NOT_LOGGED_IN : 0;
}

/** May a session in `state` create, change or destroy an object? 0 or the CKR_ code. */
export function haveWrite(state: number, isToken: boolean, isPrivate: boolean): number {
  switch (state) {
    case P.CKS_RO_PUBLIC_SESSION:
      if (isToken) return P.CKR.CKR_SESSION_READ_ONLY;
      return isPrivate ? P.CKR.CKR_USER_NOT_LOGGED_IN : 0;
    case P.CKS_RO_USER_FUNCTIONS:
      return isToken ? P.CKR.CKR_SESSION_READ_ONLY : 0;
    case P.CKS_RW_PUBLIC_SESSION:
    case P.CKS_RW_SO_FUNCTIONS:
      return isPrivate ? P.CKR.CKR_USER_NOT_LOGGED_IN : 0;
    case P.CKS_RW_USER_FUNCTIONS:
      return 0;
    default:
      return P.CKR.CKR_GENERAL_ERROR;
  }
}

/** The handle table of one module instance. */
export class Handles {
  private next = 1;
  private readonly entries = new Map<number, HandleEntry>();
  private readonly byUid = new Map<string, number>();

  newSession(): number {
    const h = this.next++;
    this.entries.set(h, { kind: 'session' });
    return h;
  }

  /** The handle of an object, allocating one at first sight. */
  object(serial: string, uid: string, isPrivate: boolean, session: number | null): number {
    const known = this.byUid.get(uid);
    if (known !== undefined) return known;
    const h = this.next++;
    this.entries.set(h, { kind: 'object', serial, uid, private: isPrivate, session });
    this.byUid.set(uid, h);
    return h;
  }

  get(h: number): HandleEntry | undefined {
    return this.entries.get(h);
  }

  forgetObject(uid: string): void {
    const h = this.byUid.get(uid);
    if (h === undefined) return;
    this.byUid.delete(uid);
    this.entries.delete(h);
  }

  forgetSession(h: number): void {
    this.entries.delete(h);
    for (const [oh, e] of this.entries) {
      if (e.kind === 'object' && e.session === h) {
        this.entries.delete(oh);
        this.byUid.delete(e.uid);
      }
    }
  }

  /** Drops object handles of a token: all of them, or only the private ones. */
  forgetObjects(serial: string, onlyPrivate: boolean): void {
    for (const [oh, e] of this.entries) {
      if (e.kind === 'object' && e.serial === serial && (!onlyPrivate || e.private)) {
        this.entries.delete(oh);
        this.byUid.delete(e.uid);
      }
    }
  }

  clear(): void {
    this.entries.clear();
    this.byUid.clear();
  }
}
