/**
 * One handler per client operation (the vault rules of the design, enforced here):
 *
 * - RegisterStart / RegisterFinish: two-phase registration. The stage id is single use and
 *   expires, so a replayed or retried finish can not re-register; replacing a live record needs
 *   proof of its current backup key or of its current password (a recovered session).
 * - LoginStart charges one guess in the record it writes, in the same result as its KE2 (and only
 *   when the record's guess pacing allows one now, api/pacing.ts: otherwise it answers RetryLater
 *   and charges nothing); batch.ts releases the KE2 only once that write is durable. Unknown
 *   records get the RFC 9807 §6.3.2.2 fake credential response from a per-id deterministic fake
 *   record.
 * - LoginFinish checks KE3; only then is the backup key released, wrapped under a key derived
 *   from the OPAQUE session key, and the count reset, ending the record's other login sessions
 *   (so at most attemptLimit wrong guesses are evaluated between two successes). At the limit
 *   the secrets are zeroized and the record is locked for good.
 * - Status, and Delete (of a live record: with the same proof as replacing it).
 * Handlers return the response, the record to write, and the audit events; compute.ts seals and
 * indexes them, batch.ts commits. What they put in the session tables (sessions.ts) stays pending
 * until that commit; a handler that makes an entry asks for room before it computes anything,
 * so a full table refuses the op (TooManySessions) before it charges a guess.
 */
import { EnclaveFault, Handling } from '../api/codes.ts';
import type { ClientRequest, ClientResponse } from '../api/messages.ts';
import { AUDIT_KIND, STAGE_ID_LEN, SESSION_ID_LEN, SUITE_CODE } from '../api/messages.ts';
import type { AuthPurpose } from '../api/authorize.ts';
import { isPacing, pacingDelayMs } from '../api/pacing.ts';
import { LABELS } from '../api/labels.ts';
import { AUTH_KIND_BACKUP_KEY, authorizationMac, decodeAuthorization } from '../api/authorize.ts';
import type { RandomSource } from '../opaque/bytes.ts';
import { ctEqual } from '../opaque/bytes.ts';
import { toHex } from '../opaque/bytes.ts';
import { DEFAULT_ARGON2ID, argon2idKsf, encodeKsfParams, ksfFromParams } from '../opaque/ksf.ts';
import { decodeRegistrationRecord } from '../opaque/encoding.ts';
import { deriveServerKeyPair, serverLoginFinish, serverLoginStart, serverRegistrationResponse } from '../opaque/server.ts';
import type { FakeRecord, ServerOptions } from '../opaque/server.ts';
import type { Suite, SuiteId } from '../opaque/suite.ts';
import type { EnclaveKeys } from './keys.ts';
import { STATUS_ACTIVE, STATUS_LOCKED, zeroizeRecord } from './record.ts';
import type { VaultRecord } from './record.ts';
import type { ExpiringTable, LoginSessionTable } from './sessions.ts';
import { backupKeyAuthKeySync, sessionAuthKeySync, wrapForReleaseSync } from './release.ts';

export const DEFAULT_ATTEMPT_LIMIT = 10;

export interface Stage {
  idHex: string;
  suite: SuiteId;
  attemptLimit: number;
  ksf: Uint8Array;
  pacing: number;
}
export interface AuthSession {
  idHex: string;
  registrationId: Uint8Array;
  authKey: Uint8Array;
}

export interface OpContext {
  now: number;
  rng: RandomSource;
  recordId: Uint8Array;
  idHex: string;
  /** The live record (active or locked), or null when none exists. */
  current: VaultRecord | null;
  suites: Map<SuiteId, Suite>;
  keys: EnclaveKeys;
  opaqueContext: Uint8Array;
  stages: ExpiringTable<Stage>;
  sessions: LoginSessionTable;
  authSessions: ExpiringTable<AuthSession>;
  /** The laxest guess pacing a registration may pick (the provisioned AuthConfig.minPacing). */
  minPacing: number;
}

export interface OpResult {
  response: ClientResponse;
  /** A new record content to seal, or 'delete' for a tombstone. */
  write?: VaultRecord | 'delete';
  audit: { kind: number; attemptsRemaining: number }[];
  /**
   * The fake path of an unknown id: do the token work of a record read and write (open, seal,
   * leaves) on a throwaway record and keep nothing, so that its cost is a registered id's.
   */
  mirror?: true;
}

