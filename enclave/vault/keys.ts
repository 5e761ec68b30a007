/**
 * Provisioning and the enclave's key hierarchy.
 *
 * These objects live in the token and never leave it (sensitive, never extractable):
 *   bkv-seal         AES-256 key: seals every stored record with AES-GCM (record.ts), on the
 *                    gcm-ecdh token profile;
 *   bkv-seal-ctr     AES-256 key (CKA_ENCRYPT only) and
 *   bkv-seal-mac     32-byte generic secret: seal every record by AES-CTR then HMAC-SHA256
 *                    (seal-ctr-hmac.ts), on the ctr-hmac profile (enclave/token-profiles.ts).
 *   bkv-oprf         64-byte generic secret: the root of the OPRF seeds.
 *   bkv-derive       32-byte generic secret: the root of every other enclave key.
 *   bkv-opaque-p256  P-256 key pair, on gcm-ecdh tokens with EC (Token.generateEcKeyPair): the
 *                    OPAQUE P256-SHA256 server key; its Diffie-Hellman runs in the token (token-dh.ts).
 * The profile is recorded by which sealing keys the token holds: a vault is provisioned on the
 * strongest profile its token meets (Token.profiles) and keeps it; a token holding the keys of a
 * profile it does not meet (a vault moved behind a transport that lacks AES-GCM), or of both, is
 * refused, never switched silently.
 * Derived with the token's HMAC into enclave memory (and zeroized on zeroization):
 *   oprf_seed per suite (RFC 9807 §6.2.1, Nh bytes)     = HMAC-SHA512/256(bkv-oprf, label)
 *   OPAQUE server key pair per suite (§6.4.1)            = DeriveDiffieHellmanKeyPair(HMAC(bkv-derive, label))
 *                                                          (ristretto255, and P-256 on tokens without EC)
 *   HPKE key pair (RFC 9180 §7.1.3), fake-record key, index key, audit key, audit seal key, key check.
 * JavaScript can not pin or lock memory: derived keys are zeroized when the enclave zeroizes,
 * but copies the engine made can not be reached.
 *
 * Fleet mode (ensureTokenKeys given a FleetVaultKeyRoot; docs/fleet-vault.md, "One set of vault
 * keys per fleet"): every member's token holds the same bkv-derive, bkv-oprf and sealing keys, so
 * everything derived above is the same on every member. Their values derive from the fleet secret
 * (enclave/fleet/vault-keys.ts) and are imported at provisioning (Token.importAesKey,
 * importHmacKey), bkv-derive first, then wiped; there is no bkv-opaque-p256 (a key generated in one
 * token can not reach the others): the P-256 server key derives from bkv-derive, as on tokens
 * without EC. At every start each key the token holds must be this fleet's (vault-keys.ts
 * `tokenKeyIs`), checked bkv-derive first: a token provisioned for another fleet (another secret
 * or charter) or as a single vault (random keys, a P-256 key pair) is refused with
 * Lifecycle.FleetKeysMismatch, before anything is imported into it.
 */
import { EnclaveFault, Lifecycle, PlatformFault } from '../api/codes.ts';
import { LABELS } from '../api/labels.ts';
import { deriveE2eReceiver } from './e2e-open.ts';
import type { X25519Maker } from './e2e-open.ts';
import type { E2eReceiver } from './e2e-open.ts';
import type { NativeHpke } from '../opaque/groups/sodium-native.ts';
import type { HashPrimitives } from '../opaque/hash.ts';
import { deriveServerKeyPair } from '../opaque/server.ts';
import type { ServerKeys } from '../opaque/server.ts';
import type { Suite, SuiteId } from '../opaque/suite.ts';
import { SUITE_IDS } from '../opaque/suite.ts';
import type { KeyHandle, Token } from '../token.ts';
import { TokenError } from '../token.ts';
import { tokenP256Key } from './token-dh.ts';
import type { SealKey } from './record.ts';
import { DEFAULT_TOKEN_PROFILE, LABEL_SEAL, LABEL_SEAL_CTR, LABEL_SEAL_MAC, provisionedProfile } from '../token-profiles.ts';
import type { TokenProfile } from '../token-profiles.ts';
import { fleetVaultKeyValue, tokenKeyIs } from '../fleet/vault-keys.ts';
import type { FleetKeyKind, FleetVaultKeyRoot } from '../fleet/vault-keys.ts';

export interface TokenKeyHandles {
  profile: TokenProfile;
  seal: SealKey;
  oprf: KeyHandle;
  derive: KeyHandle;
  p256?: KeyHandle;
  created: boolean;
}

export { LABEL_SEAL, LABEL_SEAL_CTR, LABEL_SEAL_MAC };
export const LABEL_OPRF = 'bkv-oprf';
export const LABEL_DERIVE = 'bkv-derive';
export const LABEL_P256 = 'bkv-opaque-p256';

const te = new TextEncoder();

export interface EnclaveKeys {
  seal: SealKey;
  derive: KeyHandle;
  server: Map<SuiteId, ServerKeys>;
  e2e: E2eReceiver;
  fakeKey: Uint8Array;
  indexKey: Uint8Array;
  auditKey: Uint8Array;
  /** AES-256 key that seals what audit events say (audit.ts). */
  auditSealKey: Uint8Array;
  keyCheck: Uint8Array;
}

