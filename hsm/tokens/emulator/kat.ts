/**
 * Power-on known-answer self-tests of the emulator token (FIPS 140-3 §7.10.2 style), run by
 * C_Initialize before anything is served; a failure makes C_Initialize answer
 * CKR_FIPS_SELF_TEST_FAILED and the module stays unusable. SoftHSM2 has no such tests.
 *   aes-256-gcm      McGrew-Viega GCM spec, test case 14 (K = 0^256, IV = 0^96, P = 0^128)
 *   aes-kw           RFC 3394 §4.6 (256-bit KEK wrapping 256 bits of key data)
 *   aes-kwp          RFC 5649 §6 (192-bit KEK, 20-octet and 7-octet key data)
 *   hmac-sha256/512  RFC 4231 §4.3 test case 2
 *   ecdh-p256        x(d·Q) against a value computed with @noble/curves (an independent
 *                    implementation): d = SHA-256("bkv emulator ECDH KAT: private key") mod n,
 *                    Q = (SHA-256("bkv emulator ECDH KAT: peer key") mod n)·G
 *   drbg             continuous test: two successive 32-byte outputs differ
 * `fault` (tests only) makes the named test fail, to exercise the failure path.
 */
import { aesUnwrap, aesWrap, ctEqual, ecdh, gcmDecrypt, gcmEncrypt, hmac, randomBytes } from './mechanisms.ts';

const h = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');

type Kat = () => boolean;

const KATS: Record<string, Kat> = {
  'aes-256-gcm': () => {
    const out = gcmEncrypt(Buffer.alloc(32), Buffer.alloc(12), Buffer.alloc(0), Buffer.alloc(16), 16);
    const expect = h('cea7403d4d606b6e074ec5d3baf39d18 d0d1c8a799996bf0265b98b5d48ab919');
    const back = gcmDecrypt(Buffer.alloc(32), Buffer.alloc(12), Buffer.alloc(0), out, 16);
    return ctEqual(out, expect) && back !== null && ctEqual(back, Buffer.alloc(16));
  },
  'aes-kw': () => {
    const kek = h('000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F');
    const data = h('00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F');
    const expect = h('28C9F404C4B810F4CBCCB35CFB87F8263F5786E2D80ED326CBC7F0E71A99F43BFB988B9B7A02DD21');
    const w = aesWrap(kek, data, false);
    const back = aesUnwrap(kek, w, false);
    return ctEqual(w, expect) && back !== null && ctEqual(back, data);
  },
  'aes-kwp': () => {
    const kek = h('5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8');
    const a = aesWrap(kek, h('c37b7e6492584340bed12207808941155068f738'), true);
    const b = aesWrap(kek, h('466f7250617369'), true);
    return ctEqual(a, h('138bdeaa9b8fa7fc61f97742e72248ee5ae6ae5360d1ae6a5f54f373fa543b6a')) && ctEqual(b, h('afbeb0f07dfbf5419200f2ccb50bb24f'));
  },
  'hmac-sha256': () =>
    ctEqual(
      hmac('sha256', Buffer.from('Jefe'), [Buffer.from('what do ya want for nothing?')]),
      h('5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843'),
    ),
  'hmac-sha512': () =>
    ctEqual(
      hmac('sha512', Buffer.from('Jefe'), [Buffer.from('what do ya want for nothing?')]),
      h(
        '164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554' +
          '9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737',
      ),
    ),
  'ecdh-p256': () =>
    ctEqual(
      ecdh(
        h('84b03449e7509b377d472371c145e2d3d3d253b57217e6e48d755f25ffb4455e'),
        h(
          '04cea87a1a5edcc9e5e22a2ff1654957d931b6d42b006b17ab5096ce3323385b4b' +
            'c6547f2a42c4d91fcc79be5070501d0dfe883c307520ea1fd17cc544acce2437',
        ),
      ),
      h('84a5fbbc3bf63ea25f02cf72346dad66df16be84e74a534e47795ecad1510ae6'),
    ),
  drbg: () => !ctEqual(randomBytes(32), randomBytes(32)),
};

export const SELF_TESTS = Object.keys(KATS);

export interface SelfTestReport {
  ok: boolean;
  failed: string[];
}

export function runSelfTests(fault?: string): SelfTestReport {
  const failed: string[] = [];
  for (const [name, kat] of Object.entries(KATS)) {
    let ok: boolean;
    try {
      ok = kat();
    } catch {
      ok = false;
    }
    if (!ok || name === fault) failed.push(name);
  }
  return { ok: failed.length === 0, failed };
}
