/**
 * The issuer token's check (enclave/api/auth-verify.ts) on its own, on both signature backends:
 * native libsodium, and node:crypto with the library hidden (BKV_SODIUM_LIBRARY, as in
 * test/enclave/opaque/native.test.ts). Every token here is signed by the provisioned key unless the
 * case is about the signature, so each refusal is the one defect the case names; a valid token is
 * accepted first on each backend. The vault-level refusals (nothing charged, written or audited)
 * are in test/enclave/vault/auth.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { createPublicKey, randomBytes, verify as nodeVerify } from 'node:crypto';
import { ed25519 } from '@noble/curves/ed25519.js';
import { bytesToNumberLE, numberToBytesLE } from '@noble/curves/utils.js';
import { sha512 } from '@noble/hashes/sha2.js';
import { SMALL_ORDER_ENCODINGS, TokenVerifier } from '../../../enclave/api/auth-verify.ts';
import { CLOCK_SKEW_S, base64url, issuerKid } from '../../../enclave/api/auth.ts';
import type { AuthConfig } from '../../../enclave/api/auth.ts';
import { Handling } from '../../../enclave/api/codes.ts';
import { loadNativeEd25519 } from '../../../enclave/opaque/groups/sodium-native.ts';

const te = new TextEncoder();
const L = ed25519.Point.Fn.ORDER;
const B = ed25519.Point.BASE;
const native = await loadNativeEd25519();
const ci = process.env.CI === 'true';
const HIDDEN = { ...process.env, BKV_SODIUM_LIBRARY: '/nonexistent/libsodium.so.23' };

const seed = new Uint8Array(randomBytes(32));
const { scalar: a, pointBytes: A } = ed25519.utils.getExtendedPublicKey(seed);
const ISS = 'issuer-1';
const AUD = 'vault-a';
const config: AuthConfig = { audience: AUD, issuers: [{ name: ISS, publicKey: A }] };
const NOW_MS = 1_800_000_000_000;
const nowS = NOW_MS / 1000;
const rid = te.encode('alice');

const claims = (over: Record<string, unknown> = {}) => ({ iss: ISS, aud: AUD, sub: 'alice', iat: nowS, exp: nowS + 600, jti: 'j1', ...over });
const header = (over: Record<string, unknown> = {}) => ({ alg: 'EdDSA', kid: issuerKid(A), typ: 'JWT', ...over });
const part = (v: unknown) => base64url(te.encode(typeof v === 'string' ? v : JSON.stringify(v)));

/** `h.p.signature`, signed by the issuer over `h.p` (or by `sig`). */
function jws(h: unknown, p: unknown, sig: (input: Uint8Array) => Uint8Array = (m) => ed25519.sign(m, seed)): string {
  const input = `${part(h)}.${part(p)}`;
  return `${input}.${base64url(sig(te.encode(input)))}`;
}
const token = (over: Record<string, unknown> = {}, h: Record<string, unknown> = {}) => jws(header(h), claims(over));

/** RFC 8032 §5.1.6's k = SHA-512(R || A || M) mod L. */
const challenge = (R: Uint8Array, pk: Uint8Array, m: Uint8Array) => bytesToNumberLE(sha512(new Uint8Array([...R, ...pk, ...m]))) % L;

/** A signature whose R is the identity (small order): S = k·a, so [S]B - [k]A is the identity, R's point. */
function smallOrderR(m: Uint8Array): Uint8Array {
  const R = ed25519.Point.ZERO.toBytes();
  return new Uint8Array([...R, ...numberToBytesLE((challenge(R, A, m) * a) % L, 32)]);
}

/**
 * A token signed over a payload part of 4k+1 characters: claims whose encoding is 4k characters,
 * and one more that a lenient decoder drops.
 */
function fourKPlusOne(): string {
  let c = claims();
  for (let i = 0; part(c).length % 4 !== 0; i++) c = claims({ jti: `j${'x'.repeat(i)}` });
  const input = `${part(header())}.${part(c)}A`;
  expect(Buffer.from(input.split('.')[1]!, 'base64url')).toEqual(Buffer.from(te.encode(JSON.stringify(c))));
  return `${input}.${base64url(ed25519.sign(te.encode(input), seed))}`;
}