function tokenCall<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof TokenError) throw new EnclaveFault(PlatformFault.TokenError, `token: ${e.ckr}`);
    throw e;
  }
}

const HMAC_LEN = { 'SHA-256': 32, 'SHA-512': 64 } as const;

/**
 * The token's HMAC of `data` under `key`, its length checked: what a token returns is input to
 * the enclave (a short or long key would reach a cipher as a RangeError), so a wrong length is
 * the token's typed fault (Platform.TokenError), as a TokenError is.
 */
function tokenHmac(token: Token, key: KeyHandle, hash: 'SHA-256' | 'SHA-512', data: Uint8Array): Uint8Array {
  const out = tokenCall(() => token.hmac(key, hash, data));
  if (!(out instanceof Uint8Array) || out.length !== HMAC_LEN[hash]) throw new EnclaveFault(PlatformFault.TokenError, `token: HMAC-${hash} output has the wrong length`);
  return out;
}

/** A fleet's vault keys per token profile, in the order they are imported and checked: bkv-derive first. */
export const FLEET_TOKEN_KEYS: Readonly<Record<TokenProfile, readonly { label: string; kind: FleetKeyKind; length: number }[]>> = {
  'gcm-ecdh': [
    { label: LABEL_DERIVE, kind: 'hmac', length: 32 },
    { label: LABEL_OPRF, kind: 'hmac', length: 64 },
    { label: LABEL_SEAL, kind: 'aes', length: 32 },
  ],
  'ctr-hmac': [
    { label: LABEL_DERIVE, kind: 'hmac', length: 32 },
    { label: LABEL_OPRF, kind: 'hmac', length: 64 },
    { label: LABEL_SEAL_CTR, kind: 'aes-encrypt', length: 32 },
    { label: LABEL_SEAL_MAC, kind: 'hmac', length: 32 },
  ],
};

const notThisFleet = (why: string) => new EnclaveFault(Lifecycle.FleetKeysMismatch, `the token's vault keys are not this fleet's: ${why}`);

/** Fleet mode of ensureTokenKeys (see the header): each key checked, or imported then checked, in FLEET_TOKEN_KEYS order. */
function ensureFleetKeys(token: Token, profile: TokenProfile, allowCreate: boolean, root: FleetVaultKeyRoot): TokenKeyHandles {
  if (token.findKey(LABEL_P256) !== null) throw notThisFleet(`it holds ${LABEL_P256}, a single vault's key`);
  const specs = FLEET_TOKEN_KEYS[profile];
  const found = specs.map((k) => token.findKey(k.label));
  // bkv-derive is imported first: keys without it were not imported by a member
  if (found[0] === null && found.some((h) => h !== null)) throw notThisFleet(`it holds vault keys but no ${LABEL_DERIVE}`);
  const missing = found.some((h) => h === null);
  if (missing && !allowCreate) throw new EnclaveFault(Lifecycle.NotProvisioned, 'token keys are missing for a provisioned enclave');
  const { importAesKey, importHmacKey } = token;
  if (missing && (importAesKey === undefined || importHmacKey === undefined)) {
    throw new EnclaveFault(PlatformFault.TokenError, "token: it can not create a key from its value (C_CreateObject), which a fleet member's token must");
  }
  const handles = new Map<string, KeyHandle>();
  for (const [i, k] of specs.entries()) {
    const value = fleetVaultKeyValue(root, k.label, k.length);
    try {
      let h = found[i] ?? null;
      if (h === null) h = k.kind === 'hmac' ? importHmacKey!.call(token, k.label, value) : importAesKey!.call(token, k.label, value, k.kind === 'aes-encrypt');
      if (!tokenKeyIs(token, h, k.kind, value)) throw notThisFleet(`its ${k.label} is another's (another fleet secret or charter, or a single vault)`);
      handles.set(k.label, h);
    } finally {
      value.fill(0);
    }
  }
  const seal: SealKey = profile === 'ctr-hmac' ? { enc: handles.get(LABEL_SEAL_CTR)!, mac: handles.get(LABEL_SEAL_MAC)! } : handles.get(LABEL_SEAL)!;
  return { profile, seal, oprf: handles.get(LABEL_OPRF)!, derive: handles.get(LABEL_DERIVE)!, created: missing };
}

/**
 * Finds the token keys, generating them on first start (provisioning) on the strongest profile the
 * token meets; a later start keeps the profile the keys were made for, or refuses. With `fleet`,
 * the fleet's keys instead (fleet mode, in the header): imported at provisioning, checked always.
 */
