/**
 * Fuzz target: client operations that reach the enclave's handlers. The input is a ClientRequest
 * body (mutated from one seed per request type) behind one selector byte; the driver seals it
 * end to end to the live enclave (lib/vault.ts, canaries planted), so it gets past the envelope
 * and the codec into ops.ts, and opens the answer as the client would.
 *
 * Selector byte:
 *   bits 0-1  record: 0 canary A (ristretto255), 1 canary B (P-256, limit 3), 2 an id never
 *             registered (fake record path), 3 a scratch id (inputs may register it)
 *   bits 2-4  prologue the driver runs first: 0 none; 1 login with the right password (a session
 *             and its valid KE3); 2 login with a wrong password; 3 RegisterStart (a stage);
 *             4 a full recovery (an authorized session) then RegisterStart; 5 as 1, then the clock
 *             passes the session lifetime; 6 as 3, then the clock passes the stage lifetime;
 *             7 two logins with the right password
 *   bit 5     substitute the prologue's session id (LoginFinish) or stage id (RegisterFinish)
 *   bit 6     authorize: also substitute the valid KE3, or the driver's registration record and a
 *             valid authorization (the legitimate paths, with the other fields still fuzzed)
 *   bit 7     send the sealed request twice in the same batch (a replay by the host)
 * The request's `auth` field (the issuer's token, lib/auth.ts): one byte is a code the driver
 * replaces with a token of that kind for the record at the vault's clock (valid, empty, another
 * record's, expired, for another audience, from an unknown issuer, a forged signature, not yet
 * valid, too long-lived, garbage, not UTF-8, alg none); empty stays empty; longer is sent as is.
 *
 * Oracle, per input (besides lib/vault.ts's checks on every byte):
 *   - a request whose token the driver chose bad is answered with exactly the fault for that kind
 *     (AuthRequired, AuthInvalid, AuthExpired, AuthWrongSubject, AuthWrongAudience), every copy,
 *     and the Status after it shows the record as it was: no guess charged, no lock, no change
 *     without a valid token;
 *   - `Recovered` only for a LoginFinish carrying a session id and KE3 the driver produced with
 *     the right password, once per session, and the released key unwraps to the record's key;
 *   - a live record is replaced (`Registered`) only with an authorization the driver produced;
 *   - every LoginStarted on a live record charged exactly one guess (the count it reports);
 *   - a Status after the input (same batch): attempts never increase and a lock never lifts
 *     without one of the above;
 *   - a replayed request (one HPKE context, so one response key) is never answered twice under
 *     the same nonce with different plaintexts (AES-GCM key and nonce reuse, end to end);
 *   - the enclave still answers Info with state ready, and no untyped exception reached its
 *     fault conversion.
 */
import { decodeMessage, encodeMessage } from '../../../enclave/api/codec.ts';
import type { ClientRequest, ClientResponse } from '../../../enclave/api/messages.ts';
import { ClientRequests, MAX_CLIENT_MESSAGE } from '../../../enclave/api/messages.ts';
import type { SuiteId } from '../../../enclave/opaque/suite.ts';
import { authFor, EXPECTED_FAULT } from '../lib/auth.ts';
import type { TokenKind } from '../lib/auth.ts';
import { CANARY_A, CANARY_B } from '../lib/canary.ts';
import type { CanaryRecord } from '../lib/canary.ts';
import { equalBytes, hex, violation } from '../lib/oracle.ts';
import { describeClient, FuzzVault, IDS, VaultSlot } from '../lib/vault.ts';
import type { LoginHandle, OpenedResult } from '../lib/vault.ts';

export const name = 'enclave-client';
export const weight = 4;
export const maxInputLength = 1 + MAX_CLIENT_MESSAGE;
export const timeoutMs = 4000;

const te = new TextEncoder();
const REPLACEMENT_PASSWORD = te.encode('bkv-fuzz replacement password');
const SESSION_TTL_MS = 120_000;
const STAGE_TTL_MS = 300_000;

const slot = new VaultSlot();
let last: string | undefined;

export async function setup(o: { seed?: number } = {}): Promise<void> {
  await slot.open(o.seed);
}

export async function reset(): Promise<void> {
  await slot.reopen();
}

export async function teardown(): Promise<void> {
  slot.close();
}

export function outcome(): string | undefined {
  return last;
}

interface Rec {
  recordId: Uint8Array;
  suite: SuiteId;
  canary?: CanaryRecord;
}

