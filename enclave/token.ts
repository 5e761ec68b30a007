/**
 * The narrow token interface the firmware uses for key custody, shaped on PKCS#11 (v2.40):
 * keys are handles to objects inside the token, created with CKA_SENSITIVE = true and
 * CKA_EXTRACTABLE = false, and used only through mechanisms (AES-GCM, HMAC, random, and where
 * the token has them EC P-256 key pairs with ECDH, §2.3; or, on the ctr-hmac profile,
 * AES-ECB instead of AES-GCM: enclave/token-profiles.ts). Faults are `TokenError` with the
 * PKCS#11 return value name (`CKR_...`). enclave/token-pkcs11.ts implements it over any PKCS#11
 * module (the emulator token or SoftHSM2).
 */
import type { TokenProfile } from './token-profiles.ts';

export type KeyHandle = number;

export class TokenError extends Error {
  override readonly name = 'TokenError';
  constructor(readonly ckr: string) {
    super(ckr);
  }
}

export interface Token {
  /** A key object by its CKA_LABEL, or null. */
  findKey(label: string): KeyHandle | null;
  /**
   * CKM_AES_KEY_GEN, 256 bits, sensitive, never extractable: CKA_ENCRYPT and CKA_DECRYPT, or with
   * `encryptOnly` CKA_ENCRYPT alone (a counter-mode key: its keystream is only ever encrypted).
   */
  generateAesKey(label: string, encryptOnly?: boolean): KeyHandle;
  /** CKM_GENERIC_SECRET_KEY_GEN of `len` bytes: CKA_SIGN (HMAC), sensitive, never extractable. */
  generateHmacKey(label: string, len: number): KeyHandle;
  /**
   * C_CreateObject (v2.40 §5.7) of an AES-256 token key from its 32-byte value, with the attributes
   * generateAesKey gives (sensitive, not extractable, not copyable, not modifiable, the same usage
   * flags); a key of that label already in the token is returned instead. The token keeps its own
   * copy: the caller wipes `value`. Only for keys every member of a fleet must hold
   * (enclave/fleet/vault-keys.ts). Another length: TokenError('CKR_KEY_SIZE_RANGE'), before the
   * module is called. Optional: a token without it can not be a fleet member's.
   */
  importAesKey?(label: string, value: Uint8Array, encryptOnly?: boolean): KeyHandle;
  /** As importAesKey, a generic secret of 32..64 bytes with generateHmacKey's attributes (CKA_SIGN). */
  importHmacKey?(label: string, value: Uint8Array): KeyHandle;
  /**
   * CKM_AES_GCM, 96-bit IV, 128-bit tag: returns ciphertext || tag. `out` (optional, at least
   * plaintext.length + 16 bytes): where to write it, the result then a view of it; a token may
   * ignore it and return new bytes, so callers use the result.
   */
  encryptGcm(key: KeyHandle, iv: Uint8Array, aad: Uint8Array, plaintext: Uint8Array, out?: Uint8Array): Uint8Array;
  /**
   * CKM_AES_GCM decrypt; a bad tag throws TokenError('CKR_ENCRYPTED_DATA_INVALID') or similar.
   * `out` (optional, at least ciphertext.length bytes): as encryptGcm's; the caller wipes it.
   */
  decryptGcm(key: KeyHandle, iv: Uint8Array, aad: Uint8Array, ciphertext: Uint8Array, out?: Uint8Array): Uint8Array;
  /**
   * CKM_AES_ECB encryption of whole 16-byte blocks (the ctr-hmac profile's keystream). Optional: a
   * token without it meets only the gcm-ecdh profile.
   */
  encryptEcb?(key: KeyHandle, blocks: Uint8Array): Uint8Array;
  /**
   * The firmware token profiles this token meets, strongest first (token-profiles.ts). Absent: the
   * token meets DEFAULT_TOKEN_PROFILE only.
   */
  profiles?(): readonly TokenProfile[];
  /** CKM_SHA256_HMAC / CKM_SHA512_HMAC. */
  hmac(key: KeyHandle, hash: 'SHA-256' | 'SHA-512', data: Uint8Array): Uint8Array;
  /** C_GenerateRandom. */
  random(n: number): Uint8Array;
  /** Destroys every key object (zeroization). */
  destroyAllKeys(): void;
  /**
   * CKM_EC_KEY_PAIR_GEN on P-256: the private key sensitive, never extractable, CKA_DERIVE only;
   * returns its handle (findKey(label) finds it again). Optional: a token without it leaves the
   * P-256 server key to the enclave.
   */
  generateEcKeyPair?(label: string): KeyHandle;
  /** The public key of an EC private key from generateEcKeyPair: 65-byte uncompressed SEC1. */
  ecPublicKey?(key: KeyHandle): Uint8Array;
  /** CKM_ECDH1_DERIVE with CKD_NULL: x(k·P), 32 bytes, for the token's key k and a SEC1 point P. */
  ecdhX?(key: KeyHandle, point: Uint8Array): Uint8Array;
}
