/**
 * A fast, synchronous HPKE sender (RFC 9180 base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
 * AES-256-GCM) on node:crypto, producing exactly the messages of client/e2e-seal.ts `sealRequest`
 * (test/bench-lib.test.ts opens them with the enclave's `openRequest`). The benches use it so that
 * the load generator costs little: the product's WebCrypto path (@hpke/core) costs many times more
 * per seal.
 *
 *   request message  = enc (32) || AES-256-GCM(key, base_nonce, aad = "req" || id, request)
 *   response key     = Export("bkv/e2e/response", 32)
 *   response message = nonce (12) || AES-256-GCM(response key, nonce, aad = "resp" || id, pad(response))
 * with the enclave's answer padding (enclave/api/padding.ts): `openResponse` unpads.
 */
import { createCipheriv, createDecipheriv, createHmac, createPrivateKey, createPublicKey, diffieHellman, randomBytes } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { unpadResponse } from '../../enclave/api/padding.ts';

const te = new TextEncoder();
const INFO = te.encode('bkv/e2e/v1');
const RESPONSE_LABEL = te.encode('bkv/e2e/response');
const KEM_SUITE = Buffer.from([...te.encode('KEM'), 0x00, 0x20]);
const HPKE_SUITE = Buffer.from([...te.encode('HPKE'), 0x00, 0x20, 0x00, 0x01, 0x00, 0x02]);
const V1 = te.encode('HPKE-v1');
const EMPTY = new Uint8Array(0);
/**
 * Ephemeral keys are imported from random bytes (PKCS#8) and their public keys computed as
 * X25519(sk, 9), never made by generateKeyPairSync and exported: on Node 20.20 that pattern
 * deadlocks now and then (KeyObjectHandle::ExportJWK holds the key's mutex while it allocates; a
 * garbage collection in that window runs ~KeyGenJob of the same key, which takes the mutex; seen
 * here after some 10^5 seals, the main thread stuck in futex_wait forever).
 */
const PKCS8_X25519 = Buffer.from('302e020100300506032b656e04220420', 'hex');
const BASE_POINT = createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: Buffer.concat([Buffer.of(9), Buffer.alloc(31)]).toString('base64url') }, format: 'jwk' });
const x25519Key = (sk: Uint8Array): KeyObject => createPrivateKey({ key: Buffer.concat([PKCS8_X25519, sk]), format: 'der', type: 'pkcs8' });

const extract = (salt: Uint8Array, ikm: Uint8Array): Buffer => createHmac('sha256', salt).update(ikm).digest();
const labeledExtract = (suite: Uint8Array, salt: Uint8Array, label: string, ikm: Uint8Array): Buffer =>
  extract(salt, Buffer.concat([V1, suite, te.encode(label), ikm]));
/** HKDF-Expand for L <= 32 (one block). */
const labeledExpand = (suite: Uint8Array, prk: Uint8Array, label: string, info: Uint8Array, L: number): Buffer => {
  const l = Buffer.from([L >> 8, L & 0xff]);
  return createHmac('sha256', prk).update(Buffer.concat([l, V1, suite, te.encode(label), info, Buffer.of(1)])).digest().subarray(0, L);
};

/** The key schedule context is fixed (mode base, empty psk id, fixed info): computed once. */
const KSC = Buffer.concat([
  Buffer.of(0),
  labeledExtract(HPKE_SUITE, EMPTY, 'psk_id_hash', EMPTY),
  labeledExtract(HPKE_SUITE, EMPTY, 'info_hash', INFO),
]);

const withPrefix = (prefix: string, id: Uint8Array): Buffer => Buffer.concat([te.encode(prefix), id]);

export interface SealedRequest {
  message: Uint8Array;
  /** The response key (HPKE export): opens the enclave's answer. */
  responseKey: Buffer;
}

export class FastSealer {
  private readonly pkR: KeyObject;
  constructor(private readonly enclavePublicKey: Uint8Array) {
    // JWK import: about 10x cheaper than DER (SPKI) through OpenSSL 3's decoders.
    this.pkR = createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: Buffer.from(enclavePublicKey).toString('base64url') }, format: 'jwk' });
  }

  seal(recordId: Uint8Array, request: Uint8Array): SealedRequest {
    const privateKey = x25519Key(randomBytes(32));
    const enc = diffieHellman({ privateKey, publicKey: BASE_POINT });
    const dh = diffieHellman({ privateKey, publicKey: this.pkR });
    const eaePrk = labeledExtract(KEM_SUITE, EMPTY, 'eae_prk', dh);
    const shared = labeledExpand(KEM_SUITE, eaePrk, 'shared_secret', Buffer.concat([enc, this.enclavePublicKey]), 32);
    const secret = labeledExtract(HPKE_SUITE, shared, 'secret', EMPTY);
    const key = labeledExpand(HPKE_SUITE, secret, 'key', KSC, 32);
    const nonce = labeledExpand(HPKE_SUITE, secret, 'base_nonce', KSC, 12);
    const exp = labeledExpand(HPKE_SUITE, secret, 'exp', KSC, 32);
    const responseKey = labeledExpand(HPKE_SUITE, exp, 'sec', RESPONSE_LABEL, 32);
    const c = createCipheriv('aes-256-gcm', key, nonce);
    c.setAAD(withPrefix('req', recordId));
    const message = Buffer.concat([enc, c.update(request), c.final(), c.getAuthTag()]);
    return { message: new Uint8Array(message.buffer, message.byteOffset, message.length), responseKey };
  }
}

/** Opens an enclave answer sealed under `responseKey` and unpads it; null if it does not authenticate or is not padded. */
export function openResponse(responseKey: Buffer, recordId: Uint8Array, response: Uint8Array): Uint8Array | null {
  if (response.length < 28) return null;
  try {
    const d = createDecipheriv('aes-256-gcm', responseKey, response.subarray(0, 12));
    d.setAAD(withPrefix('resp', recordId));
    d.setAuthTag(response.subarray(response.length - 16));
    const out = Buffer.concat([d.update(response.subarray(12, response.length - 16)), d.final()]);
    return unpadResponse(new Uint8Array(out.buffer, out.byteOffset, out.length));
  } catch {
    return null;
  }
}