function pickRecord(sel: number, data: Uint8Array): Rec {
  switch (sel & 3) {
    case 0:
      return { recordId: CANARY_A.recordId, suite: CANARY_A.suite, canary: CANARY_A };
    case 1:
      return { recordId: CANARY_B.recordId, suite: CANARY_B.suite, canary: CANARY_B };
    case 2:
      return { recordId: IDS.unknown, suite: data.length & 1 ? 'P256-SHA256' : 'ristretto255-SHA512' };
    default:
      return { recordId: IDS.scratch[data.length & 1]!, suite: data.length & 2 ? 'P256-SHA256' : 'ristretto255-SHA512' };
  }
}

interface Ctx {
  /** Logins the driver started, with their valid KE3 when the password was right. */
  sessions: (LoginHandle & { used?: boolean })[];
  stage?: { stageId: Uint8Array; record: Uint8Array; password: Uint8Array };
  authSession?: { sessionId: Uint8Array; sessionKey: Uint8Array };
  reset: boolean;
}

const label = (r: Rec) => new TextDecoder().decode(r.recordId);

/** The password the driver believes opens the record (the replacement one when it does not know). */
function passwordOf(vault: FuzzVault, r: Rec): Uint8Array {
  const t = vault.tracked.get(hex(r.recordId));
  return t?.known && t.present ? t.password : REPLACEMENT_PASSWORD;
}

/** The per-response rules (see the header); updates the tracked state. */
async function observe(vault: FuzzVault, r: Rec, req: ClientRequest | null, res: ClientResponse, ctx: Ctx, where: string): Promise<void> {
  const key = hex(r.recordId);
  const t = vault.tracked.get(key);
  const live = !!t && t.present && !t.locked;
  switch (res.type) {
    case 'Recovered': {
      const s =
        req?.type === 'LoginFinish'
          ? ctx.sessions.find((x) => x.ke3 && x.sessionKey && equalBytes(x.sessionId, req.sessionId) && equalBytes(x.ke3, req.ke3))
          : undefined;
      if (!s) violation('released-without-ke3', `${where} on ${label(r)} answered Recovered without a valid KE3 from the driver (request ${req?.type ?? 'undecodable'})`);
      if (s.used) violation('session-reused', `${where}: one login session released the key twice`);
      s.used = true;
      const k = await vault.unwrap(s.sessionKey!, res.wrappedKey);
      if (!k) violation('bad-release', `${where}: the released key does not unwrap under the session key`);
      if (t?.known && !equalBytes(k, t.backupKey)) violation('wrong-key', `${where}: the released key is not ${label(r)}'s backup key`);
      if (t && res.attemptsRemaining !== t.limit) violation('attempts-mismatch', `${where}: Recovered reports ${res.attemptsRemaining} attempts, the limit is ${t.limit}`);
      if (t) t.attempts = res.attemptsRemaining;
      ctx.reset = true;
      return;
    }
    case 'Registered': {
      if (req?.type !== 'RegisterFinish') violation('protocol', `${where}: Registered answers a ${req?.type ?? 'undecodable'} request`);
      const authorized = validAuthorizations(vault, r, req, ctx).some((a) => req.authorization && equalBytes(a, req.authorization));
      if (live && !authorized) violation('unauthorized-replace', `${where}: live record ${label(r)} was replaced without an authorization the driver produced`);
      const driverRecord = !!ctx.stage && equalBytes(req.stageId, ctx.stage.stageId) && equalBytes(req.record, ctx.stage.record);
      const backupKey = req.backupKey ?? (live ? t!.backupKey : undefined);
      if (!live && !req.backupKey) violation('protocol', `${where}: a new registration of ${label(r)} without a backup key was accepted`);
      vault.tracked.set(key, {
        present: true,
        locked: false,
        attempts: res.attemptsRemaining,
        limit: res.attemptLimit,
        backupKey: backupKey ?? new Uint8Array(0),
        password: driverRecord ? ctx.stage!.password : new Uint8Array(0),
        known: driverRecord && !!backupKey && (live ? t!.known || !!req.backupKey : true),
      });
      ctx.reset = true;
      return;
    }
    case 'LoginStarted':
      if (live) {
        if (res.attemptsRemaining !== t!.attempts - 1) {
          violation('guess-not-charged', `${where}: LoginStarted on ${label(r)} reports ${res.attemptsRemaining} attempts remaining, expected ${t!.attempts - 1} (one guess charged)`);
        }
        t!.attempts -= 1;
      }
      return;
    case 'WrongPassword':
      if (live && res.attemptsRemaining > t!.attempts) violation('guess-refunded', `${where}: WrongPassword reports ${res.attemptsRemaining} attempts, ${t!.attempts} were left`);
      if (t && res.locked === 1) {
        t.locked = true;
        t.attempts = 0;
      }
      return;
    case 'Deleted':
      if (t) t.present = false;
      return;
    default:
      return;
  }
}

