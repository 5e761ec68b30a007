/**
 * The emulator's cache of node:crypto KeyObjects (hsm/tokens/emulator/state.ts `keyObjects`):
 * a key operation is served from it only while the object it was made from is live and unchanged.
 * A destroyed key's handle no longer encrypts; a re-created key (same label, new value) encrypts
 * under its own value; a key changed by C_SetAttributeValue is checked against its new attributes;
 * logout, closing the session of a session key, a store reload without the object and C_Finalize
 * drop the entries; an operation already initialized keeps its key even when the object goes.
 */
import { createCipheriv } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import * as P from '../../../enclave/api/pkcs11.ts';
import { EmulatorModule } from '../../../hsm/tokens/emulator/module.ts';
import { EMULATOR_STORE_FILE } from '../../../hsm/tokens/emulator/backend.ts';
import { ensureToken } from '../../../hsm/tokens/open.ts';
import { ckr } from '../../helpers/tokens.ts';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'bkv-emu-keycache-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
let n = 0;
const USER = 'user-pin-123';

function module(opts: { storeFile?: string | null; revalidateMs?: number } = {}) {
  const m = new EmulatorModule({ pinKdfIterations: 1000, storeFile: opts.storeFile ?? null, revalidateMs: opts.revalidateMs });
  m.C_Initialize();
  ensureToken(m, 'keycache', 'so-pin-123', USER);
  const slot = m.C_GetSlotList(true)[0]!;
  const s = m.C_OpenSession(slot, P.CKF_SERIAL_SESSION | P.CKF_RW_SESSION);
  m.C_Login(s, P.CKU_USER, USER);
  return { m, s, slot };
}

function aesKey(m: EmulatorModule, s: P.Handle, value: Buffer, o: { token?: boolean; label?: string; modifiable?: boolean } = {}): P.Handle {
  return m.C_CreateObject(s, [
    { type: P.CKA_CLASS, value: P.CKO_SECRET_KEY },
    { type: P.CKA_KEY_TYPE, value: P.CKK_AES },
    { type: P.CKA_TOKEN, value: o.token ?? true },
    { type: P.CKA_PRIVATE, value: true },
    { type: P.CKA_LABEL, value: o.label ?? 'k' },
    { type: P.CKA_ENCRYPT, value: true },
    { type: P.CKA_DECRYPT, value: true },
    { type: P.CKA_MODIFIABLE, value: o.modifiable ?? true },
    { type: P.CKA_VALUE, value },
  ]);
}

const iv = Buffer.alloc(12, 7);
const aad = Buffer.from('aad');
const pt = Buffer.from('the plaintext of a cached-key test');
const mech = (): P.Mechanism => ({ mechanism: P.CKM_AES_GCM, parameter: { type: P.CK_PARAMS_GCM, iv, aad, ivBits: 96, tagBits: 128 } });

function encrypt(m: EmulatorModule, s: P.Handle, k: P.Handle): Buffer {
  m.C_EncryptInit(s, mech(), k);
  return Buffer.from(m.C_Encrypt(s, pt, Buffer.alloc(pt.length + 16)));
}

function expected(key: Buffer): Buffer {
  const c = createCipheriv('aes-256-gcm', key, iv);
  c.setAAD(aad);
  return Buffer.concat([c.update(pt), c.final(), c.getAuthTag()]);
}

const K1 = Buffer.alloc(32, 0x11);
const K2 = Buffer.alloc(32, 0x22);

