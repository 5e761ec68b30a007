/**
 * End-to-end encryption between a client and the enclave, through the untrusted host.
 * HPKE (RFC 9180) base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM, to the
 * enclave's public key (which clients pin):
 *
 *   request message = enc (32) || Seal(info = "bkv/e2e/v1", aad = "req" || record id, request)
 *   response key    = Export("bkv/e2e/response", 32) of the same context
 *   response message = nonce (12, random) || AES-256-GCM(response key, nonce, aad = "resp" || record id, pad(response))
 * where pad (padding.ts) brings every answer to the same length, whatever its outcome.
 *
 * The record id is bound in both directions, so the host can not replay a client's ciphertext
 * against another record or hand a response to the wrong request. A replayed request opens to
 * the same context and so the same response key: the enclave draws a fresh random nonce for
 * every response, so two answers under one key never share a nonce.
 * The client SDK seals with `sealRequest` (WebCrypto only: runs in browsers and in Node); the
 * enclave opens with enclave/vault/e2e-open.ts, the same protocol on node:crypto, synchronous and
 * cheaper. `openRequest` is that receiver on @hpke/core: tests, fuzz targets and the bench check
 * the enclave's against it; nothing outside them uses it.
 */
import { Aes256Gcm, CipherSuite, DhkemX25519HkdfSha256, HkdfSha256 } from '@hpke/core';
import { EnclaveFault, Handling } from '../enclave/api/codes.ts';
import { LABELS, e2eAad } from '../enclave/api/labels.ts';
import { padResponse, unpadResponse } from '../enclave/api/padding.ts';

const te = new TextEncoder();
const INFO = te.encode(LABELS.e2eInfo);
const RESPONSE_LABEL = te.encode(LABELS.e2eResponse);
const AAD_REQ = te.encode(LABELS.e2eRequestAad);
const AAD_RESP = te.encode(LABELS.e2eResponseAad);
const ENC_LEN = 32;

let suiteCache: CipherSuite | undefined;
function suite(): CipherSuite {
  suiteCache ??= new CipherSuite({ kem: new DhkemX25519HkdfSha256(), kdf: new HkdfSha256(), aead: new Aes256Gcm() });
  return suiteCache;
}

const buf = (b: Uint8Array): ArrayBuffer => b.slice().buffer as ArrayBuffer;

async function aesKey(raw: ArrayBuffer): Promise<CryptoKey> {
  return crypto.subtle.importKey('raw', raw, 'AES-GCM', false, ['encrypt', 'decrypt']);
}

const badPayload = () => new EnclaveFault(Handling.BadPayload, 'end-to-end payload does not open');

export interface E2eKeyPair {
  publicKey: Uint8Array;
  privateKey: CryptoKey;
}

/** RFC 9180 §7.1.3 DeriveKeyPair from 32+ bytes of secret input keying material. */
export async function deriveE2eKeyPair(ikm: Uint8Array): Promise<E2eKeyPair> {
  const kp = await suite().kem.deriveKeyPair(buf(ikm));
  const pub = new Uint8Array(await suite().kem.serializePublicKey(kp.publicKey));
  return { publicKey: pub, privateKey: kp.privateKey };
}

/** Client side: seal one request to the enclave; returns the message and how to open its answer. */
export async function sealRequest(
  enclavePublicKey: Uint8Array,
  recordId: Uint8Array,
  request: Uint8Array,
): Promise<{ message: Uint8Array; openResponse(response: Uint8Array): Promise<Uint8Array> }> {
  const s = suite();
  const pk = await s.kem.deserializePublicKey(buf(enclavePublicKey));
  const ctx = await s.createSenderContext({ recipientPublicKey: pk, info: buf(INFO) });
  const ct = new Uint8Array(await ctx.seal(buf(request), buf(e2eAad(AAD_REQ, recordId))));
  const key = await aesKey(await ctx.export(buf(RESPONSE_LABEL), 32));
  const message = new Uint8Array(ENC_LEN + ct.length);
  message.set(new Uint8Array(ctx.enc), 0);
  message.set(ct, ENC_LEN);
  return {
    message,
    async openResponse(response: Uint8Array) {
      if (response.length < 12 + 16) throw badPayload();
      try {
        const pt = await crypto.subtle.decrypt(
          { name: 'AES-GCM', iv: buf(response.subarray(0, 12)), additionalData: buf(e2eAad(AAD_RESP, recordId)) },
          key,
          buf(response.subarray(12)),
        );
        const unpadded = unpadResponse(new Uint8Array(pt));
        if (!unpadded) throw badPayload();
        return unpadded;
      } catch {
        throw badPayload();
      }
    },
  };
}

/** Enclave side: open one request; returns it and how to seal the answer (`random` draws each response nonce). */
export async function openRequest(
  kp: E2eKeyPair,
  recordId: Uint8Array,
  message: Uint8Array,
  random: (n: number) => Uint8Array,
): Promise<{ request: Uint8Array; sealResponse(response: Uint8Array): Promise<Uint8Array> }> {
  if (message.length < ENC_LEN + 16) throw badPayload();
  const s = suite();
  let request: Uint8Array;
  let key: CryptoKey;
  try {
    const ctx = await s.createRecipientContext({
      recipientKey: kp.privateKey,
      enc: buf(message.subarray(0, ENC_LEN)),
      info: buf(INFO),
    });
    request = new Uint8Array(await ctx.open(buf(message.subarray(ENC_LEN)), buf(e2eAad(AAD_REQ, recordId))));
    key = await aesKey(await ctx.export(buf(RESPONSE_LABEL), 32));
  } catch {
    throw badPayload();
  }
  return {
    request,
    async sealResponse(response: Uint8Array) {
      const nonce = random(12);
      const ct = new Uint8Array(
        await crypto.subtle.encrypt({ name: 'AES-GCM', iv: buf(nonce), additionalData: buf(e2eAad(AAD_RESP, recordId)) }, key, buf(padResponse(response))),
      );
      const out = new Uint8Array(12 + ct.length);
      out.set(nonce, 0);
      out.set(ct, 12);
      return out;
    },
  };
}
