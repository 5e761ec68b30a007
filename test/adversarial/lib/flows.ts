/**
 * The client's side of every escrow operation, message by message, for the adversarial drivers:
 * unlike the SDK's EscrowClient (which hides the steps), each call here says exactly which
 * message was answered and how, so a ledger can tell "the enclave charged a guess and said so"
 * from "no answer came" (the outcome is unknown), and a test can capture any sealed message to
 * replay it later. The transport is any Relay: VaultHost.submit or the HTTP relay.
 *
 * Every request carries the issuer's token for its record (enclave/api/auth.ts), minted by the
 * process's test issuer (test/helpers/auth.ts, whose set the drivers' vaults are provisioned
 * with) once per record id and reused, as a client reuses its token (`TokenBook`).
 */
import { randomBytes } from 'node:crypto';
import { decodeMessage, encodeMessage } from '../../../enclave/api/codec.ts';
import { encodeKeyAuthorization, encodeSessionAuthorization } from '../../../enclave/api/authorize.ts';
import { unwrapReleased } from '../../../client/release-unwrap.ts';
import type { ClientRequest, ClientResponse } from '../../../enclave/api/messages.ts';
import { ClientRequests, ClientResponses, SUITE_CODE } from '../../../enclave/api/messages.ts';
import { sealRequest } from '../../../client/e2e-seal.ts';
import { clientLoginFinish, clientLoginStart, clientRegistrationFinish, clientRegistrationStart } from '../../../enclave/opaque/client.ts';
import { identityKsf, ksfFromParams } from '../../../enclave/opaque/ksf.ts';
import type { Suite } from '../../../enclave/opaque/suite.ts';
import { fastSuite } from '../../../enclave/opaque/suites-fast.ts';
import type { Relay } from '../../../client/escrow.ts';
import { testIssuer } from '../../helpers/auth.ts';

export const CONTEXT = new TextEncoder().encode('BackupKeyVault-v1');
export const rng = (n: number): Uint8Array => new Uint8Array(randomBytes(n));

/** A client request before `VaultClient.send` adds the record's token (or with its own `auth`). */
export type ClientOp = ClientRequest extends infer U ? (U extends ClientRequest ? Omit<U, 'auth'> & { auth?: Uint8Array } : never) : never;

/** How long a minted token is reused: half its lifetime (600 s). */
const TOKEN_REUSE_MS = 300_000;

/**
 * The test issuer's token per record id, at the wall clock (the vaults' devices use it): minted
 * at its first use and reused, minted again once half its lifetime has passed. Tokens past their
 * reuse time are dropped as new ones come (the map is in minting order), so a long run that meets
 * a new id every few milliseconds (the soak) holds only the last five minutes' tokens: without
 * that the driver's heap, and its collector's work, grew for as long as it ran.
 */
export class TokenBook {
  private readonly tokens = new Map<string, { bytes: Promise<Uint8Array>; atMs: number }>();

  /** `clock`: the vault's clock in ms (default the wall clock; a test platform has its own). */
  constructor(private readonly clock: () => number = () => Date.now()) {}

  /** Tokens held (the soak reports it). */
  get size(): number {
    return this.tokens.size;
  }

  bytes(recordId: Uint8Array): Promise<Uint8Array> {
    const k = hex(recordId);
    const now = this.clock();
    const t = this.tokens.get(k);
    if (t && now - t.atMs < TOKEN_REUSE_MS) return t.bytes;
    for (const [key, old] of this.tokens) {
      if (now - old.atMs < TOKEN_REUSE_MS) break;
      this.tokens.delete(key);
    }
    const bytes = testIssuer().then((i) => i.tokenBytes(recordId, now));
    this.tokens.delete(k); // re-inserted last: the map stays in minting order
    this.tokens.set(k, { bytes, atMs: now });
    bytes.catch(() => this.tokens.delete(k));
    return bytes;
  }
}

