/**
 * hsm/file-token.ts: AES-GCM round trip and tag failure, HMAC checked against node:crypto by
 * behaviour only (the key never leaves the token), persistence across instances, concurrent
 * provisioning of one label, and zeroization.
 */
import { createCipheriv, createHash, createHmac, randomBytes } from 'node:crypto';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { TokenError } from '../enclave/token.ts';
import { FileToken } from '../hsm/file-token.ts';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'bkv-token-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
let n = 0;
const fresh = () => path.join(root, `token-${n++}.bin`);
const bytes = (s: string) => new TextEncoder().encode(s);

/** A token file in the format documented in hsm/file-token.ts. */
function tokenFile(objects: { label: string; kind: number; value: Buffer }[]): Buffer {
  const u16 = (v: number) => Buffer.from([v >> 8, v & 0xff]);
  const parts: Buffer[] = [Buffer.from('BKVTOKN1'), Buffer.from([0, 0, 0, objects.length])];
  for (const o of objects) {
    const label = Buffer.from(o.label);
    parts.push(randomBytes(16), Buffer.from([o.kind]), u16(label.length), label, u16(o.value.length), o.value);
  }
  const body = Buffer.concat(parts);
  return Buffer.concat([body, createHash('sha256').update(body).digest()]);
}

function ckrOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(TokenError);
    return (e as TokenError).ckr;
  }
  throw new Error('expected a TokenError');
}

