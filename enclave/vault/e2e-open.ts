/**
 * The enclave's side of the end-to-end envelope (client/e2e-seal.ts), synchronous: X25519 and
 * AES-GCM on node:crypto, the key schedule's HMAC-SHA256 on the SHA-256 the receiver was made with
 * (libsodium's in the enclave, node:crypto's by default). RFC 9180 base mode receiver for DHKEM(X25519, HKDF-SHA256) (§4.1, §7.1.3 DeriveKeyPair),
 * HKDF-SHA256 and AES-256-GCM (§5.1 key schedule, §5.2 Open, §5.3 Export). Byte for byte the
 * protocol of `openRequest` in client/e2e-seal.ts (the @hpke/core one clients use in a browser;
 * test/e2e.test.ts checks both ways), much cheaper: no WebCrypto promise per step
 * (bench/breakdown.ts times both).
 */
import { createCipheriv, createDecipheriv, createPrivateKey, createPublicKey, diffieHellman } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { EnclaveFault, Handling } from '../api/codes.ts';
import { LABELS, e2eAad } from '../api/labels.ts';
import { padResponse } from '../api/padding.ts';
import { nodeHash } from '../opaque/hash-node.ts';
import type { HashPrimitives } from '../opaque/hash.ts';

const te = new TextEncoder();
const V1 = te.encode('HPKE-v1');
const KEM_SUITE = Uint8Array.of(...te.encode('KEM'), 0x00, 0x20); // DHKEM(X25519, HKDF-SHA256)
const HPKE_SUITE = Uint8Array.of(...te.encode('HPKE'), 0x00, 0x20, 0x00, 0x01, 0x00, 0x02); // + HKDF-SHA256, AES-256-GCM
const INFO = te.encode(LABELS.e2eInfo);
const RESPONSE_LABEL = te.encode(LABELS.e2eResponse);
const EMPTY = new Uint8Array(0);
const ENC_LEN = 32;

/** The constant front of a LabeledExtract input (§4): "HPKE-v1" || suite_id || label. */
const extractPrefix = (suite: Uint8Array, label: string): Buffer => Buffer.concat([V1, suite, te.encode(label)]);
/** The constant front of a LabeledExpand info (§4): I2OSP(L, 2) || "HPKE-v1" || suite_id || label. */
const expandPrefix = (suite: Uint8Array, label: string, L: number): Buffer => Buffer.concat([Uint8Array.of(L >> 8, L & 0xff), V1, suite, te.encode(label)]);
const ONE = Uint8Array.of(1);

/**
 * LabeledExtract(salt, label, ikm) with its prefix precomputed (HMAC with an empty key is HMAC
 * with 32 zero bytes, RFC 5869 §2.2's default salt).
 */
function labeledExtract(h: HashPrimitives, prefix: Uint8Array, salt: Uint8Array, ikm: Uint8Array): Uint8Array {
  return h.hmac(salt, prefix, ikm);
}

/** LabeledExpand for L <= 32 (a single HMAC block), its prefix precomputed; `info` in up to two parts. */
function labeledExpand(h: HashPrimitives, prefix: Uint8Array, prk: Uint8Array, info: Uint8Array, L: number, info2?: Uint8Array): Uint8Array {
  const out = info2 ? h.hmac(prk, prefix, info, info2, ONE) : h.hmac(prk, prefix, info, ONE);
  return L === out.length ? out : out.subarray(0, L);
}

/** The SHA-256 of the key schedule unless the enclave gives its own (the same bytes). */
const NODE_SHA256 = nodeHash('SHA-256');

// Every label of the receiver's path, precomputed once.
const X_DKP_PRK = extractPrefix(KEM_SUITE, 'dkp_prk');
const E_SK = expandPrefix(KEM_SUITE, 'sk', 32);
const X_EAE_PRK = extractPrefix(KEM_SUITE, 'eae_prk');
const E_SHARED_SECRET = expandPrefix(KEM_SUITE, 'shared_secret', 32);
const X_SECRET = extractPrefix(HPKE_SUITE, 'secret');
const E_KEY = expandPrefix(HPKE_SUITE, 'key', 32);
const E_BASE_NONCE = expandPrefix(HPKE_SUITE, 'base_nonce', 12);
const E_EXP = expandPrefix(HPKE_SUITE, 'exp', 32);
const E_SEC = expandPrefix(HPKE_SUITE, 'sec', 32);
const AAD_REQ = te.encode(LABELS.e2eRequestAad);
const AAD_RESP = te.encode(LABELS.e2eResponseAad);

/** The key schedule context of base mode with this info (§5.1): fixed, computed once. */
const KSC = Buffer.concat([
  Uint8Array.of(0),
  labeledExtract(NODE_SHA256, extractPrefix(HPKE_SUITE, 'psk_id_hash'), EMPTY, EMPTY),
  labeledExtract(NODE_SHA256, extractPrefix(HPKE_SUITE, 'info_hash'), EMPTY, INFO),
]);

const b64u = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.length).toString('base64url');
const badPayload = () => new EnclaveFault(Handling.BadPayload, 'end-to-end payload does not open');