/** One answered message: the decoded response; or `error` when no usable answer came (outcome unknown). */
export type Answer = { ok: true; res: ClientResponse } | { ok: false; error: unknown };

export interface Sent {
  recordId: Uint8Array;
  type: ClientRequest['type'];
  message: Uint8Array;
  /** Opens answers to this message (what only its sender can do; tests use it to read a replay's answer). */
  open: (response: Uint8Array) => Promise<Uint8Array>;
}

export interface RegisterOutcome {
  /** Which message got no usable answer, if any: the outcome is then unknown. */
  unknownAt?: 'RegisterStart' | 'RegisterFinish';
  /** What came instead of an answer. */
  error?: unknown;
  start?: ClientResponse;
  finish?: ClientResponse;
  registered: boolean;
  /** The sealed messages sent, in order (for replays). */
  sent: Sent[];
}

export interface LoginOutcome {
  unknownAt?: 'LoginStart' | 'LoginFinish';
  error?: unknown;
  start?: ClientResponse;
  finish?: ClientResponse;
  /** A KE2 arrived: one guess is known charged. */
  ke2: boolean;
  /** The key released to this login (unwrapped), if any. */
  key?: Uint8Array;
  /** The released key did not unwrap under this session's key. */
  badRelease?: boolean;
  /** For a recovered login: what authorizes a password change or a delete. */
  session?: { sessionId: Uint8Array; sessionKey: Uint8Array };
  sent: Sent[];
}

/**
 * How a client seals a request to the enclave and opens its answer: the SDK's `sealRequest`
 * (WebCrypto, what browsers run) unless a driver gives a cheaper sender of the same bytes.
 */
export type Sealer = typeof sealRequest;

export class VaultClient {
  /** Called with every sealed message before it is relayed. */
  onSend?: (s: Sent) => void;
  /** The guess pacing registrations ask for (enclave/api/pacing.ts); no laxer than the vault's floor (a fleet's is standard). */
  registerPacing = 0;

  constructor(
    readonly relay: Relay,
    readonly enclavePublicKey: Uint8Array,
    readonly suite: Suite,
    readonly tokens: TokenBook = new TokenBook(),
    readonly seal: Sealer = sealRequest,
  ) {}

  static async create(relay: Relay, enclavePublicKey: Uint8Array, tokens?: TokenBook, seal?: Sealer): Promise<VaultClient> {
    return new VaultClient(relay, enclavePublicKey, await fastSuite('ristretto255-SHA512'), tokens, seal);
  }

  /** The issuer's token for `recordId`, as this client sends it (the `auth` field's bytes). */
  token(recordId: Uint8Array): Promise<Uint8Array> {
    return this.tokens.bytes(recordId);
  }

  /** `req` with this client's token for `recordId`, unless it carries its own. */
  async withAuth(recordId: Uint8Array, req: ClientOp): Promise<ClientRequest> {
    return (req.auth !== undefined ? req : { ...req, auth: await this.token(recordId) }) as ClientRequest;
  }

  private opts(ksf = identityKsf) {
    return { suite: this.suite, context: CONTEXT, rng, ksf };
  }

  /** Seals and relays one request (with the record's token unless `req.auth` is given); never throws. */
  async send(recordId: Uint8Array, req: ClientOp, sent?: Sent[]): Promise<Answer> {
    let message: Uint8Array;
    let open: (b: Uint8Array) => Promise<Uint8Array>;
    try {
      const s = await this.seal(this.enclavePublicKey, recordId, encodeMessage(ClientRequests, await this.withAuth(recordId, req)));
      message = s.message;
      open = s.openResponse;
    } catch (error) {
      return { ok: false, error };
    }
    const record: Sent = { recordId, type: req.type, message, open };
    sent?.push(record);
    this.onSend?.(record);
    // The token in the clear too, for a service that checks it early (the HTTP relay's header).
    const auth = req.auth ?? (await this.token(recordId));
    return this.relayed(recordId, message, open, new TextDecoder().decode(auth));
  }

