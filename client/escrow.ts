/**
 * The client side of escrow: register a backup key under a password, recover it, change the
 * password (the key stays), delete, and ask the status. Every message to the enclave is sealed
 * end to end (client/e2e-seal.ts) to the enclave public key the client pins; the transport (an
 * HTTP service, or an engine in tests) only relays ciphertext.
 *
 * What the client believes: only what the enclave sealed to it. A response the relay passes
 * unsealed (the enclave answers unsealed only when the request's envelope did not open) is a
 * transport fault, never an outcome, so a host can not make a client report "registered",
 * "deleted", "locked" or a status it forged. Every operation carries the issuer's token
 * (enclave/api/auth.ts), inside the sealed request. The KSF parameters a server asks for at login
 * must lie within `ksfBounds`, so that a forged or hostile parameter set can not exhaust the
 * device (RFC 9807 §10.8 leaves the KSF configuration to the deployment).
 *
 * Browser-safe when given the portable suite: imports only enclave/api, enclave/opaque and
 * WebCrypto.
 */
import { decodeMessage, encodeMessage } from '../enclave/api/codec.ts';
import { faultName } from '../enclave/api/codes.ts';
import type { ClientRequest, ClientResponse } from '../enclave/api/messages.ts';
import { ClientRequests, ClientResponses, SUITE_CODE } from '../enclave/api/messages.ts';
import { sealRequest } from './e2e-seal.ts';
import { encodeKeyAuthorization, encodeSessionAuthorization } from '../enclave/api/authorize.ts';
import { unwrapReleased } from './release-unwrap.ts';
import type { RandomSource } from '../enclave/opaque/bytes.ts';
import { clientLoginFinish, clientLoginStart, clientRegistrationFinish, clientRegistrationStart } from '../enclave/opaque/client.ts';
import { DEFAULT_ARGON2ID, argon2idKsf, identityKsf, ksfFromParams } from '../enclave/opaque/ksf.ts';
import type { Argon2idParams, Ksf } from '../enclave/opaque/ksf.ts';
import type { Suite } from '../enclave/opaque/suite.ts';
import { PACING } from '../enclave/api/pacing.ts';
import type { PacingName } from '../enclave/api/pacing.ts';

export interface Relay {
  /**
   * Relays one sealed operation. `authToken`: the issuer token the operation carries inside its
   * sealed request, for a transport that lets the host check it early (the HTTP relay sends it
   * as the header `bkv-auth-token`); a relay may ignore it. `readOnly`: the operation charges and
   * changes nothing (Status), so a relay may resend it to another member after its answer was
   * lost (client/vault-members.ts); absent, the operation counts as one that charges or changes.
   */
  (recordId: Uint8Array, message: Uint8Array, meta?: { authToken?: string; readOnly?: boolean }): Promise<{ sealed: boolean; response: Uint8Array }>;
}

export class EscrowError extends Error {
  override readonly name = 'EscrowError';
  constructor(
    readonly code: number,
    readonly field: string,
  ) {
    super(`${faultName(code)}${field ? ` (${field})` : ''}`);
  }
}

/**
 * The relay did not deliver an answer the enclave sealed to this request: an unsealed response
 * (whatever it claims), one that does not open, or one of the wrong type. Nothing in it is an
 * outcome; `hint` is the unsealed fault code a relay passed, for logs only (it may be forged).
 */
export class EscrowTransportError extends Error {
  override readonly name = 'EscrowTransportError';
  constructor(
    message: string,
    readonly hint?: number,
  ) {
    super(message);
  }
}

/** The server asked for KSF parameters outside the client's bounds (`EscrowClientOptions.ksfBounds`). */
export class EscrowKsfError extends Error {
  override readonly name = 'EscrowKsfError';
}

/** Which KSF parameters a client accepts from a server (for logins) and uses (for registrations). */
export interface KsfBounds {
  /** The identity KSF (no stretching): only for test vectors and benchmarks. */
  allowIdentity: boolean;
  min: Argon2idParams;
  max: Argon2idParams;
}

