/**
 * Firmware token profiles: which PKCS#11 mechanisms the firmware's token layer (token-pkcs11.ts)
 * uses, as a named set, so that a module (or a transport such as p11-kit's client) that lacks
 * some still runs the vault on standard mechanisms it has, explicitly and never by a silent
 * fallback. Strongest first; the vault provisions on the strongest its module meets and keeps it
 * (the profile is recorded by the labels of its keys in the token: enclave/vault/keys.ts).
 *
 *   gcm-ecdh   records sealed with CKM_AES_GCM under one token AES key (record.ts formats 1-3);
 *              the OPAQUE P256-SHA256 server key is a token EC key pair, its Diffie-Hellman by
 *              CKM_ECDH1_DERIVE (vault/token-dh.ts).
 *   ctr-hmac   records sealed by Encrypt-then-MAC on two token keys (record.ts format 4): AES-256
 *              in counter mode (NIST SP 800-38A §6.5) whose keystream blocks are the token's
 *              CKM_AES_ECB encryptions of the counter blocks, then HMAC-SHA256 (CKM_SHA256_HMAC)
 *              over AAD || IV || ciphertext || AL truncated to 16 bytes, the MAC step and tag of RFC 7518
 *              §5.2.2.1 (AES_128_CBC_HMAC_SHA_256's T_LEN). Both keys stay in the token; the
 *              keystream and the plaintext pass through firmware memory, as the plaintext does
 *              under GCM. The P-256 server key is derived in the firmware (as the ristretto255
 *              key always is).
 * Why counter mode from ECB and not RFC 7518's CBC: p11-kit 0.24.1's client (Debian 12's
 * p11-kit-client.so) serializes a mechanism only when its rpc-message.c
 * (`p11_rpc_mechanism_is_supported`) knows it takes no parameter or knows its parameter's layout.
 * Of what SoftHSM2 2.6.1 lists, it carries CKM_AES_KEY_GEN, CKM_AES_ECB, CKM_GENERIC_SECRET_KEY_GEN,
 * the digests and HMACs, CKM_EC_KEY_PAIR_GEN and CKM_ECDSA; it drops CKM_AES_CBC(_PAD), CKM_AES_CTR,
 * CKM_AES_GCM, CKM_AES_CMAC, CKM_AES_KEY_WRAP(_PAD) and CKM_ECDH1_DERIVE from C_GetMechanismList
 * and answers CKR_MECHANISM_INVALID for them itself (test/hsm/tokens/p11kit-carries.test.ts runs
 * `p11-kit server` on SoftHSM2 to pin this). Later p11-kit releases serialize the AES modes' IVs,
 * CK_GCM_PARAMS and CK_ECDH1_DERIVE_PARAMS (`p11_rpc_mechanism_serializers` on p11-kit's master).
 * A profile whose keys stay in the token was preferred over deriving a data key into firmware
 * memory (HMAC of a token key, then AES-GCM in the firmware).
 */
import * as P from './api/pkcs11.ts';
import { EnclaveFault, PlatformFault } from './api/codes.ts';
import type { Token } from './token.ts';

/** Every profile, strongest first; the first is also that of a token that does not say (a Token without `profiles`). */
export const TOKEN_PROFILES = ['gcm-ecdh', 'ctr-hmac'] as const;
export type TokenProfile = (typeof TOKEN_PROFILES)[number];
export const DEFAULT_TOKEN_PROFILE: TokenProfile = TOKEN_PROFILES[0];

export interface MechanismNeed {
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

const COMMON: readonly MechanismNeed[] = [
  { mechanism: P.CKM_AES_KEY_GEN, name: 'CKM_AES_KEY_GEN', flags: [F.generate], size: 32 },
  { mechanism: P.CKM_GENERIC_SECRET_KEY_GEN, name: 'CKM_GENERIC_SECRET_KEY_GEN', flags: [F.generate] },
  { mechanism: P.CKM_SHA256_HMAC, name: 'CKM_SHA256_HMAC', flags: [F.sign] },
  { mechanism: P.CKM_SHA512_HMAC, name: 'CKM_SHA512_HMAC', flags: [F.sign] },
];

/** The mechanisms (with flags and key sizes, v2.40 §5.5 CK_MECHANISM_INFO) each profile needs. */
export const PROFILE_NEEDS: Readonly<Record<TokenProfile, readonly MechanismNeed[]>> = {
  'gcm-ecdh': [
    COMMON[0]!,
    { mechanism: P.CKM_AES_GCM, name: 'CKM_AES_GCM', flags: [F.encrypt, F.decrypt], size: 32 },
    ...COMMON.slice(1),
    { mechanism: P.CKM_EC_KEY_PAIR_GEN, name: 'CKM_EC_KEY_PAIR_GEN', flags: [F.pair], size: 256 },
    { mechanism: P.CKM_ECDH1_DERIVE, name: 'CKM_ECDH1_DERIVE', flags: [F.derive] },
  ],
  'ctr-hmac': [COMMON[0]!, { mechanism: P.CKM_AES_ECB, name: 'CKM_AES_ECB', flags: [F.encrypt], size: 32 }, ...COMMON.slice(1)],
};

/** What the token in `slot` lacks of `needs`, one line each (empty: nothing). */
export function missingMechanisms(m: P.Pkcs11, slot: P.Handle, needs: readonly MechanismNeed[]): string[] {
  const missing: string[] = [];
  const have = new Set(m.C_GetMechanismList(slot).map(Number));
  for (const n of needs) {
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

/** The profiles whose mechanisms the token in `slot` has, strongest first. */
export function supportedProfiles(m: P.Pkcs11, slot: P.Handle): TokenProfile[] {
  return TOKEN_PROFILES.filter((p) => missingMechanisms(m, slot, PROFILE_NEEDS[p]).length === 0);
}

/** The sealing keys' labels (enclave/vault/keys.ts): bkv-seal on gcm-ecdh, bkv-seal-ctr and bkv-seal-mac on ctr-hmac. */
export const LABEL_SEAL = 'bkv-seal';
export const LABEL_SEAL_CTR = 'bkv-seal-ctr';
export const LABEL_SEAL_MAC = 'bkv-seal-mac';

/**
 * The profile whose sealing keys the token holds, or null when it holds none (not provisioned);
 * throws when it holds both. Read by the firmware at start and by the device to log it.
 */
export function provisionedProfile(token: Pick<Token, 'findKey'>): TokenProfile | null {
  const gcm = token.findKey(LABEL_SEAL) !== null;
  const ctr = token.findKey(LABEL_SEAL_CTR) !== null || token.findKey(LABEL_SEAL_MAC) !== null;
  if (gcm && ctr) throw new EnclaveFault(PlatformFault.TokenError, 'token: it holds the sealing keys of two token profiles (gcm-ecdh and ctr-hmac)');
  return gcm ? 'gcm-ecdh' : ctr ? 'ctr-hmac' : null;
}
