/**
 * Interoperability of our RFC 9807 OPAQUE-3DH with an independent implementation: opaque-ke
 * compiled to WebAssembly, as packaged by @serenity-kit/opaque (ristretto255-SHA512) and
 * @serenity-kit/opaque-p256 (P256-SHA256). Both packages fix context to the empty string, let
 * identities default to the public keys, stretch with Argon2id (t=3, m=64 MiB, p=4, zero salt)
 * and carry the RFC encodings as base64url strings.
 *
 * Their server setup string is oprf_seed (Nh) || server_private_key (Nsk) || a public key they
 * use for fake records (Npk); we build one from our ServerKeys, so both servers can hold the same
 * keys and a record made on one side can be used on the other.
 *
 * Each suite runs with our fast server backend and our portable (browser) backend.
 */
import { randomBytes as nodeRandomBytes } from 'node:crypto';
import * as serenityRistretto from '@serenity-kit/opaque';
import * as serenityP256 from '@serenity-kit/opaque-p256';
import { beforeAll, describe, expect, it } from 'vitest';
import { type RandomSource, utf8 } from '../../../enclave/opaque/bytes.ts';
import { type ClientOptions, clientLoginFinish, clientLoginStart, clientRegistrationFinish, clientRegistrationStart } from '../../../enclave/opaque/client.ts';
import { type Ksf, argon2idKsf, DEFAULT_ARGON2ID } from '../../../enclave/opaque/ksf.ts';
import { decodeKE1, decodeKE2, decodeRegistrationRecord, messageLength } from '../../../enclave/opaque/encoding.ts';
import {
  type ServerKeys, type ServerOptions, generateFakeRecord, generateServerKeys, serverLoginFinish, serverLoginStart,
  serverRegistrationResponse,
} from '../../../enclave/opaque/server.ts';
import type { Suite, SuiteId } from '../../../enclave/opaque/suite.ts';
import type { Identities } from '../../../enclave/opaque/envelope.ts';
import { suitesFor } from '../../helpers/suites.ts';

type Peer = typeof serenityRistretto;
const PEERS: { id: SuiteId; pkg: string; peer: Peer }[] = [
  { id: 'ristretto255-SHA512', pkg: '@serenity-kit/opaque', peer: serenityRistretto },
  { id: 'P256-SHA256', pkg: '@serenity-kit/opaque-p256', peer: serenityP256 as Peer },
];

const rng: RandomSource = (n) => new Uint8Array(nodeRandomBytes(n));
const b64 = (b: Uint8Array): string => Buffer.from(b).toString('base64url');
const unb64 = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'base64url'));
const EMPTY = new Uint8Array(0);

/** Their default key stretching ("memory-constrained"): Argon2id t=3, m=65536 KiB, p=4. */
const ksf: Ksf = argon2idKsf(DEFAULT_ARGON2ID);
/** Their stretching written out, to check that both sides mean the same parameters. */
const THEIR_KSF = { 'argon2id-custom': { iterations: DEFAULT_ARGON2ID.t, memory: DEFAULT_ARGON2ID.m, parallelism: DEFAULT_ARGON2ID.p } };

const sopts = (suite: Suite, identities?: Identities): ServerOptions => ({ suite, context: EMPTY, identities, rng });
const copts = (suite: Suite, identities?: Identities): ClientOptions => ({ suite, context: EMPTY, identities, ksf, rng });

/** Their server setup string holding our keys: oprf_seed || server_private_key || fake-record public key. */
function setupFromKeys(suite: Suite, keys: ServerKeys): string {
  const fakePk = generateFakeRecord(suite, rng).clientPublicKey;
  return b64(Uint8Array.from([...keys.oprfSeed, ...keys.serverPrivateKey, ...fakePk]));
}

/** Our ServerKeys from their setup string (the inverse of setupFromKeys; checks the layout). */
function keysFromSetup(suite: Suite, setup: string): ServerKeys {
  const raw = unb64(setup);
  expect(raw.length).toBe(suite.Nh + suite.Nsk + suite.Npk);
  const serverPrivateKey = raw.slice(suite.Nh, suite.Nh + suite.Nsk);
  return { oprfSeed: raw.slice(0, suite.Nh), serverPrivateKey, serverPublicKey: suite.group.scalarMultBase(serverPrivateKey) };
}

const backends = new Map<SuiteId, Awaited<ReturnType<typeof suitesFor>>>();
for (const { id } of PEERS) backends.set(id, await suitesFor(id));

