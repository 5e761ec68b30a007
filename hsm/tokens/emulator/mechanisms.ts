/**
 * The emulator's mechanisms on node:crypto (OpenSSL; single-part AES-256-GCM on native libsodium
 * where it loads, `nativeFor` below), PKCS#11 v2.40 Current Mechanisms:
 *   CKM_AES_KEY_GEN, CKM_GENERIC_SECRET_KEY_GEN (§2.8, §2.35), CKM_AES_ECB (§2.10.3, whole
 *   blocks, no padding), CKM_AES_GCM (§2.12.3, NIST SP 800-38D), CKM_AES_KEY_WRAP (RFC 3394, `id-aes*-wrap`) and CKM_AES_KEY_WRAP_PAD (RFC 5649,
 *   `id-aes*-wrap-pad`, as SoftHSM2 implements it), CKM_SHA256_HMAC / CKM_SHA512_HMAC (§2.20,
 *   RFC 2104), CKM_EC_KEY_PAIR_GEN on P-256 and CKM_ECDH1_DERIVE with CKD_NULL (§2.3.8, the
 *   x-coordinate of d·Q), CKM_ECDSA on P-256 (§2.3.6, raw: the caller hashes; @noble/curves,
 *   SEC 1 §4.1), key check values (v3.0 §4.10: AES = first 3 bytes of E(K, 0^128);
 *   generic secret = first 3 bytes of SHA-1(K), as SoftHSM2), and random bytes.
 * Inputs are validated by the caller (the module); these functions only compute.
 */
import { createCipheriv, createDecipheriv, createECDH, createHash, createHmac, randomFillSync, timingSafeEqual } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { p256 } from '@noble/curves/nist.js';
import { loadNativeHpke } from '../../../enclave/opaque/groups/sodium-native.ts';
import type { NativeHpke } from '../../../enclave/opaque/groups/sodium-native.ts';

/** An AES or HMAC key: its bytes, or a node:crypto secret KeyObject made from them. */
export type SecretKey = Buffer | KeyObject;

const WRAP_IV = Buffer.from('a6a6a6a6a6a6a6a6', 'hex');
const WRAP_PAD_IV = Buffer.from('a65959a6', 'hex');
const CURVE = 'prime256v1';

function aesName(keyLen: number, mode: string): string {
  return `aes-${keyLen * 8}-${mode}`;
}

const GCM_NAMES: Record<number, string> = { 16: 'aes-128-gcm', 24: 'aes-192-gcm', 32: 'aes-256-gcm' };
const TAG16 = Object.freeze({ authTagLength: 16 });
const keyLength = (key: SecretKey): number => (Buffer.isBuffer(key) ? key.length : (key.symmetricKeySize ?? 0));
const gcmName = (key: SecretKey): 'aes-256-gcm' => (GCM_NAMES[keyLength(key)] ?? aesName(keyLength(key), 'gcm')) as 'aes-256-gcm';

export function isAesKeyLength(n: number): boolean {
  return n === 16 || n === 24 || n === 32;
}

/** An AES-ECB cipher without padding: update() answers whole blocks, final() throws on a partial one. */
export function ecbCipher(key: SecretKey, decrypt: boolean): { update(b: Buffer): Buffer; final(): Buffer } {
  const name = aesName(keyLength(key), 'ecb');
  const c = decrypt ? createDecipheriv(name, key, null) : createCipheriv(name, key, null);
  c.setAutoPadding(false);
  return c;
}

/** AES-ECB of whole blocks (the caller checked the length). */
export function ecb(key: SecretKey, data: Buffer, decrypt: boolean): Buffer {
  const c = ecbCipher(key, decrypt);
  return Buffer.concat([c.update(data), c.final()]);
}

