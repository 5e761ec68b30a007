/**
 * The client side of escrow: register a backup key under a password, recover it, change the
 * password (the key stays), delete, and ask the status. Every message to the enclave is sealed
 * end to end (enclave/api/e2e.ts) to the enclave public key the client pins; the transport (an
 * HTTP service, or an engine in tests) only relays ciphertext.
 *
 * Browser-safe when given the portable suite: imports only enclave/api, enclave/opaque and
 * WebCrypto.
 */
import { decodeMessage, encodeMessage } from '../../enclave/api/codec.ts';
import { faultName } from '../../enclave/api/codes.ts';
import type { ClientRequest, ClientResponse } from '../../enclave/api/messages.ts';
import { ClientRequests, ClientResponses, SUITE_CODE } from '../../enclave/api/messages.ts';
import { sealRequest } from '../../enclave/api/e2e.ts';
import { encodeKeyAuthorization, encodeSessionAuthorization, unwrapReleased } from '../../enclave/api/authorize.ts';
import type { RandomSource } from '../../enclave/opaque/bytes.ts';
import { clientLoginFinish, clientLoginStart, clientRegistrationFinish, clientRegistrationStart } from '../../enclave/opaque/client.ts';
import { identityKsf, ksfFromParams } from '../../enclave/opaque/ksf.ts';
import type { Ksf } from '../../enclave/opaque/ksf.ts';
import type { Suite } from '../../enclave/opaque/suite.ts';

export interface Relay {
  (recordId: Uint8Array, message: Uint8Array): Promise<{ sealed: boolean; response: Uint8Array }>;
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

export type RecoverResult =
  | { ok: true; backupKey: Uint8Array; attemptsRemaining: number; sessionId: Uint8Array; sessionKey: Uint8Array }
  | { ok: false; outcome: 'wrong-password'; attemptsRemaining: number; locked: boolean }
  | { ok: false; outcome: 'locked' };

export interface EscrowClientOptions {
  relay: Relay;
  enclavePublicKey: Uint8Array;
  suite: Suite;
  rng: RandomSource;
  /** OPAQUE context of the vault (must match the enclave's). */
  context: Uint8Array;
  /** KSF for new registrations (logins use the parameters stored with the record). */
  ksf?: Ksf;
}

const td = new TextDecoder();

export class EscrowClient {
  constructor(private readonly o: EscrowClientOptions) {}

  private async send(recordId: Uint8Array, req: ClientRequest): Promise<ClientResponse> {
    const { message, openResponse } = await sealRequest(this.o.enclavePublicKey, recordId, encodeMessage(ClientRequests, req));
    const r = await this.o.relay(recordId, message);
    const plain = r.sealed ? await openResponse(r.response) : r.response;
    const res = decodeMessage(ClientResponses, plain);
    if (res.type === 'Fault') throw new EscrowError(res.code, td.decode(res.field));
    return res;
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
    opts: { attemptLimit?: number; authorization?: { backupKey: Uint8Array } | { sessionId: Uint8Array; sessionKey: Uint8Array } } = {},
  ): Promise<{ attemptsRemaining: number; attemptLimit: number; exportKey: Uint8Array }> {
    const ksf = this.o.ksf ?? identityKsf;
    const co = this.opts(ksf);
    const { request, state } = clientRegistrationStart(co, password);
    const started = await this.send(recordId, {
      type: 'RegisterStart',
      suite: SUITE_CODE[this.o.suite.id],
      request,
      attemptLimit: opts.attemptLimit ?? 0,
      ksf: ksf.params,
    });
    if (started.type !== 'RegisterStarted') throw new Error(`unexpected ${started.type}`);
    const { record, exportKey } = await clientRegistrationFinish(co, state, password, started.response);
    let authorization: Uint8Array | undefined;
    const a = opts.authorization;
    if (a && 'backupKey' in a) authorization = encodeKeyAuthorization(a.backupKey, started.stageId, recordId);
    else if (a) authorization = encodeSessionAuthorization(a.sessionId, a.sessionKey, started.stageId, recordId);
    const done = await this.send(recordId, { type: 'RegisterFinish', stageId: started.stageId, record, backupKey, authorization });
    if (done.type !== 'Registered') throw new Error(`unexpected ${done.type}`);
    return { attemptsRemaining: done.attemptsRemaining, attemptLimit: done.attemptLimit, exportKey };
  }

