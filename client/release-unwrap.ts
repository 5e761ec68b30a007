/**
 * The client's side of the key release (WebCrypto: browsers and Node). The backup key leaves the
 * enclave only as iv (12) || AES-256-GCM(release key, iv, backup key) (32) || tag (16), under
 * release key = HKDF-SHA256(session key, info = "bkv/release") (`releaseKey`,
 * enclave/api/authorize.ts), to the session that proved the password; `unwrapReleased` opens it.
 * The enclave wraps with enclave/vault/release.ts (`wrapForReleaseSync`, node:crypto);
 * `wrapForRelease` here is the same wrap on WebCrypto, which test/enclave/vault/release.test.ts compares it with.
 */
import { releaseKey } from '../enclave/api/authorize.ts';

/** Wraps the backup key for release: iv (12) || AES-256-GCM ciphertext (32) || tag (16). */
export async function wrapForRelease(sessionKey: Uint8Array, iv: Uint8Array, backupKey: Uint8Array): Promise<Uint8Array> {
  const raw = releaseKey(sessionKey);
  const key = await crypto.subtle.importKey('raw', raw.slice().buffer as ArrayBuffer, 'AES-GCM', false, ['encrypt']);
  raw.fill(0);
  const ct = new Uint8Array(await crypto.subtle.encrypt({ name: 'AES-GCM', iv: iv.slice().buffer as ArrayBuffer }, key, backupKey.slice().buffer as ArrayBuffer));
  const out = new Uint8Array(12 + ct.length);
  out.set(iv, 0);
  out.set(ct, 12);
  return out;
}

/** Client side of `wrapForRelease`; null if it does not open. */
export async function unwrapReleased(sessionKey: Uint8Array, wrapped: Uint8Array): Promise<Uint8Array | null> {
  const raw = releaseKey(sessionKey);
  const key = await crypto.subtle.importKey('raw', raw.slice().buffer as ArrayBuffer, 'AES-GCM', false, ['decrypt']);
  raw.fill(0);
  try {
    const pt = await crypto.subtle.decrypt({ name: 'AES-GCM', iv: wrapped.slice(0, 12).buffer as ArrayBuffer }, key, wrapped.slice(12).buffer as ArrayBuffer);
    return new Uint8Array(pt);
  } catch {
    return null;
  }
}
