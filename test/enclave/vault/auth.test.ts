/**
 * Per-user authorization, checked by the enclave (enclave/api/auth.ts, enclave/api/auth-verify.ts):
 * the enclave is driven directly through the engine, as a host that skips every check of its own
 * would drive it. No token, a forged, expired, premature, over-long, wrong-subject, wrong-audience
 * or wrong-issuer token: a sealed typed fault, no guess charged, no record written, no audit event.
 * The issuer set is bound to the NVRAM; only the operator secret changes it.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { CompactSign, SignJWT, calculateJwkThumbprint, importJWK } from 'jose';
import { decodeMessage, encodeMessage } from '../../../enclave/api/codec.ts';
import { Handling, Lifecycle } from '../../../enclave/api/codes.ts';
import { ClientRequests, ClientResponses, HostRequests, HostResponses, SUITE_CODE } from '../../../enclave/api/messages.ts';
import type { ClientRequest, ClientResponse } from '../../../enclave/api/messages.ts';
import { encodeAuthConfig, issuerKid, base64url } from '../../../enclave/api/auth.ts';
import { sealRequest } from '../../../client/e2e-seal.ts';
import { clientLoginStart } from '../../../enclave/opaque/client.ts';
import { identityKsf } from '../../../enclave/opaque/ksf.ts';
import { fastSuite } from '../../../enclave/opaque/suites-fast.ts';
import { createEnclave } from '../../../enclave/main.ts';
import { mintToken, newIssuer } from '../../../host/auth/issuer.ts';
import type { IssuerPrivate } from '../../../host/auth/issuer.ts';
import { makeTestIssuer } from '../../helpers/auth.ts';
import { CONTEXT, authFor, openHarness } from '../../helpers/vault-harness.ts';
import type { Harness } from '../../helpers/vault-harness.ts';

const te = new TextEncoder();
const rng = (n: number) => new Uint8Array(randomBytes(n));
let h: Harness;
afterEach(async () => h?.close());

type Op = ClientRequest extends infer U ? (U extends unknown ? Omit<U, 'auth'> : never) : never;

/** Seals one client operation with `auth` and submits it through the engine; the opened answer. */
async function send(rid: Uint8Array, op: Op, auth: Uint8Array): Promise<{ sealed: boolean; res: ClientResponse }> {
  const { message, openResponse } = await sealRequest(h.hpkePublicKey, rid, encodeMessage(ClientRequests, { ...op, auth } as ClientRequest));
  const r = await h.engine.submit(rid, message);
  return { sealed: r.sealed, res: decodeMessage(ClientResponses, r.sealed ? await openResponse(r.response) : r.response) };
}

async function loginStartOp(): Promise<Op> {
  const suite = await fastSuite('ristretto255-SHA512');
  const { ke1 } = clientLoginStart({ suite, context: CONTEXT, rng, ksf: identityKsf }, te.encode('guess'));
  return { type: 'LoginStart', suite: SUITE_CODE['ristretto255-SHA512'], ke1 };
}

/** Signs arbitrary claims with `issuer` (header kid = its thumbprint unless `kid` is given). */
async function signed(issuer: IssuerPrivate, claims: Record<string, unknown>, header: Record<string, unknown> = {}): Promise<Uint8Array> {
  const key = await importJWK(issuer.jwk, 'EdDSA');
  return te.encode(await new SignJWT(claims).setProtectedHeader({ alg: 'EdDSA', kid: issuer.kid, ...header }).sign(key));
}