  /** Starts a login; the enclave charges one guess before it answers. */
  async recover(recordId: Uint8Array, password: Uint8Array): Promise<RecoverResult> {
    const { ke1, state } = clientLoginStart(this.opts(identityKsf), password);
    const started = await this.send(recordId, { type: 'LoginStart', suite: SUITE_CODE[this.o.suite.id], ke1 });
    if (started.type === 'Locked') return { ok: false, outcome: 'locked' };
    if (started.type !== 'LoginStarted') throw new Error(`unexpected ${started.type}`);
    const ksf = ksfFromParams(started.ksf);
    const fin = await clientLoginFinish(this.opts(ksf), state, password, started.ke2);
    // A wrong password fails on the client (the envelope does not open). Still tell the enclave,
    // with a KE3 that can not verify, so the session ends and the outcome is reported.
    const ke3 = fin.ok ? fin.ke3 : new Uint8Array(this.o.suite.Nm);
    const done = await this.send(recordId, { type: 'LoginFinish', sessionId: started.sessionId, ke3 });
    if (done.type === 'Recovered') {
      if (!fin.ok) throw new Error('enclave released a key to a failed login');
      const key = await unwrapReleased(fin.sessionKey, done.wrappedKey);
      if (!key) throw new Error('released key does not open');
      return { ok: true, backupKey: key, attemptsRemaining: done.attemptsRemaining, sessionId: started.sessionId, sessionKey: fin.sessionKey };
    }
    if (done.type === 'WrongPassword') {
      return { ok: false, outcome: 'wrong-password', attemptsRemaining: done.attemptsRemaining, locked: done.locked === 1 };
    }
    if (done.type === 'Locked') return { ok: false, outcome: 'locked' };
    throw new Error(`unexpected ${done.type}`);
  }

  /** Changes the password, keeping the backup key; authorized by recovering with the current one. */
  async changePassword(recordId: Uint8Array, currentPassword: Uint8Array, newPassword: Uint8Array, opts: { attemptLimit?: number } = {}) {
    const r = await this.recover(recordId, currentPassword);
    if (!r.ok) return r;
    r.backupKey.fill(0);
    const reg = await this.register(recordId, newPassword, undefined, {
      attemptLimit: opts.attemptLimit,
      authorization: { sessionId: r.sessionId, sessionKey: r.sessionKey },
    });
    r.sessionKey.fill(0);
    return { ok: true as const, ...reg };
  }

  async status(recordId: Uint8Array): Promise<ClientResponse> {
    return this.send(recordId, { type: 'Status' });
  }

  /**
   * Deletes the record (and with it the escrowed key). A live record needs proof: the current
   * backup key, or the current password (a recovery authorizes it). A locked one needs none.
   */
  async delete(recordId: Uint8Array, proof: { backupKey: Uint8Array } | { password: Uint8Array } | null): Promise<ClientResponse> {
    const st = await this.send(recordId, { type: 'Status' });
    if (st.type !== 'StatusResult') return st;
    let authorization: Uint8Array | undefined;
    if (proof && 'backupKey' in proof) {
      authorization = encodeKeyAuthorization(proof.backupKey, st.registrationId, recordId, 'delete');
    } else if (proof) {
      const r = await this.recover(recordId, proof.password);
      if (!r.ok) return r.outcome === 'locked' ? { type: 'Locked' } : { type: 'WrongPassword', attemptsRemaining: r.attemptsRemaining, locked: r.locked ? 1 : 0 };
      r.backupKey.fill(0);
      authorization = encodeSessionAuthorization(r.sessionId, r.sessionKey, st.registrationId, recordId, 'delete');
      r.sessionKey.fill(0);
    }
    return this.send(recordId, { type: 'Delete', authorization });
  }
}