describe('emulator KeyObject cache', () => {
  it('serves a live key, and a destroyed key handle can no longer encrypt or decrypt', () => {
    const { m, s } = module();
    const k = aesKey(m, s, K1);
    expect(encrypt(m, s, k)).toEqual(expected(K1));
    expect(encrypt(m, s, k)).toEqual(expected(K1));
    expect(m.keyObjectCacheSize()).toBe(1);
    m.C_DestroyObject(s, k);
    expect(m.keyObjectCacheSize()).toBe(0);
    expect(ckr(() => m.C_EncryptInit(s, mech(), k))).toBe('CKR_OBJECT_HANDLE_INVALID');
    expect(ckr(() => m.C_DecryptInit(s, mech(), k))).toBe('CKR_OBJECT_HANDLE_INVALID');
  });

  it('a key re-created under the same label (and a session key) encrypts under its own value', () => {
    const { m, s } = module();
    for (const token of [true, false]) {
      const a = aesKey(m, s, K1, { token });
      expect(encrypt(m, s, a)).toEqual(expected(K1));
      m.C_DestroyObject(s, a);
      const b = aesKey(m, s, K2, { token });
      expect(encrypt(m, s, b)).toEqual(expected(K2));
      expect(ckr(() => encrypt(m, s, a))).toBe('CKR_OBJECT_HANDLE_INVALID');
      m.C_DestroyObject(s, b);
    }
    expect(m.keyObjectCacheSize()).toBe(0);
  });

  it('a key changed by C_SetAttributeValue is checked against its new attributes', () => {
    const { m, s } = module();
    const k = aesKey(m, s, K1);
    expect(encrypt(m, s, k)).toEqual(expected(K1));
    m.C_SetAttributeValue(s, k, [{ type: P.CKA_ENCRYPT, value: false }]);
    expect(ckr(() => m.C_EncryptInit(s, mech(), k))).toBe('CKR_KEY_FUNCTION_NOT_PERMITTED');
    m.C_SetAttributeValue(s, k, [{ type: P.CKA_ENCRYPT, value: true }]);
    expect(encrypt(m, s, k)).toEqual(expected(K1));
  });

  it('an initialized operation keeps its key when the object is destroyed before it ends', () => {
    const { m, s } = module();
    const k = aesKey(m, s, K1);
    m.C_EncryptInit(s, mech(), k);
    m.C_DestroyObject(s, k);
    expect(Buffer.from(m.C_Encrypt(s, pt, Buffer.alloc(pt.length + 16)))).toEqual(expected(K1));
  });

  it('logout, closing the last session, and C_Finalize drop the cache', () => {
    const { m, s, slot } = module();
    const k = aesKey(m, s, K1);
    encrypt(m, s, k);
    expect(m.keyObjectCacheSize()).toBe(1);
    m.C_Logout(s);
    expect(m.keyObjectCacheSize()).toBe(0);
    expect(ckr(() => m.C_EncryptInit(s, mech(), k))).toBe('CKR_OBJECT_HANDLE_INVALID');

    m.C_Login(s, P.CKU_USER, USER);
    const s2 = m.C_OpenSession(slot, P.CKF_SERIAL_SESSION | P.CKF_RW_SESSION);
    const sk = aesKey(m, s2, K2, { token: false }); // a session object of s2
    expect(encrypt(m, s, sk)).toEqual(expected(K2));
    expect(m.keyObjectCacheSize()).toBe(1);
    m.C_CloseSession(s2);
    expect(m.keyObjectCacheSize()).toBe(0);
    expect(ckr(() => m.C_EncryptInit(s, mech(), sk))).toBe('CKR_OBJECT_HANDLE_INVALID');

    const t = aesKey(m, s, K1, { label: 't' });
    encrypt(m, s, t);
    expect(m.keyObjectCacheSize()).toBe(1);
    m.C_CloseSession(s); // the last session: logs out
    expect(m.keyObjectCacheSize()).toBe(0);
    const s3 = m.C_OpenSession(slot, P.CKF_SERIAL_SESSION | P.CKF_RW_SESSION);
    m.C_Login(s3, P.CKU_USER, USER);
    const [found] = (() => {
      m.C_FindObjectsInit(s3, [{ type: P.CKA_LABEL, value: 't' }]);
      const h = m.C_FindObjects(s3, 8);
      m.C_FindObjectsFinal(s3);
      return h;
    })();
    expect(encrypt(m, s3, found!)).toEqual(expected(K1));
    expect(m.keyObjectCacheSize()).toBe(1);
    m.C_Finalize();
    expect(m.keyObjectCacheSize()).toBe(0);
  });

  it('a store reload where another module destroyed and re-created the key does not serve the old key', () => {
    const storeFile = path.join(root, `store-${n++}`, EMULATOR_STORE_FILE);
    fs.mkdirSync(path.dirname(storeFile), { recursive: true });
    const a = module({ storeFile, revalidateMs: 0 });
    const k = aesKey(a.m, a.s, K1, { label: 'shared' });
    expect(encrypt(a.m, a.s, k)).toEqual(expected(K1));
    expect(a.m.keyObjectCacheSize()).toBe(1);

    const b = module({ storeFile, revalidateMs: 0 });
    b.m.C_FindObjectsInit(b.s, [{ type: P.CKA_LABEL, value: 'shared' }]);
    const [kb] = b.m.C_FindObjects(b.s, 8);
    b.m.C_FindObjectsFinal(b.s);
    b.m.C_DestroyObject(b.s, kb!);
    const k2 = aesKey(b.m, b.s, K2, { label: 'shared' });
    expect(encrypt(b.m, b.s, k2)).toEqual(expected(K2));

    // Module a reloads the store: its handle of the old object is gone, and so is the cached key.
    expect(ckr(() => a.m.C_EncryptInit(a.s, mech(), k))).toBe('CKR_OBJECT_HANDLE_INVALID');
    expect(a.m.keyObjectCacheSize()).toBe(0);
    a.m.C_FindObjectsInit(a.s, [{ type: P.CKA_LABEL, value: 'shared' }]);
    const [ka2] = a.m.C_FindObjects(a.s, 8);
    a.m.C_FindObjectsFinal(a.s);
    expect(encrypt(a.m, a.s, ka2!)).toEqual(expected(K2));
  });

  it('C_GenerateRandom from the pool: right lengths, all different, larger than the pool too', () => {
    const { m, s } = module();
    const seen = new Set<string>();
    for (let i = 0; i < 2000; i++) {
      const b = m.C_GenerateRandom(s, Buffer.alloc(12));
      expect(b.length).toBe(12);
      seen.add(b.toString('hex'));
    }
    expect(seen.size).toBe(2000);
    const big = m.C_GenerateRandom(s, Buffer.alloc(10_000));
    expect(big.length).toBe(10_000);
    expect(big.subarray(0, 64).equals(Buffer.alloc(64))).toBe(false);
  });

  it('handle encoding (handleOf / handleNumber without BigInt) matches the 64-bit little-endian form', () => {
    for (const n of [0, 1, 255, 2 ** 32 - 1, 2 ** 32, 2 ** 32 + 5, 2 ** 40 + 3, Number.MAX_SAFE_INTEGER]) {
      const h = P.handleOf(n);
      expect(h.readBigUInt64LE(0)).toBe(BigInt(n));
      expect(P.handleNumber(h)).toBe(n);
      expect(P.handleOf(BigInt(n)).equals(h)).toBe(true);
    }
    const big = Buffer.alloc(8);
    big.writeBigUInt64LE(2n ** 53n);
    expect(P.handleNumber(big)).toBe(-1);
    big.writeBigUInt64LE(2n ** 64n - 1n);
    expect(P.handleNumber(big)).toBe(-1);
    expect(P.handleNumber(Buffer.alloc(4))).toBe(-1);
    expect(() => P.handleOf(-1)).toThrow();
    expect(() => P.handleOf(1.5)).toThrow();
  });
});