for (const { id, pkg, peer } of PEERS) {
  describe(`interop with ${pkg} (${id})`, () => {
    beforeAll(async () => {
      await peer.ready;
    });

    for (const { name, suite } of backends.get(id)!) {
      const keys = generateServerKeys(suite, rng);

      /** Their client registers against our server; returns the record and their export key. */
      function theirRegistrationWithOurServer(userIdentifier: string, password: string, k: ServerKeys = keys) {
        const start = peer.client.startRegistration({ password });
        const request = unb64(start.registrationRequest);
        expect(request.length).toBe(messageLength(suite, 'RegistrationRequest'));
        const response = serverRegistrationResponse(sopts(suite), k, request, utf8(userIdentifier));
        return peer.client.finishRegistration({
          clientRegistrationState: start.clientRegistrationState, registrationResponse: b64(response), password,
        });
      }

      /** Our client registers against their server; returns our registration result. */
      async function ourRegistrationWithTheirServer(setup: string, userIdentifier: string, password: string) {
        const pw = utf8(password);
        const reg = clientRegistrationStart(copts(suite), pw);
        const { registrationResponse } = peer.server.createRegistrationResponse({
          serverSetup: setup, userIdentifier, registrationRequest: b64(reg.request),
        });
        return clientRegistrationFinish(copts(suite), reg.state, pw, unb64(registrationResponse));
      }

      it(`${name}: their client registers and logs in against our server, same session and export keys`, async () => {
        const reg = theirRegistrationWithOurServer('alice@example.org', 'correct horse battery staple');
        const record = unb64(reg.registrationRecord);
        expect(unb64(reg.serverStaticPublicKey)).toEqual(keys.serverPublicKey);

        const start = peer.client.startLogin({ password: 'correct horse battery staple' });
        const ke1 = unb64(start.startLoginRequest);
        expect(ke1.length).toBe(messageLength(suite, 'KE1'));
        const s = serverLoginStart(sopts(suite), keys, ke1, utf8('alice@example.org'), record);
        expect(s.ke2.length).toBe(messageLength(suite, 'KE2'));
        const fin = peer.client.finishLogin({
          clientLoginState: start.clientLoginState, loginResponse: b64(s.ke2), password: 'correct horse battery staple', keyStretching: THEIR_KSF,
        });
        if (!fin) throw new Error('their client rejected our KE2');
        const ke3 = unb64(fin.finishLoginRequest);
        expect(ke3.length).toBe(messageLength(suite, 'KE3'));
        const done = serverLoginFinish(sopts(suite), s.state, ke3);
        if (!done.ok) throw new Error(`our server: ${done.outcome}`);
        expect(b64(done.sessionKey)).toBe(fin.sessionKey);
        expect(done.sessionKey.length).toBe(suite.Nx);
        expect(fin.exportKey).toBe(reg.exportKey);
        expect(unb64(fin.serverStaticPublicKey)).toEqual(keys.serverPublicKey);

        // Their KE3 belongs to that session only: replayed against a new KE2 it is a wrong password.
        const again = peer.client.startLogin({ password: 'correct horse battery staple' });
        const s2 = serverLoginStart(sopts(suite), keys, unb64(again.startLoginRequest), utf8('alice@example.org'), record);
        expect(serverLoginFinish(sopts(suite), s2.state, ke3)).toEqual({ ok: false, outcome: 'wrong-password' });
      });

      it(`${name}: our client registers and logs in against their server, same session and export keys`, async () => {
        const setup = peer.server.createSetup();
        const serverPublicKey = unb64(peer.server.getPublicKey(setup));
        const reg = await ourRegistrationWithTheirServer(setup, 'bob', 'hunter2');
        expect(reg.serverPublicKey).toEqual(serverPublicKey);
        expect(reg.record.length).toBe(messageLength(suite, 'RegistrationRecord'));

        const pw = utf8('hunter2');
        const { ke1, state } = clientLoginStart(copts(suite), pw);
        const srv = peer.server.startLogin({
          serverSetup: setup, userIdentifier: 'bob', registrationRecord: b64(reg.record), startLoginRequest: b64(ke1),
        });
        const ke2 = unb64(srv.loginResponse);
        expect(ke2.length).toBe(messageLength(suite, 'KE2'));
        const res = await clientLoginFinish(copts(suite), state, pw, ke2);
        if (!res.ok) throw new Error(`our client: ${res.outcome}`);
        expect(res.serverPublicKey).toEqual(serverPublicKey);
        expect(res.exportKey).toEqual(reg.exportKey);
        const { sessionKey } = peer.server.finishLogin({ serverLoginState: srv.serverLoginState, finishLoginRequest: b64(res.ke3) });
        expect(unb64(sessionKey)).toEqual(res.sessionKey);

        // Their setup read as our ServerKeys: the same record then logs in against our server.
        const theirKeys = keysFromSetup(suite, setup);
        expect(theirKeys.serverPublicKey).toEqual(serverPublicKey);
        const again = clientLoginStart(copts(suite), pw);
        const s = serverLoginStart(sopts(suite), theirKeys, again.ke1, utf8('bob'), reg.record);
        const res2 = await clientLoginFinish(copts(suite), again.state, pw, s.ke2);
        if (!res2.ok) throw new Error(`our client against our server with their keys: ${res2.outcome}`);
        expect(res2.exportKey).toEqual(reg.exportKey);
        expect(serverLoginFinish(sopts(suite), s.state, res2.ke3)).toEqual({ ok: true, sessionKey: res2.sessionKey });
      });

      it(`${name}: a wrong password fails on both sides, as an outcome`, async () => {
        // Their client, our server: their finishLogin returns undefined and sends no KE3; a KE3
        // made up by a client that does not know the password is our wrong-password outcome.
        const reg = theirRegistrationWithOurServer('carol', 'right password');
        const start = peer.client.startLogin({ password: 'wrong password' });
        const s = serverLoginStart(sopts(suite), keys, unb64(start.startLoginRequest), utf8('carol'), unb64(reg.registrationRecord));
        const fin = peer.client.finishLogin({ clientLoginState: start.clientLoginState, loginResponse: b64(s.ke2), password: 'wrong password' });
        expect(fin).toBeUndefined();
        expect(serverLoginFinish(sopts(suite), s.state, rng(suite.Nm))).toEqual({ ok: false, outcome: 'wrong-password' });

        // Our client, their server: our client returns the outcome; their server rejects a made-up KE3.
        const setup = peer.server.createSetup();
        const ours = await ourRegistrationWithTheirServer(setup, 'dave', 'right password');
        const { ke1, state } = clientLoginStart(copts(suite), utf8('wrong password'));
        const srv = peer.server.startLogin({
          serverSetup: setup, userIdentifier: 'dave', registrationRecord: b64(ours.record), startLoginRequest: b64(ke1),
        });
        const res = await clientLoginFinish(copts(suite), state, utf8('wrong password'), unb64(srv.loginResponse));
        expect(res).toEqual({ ok: false, outcome: 'wrong-password' });
        expect(() => peer.server.finishLogin({ serverLoginState: srv.serverLoginState, finishLoginRequest: b64(rng(suite.Nm)) })).toThrow();
      });

      it(`${name}: their record has the RFC layout and our server accepts it; their registration response equals ours`, async () => {
        // Both servers hold the same keys (their setup built from ours, and ours read back from it).
        const setup = setupFromKeys(suite, keys);
        expect(unb64(peer.server.getPublicKey(setup))).toEqual(keys.serverPublicKey);

        // CreateRegistrationResponse is deterministic: the same request and credential identifier
        // give the same bytes on both servers.
        const start = peer.client.startRegistration({ password: 'pw-erin' });
        const ourResponse = serverRegistrationResponse(sopts(suite), keys, unb64(start.registrationRequest), utf8('erin'));
        const theirs = peer.server.createRegistrationResponse({ serverSetup: setup, userIdentifier: 'erin', registrationRequest: start.registrationRequest });
        expect(unb64(theirs.registrationResponse)).toEqual(ourResponse);
        expect(ourResponse.length).toBe(suite.Noe + suite.Npk);

        // Registered entirely on their side; logged in against ours.
        const reg = peer.client.finishRegistration({
          clientRegistrationState: start.clientRegistrationState, registrationResponse: theirs.registrationResponse, password: 'pw-erin',
        });
        const record = unb64(reg.registrationRecord);
        expect(record.length).toBe(messageLength(suite, 'RegistrationRecord'));
        if (id === 'ristretto255-SHA512') expect(record.length).toBe(192);
        const fields = decodeRegistrationRecord(suite, record);
        expect(fields.clientPublicKey.length).toBe(suite.Npk);
        expect(fields.maskingKey.length).toBe(suite.Nh);
        expect(fields.envelope.length).toBe(suite.Nn + suite.Nm);
        suite.group.checkElement(fields.clientPublicKey, 'client_public_key');

        const login = peer.client.startLogin({ password: 'pw-erin' });
        const ke1 = unb64(login.startLoginRequest);
        const k1 = decodeKE1(suite, ke1);
        suite.group.checkElement(k1.credentialRequest.blindedMessage, 'blinded_message');
        suite.group.checkElement(k1.authRequest.clientPublicKeyshare, 'client_public_keyshare');
        const s = serverLoginStart(sopts(suite), keys, ke1, utf8('erin'), record);
        const fin = peer.client.finishLogin({ clientLoginState: login.clientLoginState, loginResponse: b64(s.ke2), password: 'pw-erin' });
        if (!fin) throw new Error('their client rejected our KE2');
        const done = serverLoginFinish(sopts(suite), s.state, unb64(fin.finishLoginRequest));
        expect(done).toEqual({ ok: true, sessionKey: unb64(fin.sessionKey) });
        expect(fin.exportKey).toBe(reg.exportKey);
      });

      it(`${name}: a record made on our side logs in against their server with the same keys, and the reverse KE2 parses`, async () => {
        const setup = setupFromKeys(suite, keys);
        const pw = utf8('pw-frank');
        const reg = clientRegistrationStart(copts(suite), pw);
        const response = serverRegistrationResponse(sopts(suite), keys, reg.request, utf8('frank'));
        const ours = await clientRegistrationFinish(copts(suite), reg.state, pw, response);

        // Their client against their server, with the record our client made against our server.
        const login = peer.client.startLogin({ password: 'pw-frank' });
        const srv = peer.server.startLogin({
          serverSetup: setup, userIdentifier: 'frank', registrationRecord: b64(ours.record), startLoginRequest: login.startLoginRequest,
        });
        const k2 = decodeKE2(suite, unb64(srv.loginResponse));
        suite.group.checkElement(k2.credentialResponse.evaluatedMessage, 'evaluated_message');
        suite.group.checkElement(k2.authResponse.serverPublicKeyshare, 'server_public_keyshare');
        const fin = peer.client.finishLogin({ clientLoginState: login.clientLoginState, loginResponse: srv.loginResponse, password: 'pw-frank' });
        if (!fin) throw new Error('their client rejected their KE2 for our record');
        expect(unb64(fin.exportKey)).toEqual(ours.exportKey);
        const { sessionKey } = peer.server.finishLogin({ serverLoginState: srv.serverLoginState, finishLoginRequest: fin.finishLoginRequest });
        expect(sessionKey).toBe(fin.sessionKey);
      });

      it(`${name}: custom identities agree; unknown users get a fake-record KE2 that fails as a wrong password`, async () => {
        const ids = { client: 'grace@example.org', server: 'vault.example.org' };
        const identities: Identities = { client: utf8(ids.client), server: utf8(ids.server) };
        const start = peer.client.startRegistration({ password: 'pw-grace' });
        const response = serverRegistrationResponse(sopts(suite, identities), keys, unb64(start.registrationRequest), utf8('grace'));
        const reg = peer.client.finishRegistration({
          clientRegistrationState: start.clientRegistrationState, registrationResponse: b64(response), password: 'pw-grace', identifiers: ids,
        });
        const login = peer.client.startLogin({ password: 'pw-grace' });
        const s = serverLoginStart(sopts(suite, identities), keys, unb64(login.startLoginRequest), utf8('grace'), unb64(reg.registrationRecord));
        const fin = peer.client.finishLogin({ clientLoginState: login.clientLoginState, loginResponse: b64(s.ke2), password: 'pw-grace', identifiers: ids });
        if (!fin) throw new Error('their client rejected our KE2 with identities');
        expect(serverLoginFinish(sopts(suite, identities), s.state, unb64(fin.finishLoginRequest))).toEqual({ ok: true, sessionKey: unb64(fin.sessionKey) });

        // Identities on one side only: their client refuses our KE2.
        const bare = peer.client.startLogin({ password: 'pw-grace' });
        const s2 = serverLoginStart(sopts(suite), keys, unb64(bare.startLoginRequest), utf8('grace'), unb64(reg.registrationRecord));
        expect(peer.client.finishLogin({ clientLoginState: bare.clientLoginState, loginResponse: b64(s2.ke2), password: 'pw-grace', identifiers: ids })).toBeUndefined();

        // An unknown credential identifier on our server: a well-formed KE2 their client can not open.
        const fake = generateFakeRecord(suite, rng);
        const probe = peer.client.startLogin({ password: 'pw-grace' });
        const f = serverLoginStart(sopts(suite), keys, unb64(probe.startLoginRequest), utf8('nobody'), null, fake);
        expect(f.ke2.length).toBe(messageLength(suite, 'KE2'));
        expect(peer.client.finishLogin({ clientLoginState: probe.clientLoginState, loginResponse: b64(f.ke2), password: 'pw-grace' })).toBeUndefined();

        // An unknown user on their server: our client sees the wrong-password outcome.
        const { ke1, state } = clientLoginStart(copts(suite), utf8('pw-grace'));
        const srv = peer.server.startLogin({ serverSetup: setupFromKeys(suite, keys), userIdentifier: 'nobody', registrationRecord: null, startLoginRequest: b64(ke1) });
        expect(await clientLoginFinish(copts(suite), state, utf8('pw-grace'), unb64(srv.loginResponse))).toEqual({ ok: false, outcome: 'wrong-password' });
      });
    }
  });
}
