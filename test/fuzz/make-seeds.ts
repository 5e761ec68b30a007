/**
 * Writes the seed corpus of every fuzz target: test/fuzz/seeds/<target>/<message type>.bin, one
 * valid input per message type (each RFC 9807 message of both suites, each message type of the
 * four API families, each client operation sealed into a Batch to the fuzz vault's enclave key,
 * each kind of sealed blob and NVRAM image, one fault per token method, ...).
 *
 *   npx tsx test/fuzz/make-seeds.ts          # rewrite every seed (review the diff, commit)
 *   npx tsx test/fuzz/make-seeds.ts --check  # exit 1 if a checked-in seed is missing or differs
 *
 * Deterministic: OPAQUE and sealing draw from fixed DRBGs, HPKE seals use a derived ephemeral key
 * (RFC 9180 `ekm`), and the token keys of the fuzz vault are planted (lib/canary.ts), so the same
 * code writes the same bytes. No seed carries a planted secret (checked before writing).
 *
 * Every client request carries an issuer token in its `auth` field (lib/auth.ts): a real one of
 * the planted issuer, minted at the fuzz vaults' start clock, where the request is sealed or only
 * decoded (enclave-host, e2e-open-request, codec-client-requests); the 1-byte code of a token kind
 * where the target mints the token itself at its own clock (enclave-client, http), with a few
 * seeds of bad kinds and one literal token.
 */