/** The authorizations the driver can produce for a RegisterFinish's stage id on this record. */
function validAuthorizations(vault: FuzzVault, r: Rec, req: Extract<ClientRequest, { type: 'RegisterFinish' }>, ctx: Ctx): Uint8Array[] {
  const out: Uint8Array[] = [];
  const t = vault.tracked.get(hex(r.recordId));
  if (t?.known && t.present && t.backupKey.length === 32) out.push(FuzzVault.keyAuthorization(t.backupKey, req.stageId, r.recordId));
  if (ctx.authSession) out.push(FuzzVault.sessionAuthorization(ctx.authSession.sessionId, ctx.authSession.sessionKey, req.stageId, r.recordId));
  return out;
}

async function driverLogin(vault: FuzzVault, r: Rec, ctx: Ctx, right: boolean): Promise<LoginHandle | null> {
  const pw = right ? passwordOf(vault, r) : te.encode('a wrong password');
  const h = await vault.loginStart(r.recordId, r.suite, pw);
  await observe(vault, r, { type: 'LoginStart', auth: new Uint8Array(0), suite: 0, ke1: new Uint8Array(0) }, h.res, ctx, 'the driver\'s LoginStart');
  if (!('sessionId' in h)) return null;
  ctx.sessions.push(h);
  return h;
}

async function driverFinish(vault: FuzzVault, r: Rec, ctx: Ctx, h: LoginHandle): Promise<void> {
  const req = vault.withAuth(r.recordId, { type: 'LoginFinish', sessionId: h.sessionId, ke3: h.ke3 ?? new Uint8Array(vault.suites.get(r.suite)!.Nm) });
  const res = await vault.client(r.recordId, req, 'the driver\'s LoginFinish');
  await observe(vault, r, req, res, ctx, 'the driver\'s LoginFinish');
  if (res.type === 'Recovered') ctx.authSession = { sessionId: h.sessionId, sessionKey: h.sessionKey! };
}

async function driverStage(vault: FuzzVault, r: Rec, ctx: Ctx): Promise<void> {
  const st = await vault.registerStart(r.recordId, r.suite, REPLACEMENT_PASSWORD, 5);
  if ('stageId' in st) ctx.stage = { stageId: st.stageId, record: st.record, password: REPLACEMENT_PASSWORD };
}

async function prologue(vault: FuzzVault, r: Rec, code: number, ctx: Ctx): Promise<void> {
  switch (code) {
    case 1:
      await driverLogin(vault, r, ctx, true);
      return;
    case 2:
      await driverLogin(vault, r, ctx, false);
      return;
    case 3:
      await driverStage(vault, r, ctx);
      return;
    case 4: {
      const h = await driverLogin(vault, r, ctx, true);
      if (h) await driverFinish(vault, r, ctx, h);
      await driverStage(vault, r, ctx);
      return;
    }
    case 5:
      await driverLogin(vault, r, ctx, true);
      vault.platform.clock.t += SESSION_TTL_MS + 1000;
      return;
    case 6:
      await driverStage(vault, r, ctx);
      vault.platform.clock.t += STAGE_TTL_MS + 1000;
      return;
    case 7:
      await driverLogin(vault, r, ctx, true);
      await driverLogin(vault, r, ctx, true);
      return;
    default:
      return;
  }
}

/** Applies the selector's substitutions to a decoded request. */
function substitute(vault: FuzzVault, r: Rec, req: ClientRequest, ctx: Ctx, subst: boolean, authorize: boolean): ClientRequest {
  const s = ctx.sessions[0];
  if (req.type === 'LoginFinish' && s) {
    if (subst || authorize) req = { ...req, sessionId: s.sessionId };
    if (authorize && s.ke3) req = { ...req, ke3: s.ke3 };
  }
  if (req.type === 'RegisterFinish' && ctx.stage) {
    if (subst || authorize) req = { ...req, stageId: ctx.stage.stageId };
    if (authorize) {
      const auths = validAuthorizations(vault, r, req, ctx);
      req = { ...req, record: ctx.stage.record, authorization: auths[auths.length - 1] ?? req.authorization };
    }
  }
  return req;
}

