/**
 * The end-to-end envelope's HPKE key schedule (RFC 9180 base mode, DHKEM(X25519, HKDF-SHA256),
 * HKDF-SHA256, AES-256-GCM, info "bkv/e2e/v1"), from the X25519 shared secret on: what both
 * sides derive (§4.1 ExtractAndExpand with kem_context = enc || pkR, §5.1 key schedule, §5.3
 * Export). Shared by the enclave's receiver (enclave/vault/e2e-open.ts) and the Node sender
 * (client/e2e-seal-node.ts); the browser client runs the same protocol on @hpke/core
 * (client/e2e-seal.ts), and test/e2e.test.ts checks every pair both ways.
 *
 * Only HMAC-SHA256 is needed, passed in (`ScheduleHash`): the enclave gives libsodium's, the
 * Node client node:crypto's. Every LabeledExtract/LabeledExpand prefix is computed once; where
 * the hash can key an HMAC once for several messages (`hmacKey`, hash.ts), the three expands
 * keyed with `secret` (§5.1) share one keyed state, and the extract keyed with the empty salt
 * (§4.1 eae_prk) starts from a keyed state made once per hash.
 */
import { LABELS } from './labels.ts';
import { concatAll } from '../opaque/bytes.ts';
import type { HashPrimitives, HmacKey } from '../opaque/hash.ts';

/** The HMAC-SHA256 the schedule runs on (and, where it has it, its keyed state for several messages). */
export type ScheduleHash = Pick<HashPrimitives, 'hmac' | 'hmacKey'>;

const te = new TextEncoder();
const V1 = te.encode('HPKE-v1');
const KEM_SUITE = Uint8Array.of(...te.encode('KEM'), 0x00, 0x20); // DHKEM(X25519, HKDF-SHA256)
const HPKE_SUITE = Uint8Array.of(...te.encode('HPKE'), 0x00, 0x20, 0x00, 0x01, 0x00, 0x02); // + HKDF-SHA256, AES-256-GCM
const INFO = te.encode(LABELS.e2eInfo);
const RESPONSE_LABEL = te.encode(LABELS.e2eResponse);
const EMPTY = new Uint8Array(0);
const ONE = Uint8Array.of(1);

/** The constant front of a LabeledExtract input (§4): "HPKE-v1" || suite_id || label. */
const extractPrefix = (suite: Uint8Array, label: string): Uint8Array => concatAll([V1, suite, te.encode(label)]);
/** The constant front of a LabeledExpand info (§4): I2OSP(L, 2) || "HPKE-v1" || suite_id || label. */
const expandPrefix = (suite: Uint8Array, label: string, L: number): Uint8Array => concatAll([Uint8Array.of(L >> 8, L & 0xff), V1, suite, te.encode(label)]);

/**
 * LabeledExtract(salt, label, ikm) with its prefix precomputed (HMAC with an empty key is HMAC
 * with 32 zero bytes, RFC 5869 §2.2's default salt).
 */
export function labeledExtract(h: ScheduleHash, prefix: Uint8Array, salt: Uint8Array, ikm: Uint8Array): Uint8Array {
  return h.hmac(salt, prefix, ikm);
}

/** LabeledExpand for L <= 32 (a single HMAC block), its prefix precomputed; `info` in up to two parts. */
export function labeledExpand(h: ScheduleHash, prefix: Uint8Array, prk: Uint8Array, info: Uint8Array, L: number, info2?: Uint8Array): Uint8Array {
  const out = info2 ? h.hmac(prk, prefix, info, info2, ONE) : h.hmac(prk, prefix, info, ONE);
  if (L === out.length) return out;
  // A copy, the rest wiped: a view of the small array would give it an ArrayBuffer (bytes.ts latin1Key).
  const r = out.slice(0, L);
  out.fill(0);
  return r;
}

/** §7.1.3 DeriveKeyPair's prefixes for X25519: sk = LabeledExpand(LabeledExtract("", "dkp_prk", ikm), "sk", "", 32). */
export const DERIVE_KEY_PAIR = { extract: extractPrefix(KEM_SUITE, 'dkp_prk'), expand: expandPrefix(KEM_SUITE, 'sk', 32) } as const;

