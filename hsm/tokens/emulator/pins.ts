/**
 * PINs and the token key, PKCS#11 v2.40 §2.5 (users) and §5.6 (C_InitToken, C_InitPIN,
 * C_SetPIN, C_Login), with the PIN policy real HSMs have and SoftHSM2 lacks.
 *
 * Each token has a random 256-bit token key that encrypts its private objects at rest. It is
 * stored only wrapped (AES-256-GCM) under a key derived from each PIN with PBKDF2-HMAC-SHA256
 * (a 16-byte random salt and the iteration count are stored beside it): a PIN is right when
 * its wrapped key opens, and a successful login is what brings the token key into memory.
 *
 * Lockout: after `userMaxFailures` consecutive wrong user PINs (0 = never) the user PIN is
 * locked (CKF_USER_PIN_LOCKED): C_Login as user answers CKR_PIN_LOCKED whatever the PIN, until
 * the SO sets a new user PIN with C_InitPIN. CKF_USER_PIN_COUNT_LOW is set after any failure
 * (as SoftHSM2 sets it) and CKF_USER_PIN_FINAL_TRY when one try is left. The same for the SO PIN
 * with `soMaxFailures` (default 0, never); a locked SO PIN can only be cleared by zeroizing the
 * device. Failure counts live in the token store and are durable before the answer leaves.
 */
import { createCipheriv, createDecipheriv, pbkdf2Sync, randomBytes } from 'node:crypto';
import * as P from '../../../enclave/api/pkcs11.ts';
import type { StoredToken } from './persistence.ts';

export interface PinPolicy {
  userMaxFailures: number;
  soMaxFailures: number;
  kdfIterations: number;
}

export const MIN_PIN_LEN = 4;
export const MAX_PIN_LEN = 255;

function kek(pin: string, salt: Buffer): Buffer {
  const iterations = salt.readUInt32BE(0);
  return pbkdf2Sync(Buffer.from(pin, 'utf8'), salt.subarray(4), iterations, 32, 'sha256');
}

/** Wraps the token key under a PIN: { salt (iterations u32 || 16 random bytes), wrapped }. */
export function wrapTokenKey(tokenKey: Buffer, pin: string, iterations: number): { salt: Buffer; wrapped: Buffer } {
  const salt = Buffer.alloc(20);
  salt.writeUInt32BE(iterations, 0);
  randomBytes(16).copy(salt, 4);
  const k = kek(pin, salt);
  const iv = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', k, iv);
  const wrapped = Buffer.concat([iv, c.update(tokenKey), c.final(), c.getAuthTag()]);
  k.fill(0);
  return { salt, wrapped };
}

/** The token key, or null when the PIN is wrong. */
export function unwrapTokenKey(pin: string, salt: Buffer, wrapped: Buffer): Buffer | null {
  if (salt.length !== 20 || wrapped.length !== 12 + 32 + 16) return null;
  const k = kek(pin, salt);
  try {
    const d = createDecipheriv('aes-256-gcm', k, wrapped.subarray(0, 12));
    d.setAuthTag(wrapped.subarray(44));
    return Buffer.concat([d.update(wrapped.subarray(12, 44)), d.final()]);
  } catch {
    return null;
  } finally {
    k.fill(0);
  }
}

/** Encrypts a private object's attribute list under the token key: iv || ciphertext || tag. */
export function sealBody(tokenKey: Buffer, plain: Buffer): Buffer {
  const iv = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', tokenKey, iv);
  return Buffer.concat([iv, c.update(plain), c.final(), c.getAuthTag()]);
}

export function openBody(tokenKey: Buffer, body: Buffer): Buffer | null {
  if (body.length < 28) return null;
  try {
    const d = createDecipheriv('aes-256-gcm', tokenKey, body.subarray(0, 12));
    d.setAuthTag(body.subarray(body.length - 16));
    return Buffer.concat([d.update(body.subarray(12, body.length - 16)), d.final()]);
  } catch {
    return null;
  }
}

export function userLocked(t: StoredToken, policy: PinPolicy): boolean {
  return policy.userMaxFailures > 0 && t.userFailures >= policy.userMaxFailures;
}

export function soLocked(t: StoredToken, policy: PinPolicy): boolean {
  return policy.soMaxFailures > 0 && t.soFailures >= policy.soMaxFailures;
}

/** CK_TOKEN_INFO flags of a token (v2.40 §3.2 Table 8). */
export function tokenFlags(t: StoredToken | null, policy: PinPolicy): number {
  let f = P.CKF_RNG | P.CKF_LOGIN_REQUIRED | P.CKF_RESTORE_KEY_NOT_NEEDED;
  if (!t) return f | P.CKF_SO_PIN_LOCKED | P.CKF_SO_PIN_TO_BE_CHANGED; // a free slot, as SoftHSM2 shows it
  f |= P.CKF_TOKEN_INITIALIZED;
  if (t.userKey.length > 0) f |= P.CKF_USER_PIN_INITIALIZED;
  if (t.userFailures > 0) f |= P.CKF_USER_PIN_COUNT_LOW;
  if (policy.userMaxFailures > 0 && t.userFailures === policy.userMaxFailures - 1) f |= P.CKF_USER_PIN_FINAL_TRY;
  if (userLocked(t, policy)) f |= P.CKF_USER_PIN_LOCKED;
  if (t.soFailures > 0) f |= P.CKF_SO_PIN_COUNT_LOW;
  if (policy.soMaxFailures > 0 && t.soFailures === policy.soMaxFailures - 1) f |= P.CKF_SO_PIN_FINAL_TRY;
  if (soLocked(t, policy)) f |= P.CKF_SO_PIN_LOCKED;
  return f;
}
