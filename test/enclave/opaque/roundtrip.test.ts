/**
 * RFC 9807 end-to-end properties on every backend of allSuites(): registration (§5) then login
 * (§6) with random passwords, identities (§4), contexts (§6.4.2.1) and credential identifiers;
 * wrong passwords, mismatched identities/contexts and unknown users (§6.3.2.2 fake records) as
 * outcome values; server state transfer; KSF parameters (§2.3, §7) and an Argon2id round trip.
 */
import { randomBytes as nodeRandomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type RandomSource, utf8 } from '../../../enclave/opaque/bytes.ts';
import { type ClientOptions, clientLoginFinish, clientLoginStart, clientRegistrationFinish, clientRegistrationStart } from '../../../enclave/opaque/client.ts';
import { OpaqueError, OpaqueErrorCode } from '../../../enclave/opaque/errors.ts';
import { type Ksf, argon2idKsf, DEFAULT_ARGON2ID, encodeKsfParams, identityKsf, ksfFromParams } from '../../../enclave/opaque/ksf.ts';
import { messageLength } from '../../../enclave/opaque/encoding.ts';
import {
  type ServerKeys, generateFakeRecord, generateServerKeys, serverLoginFinish, serverLoginStart, serverLoginStateDecode,
  serverLoginStateEncode, serverRegistrationResponse,
} from '../../../enclave/opaque/server.ts';
import type { Suite } from '../../../enclave/opaque/suite.ts';
import { allSuites } from '../../helpers/suites.ts';

const suites = await allSuites();
const rng: RandomSource = (n) => new Uint8Array(nodeRandomBytes(n));
const runs = (name: string, fast: number, slow: number): number => (name.endsWith('/noble') ? slow : fast);

interface Ctx { suite: Suite; context: Uint8Array; client?: Uint8Array; server?: Uint8Array; ksf?: Ksf }
const copts = (c: Ctx): ClientOptions => ({ suite: c.suite, context: c.context, identities: { client: c.client, server: c.server }, ksf: c.ksf, rng });
const sopts = (c: Ctx) => ({ suite: c.suite, context: c.context, identities: { client: c.client, server: c.server }, rng });

async function register(c: Ctx, keys: ServerKeys, cid: Uint8Array, password: Uint8Array) {
  const reg = clientRegistrationStart(copts(c), password);
  const response = serverRegistrationResponse(sopts(c), keys, reg.request, cid);
  return clientRegistrationFinish(copts(c), reg.state, password, response);
}

async function login(client: Ctx, server: Ctx, keys: ServerKeys, cid: Uint8Array, password: Uint8Array, record: Uint8Array | null) {
  const { ke1, state } = clientLoginStart(copts(client), password);
  const s = serverLoginStart(sopts(server), keys, ke1, cid, record);
  const c = await clientLoginFinish(copts(client), state, password, s.ke2);
  return { c, s };
}

const bytes = (min: number, max: number) => fc.uint8Array({ minLength: min, maxLength: max });