/**
 * Floor: RFC 9106 §4's memory-constrained option scaled down to OWASP's minimum for Argon2id
 * (19 MiB, t = 2, p = 1). Ceiling: what a browser tab can allocate and finish in seconds (1 GiB,
 * t = 10, p = 16); the enclave's own decoder allows up to 2 GiB and 64 passes.
 */
export const DEFAULT_KSF_BOUNDS: KsfBounds = Object.freeze({
  allowIdentity: false,
  min: Object.freeze({ t: 2, m: 19 * 1024, p: 1 }),
  max: Object.freeze({ t: 10, m: 1 << 20, p: 16 }),
});

/** The KSF of `params` (strictly decoded); throws EscrowKsfError unless it lies within `b`. */
export function checkKsfBounds(params: Uint8Array, b: KsfBounds): Ksf {
  const k = ksfFromParams(params);
  const a = k.argon2id;
  if (!a) {
    if (!b.allowIdentity) throw new EscrowKsfError('the server asks for no password stretching (identity KSF)');
    return k;
  }
  if (a.t < b.min.t || a.t > b.max.t || a.m < b.min.m || a.m > b.max.m || a.p < b.min.p || a.p > b.max.p) {
    throw new EscrowKsfError(`argon2id t=${a.t} m=${a.m} KiB p=${a.p} outside the accepted t ${b.min.t}..${b.max.t}, m ${b.min.m}..${b.max.m} KiB, p ${b.min.p}..${b.max.p}`);
  }
  return k;
}

/** The issuer's token for a record: a fixed one, or a function asked before every operation. */
export type AuthTokenSource = string | ((recordId: Uint8Array) => string | Promise<string>);

export type RecoverResult =
  | { ok: true; backupKey: Uint8Array; attemptsRemaining: number; sessionId: Uint8Array; sessionKey: Uint8Array }
  /** The record's guess pacing (enclave/api/pacing.ts) allows no guess yet: nothing was charged. */
  | { ok: false; outcome: 'paced'; retryAfterSeconds: number; attemptsRemaining: number }
  | { ok: false; outcome: 'wrong-password'; attemptsRemaining: number; locked: boolean }
  | { ok: false; outcome: 'locked' };

export interface EscrowClientOptions {
  relay: Relay;
  enclavePublicKey: Uint8Array;
  suite: Suite;
  rng: RandomSource;
  /** OPAQUE context of the vault (must match the enclave's). */
  context: Uint8Array;
  /** KSF for new registrations (default Argon2id, DEFAULT_ARGON2ID); logins use the parameters stored with the record. */
  ksf?: Ksf;
  /** KSF parameters accepted (default DEFAULT_KSF_BOUNDS: Argon2id only, within a floor and a ceiling). */
  ksfBounds?: KsfBounds;
  /** The issuer's token for the record (enclave/api/auth.ts); the enclave refuses operations without one. */
  auth: AuthTokenSource;
  /** Guess pacing of new registrations (enclave/api/pacing.ts; default 'standard'). */
  pacing?: PacingName;
}

const td = new TextDecoder();
const te = new TextEncoder();

/** A client operation before its `auth` field (the issuer's token) is added. */
export type ClientOp = ClientRequest extends infer U ? (U extends unknown ? Omit<U, 'auth'> : never) : never;
type Res<T extends ClientResponse['type']> = Extract<ClientResponse, { type: T }>;

export class EscrowClient {
  private readonly ksf: Ksf;
  private readonly bounds: KsfBounds;

  constructor(private readonly o: EscrowClientOptions) {
    this.bounds = o.ksfBounds ?? DEFAULT_KSF_BOUNDS;
    this.ksf = o.ksf ?? argon2idKsf(DEFAULT_ARGON2ID);
    checkKsfBounds(this.ksf.params, this.bounds);
  }