/**
 * Native libsodium's AES-256-GCM (crypto_aead_aes256gcm_*_detached: AES-NI and PCLMUL), for the
 * single-part operations it covers: a 256-bit key, a 96-bit IV, a 128-bit tag (every seal and
 * open of a vault record). The same bytes as OpenSSL's (NIST SP 800-38D; the token tests and
 * test/hsm/tokens/differential.test.ts compare them with SoftHSM2's), without a node:crypto
 * cipher object (a native handle with a weak callback for the garbage collector) per call:
 * bench/README.md has the figures. The library is loaded at the first GCM call (the vault's boot
 * loads the same one for its envelope, groups/sodium-native.ts, and waits for it); until it is
 * there, where it does not load (BKV_SODIUM_NATIVE=0 included) or without AES-NI, node:crypto.
 */
let nativeGcm: NativeHpke | null | undefined;
function native(): NativeHpke | null {
  if (nativeGcm === undefined) {
    nativeGcm = null;
    void loadNativeHpke().then((r) => {
      nativeGcm = r.hpke?.gcm ? r.hpke : null;
    });
  }
  return nativeGcm;
}

/** The raw key, IV and tag length the native path covers (else node:crypto). */
function nativeFor(raw: Buffer | null, iv: Buffer, tagBytes: number): NativeHpke | null {
  return raw !== null && raw.length === 32 && iv.length === 12 && tagBytes === 16 ? native() : null;
}

/** AES-GCM: ciphertext || tag truncated to `tagBytes` (0..16). */
export function gcmEncrypt(key: SecretKey, iv: Buffer, aad: Buffer, pt: Buffer, tagBytes: number): Buffer {
  const c = createCipheriv(gcmName(key), key, iv, TAG16);
  if (aad.length) c.setAAD(aad);
  const out = Buffer.concat([c.update(pt), c.final(), c.getAuthTag().subarray(0, tagBytes)]);
  return out;
}

/**
 * gcmEncrypt written into `out` (at least pt.length + tagBytes long); returns the length written.
 * `raw`: the key's bytes (the same key as `key`), for native libsodium; null: node:crypto only.
 */
export function gcmEncryptInto(key: SecretKey, iv: Buffer, aad: Buffer, pt: Buffer, tagBytes: number, out: Buffer, raw: Buffer | null = null): number {
  const nat = nativeFor(raw, iv, tagBytes);
  if (nat) {
    nat.gcmSealInto(raw!, iv, aad, pt, out, 0);
    return pt.length + 16;
  }
  const c = createCipheriv(gcmName(key), key, iv, TAG16);
  if (aad.length) c.setAAD(aad);
  let n = c.update(pt).copy(out, 0);
  n += c.final().copy(out, n); // GCM: nothing more
  n += c.getAuthTag().copy(out, n, 0, tagBytes);
  return n;
}

/** A streaming AES-GCM encryption (C_EncryptUpdate / C_EncryptFinal). */
export class GcmStream {
  private readonly c;
  constructor(
    key: SecretKey,
    iv: Buffer,
    aad: Buffer,
    private readonly tagBytes: number,
  ) {
    this.c = createCipheriv(gcmName(key), key, iv, TAG16);
    if (aad.length) this.c.setAAD(aad);
  }
  update(b: Buffer): Buffer {
    return this.c.update(b);
  }
  final(): Buffer {
    return Buffer.concat([this.c.final(), this.c.getAuthTag().subarray(0, this.tagBytes)]);
  }
}

/** AES-GCM decryption of ciphertext || tag; null when the tag does not verify. */
export function gcmDecrypt(key: SecretKey, iv: Buffer, aad: Buffer, input: Buffer, tagBytes: number): Buffer | null {
  if (input.length < tagBytes) return null;
  const ct = input.subarray(0, input.length - tagBytes);
  const tag = input.subarray(input.length - tagBytes);
  if (tagBytes === 16 || tagBytes === 12 || tagBytes === 8 || tagBytes === 4 || tagBytes === 13 || tagBytes === 14 || tagBytes === 15) {
    const d = createDecipheriv(gcmName(key), key, iv, tagBytes === 16 ? TAG16 : { authTagLength: tagBytes });
    if (aad.length) d.setAAD(aad);
    d.setAuthTag(tag);
    const head = d.update(ct);
    try {
      return Buffer.concat([head, d.final()]);
    } catch {
      head.fill(0);
      return null;
    }
  }
  // Other tag lengths: recover the plaintext (counter mode), recompute the tag, compare.
  const d = createDecipheriv(gcmName(key), key, iv, TAG16);
  if (aad.length) d.setAAD(aad);
  const pt = d.update(ct);
  const again = gcmEncrypt(key, iv, aad, pt, tagBytes);
  const expect = again.subarray(again.length - tagBytes);
  if (tagBytes > 0 && !timingSafeEqual(expect, tag)) {
    pt.fill(0);
    return null;
  }
  return pt;
}