const SUITE_BY_CODE = new Map<number, SuiteId>(Object.entries(SUITE_CODE).map(([k, v]) => [v, k as SuiteId]));

function suiteOf(ctx: OpContext, code: number): Suite {
  const id = SUITE_BY_CODE.get(code);
  const s = id ? ctx.suites.get(id) : undefined;
  if (!s) throw new EnclaveFault(Handling.SuiteMismatch, `unsupported suite ${code}`, 'suite');
  return s;
}

function serverOptions(ctx: OpContext, suite: Suite): ServerOptions {
  return { suite, context: ctx.opaqueContext, rng: ctx.rng };
}

const remaining = (r: VaultRecord) => Math.max(0, r.attemptLimit - r.attemptsUsed);

/** The rules of one operation (synchronous: compute.ts calls it once per operation of a batch). */
export function handle(ctx: OpContext, req: ClientRequest): OpResult {
  switch (req.type) {
    case 'RegisterStart':
      return registerStart(ctx, req);
    case 'RegisterFinish':
      return registerFinish(ctx, req);
    case 'LoginStart':
      return loginStart(ctx, req);
    case 'LoginFinish':
      return loginFinish(ctx, req);
    case 'Status':
      return status(ctx);
    case 'Delete':
      return del(ctx, req.authorization);
    default: {
      const never: never = req;
      throw new EnclaveFault(Handling.BadPayload, `unhandled request ${String(never)}`);
    }
  }
}

function registerStart(ctx: OpContext, req: Extract<ClientRequest, { type: 'RegisterStart' }>): OpResult {
  const suite = suiteOf(ctx, req.suite);
  // 0: the default, or (replacing a live record, as a password change does) its current limit.
  const live = ctx.current !== null && ctx.current.status === STATUS_ACTIVE;
  const limit = req.attemptLimit !== 0 ? req.attemptLimit : live ? ctx.current!.attemptLimit : DEFAULT_ATTEMPT_LIMIT;
  if (limit < 1 || limit > 255) throw new EnclaveFault(Handling.InvalidAttemptLimit, 'attempt limit must be 1..255', 'attemptLimit');
  ksfFromParams(req.ksf); // validates; a typed OpaqueError otherwise
  if (!isPacing(req.pacing)) throw new EnclaveFault(Handling.InvalidPacing, `unknown pacing schedule ${req.pacing}`, 'pacing');
  if (req.pacing < ctx.minPacing) throw new EnclaveFault(Handling.PacingBelowFloor, 'this vault needs a stricter guess pacing', 'pacing');
  ctx.stages.room(ctx.idHex, ctx.now);
  const keys = ctx.keys.server.get(suite.id)!;
  const response = serverRegistrationResponse(serverOptions(ctx, suite), keys, req.request, ctx.recordId);
  const stageId = ctx.rng(STAGE_ID_LEN);
  ctx.stages.put(toHex(stageId), ctx.idHex, { idHex: ctx.idHex, suite: suite.id, attemptLimit: limit, ksf: req.ksf, pacing: req.pacing }, ctx.now);
  return { response: { type: 'RegisterStarted', stageId, response }, audit: [] };
}

function checkAuthorization(ctx: OpContext, current: VaultRecord, authorization: Uint8Array | undefined, nonce: Uint8Array, purpose: AuthPurpose = 'replace'): void {
  const fail = () => new EnclaveFault(Handling.NotAuthorized, `${purpose === 'delete' ? 'deleting' : 'replacing'} a live record needs proof of its password or backup key`, 'authorization');
  if (!authorization) throw fail();
  const a = decodeAuthorization(authorization);
  if (!a) throw fail();
  let key: Uint8Array;
  if (a.kind === AUTH_KIND_BACKUP_KEY) {
    if (current.status !== STATUS_ACTIVE) throw fail();
    key = backupKeyAuthKeySync(current.backupKey);
  } else {
    const s = ctx.authSessions.take(toHex(a.sessionId), ctx.now);
    if (typeof s === 'string' || s.idHex !== ctx.idHex || !ctEqual(s.registrationId, current.registrationId)) throw fail();
    key = s.authKey;
  }
  const ok = ctEqual(authorizationMac(key, nonce, ctx.recordId, purpose), a.mac);
  key.fill(0);
  if (!ok) throw fail();
}