describe('the enclave checks the issuer token of every operation', () => {
  it('refuses bad tokens on LoginStart with a sealed typed fault and charges nothing', async () => {
    h = await openHarness();
    const c = await h.client();
    const alice = te.encode('alice');
    await c.register(alice, te.encode('pw'), new Uint8Array(32).fill(1), { attemptLimit: 3 });
    const blobBefore = (await h.store.getMany(0, [alice]))[0]!.blob;
    const auditBefore = (await h.store.auditEvents(0, 0, 1000)).length;
    const nowS = Math.floor(h.platform.clock.t / 1000);
    const base = { iss: h.issuer.issuer.name, aud: h.issuer.config.audience, sub: 'alice', iat: nowS, exp: nowS + 600, jti: 'j1' };
    const rogue = await newIssuer(h.issuer.issuer.name);
    const cases: [string, Uint8Array, number][] = [
      ['no token', new Uint8Array(0), Handling.AuthRequired],
      ['not a JWT', te.encode('garbage'), Handling.AuthInvalid],
      ['not text', Uint8Array.of(0xff, 0xfe, 0x00), Handling.AuthInvalid],
      ['forged: another key under the real kid', await signed(rogue, base, { kid: h.issuer.issuer.kid }), Handling.AuthInvalid],
      ['an unknown issuer key', await signed(rogue, base), Handling.AuthInvalid],
      ['alg none', te.encode(`${base64url(te.encode('{"alg":"none"}'))}.${base64url(te.encode(JSON.stringify(base)))}.`), Handling.AuthInvalid],
      ['signature of another token', await (async () => {
        const [hd, , sig] = new TextDecoder().decode(await signed(h.issuer.issuer, { ...base, sub: 'bob' })).split('.');
        return te.encode(`${hd}.${base64url(te.encode(JSON.stringify(base)))}.${sig}`);
      })(), Handling.AuthInvalid],
      ['wrong subject', await h.issuer.tokenBytes('bob', h.platform.clock.t), Handling.AuthWrongSubject],
      ['wrong audience', await h.issuer.tokenBytes('alice', h.platform.clock.t, { audience: 'another-vault' }), Handling.AuthWrongAudience],
      ['wrong issuer name', await signed(h.issuer.issuer, { ...base, iss: 'someone-else' }), Handling.AuthInvalid],
      ['expired', await signed(h.issuer.issuer, { ...base, iat: nowS - 700, exp: nowS - 100 }), Handling.AuthExpired],
      ['issued in the future', await signed(h.issuer.issuer, { ...base, iat: nowS + 120, exp: nowS + 600 }), Handling.AuthInvalid],
      ['lifetime over an hour', await signed(h.issuer.issuer, { ...base, exp: nowS + 7200 }), Handling.AuthInvalid],
      ['no jti', await signed(h.issuer.issuer, { ...base, jti: undefined }), Handling.AuthInvalid],
      ['no exp', await signed(h.issuer.issuer, { ...base, exp: undefined }), Handling.AuthInvalid],
      ['claims not an object', te.encode(await new CompactSign(te.encode('["alice"]')).setProtectedHeader({ alg: 'EdDSA', kid: h.issuer.issuer.kid }).sign(await importJWK(h.issuer.issuer.jwk, 'EdDSA'))), Handling.AuthInvalid],
    ];
    const op = await loginStartOp();
    for (const [what, token, code] of cases) {
      const r = await send(alice, op, token);
      expect(r.sealed, what).toBe(true);
      expect(r.res, what).toMatchObject({ type: 'Fault', code });
    }
    // Nothing was charged, written or audited.
    expect(await c.status(alice)).toMatchObject({ type: 'StatusResult', attemptsRemaining: 3 });
    expect((await h.store.getMany(0, [alice]))[0]!.blob).toEqual(blobBefore);
    expect((await h.store.auditEvents(0, 0, 1000)).length).toBe(auditBefore);
    // The same LoginStart with a valid token is charged: the refusals above were the token's.
    expect((await send(alice, op, await authFor(h, alice))).res).toMatchObject({ type: 'LoginStarted', attemptsRemaining: 2 });
  });

  it('refuses every operation type without a valid token, the fake path for unknown ids included', async () => {
    h = await openHarness();
    const c = await h.client();
    const alice = te.encode('alice');
    await c.register(alice, te.encode('pw'), new Uint8Array(32).fill(1), { attemptLimit: 3 });
    const wrong = await h.issuer.tokenBytes('mallory', h.platform.clock.t);
    const ops: Op[] = [
      { type: 'RegisterStart', suite: 1, request: new Uint8Array(32).fill(2), attemptLimit: 255, ksf: Uint8Array.of(0), pacing: 0 },
      { type: 'RegisterFinish', stageId: new Uint8Array(16), record: new Uint8Array(192), backupKey: new Uint8Array(32), authorization: undefined },
      await loginStartOp(),
      { type: 'LoginFinish', sessionId: new Uint8Array(16), ke3: new Uint8Array(64) },
      { type: 'Status' },
      { type: 'Delete', authorization: undefined },
    ];
    for (const rid of [alice, te.encode('nobody')]) {
      for (const op of ops) {
        expect((await send(rid, op, wrong)).res, `${op.type} on ${new TextDecoder().decode(rid)}`).toMatchObject({ type: 'Fault', code: Handling.AuthWrongSubject });
        expect((await send(rid, op, new Uint8Array(0))).res).toMatchObject({ type: 'Fault', code: Handling.AuthRequired });
      }
    }
    expect(await c.status(alice)).toMatchObject({ type: 'StatusResult', attemptsRemaining: 3, attemptLimit: 3 });
    expect(await c.status(te.encode('nobody'))).toMatchObject({ type: 'NotRegistered' });
  });

  it('a verified token is cached until it expires, by the platform clock, and only for its subject', async () => {
    h = await openHarness();
    const c = await h.client();
    const alice = te.encode('alice');
    await c.register(alice, te.encode('pw'), new Uint8Array(32).fill(1), { attemptLimit: 5 });
    const token = await h.issuer.tokenBytes('alice', h.platform.clock.t, { ttlS: 60 });
    expect((await send(alice, { type: 'Status' }, token)).res).toMatchObject({ type: 'StatusResult' });
    // A cache hit still checks the subject.
    expect((await send(te.encode('bob'), { type: 'Status' }, token)).res).toMatchObject({ type: 'Fault', code: Handling.AuthWrongSubject });
    h.platform.clock.t += 60_000 + 31_000; // past exp and the 30 s skew
    expect((await send(alice, { type: 'Status' }, token)).res).toMatchObject({ type: 'Fault', code: Handling.AuthExpired });
    // A LoginStart and its LoginFinish share one token: the client reuses it.
    const fixed = await h.issuer.token('alice', h.platform.clock.t);
    const c2 = await h.client('ristretto255-SHA512', { auth: fixed });
    expect(await c2.recover(alice, te.encode('pw'))).toMatchObject({ ok: true, attemptsRemaining: 5 });
  });

  it('kid is the RFC 7638 thumbprint that jose computes', async () => {
    const i = await newIssuer('x');
    expect(issuerKid(i.publicKey)).toBe(await calculateJwkThumbprint({ kty: 'OKP', crv: 'Ed25519', x: i.jwk.x }, 'sha256'));
    expect(i.kid).toBe(issuerKid(i.publicKey));
  });
});