  private async token(recordId: Uint8Array): Promise<string> {
    const a = this.o.auth;
    return typeof a === 'string' ? a : a(recordId);
  }

  /**
   * Seals one operation (with the issuer's token) to the enclave and opens its answer. Only a
   * sealed answer of one of `expect`'s types, or a sealed Fault (thrown as EscrowError), counts.
   */
  private async send<T extends ClientResponse['type']>(recordId: Uint8Array, req: ClientOp, expect: readonly T[]): Promise<Res<T>> {
    const authToken = await this.token(recordId);
    const full = { ...req, auth: te.encode(authToken) } as ClientRequest;
    const { message, openResponse } = await sealRequest(this.o.enclavePublicKey, recordId, encodeMessage(ClientRequests, full));
    const r = await this.o.relay(recordId, message, { authToken, readOnly: req.type === 'Status' });
    if (!r.sealed) {
      let hint: number | undefined;
      try {
        const f = decodeMessage(ClientResponses, r.response);
        if (f.type === 'Fault') hint = f.code;
      } catch {
        // Not even a fault: the hint stays empty.
      }
      throw new EscrowTransportError(`the vault's answer was not sealed by the enclave${hint !== undefined ? ` (relay says ${faultName(hint)})` : ''}`, hint);
    }
    let res: ClientResponse;
    try {
      res = decodeMessage(ClientResponses, await openResponse(r.response));
    } catch {
      throw new EscrowTransportError("the vault's answer does not open under this request's key");
    }
    if (res.type === 'Fault') throw new EscrowError(res.code, td.decode(res.field));
    if (!(expect as readonly string[]).includes(res.type)) throw new EscrowTransportError(`unexpected ${res.type} to ${req.type}`);
    return res as Res<T>;
  }

  private opts(ksf: Ksf) {
    return { suite: this.o.suite, context: this.o.context, rng: this.o.rng, ksf };
  }

  /**
   * Registers `backupKey` under `password`. Over a live record, pass `authorization`:
   * `{ backupKey: currentKey }` or `{ session }` from a recovery with the current password.
   * Without `backupKey` (a password change), the enclave keeps the current key.
   */
  async register(
    recordId: Uint8Array,
    password: Uint8Array,
    backupKey: Uint8Array | undefined,
    opts: { attemptLimit?: number; pacing?: PacingName; authorization?: { backupKey: Uint8Array } | { sessionId: Uint8Array; sessionKey: Uint8Array } } = {},
  ): Promise<{ attemptsRemaining: number; attemptLimit: number; exportKey: Uint8Array }> {
    const co = this.opts(this.ksf);
    const { request, state } = clientRegistrationStart(co, password);
    const started = await this.send(recordId, {
      type: 'RegisterStart',
      suite: SUITE_CODE[this.o.suite.id],
      request,
      attemptLimit: opts.attemptLimit ?? 0,
      ksf: this.ksf.params,
      pacing: PACING[opts.pacing ?? this.o.pacing ?? 'standard'],
    }, ['RegisterStarted']);
    const { record, exportKey } = await clientRegistrationFinish(co, state, password, started.response);
    let authorization: Uint8Array | undefined;
    const a = opts.authorization;
    if (a && 'backupKey' in a) authorization = encodeKeyAuthorization(a.backupKey, started.stageId, recordId);
    else if (a) authorization = encodeSessionAuthorization(a.sessionId, a.sessionKey, started.stageId, recordId);
    const done = await this.send(recordId, { type: 'RegisterFinish', stageId: started.stageId, record, backupKey, authorization }, ['Registered']);
    return { attemptsRemaining: done.attemptsRemaining, attemptLimit: done.attemptLimit, exportKey };
  }

