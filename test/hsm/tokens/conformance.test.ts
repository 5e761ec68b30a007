/**
 * Token conformance, PKCS#11 v2.40, one suite for every token (BKV_TOKEN = emulator | softhsm |
 * all; test/helpers/tokens.ts): key custody as the vault creates keys (enclave/token-pkcs11.ts),
 * attribute attacks in the style of the Tookan attacks (Bortolozzo, Centenaro, Focardi, Steel,
 * CCS 2010): wrap a sensitive key under a key the attacker controls, flip CKA_SENSITIVE or
 * CKA_EXTRACTABLE, copy the key with a laxer template, read CKA_VALUE, use a key outside its
 * usage flags: all refused with the right CKR_ code; mechanisms checked against node:crypto;
 * ECDSA P-256 (CKM_ECDSA) checked against @noble/curves and node:crypto, with its refusals;
 * the error paths the firmware relies on; NVRAM in data objects; persistence across a restart.
 * On the p11kit kind (the emulator behind `bkv token serve` and p11-kit-client.so 0.24.1) the
 * mechanisms its client can not carry (AES-GCM, ECDH1, AES key wrap) are asserted refused by the
 * client with CKR_MECHANISM_INVALID instead (`refusedOr`), so that limit is pinned, not skipped.
 */
import { createCipheriv, createECDH, createHash, createHmac, generateKeyPairSync, randomBytes, sign as nodeSign } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { p256 } from '@noble/curves/nist.js';
import * as P from '../../../enclave/api/pkcs11.ts';
import { Pkcs11Token } from '../../../enclave/token-pkcs11.ts';
import { tokenP256Key } from '../../../enclave/vault/token-dh.ts';
import { TokenNvram } from '../../../hsm/nvram-token.ts';
import { carries, ckr, describeTokens, freshToken, SO_PIN, USER_PIN } from '../../helpers/tokens.ts';
import type { FreshToken, TokenKind } from '../../helpers/tokens.ts';

const b = (type: number, value: boolean): P.Attribute => ({ type, value });

function rw(t: FreshToken, login = true): P.Handle {
  const s = t.module.C_OpenSession(t.slot, P.CKF_SERIAL_SESSION | P.CKF_RW_SESSION);
  if (login) {
    try {
      t.module.C_Login(s, P.CKU_USER, USER_PIN);
    } catch (e) {
      if ((P.normalizePkcs11Error(e) as P.Pkcs11Error).code !== P.CKR.CKR_USER_ALREADY_LOGGED_IN) throw e;
    }
  }
  return s;
}

function attrs(m: P.Pkcs11, s: P.Handle, h: P.Handle, types: number[]): Record<number, string> {
  const out: Record<number, string> = {};
  for (const t of types) out[t] = m.C_GetAttributeValue(s, h, [{ type: t }])[0]!.value.toString('hex');
  return out;
}

/** An attacker's own key: every usage flag, extractable, not sensitive. */
function attackerKey(m: P.Pkcs11, s: P.Handle): P.Handle {
  return m.C_GenerateKey(s, { mechanism: P.CKM_AES_KEY_GEN }, [
    b(P.CKA_TOKEN, false),
    { type: P.CKA_VALUE_LEN, value: 32 },
    b(P.CKA_SENSITIVE, false),
    b(P.CKA_EXTRACTABLE, true),
    b(P.CKA_WRAP, true),
    b(P.CKA_UNWRAP, true),
    b(P.CKA_ENCRYPT, true),
    b(P.CKA_DECRYPT, true),
  ]);
}

function createAes(m: P.Pkcs11, s: P.Handle, value: Buffer, extra: P.Attribute[] = []): P.Handle {
  return m.C_CreateObject(s, [
    { type: P.CKA_CLASS, value: P.CKO_SECRET_KEY },
    { type: P.CKA_KEY_TYPE, value: P.CKK_AES },
    b(P.CKA_TOKEN, false),
    { type: P.CKA_VALUE, value },
    ...extra,
  ]);
}

function createSecret(m: P.Pkcs11, s: P.Handle, value: Buffer): P.Handle {
  return m.C_CreateObject(s, [
    { type: P.CKA_CLASS, value: P.CKO_SECRET_KEY },
    { type: P.CKA_KEY_TYPE, value: P.CKK_GENERIC_SECRET },
    b(P.CKA_TOKEN, false),
    { type: P.CKA_VALUE, value },
  ]);
}

const gcm = (iv: Buffer, aad: Buffer): P.Mechanism => ({ mechanism: P.CKM_AES_GCM, parameter: { type: P.CK_PARAMS_GCM, iv, aad, ivBits: 96, tagBits: 128 } });

/**
 * Runs `check` where `kind` carries every mechanism named; else asserts that `attempt` (the call
 * `check` starts with) is refused by the client with CKR_MECHANISM_INVALID.
 */
function refusedOr(kind: TokenKind, mechanisms: number[], attempt: () => unknown, check: () => void): void {
  if (mechanisms.every((m) => carries(kind, m))) check();
  else expect(ckr(attempt)).toBe('CKR_MECHANISM_INVALID');
}