describe('the issuer set is provisioned into the NVRAM', () => {
  async function bootFault(): Promise<number | undefined> {
    const e = await createEnclave(h.platform);
    const r = decodeMessage(HostResponses, await e.request(encodeMessage(HostRequests, { type: 'Info' })));
    return r.type === 'Fault' ? r.code : undefined;
  }

  it('a device booted under another issuer set, or none, refuses to serve', async () => {
    h = await openHarness();
    const other = await makeTestIssuer('other');
    const mine = h.platform.auth!;
    h.platform.auth = other.config;
    expect(await bootFault()).toBe(Lifecycle.AuthConfigMismatch);
    h.platform.auth = { ...mine, audience: 'another-vault' };
    expect(await bootFault()).toBe(Lifecycle.AuthConfigMismatch);
    h.platform.auth = undefined;
    expect(await bootFault()).toBe(Lifecycle.AuthConfigMismatch);
    h.platform.auth = mine;
    expect(await bootFault()).toBeUndefined();
  });

  it('a vault with no issuer serves no client operation', async () => {
    h = await openHarness();
    const fresh = { ...h.platform, auth: undefined, nvram: new (h.platform.nvram.constructor as new () => typeof h.platform.nvram)() };
    const e = await createEnclave(fresh);
    const info = decodeMessage(HostResponses, await e.request(encodeMessage(HostRequests, { type: 'Info' })));
    expect(info.type).toBe('InfoResult');
    await e.request(encodeMessage(HostRequests, { type: 'LoadEnd' }));
    const rid = te.encode('alice');
    const { message, openResponse } = await sealRequest((info as { hpkePublicKey: Uint8Array }).hpkePublicKey, rid, encodeMessage(ClientRequests, { type: 'Status', auth: await authFor(h, rid) }));
    const prepared = decodeMessage(HostResponses, await e.request(encodeMessage(HostRequests, { type: 'Batch', epoch: 1, ops: [{ opId: 0, recordId: rid, stored: new Uint8Array(0), request: message }] })));
    expect(prepared).toMatchObject({ type: 'Prepared', writes: [] });
    const done = decodeMessage(HostResponses, await e.request(encodeMessage(HostRequests, { type: 'Commit', epoch: 1 })));
    const res = (done as { results: { sealed: number; response: Uint8Array }[] }).results[0]!;
    expect(decodeMessage(ClientResponses, await openResponse(res.response))).toMatchObject({ type: 'Fault', code: Handling.AuthRequired });
  });

  it('SetAuth needs the operator secret; the new set takes over and the old one is refused', async () => {
    const secret = new Uint8Array(32).fill(9);
    const { createHash } = await import('node:crypto');
    h = await openHarness({ operatorKeyHash: new Uint8Array(createHash('sha256').update(secret).digest()) });
    const c = await h.client();
    const alice = te.encode('alice');
    await c.register(alice, te.encode('pw'), new Uint8Array(32).fill(1), { attemptLimit: 4 });
    const next = await makeTestIssuer('next');
    const set = (auth: Uint8Array) => h.enclave.request(encodeMessage(HostRequests, { type: 'SetAuth', config: encodeAuthConfig(next.config), auth })).then((b) => decodeMessage(HostResponses, b));
    expect(await set(new Uint8Array(32).fill(8))).toMatchObject({ type: 'Fault', code: Lifecycle.OperatorAuthFailed });
    expect(await send(alice, { type: 'Status' }, await authFor(h, alice))).toMatchObject({ res: { type: 'StatusResult' } });
    expect(await set(secret)).toMatchObject({ type: 'AuthSet', issuers: 1 });
    expect((await send(alice, { type: 'Status' }, await h.issuer.tokenBytes('alice', h.platform.clock.t + 1000))).res).toMatchObject({ type: 'Fault', code: Handling.AuthInvalid });
    expect((await send(alice, { type: 'Status' }, await next.tokenBytes('alice', h.platform.clock.t))).res).toMatchObject({ type: 'StatusResult', attemptsRemaining: 4 });
    // After a restart the device boots only under the new set.
    const old = h.platform.auth;
    await expect(h.restart()).rejects.toBeTruthy();
    h.platform.auth = next.config;
    await h.restart();
    expect((await send(alice, { type: 'Status' }, await next.tokenBytes('alice', h.platform.clock.t))).res).toMatchObject({ type: 'StatusResult' });
    expect(old).not.toEqual(next.config);
  });
});