function registerFinish(ctx: OpContext, req: Extract<ClientRequest, { type: 'RegisterFinish' }>): OpResult {
  const stage = ctx.stages.take(toHex(req.stageId), ctx.now);
  if (stage === 'missing') throw new EnclaveFault(Handling.UnknownStage, 'unknown or already used stage', 'stageId');
  if (stage === 'expired') throw new EnclaveFault(Handling.StageExpired, 'stage expired', 'stageId');
  if (stage.idHex !== ctx.idHex) throw new EnclaveFault(Handling.UnknownStage, 'stage belongs to another record', 'stageId');
  const suite = ctx.suites.get(stage.suite)!;
  decodeRegistrationRecord(suite, req.record); // strict: lengths and client_public_key
  const cur = ctx.current;
  const live = cur !== null && cur.status === STATUS_ACTIVE;
  let backupKey: Uint8Array;
  if (live) {
    checkAuthorization(ctx, cur, req.authorization, req.stageId);
    backupKey = req.backupKey ?? Uint8Array.from(cur.backupKey);
  } else {
    if (!req.backupKey) throw new EnclaveFault(Handling.BadProof, 'a new registration must carry its backup key', 'backupKey');
    backupKey = req.backupKey;
  }
  const record: VaultRecord = {
    status: STATUS_ACTIVE,
    suite: SUITE_CODE[suite.id],
    attemptLimit: stage.attemptLimit,
    attemptsUsed: 0,
    registrationId: ctx.rng(16),
    ksf: stage.ksf,
    opaqueRecord: req.record,
    backupKey,
    registeredAt: ctx.now,
    pacing: stage.pacing,
    lastGuessAt: 0,
  };
  const kind = live && !req.backupKey ? AUDIT_KIND.passwordChanged : AUDIT_KIND.registered;
  return {
    response: { type: 'Registered', attemptsRemaining: stage.attemptLimit, attemptLimit: stage.attemptLimit },
    write: record,
    audit: [{ kind, attemptsRemaining: stage.attemptLimit }],
  };
}

/** The deterministic fake record of an unknown id (RFC 9807 §6.3.2.2), stable across attempts. */
function fakeRecordFor(ctx: OpContext, suite: Suite): FakeRecord {
  const h = suite.hash;
  const label = new TextEncoder().encode(LABELS.fakePrefix + suite.id);
  const seed = h.hmac(ctx.keys.fakeKey, label, Uint8Array.of(1), ctx.recordId).slice(0, suite.Nseed);
  const { privateKey, publicKey } = deriveServerKeyPair(suite, seed);
  privateKey.fill(0);
  seed.fill(0);
  const mk = h.hmac(ctx.keys.fakeKey, label, Uint8Array.of(2), ctx.recordId);
  const maskingKey = mk.length >= suite.Nh ? mk.slice(0, suite.Nh) : mk;
  return { clientPublicKey: publicKey, maskingKey };
}

const FAKE_KSF = encodeKsfParams(argon2idKsf(DEFAULT_ARGON2ID));