describeTokens('token conformance', (kind) => {
  let t: FreshToken;
  let token: Pkcs11Token;
  let s: P.Handle;
  let seal: number;
  let mac: number;
  let ec: number;

  beforeAll(() => {
    t = freshToken(kind);
    token = new Pkcs11Token({ module: t.module, label: t.label, userPin: USER_PIN });
    seal = token.generateAesKey('bkv-seal');
    mac = token.generateHmacKey('bkv-derive', 32);
    ec = token.generateEcKeyPair('bkv-opaque-p256');
    s = rw(t);
  });

  describe('key custody', () => {
    it('vault keys are token objects: sensitive, never extractable, only their own usage, unmodifiable', () => {
      const m = t.module;
      const common = [P.CKA_TOKEN, P.CKA_PRIVATE, P.CKA_SENSITIVE, P.CKA_EXTRACTABLE, P.CKA_ALWAYS_SENSITIVE, P.CKA_NEVER_EXTRACTABLE, P.CKA_LOCAL, P.CKA_MODIFIABLE, P.CKA_COPYABLE];
      const want = { [P.CKA_TOKEN]: '01', [P.CKA_PRIVATE]: '01', [P.CKA_SENSITIVE]: '01', [P.CKA_EXTRACTABLE]: '00', [P.CKA_ALWAYS_SENSITIVE]: '01', [P.CKA_NEVER_EXTRACTABLE]: '01', [P.CKA_LOCAL]: '01', [P.CKA_MODIFIABLE]: '00', [P.CKA_COPYABLE]: '00' };
      for (const k of [seal, mac, ec]) expect(attrs(m, s, P.handleOf(k), common)).toEqual(want);
      const usage = [P.CKA_ENCRYPT, P.CKA_DECRYPT, P.CKA_SIGN, P.CKA_VERIFY, P.CKA_WRAP, P.CKA_UNWRAP, P.CKA_DERIVE];
      const flags = (k: number) => usage.map((u) => attrs(m, s, P.handleOf(k), [u])[u]).join('');
      expect(flags(seal)).toBe('01010000000000');
      expect(flags(mac)).toBe('00000100000000');
      expect(attrs(m, s, P.handleOf(ec), [P.CKA_DERIVE, P.CKA_SIGN, P.CKA_DECRYPT, P.CKA_UNWRAP])).toEqual({ [P.CKA_DERIVE]: '01', [P.CKA_SIGN]: '00', [P.CKA_DECRYPT]: '00', [P.CKA_UNWRAP]: '00' });
      expect(attrs(m, s, P.handleOf(seal), [P.CKA_KEY_GEN_MECHANISM, P.CKA_VALUE_LEN])).toEqual({
        [P.CKA_KEY_GEN_MECHANISM]: '8010000000000000',
        [P.CKA_VALUE_LEN]: '2000000000000000',
      });
    });

    it('finds the keys again by label; generating an existing label returns the same key', () => {
      const again = new Pkcs11Token({ module: t.module, label: t.label, userPin: USER_PIN });
      expect(again.findKey('bkv-seal')).toBe(seal);
      expect(again.findKey('bkv-opaque-p256')).toBe(ec);
      expect(again.generateAesKey('bkv-seal')).toBe(seal);
      expect(again.findKey('nothing-here')).toBeNull();
      const iv = token.random(12);
      refusedOr(kind, [P.CKM_AES_GCM], () => token.encryptGcm(seal, iv, Buffer.from('aad'), Buffer.from('payload')), () => {
        const ct = token.encryptGcm(seal, iv, Buffer.from('aad'), Buffer.from('payload'));
        expect(Buffer.from(again.decryptGcm(seal, iv, Buffer.from('aad'), ct)).toString()).toBe('payload');
      });
    });
  });

  describe('attribute attacks are refused', () => {
    it('CKA_VALUE of a sensitive or unextractable key is never revealed (CKR_ATTRIBUTE_SENSITIVE)', () => {
      for (const k of [seal, mac, ec]) expect(ckr(() => t.module.C_GetAttributeValue(s, P.handleOf(k), [{ type: P.CKA_VALUE }]))).toBe('CKR_ATTRIBUTE_SENSITIVE');
      // in the same template as a readable attribute: the whole call fails
      expect(ckr(() => t.module.C_GetAttributeValue(s, P.handleOf(seal), [{ type: P.CKA_LABEL }, { type: P.CKA_VALUE }]))).toBe('CKR_ATTRIBUTE_SENSITIVE');
      const plain = t.module.C_GenerateKey(s, { mechanism: P.CKM_AES_KEY_GEN }, [b(P.CKA_TOKEN, false), { type: P.CKA_VALUE_LEN, value: 16 }, b(P.CKA_SENSITIVE, true), b(P.CKA_EXTRACTABLE, true)]);
      expect(ckr(() => t.module.C_GetAttributeValue(s, plain, [{ type: P.CKA_VALUE }]))).toBe('CKR_ATTRIBUTE_SENSITIVE');
    });

    it('wrapping a vault key under a key the attacker controls: CKR_KEY_UNEXTRACTABLE', () => {
      const atk = attackerKey(t.module, s);
      for (const k of [seal, mac, ec]) {
        for (const mechanism of [P.CKM_AES_KEY_WRAP, P.CKM_AES_KEY_WRAP_PAD]) {
          expect(ckr(() => t.module.C_WrapKey(s, { mechanism }, atk, P.handleOf(k), Buffer.alloc(512)))).toBe(carries(kind, mechanism) ? 'CKR_KEY_UNEXTRACTABLE' : 'CKR_MECHANISM_INVALID');
        }
      }
    });

    it('flipping CKA_SENSITIVE or CKA_EXTRACTABLE back: CKR_ATTRIBUTE_READ_ONLY (CKR_ACTION_PROHIBITED on an unmodifiable key)', () => {
      const m = t.module;
      for (const k of [seal, mac, ec]) {
        expect(ckr(() => m.C_SetAttributeValue(s, P.handleOf(k), [b(P.CKA_SENSITIVE, false)]))).toBe('CKR_ACTION_PROHIBITED');
        expect(ckr(() => m.C_SetAttributeValue(s, P.handleOf(k), [b(P.CKA_EXTRACTABLE, true)]))).toBe('CKR_ACTION_PROHIBITED');
      }
      // A modifiable sensitive key still keeps both: the policy itself refuses.
      const k = m.C_GenerateKey(s, { mechanism: P.CKM_AES_KEY_GEN }, [b(P.CKA_TOKEN, false), { type: P.CKA_VALUE_LEN, value: 32 }, b(P.CKA_SENSITIVE, true), b(P.CKA_EXTRACTABLE, false)]);
      expect(ckr(() => m.C_SetAttributeValue(s, k, [b(P.CKA_SENSITIVE, false)]))).toBe('CKR_ATTRIBUTE_READ_ONLY');
      expect(ckr(() => m.C_SetAttributeValue(s, k, [b(P.CKA_EXTRACTABLE, true)]))).toBe('CKR_ATTRIBUTE_READ_ONLY');
      expect(ckr(() => m.C_SetAttributeValue(s, k, [b(P.CKA_ALWAYS_SENSITIVE, false)]))).toBe('CKR_ATTRIBUTE_READ_ONLY');
      expect(ckr(() => m.C_SetAttributeValue(s, k, [b(P.CKA_NEVER_EXTRACTABLE, false)]))).toBe('CKR_ATTRIBUTE_READ_ONLY');
      expect(ckr(() => m.C_SetAttributeValue(s, k, [{ type: P.CKA_VALUE, value: Buffer.alloc(32) }]))).toBe('CKR_ATTRIBUTE_READ_ONLY');
      // with a harmless attribute in front, the same code (what is kept of the template differs:
      // see softhsm-config/README.md)
      expect(ckr(() => m.C_SetAttributeValue(s, k, [{ type: P.CKA_LABEL, value: 'x' }, b(P.CKA_EXTRACTABLE, true)]))).toBe('CKR_ATTRIBUTE_READ_ONLY');
      // Copying with a laxer template is refused the same way.
      expect(ckr(() => m.C_CopyObject(s, k, [b(P.CKA_EXTRACTABLE, true)]))).toBe('CKR_ATTRIBUTE_READ_ONLY');
      expect(ckr(() => m.C_CopyObject(s, k, [b(P.CKA_SENSITIVE, false)]))).toBe('CKR_ATTRIBUTE_READ_ONLY');
      expect(ckr(() => m.C_CopyObject(s, P.handleOf(seal), [b(P.CKA_TOKEN, false)]))).toBe('CKR_ACTION_PROHIBITED');
    });

    it('a key used outside its usage flags: CKR_KEY_FUNCTION_NOT_PERMITTED', () => {
      const m = t.module;
      const iv = Buffer.alloc(12);
      const refused = (mechanism: number) => (carries(kind, mechanism) ? 'CKR_KEY_FUNCTION_NOT_PERMITTED' : 'CKR_MECHANISM_INVALID');
      expect(ckr(() => m.C_SignInit(s, { mechanism: P.CKM_SHA256_HMAC }, P.handleOf(seal)))).toBe('CKR_KEY_FUNCTION_NOT_PERMITTED');
      expect(ckr(() => m.C_EncryptInit(s, gcm(iv, Buffer.alloc(0)), P.handleOf(mac)))).toBe(refused(P.CKM_AES_GCM));
      expect(ckr(() => m.C_DecryptInit(s, gcm(iv, Buffer.alloc(0)), P.handleOf(ec)))).toBe(refused(P.CKM_AES_GCM));
      expect(ckr(() => m.C_WrapKey(s, { mechanism: P.CKM_AES_KEY_WRAP }, P.handleOf(seal), attackerKey(m, s), Buffer.alloc(64)))).toBe(refused(P.CKM_AES_KEY_WRAP));
      expect(ckr(() => m.C_UnwrapKey(s, { mechanism: P.CKM_AES_KEY_WRAP }, P.handleOf(seal), Buffer.alloc(40, 1), [{ type: P.CKA_CLASS, value: P.CKO_SECRET_KEY }, { type: P.CKA_KEY_TYPE, value: P.CKK_AES }]))).toBe(refused(P.CKM_AES_KEY_WRAP));
      const point = createECDH('prime256v1');
      point.generateKeys();
      const ecdh = { mechanism: P.CKM_ECDH1_DERIVE, parameter: { type: P.CK_PARAMS_EC_DH, kdf: P.CKD_NULL, publicData: point.getPublicKey() } } as P.Mechanism;
      const tmpl = [{ type: P.CKA_CLASS, value: P.CKO_SECRET_KEY }, { type: P.CKA_KEY_TYPE, value: P.CKK_GENERIC_SECRET }, b(P.CKA_TOKEN, false)];
      expect(ckr(() => m.C_DeriveKey(s, ecdh, P.handleOf(seal), tmpl))).toBe(refused(P.CKM_ECDH1_DERIVE));
      expect(ckr(() => m.C_SignInit(s, { mechanism: P.CKM_SHA256_HMAC }, P.handleOf(ec)))).toBe('CKR_KEY_FUNCTION_NOT_PERMITTED');
      expect(ckr(() => m.C_SignInit(s, { mechanism: P.CKM_ECDSA }, P.handleOf(ec)))).toBe('CKR_KEY_FUNCTION_NOT_PERMITTED'); // the vault's P-256 key derives only
      // a permitted function with the wrong kind of key
      const hmacOk = m.C_GenerateKey(s, { mechanism: P.CKM_AES_KEY_GEN }, [b(P.CKA_TOKEN, false), { type: P.CKA_VALUE_LEN, value: 32 }, b(P.CKA_SIGN, true)]);
      expect(ckr(() => m.C_SignInit(s, { mechanism: P.CKM_SHA256_HMAC }, hmacOk))).toBe('CKR_KEY_TYPE_INCONSISTENT');
      expect(ckr(() => token.hmac(mac, 'SHA-512', Buffer.from('x')))).toBe('CKR_KEY_SIZE_RANGE'); // 32-byte key, 64-byte digest
    });
  });

  describe('mechanisms', () => {
    it('AES-GCM, HMAC and AES key wrap agree with node:crypto', () => {
      const m = t.module;
      const kv = randomBytes(32);
      const k = createAes(m, s, kv, [b(P.CKA_WRAP, true), b(P.CKA_UNWRAP, true)]);
      const iv = randomBytes(12);
      const aad = Buffer.from('header');
      if (!carries(kind, P.CKM_AES_GCM)) expect(ckr(() => token.encryptGcm(P.handleNumber(k), iv, aad, Buffer.from('hello')))).toBe('CKR_MECHANISM_INVALID');
      else for (const pt of [Buffer.from('hello'), randomBytes(64), Buffer.alloc(0)]) {
        const c = createCipheriv('aes-256-gcm', kv, iv);
        c.setAAD(aad);
        const want = Buffer.concat([c.update(pt), c.final(), c.getAuthTag()]);
        const got = token.encryptGcm(P.handleNumber(k), iv, aad, pt);
        expect(Buffer.from(got).toString('hex')).toBe(want.toString('hex'));
        expect(Buffer.from(token.decryptGcm(P.handleNumber(k), iv, aad, got)).equals(pt)).toBe(true);
      }
      for (const [hash, len] of [['SHA-256', 32], ['SHA-512', 64]] as const) {
        const mv = randomBytes(len);
        const h = createSecret(m, s, mv);
        m.C_SetAttributeValue(s, h, [b(P.CKA_SIGN, true)]);
        const data = randomBytes(100);
        expect(Buffer.from(token.hmac(P.handleNumber(h), hash, data)).toString('hex')).toBe(createHmac(hash === 'SHA-256' ? 'sha256' : 'sha512', mv).update(data).digest('hex'));
      }
      const target = createAes(m, s, randomBytes(32), [b(P.CKA_EXTRACTABLE, true)]);
      const targetValue = m.C_GetAttributeValue(s, target, [{ type: P.CKA_VALUE }])[0]!.value;
      for (const [mechanism, cipher, ivw] of [
        [P.CKM_AES_KEY_WRAP, 'id-aes256-wrap', 'a6a6a6a6a6a6a6a6'],
        [P.CKM_AES_KEY_WRAP_PAD, 'id-aes256-wrap-pad', 'a65959a6'],
      ] as const) {
        if (!carries(kind, mechanism)) {
          expect(ckr(() => m.C_WrapKey(s, { mechanism }, k, target, Buffer.alloc(64)))).toBe('CKR_MECHANISM_INVALID');
          continue;
        }
        const wrapped = m.C_WrapKey(s, { mechanism }, k, target, Buffer.alloc(64));
        const c = createCipheriv(cipher, kv, Buffer.from(ivw, 'hex'));
        expect(wrapped.toString('hex')).toBe(Buffer.concat([c.update(targetValue), c.final()]).toString('hex'));
        const back = m.C_UnwrapKey(s, { mechanism }, k, wrapped, [{ type: P.CKA_CLASS, value: P.CKO_SECRET_KEY }, { type: P.CKA_KEY_TYPE, value: P.CKK_AES }, b(P.CKA_TOKEN, false), b(P.CKA_EXTRACTABLE, true)]);
        expect(m.C_GetAttributeValue(s, back, [{ type: P.CKA_VALUE }])[0]!.value.equals(targetValue)).toBe(true);
        expect(attrs(m, s, back, [P.CKA_LOCAL, P.CKA_ALWAYS_SENSITIVE, P.CKA_NEVER_EXTRACTABLE])).toEqual({ [P.CKA_LOCAL]: '00', [P.CKA_ALWAYS_SENSITIVE]: '00', [P.CKA_NEVER_EXTRACTABLE]: '00' });
        const tampered = Buffer.from(wrapped);
        tampered[5]! ^= 1;
        expect(ckr(() => m.C_UnwrapKey(s, { mechanism }, k, tampered, [{ type: P.CKA_CLASS, value: P.CKO_SECRET_KEY }, { type: P.CKA_KEY_TYPE, value: P.CKK_AES }, b(P.CKA_TOKEN, false)]))).toBe('CKR_GENERAL_ERROR');
      }
    });

    it('ECDH in the token gives x(k·P); the P-256 server DH recovers the whole point', () => {
      const pub = token.ecPublicKey(ec);
      expect(pub.length).toBe(65);
      const peer = createECDH('prime256v1');
      peer.generateKeys();
      if (!carries(kind, P.CKM_ECDH1_DERIVE)) {
        expect(ckr(() => token.ecdhX(ec, peer.getPublicKey()))).toBe('CKR_MECHANISM_INVALID');
        return;
      }
      expect(Buffer.from(token.ecdhX(ec, peer.getPublicKey())).equals(peer.computeSecret(Buffer.from(pub)))).toBe(true);
      expect(Buffer.from(token.ecdhX(ec, peer.getPublicKey(null, 'compressed'))).equals(peer.computeSecret(Buffer.from(pub)))).toBe(true);
      const off = Buffer.alloc(65, 1);
      off[0] = 4;
      expect(ckr(() => token.ecdhX(ec, off))).toBe('CKR_GENERAL_ERROR');
      const key = tokenP256Key(token, ec);
      const K = p256.Point.fromBytes(pub);
      expect(Buffer.from(key.publicKey).equals(Buffer.from(K.toBytes(true)))).toBe(true);
      for (let i = 0; i < 20; i++) {
        const r = p256.Point.Fn.fromBytes(p256.utils.randomSecretKey());
        const M = p256.Point.BASE.multiply(r);
        expect(Buffer.from(key.dh(M.toBytes(true), 'm')).toString('hex')).toBe(Buffer.from(K.multiply(r).toBytes(true)).toString('hex'));
      }
      expect(Buffer.from(key.dh(p256.Point.BASE.toBytes(true), 'm'))).toEqual(Buffer.from(K.toBytes(true)));
      expect(Buffer.from(key.dh(p256.Point.BASE.negate().toBytes(true), 'm'))).toEqual(Buffer.from(K.negate().toBytes(true)));
      expect(() => key.dh(new Uint8Array(33), 'm')).toThrow(/point/);
      expect(() => key.dh(Uint8Array.of(2, ...new Uint8Array(32).fill(0xff)), 'm')).toThrow(/point/);
    });
  });

  describe('ECDSA P-256 (CKM_ECDSA, PKCS#11 v2.40 Current Mechanisms §2.3.6)', () => {
    const ECDSA = { mechanism: P.CKM_ECDSA };
    /** P-256's group order n (SEC 2 §2.4.2). */
    const N = BigInt('0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551');
    const be32 = (v: bigint) => Buffer.from(v.toString(16).padStart(64, '0'), 'hex');
    let x: P.Handle;
    let kp: P.KeyPair;
    let q: Buffer;
    beforeAll(() => {
      x = rw(t);
      const params = { type: P.CKA_EC_PARAMS, value: Buffer.from(P.EC_PARAMS_P256) };
      kp = t.module.C_GenerateKeyPair(x, { mechanism: P.CKM_EC_KEY_PAIR_GEN }, [b(P.CKA_TOKEN, false), b(P.CKA_VERIFY, true), params], [b(P.CKA_TOKEN, false), b(P.CKA_SIGN, true), b(P.CKA_SENSITIVE, true)]);
      q = t.module.C_GetAttributeValue(x, kp.publicKey, [{ type: P.CKA_EC_POINT }])[0]!.value.subarray(2);
    });
    const signOn = (data: Buffer, key = kp.privateKey) => {
      t.module.C_SignInit(x, ECDSA, key);
      return t.module.C_Sign(x, data, Buffer.alloc(128));
    };
    const verifyOn = (data: Buffer, sig: Buffer, key = kp.publicKey) =>
      ckr(() => {
        t.module.C_VerifyInit(x, ECDSA, key);
        t.module.C_Verify(x, data, sig);
      });

    it('mechanism info: sign and verify on 256-bit keys', () => {
      const info = t.module.C_GetMechanismInfo(t.slot, P.CKM_ECDSA);
      expect(info.flags & (P.CKF_SIGN | P.CKF_VERIFY)).toBe(P.CKF_SIGN | P.CKF_VERIFY);
      expect(info.minKeySize).toBeLessThanOrEqual(256);
      expect(info.maxKeySize).toBeGreaterThanOrEqual(256);
      expect(t.module.C_GetMechanismList(t.slot)).toContain(P.CKM_ECDSA);
    });

    it('r || s, 64 bytes, over a hash of any length (its leftmost 256 bits): verified by the token and by @noble/curves', () => {
      for (const n of [1, 20, 31, 32, 33, 48, 64, 1000, 10_000]) {
        const hash = randomBytes(n);
        const sig = signOn(hash);
        expect(sig.length, `${n}-byte hash`).toBe(64);
        // noble refuses a message past 8 KiB: it is given the leftmost 256 bits, what SEC 1 §4.1.3 step 5 keeps
        expect(p256.verify(sig, hash.subarray(0, 32), q, { prehash: false, lowS: false }), `${n}-byte hash`).toBe(true);
        expect(verifyOn(hash, sig), `${n}-byte hash`).toBe('CKR_OK');
        if (n > 32) expect(verifyOn(hash.subarray(0, 32), sig), 'only the leftmost 256 bits count').toBe('CKR_OK');
      }
    });

    it('verifies what others sign: node:crypto (OpenSSL) on an imported public key, and both values of s (low-S is not required)', () => {
      const other = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
      const point = Buffer.from(other.publicKey.export({ format: 'jwk' }).x!, 'base64url');
      const y = Buffer.from(other.publicKey.export({ format: 'jwk' }).y!, 'base64url');
      const pub = t.module.C_CreateObject(x, [
        { type: P.CKA_CLASS, value: P.CKO_PUBLIC_KEY },
        { type: P.CKA_KEY_TYPE, value: P.CKK_EC },
        b(P.CKA_TOKEN, false),
        b(P.CKA_VERIFY, true),
        { type: P.CKA_EC_PARAMS, value: Buffer.from(P.EC_PARAMS_P256) },
        { type: P.CKA_EC_POINT, value: Buffer.concat([Buffer.from([0x04, 0x41, 0x04]), point, y]) },
      ]);
      const msg = Buffer.from('signed by OpenSSL');
      const sig = nodeSign('sha256', msg, { key: other.privateKey, dsaEncoding: 'ieee-p1363' });
      const hash = createHash('sha256').update(msg).digest();
      expect(verifyOn(hash, sig, pub)).toBe('CKR_OK');
      // (r, n - s) is the other valid signature of the same hash
      const flipped = Buffer.concat([sig.subarray(0, 32), be32(N - BigInt('0x' + sig.subarray(32).toString('hex')))]);
      expect(verifyOn(hash, flipped, pub)).toBe('CKR_OK');
      const mine = signOn(hash);
      expect(verifyOn(hash, Buffer.concat([mine.subarray(0, 32), be32(N - BigInt('0x' + mine.subarray(32).toString('hex')))]))).toBe('CKR_OK');
      expect(verifyOn(hash, sig)).toBe('CKR_SIGNATURE_INVALID'); // another key's signature
    });

    it('refuses a wrong, truncated or oversized signature, with r or s out of range, and a changed hash', () => {
      const hash = randomBytes(32);
      const sig = signOn(hash);
      for (const i of [0, 31, 32, 63]) {
        const bad = Buffer.from(sig);
        bad[i]! ^= 0x01;
        expect(verifyOn(hash, bad), `byte ${i}`).toBe('CKR_SIGNATURE_INVALID');
      }
      // a changed hash: one bit flipped (setting a byte to a fixed value leaves it unchanged 1 time in 256)
      const changed = Buffer.from(hash);
      changed[0]! ^= 0x01;
      expect(verifyOn(changed, sig)).toBe('CKR_SIGNATURE_INVALID');
      expect(verifyOn(hash, sig.subarray(0, 63))).toBe('CKR_SIGNATURE_LEN_RANGE');
      expect(verifyOn(hash, Buffer.concat([sig, Buffer.of(0)]))).toBe('CKR_SIGNATURE_LEN_RANGE');
      expect(verifyOn(hash, Buffer.concat([Buffer.of(0x30, 0x44), sig]))).toBe('CKR_SIGNATURE_LEN_RANGE'); // DER is not this mechanism's format
      expect(verifyOn(hash, Buffer.alloc(64))).toBe('CKR_SIGNATURE_INVALID'); // r = s = 0
      expect(verifyOn(hash, Buffer.concat([be32(N), sig.subarray(32)]))).toBe('CKR_SIGNATURE_INVALID'); // r = n
      expect(verifyOn(hash, Buffer.concat([sig.subarray(0, 32), be32(N)]))).toBe('CKR_SIGNATURE_INVALID'); // s = n
      // a failed C_Verify ends the operation
      t.module.C_VerifyInit(x, ECDSA, kp.publicKey);
      expect(ckr(() => t.module.C_Verify(x, hash, Buffer.alloc(64)))).toBe('CKR_SIGNATURE_INVALID');
      expect(ckr(() => t.module.C_Verify(x, hash, sig))).toBe('CKR_OPERATION_NOT_INITIALIZED');
    });

    it('a short buffer keeps the operation; single-part only: C_SignUpdate ends it, C_SignFinal leaves it (as SoftHSM2 2.6.1)', () => {
      const m = t.module;
      const hash = randomBytes(32);
      m.C_SignInit(x, ECDSA, kp.privateKey);
      expect(ckr(() => m.C_Sign(x, hash, Buffer.alloc(63)))).toBe('CKR_BUFFER_TOO_SMALL');
      expect(ckr(() => m.C_SignInit(x, ECDSA, kp.privateKey))).toBe('CKR_OPERATION_ACTIVE');
      expect(m.C_Sign(x, hash, Buffer.alloc(64)).length).toBe(64);
      expect(ckr(() => m.C_Sign(x, hash, Buffer.alloc(64)))).toBe('CKR_OPERATION_NOT_INITIALIZED');
      m.C_SignInit(x, ECDSA, kp.privateKey);
      expect(ckr(() => m.C_SignUpdate(x, hash))).toBe('CKR_OPERATION_NOT_INITIALIZED');
      expect(ckr(() => m.C_Sign(x, hash, Buffer.alloc(64)))).toBe('CKR_OPERATION_NOT_INITIALIZED');
      m.C_SignInit(x, ECDSA, kp.privateKey);
      expect(ckr(() => m.C_SignFinal(x, Buffer.alloc(64)))).toBe('CKR_OPERATION_NOT_INITIALIZED');
      expect(m.C_Sign(x, hash, Buffer.alloc(64)).length).toBe(64);
      const sig = signOn(hash);
      m.C_VerifyInit(x, ECDSA, kp.publicKey);
      expect(ckr(() => m.C_VerifyUpdate(x, hash))).toBe('CKR_OPERATION_NOT_INITIALIZED');
      expect(ckr(() => m.C_Verify(x, hash, sig))).toBe('CKR_OPERATION_NOT_INITIALIZED');
      m.C_VerifyInit(x, ECDSA, kp.publicKey);
      expect(ckr(() => m.C_VerifyFinal(x, sig))).toBe('CKR_OPERATION_NOT_INITIALIZED');
      expect(ckr(() => m.C_Verify(x, hash, sig))).toBe('CKR_OK');
    });

    it('refuses a key without the usage flag, the wrong half of the pair, and (unlike SoftHSM2) a key that is not EC', () => {
      const m = t.module;
      const params = { type: P.CKA_EC_PARAMS, value: Buffer.from(P.EC_PARAMS_P256) };
      const no = m.C_GenerateKeyPair(x, { mechanism: P.CKM_EC_KEY_PAIR_GEN }, [b(P.CKA_TOKEN, false), b(P.CKA_VERIFY, false), params], [b(P.CKA_TOKEN, false), b(P.CKA_SIGN, false)]);
      expect(ckr(() => m.C_SignInit(x, ECDSA, no.privateKey))).toBe('CKR_KEY_FUNCTION_NOT_PERMITTED');
      expect(ckr(() => m.C_VerifyInit(x, ECDSA, no.publicKey))).toBe('CKR_KEY_FUNCTION_NOT_PERMITTED');
      expect(ckr(() => m.C_SignInit(x, ECDSA, kp.publicKey))).toBe('CKR_KEY_FUNCTION_NOT_PERMITTED');
      expect(ckr(() => m.C_VerifyInit(x, ECDSA, kp.privateKey))).toBe('CKR_KEY_FUNCTION_NOT_PERMITTED');
      expect(ckr(() => m.C_SignInit(x, ECDSA, P.handleOf(0xfff0)))).toBe('CKR_OBJECT_HANDLE_INVALID');
      const secret = m.C_GenerateKey(x, { mechanism: P.CKM_GENERIC_SECRET_KEY_GEN }, [b(P.CKA_TOKEN, false), { type: P.CKA_VALUE_LEN, value: 32 }, b(P.CKA_SIGN, true), b(P.CKA_VERIFY, true)]);
      if (kind === 'softhsm') {
        // SoftHSM2 2.6.1 takes any key with CKA_SIGN into C_SignInit(CKM_ECDSA) and fails at
        // C_Sign (softhsm-config/README.md, deliberate differences).
        m.C_SignInit(x, ECDSA, secret);
        expect(ckr(() => m.C_Sign(x, randomBytes(32), Buffer.alloc(64)))).toBe('CKR_GENERAL_ERROR');
      } else {
        expect(ckr(() => m.C_SignInit(x, ECDSA, secret))).toBe('CKR_KEY_TYPE_INCONSISTENT');
        expect(ckr(() => m.C_VerifyInit(x, ECDSA, secret))).toBe('CKR_KEY_TYPE_INCONSISTENT');
      }
      // and an EC key under an HMAC mechanism
      expect(ckr(() => m.C_SignInit(x, { mechanism: P.CKM_SHA256_HMAC }, kp.privateKey))).toBe('CKR_KEY_TYPE_INCONSISTENT');
      // CKM_ECDSA has no parameter: the emulator refuses one; SoftHSM2 ignores it; p11-kit 0.24.1's client does not send it
      expect(ckr(() => m.C_SignInit(x, { mechanism: P.CKM_ECDSA, parameter: Buffer.alloc(8) }, kp.privateKey))).toBe(kind === 'emulator' ? 'CKR_MECHANISM_PARAM_INVALID' : 'CKR_OK');
      if (kind !== 'emulator') m.C_Sign(x, randomBytes(32), Buffer.alloc(64));
    });
  });

  describe('error paths', () => {
    it('buffer too small keeps the operation; a bad tag ends it; invalid handles', () => {
      const m = t.module;
      const x = rw(t);
      const iv = Buffer.alloc(12, 7);
      if (!carries(kind, P.CKM_AES_GCM)) {
        // The same rules on HMAC, which the client carries: a short buffer keeps the operation.
        expect(ckr(() => m.C_EncryptInit(x, gcm(iv, Buffer.alloc(0)), P.handleOf(seal)))).toBe('CKR_MECHANISM_INVALID');
        m.C_SignInit(x, { mechanism: P.CKM_SHA256_HMAC }, P.handleOf(mac));
        expect(ckr(() => m.C_Sign(x, Buffer.from('hello'), Buffer.alloc(4)))).toBe('CKR_BUFFER_TOO_SMALL');
        expect(ckr(() => m.C_SignInit(x, { mechanism: P.CKM_SHA256_HMAC }, P.handleOf(mac)))).toBe('CKR_OPERATION_ACTIVE');
        expect(m.C_Sign(x, Buffer.from('hello'), Buffer.alloc(64)).length).toBe(32);
        expect(ckr(() => m.C_Sign(x, Buffer.from('hello'), Buffer.alloc(64)))).toBe('CKR_OPERATION_NOT_INITIALIZED');
        expect(ckr(() => m.C_SignInit(x, { mechanism: P.CKM_SHA256_HMAC }, P.handleOf(0xfff0)))).toBe('CKR_OBJECT_HANDLE_INVALID');
        expect(ckr(() => m.C_GenerateRandom(P.handleOf(0xfff0), Buffer.alloc(4)))).toBe('CKR_SESSION_HANDLE_INVALID');
        expect(ckr(() => m.C_EncryptInit(x, { mechanism: P.CKM_VENDOR_DEFINED + 7 }, P.handleOf(seal)))).toBe('CKR_MECHANISM_INVALID');
        m.C_CloseSession(x);
        return;
      }
      m.C_EncryptInit(x, gcm(iv, Buffer.alloc(0)), P.handleOf(seal));
      expect(ckr(() => m.C_Encrypt(x, Buffer.from('hello'), Buffer.alloc(4)))).toBe('CKR_BUFFER_TOO_SMALL');
      expect(ckr(() => m.C_SignInit(x, { mechanism: P.CKM_SHA256_HMAC }, P.handleOf(mac)))).toBe('CKR_OPERATION_ACTIVE');
      const ct = m.C_Encrypt(x, Buffer.from('hello'), Buffer.alloc(64));
      expect(ct.length).toBe(21);
      expect(ckr(() => m.C_Encrypt(x, Buffer.from('hello'), Buffer.alloc(64)))).toBe('CKR_OPERATION_NOT_INITIALIZED');
      const bad = Buffer.from(ct);
      bad[0]! ^= 1;
      m.C_DecryptInit(x, gcm(iv, Buffer.alloc(0)), P.handleOf(seal));
      expect(ckr(() => m.C_Decrypt(x, bad, Buffer.alloc(64)))).toBe('CKR_GENERAL_ERROR');
      expect(ckr(() => m.C_Decrypt(x, ct, Buffer.alloc(64)))).toBe('CKR_OPERATION_NOT_INITIALIZED');
      expect(ckr(() => m.C_EncryptInit(x, gcm(iv, Buffer.alloc(0)), P.handleOf(0xfff0)))).toBe('CKR_OBJECT_HANDLE_INVALID');
      expect(ckr(() => m.C_GenerateRandom(P.handleOf(0xfff0), Buffer.alloc(4)))).toBe('CKR_SESSION_HANDLE_INVALID');
      expect(ckr(() => m.C_EncryptInit(x, { mechanism: P.CKM_VENDOR_DEFINED + 7 }, P.handleOf(seal)))).toBe('CKR_MECHANISM_INVALID');
      m.C_CloseSession(x);
    });

    it('a data object’s CKA_VALUE is read-only; its label is not', () => {
      const m = t.module;
      const d = m.C_CreateObject(s, [{ type: P.CKA_CLASS, value: P.CKO_DATA }, b(P.CKA_TOKEN, false), { type: P.CKA_VALUE, value: Buffer.from('v1') }]);
      expect(ckr(() => m.C_SetAttributeValue(s, d, [{ type: P.CKA_VALUE, value: Buffer.from('v2') }]))).toBe('CKR_ATTRIBUTE_READ_ONLY');
      m.C_SetAttributeValue(s, d, [{ type: P.CKA_LABEL, value: 'renamed' }]);
      expect(m.C_GetAttributeValue(s, d, [{ type: P.CKA_VALUE }])[0]!.value.toString()).toBe('v1');
      expect(ckr(() => m.C_GetAttributeValue(s, d, [{ type: P.CKA_SENSITIVE }]))).toBe('CKR_ATTRIBUTE_TYPE_INVALID');
    });

    it('wrong PIN: CKR_PIN_INCORRECT and CKF_USER_PIN_COUNT_LOW; logged out, private objects are out of reach', () => {
      const m = t.module;
      const x = rw(t, false);
      m.C_Logout(x);
      expect(ckr(() => m.C_Login(x, P.CKU_USER, 'wrong-pin'))).toBe('CKR_PIN_INCORRECT');
      expect(m.C_GetTokenInfo(t.slot).flags & P.CKF_USER_PIN_COUNT_LOW).toBeTruthy();
      expect(ckr(() => m.C_EncryptInit(x, gcm(Buffer.alloc(12), Buffer.alloc(0)), P.handleOf(seal)))).toBe(carries(kind, P.CKM_AES_GCM) ? 'CKR_OBJECT_HANDLE_INVALID' : 'CKR_MECHANISM_INVALID');
      expect(ckr(() => m.C_SignInit(x, { mechanism: P.CKM_SHA256_HMAC }, P.handleOf(mac)))).toBe('CKR_OBJECT_HANDLE_INVALID');
      expect(ckr(() => m.C_GenerateKey(x, { mechanism: P.CKM_AES_KEY_GEN }, [{ type: P.CKA_VALUE_LEN, value: 32 }]))).toBe('CKR_USER_NOT_LOGGED_IN');
      m.C_FindObjectsInit(x, [{ type: P.CKA_LABEL, value: 'bkv-seal' }]);
      expect(m.C_FindObjects(x, 10)).toEqual([]);
      m.C_FindObjectsFinal(x);
      m.C_Login(x, P.CKU_SO, SO_PIN);
      expect(m.C_GetSessionInfo(x).state).toBe(P.CKS_RW_SO_FUNCTIONS);
      expect(ckr(() => m.C_Login(x, P.CKU_USER, USER_PIN))).toBe('CKR_USER_ANOTHER_ALREADY_LOGGED_IN');
      m.C_Logout(x);
      m.C_Login(x, P.CKU_USER, USER_PIN);
      expect(m.C_GetTokenInfo(t.slot).flags & P.CKF_USER_PIN_COUNT_LOW).toBe(0);
      expect(ckr(() => m.C_Login(x, P.CKU_USER, USER_PIN))).toBe('CKR_USER_ALREADY_LOGGED_IN');
      // The vault's token object still works after the re-login (it finds its key again).
      token = new Pkcs11Token({ module: t.module, label: t.label, userPin: USER_PIN });
      seal = token.findKey('bkv-seal')!;
      mac = token.findKey('bkv-derive')!;
      ec = token.findKey('bkv-opaque-p256')!;
      s = x;
    });
  });

  describe('NVRAM in data objects', () => {
    it('round trip; survives a new token object; alternates two objects; a lost create leaves the previous value', () => {
      const nv = new TokenNvram(token, 'bkv-nvram-test', 256);
      expect(nv.read().length).toBe(0);
      nv.write(Buffer.from('one'));
      nv.write(Buffer.from('two'));
      expect(Buffer.from(nv.read()).toString()).toBe('two');
      const other = new Pkcs11Token({ module: t.module, label: t.label, userPin: USER_PIN });
      expect(Buffer.from(new TokenNvram(other, 'bkv-nvram-test', 256).read()).toString()).toBe('two');
      expect(token.readData('bkv-nvram-test/0').length + token.readData('bkv-nvram-test/1').length).toBe(2);
      // A crash after the destroy of the next write and before its create:
      nv.write(Buffer.from('three')); // slot 0
      token.destroyData('bkv-nvram-test/1'); // the next write (slot 1) destroyed, never created
      expect(Buffer.from(new TokenNvram(token, 'bkv-nvram-test', 256).read()).toString()).toBe('three');
      expect(() => nv.write(new Uint8Array(300))).toThrow(/exceeds/);
    });
  });

  describe('restart', () => {
    it('every token object survives a restart of the module (C_Finalize, C_Initialize)', () => {
      const m = t.module as P.Pkcs11 & { reinitialize?: () => void };
      const nv = new TokenNvram(token, 'bkv-nvram-restart', 256);
      nv.write(Buffer.from('kept'));
      const iv = Buffer.alloc(12, 3);
      const gcmCarried = carries(kind, P.CKM_AES_GCM);
      const ct = gcmCarried ? token.encryptGcm(seal, iv, Buffer.alloc(0), Buffer.from('sealed before')) : null;
      const macBefore = token.hmac(mac, 'SHA-256', Buffer.from('kept'));
      if (m.reinitialize) m.reinitialize();
      else {
        m.C_Finalize();
        m.C_Initialize();
      }
      const again = new Pkcs11Token({ module: t.module, label: t.label, userPin: USER_PIN });
      const k = again.findKey('bkv-seal')!;
      if (ct) expect(Buffer.from(again.decryptGcm(k, iv, Buffer.alloc(0), ct)).toString()).toBe('sealed before');
      else expect(ckr(() => again.decryptGcm(k, iv, Buffer.alloc(0), new Uint8Array(29)))).toBe('CKR_MECHANISM_INVALID');
      expect(Buffer.from(again.hmac(again.findKey('bkv-derive')!, 'SHA-256', Buffer.from('kept')))).toEqual(Buffer.from(macBefore));
      expect(Buffer.from(new TokenNvram(again, 'bkv-nvram-restart', 256).read()).toString()).toBe('kept');
      expect(again.findKey('bkv-opaque-p256')).not.toBeNull();
      again.destroyAllKeys();
      expect(again.findKey('bkv-seal')).toBeNull();
      expect(again.readData('bkv-nvram-restart/0').length).toBe(1); // data objects are not keys
    });
  });
}, { p11kit: true });
