/**
 * The emulator token's persistence (hsm/tokens/emulator/persistence.ts, PKCS#11 v2.40 §2.4
 * token objects): objects survive a new module instance; private objects are encrypted at rest;
 * a corrupt store is CKR_DEVICE_ERROR, never an empty token; several processes provisioning
 * keys at once through the data folder's lock lose none and agree on a shared label; a stale
 * lock is broken; one instance sees another's changes; the data folder remembers its token kind.
 */
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import * as P from '../../../enclave/api/pkcs11.ts';
import { Pkcs11Token } from '../../../enclave/token-pkcs11.ts';
import { TokenError } from '../../../enclave/token.ts';
import { settleTokenConfig } from '../../../hsm/tokens/config.ts';
import { EmulatorModule } from '../../../hsm/tokens/emulator/module.ts';
import { EMULATOR_STORE_FILE } from '../../../hsm/tokens/emulator/backend.ts';
import { ensureToken, openVaultToken } from '../../../hsm/tokens/open.ts';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'bkv-emu-store-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
let n = 0;
const freshDir = () => path.join(root, `d${n++}`);
const fast = { pinKdfIterations: 1000 };

function open(dataDir: string, revalidateMs = 100): Pkcs11Token {
  const o = openVaultToken(dataDir, 'emulator', { emulator: { ...fast, revalidateMs } });
  return new Pkcs11Token({ module: o.module, label: o.label, userPin: o.userPin, exclusive: o.exclusive });
}

function ckrOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof TokenError) return e.ckr;
    const p = P.normalizePkcs11Error(e);
    if (p instanceof P.Pkcs11Error) return p.message;
    throw e;
  }
  throw new Error('expected a failure');
}