/**
 * gcmDecrypt written into `out` (at least input.length - tagBytes long): the plaintext length, or
 * -1 when the tag does not verify (then `out` holds no plaintext: left untouched, or zeroed where
 * native libsodium wrote it). Intermediate plaintext is wiped. `raw`: as gcmEncryptInto's.
 */
export function gcmDecryptInto(key: SecretKey, iv: Buffer, aad: Buffer, input: Buffer, tagBytes: number, out: Buffer, raw: Buffer | null = null): number {
  if (input.length < tagBytes) return -1;
  const nat = nativeFor(raw, iv, tagBytes);
  if (nat) {
    const n = input.length - 16;
    return nat.gcmOpenInto(raw!, iv, aad, input.subarray(0, n), input.subarray(n), out) ? n : -1;
  }
  if (tagBytes !== 16) {
    const pt = gcmDecrypt(key, iv, aad, input, tagBytes);
    if (!pt) return -1;
    const n = pt.copy(out, 0);
    pt.fill(0);
    return n;
  }
  const d = createDecipheriv(gcmName(key), key, iv, TAG16);
  if (aad.length) d.setAAD(aad);
  d.setAuthTag(input.subarray(input.length - 16));
  const head = d.update(input.subarray(0, input.length - 16));
  try {
    d.final(); // throws unless the tag verifies; GCM returns no more bytes
  } catch {
    head.fill(0);
    return -1;
  }
  const n = head.copy(out, 0);
  head.fill(0);
  return n;
}

/** RFC 3394 (pad = false) or RFC 5649 (pad = true) key wrap. */
export function aesWrap(kek: Buffer, data: Buffer, pad: boolean): Buffer {
  const c = createCipheriv(`id-aes${kek.length * 8}-wrap${pad ? '-pad' : ''}` as 'id-aes256-wrap', kek, pad ? WRAP_PAD_IV : WRAP_IV);
  return Buffer.concat([c.update(data), c.final()]);
}

/** The unwrapped key, or null when the integrity check fails. */
export function aesUnwrap(kek: Buffer, wrapped: Buffer, pad: boolean): Buffer | null {
  try {
    const d = createDecipheriv(`id-aes${kek.length * 8}-wrap${pad ? '-pad' : ''}` as 'id-aes256-wrap', kek, pad ? WRAP_PAD_IV : WRAP_IV);
    return Buffer.concat([d.update(wrapped), d.final()]);
  } catch {
    return null;
  }
}

export type HmacHash = 'sha256' | 'sha512';
export const HMAC_SIZE: Record<HmacHash, number> = { sha256: 32, sha512: 64 };

export function hmac(hash: HmacHash, key: SecretKey, chunks: readonly Buffer[]): Buffer {
  const h = createHmac(hash, key);
  for (const c of chunks) h.update(c);
  return h.digest();
}