function loginStart(ctx: OpContext, req: Extract<ClientRequest, { type: 'LoginStart' }>): OpResult {
  const suite = suiteOf(ctx, req.suite);
  const keys = ctx.keys.server.get(suite.id)!;
  const cur = ctx.current;
  const sessionId = ctx.rng(SESSION_ID_LEN);
  const sid = toHex(sessionId);
  if (cur === null) {
    ctx.sessions.room(ctx.idHex, ctx.now);
    const { ke2, state } = serverLoginStart(serverOptions(ctx, suite), keys, req.ke1, ctx.recordId, null, fakeRecordFor(ctx, suite));
    ctx.sessions.put(sid, { idHex: ctx.idHex, suite: suite.id, registrationId: null, state }, ctx.now);
    return {
      response: { type: 'LoginStarted', sessionId, ke2, ksf: FAKE_KSF, attemptsRemaining: DEFAULT_ATTEMPT_LIMIT },
      // The same audit work as a charged guess: one sealed event (the host can not read its kind).
      audit: [{ kind: AUDIT_KIND.unknownId, attemptsRemaining: DEFAULT_ATTEMPT_LIMIT }],
      mirror: true,
    };
  }
  if (cur.status === STATUS_LOCKED) return { response: { type: 'Locked' }, audit: [] };
  if (cur.suite !== SUITE_CODE[suite.id]) throw new EnclaveFault(Handling.SuiteMismatch, 'record uses another suite', 'suite');
  if (cur.attemptsUsed >= cur.attemptLimit) {
    // Every guess is spent. A session still holding the last one may finish; otherwise lock now.
    const pending = pendingSession(ctx, cur);
    if (pending) return { response: { type: 'Locked' }, audit: [] };
    return { ...lock(cur), response: { type: 'Locked' } };
  }
  // Too soon after the last charged guess: nothing charged, nothing computed.
  const wait = pacingWaitMs(cur, ctx.now);
  if (wait > 0) return { response: { type: 'RetryLater', retryAfterSeconds: Math.ceil(wait / 1000), attemptsRemaining: remaining(cur) }, audit: [] };
  // Room first: an op refused for want of it charges nothing.
  ctx.sessions.room(ctx.idHex, ctx.now);
  const { ke2, state } = serverLoginStart(serverOptions(ctx, suite), keys, req.ke1, ctx.recordId, cur.opaqueRecord);
  const next: VaultRecord = { ...cur, attemptsUsed: cur.attemptsUsed + 1, lastGuessAt: ctx.now };
  ctx.sessions.put(sid, { idHex: ctx.idHex, suite: suite.id, registrationId: cur.registrationId, state }, ctx.now);
  return {
    response: { type: 'LoginStarted', sessionId, ke2, ksf: cur.ksf, attemptsRemaining: remaining(next) },
    write: next,
    audit: [{ kind: AUDIT_KIND.guessUsed, attemptsRemaining: remaining(next) }],
  };
}

/**
 * How long (ms) from `now` until the record's pacing allows its next charged guess (0: now). A
 * clock that went back (now before the last guess) waits the whole delay from now.
 */
function pacingWaitMs(cur: VaultRecord, now: number): number {
  const delay = pacingDelayMs(cur.pacing, cur.attemptsUsed);
  if (delay === 0) return 0;
  const since = now - cur.lastGuessAt;
  return since < 0 ? delay : Math.max(0, delay - since);
}

/** A live login session of this registration of the record (it may still hold a charged guess). */
function pendingSession(ctx: OpContext, cur: VaultRecord): boolean {
  return ctx.sessions.hasLive(ctx.idHex, cur.registrationId, ctx.now);
}

function lock(cur: VaultRecord): OpResult {
  const locked: VaultRecord = {
    ...cur,
    status: STATUS_LOCKED,
    attemptsUsed: cur.attemptLimit,
    opaqueRecord: new Uint8Array(0),
    backupKey: new Uint8Array(0),
  };
  zeroizeRecord(cur);
  return {
    response: { type: 'WrongPassword', attemptsRemaining: 0, locked: 1 },
    write: locked,
    audit: [{ kind: AUDIT_KIND.locked, attemptsRemaining: 0 }],
  };
}

/** The audit event of a LoginFinish that releases nothing (its guess was charged at LoginStart). */
const wrongGuess = (cur: VaultRecord) => [{ kind: AUDIT_KIND.wrongPassword, attemptsRemaining: remaining(cur) }];