export interface E2eReceiver {
  publicKey: Uint8Array;
  privateKey: KeyObject;
  /**
   * SHA-256 for the key schedule's HMACs: the enclave passes libsodium's (hash-sodium.ts), which
   * leaves no native handle per call for the device's garbage collector to finalize.
   */
  hash: HashPrimitives;
}

/** §7.1.3 DeriveKeyPair for X25519: sk = LabeledExpand(LabeledExtract("", "dkp_prk", ikm), "sk", "", 32). */
export function deriveE2eReceiver(ikm: Uint8Array, hash: HashPrimitives = NODE_SHA256): E2eReceiver {
  if (hash.name !== 'SHA-256') throw new TypeError('deriveE2eReceiver: the key schedule needs SHA-256');
  const dkp = labeledExtract(hash, X_DKP_PRK, EMPTY, ikm);
  const sk = labeledExpand(hash, E_SK, dkp, EMPTY, 32);
  // PKCS#8 (RFC 8410) wrapping of the raw X25519 private key.
  const der = Buffer.concat([Buffer.from('302e020100300506032b656e04220420', 'hex'), sk]);
  const privateKey = createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
  const x = new Uint8Array(Buffer.from((createPublicKey(privateKey).export({ format: 'jwk' }) as { x: string }).x, 'base64url'));
  sk.fill(0);
  der.fill(0);
  dkp.fill(0);
  return { publicKey: x, privateKey, hash };
}

/** What both sides of one envelope derive from the X25519 shared secret (§4.1, §5.1): the AEAD key and nonce of the request, the exporter secret. */
export interface E2eContext {
  key: Uint8Array;
  nonce: Uint8Array;
  exporter: Uint8Array;
}

/**
 * The KEM's ExtractAndExpand (§4.1, kem_context = enc || pkR) and the base mode key schedule
 * (§5.1), from the Diffie-Hellman output: the same for the sender (bench/lib/hpke.ts) and the
 * receiver (`openRequestSync`). Zeroizes its intermediates; the caller zeroizes `dh` and the result.
 */
export function e2eContext(h: HashPrimitives, dh: Uint8Array, enc: Uint8Array, pkR: Uint8Array): E2eContext {
  const eaePrk = labeledExtract(h, X_EAE_PRK, EMPTY, dh);
  const shared = labeledExpand(h, E_SHARED_SECRET, eaePrk, enc, 32, pkR);
  const secret = labeledExtract(h, X_SECRET, shared, EMPTY);
  const key = labeledExpand(h, E_KEY, secret, KSC, 32);
  const nonce = labeledExpand(h, E_BASE_NONCE, secret, KSC, 12);
  const exporter = labeledExpand(h, E_EXP, secret, KSC, 32);
  eaePrk.fill(0);
  shared.fill(0);
  secret.fill(0);
  return { key, nonce, exporter };
}

/** The response key: Export("bkv/e2e/response", 32) of the context (§5.3). */
export function e2eResponseKey(h: HashPrimitives, exporter: Uint8Array): Uint8Array {
  return labeledExpand(h, E_SEC, exporter, RESPONSE_LABEL, 32);
}

/** Opens one request sealed by `sealRequest`; returns it and how to seal the answer. */
export function openRequestSync(
  r: E2eReceiver,
  recordId: Uint8Array,
  message: Uint8Array,
  random: (n: number) => Uint8Array,
): { request: Uint8Array; sealResponse(response: Uint8Array): Uint8Array } {
  if (!(message instanceof Uint8Array) || message.length < ENC_LEN + 16) throw badPayload();
  const enc = message.subarray(0, ENC_LEN);
  let request: Uint8Array;
  let responseKey: Uint8Array;
  const h = r.hash;
  try {
    const pkE = createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: b64u(enc) }, format: 'jwk' });
    const dh = diffieHellman({ privateKey: r.privateKey, publicKey: pkE });
    const { key, nonce, exporter } = e2eContext(h, dh, enc, r.publicKey);
    const ct = message.subarray(ENC_LEN);
    const d = createDecipheriv('aes-256-gcm', key, nonce);
    d.setAAD(e2eAad(AAD_REQ, recordId));
    d.setAuthTag(ct.subarray(ct.length - 16));
    const pt = d.update(ct.subarray(0, ct.length - 16));
    d.final(); // throws unless the tag verifies (GCM returns no more bytes)
    request = new Uint8Array(pt.buffer, pt.byteOffset, pt.length);
    responseKey = e2eResponseKey(h, exporter);
    for (const b of [dh, key, nonce, exporter]) b.fill(0);
  } catch {
    throw badPayload();
  }
  return {
    request,
    sealResponse(answer: Uint8Array): Uint8Array {
      const response = padResponse(answer); // one length for every outcome (padding.ts)
      const n = random(12);
      const c = createCipheriv('aes-256-gcm', responseKey, n);
      c.setAAD(e2eAad(AAD_RESP, recordId));
      const out = new Uint8Array(12 + response.length + 16);
      out.set(n, 0);
      const body = c.update(response);
      out.set(body, 12);
      c.final();
      out.set(c.getAuthTag(), 12 + body.length);
      return out;
    },
  };
}
