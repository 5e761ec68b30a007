/**
 * The enclave's side of the key release and the session authorization key, synchronous on
 * node:crypto: the same bytes as `releaseKey` and `sessionAuthKey` (enclave/api/authorize.ts) and
 * `wrapForRelease` (client/release-unwrap.ts), which clients run in a browser, on @noble and
 * WebCrypto (test/enclave/vault/release.test.ts checks both ways), without a WebCrypto promise per KE3.
 *
 *   release key  = HKDF-SHA256(session key, salt = "", info = "bkv/release", 32)   (RFC 5869)
 *   wrapped key  = iv (12) || AES-256-GCM(release key, iv, backup key) (32) || tag (16)
 */
import { createCipheriv, hkdfSync } from 'node:crypto';
import { LABELS } from '../api/labels.ts';

const te = new TextEncoder();
const EMPTY = new Uint8Array(0);
const INFO_RELEASE = te.encode(LABELS.release);
const INFO_SESSION_AUTH = te.encode(LABELS.authorizeSession);
const INFO_BACKUP_KEY_AUTH = te.encode(LABELS.authorizeKey);

const hkdf32 = (ikm: Uint8Array, info: Uint8Array): Uint8Array => new Uint8Array(hkdfSync('sha256', ikm, EMPTY, info, 32));

/** `releaseKey` of enclave/api/authorize.ts. */
export const releaseKeySync = (sessionKey: Uint8Array): Uint8Array => hkdf32(sessionKey, INFO_RELEASE);
/** `sessionAuthKey` of enclave/api/authorize.ts. */
export const sessionAuthKeySync = (sessionKey: Uint8Array): Uint8Array => hkdf32(sessionKey, INFO_SESSION_AUTH);
/** `backupKeyAuthKey` of enclave/api/authorize.ts. */
export const backupKeyAuthKeySync = (backupKey: Uint8Array): Uint8Array => hkdf32(backupKey, INFO_BACKUP_KEY_AUTH);

/** `wrapForRelease` of client/release-unwrap.ts: iv || AES-256-GCM ciphertext || tag; `unwrapReleased` opens it. */
export function wrapForReleaseSync(sessionKey: Uint8Array, iv: Uint8Array, backupKey: Uint8Array): Uint8Array {
  if (iv.length !== 12) throw new RangeError('wrapForRelease: the IV must be 12 bytes');
  const key = releaseKeySync(sessionKey);
  try {
    const c = createCipheriv('aes-256-gcm', key, iv);
    const body = c.update(backupKey);
    c.final();
    const out = new Uint8Array(12 + body.length + 16);
    out.set(iv, 0);
    out.set(body, 12);
    out.set(c.getAuthTag(), 12 + body.length);
    body.fill(0);
    return out;
  } finally {
    key.fill(0);
  }
}
