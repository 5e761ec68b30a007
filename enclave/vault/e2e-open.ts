/**
 * The enclave's side of the end-to-end envelope (client/e2e-seal.ts), synchronous. RFC 9180 base
 * mode receiver for DHKEM(X25519, HKDF-SHA256) (§4.1, §7.1.3 DeriveKeyPair), HKDF-SHA256 and
 * AES-256-GCM (§5.1 key schedule, §5.2 Open, §5.3 Export). Byte for byte the protocol of
 * `openRequest` in client/e2e-seal.ts (the @hpke/core one clients use in a browser;
 * test/e2e.test.ts checks both ways), much cheaper: no WebCrypto promise per step.
 *
 * Primitives: X25519 and AES-256-GCM on native libsodium (groups/sodium-native.ts `NativeHpke`)
 * when it loads, the faster here (bench/breakdown.ts times both; figures in bench/README.md);
 * otherwise on node:crypto, with the same bytes and the same refusals. X25519 on Node's own
 * OpenSSL instead where the caller passes it (groups/openssl-native.ts; the enclave does): faster
 * than libsodium's here, the same bytes and refusals. The key schedule's
 * HMAC-SHA256 runs on the SHA-256 the receiver was made with when that is native (the enclave's:
 * hash-native.ts, Node's OpenSSL or native libsodium, with keyed states for the empty salt and the
 * secret), else on native libsodium's one-shot HMAC when it loads (every key in it is 32 bytes, the
 * empty salt as 32 zero bytes: RFC 2104 pads a short key with zeros), else on that SHA-256 (libsodium's
 * WebAssembly build; node:crypto's by default).
 *
 * Secrets: on the native path the private key is held as bytes and zeroed by `zeroize`, and the
 * AEAD keys pass through the engine's scratch array, zeroed after each call. node:crypto keeps
 * its own copies (a KeyObject, the cipher context's key schedule) that can not be wiped.
 */
import { createCipheriv, createDecipheriv, createPrivateKey, createPublicKey, diffieHellman } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { EnclaveFault, Handling } from '../api/codes.ts';
import { LABELS, e2eAad } from '../api/labels.ts';
import { RESPONSE_BLOCK, padResponse } from '../api/padding.ts';
import { DERIVE_KEY_PAIR, e2eContext, e2eResponseKey, labeledExpand, labeledExtract } from '../api/e2e-schedule.ts';
import type { ScheduleHash } from '../api/e2e-schedule.ts';
import type { NativeHpke } from '../opaque/groups/sodium-native.ts';
import { nodeHash } from '../opaque/hash-node.ts';
import { NativeSha } from '../opaque/hash-native.ts';
import type { HashPrimitives } from '../opaque/hash.ts';
import { newBytes } from '../opaque/bytes.ts';
import type { Alloc } from '../opaque/bytes.ts';

const te = new TextEncoder();
const EMPTY = new Uint8Array(0);
const ENC_LEN = 32;
const NONCE_LEN = 12;
const TAG_LEN = 16;
const AAD_REQ = te.encode(LABELS.e2eRequestAad);
const AAD_RESP = te.encode(LABELS.e2eResponseAad);
/** PKCS#8 (RFC 8410) front of a raw X25519 private key. */
const PKCS8_X25519 = Buffer.from('302e020100300506032b656e04220420', 'hex');

/** The SHA-256 of the key schedule unless the enclave gives its own (the same bytes). */
const NODE_SHA256 = nodeHash('SHA-256');

const b64u = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.length).toString('base64url');
const badPayload = () => new EnclaveFault(Handling.BadPayload, 'end-to-end payload does not open');

/** X25519 with the receiver's private key, and AES-256-GCM: the envelope's primitives. */
interface E2ePrimitives {
  readonly name: string;
  /** DH(skR, pkE), RFC 7748 §5; null when refused, at least when the output is all zeros (RFC 9180 §7.1.4). */
  dh(pkE: Uint8Array): Uint8Array | null;
  /** Decrypts ciphertext || tag (the plaintext from `alloc` where the primitive writes it); null when the tag does not verify. */
  open(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, ctAndTag: Uint8Array, alloc: Alloc): Uint8Array | null;
  /** Encrypts `pt` into `out` at `at`: ciphertext, then the tag. */
  sealInto(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, pt: Uint8Array, out: Uint8Array, at: number): void;
  /** Zeroes the private key where its bytes are ours. */
  zeroize(): void;
}