/** Replaces the last base64url character of `s`'s signature with one that decodes to the same bytes. */
function nonCanonicalTail(s: string): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  const last = alphabet.indexOf(s[s.length - 1]!);
  return s.slice(0, -1) + alphabet[last | 1];
}

async function refusal(v: TokenVerifier, t: string | Uint8Array, id = rid, nowMs = NOW_MS): Promise<number | 'accepted'> {
  try {
    await v.check(typeof t === 'string' ? te.encode(t) : t, id, nowMs);
    return 'accepted';
  } catch (e) {
    return (e as { code: number }).code;
  }
}

const backends: [string, Record<string, string | undefined> | undefined, boolean][] = [
  ['sodium-native', undefined, !native.ed25519 && !ci],
  ['node-crypto', HIDDEN, false],
];

describe.each(backends)('TokenVerifier on %s', (backend, env, skip) => {
  const make = (c: AuthConfig = config) => TokenVerifier.create(c, env);

  it.skipIf(skip)('runs on that backend and accepts a valid token', async () => {
    const v = await make();
    expect(v.backend).toBe(backend);
    expect(await refusal(v, token())).toBe('accepted');
    expect(await refusal(v, token({ aud: ['other', AUD], nbf: nowS - 10 }, { typ: undefined }))).toBe('accepted');
  });

  it.skipIf(skip)('refuses malformed compact serializations', async () => {
    const v = await make();
    // A token whose signature has a '-' or '_', so that its standard-alphabet spelling differs.
    let good = token();
    for (let i = 0; !/[-_]/.test(good.split('.')[2]!); i++) good = token({ jti: `j${i}` });
    const [h, p, s] = good.split('.') as [string, string, string];
    expect(await refusal(v, good)).toBe('accepted');
    const cases: [string, string | Uint8Array, number][] = [
      ['empty', new Uint8Array(0), Handling.AuthRequired],
      ['oversized (1,025 bytes, otherwise valid)', token({ pad: 'x'.repeat(1025) }), Handling.AuthInvalid],
      ['not UTF-8', Uint8Array.of(0xff, 0xfe, 0x2e), Handling.AuthInvalid],
      ['two parts', `${h}.${p}`, Handling.AuthInvalid],
      ['four parts', `${good}.${s}`, Handling.AuthInvalid],
      ['an empty header', `.${p}.${s}`, Handling.AuthInvalid],
      ['padding on the signature', `${good}==`, Handling.AuthInvalid],
      ['a space in the payload', `${h}.${p.slice(0, 8)} ${p.slice(8)}.${s}`, Handling.AuthInvalid],
      ['standard base64 characters (+ /)', `${h}.${p}.${s.replace(/-/g, '+').replace(/_/g, '/')}`, Handling.AuthInvalid],
      ['a payload of impossible length (4k+1 characters), signed', fourKPlusOne(), Handling.AuthInvalid],
      ['header not JSON', `${part('{alg:EdDSA}')}.${p}.${s}`, Handling.AuthInvalid],
    ];
    for (const [what, t, code] of cases) expect(await refusal(v, t), what).toBe(code);
  });

  it.skipIf(skip)('refuses a non-canonical base64url encoding of the right bytes', async () => {
    const v = await make();
    const good = token({ jti: 'canonical' });
    const bad = nonCanonicalTail(good);
    // A lenient decoder reads the same signature from both texts.
    const sigOf = (t: string) => Buffer.from(t.split('.')[2]!, 'base64url');
    expect(bad).not.toBe(good);
    expect(sigOf(bad)).toEqual(sigOf(good));
    expect(await refusal(v, bad)).toBe(Handling.AuthInvalid);
    expect(await refusal(v, good)).toBe('accepted');
  });

  it.skipIf(skip)('refuses a header other than alg EdDSA, a provisioned kid and typ JWT', async () => {
    const v = await make();
    const cases: [string, Record<string, unknown>][] = [
      ['alg none', { alg: 'none' }],
      ['alg ES256', { alg: 'ES256' }],
      ['alg in lower case', { alg: 'eddsa' }],
      ['no alg', { alg: undefined }],
      ['unknown kid', { kid: issuerKid(ed25519.getPublicKey(ed25519.utils.randomSecretKey())) }],
      ['no kid', { kid: undefined }],
      ['kid not a string', { kid: 7 }],
      ['typ other than JWT', { typ: 'at+jwt' }],
      ['crit', { crit: ['exp'] }],
      ['b64 false', { b64: false, crit: ['b64'] }],
      ['an extra member', { jku: 'https://attacker.example/keys' }],
    ];
    for (const [what, h] of cases) expect(await refusal(v, token({}, h)), what).toBe(Handling.AuthInvalid);
    expect(await refusal(v, jws(['EdDSA'], claims())), 'header an array').toBe(Handling.AuthInvalid);
  });

  it.skipIf(skip)('refuses signatures that do not verify, or verify only under a lax rule', async () => {
    const v = await make();
    const good = token();
    const [h, p, s] = good.split('.') as [string, string, string];
    const sig = Buffer.from(s, 'base64url');
    const withSig = (b: Uint8Array) => `${h}.${p}.${base64url(b)}`;
    const flipped = Uint8Array.from(sig);
    flipped[10]! ^= 1;
    // S + L: the same scalar mod L, not canonical (RFC 8032 §5.1.7 requires S < L).
    const sPlusL = new Uint8Array([...sig.subarray(0, 32), ...numberToBytesLE(bytesToNumberLE(sig.subarray(32)) + L, 32)]);
    const rogue = ed25519.utils.randomSecretKey();
    const cases: [string, string][] = [
      ['a flipped bit', withSig(flipped)],
      ['63 bytes', withSig(sig.subarray(0, 63))],
      ['65 bytes', withSig(new Uint8Array([...sig, 0]))],
      ['non-canonical S (S + L)', withSig(sPlusL)],
      ['another key under the issuer kid', jws(header(), claims(), (m) => ed25519.sign(m, rogue))],
      ['the signature of another token', `${h}.${part(claims({ sub: 'bob' }))}.${s}`],
      ['R of small order (valid under the cofactorless equation)', jws(header(), claims(), smallOrderR)],
    ];
    for (const [what, t] of cases) expect(await refusal(v, t), what).toBe(Handling.AuthInvalid);
    expect(await refusal(v, good)).toBe('accepted');
  });

  it.skipIf(skip)('refuses every token under an issuer key of small order, which OpenSSL would let anyone forge', async () => {
    const identity = ed25519.Point.ZERO.toBytes();
    const v = await make({ audience: AUD, issuers: [{ name: ISS, publicKey: identity }] });
    // With A the identity, [S]B - [k]A = [S]B: any S and R = [S]B is a "signature" of anything.
    const S = bytesToNumberLE(randomBytes(32)) % L;
    const forge = () => new Uint8Array([...B.multiply(S).toBytes(), ...numberToBytesLE(S, 32)]);
    const forged = jws(header({ kid: issuerKid(identity) }), claims(), forge);
    const [h, p, s] = forged.split('.') as [string, string, string];
    const jwkKey = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: base64url(identity) }, format: 'jwk' });
    expect(nodeVerify(null, te.encode(`${h}.${p}`), jwkKey, Buffer.from(s, 'base64url'))).toBe(true);
    expect(await refusal(v, forged)).toBe(Handling.AuthInvalid);
  });

  it.skipIf(skip)('refuses claims outside the rules, each with its fault', async () => {
    const v = await make();
    const cases: [string, string, number][] = [
      ['wrong issuer name', token({ iss: 'someone-else' }), Handling.AuthInvalid],
      ['wrong audience', token({ aud: 'vault-b' }), Handling.AuthWrongAudience],
      ['audience array without ours', token({ aud: ['vault-b'] }), Handling.AuthWrongAudience],
      ['wrong subject', token({ sub: 'bob' }), Handling.AuthWrongSubject],
      ['empty subject', token({ sub: '' }), Handling.AuthInvalid],
      ['expired (past exp and the skew)', token({ iat: nowS - 700, exp: nowS - CLOCK_SKEW_S }), Handling.AuthExpired],
      ['issued in the future', token({ iat: nowS + CLOCK_SKEW_S + 1, exp: nowS + 600 }), Handling.AuthInvalid],
      ['not yet valid (nbf)', token({ nbf: nowS + CLOCK_SKEW_S + 1 }), Handling.AuthInvalid],
      ['nbf not an integer', token({ nbf: '0' }), Handling.AuthInvalid],
      ['lifetime over an hour', token({ exp: nowS + 3601 }), Handling.AuthInvalid],
      ['exp not after iat', token({ exp: nowS }), Handling.AuthInvalid],
      ['iat not an integer', token({ iat: nowS + 0.5 }), Handling.AuthInvalid],
      ['no exp', token({ exp: undefined }), Handling.AuthInvalid],
      ['no jti', token({ jti: undefined }), Handling.AuthInvalid],
      ['jti over 128 characters', token({ jti: 'j'.repeat(129) }), Handling.AuthInvalid],
      ['claims an array', jws(header(), ['alice']), Handling.AuthInvalid],
      ['claims not JSON', jws(header(), 'alice'), Handling.AuthInvalid],
    ];
    for (const [what, t, code] of cases) expect(await refusal(v, t), what).toBe(code);
    expect(await refusal(v, token({ iat: nowS - 700, exp: nowS - CLOCK_SKEW_S + 1 })), 'inside the skew').toBe('accepted');
  });

  it.skipIf(skip)('compares the subject byte for byte with the record id, non-ASCII ids included, on a first check and a cache hit', async () => {
    const v = await make();
    const sub = 'élan-用户-\u{1f511}';
    const utf8 = te.encode(sub);
    const t = token({ sub });
    // The same characters as latin1 bytes, or the UTF-8 bytes one short or one changed, are other records.
    const latin1 = Uint8Array.from([...sub].map((c) => c.charCodeAt(0) & 0xff));
    const changed = Uint8Array.from(utf8);
    changed[changed.length - 1]! ^= 1;
    for (const other of [latin1, utf8.subarray(0, utf8.length - 1), changed]) expect(await refusal(v, t, other)).toBe(Handling.AuthWrongSubject);
    expect(await refusal(v, t, utf8)).toBe('accepted');
    for (const other of [latin1, utf8.subarray(0, utf8.length - 1), changed]) expect(await refusal(v, t, other), 'cache hit').toBe(Handling.AuthWrongSubject);
    expect(await refusal(v, t, Uint8Array.of(0xff, ...utf8, 0xff).subarray(1, utf8.length + 1)), 'cache hit, the id a view inside a larger buffer').toBe('accepted');
  });

  it.skipIf(skip)('a cached token is still checked for its subject and its expiry', async () => {
    const v = await make();
    const t = token({ exp: nowS + 60 });
    expect(await refusal(v, t)).toBe('accepted');
    expect(await refusal(v, t, te.encode('bob'))).toBe(Handling.AuthWrongSubject);
    expect(await refusal(v, t, rid, NOW_MS + (60 + CLOCK_SKEW_S) * 1000)).toBe(Handling.AuthExpired);
  });
});