import { mkdirSync, readFileSync, existsSync, writeFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { createCipheriv, createECDH, createHash } from 'node:crypto';
import { Aes256Gcm, CipherSuite, DhkemX25519HkdfSha256, HkdfSha256 } from '@hpke/core';
import { decodeFields, encodeMessage } from '../../enclave/api/codec.ts';
import type { Family, Schema } from '../../enclave/api/codec.ts';
import type { ClientRequest, HostRequest } from '../../enclave/api/messages.ts';
import { decodeNvramState } from '../../enclave/vault/nvram-state.ts';
import { AuditEventSchema, ClientRequests, ClientResponses, HostRequests, HostResponses, SUITE_CODE } from '../../enclave/api/messages.ts';
import { encodeKeyAuthorization, encodeSessionAuthorization } from '../../enclave/api/authorize.ts';
import { deriveE2eKeyPair } from '../../client/e2e-seal.ts';
import { padResponse } from '../../enclave/api/padding.ts';
import { clientLoginStart } from '../../enclave/opaque/client.ts';
import { MESSAGE_NAMES } from '../../enclave/opaque/encoding.ts';
import type { MessageName } from '../../enclave/opaque/encoding.ts';
import { argon2idKsf, ARGON2ID_LIMITS, DEFAULT_ARGON2ID, identityKsf } from '../../enclave/opaque/ksf.ts';
import { serverLoginStart, serverLoginStateEncode } from '../../enclave/opaque/server.ts';
import { SUITE_IDS } from '../../enclave/opaque/suite.ts';
import { encodeFields } from '../../enclave/api/codec.ts';
import { KIND_RECORD, KIND_TOMBSTONE, RecordSchema, STATUS_ACTIVE, seal } from '../../enclave/vault/record.ts';
import { encodeNvramState, FLAG_ZEROIZED, freshNvramState } from '../../enclave/vault/nvram-state.ts';
import { sampleFields } from '../helpers/samples.ts';
import { FUZZ_EPOCH_MS, mintFuzzToken, tokenCode } from './lib/auth.ts';
import type { TokenKind } from './lib/auth.ts';
import { allCanarySecrets, CANARY_A, CANARY_B, drbg } from './lib/canary.ts';
import { SEEDS_DIR } from './lib/engine.ts';
import { SecretScanner } from './lib/oracle.ts';
import { opaqueFixture, OPAQUE_CONTEXT, OPAQUE_ID } from './lib/opaque-target.ts';
import { FuzzVault, IDS } from './lib/vault.ts';
import type { ClientOp } from './lib/vault.ts';
import { E2E_IKM, E2E_RECORD_IDS } from './targets/e2e-open-request.ts';
import { RESPONSE_PLAINTEXT } from './targets/e2e-open-response.ts';
import { AUTH_BACKUP_KEY, AUTH_RECORD, AUTH_SESSION_ID, AUTH_SESSION_KEY, AUTH_STAGE } from './targets/authorization.ts';
import { SEALED_RECORD_ID, sealingToken } from './targets/sealed-record.ts';
import * as tokenFaults from './targets/token-faults.ts';
import { seeds as fleetWireSeeds } from './targets/fleet-wire.ts';
import { PKCS11_PLANTED } from './targets/pkcs11-token.ts';

const te = new TextEncoder();
const seeds = new Map<string, Uint8Array>();
const put = (target: string, file: string, bytes: Uint8Array) => seeds.set(`${target}/${file}.bin`, bytes);
const kebab = (s: string) => s.replace(/([a-z0-9])([A-Z])/g, '$1-$2').toLowerCase();

// ---- deterministic HPKE sealing (the e2e.ts request format, with a derived ephemeral key) ----

const hpke = new CipherSuite({ kem: new DhkemX25519HkdfSha256(), kdf: new HkdfSha256(), aead: new Aes256Gcm() });
let ekmCounter = 0;
async function sealDeterministic(publicKey: Uint8Array, recordId: Uint8Array, body: Uint8Array): Promise<Uint8Array> {
  const ekm = createHash('sha256').update(`bkv-fuzz/seed-ekm/${ekmCounter++}`).digest();
  const pk = await hpke.kem.deserializePublicKey(publicKey.slice().buffer as ArrayBuffer);
  const ctx = await hpke.createSenderContext({ recipientPublicKey: pk, info: te.encode('bkv/e2e/v1').buffer as ArrayBuffer, ekm: new Uint8Array(ekm) });
  const aad = Uint8Array.of(...te.encode('req'), ...recordId);
  const ct = new Uint8Array(await ctx.seal(body.slice().buffer as ArrayBuffer, aad.buffer as ArrayBuffer));
  return Uint8Array.of(...new Uint8Array(ctx.enc), ...ct);
}

/** The planted issuer's token for a record id, issued at the fuzz vaults' start clock (valid 600 s of it). */
const tokenOf = (recordId: Uint8Array): Uint8Array => te.encode(mintFuzzToken(recordId, FUZZ_EPOCH_MS));

/** One sample per message type; `auth` (for client requests): the token every sample carries. */
function samples(fam: Family<Record<string, Schema>>, auth?: Uint8Array): [string, Uint8Array][] {
  return Object.keys(fam.schemas).map((type) => [type, encodeMessage(fam, { type, ...sampleFields(fam.schemas[type]!), ...(auth && { auth }) } as never)]);
}

async function main(): Promise<void> {
  const check = process.argv.includes('--check');

  // OPAQUE messages, login states, KSF parameters.
  for (const id of SUITE_IDS) {
    const f = await opaqueFixture(id);
    for (const m of MESSAGE_NAMES) put(`opaque-${kebab(m)}`, id, f.messages[m as MessageName]);
    const o = { suite: f.suite, context: OPAQUE_CONTEXT, rng: drbg(`seed-login-state/${id}`, 0) };
    const { ke1 } = clientLoginStart(o, te.encode('seed password'));
    const { state } = serverLoginStart(o, f.keys, ke1, OPAQUE_ID, f.messages.RegistrationRecord);
    put('opaque-login-state', id, serverLoginStateEncode(state));
  }
  put('ksf-params', 'identity', identityKsf.params);
  put('ksf-params', 'argon2id-default', argon2idKsf(DEFAULT_ARGON2ID).params);
  put('ksf-params', 'argon2id-largest', argon2idKsf({ t: ARGON2ID_LIMITS.tMax, m: ARGON2ID_LIMITS.mMax, p: ARGON2ID_LIMITS.pMax }).params);

  // The API codec, one sample per message type of each family.
  const families: [string, Family<Record<string, Schema>>][] = [
    ['codec-host-requests', HostRequests as unknown as Family<Record<string, Schema>>],
    ['codec-host-responses', HostResponses as unknown as Family<Record<string, Schema>>],
    ['codec-client-requests', ClientRequests as unknown as Family<Record<string, Schema>>],
    ['codec-client-responses', ClientResponses as unknown as Family<Record<string, Schema>>],
  ];
  for (const [target, fam] of families) for (const [type, bytes] of samples(fam, fam === (ClientRequests as unknown) ? tokenOf(CANARY_A.recordId) : undefined)) put(target, kebab(type), bytes);

  // End-to-end: requests sealed to the e2e target's key pair; the valid response edit.
  const e2e = await deriveE2eKeyPair(E2E_IKM);
  for (const [type, body] of samples(ClientRequests as unknown as Family<Record<string, Schema>>, tokenOf(E2E_RECORD_IDS[0]!))) {
    put('e2e-open-request', kebab(type), Uint8Array.of(0, ...(await sealDeterministic(e2e.publicKey, E2E_RECORD_IDS[0]!, body))));
  }
  put('e2e-open-request', 'status-record-b', Uint8Array.of(1, ...(await sealDeterministic(e2e.publicKey, E2E_RECORD_IDS[1]!, encodeMessage(ClientRequests, { type: 'Status', auth: tokenOf(E2E_RECORD_IDS[1]!) })))));
  put('e2e-open-response', 'valid', new Uint8Array(12 + padResponse(RESPONSE_PLAINTEXT).length + 16));

  // Authorizations.
  put('authorization', 'backup-key-proof', encodeKeyAuthorization(AUTH_BACKUP_KEY, AUTH_STAGE, AUTH_RECORD));
  put('authorization', 'session-proof', encodeSessionAuthorization(AUTH_SESSION_ID, AUTH_SESSION_KEY, AUTH_STAGE, AUTH_RECORD));

  // Sealed records (the planted sealing key), and record bodies.
  const { token, key } = sealingToken();
  const record = (suite: number, recLen: number) => ({
    status: STATUS_ACTIVE,
    suite,
    attemptLimit: 10,
    attemptsUsed: 2,
    registrationId: new Uint8Array(16).fill(4),
    ksf: Uint8Array.of(0),
    opaqueRecord: new Uint8Array(recLen).fill(5),
    backupKey: new Uint8Array(32).fill(6),
    registeredAt: 1_700_000_000_000, pacing: 0, lastGuessAt: 0,
  });
  put('sealed-record', 'record-ristretto255', Uint8Array.of(0, ...seal(token, key, SEALED_RECORD_ID, { kind: KIND_RECORD, suite: 1, epoch: 7, version: 3 }, record(1, 192))));
  put('sealed-record', 'record-p256', Uint8Array.of(0, ...seal(token, key, SEALED_RECORD_ID, { kind: KIND_RECORD, suite: 2, epoch: 8, version: 1 }, record(2, 129))));
  put('sealed-record', 'tombstone', Uint8Array.of(0, ...seal(token, key, SEALED_RECORD_ID, { kind: KIND_TOMBSTONE, suite: 1, epoch: 9, version: 4 }, null)));
  put('sealed-record', 'record-body', Uint8Array.of(1, ...encodeFields(RecordSchema, record(1, 192))));
  put('sealed-record', 'tombstone-body', Uint8Array.of(3));

  // NVRAM images (mode 1: also boot on them).
  const slot = { epoch: 5, count: 2, indexSum: new Uint8Array(32).fill(9), auditSeq: 4, auditHead: new Uint8Array(32).fill(8) };
  const fresh = freshNvramState(new Uint8Array(16).fill(1), new Uint8Array(32).fill(2));
  put('nvram-state', 'fresh', Uint8Array.of(1, ...encodeNvramState(fresh)));
  put('nvram-state', 'with-intent', Uint8Array.of(1, ...encodeNvramState({ ...fresh, committed: slot, intent: { ...slot, epoch: 6, count: 3 } })));
  put('nvram-state', 'zeroized', Uint8Array.of(1, ...encodeNvramState({ ...freshNvramState(new Uint8Array(16), undefined), flags: FLAG_ZEROIZED })));
  /** An image of layout 2 (before the issuer hash): layout 3's encoding of a state with none, without its last field. */
  const layout2 = (st: Parameters<typeof encodeNvramState>[0]) => {
    const b = encodeNvramState({ ...st, authHash: new Uint8Array(16) });
    const v2 = b.slice(0, b.length - 16);
    v2[4] = 2;
    return v2;
  };
  put('nvram-state', 'layout-2', Uint8Array.of(1, ...layout2(fresh)));

  // The live enclave: a canary vault as the fuzz targets open it.
  const v = await FuzzVault.open(1);
  put('nvram-state', 'canary-vault', Uint8Array.of(1, ...v.platform.nvram.read()));
  // The canary vault as it was before issuers existed: a boot provisioned with the fuzz issuer set adopts it.
  put('nvram-state', 'layout-2-canary-vault', Uint8Array.of(1, ...layout2(decodeNvramState(v.platform.nvram.read())!)));
  const pk = v.hpkePublicKey;
  const rngA = drbg('seed-client', 0);
  const optsOf = async (id: typeof CANARY_A.suite) => ({ suite: v.suites.get(id)!, context: OPAQUE_CONTEXT, rng: rngA, ksf: identityKsf });
  const seedPassword = te.encode('seed password (not a canary)');
  const ke1A = clientLoginStart(await optsOf(CANARY_A.suite), seedPassword).ke1;
  const ke1B = clientLoginStart(await optsOf(CANARY_B.suite), seedPassword).ke1;
  const fA = await opaqueFixture(CANARY_A.suite);
  const otherKey = new Uint8Array(createHash('sha256').update('bkv-fuzz/seed/other-backup-key').digest());
  // Client operations on canary A, without their token (added per target below).
  const clientOps: Record<string, ClientOp> = {
    RegisterStart: { type: 'RegisterStart', suite: SUITE_CODE[CANARY_A.suite], request: fA.messages.RegistrationRequest, attemptLimit: 5, ksf: identityKsf.params, pacing: 0 },
    RegisterFinish: {
      type: 'RegisterFinish',
      stageId: new Uint8Array(16).fill(0x11),
      record: fA.messages.RegistrationRecord,
      backupKey: otherKey,
      authorization: encodeKeyAuthorization(otherKey, new Uint8Array(16).fill(0x11), CANARY_A.recordId),
    },
    LoginStart: { type: 'LoginStart', suite: SUITE_CODE[CANARY_A.suite], ke1: ke1A },
    LoginFinish: { type: 'LoginFinish', sessionId: new Uint8Array(16).fill(0x22), ke3: new Uint8Array(64).fill(0x33) },
    Status: { type: 'Status' },
    Delete: { type: 'Delete', authorization: undefined },
  };
  const stored = (id: Uint8Array) => v.store.get(Buffer.from(id).toString('hex'))?.blob ?? new Uint8Array(0);
  /** A batch op: `req` sealed to the vault, with the issuer's valid token for `recordId` unless it carries its own. */
  const op = async (opId: number, recordId: Uint8Array, req: ClientOp) => ({
    opId,
    recordId,
    stored: stored(recordId),
    request: await sealDeterministic(pk, recordId, encodeMessage(ClientRequests, { auth: tokenOf(recordId), ...req } as ClientRequest)),
  });
  const host = (flags: number, req: HostRequest) => Uint8Array.of(flags, ...encodeMessage(HostRequests, req));
  put('enclave-host', 'info', host(0, { type: 'Info' }));
  put('enclave-host', 'load-chunk', host(8, { type: 'LoadChunk', entries: [...v.store.values()] }));
  put('enclave-host', 'load-end', host(8, { type: 'LoadEnd' }));
  for (const [type, req] of Object.entries(clientOps)) {
    put('enclave-host', `batch-${kebab(type)}`, host(1 | 2 | 4, { type: 'Batch', epoch: 1, ops: [await op(0, CANARY_A.recordId, req)] }));
  }
  put(
    'enclave-host',
    'batch-mixed',
    host(1 | 2 | 4, {
      type: 'Batch',
      epoch: 1,
      ops: [
        await op(0, CANARY_B.recordId, { type: 'LoginStart', suite: SUITE_CODE[CANARY_B.suite], ke1: ke1B }),
        await op(1, IDS.unknown, { type: 'LoginStart', suite: SUITE_CODE[CANARY_A.suite], ke1: ke1A }),
        await op(2, IDS.otherPartition, { type: 'Status' }),
        await op(3, CANARY_A.recordId, { type: 'Status' }),
        await op(4, IDS.scratch[0]!, clientOps.RegisterStart!),
      ],
    }),
  );
  // Logins on canary B without a valid token: no token, garbage, canary A's, an expired one (nothing may be charged).
  const loginB: ClientOp = { type: 'LoginStart', suite: SUITE_CODE[CANARY_B.suite], ke1: ke1B };
  put(
    'enclave-host',
    'batch-bad-tokens',
    host(1 | 2 | 4, {
      type: 'Batch',
      epoch: 1,
      ops: [
        await op(0, CANARY_B.recordId, { ...loginB, auth: new Uint8Array(0) }),
        await op(1, CANARY_B.recordId, { ...loginB, auth: te.encode('not a token') }),
        await op(2, CANARY_B.recordId, { ...loginB, auth: tokenOf(CANARY_A.recordId) }),
        await op(3, CANARY_B.recordId, { ...loginB, auth: te.encode(mintFuzzToken(CANARY_B.recordId, FUZZ_EPOCH_MS - 7200_000)) }),
        await op(4, CANARY_B.recordId, { type: 'Status' }),
      ],
    }),
  );
  // Behind a pending batch (bit 4): staged, then committed the honest way; and a LoginStart staged and left.
  put('enclave-host', 'batch-staged', host(1 | 2 | 4 | 16, { type: 'Batch', epoch: 2, ops: [await op(0, CANARY_B.recordId, { type: 'Status' })] }));
  put('enclave-host', 'batch-staged-login', host(1 | 2 | 16, { type: 'Batch', epoch: 2, ops: [await op(0, CANARY_B.recordId, { type: 'LoginStart', suite: SUITE_CODE[CANARY_B.suite], ke1: ke1B })] }));
  put('enclave-host', 'prepare', host(1 | 16, { type: 'Prepare', epoch: 2 }));
  put('enclave-host', 'commit', host(1, { type: 'Commit', epoch: 1 }));
  put('enclave-host', 'abort', host(1, { type: 'Abort', epoch: 1 }));
  put('enclave-host', 'zeroize', host(0, { type: 'Zeroize', auth: new Uint8Array(32).fill(0x44) }));
  const events = [];
  for (let i = 0; i < 2; i++) {
    const r = await v.call({ type: 'Batch', epoch: v.epoch + 1, ops: [await op(0, CANARY_B.recordId, { type: 'LoginStart', suite: SUITE_CODE[CANARY_B.suite], ke1: ke1B })] });
    if (r.type === 'Prepared') events.push(...r.audit.map((e) => decodeFields(AuditEventSchema, e.bytes)));
    await v.call({ type: 'Commit', epoch: v.epoch + 1 });
  }
  put('enclave-host', 'audit-verify', host(0, { type: 'AuditVerify', fromSeq: 0, fromHead: new Uint8Array(32), events, toSeq: 0, toHead: new Uint8Array(32), anchor: new Uint8Array(0), auth: new Uint8Array(0) }));

  // Client operations into the handlers: selector byte (see targets/enclave-client.ts), then the
  // body, whose auth field is a token kind's code (the target mints the token at its clock).
  const body = (req: ClientOp, kind: TokenKind = 'valid') => encodeMessage(ClientRequests, { ...req, auth: tokenCode(kind) } as ClientRequest);
  put('enclave-client', 'register-start', Uint8Array.of(3, ...body(clientOps.RegisterStart!)));
  put('enclave-client', 'register-finish', Uint8Array.of(0 | (3 << 2) | 0x40, ...body(clientOps.RegisterFinish!)));
  put('enclave-client', 'register-finish-unauthorized', Uint8Array.of(0 | (3 << 2) | 0x20, ...body(clientOps.RegisterFinish!)));
  put('enclave-client', 'register-finish-session', Uint8Array.of(0 | (4 << 2) | 0x40, ...body(clientOps.RegisterFinish!)));
  put('enclave-client', 'login-start', Uint8Array.of(0, ...body(clientOps.LoginStart!)));
  put('enclave-client', 'login-start-p256', Uint8Array.of(1, ...body({ type: 'LoginStart', suite: SUITE_CODE[CANARY_B.suite], ke1: ke1B })));
  put('enclave-client', 'login-finish', Uint8Array.of(0 | (1 << 2) | 0x40, ...body(clientOps.LoginFinish!)));
  put('enclave-client', 'login-finish-wrong', Uint8Array.of(1 | (1 << 2) | 0x20, ...body({ type: 'LoginFinish', sessionId: new Uint8Array(16), ke3: new Uint8Array(32).fill(1) })));
  put('enclave-client', 'login-finish-expired', Uint8Array.of(0 | (5 << 2) | 0x40, ...body(clientOps.LoginFinish!)));
  put('enclave-client', 'login-start-replayed', Uint8Array.of(0x80, ...body(clientOps.LoginStart!)));
  put('enclave-client', 'login-finish-replayed', Uint8Array.of(0 | (1 << 2) | 0x40 | 0x80, ...body(clientOps.LoginFinish!)));
  put('enclave-client', 'status', Uint8Array.of(0, ...body(clientOps.Status!)));
  put('enclave-client', 'delete', Uint8Array.of(3, ...body(clientOps.Delete!)));
  put('enclave-client', 'login-start-no-token', Uint8Array.of(0, ...body(clientOps.LoginStart!, 'empty')));
  put('enclave-client', 'login-start-expired-token', Uint8Array.of(1, ...body({ type: 'LoginStart', suite: SUITE_CODE[CANARY_B.suite], ke1: ke1B }, 'expired')));
  put('enclave-client', 'login-start-other-record-token', Uint8Array.of(0, ...body(clientOps.LoginStart!, 'other-record')));
  put('enclave-client', 'login-finish-forged-token', Uint8Array.of(0 | (1 << 2) | 0x40, ...body(clientOps.LoginFinish!, 'forged-signature')));
  put('enclave-client', 'register-finish-garbage-token', Uint8Array.of(0 | (4 << 2) | 0x40, ...body(clientOps.RegisterFinish!, 'garbage')));
  put('enclave-client', 'delete-wrong-audience-token', Uint8Array.of(0, ...body(clientOps.Delete!, 'wrong-audience')));
  // A literal token (valid at the vault's start clock): the fuzzer mutates the JWT itself.
  put('enclave-client', 'login-start-literal-token', Uint8Array.of(0, ...encodeMessage(ClientRequests, { ...clientOps.LoginStart!, auth: tokenOf(CANARY_A.recordId) } as ClientRequest)));

  // The HTTP service: selector byte (see targets/http.ts), then the payload.
  const http = (sel: number, payload: Uint8Array | string) => Uint8Array.of(sel, ...(typeof payload === 'string' ? te.encode(payload) : payload));
  put('http', 'get-vault', http(0x02 | (0 << 2), ''));
  put('http', 'get-health', http(0x03 | (0 << 2), ''));
  put('http', 'get-metrics', http(0x03 | (1 << 2), ''));
  put('http', 'post-ops-status', http(0x00 | (1 << 2) | 0x40, body(clientOps.Status!)));
  put('http', 'post-ops-login-start', http(0x00 | (1 << 2) | 0x40, body(clientOps.LoginStart!)));
  put('http', 'post-ops-login-finish', http(0x00 | (1 << 2) | 0x40, body(clientOps.LoginFinish!)));
  put('http', 'post-ops-register-start', http(0x01 | (1 << 2) | 0x40, Uint8Array.of(IDS.scratch[0]!.length, ...IDS.scratch[0]!, ...body(clientOps.RegisterStart!))));
  put('http', 'post-ops-unsealed', http(0x00 | (1 << 2), new Uint8Array(80).fill(0x61)));
  put('http', 'post-ops-json-body', http(0x00 | (1 << 2) | 0x20, '{"message":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0-P0BBQkNERUZHSElKS0xNTk8"}'));
  put('http', 'post-ops-wrong-type', http(0x00 | (1 << 2) | 0x10 | 0x40, body(clientOps.Status!)));
  put('http', 'post-ops-login-start-expired-token', http(0x00 | (1 << 2) | 0x40, body(clientOps.LoginStart!, 'expired')));
  put('http', 'post-ops-login-start-no-token', http(0x00 | (1 << 2) | 0x40, body(clientOps.LoginStart!, 'empty')));
  put('http', 'raw-get', http(0x80, 'GET /health HTTP/1.1\r\nHost: vault\r\n\r\n'));
  put('http', 'raw-post', http(0x80, 'POST /v1/records/Y2FuYXJ5LWE/ops HTTP/1.1\r\nHost: vault\r\nContent-Type: application/json\r\nContent-Length: 17\r\n\r\n{"message":"AAA"}'));

  // The PKCS#11 boundary: one program per operation (see targets/pkcs11-token.ts).
  {
    const iv = new Uint8Array(12).fill(3);
    const aad = te.encode('aad');
    const c = createCipheriv('aes-256-gcm', PKCS11_PLANTED.aes, iv);
    c.setAAD(aad);
    const ct = new Uint8Array(Buffer.concat([c.update(te.encode('plaintext')), c.final(), c.getAuthTag()]));
    const lp = (b: Uint8Array | string) => {
      const x = typeof b === 'string' ? te.encode(b) : b;
      return [x.length, ...x];
    };
    const e = createECDH('prime256v1');
    e.setPrivateKey(createHash('sha256').update('bkv-fuzz/seed/p256-peer').digest());
    put('pkcs11-token', 'decrypt-gcm', Uint8Array.of(0, ...lp(iv), ...lp(aad), ...lp(ct)));
    put('pkcs11-token', 'encrypt-gcm', Uint8Array.of(1, ...lp(iv), ...lp(aad), ...lp('plaintext')));
    put('pkcs11-token', 'hmac', Uint8Array.of(2, 0, ...lp('data'), 2, 1, ...lp('data')));
    put('pkcs11-token', 'ecdh-x', Uint8Array.of(3, ...lp(e.getPublicKey(null, 'uncompressed')), 3, ...lp(e.getPublicKey(null, 'compressed'))));
    put('pkcs11-token', 'find-key', Uint8Array.of(4, ...lp('bkv-seal'), 4, ...lp('bkv-nothing')));
    put('pkcs11-token', 'random', Uint8Array.of(5, 0, 32));
    put('pkcs11-token', 'get-attribute-value', Uint8Array.of(6, 0, 3, 0, 0, 0, 3, 0, 0, 1, 0, 0));
    put('pkcs11-token', 'find-objects', Uint8Array.of(7, 1, 3, 3, ...lp('bkv-seal')));
  }

  // Token faults: one fault on one call of each token method (indexes from a fault-free run).
  await tokenFaults.setup({ seed: 1 });
  await tokenFaults.fuzz(new Uint8Array(0));
  const log = tokenFaults.lastCallLog();
  put('token-faults', 'none', new Uint8Array(0));
  put('token-faults', 'none-ristretto255', Uint8Array.of(1));
  const methods = [...new Set(log)];
  methods.forEach((m, i) => {
    const at = log.lastIndexOf(m);
    if (at < 256) put('token-faults', kebab(m), Uint8Array.of(at, i % 7));
  });

  for (const [file, bytes] of fleetWireSeeds()) put('fleet-wire', file, bytes);

  // No seed may carry a planted secret.
  const scanner = new SecretScanner(await allCanarySecrets());
  for (const [file, bytes] of seeds) scanner.scan(`seed ${file}`, bytes);

  let bad = 0;
  for (const [file, bytes] of seeds) {
    const path = join(SEEDS_DIR, file);
    if (check) {
      if (!existsSync(path) || !Buffer.from(readFileSync(path)).equals(Buffer.from(bytes))) {
        console.error(`differs: ${file}`);
        bad++;
      }
      continue;
    }
    mkdirSync(join(path, '..'), { recursive: true });
    writeFileSync(path, bytes);
  }
  if (!check) {
    // Drop seeds this script no longer writes.
    const { readdirSync } = await import('node:fs');
    for (const dir of readdirSync(SEEDS_DIR)) {
      for (const f of readdirSync(join(SEEDS_DIR, dir))) if (!seeds.has(`${dir}/${f}`)) rmSync(join(SEEDS_DIR, dir, f));
    }
  }
  console.log(`${check ? 'checked' : 'wrote'} ${seeds.size} seeds for ${new Set([...seeds.keys()].map((k) => k.split('/')[0])).size} targets${bad ? `, ${bad} differ` : ''}`);
  if (bad) process.exit(1);
}

await main();
