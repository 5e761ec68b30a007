/**
 * RFC 9807 Appendix C test vectors, byte for byte: C.1 real vectors (registration_request,
 * registration_response, registration_upload, KE1, KE2, KE3, export_key, session_key) and C.2
 * fake vectors (KE2 for an unknown credential identifier), for ristretto255-SHA512 and
 * P256-SHA256 on every backend of allSuites(). Random values come from a queue RNG in RFC order.
 * KSF = identity, context = "OPAQUE-POC". The curve25519 vectors are skipped: not a supported suite.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { type RandomSource, fromHex, toHex } from '../../../enclave/opaque/bytes.ts';
import { clientLoginFinish, clientLoginStart, clientRegistrationFinish, clientRegistrationStart } from '../../../enclave/opaque/client.ts';
import { deriveOprfKey, randomizePassword } from '../../../enclave/opaque/derive.ts';
import { identityKsf } from '../../../enclave/opaque/ksf.ts';
import { finalize } from '../../../enclave/opaque/oprf.ts';
import { serverLoginFinish, serverLoginStart, serverRegistrationResponse, type ServerKeys } from '../../../enclave/opaque/server.ts';
import type { Suite, SuiteId } from '../../../enclave/opaque/suite.ts';
import { allSuites } from '../../helpers/suites.ts';
import { queueRng } from '../../helpers/opaque.ts';

type Hex = Record<string, string>;
interface Vector { name: string; kind: 'real' | 'fake'; config: Hex & { OPRF: string; Group: string; Context: string }; inputs: Hex; intermediates: Hex; outputs: Hex }

const file = JSON.parse(readFileSync(new URL('../../vectors/rfc/opaque-rfc9807-appendixC.json', import.meta.url), 'utf8')) as { vectors: Vector[] };
const suites = await allSuites();

function supported(v: Vector): SuiteId | null {
  if (v.config.OPRF === 'ristretto255-SHA512' && v.config.Group === 'ristretto255') return 'ristretto255-SHA512';
  if (v.config.OPRF === 'P256-SHA256' && v.config.Group.startsWith('P256')) return 'P256-SHA256';
  return null;
}

const h = (v: Vector, k: string): Uint8Array => fromHex(v.inputs[k]!);
const identities = (v: Vector) => ({
  ...(v.inputs.client_identity ? { client: h(v, 'client_identity') } : {}),
  ...(v.inputs.server_identity ? { server: h(v, 'server_identity') } : {}),
});
const serverKeys = (v: Vector): ServerKeys => ({
  oprfSeed: h(v, 'oprf_seed'), serverPrivateKey: h(v, 'server_private_key'), serverPublicKey: h(v, 'server_public_key'),
});

async function runReal(suite: Suite, v: Vector): Promise<void> {
  const context = fromHex(v.config.Context);
  const ids = identities(v);
  const password = h(v, 'password');
  const cid = h(v, 'credential_identifier');
  const keys = serverKeys(v);
  const client = (rng: RandomSource) => ({ suite, context, identities: ids, ksf: identityKsf, rng });
  const server = (rng: RandomSource) => ({ suite, context, identities: ids, rng });
  const out = v.outputs;

  expect(toHex(deriveOprfKey(suite, keys.oprfSeed, cid))).toBe(v.intermediates.oprf_key);

  // Registration: the client draws blind_registration, then envelope_nonce.
  const reg = clientRegistrationStart(client(queueRng(h(v, 'blind_registration'))), password);
  expect(toHex(reg.request)).toBe(out.registration_request);
  const response = serverRegistrationResponse(server(queueRng()), keys, reg.request, cid);
  expect(toHex(response)).toBe(out.registration_response);
  const fin = await clientRegistrationFinish(client(queueRng(h(v, 'envelope_nonce'))), reg.state, password, response);
  expect(toHex(fin.record)).toBe(out.registration_upload);
  expect(toHex(fin.record.subarray(0, suite.Npk))).toBe(v.intermediates.client_public_key);
  expect(toHex(fin.record.subarray(suite.Npk + suite.Nh))).toBe(v.intermediates.envelope);
  const oprfOutput = finalize(suite, password, h(v, 'blind_registration'), response.subarray(0, suite.Noe));
  expect(toHex(await randomizePassword(suite, identityKsf, oprfOutput))).toBe(v.intermediates.randomized_password);
  expect(toHex(fin.exportKey)).toBe(out.export_key);
  expect(toHex(fin.serverPublicKey)).toBe(v.inputs.server_public_key);

  // Login: client draws blind_login, client_nonce, client_keyshare_seed;
  // server draws masking_nonce, server_nonce, server_keyshare_seed.
  const copts = client(queueRng(h(v, 'blind_login'), h(v, 'client_nonce'), h(v, 'client_keyshare_seed')));
  const { ke1, state: cstate } = clientLoginStart(copts, password);
  expect(toHex(ke1)).toBe(out.KE1);
  const sopts = server(queueRng(h(v, 'masking_nonce'), h(v, 'server_nonce'), h(v, 'server_keyshare_seed')));
  const { ke2, state: sstate } = serverLoginStart(sopts, keys, ke1, cid, fin.record);
  expect(toHex(ke2)).toBe(out.KE2);
  const c = await clientLoginFinish(copts, cstate, password, ke2);
  if (!c.ok) throw new Error(`client login failed: ${c.outcome}`);
  expect(toHex(c.ke3)).toBe(out.KE3);
  expect(toHex(c.sessionKey)).toBe(out.session_key);
  expect(toHex(c.exportKey)).toBe(out.export_key);
  expect(toHex(c.serverPublicKey)).toBe(v.inputs.server_public_key);
  const s = serverLoginFinish(sopts, sstate, c.ke3);
  if (!s.ok) throw new Error('server login failed');
  expect(toHex(s.sessionKey)).toBe(out.session_key);
}

function runFake(suite: Suite, v: Vector): void {
  const sopts = {
    suite, context: fromHex(v.config.Context), identities: identities(v),
    rng: queueRng(h(v, 'masking_nonce'), h(v, 'server_nonce'), h(v, 'server_keyshare_seed')),
  };
  expect(toHex(suite.group.scalarMultBase(h(v, 'client_private_key')))).toBe(v.inputs.client_public_key);
  const fake = { clientPublicKey: h(v, 'client_public_key'), maskingKey: h(v, 'masking_key') };
  const { ke2 } = serverLoginStart(sopts, serverKeys(v), h(v, 'KE1'), h(v, 'credential_identifier'), null, fake);
  expect(toHex(ke2)).toBe(v.outputs.KE2);
}

describe('RFC 9807 Appendix C vectors', () => {
  it('the vector file holds the expected vectors', () => {
    expect(file.vectors.filter((v) => supported(v) !== null && v.kind === 'real').length).toBe(4);
    expect(file.vectors.filter((v) => supported(v) !== null && v.kind === 'fake').length).toBe(2);
  });
  for (const v of file.vectors) {
    const id = supported(v);
    if (id === null) {
      // A vector of a suite this project does not implement: the suite is refused, not run.
      it(`${v.name} (${v.config.Group} keyshares): not a suite of this project, no backend claims it`, () => {
        expect(v.config.Group).not.toMatch(/^(ristretto255|P256)/);
        expect(suites.map((s) => s.suite.group.id)).not.toContain(v.config.Group);
      });
      continue;
    }
    for (const { name, suite } of suites.filter((s) => s.suite.id === id)) {
      it(`${v.name} (${v.kind}) on ${name}`, async () => {
        if (v.kind === 'real') await runReal(suite, v);
        else runFake(suite, v);
      });
    }
  }
});