describe('the signature backends', () => {
  it("the fallback's small-order list is the eight-torsion subgroup, canonically encoded", () => {
    // [L]P for points P until one has a component of order 8; its multiples are the subgroup.
    let T = ed25519.Point.ZERO;
    for (let y = 2; T.double().double().is0(); y++) {
      try {
        const P = ed25519.Point.fromBytes(Uint8Array.of(y, ...new Uint8Array(31)));
        T = P.multiplyUnsafe(L - 1n).add(P);
      } catch {
        continue;
      }
    }
    const subgroup = Array.from({ length: 8 }, (_, i) => (i === 0 ? ed25519.Point.ZERO : T.multiplyUnsafe(BigInt(i))).toHex());
    expect(new Set(subgroup).size).toBe(8);
    expect([...SMALL_ORDER_ENCODINGS].sort()).toEqual(subgroup.sort());
  });

  it.skipIf(!native.ed25519 && !ci)('native libsodium is the default where it loads', async () => {
    expect(native.ed25519, native.ed25519 ? '' : native.reason).not.toBeNull();
    expect((await TokenVerifier.create(config)).backend).toBe('sodium-native');
  });

  it('node:crypto alone accepts a small-order R, so the fallback has to check it', () => {
    const m = te.encode('message');
    const key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: base64url(A) }, format: 'jwk' });
    expect(nodeVerify(null, m, key, smallOrderR(m))).toBe(true);
    if (native.ed25519) expect(native.ed25519.verify(smallOrderR(m), m, A)).toBe(false);
  });
});
