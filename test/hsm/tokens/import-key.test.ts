/**
 * Secret keys created from a value (Token.importAesKey / importHmacKey: C_CreateObject, PKCS#11
 * v2.40 §5.7), as a fleet member's token holds the fleet's vault keys (enclave/fleet/vault-keys.ts),
 * on every token and on the emulator through p11-kit-client.so (C_CreateObject and its template
 * cross p11-kit's RPC):
 * - an imported key works like a generated one: HMAC-SHA256/512, AES-ECB and AES-GCM outputs equal
 *   node:crypto's with the same value (GCM asserted refused by p11-kit's client, which can not
 *   carry it);
 * - its CKA_VALUE can not be read, it can not be wrapped, its attributes are a generated key's
 *   (token, private, sensitive, not extractable, not copyable, not modifiable, the same usage
 *   flags), with the history the standard gives a created key (CKA_LOCAL, CKA_ALWAYS_SENSITIVE
 *   and CKA_NEVER_EXTRACTABLE false);
 * - a value of the wrong length is refused before the module is called, and nothing is created.
 */
import { createCipheriv, createHmac, randomBytes } from 'node:crypto';
import { beforeAll, expect, it } from 'vitest';
import * as P from '../../../enclave/api/pkcs11.ts';
import { Pkcs11Token } from '../../../enclave/token-pkcs11.ts';
import { TokenError } from '../../../enclave/token.ts';
import { thrownBy } from '../../helpers/errors.ts';
import { carries, ckr, describeTokens, freshToken, USER_PIN } from '../../helpers/tokens.ts';
import type { FreshToken } from '../../helpers/tokens.ts';

const b = (type: number, value: boolean): P.Attribute => ({ type, value });
const USAGE = [P.CKA_ENCRYPT, P.CKA_DECRYPT, P.CKA_SIGN, P.CKA_VERIFY, P.CKA_WRAP, P.CKA_UNWRAP, P.CKA_DERIVE];
const CUSTODY = [P.CKA_CLASS, P.CKA_KEY_TYPE, P.CKA_TOKEN, P.CKA_PRIVATE, P.CKA_SENSITIVE, P.CKA_EXTRACTABLE, P.CKA_MODIFIABLE, P.CKA_COPYABLE, P.CKA_VALUE_LEN];

function session(t: FreshToken): P.Handle {
  const s = t.module.C_OpenSession(t.slot, P.CKF_SERIAL_SESSION | P.CKF_RW_SESSION);
  try {
    t.module.C_Login(s, P.CKU_USER, USER_PIN);
  } catch (e) {
    if ((P.normalizePkcs11Error(e) as P.Pkcs11Error).code !== P.CKR.CKR_USER_ALREADY_LOGGED_IN) throw e;
  }
  return s;
}

function attrs(t: FreshToken, s: P.Handle, k: number, types: number[]): string[] {
  return types.map((type) => t.module.C_GetAttributeValue(s, P.handleOf(k), [{ type }])[0]!.value.toString('hex'));
}