  /** Starts a login; the enclave charges one guess before it answers. */
  async recover(recordId: Uint8Array, password: Uint8Array): Promise<RecoverResult> {
    const { ke1, state } = clientLoginStart(this.opts(identityKsf), password);
    const started = await this.send(recordId, { type: 'LoginStart', suite: SUITE_CODE[this.o.suite.id], ke1 }, ['LoginStarted', 'Locked', 'RetryLater']);
    if (started.type === 'Locked') return { ok: false, outcome: 'locked' };
    if (started.type === 'RetryLater') return { ok: false, outcome: 'paced', retryAfterSeconds: started.retryAfterSeconds, attemptsRemaining: started.attemptsRemaining };
    const ksf = checkKsfBounds(started.ksf, this.bounds);
    const fin = await clientLoginFinish(this.opts(ksf), state, password, started.ke2);
    // A wrong password fails on the client (the envelope does not open). Still tell the enclave,
    // with a KE3 that can not verify, so the session ends and the outcome is reported.
    const ke3 = fin.ok ? fin.ke3 : new Uint8Array(this.o.suite.Nm);
    const done = await this.send(recordId, { type: 'LoginFinish', sessionId: started.sessionId, ke3 }, ['Recovered', 'WrongPassword', 'Locked']);
    if (done.type === 'Recovered') {
      if (!fin.ok) throw new Error('enclave released a key to a failed login');
      const key = await unwrapReleased(fin.sessionKey, done.wrappedKey);
      if (!key) throw new Error('released key does not open');
      return { ok: true, backupKey: key, attemptsRemaining: done.attemptsRemaining, sessionId: started.sessionId, sessionKey: fin.sessionKey };
    }
    if (done.type === 'WrongPassword') {
      return { ok: false, outcome: 'wrong-password', attemptsRemaining: done.attemptsRemaining, locked: done.locked === 1 };
    }
    return { ok: false, outcome: 'locked' };
  }

  /** Changes the password, keeping the backup key; authorized by recovering with the current one. */
  async changePassword(recordId: Uint8Array, currentPassword: Uint8Array, newPassword: Uint8Array, opts: { attemptLimit?: number; pacing?: PacingName } = {}) {
    const r = await this.recover(recordId, currentPassword);
    if (!r.ok) return r;
    r.backupKey.fill(0);
    const reg = await this.register(recordId, newPassword, undefined, {
      attemptLimit: opts.attemptLimit,
      ...(opts.pacing !== undefined && { pacing: opts.pacing }),
      authorization: { sessionId: r.sessionId, sessionKey: r.sessionKey },
    });
    r.sessionKey.fill(0);
    return { ok: true as const, ...reg };
  }

  async status(recordId: Uint8Array): Promise<Res<'StatusResult' | 'NotRegistered'>> {
    return this.send(recordId, { type: 'Status' }, ['StatusResult', 'NotRegistered']);
  }

  /**
   * Deletes the record (and with it the escrowed key). A live record needs proof: the current
   * backup key, or the current password (a recovery authorizes it). A locked one needs none.
   */
  async delete(recordId: Uint8Array, proof: { backupKey: Uint8Array } | { password: Uint8Array } | null): Promise<ClientResponse> {
    const st = await this.status(recordId);
    if (st.type !== 'StatusResult') return st;
    let authorization: Uint8Array | undefined;
    if (proof && 'backupKey' in proof) {
      authorization = encodeKeyAuthorization(proof.backupKey, st.registrationId, recordId, 'delete');
    } else if (proof) {
      const r = await this.recover(recordId, proof.password);
      if (!r.ok) {
        if (r.outcome === 'locked') return { type: 'Locked' };
        if (r.outcome === 'paced') return { type: 'RetryLater', retryAfterSeconds: r.retryAfterSeconds, attemptsRemaining: r.attemptsRemaining };
        return { type: 'WrongPassword', attemptsRemaining: r.attemptsRemaining, locked: r.locked ? 1 : 0 };
      }
      r.backupKey.fill(0);
      authorization = encodeSessionAuthorization(r.sessionId, r.sessionKey, st.registrationId, recordId, 'delete');
      r.sessionKey.fill(0);
    }
    return this.send(recordId, { type: 'Delete', authorization }, ['Deleted', 'NotRegistered']);
  }
}
