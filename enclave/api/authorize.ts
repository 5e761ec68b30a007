/**
 * Proofs and key derivations that the client and the enclave both compute (portable: @noble).
 *
 * - Authorization of a registration that replaces a live record (a password change or a new
 *   registration over it), or of a deletion: either proof of the current backup key, or proof of
 *   the current password through a recovered OPAQUE session (used once). Both are HMAC-SHA256
 *   over label || nonce || record id, under a key derived with HKDF-SHA256 (RFC 5869) from the
 *   backup key or the OPAQUE session key; label "bkv/authorize/v1" with the stage id as nonce to
 *   replace, "bkv/delete/v1" with the record's registration id to delete.
 *   Encoding: kind (1 byte) || [session id] || MAC.
 * - The release key: the backup key leaves the enclave only as AES-256-GCM under
 *   HKDF-SHA256(session key, info = "bkv/release"), to the session that proved the password.
 * The enclave computes its side (release, session and backup-key authorization keys) with
 * enclave/vault/release.ts: the same bytes, synchronously on node:crypto; this module stays
 * browser-compatible for the client, which opens the released key with client/release-unwrap.ts.
 */
import { hkdf } from '@noble/hashes/hkdf.js';
import { hmac } from '@noble/hashes/hmac.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { LABELS } from './labels.ts';
import { SESSION_ID_LEN } from './messages.ts';

const te = new TextEncoder();
export const AUTH_KIND_BACKUP_KEY = 1;
export const AUTH_KIND_SESSION = 2;

export type AuthPurpose = 'replace' | 'delete';
const PURPOSE_LABEL: Record<AuthPurpose, string> = { replace: LABELS.authorizeReplace, delete: LABELS.authorizeDelete };

function transcript(stageId: Uint8Array, recordId: Uint8Array, purpose: AuthPurpose): Uint8Array {
  const label = te.encode(PURPOSE_LABEL[purpose]);
  const out = new Uint8Array(label.length + stageId.length + 1 + recordId.length);
  out.set(label, 0);
  out.set(stageId, label.length);
  out[label.length + stageId.length] = recordId.length;
  out.set(recordId, label.length + stageId.length + 1);
  return out;
}

export function backupKeyAuthKey(backupKey: Uint8Array): Uint8Array {
  return hkdf(sha256, backupKey, new Uint8Array(0), te.encode(LABELS.authorizeKey), 32);
}
export function sessionAuthKey(sessionKey: Uint8Array): Uint8Array {
  return hkdf(sha256, sessionKey, new Uint8Array(0), te.encode(LABELS.authorizeSession), 32);
}
export function releaseKey(sessionKey: Uint8Array): Uint8Array {
  return hkdf(sha256, sessionKey, new Uint8Array(0), te.encode(LABELS.release), 32);
}

/**
 * HMAC-SHA256(authKey, label || nonce || len(id) || id): `nonce` is the stage id (replacing a
 * record) or the record's registration id (deleting it); the label separates the two purposes.
 */
export function authorizationMac(authKey: Uint8Array, nonce: Uint8Array, recordId: Uint8Array, purpose: AuthPurpose = 'replace'): Uint8Array {
  return hmac(sha256, authKey, transcript(nonce, recordId, purpose));
}

export function encodeKeyAuthorization(backupKey: Uint8Array, nonce: Uint8Array, recordId: Uint8Array, purpose: AuthPurpose = 'replace'): Uint8Array {
  const k = backupKeyAuthKey(backupKey);
  const mac = authorizationMac(k, nonce, recordId, purpose);
  k.fill(0);
  return Uint8Array.of(AUTH_KIND_BACKUP_KEY, ...mac);
}

export function encodeSessionAuthorization(
  sessionId: Uint8Array,
  sessionKey: Uint8Array,
  nonce: Uint8Array,
  recordId: Uint8Array,
  purpose: AuthPurpose = 'replace',
): Uint8Array {
  const k = sessionAuthKey(sessionKey);
  const mac = authorizationMac(k, nonce, recordId, purpose);
  k.fill(0);
  return Uint8Array.of(AUTH_KIND_SESSION, ...sessionId, ...mac);
}

export type Authorization =
  | { kind: typeof AUTH_KIND_BACKUP_KEY; mac: Uint8Array }
  | { kind: typeof AUTH_KIND_SESSION; sessionId: Uint8Array; mac: Uint8Array };

/** null when malformed. */
export function decodeAuthorization(b: Uint8Array): Authorization | null {
  if (b.length === 33 && b[0] === AUTH_KIND_BACKUP_KEY) return { kind: AUTH_KIND_BACKUP_KEY, mac: b.slice(1) };
  if (b.length === 1 + SESSION_ID_LEN + 32 && b[0] === AUTH_KIND_SESSION) {
    return { kind: AUTH_KIND_SESSION, sessionId: b.slice(1, 1 + SESSION_ID_LEN), mac: b.slice(1 + SESSION_ID_LEN) };
  }
  return null;
}