export function ensureTokenKeys(token: Token, allowCreate: boolean, fleet?: FleetVaultKeyRoot): TokenKeyHandles {
  return tokenCall(() => {
    const meets = token.profiles?.() ?? [DEFAULT_TOKEN_PROFILE];
    const have = provisionedProfile(token);
    const profile = have ?? meets[0];
    if (profile === undefined) throw new EnclaveFault(PlatformFault.TokenError, 'token: it meets no firmware token profile');
    if (!meets.includes(profile)) {
      throw new EnclaveFault(PlatformFault.TokenError, `token: the vault's keys are of token profile ${profile}, which this token does not meet (it meets: ${meets.join(', ') || 'none'})`);
    }
    if (fleet) return ensureFleetKeys(token, profile, allowCreate, fleet);
    const ctr = profile === 'ctr-hmac';
    const ec = !ctr && token.generateEcKeyPair !== undefined;
    let enc = token.findKey(ctr ? LABEL_SEAL_CTR : LABEL_SEAL);
    let mac = ctr ? token.findKey(LABEL_SEAL_MAC) : null;
    let oprf = token.findKey(LABEL_OPRF);
    let derive = token.findKey(LABEL_DERIVE);
    let p256 = ec ? token.findKey(LABEL_P256) : null;
    let created = false;
    if (enc === null || (ctr && mac === null) || oprf === null || derive === null || (ec && p256 === null)) {
      if (!allowCreate) throw new EnclaveFault(Lifecycle.NotProvisioned, 'token keys are missing for a provisioned enclave');
      enc ??= ctr ? token.generateAesKey(LABEL_SEAL_CTR, true) : token.generateAesKey(LABEL_SEAL);
      if (ctr) mac ??= token.generateHmacKey(LABEL_SEAL_MAC, 32);
      oprf ??= token.generateHmacKey(LABEL_OPRF, 64);
      derive ??= token.generateHmacKey(LABEL_DERIVE, 32);
      if (ec) p256 ??= token.generateEcKeyPair!(LABEL_P256);
      created = true;
    }
    const seal: SealKey = ctr ? { enc, mac: mac! } : enc;
    return { profile, seal, oprf, derive, ...(p256 !== null && { p256 }), created };
  });
}

/** The sealing key of the profile the token's keys are of (record.ts SealKey), or null when it holds none. */
export function findSealKey(token: Token): SealKey | null {
  const profile = provisionedProfile(token);
  if (profile === 'gcm-ecdh') return token.findKey(LABEL_SEAL);
  const enc = token.findKey(LABEL_SEAL_CTR);
  const mac = token.findKey(LABEL_SEAL_MAC);
  return enc !== null && mac !== null ? { enc, mac } : null;
}

export async function deriveEnclaveKeys(
  token: Token,
  handles: { seal: SealKey; oprf: KeyHandle; derive: KeyHandle; p256?: KeyHandle },
  suites: Map<SuiteId, Suite>,
  /** SHA-256 for the end-to-end key schedule (the vault passes its own: hash-native.ts or libsodium's WebAssembly build); node:crypto's when absent. */
  sha256?: HashPrimitives,
  /** Native libsodium's X25519 and AES-GCM for the end-to-end envelope (e2e-open.ts); node:crypto's when absent. */
  hpke?: NativeHpke | null,
  /** X25519 on Node's OpenSSL for the envelope instead (e2e-open.ts `deriveE2eReceiver`). */
  x25519?: X25519Maker | null,
): Promise<EnclaveKeys> {
  const d = (label: string) => tokenHmac(token, handles.derive, 'SHA-256', te.encode(label));
  const server = new Map<SuiteId, ServerKeys>();
  for (const id of SUITE_IDS) {
    const suite = suites.get(id);
    if (!suite) continue;
    const oprfSeed = tokenHmac(token, handles.oprf, suite.hash.name, te.encode(LABELS.oprfSeedPrefix + id));
    if (id === 'P256-SHA256' && handles.p256 !== undefined) {
      const k = tokenCall(() => tokenP256Key(token, handles.p256!));
      const dh = (e: Uint8Array, field: string) => tokenCall(() => k.dh(e, field));
      server.set(id, { oprfSeed, serverPrivateKey: new Uint8Array(0), serverPublicKey: k.publicKey, serverDh: dh });
      continue;
    }
    const seed = d(LABELS.opaqueServerKeyPrefix + id);
    const kp = deriveServerKeyPair(suite, seed);
    seed.fill(0);
    server.set(id, { oprfSeed, serverPrivateKey: kp.privateKey, serverPublicKey: kp.publicKey });
  }
  const hpkeIkm = d(LABELS.e2eKey);
  const e2e = deriveE2eReceiver(hpkeIkm, sha256, hpke, x25519);
  hpkeIkm.fill(0);
  return {
    seal: handles.seal,
    derive: handles.derive,
    server,
    e2e,
    fakeKey: d(LABELS.fakeRecord),
    indexKey: d(LABELS.index),
    auditKey: d(LABELS.audit),
    auditSealKey: d(LABELS.auditSeal),
    keyCheck: d(LABELS.keyCheck).slice(0, 16),
  };
}

export function zeroizeEnclaveKeys(k: EnclaveKeys): void {
  for (const s of k.server.values()) {
    s.oprfSeed.fill(0);
    s.serverPrivateKey.fill(0);
  }
  k.e2e.crypto.zeroize();
  k.fakeKey.fill(0);
  k.indexKey.fill(0);
  k.auditKey.fill(0);
  k.auditSealKey.fill(0);
}