export function ctEqual(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

export function randomBytes(n: number): Buffer {
  return randomFillSync(Buffer.alloc(n));
}

/** A P-256 key pair: d (32 bytes big-endian) and Q (65-byte uncompressed SEC1 point). */
export function ecGenerate(): { d: Buffer; q: Buffer } {
  const e = createECDH(CURVE);
  e.generateKeys();
  const d = Buffer.alloc(32);
  const raw = e.getPrivateKey();
  raw.copy(d, 32 - raw.length);
  raw.fill(0);
  return { d, q: e.getPublicKey() };
}

/**
 * The peer point of CKM_ECDH1_DERIVE's pPublicData: a raw SEC1 point (uncompressed or
 * compressed), or the same wrapped in a DER OCTET STRING, told apart as SoftHSM2 does (a
 * leading 0x04 whose length byte covers exactly the rest is taken as DER).
 */
export function ecPeerPoint(data: Buffer): Buffer {
  if (data.length > 2 && data[0] === 0x04) {
    if (data[1]! < 0x80 && data[1] === data.length - 2) return data.subarray(2);
    if (data[1] === 0x81 && data.length > 3 && data[2] === data.length - 3) return data.subarray(3);
  }
  return data;
}

/** x(d·Q), 32 bytes; throws if Q is not a valid P-256 point. */
export function ecdh(d: Buffer, peer: Buffer): Buffer {
  const e = createECDH(CURVE);
  e.setPrivateKey(d);
  return e.computeSecret(peer);
}

/** A P-256 ECDSA signature, r || s (PKCS#11 v2.40 Current Mechanisms §2.3.1: 2 × 32 bytes). */
export const ECDSA_P256_SIGNATURE_BYTES = 64;

/**
 * Raw ECDSA signature of `hash` (any length: SEC 1 §4.1.3 step 5 keeps its leftmost 256 bits, as
 * OpenSSL's ECDSA_do_sign in SoftHSM2 does; a shorter one is taken as a smaller integer) under
 * the scalar `d`: r || s, 64 bytes. The nonce is RFC 6979's with fresh random bytes mixed in
 * (`extraEntropy`), so a signature is randomized like SoftHSM2's yet never reuses a nonce on a
 * weak generator. Low-S (s ≤ n/2): one of the two valid signatures SoftHSM2 may produce
 * (OpenSSL does not normalize s), so any verifier accepts it.
 */
export function ecdsaSign(d: Buffer, hash: Buffer): Buffer {
  const scalar = d.length < 32 ? Buffer.concat([Buffer.alloc(32 - d.length), d]) : d;
  return Buffer.from(p256.sign(leftmost256(hash), scalar, { prehash: false, lowS: true, extraEntropy: true }));
}

/**
 * The leftmost 256 bits of a hash longer than that: what SEC 1 §4.1.3 step 5 (and noble's
 * bits2int) makes of it anyway, taken here so that no input length is refused (noble throws past 8 KiB).
 */
const leftmost256 = (hash: Buffer): Buffer => (hash.length > 32 ? hash.subarray(0, 32) : hash);

/**
 * Whether `sig` (r || s, 64 bytes) is a raw ECDSA signature of `hash` under the point `q` (SEC 1
 * bytes). Either s is accepted (`lowS: false`), as OpenSSL's ECDSA_do_verify in SoftHSM2 accepts
 * it; r or s out of [1, n-1], or a bad point, is false.
 */
export function ecdsaVerify(q: Buffer, hash: Buffer, sig: Buffer): boolean {
  try {
    return p256.verify(sig, leftmost256(hash), q, { prehash: false, lowS: false, format: 'compact' });
  } catch {
    return false;
  }
}

/** DER OCTET STRING around a value shorter than 128 bytes (CKA_EC_POINT). */
export function derOctetString(v: Buffer): Buffer {
  return Buffer.concat([Buffer.from([0x04, v.length]), v]);
}

export function checkValueAes(key: Buffer): Buffer {
  const c = createCipheriv(aesName(key.length, 'ecb') as 'aes-256-ecb', key, null);
  c.setAutoPadding(false);
  return Buffer.concat([c.update(Buffer.alloc(16)), c.final()]).subarray(0, 3);
}

export function checkValueGeneric(key: Buffer): Buffer {
  return createHash('sha1').update(key).digest().subarray(0, 3);
}

/** The check value of a secret key of `keyType` (CKK_AES = 0x1f; empty for an AES key of a bad length). */
export function checkValue(keyType: number, key: Buffer): Buffer {
  if (keyType === 0x1f) return isAesKeyLength(key.length) ? checkValueAes(key) : Buffer.alloc(0);
  return checkValueGeneric(key);
}
