/**
 * The issuer token check (enclave/api/auth-verify.ts) parses the compact JWS itself and checks the
 * Ed25519 signature on native libsodium; before, `jose` did both. This test holds it to jose:
 * over signed tokens with random headers and claims, and random edits of valid tokens, every token
 * the check accepts, jose's `jwtVerify` (EdDSA, the issuer, the audience, the same clock and
 * tolerance) accepts too, for the same subject. The check is stricter than jose on purpose
 * (canonical base64url, a header of alg/kid/typ only, small-order keys and R, the lifetime and
 * jti rules of enclave/api/auth.ts), so the converse is not asked; the generator makes sure both
 * accept a share of what it draws, so the property is never vacuous.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { randomBytes } from 'node:crypto';
import { ed25519 } from '@noble/curves/ed25519.js';
import { importJWK, jwtVerify } from 'jose';
import { TokenVerifier } from '../../../enclave/api/auth-verify.ts';
import { CLOCK_SKEW_S, base64url, issuerKid } from '../../../enclave/api/auth.ts';
import type { AuthConfig } from '../../../enclave/api/auth.ts';

const te = new TextEncoder();
const seed = new Uint8Array(randomBytes(32));
const A = ed25519.getPublicKey(seed);
const ISS = 'issuer-1';
const AUD = 'vault-a';
const config: AuthConfig = { audience: AUD, issuers: [{ name: ISS, publicKey: A }] };
const NOW_MS = 1_800_000_000_000;
const nowS = NOW_MS / 1000;
const part = (v: unknown) => base64url(te.encode(typeof v === 'string' ? v : JSON.stringify(v)));
const sign = (h: unknown, p: unknown) => {
  const input = `${part(h)}.${part(p)}`;
  return `${input}.${base64url(ed25519.sign(te.encode(input), seed))}`;
};

const joseKey = await importJWK({ kty: 'OKP', crv: 'Ed25519', x: base64url(A) }, 'EdDSA');
async function joseAccepts(token: string, sub: string): Promise<boolean> {
  try {
    const { payload } = await jwtVerify(token, joseKey, { algorithms: ['EdDSA'], issuer: ISS, audience: AUD, currentDate: new Date(NOW_MS), clockTolerance: CLOCK_SKEW_S });
    return payload.sub === sub;
  } catch {
    return false;
  }
}

/** Mostly `good` (so that a share of the tokens is valid), else anything `bad` draws. */
const mostly = <T>(good: T, bad: fc.Arbitrary<T>) => fc.oneof({ arbitrary: fc.constant(good), weight: 6 }, { arbitrary: bad, weight: 1 });
const header = fc.record({
  alg: mostly('EdDSA', fc.constantFrom('ES256', 'none', 'eddsa')),
  kid: mostly(issuerKid(A), fc.constantFrom('other', '')),
  typ: mostly<string | undefined>('JWT', fc.constantFrom(undefined, 'jwt', 'JOSE')),
  crit: mostly<string[] | undefined>(undefined, fc.constant(['exp'])),
  x: mostly<number | undefined>(undefined, fc.integer()),
});
const around = (t: number) => fc.integer({ min: t - 7200, max: t + 7200 });
const claims = fc.record({
  iss: mostly(ISS, fc.constant('other')),
  aud: mostly<string | string[]>(AUD, fc.constantFrom<string | string[]>([AUD], 'other', [AUD, 'x'])),
  sub: mostly('alice', fc.constantFrom('bob', '', 'ALICE')),
  iat: mostly(nowS, around(nowS)),
  nbf: mostly<number | undefined>(undefined, around(nowS)),
  exp: mostly(nowS + 600, around(nowS)),
  jti: mostly('j1', fc.string({ maxLength: 140 })),
});
/** A valid token with one character replaced, dropped or inserted. */
const edited = fc.tuple(fc.nat(), fc.constantFrom('replace', 'drop', 'insert'), fc.constantFrom(...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ '.split(''))).map(([i, how, ch]) => {
  const t = sign({ alg: 'EdDSA', kid: issuerKid(A), typ: 'JWT' }, { iss: ISS, aud: AUD, sub: 'alice', iat: nowS, exp: nowS + 600, jti: 'j1' });
  const k = i % t.length;
  return how === 'replace' ? t.slice(0, k) + ch + t.slice(k + 1) : how === 'drop' ? t.slice(0, k) + t.slice(k + 1) : t.slice(0, k) + ch + t.slice(k);
});

describe('the issuer token check against jose', () => {
  it('accepts nothing jose refuses (signed random headers and claims, edited tokens)', async () => {
    const v = await TokenVerifier.create(config);
    const seen = { both: 0, oursOnly: 0, joseOnly: 0, neither: 0 };
    await fc.assert(
      fc.asyncProperty(fc.oneof(fc.tuple(header, claims).map(([h, c]) => sign(JSON.parse(JSON.stringify(h)), JSON.parse(JSON.stringify(c)))), edited), async (token) => {
        let ours = true;
        try {
          await v.check(te.encode(token), te.encode('alice'), NOW_MS);
        } catch {
          ours = false;
        }
        const theirs = await joseAccepts(token, 'alice');
        seen[ours && theirs ? 'both' : ours ? 'oursOnly' : theirs ? 'joseOnly' : 'neither']++;
        expect(ours && !theirs, `accepted where jose refuses: ${token}`).toBe(false);
      }),
      { numRuns: 600, seed: 20261205 },
    );
    // both accept a share of the draws and both refuse a share: the property compared something
    expect(seen.both).toBeGreaterThan(30);
    expect(seen.neither).toBeGreaterThan(100);
    expect(seen.oursOnly).toBe(0);
  });
});
