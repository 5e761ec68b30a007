/**
 * What the emulator token has that SoftHSM2 lacks (PKCS#11 v2.40 §3.2 token flags, §5.6):
 * user PIN lockout after a configurable number of failures (CKF_USER_PIN_COUNT_LOW, _FINAL_TRY,
 * _LOCKED; CKR_PIN_LOCKED even for the right PIN), durable across a restart, cleared only by the
 * SO (C_InitPIN); optional SO PIN lockout; power-on known-answer self-tests that keep a failing
 * module from initializing (CKR_FIPS_SELF_TEST_FAILED); zeroization of the whole device. And
 * graphene-pk11's Module drives the emulator as it drives a native module.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as graphene from 'graphene-pk11';
import { afterAll, describe, expect, it } from 'vitest';
import * as P from '../../../enclave/api/pkcs11.ts';
import { EmulatorModule, SELF_TESTS, runSelfTests } from '../../../hsm/tokens/emulator/index.ts';
import type { EmulatorOptions } from '../../../hsm/tokens/emulator/index.ts';
import { ensureToken } from '../../../hsm/tokens/open.ts';
import { grapheneUserSession } from '../../helpers/graphene.ts';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'bkv-emu-dev-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
let n = 0;
const SO = 'so-pin-0000';
const USER = 'user-pin-1111';

function token(opts: EmulatorOptions = {}) {
  const m = new EmulatorModule({ pinKdfIterations: 1000, ...opts });
  m.C_Initialize();
  ensureToken(m, 'dev', SO, USER);
  const slot = m.C_GetSlotList(true).find((s) => P.trimLabel(m.C_GetTokenInfo(s).label) === 'dev')!;
  const s = m.C_OpenSession(slot, P.CKF_SERIAL_SESSION | P.CKF_RW_SESSION);
  return { m, slot, s };
}

function code(fn: () => unknown): string {
  try {
    fn();
    return 'CKR_OK';
  } catch (e) {
    return (e as P.Pkcs11Error).message;
  }
}

describe('emulator: PIN lockout', () => {
  it('locks the user PIN after the configured failures; the right PIN no longer works; the SO unlocks', () => {
    const { m, slot, s } = token({ userPinMaxFailures: 3 });
    const flags = () => m.C_GetTokenInfo(slot).flags;
    expect(code(() => m.C_Login(s, P.CKU_USER, 'wrong-1'))).toBe('CKR_PIN_INCORRECT');
    expect(flags() & P.CKF_USER_PIN_COUNT_LOW).toBeTruthy();
    expect(flags() & P.CKF_USER_PIN_FINAL_TRY).toBe(0);
    expect(code(() => m.C_Login(s, P.CKU_USER, 'wrong-2'))).toBe('CKR_PIN_INCORRECT');
    expect(flags() & P.CKF_USER_PIN_FINAL_TRY).toBeTruthy();
    expect(code(() => m.C_Login(s, P.CKU_USER, 'wrong-3'))).toBe('CKR_PIN_INCORRECT');
    expect(flags() & P.CKF_USER_PIN_LOCKED).toBeTruthy();
    expect(code(() => m.C_Login(s, P.CKU_USER, USER))).toBe('CKR_PIN_LOCKED');
    expect(code(() => m.C_SetPIN(s, USER, 'new-user-pin'))).toBe('CKR_PIN_LOCKED');
    // The SO sets a new user PIN: that unlocks.
    m.C_Login(s, P.CKU_SO, SO);
    m.C_InitPIN(s, 'new-user-pin');
    m.C_Logout(s);
    expect(flags() & (P.CKF_USER_PIN_LOCKED | P.CKF_USER_PIN_COUNT_LOW)).toBe(0);
    expect(code(() => m.C_Login(s, P.CKU_USER, USER))).toBe('CKR_PIN_INCORRECT');
    expect(code(() => m.C_Login(s, P.CKU_USER, 'new-user-pin'))).toBe('CKR_OK');
  });

  it('a success resets the count; the count and the lock survive a restart', () => {
    const file = path.join(root, `lock-${n++}.bin`);
    const a = token({ userPinMaxFailures: 2, storeFile: file });
    expect(code(() => a.m.C_Login(a.s, P.CKU_USER, 'nope'))).toBe('CKR_PIN_INCORRECT');
    a.m.C_Login(a.s, P.CKU_USER, USER);
    a.m.C_Logout(a.s);
    expect(a.m.C_GetTokenInfo(a.slot).flags & P.CKF_USER_PIN_COUNT_LOW).toBe(0);
    expect(code(() => a.m.C_Login(a.s, P.CKU_USER, 'nope'))).toBe('CKR_PIN_INCORRECT');
    expect(code(() => a.m.C_Login(a.s, P.CKU_USER, 'nope'))).toBe('CKR_PIN_INCORRECT');
    const b = token({ userPinMaxFailures: 2, storeFile: file });
    expect(b.m.C_GetTokenInfo(b.slot).flags & P.CKF_USER_PIN_LOCKED).toBeTruthy();
    expect(code(() => b.m.C_Login(b.s, P.CKU_USER, USER))).toBe('CKR_PIN_LOCKED');
  });

  it('an SO PIN lockout, when configured, also refuses C_InitToken', () => {
    const { m, slot, s } = token({ soPinMaxFailures: 2 });
    expect(code(() => m.C_Login(s, P.CKU_SO, 'bad-so-1'))).toBe('CKR_PIN_INCORRECT');
    expect(m.C_GetTokenInfo(slot).flags & P.CKF_SO_PIN_FINAL_TRY).toBeTruthy();
    expect(code(() => m.C_Login(s, P.CKU_SO, 'bad-so-2'))).toBe('CKR_PIN_INCORRECT');
    expect(code(() => m.C_Login(s, P.CKU_SO, SO))).toBe('CKR_PIN_LOCKED');
    m.C_CloseSession(s);
    expect(code(() => m.C_InitToken(slot, SO, 'again'))).toBe('CKR_PIN_LOCKED');
  });

  it('by default (10 failures) nine wrong PINs still leave the user in', () => {
    const { m, s } = token();
    for (let i = 0; i < 9; i++) expect(code(() => m.C_Login(s, P.CKU_USER, `wrong-${i}`))).toBe('CKR_PIN_INCORRECT');
    expect(code(() => m.C_Login(s, P.CKU_USER, USER))).toBe('CKR_OK');
  });
});

describe('emulator: self-tests and zeroization', () => {
  it('known-answer self-tests pass; a failing one keeps the module from initializing', () => {
    expect(runSelfTests()).toEqual({ ok: true, failed: [] });
    expect(SELF_TESTS).toEqual(expect.arrayContaining(['aes-256-gcm', 'aes-kw', 'aes-kwp', 'hmac-sha256', 'hmac-sha512', 'ecdh-p256', 'drbg']));
    const m = new EmulatorModule({ selfTestFault: 'aes-kw' });
    try {
      m.C_Initialize();
      expect.unreachable();
    } catch (e) {
      expect((e as P.Pkcs11Error).message).toBe('CKR_FIPS_SELF_TEST_FAILED');
      expect((e as { detail?: string }).detail).toMatch(/aes-kw/);
    }
    expect(code(() => m.C_GetSlotList(true))).toBe('CKR_CRYPTOKI_NOT_INITIALIZED');
    expect(m.selfTestReport()).toEqual({ ok: false, failed: ['aes-kw'] });
  });

  it('zeroization destroys every token and object and wipes the store file', () => {
    const file = path.join(root, `zero-${n++}.bin`);
    const { m, s } = token({ storeFile: file });
    m.C_Login(s, P.CKU_USER, USER);
    m.C_GenerateKey(s, { mechanism: P.CKM_AES_KEY_GEN }, [{ type: P.CKA_TOKEN, value: true }, { type: P.CKA_VALUE_LEN, value: 32 }]);
    expect(fs.existsSync(file)).toBe(true);
    m.zeroize();
    expect(fs.existsSync(file)).toBe(false);
    expect(m.C_GetSlotList(true).length).toBe(1); // the free slot only
    expect(m.C_GetTokenInfo(m.C_GetSlotList(true)[0]!).flags & P.CKF_TOKEN_INITIALIZED).toBe(0);
    expect(code(() => m.C_GenerateRandom(s, Buffer.alloc(4)))).toBe('CKR_SESSION_HANDLE_INVALID');
    const again = new EmulatorModule({ storeFile: file });
    again.C_Initialize();
    expect(again.C_GetSlotList(true).length).toBe(1);
  });
});

describe('emulator: graphene-pk11 drives it', () => {
  it('Module over the emulator: slots, session, login, AES-GCM, HMAC, random', () => {
    const emu = new EmulatorModule({ pinKdfIterations: 1000 });
    const { mod, session } = grapheneUserSession(P.normalizedModule(emu));
    const key = session.generateKey(graphene.KeyGenMechanism.AES, { keyType: graphene.KeyType.AES, valueLen: 32, encrypt: true, decrypt: true, sensitive: true, extractable: false, label: 'g' });
    expect(key.getAttribute('sensitive')).toBe(true);
    const iv = Buffer.alloc(12, 1);
    const params = new graphene.AesGcmParams(iv, Buffer.from('aad'), 128);
    const ct = session.createCipher({ name: 'AES_GCM', params }, key).once(Buffer.from('graphene data'), Buffer.alloc(64));
    const pt = session.createDecipher({ name: 'AES_GCM', params }, key).once(ct, Buffer.alloc(64));
    expect(pt.toString()).toBe('graphene data');
    const mac = session.generateKey(graphene.KeyGenMechanism.GENERIC_SECRET, { keyType: graphene.KeyType.GENERIC_SECRET, valueLen: 32, sign: true, verify: true });
    const sig = session.createSign('SHA256_HMAC', mac).once(Buffer.from('data'));
    expect(sig.length).toBe(32);
    expect(session.createVerify('SHA256_HMAC', mac).once(Buffer.from('data'), sig)).toBe(true);
    expect(session.generateRandom(16).length).toBe(16);
    expect(session.find({ label: 'g' }).length).toBe(1);
    session.logout();
    mod.finalize();
  });
});