describeTokens(
  'secret keys created from a value',
  (kind) => {
    let t: FreshToken;
    let token: Pkcs11Token;
    let s: P.Handle;
    const aesValue = randomBytes(32);
    const ctrValue = randomBytes(32);
    const mac32 = randomBytes(32);
    const mac64 = randomBytes(64);
    let aes: number;
    let ctr: number;
    let h32: number;
    let h64: number;

    beforeAll(() => {
      t = freshToken(kind);
      token = new Pkcs11Token({ module: t.module, label: t.label, userPin: USER_PIN });
      aes = token.importAesKey('imp-aes', Uint8Array.from(aesValue));
      ctr = token.importAesKey('imp-ctr', Uint8Array.from(ctrValue), true);
      h32 = token.importHmacKey('imp-mac32', Uint8Array.from(mac32));
      h64 = token.importHmacKey('imp-mac64', Uint8Array.from(mac64));
      s = session(t);
    });

    it('HMAC-SHA256 and HMAC-SHA512 under an imported generic secret equal node:crypto with the same value', () => {
      for (const data of [Buffer.alloc(0), Buffer.from('bkv'), randomBytes(300)]) {
        expect(Buffer.from(token.hmac(h32, 'SHA-256', data)).toString('hex')).toBe(createHmac('sha256', mac32).update(data).digest('hex'));
        expect(Buffer.from(token.hmac(h64, 'SHA-512', data)).toString('hex')).toBe(createHmac('sha512', mac64).update(data).digest('hex'));
        expect(Buffer.from(token.hmac(h64, 'SHA-256', data)).toString('hex')).toBe(createHmac('sha256', mac64).update(data).digest('hex'));
      }
         // an AES key does not sign: the module refuses, and the TokenError names the function (for a
      // device's boot error, hsm/runner.ts describeError)
      const refused = thrownBy(() => token.hmac(aes, 'SHA-256', Buffer.from('bkv')));
      expect(refused).toBeInstanceOf(TokenError);
      expect((refused as { detail?: string }).detail).toMatch(/^C_Sign(Init)?\b/);
    });

    it('AES-ECB under an imported encrypt-only key equals node:crypto; AES-GCM under an imported key too', () => {
      const blocks = randomBytes(64);
      const ecb = createCipheriv('aes-256-ecb', ctrValue, null).setAutoPadding(false).update(blocks);
      expect(Buffer.from(token.encryptEcb(ctr, blocks)).toString('hex')).toBe(ecb.toString('hex'));
      const iv = randomBytes(12);
      const aad = Buffer.from('aad');
      const pt = randomBytes(77);
      if (carries(kind, P.CKM_AES_GCM)) {
        const c = createCipheriv('aes-256-gcm', aesValue, iv).setAAD(aad);
        const want = Buffer.concat([c.update(pt), c.final(), c.getAuthTag()]);
        const got = token.encryptGcm(aes, iv, aad, pt);
        expect(Buffer.from(got).toString('hex')).toBe(want.toString('hex'));
        expect(Buffer.from(token.decryptGcm(aes, iv, aad, got)).equals(pt)).toBe(true);
      } else {
        expect((thrownBy(() => token.encryptGcm(aes, iv, aad, pt)) as TokenError).ckr).toBe('CKR_MECHANISM_INVALID');
      }
      // encrypt-only: no decryption with the counter-mode key
      expect(ckr(() => t.module.C_DecryptInit(s, { mechanism: P.CKM_AES_ECB }, P.handleOf(ctr)))).toBe('CKR_KEY_FUNCTION_NOT_PERMITTED');
    });

    it('CKA_VALUE of an imported key can not be read, alone or beside a readable attribute', () => {
      for (const k of [aes, ctr, h32, h64]) {
        expect(ckr(() => t.module.C_GetAttributeValue(s, P.handleOf(k), [{ type: P.CKA_VALUE }]))).toBe('CKR_ATTRIBUTE_SENSITIVE');
        expect(ckr(() => t.module.C_GetAttributeValue(s, P.handleOf(k), [{ type: P.CKA_LABEL }, { type: P.CKA_VALUE }]))).toBe('CKR_ATTRIBUTE_SENSITIVE');
      }
    });

    it('an imported key can not be wrapped under a key the caller controls, nor copied, nor made extractable', () => {
      const atk = t.module.C_GenerateKey(s, { mechanism: P.CKM_AES_KEY_GEN }, [
        b(P.CKA_TOKEN, false),
        { type: P.CKA_VALUE_LEN, value: 32 },
        b(P.CKA_SENSITIVE, false),
        b(P.CKA_EXTRACTABLE, true),
        b(P.CKA_WRAP, true),
        b(P.CKA_UNWRAP, true),
      ]);
      for (const k of [aes, ctr, h32, h64]) {
        for (const mechanism of [P.CKM_AES_KEY_WRAP, P.CKM_AES_KEY_WRAP_PAD]) {
          expect(ckr(() => t.module.C_WrapKey(s, { mechanism }, atk, P.handleOf(k), Buffer.alloc(512)))).toBe(carries(kind, mechanism) ? 'CKR_KEY_UNEXTRACTABLE' : 'CKR_MECHANISM_INVALID');
        }
        expect(ckr(() => t.module.C_CopyObject(s, P.handleOf(k), [b(P.CKA_TOKEN, false)]))).toBe('CKR_ACTION_PROHIBITED');
        expect(ckr(() => t.module.C_SetAttributeValue(s, P.handleOf(k), [b(P.CKA_EXTRACTABLE, true)]))).toBe('CKR_ACTION_PROHIBITED');
        expect(ckr(() => t.module.C_SetAttributeValue(s, P.handleOf(k), [b(P.CKA_SENSITIVE, false)]))).toBe('CKR_ACTION_PROHIBITED');
      }
    });

    it("an imported key has a generated key's custody attributes and usage flags; its history says it was created", () => {
      const genAes = token.generateAesKey('gen-aes');
      const genCtr = token.generateAesKey('gen-ctr', true);
      const genMac = token.generateHmacKey('gen-mac32', 32);
      for (const [imp, gen] of [[aes, genAes], [ctr, genCtr], [h32, genMac]] as const) {
        expect(attrs(t, s, imp, CUSTODY)).toEqual(attrs(t, s, gen, CUSTODY));
        expect(attrs(t, s, imp, USAGE)).toEqual(attrs(t, s, gen, USAGE));
      }
      // the values the firmware relies on, spelled out
      const [, , tok, priv, sens, extr, modif, copy, len] = attrs(t, s, aes, CUSTODY);
      expect([tok, priv, sens, extr, modif, copy, len]).toEqual(['01', '01', '01', '00', '00', '00', '2000000000000000']);
      expect(attrs(t, s, h64, [P.CKA_VALUE_LEN])).toEqual(['4000000000000000']);
      expect(attrs(t, s, aes, USAGE).join('')).toBe('01010000000000');
      expect(attrs(t, s, ctr, USAGE).join('')).toBe('01000000000000');
      expect(attrs(t, s, h32, USAGE).join('')).toBe('00000100000000');
      // v2.40 §4.9: a key created from a value was not always sensitive, not never extractable, not local
      for (const k of [aes, ctr, h32, h64]) expect(attrs(t, s, k, [P.CKA_LOCAL, P.CKA_ALWAYS_SENSITIVE, P.CKA_NEVER_EXTRACTABLE])).toEqual(['00', '00', '00']);
      expect(attrs(t, s, genAes, [P.CKA_LOCAL, P.CKA_ALWAYS_SENSITIVE, P.CKA_NEVER_EXTRACTABLE])).toEqual(['01', '01', '01']);
    });

    it('finds an imported key again by label; importing a label the token holds returns that key', () => {
      const again = new Pkcs11Token({ module: t.module, label: t.label, userPin: USER_PIN });
      expect(again.findKey('imp-aes')).toBe(aes);
      expect(again.findKey('imp-mac64')).toBe(h64);
      expect(again.importHmacKey('imp-mac32', randomBytes(32))).toBe(h32);
    });

    it('a value of the wrong length is refused (CKR_KEY_SIZE_RANGE) and nothing is created', () => {
      const cases: [string, () => unknown][] = [
        ['bad-aes-16', () => token.importAesKey('bad-aes-16', randomBytes(16))],
        ['bad-aes-33', () => token.importAesKey('bad-aes-33', randomBytes(33))],
        ['bad-aes-0', () => token.importAesKey('bad-aes-0', new Uint8Array(0), true)],
        ['bad-mac-31', () => token.importHmacKey('bad-mac-31', randomBytes(31))],
        ['bad-mac-65', () => token.importHmacKey('bad-mac-65', randomBytes(65))],
      ];
      for (const [label, call] of cases) {
        const e = thrownBy(call);
        expect(e, label).toBeInstanceOf(TokenError);
        expect((e as TokenError).ckr, label).toBe('CKR_KEY_SIZE_RANGE');
        expect(token.findKey(label), label).toBeNull();
      }
    });
  },
  { p11kit: true },
);