  /** Relays an already sealed message again (a replay); `open` reads the answer as its sender would. */
  async replay(s: Sent, recordId: Uint8Array = s.recordId): Promise<Answer & { sealed?: boolean }> {
    return this.relayed(recordId, s.message, s.open);
  }

  private async relayed(recordId: Uint8Array, message: Uint8Array, open?: (b: Uint8Array) => Promise<Uint8Array>, authToken?: string): Promise<Answer & { sealed?: boolean }> {
    let r: { sealed: boolean; response: Uint8Array };
    try {
      r = await this.relay(recordId, message, authToken ? { authToken } : undefined);
    } catch (error) {
      return { ok: false, error };
    }
    try {
      if (r.sealed && !open) return { ok: true, sealed: true, res: { type: 'Fault', code: 0, field: new Uint8Array(0) } };
      const plain = r.sealed ? await open!(r.response) : r.response;
      return { ok: true, sealed: r.sealed, res: decodeMessage(ClientResponses, plain) };
    } catch (error) {
      return { ok: false, error: new Error(`the answer does not open or decode: ${String(error)}`) };
    }
  }

  /**
   * Registers `backupKey` (undefined: keep the current one, a password change) under `password`.
   * `authorization`: proof for replacing a live record.
   */
  async register(
    recordId: Uint8Array,
    password: Uint8Array,
    backupKey: Uint8Array | undefined,
    opts: { attemptLimit?: number; authorization?: { backupKey: Uint8Array } | { sessionId: Uint8Array; sessionKey: Uint8Array } } = {},
  ): Promise<RegisterOutcome> {
    const sent: Sent[] = [];
    const co = this.opts();
    const { request, state } = clientRegistrationStart(co, password);
    const a = await this.send(recordId, { type: 'RegisterStart', suite: SUITE_CODE[this.suite.id], request, attemptLimit: opts.attemptLimit ?? 0, ksf: identityKsf.params, pacing: this.registerPacing }, sent);
    if (!a.ok) return { unknownAt: 'RegisterStart', error: a.error, registered: false, sent };
    if (a.res.type !== 'RegisterStarted') return { start: a.res, registered: false, sent };
    const { record } = await clientRegistrationFinish(co, state, password, a.res.response);
    let authorization: Uint8Array | undefined;
    const au = opts.authorization;
    if (au && 'backupKey' in au) authorization = encodeKeyAuthorization(au.backupKey, a.res.stageId, recordId);
    else if (au) authorization = encodeSessionAuthorization(au.sessionId, au.sessionKey, a.res.stageId, recordId);
    const b = await this.send(recordId, { type: 'RegisterFinish', stageId: a.res.stageId, record, backupKey, authorization }, sent);
    if (!b.ok) return { unknownAt: 'RegisterFinish', error: b.error, start: a.res, registered: false, sent };
    return { start: a.res, finish: b.res, registered: b.res.type === 'Registered', sent };
  }

  /** LoginStart only: the KE2 and what finishing needs. */
  async loginStart(recordId: Uint8Array, password: Uint8Array, sent: Sent[] = []) {
    const { ke1, state } = clientLoginStart(this.opts(), password);
    const a = await this.send(recordId, { type: 'LoginStart', suite: SUITE_CODE[this.suite.id], ke1 }, sent);
    return { answer: a, state, sent };
  }