export interface E2eReceiver {
  publicKey: Uint8Array;
  /**
   * SHA-256 for the key schedule's HMACs: the enclave passes its own (vault.ts: hash-native.ts,
   * Node's OpenSSL or native libsodium, or libsodium's WebAssembly build), none of which leaves a
   * native handle per call for the device's garbage collector to finalize.
   */
  hash: HashPrimitives;
  /** The key schedule's HMAC: `hash`, or native libsodium's one-shot HMAC (NativeScheduleHash) when `hash` is not native. */
  schedule: ScheduleHash;
  /** X25519 and AES-GCM: 'libsodium native' or 'node:crypto'. */
  crypto: E2ePrimitives;
}

const ZERO_KEY = new Uint8Array(32);
/** sealResponse's padded-answer scratch (one RESPONSE_BLOCK: every answer of the message API), all zeros between calls. */
const PAD_SCRATCH = new Uint8Array(RESPONSE_BLOCK);

/** HMAC-SHA256 on native libsodium for 32-byte keys (the empty one as 32 zeros), `other` for anything else. */
class NativeScheduleHash implements ScheduleHash {
  constructor(
    private readonly n: NativeHpke,
    private readonly other: HashPrimitives,
  ) {}
  hmac(key: Uint8Array, ...parts: Uint8Array[]): Uint8Array {
    return this.n.hmacSha256(key.length === 0 ? ZERO_KEY : key, parts) ?? this.other.hmac(key, ...parts);
  }
}

/** X25519 with one private key where it is not the primitives' own (groups/openssl-native.ts `OpensslX25519`). */
export interface X25519With {
  readonly name: string;
  dh(pk: Uint8Array): Uint8Array | null;
  dispose(): void;
}
/** Makes an `X25519With` for a private key (groups/openssl-native.ts `loadOpensslX25519`). */
export type X25519Maker = (sk: Uint8Array) => X25519With;

/**
 * node:crypto: the private key as a KeyObject, the peer's key imported as a JWK per request; X25519
 * on `x` instead when given.
 */
class NodePrimitives implements E2ePrimitives {
  readonly name: string;
  constructor(
    private readonly sk: KeyObject,
    private readonly x: X25519With | null = null,
  ) {
    this.name = x ? `${x.name} X25519, node:crypto AES-GCM` : 'node:crypto';
  }
  dh(pkE: Uint8Array): Uint8Array | null {
    if (this.x) return this.x.dh(pkE);
    try {
      const pk = createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: b64u(pkE) }, format: 'jwk' });
      // OpenSSL refuses an all-zero X25519 output (the call throws).
      return diffieHellman({ privateKey: this.sk, publicKey: pk });
    } catch {
      return null;
    }
  }
  open(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, ctAndTag: Uint8Array, _alloc: Alloc): Uint8Array | null {
    try {
      const d = createDecipheriv('aes-256-gcm', key, nonce);
      d.setAAD(aad);
      d.setAuthTag(ctAndTag.subarray(ctAndTag.length - TAG_LEN));
      const pt = d.update(ctAndTag.subarray(0, ctAndTag.length - TAG_LEN));
      d.final(); // throws unless the tag verifies (GCM returns no more bytes)
      return new Uint8Array(pt.buffer, pt.byteOffset, pt.length);
    } catch {
      return null;
    }
  }
  sealInto(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, pt: Uint8Array, out: Uint8Array, at: number): void {
    const c = createCipheriv('aes-256-gcm', key, nonce);
    c.setAAD(aad);
    const body = c.update(pt);
    out.set(body, at);
    c.final();
    out.set(c.getAuthTag(), at + body.length);
  }
  zeroize(): void {
    this.x?.dispose();
  }
}

/** Native libsodium: X25519 (unless `x` is given), AES-GCM where the CPU has it (else node:crypto's). */
class NativePrimitives implements E2ePrimitives {
  readonly name: string;
  private readonly gcm: NodePrimitives | null;
  constructor(
    private readonly n: NativeHpke,
    private readonly sk: Uint8Array,
    nodeSk: KeyObject,
    private readonly x: X25519With | null = null,
  ) {
    this.gcm = n.gcm ? null : new NodePrimitives(nodeSk);
    const dh = x ? `${x.name} X25519` : 'libsodium native X25519';
    this.name = x ? `${dh}, ${n.gcm ? 'libsodium native' : 'node:crypto'} AES-GCM` : n.gcm ? 'libsodium native' : `${dh}, node:crypto AES-GCM`;
  }
  dh(pkE: Uint8Array): Uint8Array | null {
    return this.x ? this.x.dh(pkE) : this.n.x25519(this.sk, pkE);
  }
  open(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, ctAndTag: Uint8Array, alloc: Alloc): Uint8Array | null {
    return this.gcm ? this.gcm.open(key, nonce, aad, ctAndTag, alloc) : this.n.gcmOpen(key, nonce, aad, ctAndTag, alloc);
  }
  sealInto(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, pt: Uint8Array, out: Uint8Array, at: number): void {
    if (this.gcm) this.gcm.sealInto(key, nonce, aad, pt, out, at);
    else this.n.gcmSealInto(key, nonce, aad, pt, out, at);
  }
  zeroize(): void {
    this.sk.fill(0);
    this.x?.dispose();
  }
}