describe('emulator token store', () => {
  it('keys and data objects survive a new module instance', () => {
    const dir = freshDir();
    const a = open(dir);
    const k = a.generateAesKey('k');
    a.writeData('nv', Buffer.from('state'));
    const iv = new Uint8Array(12);
    const ct = a.encryptGcm(k, iv, new Uint8Array(0), Buffer.from('persist'));
    const b = open(dir);
    const kb = b.findKey('k')!;
    expect(Buffer.from(b.decryptGcm(kb, iv, new Uint8Array(0), ct)).toString()).toBe('persist');
    expect(Buffer.from(b.readData('nv')[0]!).toString()).toBe('state');
  });

  it('private objects are encrypted at rest: no key value or label in the file', () => {
    const dir = freshDir();
    const m = new EmulatorModule({ ...fast, storeFile: path.join(dir, EMULATOR_STORE_FILE) });
    m.C_Initialize();
    ensureToken(m, 'plain-check', 'so-pin-123', 'user-pin-123');
    const slot = m.C_GetSlotList(true)[0]!;
    const s = m.C_OpenSession(slot, P.CKF_SERIAL_SESSION | P.CKF_RW_SESSION);
    m.C_Login(s, P.CKU_USER, 'user-pin-123');
    const secret = Buffer.from('00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff', 'hex');
    const mk = (priv: boolean, label: string) =>
      m.C_CreateObject(s, [
        { type: P.CKA_CLASS, value: P.CKO_SECRET_KEY },
        { type: P.CKA_KEY_TYPE, value: P.CKK_AES },
        { type: P.CKA_TOKEN, value: true },
        { type: P.CKA_PRIVATE, value: priv },
        { type: P.CKA_LABEL, value: label },
        { type: P.CKA_VALUE, value: secret },
      ]);
    mk(true, 'private-label-xyz');
    let raw = fs.readFileSync(path.join(dir, EMULATOR_STORE_FILE));
    expect(raw.includes(secret)).toBe(false);
    expect(raw.includes(Buffer.from('private-label-xyz'))).toBe(false);
    mk(false, 'public-label-xyz'); // a public object is stored as it is (as in SoftHSM2)
    raw = fs.readFileSync(path.join(dir, EMULATOR_STORE_FILE));
    expect(raw.includes(Buffer.from('public-label-xyz'))).toBe(true);
  });

  it('a corrupt store is a clear CKR_DEVICE_ERROR', () => {
    const dir = freshDir();
    open(dir).generateAesKey('k');
    const file = path.join(dir, EMULATOR_STORE_FILE);
    const raw = fs.readFileSync(file);
    raw[30]! ^= 1;
    fs.writeFileSync(file, raw);
    const m = new EmulatorModule({ storeFile: file });
    try {
      m.C_Initialize();
      expect.unreachable();
    } catch (e) {
      expect((e as P.Pkcs11Error).message).toBe('CKR_DEVICE_ERROR');
      expect((e as { detail?: string }).detail).toMatch(/checksum mismatch/);
    }
  });

  it('processes provisioning keys at the same time lose none and agree on a shared label', async () => {
    const dir = freshDir();
    const writer = fileURLToPath(new URL('../../fixtures/emulator-writer.ts', import.meta.url));
    const procs = ['a', 'b', 'c', 'd'].map(
      (prefix) =>
        new Promise<string>((resolve, reject) => {
          execFile(process.execPath, ['--import', 'tsx', writer, dir, prefix, '8'], (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout)));
        }),
    );
    const probes = await Promise.all(procs);
    expect(new Set(probes).size).toBe(1);
    const t = open(dir);
    for (const prefix of ['a', 'b', 'c', 'd']) for (let i = 0; i < 8; i++) expect(t.findKey(`${prefix}-${i}`)).not.toBeNull();
    expect(Buffer.from(t.encryptGcm(t.findKey('shared')!, new Uint8Array(12), new Uint8Array(0), Buffer.from('probe'))).toString('hex')).toBe(probes[0]);
    expect(fs.existsSync(`${path.join(dir, EMULATOR_STORE_FILE)}.lock`)).toBe(false);
  }, 60_000);

  it('breaks a store lock left by a dead process', () => {
    const dir = freshDir();
    open(dir);
    fs.writeFileSync(`${path.join(dir, EMULATOR_STORE_FILE)}.lock`, '999999 0 stale');
    expect(open(dir).generateAesKey('after-crash')).toBeTypeOf('number');
  });

  it('instances see each other: a key destroyed in one is gone in the other', () => {
    const dir = freshDir();
    const a = open(dir, 0);
    const b = open(dir, 0);
    const ka = a.generateAesKey('k');
    const kb = b.findKey('k')!;
    const iv = new Uint8Array(12);
    const ct = a.encryptGcm(ka, iv, new Uint8Array(0), Buffer.from('gone'));
    expect(Buffer.from(b.decryptGcm(kb, iv, new Uint8Array(0), ct)).toString()).toBe('gone');
    a.destroyAllKeys();
    expect(ckrOf(() => b.decryptGcm(kb, iv, new Uint8Array(0), ct))).toBe('CKR_OBJECT_HANDLE_INVALID');
    expect(b.findKey('k')).toBeNull();
  });

  it('objects another instance destroyed do not stay decoded here (one module per partition on one store)', () => {
    const dir = freshDir();
    const ea = openVaultToken(dir, 'emulator', { emulator: { ...fast, revalidateMs: 0 } });
    const eb = openVaultToken(dir, 'emulator', { emulator: { ...fast, revalidateMs: 0 } });
    const a = new Pkcs11Token({ module: ea.module, label: ea.label, userPin: ea.userPin, exclusive: ea.exclusive });
    const b = new Pkcs11Token({ module: eb.module, label: eb.label, userPin: eb.userPin, exclusive: eb.exclusive });
    const cacheOf = (m: unknown) => (m as EmulatorModule).decodedCacheSize();
    b.writeData('nv-b', Buffer.from('b'));
    const sizes: number[] = [];
    for (let i = 0; i < 200; i++) {
      a.writeData('nv-a', Buffer.from(`a${i}`)); // destroy + create: a new object each time
      expect(Buffer.from(b.readData('nv-a')[0]!).toString()).toBe(`a${i}`);
      expect(Buffer.from(b.readData('nv-b')[0]!).toString()).toBe('b');
      sizes.push(cacheOf(eb.module));
    }
    expect(ea.module).toBeInstanceOf(EmulatorModule);
    // b decodes a's current object each round; the ones a destroyed are forgotten.
    expect(Math.max(...sizes.slice(10))).toBeLessThanOrEqual(sizes[9]! + 1);
    expect(sizes.at(-1)!).toBeLessThan(10);
  });

  it('a data folder keeps its token kind; token.json names the token and holds no PIN', () => {
    const dir = freshDir();
    settleTokenConfig(dir, 'emulator');
    expect(() => settleTokenConfig(dir, 'softhsm')).toThrow(/created with the emulator token/);
    const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'token.json'), 'utf8')) as Record<string, unknown>;
    expect(cfg).toEqual({ format: 'backup-key-vault token', version: 2, kind: 'emulator', label: expect.stringMatching(/^bkv-[0-9a-f]{12}$/) });
  });
});