  /**
   * A whole login. With the right password the client finishes with its KE3; with a wrong one
   * its envelope does not open, and it finishes with a KE3 that can not verify (as the SDK does).
   * `finish: false` drops the session after KE2 (a dropped connection). `knownWrong: true` skips
   * the client's own KE3 computation (its key stretching included) and sends the KE3 that can not
   * verify at once, as the client would after its envelope failed to open: the same work for the
   * vault, less for a load driver (an unknown id's fake KE2 names Argon2id at 64 MiB).
   */
  async login(recordId: Uint8Array, password: Uint8Array, opts: { finish?: boolean; knownWrong?: boolean } = {}): Promise<LoginOutcome> {
    const { answer: a, state, sent } = await this.loginStart(recordId, password);
    if (!a.ok) return { unknownAt: 'LoginStart', error: a.error, ke2: false, sent };
    if (a.res.type !== 'LoginStarted') return { start: a.res, ke2: false, sent };
    const started = a.res;
    if (opts.finish === false) return { start: started, ke2: true, sent };
    let fin;
    try {
      fin = opts.knownWrong ? { ok: false as const } : await clientLoginFinish(this.opts(ksfFromParams(started.ksf)), state, password, started.ke2);
    } catch {
      fin = { ok: false as const };
    }
    const ke3 = fin.ok ? fin.ke3 : new Uint8Array(this.suite.Nm);
    const b = await this.send(recordId, { type: 'LoginFinish', sessionId: started.sessionId, ke3 }, sent);
    if (!b.ok) return { unknownAt: 'LoginFinish', error: b.error, start: started, ke2: true, sent };
    const out: LoginOutcome = { start: started, finish: b.res, ke2: true, sent };
    if (b.res.type === 'Recovered') {
      if (!fin.ok) {
        out.badRelease = true; // released to a KE3 that can not verify: the caller flags it
        return out;
      }
      const key = await unwrapReleased(fin.sessionKey, b.res.wrappedKey);
      if (key) out.key = key;
      else out.badRelease = true;
      out.session = { sessionId: started.sessionId, sessionKey: fin.sessionKey };
    }
    return out;
  }

  async status(recordId: Uint8Array): Promise<Answer> {
    return this.send(recordId, { type: 'Status' });
  }

  /** Deletes with proof of the backup key (bound to the record's current registration id). */
  async deleteWithKey(recordId: Uint8Array, backupKey: Uint8Array, sent: Sent[] = []): Promise<Answer> {
    const st = await this.status(recordId);
    if (!st.ok || st.res.type !== 'StatusResult') return st;
    const authorization = encodeKeyAuthorization(backupKey, st.res.registrationId, recordId, 'delete');
    return this.send(recordId, { type: 'Delete', authorization }, sent);
  }

  /** Deletes with proof of the password: a login, then a Delete authorized by its session. */
  async deleteWithPassword(recordId: Uint8Array, password: Uint8Array, sent: Sent[] = []): Promise<Answer> {
    const st = await this.status(recordId);
    if (!st.ok || st.res.type !== 'StatusResult') return st;
    const login = await this.login(recordId, password);
    if (!login.session) return { ok: false, error: new Error(`the login for the delete failed: ${login.start?.type}/${login.finish?.type}`) };
    const authorization = encodeSessionAuthorization(login.session.sessionId, login.session.sessionKey, st.res.registrationId, recordId, 'delete');
    return this.send(recordId, { type: 'Delete', authorization }, sent);
  }

  /** Password change: a login with the current password, then a registration authorized by that session. */
  async changePassword(recordId: Uint8Array, current: Uint8Array, next: Uint8Array, attemptLimit = 0): Promise<{ login: LoginOutcome; register?: RegisterOutcome }> {
    const login = await this.login(recordId, current);
    if (!login.session) return { login };
    const register = await this.register(recordId, next, undefined, { attemptLimit, authorization: login.session });
    return { login, register };
  }
}

export function hex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
}

export function sameBytes(a: Uint8Array | undefined, b: Uint8Array | undefined): boolean {
  return a !== undefined && b !== undefined && Buffer.from(a).equals(Buffer.from(b));
}

/** A short description of an error for reports (class, code; no stack). */
export function describe(e: unknown): string {
  if (e instanceof Error) {
    const code = (e as { code?: unknown }).code;
    return `${e.name}${code !== undefined ? `(${String(code)})` : ''}: ${e.message.slice(0, 160)}`;
  }
  return String(e);
}
