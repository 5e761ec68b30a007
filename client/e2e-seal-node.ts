/**
 * The client's end-to-end sender on node:crypto, synchronous (RFC 9180 base mode,
 * DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM): exactly the messages of
 * client/e2e-seal.ts `sealRequest` (test/client/e2e-seal-node.test.ts opens them with @hpke/core's
 * `openRequest`), with the key schedule the enclave runs (enclave/api/e2e-schedule.ts), at a
 * fraction of the cost of WebCrypto's promise per step. Node only. The benches and the soak
 * use it so that their load generators cost little.
 *
 *   request message  = enc (32) || AES-256-GCM(key, base_nonce, aad = "req" || id, request)
 *   response key     = Export("bkv/e2e/response", 32)
 *   response message = nonce (12) || AES-256-GCM(response key, nonce, aad = "resp" || id, pad(response))
 * with the enclave's answer padding (enclave/api/padding.ts): `openResponse` unpads.
 */
import { createCipheriv, createDecipheriv, createHmac, createPrivateKey, createPublicKey, diffieHellman, randomBytes } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { LABELS, e2eAad } from '../enclave/api/labels.ts';
import { unpadResponse } from '../enclave/api/padding.ts';
import { e2eContext, e2eResponseKey } from '../enclave/api/e2e-schedule.ts';
import type { ScheduleHash } from '../enclave/api/e2e-schedule.ts';

const te = new TextEncoder();
const AAD_REQ = te.encode(LABELS.e2eRequestAad);
const AAD_RESP = te.encode(LABELS.e2eResponseAad);
/** HMAC-SHA256 on node:crypto for the key schedule. */
const SHA256: ScheduleHash = {
  hmac(key: Uint8Array, ...parts: Uint8Array[]): Uint8Array {
    const m = createHmac('sha256', key);
    for (const p of parts) m.update(p);
    const d = m.digest();
    return new Uint8Array(d.buffer, d.byteOffset, d.length);
  },
};
/**
 * Ephemeral keys are imported from random bytes and their public keys computed as X25519(sk, 9),
 * never made by generateKeyPairSync and exported: on Node 20.20 that pattern deadlocks now and
 * then (KeyObjectHandle::ExportJWK holds the key's mutex while it allocates; a garbage collection
 * in that window runs ~KeyGenJob of the same key, which takes the mutex; seen here after some
 * 10^5 seals, the main thread stuck in futex_wait forever). The import is a JWK: about 50 us
 * where PKCS#8 DER through OpenSSL 3's decoders takes about 400. Node 20 requires the JWK's `x`
 * and builds the key from `d` alone (the public half is derived, not read), so `x` here is only a
 * placeholder; test/client/e2e-seal-node.test.ts opens these seals with @hpke/core, which fails if the
 * `enc` sent were not X25519(sk, 9).
 */
const BASE_X = Buffer.concat([Buffer.of(9), Buffer.alloc(31)]).toString('base64url');
const BASE_POINT = createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: BASE_X }, format: 'jwk' });
const x25519Key = (sk: Uint8Array): KeyObject => createPrivateKey({ key: { kty: 'OKP', crv: 'X25519', d: Buffer.from(sk).toString('base64url'), x: BASE_X }, format: 'jwk' });

export interface SealedRequest {
  message: Uint8Array;
  /** The response key (HPKE export): opens the enclave's answer. */
  responseKey: Uint8Array;
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
    const { key, nonce, exporter } = e2eContext(SHA256, dh, enc, this.enclavePublicKey);
    const responseKey = e2eResponseKey(SHA256, exporter);
    const c = createCipheriv('aes-256-gcm', key, nonce);
    c.setAAD(e2eAad(AAD_REQ, recordId));
    const message = Buffer.concat([enc, c.update(request), c.final(), c.getAuthTag()]);
    return { message: new Uint8Array(message.buffer, message.byteOffset, message.length), responseKey };
  }
}

/** Opens an enclave answer sealed under `responseKey` and unpads it; null if it does not authenticate or is not padded. */
export function openResponse(responseKey: Uint8Array, recordId: Uint8Array, response: Uint8Array): Uint8Array | null {
  if (response.length < 28) return null;
  try {
    const d = createDecipheriv('aes-256-gcm', responseKey, response.subarray(0, 12));
    d.setAAD(e2eAad(AAD_RESP, recordId));
    d.setAuthTag(response.subarray(response.length - 16));
    const out = Buffer.concat([d.update(response.subarray(12, response.length - 16)), d.final()]);
    return unpadResponse(new Uint8Array(out.buffer, out.byteOffset, out.length));
  } catch {
    return null;
  }
}

/**
 * FastSealer in the shape of the SDK's `sealRequest` (client/e2e-seal.ts): for a load driver that
 * takes a sealer (test/adversarial/soak.ts), so that it spends its CPU on the vault's answers, not
 * on WebCrypto promises. Seals only to `enclavePublicKey`; an answer that does not open throws.
 */
export function fastSealRequest(enclavePublicKey: Uint8Array) {
  const sealer = new FastSealer(enclavePublicKey);
  return async (pk: Uint8Array, recordId: Uint8Array, request: Uint8Array): Promise<{ message: Uint8Array; openResponse(response: Uint8Array): Promise<Uint8Array> }> => {
    if (Buffer.compare(pk, enclavePublicKey) !== 0) throw new Error('fastSealRequest: made for another enclave key');
    const { message, responseKey } = sealer.seal(recordId, request);
    return {
      message,
      openResponse: async (response) => {
        const plain = openResponse(responseKey, recordId, response);
        if (!plain) throw new Error('the answer does not open under this request\'s response key');
        return plain;
      },
    };
  };
}