/**
 * §7.1.3 DeriveKeyPair for X25519: sk = LabeledExpand(LabeledExtract("", "dkp_prk", ikm), "sk", "", 32).
 * `native`: libsodium's X25519 and AES-GCM (loadNativeHpke); node:crypto's when absent.
 * `x25519`: X25519 on another library (Node's OpenSSL: groups/openssl-native.ts), whichever of the two serves AES-GCM.
 */
export function deriveE2eReceiver(ikm: Uint8Array, hash: HashPrimitives = NODE_SHA256, native?: NativeHpke | null, x25519?: X25519Maker | null): E2eReceiver {
  if (hash.name !== 'SHA-256') throw new TypeError('deriveE2eReceiver: the key schedule needs SHA-256');
  const dkp = labeledExtract(hash, DERIVE_KEY_PAIR.extract, EMPTY, ikm);
  const sk = labeledExpand(hash, DERIVE_KEY_PAIR.expand, dkp, EMPTY, 32);
  dkp.fill(0);
  const der = Buffer.concat([PKCS8_X25519, sk]);
  const privateKey = createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
  der.fill(0);
  const publicKey = new Uint8Array(Buffer.from((createPublicKey(privateKey).export({ format: 'jwk' }) as { x: string }).x, 'base64url'));
  // A native hash keys its HMACs once for several messages (hash-native.ts), which the one-shot HMAC can not.
  const schedule = native && !(hash instanceof NativeSha) ? new NativeScheduleHash(native, hash) : hash;
  const x = x25519 ? x25519(sk) : null;
  if (native) return { publicKey, hash, schedule, crypto: new NativePrimitives(native, sk, privateKey, x) };
  sk.fill(0);
  return { publicKey, hash, schedule: hash, crypto: new NodePrimitives(privateKey, x) };
}

/**
 * Opens one request sealed by `sealRequest`; returns it and how to seal the answer. `alloc`: where
 * the request's plaintext and the sealed answer are put (the enclave gives its batch arena).
 */
export function openRequestSync(
  r: E2eReceiver,
  recordId: Uint8Array,
  message: Uint8Array,
  random: (n: number) => Uint8Array,
  alloc: Alloc = newBytes,
): { request: Uint8Array; sealResponse(response: Uint8Array): Uint8Array } {
  if (!(message instanceof Uint8Array) || message.length < ENC_LEN + TAG_LEN) throw badPayload();
  const enc = message.subarray(0, ENC_LEN);
  const h = r.schedule;
  const c = r.crypto;
  // §4.1 Decap: an all-zero DH output is refused (the primitives answer null).
  const dh = c.dh(enc);
  if (!dh) throw badPayload();
  let request: Uint8Array | null;
  let responseKey: Uint8Array;
  try {
    const { key, nonce, exporter } = e2eContext(h, dh, enc, r.publicKey);
    request = c.open(key, nonce, e2eAad(AAD_REQ, recordId), message.subarray(ENC_LEN), alloc);
    responseKey = e2eResponseKey(h, exporter);
    for (const b of [key, nonce, exporter]) b.fill(0);
  } catch {
    throw badPayload();
  } finally {
    dh.fill(0);
  }
  if (!request) {
    responseKey.fill(0);
    throw badPayload();
  }
  return {
    request,
    sealResponse(answer: Uint8Array): Uint8Array {
      // nonce || AES-GCM(the answer padded: padding.ts, one length for every outcome) || tag,
      // written straight into the result.
      // The padded answer in this thread's scratch (all zeros again after each seal).
      const response = padResponse(answer, PAD_SCRATCH);
      try {
        const out = alloc(NONCE_LEN + response.length + TAG_LEN);
        const n = random(NONCE_LEN);
        out.set(n, 0);
        c.sealInto(responseKey, n, e2eAad(AAD_RESP, recordId), response, out, NONCE_LEN);
        return out;
      } finally {
        response.fill(0);
      }
    },
  };
}
