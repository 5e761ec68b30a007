/**
 * What the firmware's token layer (enclave/token-pkcs11.ts) needs of a PKCS#11 module's token,
 * checked when a device opens its token (hsm/tokens/open.ts), before the firmware runs: a module
 * that lacks any of it is refused with the whole list of what is missing, never used with less.
 *
 *   mechanism                     flags (v2.40 §5.5 CK_MECHANISM_INFO)   key size
 *   CKM_AES_KEY_GEN               CKF_GENERATE                           32 bytes within min..max
 *   CKM_AES_GCM                   CKF_ENCRYPT, CKF_DECRYPT               32 bytes within min..max
 *   CKM_GENERIC_SECRET_KEY_GEN    CKF_GENERATE
 *   CKM_SHA256_HMAC               CKF_SIGN                                (key derivation, P-256 OPRF seed)
 *   CKM_SHA512_HMAC               CKF_SIGN                                (ristretto255 OPRF seed)
 *   CKM_EC_KEY_PAIR_GEN           CKF_GENERATE_KEY_PAIR                  256 bits within min..max
 *   CKM_ECDH1_DERIVE              CKF_DERIVE
 * and of the token (CK_TOKEN_INFO, §5.4): a random number generator (CKF_RNG), a user PIN set
 * (CKF_USER_PIN_INITIALIZED), not write-protected. The key attributes the firmware sets
 * (sensitive, never extractable, not modifiable) are the module's to honour; softhsm-config/README.md
 * says what an operator checks on a hardware module.
 */
import * as P from '../../enclave/api/pkcs11.ts';
import { codedErrorClass, type CodeOf } from '../../enclave/api/codes.ts';

export const TokenCheckCode = {
  /** The token lacks mechanisms, flags or key sizes the firmware needs (the message lists them all). */
  Unsupported: 3301,
  /** No token with the configured label (or in the configured slot) in the module. */
  NotFound: 3302,
  /** Several tokens of the module carry the configured label: which one holds the vault's keys is not known. */
  Ambiguous: 3303,
} as const;
export type TokenCheckCode = CodeOf<typeof TokenCheckCode>;

interface Need {
  readonly mechanism: number;
  readonly name: string;
  readonly flags: readonly (readonly [number, string])[];
  /** A key size the mechanism must take, in the unit the module reports for it (bytes for AES, bits for EC). */
  readonly size?: number;
}

const F = {
  generate: [P.CKF_GENERATE, 'CKF_GENERATE'],
  pair: [P.CKF_GENERATE_KEY_PAIR, 'CKF_GENERATE_KEY_PAIR'],
  encrypt: [P.CKF_ENCRYPT, 'CKF_ENCRYPT'],
  decrypt: [P.CKF_DECRYPT, 'CKF_DECRYPT'],
  sign: [P.CKF_SIGN, 'CKF_SIGN'],
  derive: [P.CKF_DERIVE, 'CKF_DERIVE'],
} as const;

export const FIRMWARE_NEEDS: readonly Need[] = [
  { mechanism: P.CKM_AES_KEY_GEN, name: 'CKM_AES_KEY_GEN', flags: [F.generate], size: 32 },
  { mechanism: P.CKM_AES_GCM, name: 'CKM_AES_GCM', flags: [F.encrypt, F.decrypt], size: 32 },
  { mechanism: P.CKM_GENERIC_SECRET_KEY_GEN, name: 'CKM_GENERIC_SECRET_KEY_GEN', flags: [F.generate] },
  { mechanism: P.CKM_SHA256_HMAC, name: 'CKM_SHA256_HMAC', flags: [F.sign] },
  { mechanism: P.CKM_SHA512_HMAC, name: 'CKM_SHA512_HMAC', flags: [F.sign] },
  { mechanism: P.CKM_EC_KEY_PAIR_GEN, name: 'CKM_EC_KEY_PAIR_GEN', flags: [F.pair], size: 256 },
  { mechanism: P.CKM_ECDH1_DERIVE, name: 'CKM_ECDH1_DERIVE', flags: [F.derive] },
];

/** Everything the token in `slot` lacks of FIRMWARE_NEEDS and the token flags, one line each; empty when nothing. */
export function missingFeatures(m: P.Pkcs11, slot: P.Handle): string[] {
  const missing: string[] = [];
  const info = m.C_GetTokenInfo(slot);
  if ((info.flags & P.CKF_RNG) === 0) missing.push('a random number generator (CKF_RNG)');
  if ((info.flags & P.CKF_USER_PIN_INITIALIZED) === 0) missing.push('a user PIN (CKF_USER_PIN_INITIALIZED)');
  if ((info.flags & P.CKF_WRITE_PROTECTED) !== 0) missing.push('a writable token (it is CKF_WRITE_PROTECTED)');
  const have = new Set(m.C_GetMechanismList(slot).map(Number));
  for (const n of FIRMWARE_NEEDS) {
    if (!have.has(n.mechanism)) {
      missing.push(n.name);
      continue;
    }
    const mi = m.C_GetMechanismInfo(slot, n.mechanism);
    const lacks = n.flags.filter(([bit]) => (mi.flags & bit) === 0).map(([, name]) => name);
    if (lacks.length) missing.push(`${n.name} with ${lacks.join(', ')}`);
    if (n.size !== undefined && !(mi.minKeySize <= n.size && n.size <= mi.maxKeySize)) {
      missing.push(`${n.name} for key size ${n.size} (the token takes ${mi.minKeySize}..${mi.maxKeySize})`);
    }
  }
  return missing;
}

/** Refuses a token that lacks anything the firmware needs, naming all of it. */
export function checkTokenSupports(m: P.Pkcs11, slot: P.Handle, what: string): void {
  const missing = missingFeatures(m, slot);
  if (missing.length) throw new TokenCheckError(TokenCheckCode.Unsupported, `${what} lacks what the vault's firmware needs: ${missing.join('; ')}`);
}

/** This file's refusals, and open.ts's for a token it can not find: a code of TokenCheckCode (range 3300-3399). */
export const TokenCheckError = codedErrorClass('TokenCheckError', TokenCheckCode);
export type TokenCheckError = InstanceType<typeof TokenCheckError>;