function loginFinish(ctx: OpContext, req: Extract<ClientRequest, { type: 'LoginFinish' }>): OpResult {
  // Room for the recovered session a valid KE3 makes, before the login session is taken: a
  // refused finish leaves it as it was, to be tried again.
  ctx.authSessions.room(ctx.idHex, ctx.now);
  const s = ctx.sessions.take(toHex(req.sessionId), ctx.now);
  if (s === 'missing') throw new EnclaveFault(Handling.UnknownSession, 'unknown or already finished session', 'sessionId');
  if (s === 'expired') throw new EnclaveFault(Handling.SessionExpired, 'session expired; its guess stays spent', 'sessionId');
  if (s.idHex !== ctx.idHex) throw new EnclaveFault(Handling.UnknownSession, 'session belongs to another record', 'sessionId');
  const suite = ctx.suites.get(s.suite)!;
  const result = serverLoginFinish(serverOptions(ctx, suite), s.state!, req.ke3);
  const cur = ctx.current;
  // Whatever the outcome, a LoginFinish that reaches a record writes it (sealed again, the same
  // length) and every LoginFinish makes one sealed audit event: what the host holds before it
  // commits does not tell a right KE3 from a wrong one, so it can not commit failures and drop
  // successes. (Juicebox's realm writes its record on every recover3 for the same reason.)
  if (s.registrationId === null || cur === null || !ctEqual(cur.registrationId, s.registrationId)) {
    // A fake session, or the record was deleted or re-registered since KE2: nothing to release.
    if (result.ok) result.sessionKey.fill(0);
    if (cur === null || s.registrationId === null) {
      return { response: { type: 'WrongPassword', attemptsRemaining: DEFAULT_ATTEMPT_LIMIT, locked: 0 }, audit: [{ kind: AUDIT_KIND.unknownId, attemptsRemaining: DEFAULT_ATTEMPT_LIMIT }], mirror: true };
    }
    return { response: { type: 'WrongPassword', attemptsRemaining: remaining(cur), locked: cur.status === STATUS_LOCKED ? 1 : 0 }, write: cur, audit: wrongGuess(cur) };
  }
  if (cur.status !== STATUS_ACTIVE) {
    if (result.ok) result.sessionKey.fill(0);
    return { response: { type: 'Locked' }, write: cur, audit: wrongGuess(cur) };
  }
  if (!result.ok) {
    if (cur.attemptsUsed >= cur.attemptLimit) {
      const pending = pendingSession(ctx, cur);
      if (!pending) return lock(cur);
    }
    return { response: { type: 'WrongPassword', attemptsRemaining: remaining(cur), locked: 0 }, write: cur, audit: wrongGuess(cur) };
  }
  const wrappedKey = wrapForReleaseSync(result.sessionKey, ctx.rng(12), cur.backupKey);
  const auth: AuthSession = { idHex: ctx.idHex, registrationId: cur.registrationId, authKey: sessionAuthKeySync(result.sessionKey) };
  result.sessionKey.fill(0);
  const next: VaultRecord = { ...cur, attemptsUsed: 0 };
  // The count starts again from 0, so every other login session of the record ends here: each
  // holds a guess charged before the reset, and finishing it afterwards would evaluate more than
  // attemptLimit wrong guesses before the next success. Sessions this batch opened go too (they
  // are pending in the table); a later op of the batch finds none of them.
  ctx.sessions.dropId(ctx.idHex);
  ctx.authSessions.put(toHex(req.sessionId), ctx.idHex, auth, ctx.now);
  return {
    response: { type: 'Recovered', wrappedKey, attemptsRemaining: next.attemptLimit },
    write: next,
    audit: [{ kind: AUDIT_KIND.recovered, attemptsRemaining: next.attemptLimit }],
  };
}

function status(ctx: OpContext): OpResult {
  const cur = ctx.current;
  if (cur === null) return { response: { type: 'NotRegistered' }, audit: [] };
  return {
    response: {
      type: 'StatusResult',
      registered: 1,
      locked: cur.status === STATUS_LOCKED ? 1 : 0,
      attemptsRemaining: remaining(cur),
      attemptLimit: cur.attemptLimit,
      suite: cur.suite,
      registrationId: cur.registrationId,
    },
    audit: [],
  };
}

function del(ctx: OpContext, authorization: Uint8Array | undefined): OpResult {
  const cur = ctx.current;
  if (cur === null) return { response: { type: 'NotRegistered' }, audit: [] };
  // A locked record holds no secret any more: removing it needs no proof.
  if (cur.status === STATUS_ACTIVE) checkAuthorization(ctx, cur, authorization, cur.registrationId, 'delete');
  zeroizeRecord(cur);
  return { response: { type: 'Deleted' }, write: 'delete', audit: [{ kind: AUDIT_KIND.deleted, attemptsRemaining: 0 }] };
}
