/**
 * The ctr-hmac token profile's authenticated encryption (enclave/token-profiles.ts): Encrypt-then-
 * MAC on two token keys, for modules (or transports, p11-kit 0.24.1's client) without CKM_AES_GCM.
 *
 *   encryption   AES-256 in counter mode, NIST SP 800-38A §6.5: counter block i (1, 2, ...) =
 *                IV (12 bytes) || i (4 bytes, big-endian), the standard incrementing function on
 *                the last 32 bits (§B.1); the keystream is the token's CKM_AES_ECB encryption of
 *                the counter blocks, in one C_Encrypt; ciphertext = plaintext XOR keystream.
 *   MAC          RFC 7518 §5.2.2.1 steps 4-6: T = HMAC-SHA256(mac key, A || IV || E || AL)
 *                truncated to 16 bytes, A the AAD, AL the AAD's length in bits as a 64-bit
 *                big-endian integer; by the token's CKM_SHA256_HMAC.
 *   decryption   the tag is recomputed and compared in constant time before any keystream is made.
 * An IV is never reused under a key: record.ts draws it from the token's random generator, as for
 * GCM. Neither key leaves the token; the keystream is wiped after use (JavaScript can not reach the
 * copies the engine may make).
 */
import { ctEqual } from '../opaque/bytes.ts';
import type { KeyHandle, Token } from '../token.ts';
import { TokenError } from '../token.ts';

export interface CtrHmacKeys {
  /** AES-256, CKA_ENCRYPT only: the counter-mode keystream. */
  readonly enc: KeyHandle;
  /** 32-byte generic secret, CKA_SIGN: the tag. */
  readonly mac: KeyHandle;
}

export const CTR_HMAC_TAG_LEN = 16;
const IV_LEN = 12;
/** The longest input: 2^32 - 1 counter blocks would do; records are a few hundred bytes. */
const MAX_LEN = 1 << 20;

function keystreamXor(token: Token, key: KeyHandle, iv: Uint8Array, data: Uint8Array, out: Uint8Array): void {
  if (data.length === 0) return;
  if (!token.encryptEcb) throw new TokenError('CKR_MECHANISM_INVALID');
  const n = Math.ceil(data.length / 16);
  const blocks = new Uint8Array(n * 16);
  for (let i = 0; i < n; i++) {
    const o = i * 16;
    blocks.set(iv, o);
    const c = i + 1;
    blocks[o + 12] = c >>> 24;
    blocks[o + 13] = (c >>> 16) & 0xff;
    blocks[o + 14] = (c >>> 8) & 0xff;
    blocks[o + 15] = c & 0xff;
  }
  const ks = token.encryptEcb(key, blocks);
  if (!(ks instanceof Uint8Array) || ks.length !== blocks.length) throw new TokenError('CKR_GENERAL_ERROR');
  for (let i = 0; i < data.length; i++) out[i] = data[i]! ^ ks[i]!;
  ks.fill(0);
}

function tag(token: Token, key: KeyHandle, aad: Uint8Array, iv: Uint8Array, ct: Uint8Array): Uint8Array {
  const m = new Uint8Array(aad.length + IV_LEN + ct.length + 8);
  m.set(aad, 0);
  m.set(iv, aad.length);
  m.set(ct, aad.length + IV_LEN);
  const bits = aad.length * 8;
  const o = aad.length + IV_LEN + ct.length;
  m[o + 3] = Math.floor(bits / 2 ** 32) & 0xff;
  m[o + 4] = bits >>> 24;
  m[o + 5] = (bits >>> 16) & 0xff;
  m[o + 6] = (bits >>> 8) & 0xff;
  m[o + 7] = bits & 0xff;
  const t = token.hmac(key, 'SHA-256', m);
  if (!(t instanceof Uint8Array) || t.length !== 32) throw new TokenError('CKR_GENERAL_ERROR');
  return t.subarray(0, CTR_HMAC_TAG_LEN);
}

function checkArgs(iv: Uint8Array, len: number): void {
  if (iv.length !== IV_LEN) throw new TokenError('CKR_MECHANISM_PARAM_INVALID');
  if (len > MAX_LEN) throw new TokenError('CKR_DATA_LEN_RANGE');
}

/** ciphertext || tag (16 bytes). */
export function ctrHmacEncrypt(token: Token, k: CtrHmacKeys, iv: Uint8Array, aad: Uint8Array, pt: Uint8Array): Uint8Array {
  checkArgs(iv, pt.length);
  const out = new Uint8Array(pt.length + CTR_HMAC_TAG_LEN);
  const ct = out.subarray(0, pt.length);
  keystreamXor(token, k.enc, iv, pt, ct);
  out.set(tag(token, k.mac, aad, iv, ct), pt.length);
  return out;
}

/** The plaintext of ciphertext || tag, or null when the tag does not verify (nothing decrypted then). */
export function ctrHmacDecrypt(token: Token, k: CtrHmacKeys, iv: Uint8Array, aad: Uint8Array, input: Uint8Array): Uint8Array | null {
  if (input.length < CTR_HMAC_TAG_LEN) return null;
  const ct = input.subarray(0, input.length - CTR_HMAC_TAG_LEN);
  checkArgs(iv, ct.length);
  if (!ctEqual(tag(token, k.mac, aad, iv, ct), input.subarray(ct.length))) return null;
  const pt = new Uint8Array(ct.length);
  keystreamXor(token, k.enc, iv, ct, pt);
  return pt;
}