describe('FileToken', () => {
  it('AES-GCM: round trip; ciphertext is plaintext length + 16; any change fails the tag', () => {
    const t = new FileToken(fresh());
    const k = t.generateAesKey('seal');
    const iv = t.random(12);
    const ct = t.encryptGcm(k, iv, bytes('record 7'), bytes('secret payload'));
    expect(ct.length).toBe(14 + 16);
    expect(t.decryptGcm(k, iv, bytes('record 7'), ct)).toEqual(bytes('secret payload'));
    const flipped = ct.slice();
    flipped[0]! ^= 1;
    expect(ckrOf(() => t.decryptGcm(k, iv, bytes('record 7'), flipped))).toBe('CKR_ENCRYPTED_DATA_INVALID');
    expect(ckrOf(() => t.decryptGcm(k, iv, bytes('record 8'), ct))).toBe('CKR_ENCRYPTED_DATA_INVALID');
    const otherIv = iv.slice();
    otherIv[11]! ^= 1;
    expect(ckrOf(() => t.decryptGcm(k, otherIv, bytes('record 7'), ct))).toBe('CKR_ENCRYPTED_DATA_INVALID');
    expect(ckrOf(() => t.decryptGcm(k, iv, bytes('record 7'), ct.subarray(0, 10)))).toBe('CKR_ENCRYPTED_DATA_LEN_RANGE');
    expect(ckrOf(() => t.encryptGcm(k, new Uint8Array(16), new Uint8Array(0), bytes('x')))).toBe('CKR_MECHANISM_PARAM_INVALID');
  });

  it('known answer: a token file holding a known key gives node:crypto AES-256-GCM and HMAC outputs', () => {
    // The key goes in through the token's file format (there is no import call and no getter),
    // and is checked only through what the token computes with it.
    const file = fresh();
    const aesKey = Buffer.alloc(32, 0x42);
    const macKey = Buffer.alloc(131, 0xaa); // RFC 4231 test cases 6 and 7
    fs.writeFileSync(file, tokenFile([
      { label: 'aes', kind: 1, value: aesKey },
      { label: 'mac', kind: 2, value: macKey },
    ]));
    const t = new FileToken(file);
    const iv = Buffer.alloc(12, 7);
    const c = createCipheriv('aes-256-gcm', aesKey, iv);
    c.setAAD(bytes('aad'));
    const expected = Buffer.concat([c.update(bytes('plaintext')), c.final(), c.getAuthTag()]);
    expect(Buffer.from(t.encryptGcm(t.findKey('aes')!, iv, bytes('aad'), bytes('plaintext')))).toEqual(expected);
    expect(t.decryptGcm(t.findKey('aes')!, iv, bytes('aad'), expected)).toEqual(bytes('plaintext'));
    const data = bytes('Test Using Larger Than Block-Size Key - Hash Key First');
    const mac = t.findKey('mac')!;
    expect(Buffer.from(t.hmac(mac, 'SHA-256', data)).toString('hex')).toBe(
      '60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54',
    );
    expect(Buffer.from(t.hmac(mac, 'SHA-256', data))).toEqual(createHmac('sha256', macKey).update(data).digest());
    expect(Buffer.from(t.hmac(mac, 'SHA-512', data))).toEqual(createHmac('sha512', macKey).update(data).digest());
  });

  it('HMAC keys it generates behave as HMAC: deterministic, key and data dependent, stable across instances', () => {
    const t = new FileToken(fresh());
    const k = t.generateHmacKey('mac', 64);
    const data = bytes('message to authenticate');
    const m256 = t.hmac(k, 'SHA-256', data);
    const m512 = t.hmac(k, 'SHA-512', data);
    expect([m256.length, m512.length]).toEqual([32, 64]);
    expect(t.hmac(k, 'SHA-256', data)).toEqual(m256);
    expect(t.hmac(k, 'SHA-256', bytes('other'))).not.toEqual(m256);
    expect(t.hmac(t.generateHmacKey('mac2', 64), 'SHA-256', data)).not.toEqual(m256);
    const again = new FileToken(t.file);
    expect(again.hmac(again.findKey('mac')!, 'SHA-512', data)).toEqual(m512);
  });

  it('refuses misuse with PKCS#11 codes', () => {
    const t = new FileToken(fresh());
    const aes = t.generateAesKey('aes');
    const mac = t.generateHmacKey('mac', 32);
    expect(ckrOf(() => t.hmac(aes, 'SHA-256', bytes('x')))).toBe('CKR_KEY_TYPE_INCONSISTENT');
    expect(ckrOf(() => t.encryptGcm(mac, new Uint8Array(12), new Uint8Array(0), bytes('x')))).toBe('CKR_KEY_TYPE_INCONSISTENT');
    expect(ckrOf(() => t.hmac(mac, 'SHA-512', bytes('x')))).toBe('CKR_KEY_SIZE_RANGE'); // SoftHSM2: key below digest length
    expect(ckrOf(() => t.hmac(999, 'SHA-256', bytes('x')))).toBe('CKR_KEY_HANDLE_INVALID');
    expect(ckrOf(() => t.generateHmacKey('short', 8))).toBe('CKR_KEY_SIZE_RANGE');
    expect(ckrOf(() => t.generateAesKey(''))).toBe('CKR_ATTRIBUTE_VALUE_INVALID');
    expect(ckrOf(() => t.generateHmacKey('aes', 32))).toBe('CKR_TEMPLATE_INCONSISTENT');
    expect(t.random(0).length).toBe(0);
    expect(t.random(33).length).toBe(33);
    expect(t.random(32)).not.toEqual(t.random(32));
  });

  it('keys persist across instances; generating an existing label returns that key', () => {
    const file = fresh();
    const a = new FileToken(file);
    expect(a.findKey('k')).toBeNull();
    const k = a.generateAesKey('k');
    expect(a.generateAesKey('k')).toBe(k);
    expect(a.findKey('k')).toBe(k);
    const iv = new Uint8Array(12);
    const ct = a.encryptGcm(k, iv, new Uint8Array(0), bytes('persist'));
    const b = new FileToken(file);
    const kb = b.findKey('k');
    expect(kb).not.toBeNull();
    expect(b.decryptGcm(kb!, iv, new Uint8Array(0), ct)).toEqual(bytes('persist'));
  });

  it('instances on one file see each other’s keys; generating a label that exists returns that key', () => {
    const file = fresh();
    const tokens = Array.from({ length: 3 }, () => new FileToken(file, { revalidateMs: 0 }));
    const handles = tokens.map((t) => t.generateAesKey('shared'));
    const iv = new Uint8Array(12);
    const cts = tokens.map((t, i) => Buffer.from(t.encryptGcm(handles[i]!, iv, new Uint8Array(0), bytes('x'))).toString('hex'));
    expect(new Set(cts).size).toBe(1);
    expect(fs.existsSync(`${file}.lock`)).toBe(false);
  });

  it('processes generating keys at the same time lose none and agree on a shared label', async () => {
    const file = fresh();
    const writer = fileURLToPath(new URL('./fixtures/token-writer.ts', import.meta.url));
    const procs = ['a', 'b', 'c', 'd'].map((prefix) =>
      new Promise<string>((resolve, reject) => {
        execFile(process.execPath, ['--import', 'tsx', writer, file, prefix, '15'], (err, stdout) =>
          err ? reject(err) : resolve(stdout),
        );
      }),
    );
    const probes = await Promise.all(procs);
    expect(new Set(probes).size).toBe(1);
    const t = new FileToken(file);
    for (const prefix of ['a', 'b', 'c', 'd']) for (let i = 0; i < 15; i++) expect(t.findKey(`${prefix}-${i}`)).not.toBeNull();
    expect(Buffer.from(t.encryptGcm(t.findKey('shared')!, new Uint8Array(12), new Uint8Array(0), bytes('probe'))).toString('hex')).toBe(probes[0]);
    expect(fs.existsSync(`${file}.lock`)).toBe(false);
  });

  it('breaks a lock left by a dead process', () => {
    const file = fresh();
    fs.writeFileSync(`${file}.lock`, '999999 0 stale');
    const t = new FileToken(file, { lockTimeoutMs: 2000 });
    expect(t.generateAesKey('after-crash')).toBeTypeOf('number');
  });

  it('destroyAllKeys zeroizes: handles die in this and other instances, the file is gone', () => {
    const file = fresh();
    const a = new FileToken(file);
    const b = new FileToken(file, { revalidateMs: 0 });
    const ka = a.generateAesKey('k');
    const kb = b.findKey('k')!;
    const iv = new Uint8Array(12);
    const ct = a.encryptGcm(ka, iv, new Uint8Array(0), bytes('gone'));
    a.destroyAllKeys();
    expect(fs.existsSync(file)).toBe(false);
    expect(ckrOf(() => a.decryptGcm(ka, iv, new Uint8Array(0), ct))).toBe('CKR_KEY_HANDLE_INVALID');
    expect(ckrOf(() => b.decryptGcm(kb, iv, new Uint8Array(0), ct))).toBe('CKR_KEY_HANDLE_INVALID');
    expect(a.findKey('k')).toBeNull();
    // A new key under the same label is a new object with a new handle, not the old key.
    const k2 = a.generateAesKey('k');
    expect(k2).not.toBe(ka);
    expect(ckrOf(() => a.decryptGcm(k2, iv, new Uint8Array(0), ct))).toBe('CKR_ENCRYPTED_DATA_INVALID');
    expect(new FileToken(file).findKey('k')).not.toBeNull();
  });

  it('a corrupt token file is a clear CKR_DEVICE_ERROR', () => {
    const file = fresh();
    new FileToken(file).generateAesKey('k');
    const raw = fs.readFileSync(file);
    raw[20]! ^= 1;
    fs.writeFileSync(file, raw);
    try {
      new FileToken(file);
      expect.unreachable();
    } catch (e) {
      expect((e as TokenError).ckr).toBe('CKR_DEVICE_ERROR');
      expect((e as { detail?: string }).detail).toMatch(/checksum mismatch/);
    }
  });
});
