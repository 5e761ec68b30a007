/**
 * Known-answer self-tests run at every start, before the enclave serves anything (FIPS 140-3
 * style power-on self-tests). Until all pass, every request is refused with SelfTestFailed.
 *   HMAC-SHA256    RFC 4231 §4.3 test case 2
 *   HKDF-SHA256    RFC 5869 Appendix A.1
 *   AES-256-GCM    McGrew-Viega GCM spec test case 14 (the enclave's release wrapping)
 *   OPRF           RFC 9497 Appendix A.1.1 (ristretto255-SHA512, mode 0, vector 1): HashToGroup,
 *                  Blind and BlindEvaluate on the server backend
 *   token          a round trip under the sealing key, and a flipped bit refused: AES-GCM
 *                  (gcm-ecdh profile) or AES-CTR + HMAC-SHA256 (ctr-hmac, vault/seal-ctr-hmac.ts)
 */
import { fromHex, ctEqual, utf8, concat } from './opaque/bytes.ts';
import { hkdfExpand, hkdfExtract } from './opaque/hash.ts';
import type { HashPrimitives } from './opaque/hash.ts';
import type { Suite } from './opaque/suite.ts';
import type { Token } from './token.ts';
import type { SealKey } from './vault/record.ts';
import { ctrHmacDecrypt, ctrHmacEncrypt } from './vault/seal-ctr-hmac.ts';

export interface SelfTestResult {
  ok: boolean;
  failed: string[];
}

async function aesGcmKat(): Promise<boolean> {
  const key = await crypto.subtle.importKey('raw', new Uint8Array(32), 'AES-GCM', false, ['encrypt']);
  const out = new Uint8Array(await crypto.subtle.encrypt({ name: 'AES-GCM', iv: new Uint8Array(12) }, key, new Uint8Array(16)));
  return ctEqual(out, fromHex('cea7403d4d606b6e074ec5d3baf39d18d0d1c8a799996bf0265b98b5d48ab919'));
}

function hmacKat(h: HashPrimitives): boolean {
  const mac = h.hmac(utf8('Jefe'), utf8('what do ya want for nothing?'));
  return ctEqual(mac, fromHex('5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843'));
}

function hkdfKat(h: HashPrimitives): boolean {
  const prk = hkdfExtract(h, fromHex('000102030405060708090a0b0c'), new Uint8Array(22).fill(0x0b));
  const okm = hkdfExpand(h, prk, fromHex('f0f1f2f3f4f5f6f7f8f9'), 42);
  return ctEqual(okm, fromHex('3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865'));
}

function oprfKat(s: Suite): boolean {
  const dst = concat(utf8('HashToGroup-'), s.oprfContextString);
  const p = s.group.hashToGroup(Uint8Array.of(0), dst);
  const blinded = s.group.scalarMult(fromHex('64d37aed22a27f5191de1c1d69fadb899d8862b58eb4220029e036ec4c1f6706'), p, 'kat');
  const evaluated = s.group.scalarMult(fromHex('5ebcea5ee37023ccb9fc2d2019f9d7737be85591ae8652ffa9ef0f4d37063b0e'), blinded, 'kat');
  return (
    ctEqual(blinded, fromHex('609a0ae68c15a3cf6903766461307e5c8bb2f95e7e6550e1ffa2dc99e412803c')) &&
    ctEqual(evaluated, fromHex('7ec6578ae5120958eb2db1745758ff379e77cb64fe77b0b2d8cc917ea0869c7e'))
  );
}

function tokenKat(token: Token, key: SealKey): boolean {
  const iv = token.random(12);
  const pt = utf8('bkv self-test');
  const aad = utf8('aad');
  if (typeof key !== 'number') {
    const ct = ctrHmacEncrypt(token, key, iv, aad, pt);
    const back = ctrHmacDecrypt(token, key, iv, aad, ct);
    if (!back || !ctEqual(back, pt)) return false;
    ct[0]! ^= 1;
    return ctrHmacDecrypt(token, key, iv, aad, ct) === null;
  }
  const ct = token.encryptGcm(key, iv, aad, pt);
  if (!ctEqual(token.decryptGcm(key, iv, aad, ct), pt)) return false;
  ct[0]! ^= 1;
  try {
    token.decryptGcm(key, iv, aad, ct);
    return false;
  } catch {
    return true;
  }
}

export async function runSelfTests(sha256: HashPrimitives, ristretto: Suite, token: Token, sealKey: SealKey): Promise<SelfTestResult> {
  const failed: string[] = [];
  const run = async (name: string, f: () => boolean | Promise<boolean>) => {
    try {
      if (!(await f())) failed.push(name);
    } catch {
      failed.push(name);
    }
  };
  await run('hmac-sha256', () => hmacKat(sha256));
  await run('hkdf-sha256', () => hkdfKat(sha256));
  await run('aes-256-gcm', aesGcmKat);
  await run('oprf-ristretto255', () => oprfKat(ristretto));
  await run(typeof sealKey === 'number' ? 'token-aes-gcm' : 'token-ctr-hmac', () => tokenKat(token, sealKey));
  return { ok: failed.length === 0, failed };
}
