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
import { DERIVE_KEY_PAIR, e2eContext, e2eResponseKey, labeledExpand, labeledExtract } from '../api/e2e-schedule.ts';
import { nodeHash } from '../opaque/hash-node.ts';
import type { HashPrimitives } from '../opaque/hash.ts';

const te = new TextEncoder();
const EMPTY = new Uint8Array(0);
const ENC_LEN = 32;
const AAD_REQ = te.encode(LABELS.e2eRequestAad);
const AAD_RESP = te.encode(LABELS.e2eResponseAad);

/** The SHA-256 of the key schedule unless the enclave gives its own (the same bytes). */
const NODE_SHA256 = nodeHash('SHA-256');

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
  const dkp = labeledExtract(hash, DERIVE_KEY_PAIR.extract, EMPTY, ikm);
  const sk = labeledExpand(hash, DERIVE_KEY_PAIR.expand, dkp, EMPTY, 32);
  // PKCS#8 (RFC 8410) wrapping of the raw X25519 private key.
  const der = Buffer.concat([Buffer.from('302e020100300506032b656e04220420', 'hex'), sk]);
  const privateKey = createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
  const x = new Uint8Array(Buffer.from((createPublicKey(privateKey).export({ format: 'jwk' }) as { x: string }).x, 'base64url'));
  sk.fill(0);
  der.fill(0);
  dkp.fill(0);
  return { publicKey: x, privateKey, hash };
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
