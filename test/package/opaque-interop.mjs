// Run by test/package.test.ts from plain Node in a project that installed the packed tarball:
// backup-key-vault/opaque against @serenity-kit/opaque (ristretto255) and @serenity-kit/opaque-p256.
// Their client registers and logs in against our server (fastSuite); our client (portableSuite)
// logs in against their server. Prints one JSON line.
import { randomBytes } from 'node:crypto';
import * as ristretto from '@serenity-kit/opaque';
import * as p256 from '@serenity-kit/opaque-p256';
import {
  DEFAULT_ARGON2ID, argon2idKsf, clientLoginFinish, clientLoginStart, clientRegistrationFinish, clientRegistrationStart, fastSuite,
  generateServerKeys, portableSuite, serverLoginFinish, serverLoginStart, serverRegistrationResponse,
} from 'backup-key-vault/opaque';

const rng = (n) => new Uint8Array(randomBytes(n));
const b64 = (b) => Buffer.from(b).toString('base64url');
const unb64 = (s) => new Uint8Array(Buffer.from(s, 'base64url'));
const utf8 = (s) => new TextEncoder().encode(s);
const EMPTY = new Uint8Array(0);
const THEIR_KSF = { 'argon2id-custom': { iterations: DEFAULT_ARGON2ID.t, memory: DEFAULT_ARGON2ID.m, parallelism: DEFAULT_ARGON2ID.p } };
const out = {};

for (const [id, peer] of [['ristretto255-SHA512', ristretto], ['P256-SHA256', p256]]) {
  await peer.ready;
  // Their client, our server (fastSuite).
  const suite = await fastSuite(id);
  const sopts = { suite, context: EMPTY, rng };
  const keys = generateServerKeys(suite, rng);
  const start = peer.client.startRegistration({ password: 'pw' });
  const response = serverRegistrationResponse(sopts, keys, unb64(start.registrationRequest), utf8('alice'));
  const reg = peer.client.finishRegistration({ clientRegistrationState: start.clientRegistrationState, registrationResponse: b64(response), password: 'pw' });
  const login = peer.client.startLogin({ password: 'pw' });
  const s = serverLoginStart(sopts, keys, unb64(login.startLoginRequest), utf8('alice'), unb64(reg.registrationRecord));
  const fin = peer.client.finishLogin({ clientLoginState: login.clientLoginState, loginResponse: b64(s.ke2), password: 'pw', keyStretching: THEIR_KSF });
  if (!fin) throw new Error(`${id}: their client rejected our KE2`);
  const done = serverLoginFinish(sopts, s.state, unb64(fin.finishLoginRequest));
  const theirsToOurs = done.ok && b64(done.sessionKey) === fin.sessionKey;

  // Our client (portableSuite), their server.
  const copts = { suite: portableSuite(id), context: EMPTY, rng, ksf: argon2idKsf(DEFAULT_ARGON2ID) };
  const setup = peer.server.createSetup();
  const r = clientRegistrationStart(copts, utf8('pw'));
  const { registrationResponse } = peer.server.createRegistrationResponse({ serverSetup: setup, userIdentifier: 'bob', registrationRequest: b64(r.request) });
  const ours = await clientRegistrationFinish(copts, r.state, utf8('pw'), unb64(registrationResponse));
  const l = clientLoginStart(copts, utf8('pw'));
  const srv = peer.server.startLogin({ serverSetup: setup, userIdentifier: 'bob', registrationRecord: b64(ours.record), startLoginRequest: b64(l.ke1) });
  const res = await clientLoginFinish(copts, l.state, utf8('pw'), unb64(srv.loginResponse));
  if (!res.ok) throw new Error(`${id}: our client: ${res.outcome}`);
  const { sessionKey } = peer.server.finishLogin({ serverLoginState: srv.serverLoginState, finishLoginRequest: b64(res.ke3) });
  out[id] = { theirsToOurs, oursToTheirs: sessionKey === b64(res.sessionKey) };
}
console.log(JSON.stringify(out));