export async function fuzz(data: Buffer | Uint8Array): Promise<void> {
  const vault = await slot.current();
  const input = new Uint8Array(data);
  const sel = input[0] ?? 0;
  let body: Uint8Array = input.subarray(1);
  if (body.length === 0) body = Uint8Array.of(1);
  const r = pickRecord(sel, input);
  const code = (sel >> 2) & 7;
  const ctx: Ctx = { sessions: [], reset: false };
  last = undefined;

  await vault.replant();
  await prologue(vault, r, code, ctx);

  let req: ClientRequest | null = null;
  try {
    req = decodeMessage(ClientRequests, body);
  } catch {
    req = null;
  }
  let kind: TokenKind | null = null;
  if (req) {
    const other = equalBytes(r.recordId, CANARY_A.recordId) ? CANARY_B.recordId : CANARY_A.recordId;
    const a = authFor(req.auth, r.recordId, other, vault.platform.clock.t, (id) => vault.tokenBytes(id));
    kind = a.kind;
    const replaced = a.auth !== req.auth;
    if (replaced) req = { ...req, auth: a.auth };
    if (sel & 0x60) req = substitute(vault, r, req, ctx, (sel & 0x20) !== 0, (sel & 0x40) !== 0);
    if (replaced || sel & 0x60) body = encodeMessage(ClientRequests, req);
  }
  // The record as the driver knows it after the prologue, before the fuzzed request.
  const t0 = vault.tracked.get(hex(r.recordId));
  const before = t0 ? { present: t0.present, locked: t0.locked, attempts: t0.attempts } : null;
  const times = sel & 0x80 ? 2 : 1;
  const item = { recordId: r.recordId, body, where: 'the fuzzed request' };
  const status = { recordId: r.recordId, body: encodeMessage(ClientRequests, vault.withAuth(r.recordId, { type: 'Status' })), where: 'the driver\'s Status' };
  const results: OpenedResult[] = await vault.clientBatch([...new Array<typeof item>(times).fill(item), status]);
  const fuzzed = results.slice(0, times);
  const st = results[times]!.res;
  if (req && kind && kind !== 'valid') {
    // No operation runs without a valid token: the fault for the token's kind, and the record unchanged.
    const want = EXPECTED_FAULT[kind];
    for (const x of fuzzed) {
      if (x.res.type !== 'Fault' || x.res.code !== want) violation('auth-bypass', `${req.type} on ${label(r)} with a token of kind ${kind} was answered ${describeClient(x.res)}, not Fault ${want}`);
    }
    if (before?.present) {
      if (st.type !== 'StatusResult') violation('changed-without-token', `${label(r)} answers Status with ${describeClient(st)} after a ${req.type} with a token of kind ${kind}`);
      if ((st.locked === 1) !== before.locked || (!before.locked && st.attemptsRemaining !== before.attempts)) {
        violation('guess-without-token', `${label(r)}: ${before.attempts} attempts${before.locked ? ' (locked)' : ''} before a ${req.type} with a token of kind ${kind}, ${st.attemptsRemaining}${st.locked ? ' (locked)' : ''} after`);
      }
    }
  }
  for (const x of fuzzed) await observe(vault, r, req, x.res, ctx, 'the fuzzed request');
  // A replay opens to the same HPKE context, so both answers are under one response key: their
  // nonces (the first 12 bytes of a sealed answer) must differ, or the plaintexts must be equal.
  const [a, b] = fuzzed;
  if (times === 2 && a!.sealed && b!.sealed && !equalBytes(a!.plain, b!.plain) && (a!.raw.length < 12 || equalBytes(a!.raw.subarray(0, 12), b!.raw.subarray(0, 12)))) {
    violation(
      'e2e-nonce-reuse',
      `a replayed ${req?.type ?? 'request'} was answered twice under one response key and nonce with different plaintexts (${describeClient(a!.res)}, ${describeClient(b!.res)})`,
    );
  }
  // The Status ran after the fuzzed op in the same batch: against the tracked state (what was
  // there before the prologue, minus the guesses charged since), unless a legitimate reset.
  vault.applyStatus(r.recordId, st, ctx.reset, `${req?.type ?? 'an undecodable request'} (prologue ${code})`);
  last = `${code}/${sel & 0xe0}/${kind ?? (req ? 'literal' : '-')}/${req?.type ?? '-'}/${fuzzed.map((x) => (x.res.type === 'Fault' ? `F${x.res.code}` : x.res.type)).join(',')}`;
  await vault.endInput('the fuzzed client request');
}