const X_EAE_PRK = extractPrefix(KEM_SUITE, 'eae_prk');
const E_SHARED_SECRET = expandPrefix(KEM_SUITE, 'shared_secret', 32);
const X_SECRET = extractPrefix(HPKE_SUITE, 'secret');
const E_KEY = expandPrefix(HPKE_SUITE, 'key', 32);
const E_BASE_NONCE = expandPrefix(HPKE_SUITE, 'base_nonce', 12);
const E_EXP = expandPrefix(HPKE_SUITE, 'exp', 32);
const E_SEC = expandPrefix(HPKE_SUITE, 'sec', 32);
const X_PSK_ID_HASH = extractPrefix(HPKE_SUITE, 'psk_id_hash');
const X_INFO_HASH = extractPrefix(HPKE_SUITE, 'info_hash');

/**
 * HMAC keyed with the empty salt (32 zero bytes, RFC 5869 §2.2), made once per hash: a constant,
 * not a secret. Null for a hash without `hmacKey`.
 */
const zeroSaltKeys = new WeakMap<ScheduleHash, HmacKey | null>();
function zeroSaltKey(h: ScheduleHash): HmacKey | null {
  let k = zeroSaltKeys.get(h);
  if (k === undefined) {
    k = h.hmacKey ? h.hmacKey(new Uint8Array(32)) : null;
    zeroSaltKeys.set(h, k);
  }
  return k;
}

/** The key schedule context of base mode with this info (§5.1): fixed; computed at the first use. */
let ksc: Uint8Array | undefined;
function keyScheduleContext(h: ScheduleHash): Uint8Array {
  ksc ??= concatAll([Uint8Array.of(0), labeledExtract(h, X_PSK_ID_HASH, EMPTY, EMPTY), labeledExtract(h, X_INFO_HASH, EMPTY, INFO)]);
  return ksc;
}

/** What both sides of one envelope derive from the X25519 shared secret (§4.1, §5.1): the AEAD key and nonce of the request, the exporter secret. */
export interface E2eContext {
  key: Uint8Array;
  nonce: Uint8Array;
  exporter: Uint8Array;
}

/**
 * The KEM's ExtractAndExpand (§4.1, kem_context = enc || pkR) and the base mode key schedule
 * (§5.1), from the Diffie-Hellman output. Zeroizes its intermediates; the caller zeroizes `dh`
 * and the result.
 */
export function e2eContext(h: ScheduleHash, dh: Uint8Array, enc: Uint8Array, pkR: Uint8Array): E2eContext {
  const k = keyScheduleContext(h);
  const z = zeroSaltKey(h);
  const eaePrk = z ? z.mac(X_EAE_PRK, dh) : labeledExtract(h, X_EAE_PRK, EMPTY, dh);
  const shared = labeledExpand(h, E_SHARED_SECRET, eaePrk, enc, 32, pkR);
  const secret = labeledExtract(h, X_SECRET, shared, EMPTY);
  eaePrk.fill(0);
  shared.fill(0);
  if (!h.hmacKey) {
    const key = labeledExpand(h, E_KEY, secret, k, 32);
    const nonce = labeledExpand(h, E_BASE_NONCE, secret, k, 12);
    const exporter = labeledExpand(h, E_EXP, secret, k, 32);
    secret.fill(0);
    return { key, nonce, exporter };
  }
  // LabeledExpand(secret, label, key_schedule_context, L) for L <= 32: HMAC(secret, prefix || ksc || 0x01).
  const s = h.hmacKey(secret);
  secret.fill(0);
  try {
    const n = s.mac(E_BASE_NONCE, k, ONE);
    const nonce = n.slice(0, 12);
    n.fill(0);
    return { key: s.mac(E_KEY, k, ONE), nonce, exporter: s.mac(E_EXP, k, ONE) };
  } finally {
    s.dispose();
  }
}

/** The response key: Export("bkv/e2e/response", 32) of the context (§5.3). */
export function e2eResponseKey(h: ScheduleHash, exporter: Uint8Array): Uint8Array {
  return labeledExpand(h, E_SEC, exporter, RESPONSE_LABEL, 32);
}
