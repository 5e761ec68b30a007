/**
 * What the firmware's token layer (enclave/token-pkcs11.ts) needs of a PKCS#11 module's token,
 * checked when a device opens its token (hsm/tokens/open.ts), before the firmware runs.
 *
 * The mechanisms come in firmware token profiles (enclave/token-profiles.ts, strongest first):
 *   gcm-ecdh   CKM_AES_KEY_GEN (32 bytes), CKM_AES_GCM (CKF_ENCRYPT, CKF_DECRYPT, 32 bytes),
 *              CKM_GENERIC_SECRET_KEY_GEN, CKM_SHA256_HMAC and CKM_SHA512_HMAC (CKF_SIGN),
 *              CKM_EC_KEY_PAIR_GEN (256 bits), CKM_ECDH1_DERIVE (CKF_DERIVE)
 *   ctr-hmac   CKM_AES_KEY_GEN (32 bytes), CKM_AES_ECB (CKF_ENCRYPT, 32 bytes),
 *              CKM_GENERIC_SECRET_KEY_GEN, CKM_SHA256_HMAC and CKM_SHA512_HMAC (CKF_SIGN)
 * and every profile needs of the token (CK_TOKEN_INFO, §5.4) a random number generator (CKF_RNG),
 * a user PIN set (CKF_USER_PIN_INITIALIZED), not write-protected. A token is opened with the
 * profiles it meets (the firmware provisions on the strongest and keeps it); a token that meets
 * none is refused with the whole list of what each profile lacks, never used with less. The key
 * attributes the firmware sets (sensitive, never extractable, not modifiable) are the module's to
 * honour; softhsm-config/README.md says what an operator checks on a hardware module.
 *
 * A fleet member's token also takes its vault keys from their values (Token.importAesKey and
 * importHmacKey: C_CreateObject of a sensitive, never extractable CKO_SECRET_KEY with CKA_VALUE;
 * enclave/fleet/vault-keys.ts). That is a function, not a mechanism: no mechanism list shows it,
 * so it is not checked here. The emulator, SoftHSM2 2.6.1 and the emulator through
 * p11-kit-client.so 0.24.1 (whose RPC carries C_CreateObject and its template) all take it
 * (test/hsm/tokens/import-key.test.ts); a module that refuses it fails the member's provisioning
 * with PlatformFault.TokenError naming the module's CKR_ code.
 */
import * as P from '../../enclave/api/pkcs11.ts';
import { codedErrorClass, type CodeOf } from '../../enclave/api/codes.ts';
import { PROFILE_NEEDS, TOKEN_PROFILES, missingMechanisms } from '../../enclave/token-profiles.ts';
import type { TokenProfile } from '../../enclave/token-profiles.ts';

export type { TokenProfile };

export const TokenCheckCode = {
  /** The token lacks mechanisms, flags or key sizes the firmware needs (the message lists them all). */
  Unsupported: 3301,
  /** No token with the configured label (or in the configured slot) in the module. */
  NotFound: 3302,
  /** Several tokens of the module carry the configured label: which one holds the vault's keys is not known. */
  Ambiguous: 3303,
} as const;
export type TokenCheckCode = CodeOf<typeof TokenCheckCode>;

/** The strongest profile's needs (what a module must have for the vault to keep every key in the token). */
export const FIRMWARE_NEEDS = PROFILE_NEEDS['gcm-ecdh'];

/** What the token in `slot` lacks of the token flags every profile needs, one line each. */
export function missingTokenFlags(m: P.Pkcs11, slot: P.Handle): string[] {
  const missing: string[] = [];
  const info = m.C_GetTokenInfo(slot);
  if ((info.flags & P.CKF_RNG) === 0) missing.push('a random number generator (CKF_RNG)');
  if ((info.flags & P.CKF_USER_PIN_INITIALIZED) === 0) missing.push('a user PIN (CKF_USER_PIN_INITIALIZED)');
  if ((info.flags & P.CKF_WRITE_PROTECTED) !== 0) missing.push('a writable token (it is CKF_WRITE_PROTECTED)');
  return missing;
}

/** Everything the token in `slot` lacks for `profile` (token flags first), one line each; empty when nothing. */
export function missingFeatures(m: P.Pkcs11, slot: P.Handle, profile: TokenProfile = 'gcm-ecdh'): string[] {
  return [...missingTokenFlags(m, slot), ...missingMechanisms(m, slot, PROFILE_NEEDS[profile])];
}

/** Per profile, strongest first, what the token lacks of its mechanisms (empty: it meets it). */
export function profileReport(m: P.Pkcs11, slot: P.Handle): { profile: TokenProfile; missing: string[] }[] {
  return TOKEN_PROFILES.map((profile) => ({ profile, missing: missingMechanisms(m, slot, PROFILE_NEEDS[profile]) }));
}

/**
 * The profiles the token meets, strongest first; refuses a token that meets none (or lacks a
 * token flag), naming all of what each profile lacks.
 */
export function checkTokenSupports(m: P.Pkcs11, slot: P.Handle, what: string): TokenProfile[] {
  const flags = missingTokenFlags(m, slot);
  const report = profileReport(m, slot);
  const met = report.filter((r) => r.missing.length === 0).map((r) => r.profile);
  if (flags.length === 0 && met.length > 0) return met;
  const parts = [...flags, ...(met.length ? [] : report.map((r) => `for profile ${r.profile}: ${r.missing.join(', ')}`))];
  throw new TokenCheckError(TokenCheckCode.Unsupported, `${what} lacks what the vault's firmware needs: ${parts.join('; ')}`);
}

/** This file's refusals, and open.ts's for a token it can not find: a code of TokenCheckCode (range 3300-3399). */
export const TokenCheckError = codedErrorClass('TokenCheckError', TokenCheckCode);
export type TokenCheckError = InstanceType<typeof TokenCheckError>;