describe('OPAQUE round trips', () => {
  for (const { name, suite } of suites) {
    const keys = generateServerKeys(suite, rng);

    it(`${name}: registration then login agree on keys (random passwords, identities, context)`, async () => {
      await fc.assert(
        fc.asyncProperty(
          bytes(0, 64), bytes(0, 40), fc.option(bytes(1, 24), { nil: undefined }), fc.option(bytes(1, 24), { nil: undefined }), bytes(1, 24),
          async (password, context, client, server, cid) => {
            const c: Ctx = { suite, context, client, server };
            const reg = await register(c, keys, cid, password);
            expect(reg.record.length).toBe(messageLength(suite, 'RegistrationRecord'));
            expect(reg.serverPublicKey).toEqual(keys.serverPublicKey);
            const { c: res, s } = await login(c, c, keys, cid, password, reg.record);
            if (!res.ok) throw new Error(`client outcome ${res.outcome}`);
            expect(res.exportKey).toEqual(reg.exportKey);
            expect(res.serverPublicKey).toEqual(keys.serverPublicKey);
            expect(res.sessionKey.length).toBe(suite.Nx);
            const fin = serverLoginFinish(sopts(c), s.state, res.ke3);
            if (!fin.ok) throw new Error('server rejected the KE3');
            expect(fin.sessionKey).toEqual(res.sessionKey);
          },
        ),
        { numRuns: runs(name, 25, 5) },
      );
    });

    it(`${name}: a wrong password is an outcome on both sides`, async () => {
      await fc.assert(
        fc.asyncProperty(bytes(0, 32), bytes(0, 32), bytes(0, 16), async (password, other, context) => {
          fc.pre(Buffer.compare(password, other) !== 0);
          const c: Ctx = { suite, context };
          const cid = utf8('alice');
          const { record } = await register(c, keys, cid, password);
          const { c: res, s } = await login(c, c, keys, cid, other, record);
          expect(res).toEqual({ ok: false, outcome: 'wrong-password' });
          // The client sends no KE3; whatever an attacker sends instead is a wrong-password outcome.
          expect(serverLoginFinish(sopts(c), s.state, rng(suite.Nm))).toEqual({ ok: false, outcome: 'wrong-password' });
        }),
        { numRuns: runs(name, 10, 3) },
      );
    });

    it(`${name}: mismatched identities are wrong-password, a mismatched context is server-auth-failed`, async () => {
      const password = utf8('correct horse');
      const cid = utf8('bob');
      const base: Ctx = { suite, context: utf8('app-v1'), client: utf8('bob@example.com'), server: utf8('vault.example.com') };
      const { record } = await register(base, keys, cid, password);
      const ok = await login(base, base, keys, cid, password, record);
      expect(ok.c.ok).toBe(true);
      for (const changed of [{ ...base, client: utf8('mallory') }, { ...base, server: undefined }]) {
        const r = await login(changed, changed, keys, cid, password, record);
        expect(r.c).toEqual({ ok: false, outcome: 'wrong-password' });
      }
      const r = await login({ ...base, context: utf8('app-v2') }, base, keys, cid, password, record);
      expect(r.c).toEqual({ ok: false, outcome: 'server-auth-failed' });
      // The server identity in the server's options only changes the server's transcript.
      const r2 = await login(base, { ...base, server: utf8('evil.example.com') }, keys, cid, password, record);
      expect(r2.c).toEqual({ ok: false, outcome: 'server-auth-failed' });
    });

    it(`${name}: an unknown user gets a KE2 of the real length and a wrong-password outcome`, async () => {
      const c: Ctx = { suite, context: utf8('ctx') };
      const password = utf8('pw');
      const { record } = await register(c, keys, utf8('carol'), password);
      const real = await login(c, c, keys, utf8('carol'), password, record);
      const fake = generateFakeRecord(suite, rng);
      for (const f of [fake, undefined]) {
        const { ke1, state } = clientLoginStart(copts(c), password);
        const { ke2 } = serverLoginStart(sopts(c), keys, ke1, utf8('nobody'), null, f);
        expect(ke2.length).toBe(real.s.ke2.length);
        expect(ke2.length).toBe(messageLength(suite, 'KE2'));
        expect(await clientLoginFinish(copts(c), state, password, ke2)).toEqual({ ok: false, outcome: 'wrong-password' });
      }
    });

    it(`${name}: the server state survives encode/decode, and the encoded object is spent`, async () => {
      const c: Ctx = { suite, context: new Uint8Array(0) };
      const password = utf8('pw');
      const { record } = await register(c, keys, utf8('dave'), password);
      const { c: res, s } = await login(c, c, keys, utf8('dave'), password, record);
      if (!res.ok) throw new Error('login failed');
      const blob = serverLoginStateEncode(s.state);
      expect(blob.length).toBe(2 + suite.Nm + suite.Nx);
      expect(() => serverLoginFinish(sopts(c), s.state, res.ke3)).toThrow(expect.objectContaining({ code: OpaqueErrorCode.StateReused }));
      const fin = serverLoginFinish(sopts(c), serverLoginStateDecode(suite, blob), res.ke3);
      expect(fin).toEqual({ ok: true, sessionKey: res.sessionKey });
    });
  }
});

describe('key stretching', () => {
  it('encodes and strictly decodes KSF parameters', () => {
    expect(encodeKsfParams(identityKsf)).toEqual(Uint8Array.of(0));
    expect(ksfFromParams(Uint8Array.of(0))).toBe(identityKsf);
    const k = argon2idKsf(DEFAULT_ARGON2ID);
    const enc = encodeKsfParams(k);
    expect(enc).toEqual(Uint8Array.of(1, 0, 0, 0, 3, 0, 1, 0, 0, 0, 0, 0, 4));
    const back = ksfFromParams(enc);
    expect(back.id).toBe('argon2id');
    expect(encodeKsfParams(back)).toEqual(enc);
    const bad = [
      new Uint8Array(0), Uint8Array.of(0, 0), Uint8Array.of(2), enc.subarray(0, 12), Uint8Array.of(...enc, 0),
      Uint8Array.of(1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 4), // t = 0
      Uint8Array.of(1, 0, 0, 0, 1, 0, 0, 0, 8, 0, 0, 0, 4), // m < 8p
      Uint8Array.of(1, 0, 0, 0, 1, 0, 0x40, 0, 0, 0, 0, 0, 4), // m > 2^21
      Uint8Array.of(1, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0), // p = 0
    ];
    for (const b of bad) {
      expect(() => ksfFromParams(b)).toThrow(expect.objectContaining({ code: OpaqueErrorCode.KsfError }));
    }
    expect(() => argon2idKsf({ t: 1.5, m: 64, p: 1 })).toThrow(OpaqueError);
  });

  it('never throws anything but KsfError on arbitrary parameter bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 20 }), (b) => {
        try {
          ksfFromParams(b);
        } catch (e) {
          expect(e).toBeInstanceOf(OpaqueError);
          expect((e as OpaqueError).code).toBe(OpaqueErrorCode.KsfError);
        }
      }),
    );
  });

  it('an Argon2id round trip works, and logging in with another KSF is wrong-password', async () => {
    const { suite } = suites[0]!;
    const keys = generateServerKeys(suite, rng);
    const ksf = ksfFromParams(encodeKsfParams(argon2idKsf({ t: 1, m: 64, p: 1 })));
    const c: Ctx = { suite, context: utf8('ctx'), ksf };
    const password = utf8('argon');
    const { record, exportKey } = await register(c, keys, utf8('erin'), password);
    const ok = await login(c, c, keys, utf8('erin'), password, record);
    if (!ok.c.ok) throw new Error('login failed');
    expect(ok.c.exportKey).toEqual(exportKey);
    const other = await login({ ...c, ksf: identityKsf }, c, keys, utf8('erin'), password, record);
    expect(other.c).toEqual({ ok: false, outcome: 'wrong-password' });
    const stretched = await ksf.stretch(new Uint8Array(64), suite.Nh);
    expect(stretched.length).toBe(suite.Nh);
  });
});
