/**
 * Fuzzing: a whole vault in one process with planted canaries, for the live-enclave targets.
 *
 * Like test/helpers/vault-harness.ts (createEnclave over an in-memory platform) but with a host
 * the fuzzer controls completely: the stored blobs are a Map (the honest host's storage), the
 * batch protocol is driven by hand, and every byte the enclave emits passes the oracle:
 *   - every response decodes as a HostResponse (the enclave never answers garbage);
 *   - no planted secret (lib/canary.ts: token keys, derived keys, canary backup keys and
 *     passwords, the current OPAQUE masking keys, the driver's session keys) appears in any
 *     response, opened client response, fault message, audit event or console line;
 *   - no untyped exception reaches the enclave's fault conversion (lib/oracle.ts UntypedProbe);
 *   - a `Committed` result that did not open (`sealed` 0) is a client Fault, never an outcome.
 * The token keys are planted (known), so the enclave's HPKE key is the same in every run and
 * checked-in seeds sealed to it stay valid. The vault is provisioned with the planted issuer
 * (lib/auth.ts), and every client request the driver makes carries that issuer's token for its
 * record, minted at the vault's clock and reused as a client reuses its token (`tokenBytes`). Two canary records are registered at start (and
 * re-planted whenever an input deletes, locks or replaces them): their backup keys are known
 * and must never leave the enclave except wrapped for a session that proved the password.
 */
import { decodeMessage, encodeMessage } from '../../../enclave/api/codec.ts';
import { EnclaveFault, Handling } from '../../../enclave/api/codes.ts';
import type { ClientRequest, ClientResponse, HostRequest, HostResponse } from '../../../enclave/api/messages.ts';
import { ClientRequests, ClientResponses, HostRequests, HostResponses, MAX_LOAD_ENTRIES, SUITE_CODE } from '../../../enclave/api/messages.ts';
import { sealRequest } from '../../../client/e2e-seal.ts';
import { encodeKeyAuthorization, encodeSessionAuthorization } from '../../../enclave/api/authorize.ts';
import { unwrapReleased } from '../../../client/release-unwrap.ts';
import { createEnclave } from '../../../enclave/main.ts';
import type { Device } from '../../../enclave/api/device.ts';
import { clientLoginFinish, clientLoginStart, clientRegistrationFinish, clientRegistrationStart } from '../../../enclave/opaque/client.ts';
import { identityKsf } from '../../../enclave/opaque/ksf.ts';
import type { Suite, SuiteId } from '../../../enclave/opaque/suite.ts';
import { SUITE_IDS } from '../../../enclave/opaque/suite.ts';
import { fastSuite } from '../../../enclave/opaque/suites-fast.ts';
import type { Platform } from '../../../enclave/platform.ts';
import type { Token } from '../../../enclave/token.ts';
import { nodeHash } from '../../../enclave/opaque/hash-node.ts';
import { allCanarySecrets, CANARIES, CanaryToken, drbg, FuzzNvram, OPERATOR_SECRET } from './canary.ts';
import type { CanaryRecord, Secret } from './canary.ts';
import { ConsoleTap, SecretScanner, UntypedProbe, describeError, equalBytes, expectAnswer, hex, violation } from './oracle.ts';
import { FUZZ_AUTH, FUZZ_EPOCH_MS, TokenBook } from './auth.ts';

export const CONTEXT = new TextEncoder().encode('BackupKeyVault-v1');
export const PARTITIONS = 2;
export const PARTITION = 0;
const te = new TextEncoder();
const sha256 = nodeHash('SHA-256');

/** The partition of a record id, as the enclave computes it. */
export function partitionOf(recordId: Uint8Array, partitions = PARTITIONS): number {
  const h = sha256.hash(recordId);
  return (((h[0]! << 24) | (h[1]! << 16) | (h[2]! << 8) | h[3]!) >>> 0) % partitions;
}

/** The first id `${prefix}-${i}` of the given partition (deterministic). */
export function idIn(prefix: string, partition = PARTITION): Uint8Array {
  for (let i = 0; ; i++) {
    const id = te.encode(`${prefix}-${i}`);
    if (partitionOf(id) === partition) return id;
  }
}

/** Record ids the targets and seeds use besides the canaries. */
export const IDS = {
  unknown: idIn('nobody'),
  scratch: [idIn('scratch-a'), idIn('scratch-b')],
  otherPartition: idIn('elsewhere', 1),
};

for (const c of CANARIES) if (partitionOf(c.recordId) !== PARTITION) throw new Error(`canary ${c.label} is not in partition ${PARTITION}`);

export interface Tracked {
  present: boolean;
  locked: boolean;
  attempts: number;
  limit: number;
  /** The backup key and password the driver knows for it (a canary's, until an input replaces it). */
  backupKey: Uint8Array;
  password: Uint8Array;
  /** False when an input replaced the record: the driver no longer knows the password. */
  known: boolean;
}

export interface OpenedResult {
  sealed: boolean;
  /** The response as the host relayed it. */
  raw: Uint8Array;
  plain: Uint8Array;
  /** The decoded client response (a plain result that does not decode is a violation). */
  res: ClientResponse;
}

/** A client request without its token: the driver adds its valid one (or keeps `auth` when given). */
export type ClientOp = ClientRequest extends infer U ? (U extends ClientRequest ? Omit<U, 'auth'> & { auth?: Uint8Array } : never) : never;

export interface LoginHandle {
  sessionId: Uint8Array;
  /** The KE3 that proves the password (null for a wrong password). */
  ke3: Uint8Array | null;
  sessionKey: Uint8Array | null;
  res: ClientResponse;
}

export class FuzzVault {
  enclave!: Device;
  readonly store = new Map<string, { recordId: Uint8Array; blob: Uint8Array }>();
  /** The committed epoch, as the host knows it. */
  epoch = 0;
  /** The batch the enclave has prepared and not yet committed or aborted. */
  pending: { epoch: number; writes: { recordId: Uint8Array; blob: Uint8Array }[] } | null = null;
  /** The batch the enclave staged behind `pending` (a Batch sent while that one was pending), not yet prepared. */
  staged: { epoch: number } | null = null;
  hpkePublicKey!: Uint8Array;
  readonly tracked = new Map<string, Tracked>();
  readonly suites = new Map<SuiteId, Suite>();
  readonly probe = UntypedProbe.install();
  readonly tap = new ConsoleTap();
  responses = 0;
  auditEvents = 0;
  /** The last boot failed with an untyped exception (judged then); its fault is every answer. */
  bootFailed = false;
  private recentSessionKeys: Secret[] = [];
  /** The valid token of each record id, at the vault's clock. */
  readonly tokens: TokenBook;

  private constructor(
    readonly platform: Platform & { clock: { t: number }; nvram: FuzzNvram },
    readonly canaryToken: CanaryToken,
    readonly scanner: SecretScanner,
    readonly rng: (n: number) => Uint8Array,
  ) {
    this.tokens = new TokenBook(() => platform.clock.t);
  }

  /** The issuer's valid token for `recordId` (the one the driver reuses for it). */
  tokenBytes(recordId: Uint8Array): Uint8Array {
    return this.tokens.bytes(recordId);
  }

  /** `req` with the driver's valid token for `recordId`, unless it carries its own. */
  withAuth(recordId: Uint8Array, req: ClientOp): ClientRequest {
    return (req.auth !== undefined ? req : { ...req, auth: this.tokenBytes(recordId) }) as ClientRequest;
  }

  /**
   * A vault that is not booted yet (planted token, fresh NVRAM). `wrapToken` puts something
   * between the enclave and the token (the token-faults target injects failures there).
   */
  static async create(seed: number, opts: { wrapToken?: (t: CanaryToken) => Token } = {}): Promise<FuzzVault> {
    const clock = { t: FUZZ_EPOCH_MS };
    const platformRng = drbg('platform', seed);
    const canaryToken = new CanaryToken(drbg('token', seed));
    const platform = {
      random: (n: number) => platformRng(n),
      now: () => clock.t,
      nvram: new FuzzNvram(256),
      token: opts.wrapToken ? opts.wrapToken(canaryToken) : canaryToken,
      partition: PARTITION,
      partitions: PARTITIONS,
      operatorKeyHash: sha256.hash(OPERATOR_SECRET),
      auth: FUZZ_AUTH,
      opaqueContext: CONTEXT,
      clock,
    };
    const v = new FuzzVault(platform, canaryToken, new SecretScanner(await allCanarySecrets()), drbg('client', seed));
    for (const id of SUITE_IDS) v.suites.set(id, await fastSuite(id));
    return v;
  }

  /** Boots a vault (planted token, fresh NVRAM), loads it and plants the canaries. */
  static async open(seed: number): Promise<FuzzVault> {
    const v = await FuzzVault.create(seed);
    await v.boot();
    for (const c of CANARIES) await v.plant(c);
    v.checkProbe('vault setup');
    return v;
  }

  // ---- the host side ------------------------------------------------------------------------

  /** Sends raw request bytes; checks and tracks the answer (see the header). */
  async raw(request: Uint8Array, where = 'a host request'): Promise<{ bytes: Uint8Array; res: HostResponse }> {
    this.tap.start();
    let bytes: Uint8Array;
    try {
      bytes = await this.enclave.request(request);
    } finally {
      for (const line of this.tap.stop()) this.scanner.scan(`a console line during ${where}`, line);
    }
    this.responses++;
    this.scanner.scan(`the response to ${where}`, bytes);
    let res: HostResponse;
    try {
      res = decodeMessage(HostResponses, bytes);
    } catch (e) {
      violation('bad-response', `the enclave answered ${where} with bytes that do not decode (${String(e)}): ${hex(bytes.subarray(0, 64))}`);
    }
    this.track(res);
    return { bytes, res };
  }

  async call(req: HostRequest, where?: string): Promise<HostResponse> {
    return (await this.raw(encodeMessage(HostRequests, req), where ?? req.type)).res;
  }

  /** Follows the batch protocol as an honest host would persist it. */
  private track(res: HostResponse): void {
    switch (res.type) {
      case 'Staged':
        this.staged = { epoch: res.epoch };
        break;
      case 'Prepared':
        if (this.staged?.epoch === res.epoch) this.staged = null;
        this.pending = { epoch: res.epoch, writes: res.writes };
        this.auditEvents += res.audit.length;
        break;
      case 'Committed':
        if (this.pending && this.pending.epoch === res.epoch) {
          for (const w of this.pending.writes) this.store.set(hex(w.recordId), w);
        } else {
          violation('protocol', `Committed epoch ${res.epoch} without a prepared batch of that epoch (pending: ${this.pending?.epoch ?? 'none'})`);
        }
        this.pending = null;
        this.epoch = res.epoch;
        for (const r of res.results) {
          if (r.sealed === 0) {
            let plain: ClientResponse;
            try {
              plain = decodeMessage(ClientResponses, r.response);
            } catch {
              violation('bad-response', `an unsealed batch result does not decode: ${hex(r.response)}`);
            }
            if (plain.type !== 'Fault') violation('unsealed-outcome', `an unsealed batch result carries ${plain.type}, not a Fault`);
          }
        }
        break;
      case 'Aborted':
        if (this.staged?.epoch === res.epoch) this.staged = null;
        if (this.pending?.epoch === res.epoch) {
          this.pending = null;
          this.staged = null; // computed on the aborted one: dropped with it
        }
        break;
      case 'Loaded':
        this.epoch = res.epoch;
        this.pending = null;
        this.staged = null;
        break;
      case 'Fault':
        if (res.code === Handling.BadPayload && new TextDecoder().decode(res.message) === 'internal error') {
          // A failed boot answers every request with its fault; it was judged at boot.
          if (this.checkProbe('a host request') === 0 && !this.bootFailed) {
            violation('untyped-error', 'the enclave answered a host request with BadPayload "internal error" (an untyped exception inside)');
          }
        }
        break;
      default:
        break;
    }
  }

  /** Aborts a batch the enclave still holds (an honest host whose storage write failed). */
  async abortPending(): Promise<void> {
    if (this.staged && !this.pending) {
      const res = await this.call({ type: 'Abort', epoch: this.staged.epoch }, 'the driver\'s Abort of the staged batch');
      expectAnswer('protocol', res, 'Aborted', 'Abort of the staged batch');
    }
    if (!this.pending) return;
    const res = await this.call({ type: 'Abort', epoch: this.pending.epoch }, 'the driver\'s Abort');
    expectAnswer('protocol', res, 'Aborted', 'Abort of the pending batch');
    if (this.staged) violation('protocol', `the batch staged behind an aborted one (epoch ${this.staged.epoch}) survived the Abort`);
  }

  /** Boots a new enclave on the same platform (a restart) and streams the stored rows to it. */
  async boot(): Promise<void> {
    this.checkProbe('the work before a boot');
    this.enclave = await createEnclave(this.platform);
    const seen = this.probe.drain();
    this.bootFailed = seen.length > 0;
    this.judge(seen, 'the enclave\'s boot');
    this.pending = null;
    this.staged = null;
    await this.load();
  }

  /**
   * Streams the honest rows and ends the load. A first refusal is retried once (an input may have
   * left rows of its own in the enclave's loader; the refusal drops them).
   */
  async load(): Promise<void> {
    const rows = [...this.store.values()];
    for (let attempt = 0; ; attempt++) {
      let refused: HostResponse | null = null;
      for (let i = 0; i < rows.length && !refused; i += MAX_LOAD_ENTRIES) {
        const res = await this.call({ type: 'LoadChunk', entries: rows.slice(i, i + MAX_LOAD_ENTRIES) }, 'the driver\'s LoadChunk');
        if (res.type !== 'Loading') refused = res;
      }
      if (!refused) break;
      if (attempt > 0) violation('not-serving', `LoadChunk of the honest rows answered ${describe(refused)}`);
    }
    const loaded = await this.call({ type: 'LoadEnd' }, 'the driver\'s LoadEnd');
    expectAnswer('not-serving', loaded, 'Loaded', 'LoadEnd of the honest rows');
    const info = await this.info();
    this.hpkePublicKey = info.hpkePublicKey;
  }

  async info(): Promise<Extract<HostResponse, { type: 'InfoResult' }>> {
    const res = await this.call({ type: 'Info' }, 'Info');
    expectAnswer('not-serving', res, 'InfoResult', 'Info');
    return res;
  }

  /**
   * The enclave still serves: Info answers `ready`. If not, a violation (after restarting the
   * enclave, so the next input finds a serving vault).
   */
  async checkServing(where: string): Promise<void> {
    const info = await this.info();
    if (info.state !== 0) {
      await this.boot();
      violation('not-serving', `after ${where} the enclave answers Info with state ${info.state}, not ready`);
    }
  }

  /** One batch of client messages, committed; returns the results in order. */
  async submit(ops: { recordId: Uint8Array; message: Uint8Array }[], where: string): Promise<{ sealed: boolean; response: Uint8Array }[]> {
    await this.abortPending();
    const epoch = this.epoch + 1;
    const prepared = await this.call(
      { type: 'Batch', epoch, ops: ops.map((o, i) => ({ opId: i, recordId: o.recordId, stored: this.store.get(hex(o.recordId))?.blob ?? new Uint8Array(0), request: o.message })) },
      where,
    );
    expectAnswer('not-serving', prepared, 'Prepared', `an honest Batch (${where})`);
    const committed = await this.call({ type: 'Commit', epoch }, where);
    expectAnswer('not-serving', committed, 'Committed', `an honest Commit (${where})`);
    const out: { sealed: boolean; response: Uint8Array }[] = new Array(ops.length);
    for (const r of committed.results) out[r.opId] = { sealed: r.sealed === 1, response: r.response };
    if (out.some((x) => x === undefined) || committed.results.length !== ops.length) violation('protocol', `Committed results do not match the ops (${where})`);
    return out;
  }

  // ---- the client side (end to end) -----------------------------------------------------------

  /** Seals one client request body to the enclave and sends it `times` times in one batch. */
  async clientRaw(recordId: Uint8Array, body: Uint8Array, where: string, times = 1): Promise<OpenedResult[]> {
    return this.clientBatch(new Array(times).fill({ recordId, body, where }));
  }

  /**
   * One batch of client requests, each sealed end to end (an item repeated by reference is
   * sealed once and sent as the same ciphertext); returns the opened, decoded answers in order.
   */
  async clientBatch(items: { recordId: Uint8Array; body: Uint8Array; where: string }[]): Promise<OpenedResult[]> {
    const sealedOf = new Map<object, Awaited<ReturnType<typeof sealRequest>>>();
    for (const it of items) if (!sealedOf.has(it)) sealedOf.set(it, await sealRequest(this.hpkePublicKey, it.recordId, it.body));
    const results = await this.submit(
      items.map((it) => ({ recordId: it.recordId, message: sealedOf.get(it)!.message })),
      items.map((it) => it.where).join(' + '),
    );
    const out: OpenedResult[] = [];
    for (let i = 0; i < results.length; i++) {
      const r = results[i]!;
      const { where } = items[i]!;
      const { openResponse } = sealedOf.get(items[i]!)!;
      let plain: Uint8Array;
      if (r.sealed) {
        try {
          plain = await openResponse(r.response);
        } catch {
          violation('e2e', `a sealed response to ${where} does not open for the client that sent it`);
        }
      } else {
        plain = r.response;
      }
      this.scanner.scan(`the opened client response to ${where}`, plain);
      let res: ClientResponse;
      try {
        res = decodeMessage(ClientResponses, plain);
      } catch (e) {
        violation('bad-response', `the client response to ${where} does not decode (${String(e)}): ${hex(plain)}`);
      }
      if (res.type === 'Fault' && res.code === Handling.BadPayload) {
        // The request was sealed properly to the enclave's key: BadPayload can only be an
        // internal error (sealed) or an envelope that should have opened (unsealed).
        if (this.checkProbe(where) === 0) {
          violation(r.sealed ? 'untyped-error' : 'e2e', `${where}: a properly sealed request was answered BadPayload (${r.sealed ? 'internal error' : 'did not open'})`);
        }
      }
      out.push({ sealed: r.sealed, raw: r.response, plain, res });
    }
    return out;
  }

  /** One client request (with the driver's valid token unless `req.auth` is given). */
  async client(recordId: Uint8Array, req: ClientOp, where?: string): Promise<ClientResponse> {
    const [r] = await this.clientRaw(recordId, encodeMessage(ClientRequests, this.withAuth(recordId, req)), where ?? req.type);
    return r!.res;
  }

  private opts(suite: SuiteId) {
    return { suite: this.suites.get(suite)!, context: CONTEXT, rng: this.rng, ksf: identityKsf };
  }

  /** Starts a registration; returns the stage and what RegisterFinish needs. */
  async registerStart(recordId: Uint8Array, suite: SuiteId, password: Uint8Array, attemptLimit: number): Promise<{ stageId: Uint8Array; record: Uint8Array; res: ClientResponse } | { res: ClientResponse }> {
    const o = this.opts(suite);
    const { request, state } = clientRegistrationStart(o, password);
    const res = await this.client(recordId, { type: 'RegisterStart', suite: SUITE_CODE[suite], request, attemptLimit, ksf: identityKsf.params, pacing: 0 }, 'the driver\'s RegisterStart');
    if (res.type !== 'RegisterStarted') return { res };
    const { record } = await clientRegistrationFinish(o, state, password, res.response);
    return { stageId: res.stageId, record, res };
  }

  /** Registers (or replaces, with an authorization) a record the driver then knows. */
  async register(
    recordId: Uint8Array,
    suite: SuiteId,
    password: Uint8Array,
    backupKey: Uint8Array,
    attemptLimit: number,
    auth?: { backupKey: Uint8Array } | { sessionId: Uint8Array; sessionKey: Uint8Array },
  ): Promise<ClientResponse> {
    const st = await this.registerStart(recordId, suite, password, attemptLimit);
    if (!('stageId' in st)) return st.res;
    let authorization: Uint8Array | undefined;
    if (auth && 'backupKey' in auth) authorization = encodeKeyAuthorization(auth.backupKey, st.stageId, recordId);
    else if (auth) authorization = encodeSessionAuthorization(auth.sessionId, auth.sessionKey, st.stageId, recordId);
    const res = await this.client(recordId, { type: 'RegisterFinish', stageId: st.stageId, record: st.record, backupKey, authorization }, 'the driver\'s RegisterFinish');
    if (res.type === 'Registered') {
      const s = this.suites.get(suite)!;
      this.scanner.setDynamic(`masking-key/${hex(recordId)}`, [{ name: `masking key of ${new TextDecoder().decode(recordId)}`, bytes: st.record.slice(s.Npk, s.Npk + s.Nh) }]);
      this.tracked.set(hex(recordId), { present: true, locked: false, attempts: res.attemptsRemaining, limit: res.attemptLimit, backupKey, password, known: true });
    }
    return res;
  }

  /** Starts a login with `password`; computes the KE3 (null if the password is wrong). */
  async loginStart(recordId: Uint8Array, suite: SuiteId, password: Uint8Array): Promise<LoginHandle | { res: ClientResponse }> {
    const o = this.opts(suite);
    const { ke1, state } = clientLoginStart(o, password);
    const res = await this.client(recordId, { type: 'LoginStart', suite: SUITE_CODE[suite], ke1 }, 'the driver\'s LoginStart');
    if (res.type !== 'LoginStarted') return { res };
    const fin = await clientLoginFinish(o, state, password, res.ke2);
    if (fin.ok) this.noteSessionKey(fin.sessionKey);
    return { sessionId: res.sessionId, ke3: fin.ok ? fin.ke3 : null, sessionKey: fin.ok ? fin.sessionKey : null, res };
  }

  private noteSessionKey(k: Uint8Array): void {
    this.recentSessionKeys.push({ name: 'a driver session key', bytes: Uint8Array.from(k) });
    if (this.recentSessionKeys.length > 8) this.recentSessionKeys.shift();
    this.scanner.setDynamic('sessions', this.recentSessionKeys);
  }

  /** Status of a record; updates the tracked state (the caller checks the rules first). */
  async status(recordId: Uint8Array, where = 'the driver\'s Status'): Promise<ClientResponse> {
    return this.client(recordId, { type: 'Status' }, where);
  }

  /**
   * Re-plants a canary when an input deleted, locked or replaced it: deletes what is there and
   * registers the canary's backup key under its password again.
   */
  async plant(c: CanaryRecord): Promise<void> {
    const st = await this.status(c.recordId, `the driver's Status of ${c.label}`);
    if (st.type === 'StatusResult') {
      // A live record needs proof of its backup key: the one the driver last registered under it.
      const t = this.tracked.get(hex(c.recordId));
      const key = t?.known && t.backupKey ? t.backupKey : c.backupKey;
      const authorization = st.locked ? undefined : encodeKeyAuthorization(key, st.registrationId, c.recordId, 'delete');
      const del = await this.client(c.recordId, { type: 'Delete', authorization }, `the driver's Delete of ${c.label}`);
      expectAnswer('not-serving', del, 'Deleted', `Delete of ${c.label}`);
    }
    const reg = await this.register(c.recordId, c.suite, c.password, c.backupKey, c.attemptLimit);
    expectAnswer('not-serving', reg, 'Registered', `planting ${c.label}`);
  }

  /** Re-plants every canary that is no longer active with its known key and password. */
  async replant(): Promise<void> {
    for (const c of CANARIES) {
      const t = this.tracked.get(hex(c.recordId));
      if (!t || !t.present || t.locked || !t.known || !equalBytes(t.backupKey, c.backupKey) || !equalBytes(t.password, c.password) || t.attempts === 0) await this.plant(c);
    }
  }

  /** Unwraps a released key with the session key that proved the password. */
  async unwrap(sessionKey: Uint8Array, wrapped: Uint8Array): Promise<Uint8Array | null> {
    return unwrapReleased(sessionKey, wrapped);
  }

  /** An authorization of a stage by proof of the backup key. */
  static keyAuthorization(backupKey: Uint8Array, stageId: Uint8Array, recordId: Uint8Array): Uint8Array {
    return encodeKeyAuthorization(backupKey, stageId, recordId);
  }
  static sessionAuthorization(sessionId: Uint8Array, sessionKey: Uint8Array, stageId: Uint8Array, recordId: Uint8Array): Uint8Array {
    return encodeSessionAuthorization(sessionId, sessionKey, stageId, recordId);
  }

  /**
   * The guess rule on a Status answer: against what the driver tracked before, attempts
   * remaining never increase and a lock never lifts, unless `allowReset` (a valid KE3 or an
   * authorized re-registration the driver itself produced, or a registration over a record that
   * was not live). Updates the tracked state.
   */
  applyStatus(recordId: Uint8Array, st: ClientResponse, allowReset: boolean, where: string): void {
    const key = hex(recordId);
    const before = this.tracked.get(key);
    const name = new TextDecoder().decode(recordId);
    if (st.type === 'NotRegistered') {
      if (before) before.present = false;
      return;
    }
    expectAnswer('not-serving', st, 'StatusResult', `Status of ${name} after ${where}`);
    if (before && before.present && !allowReset) {
      if (before.locked && st.locked === 0) violation('lock-lifted', `${name} was locked and is not after ${where}`);
      if (st.attemptsRemaining > before.attempts) {
        violation('guess-refunded', `${name}: attempts remaining went from ${before.attempts} to ${st.attemptsRemaining} after ${where}, with no valid KE3 or authorized re-registration`);
      }
    }
    const t: Tracked = before ?? { present: true, locked: false, attempts: 0, limit: 0, backupKey: new Uint8Array(0), password: new Uint8Array(0), known: false };
    if (!before?.present && !allowReset) t.known = false;
    t.present = true;
    t.locked = st.locked === 1;
    t.attempts = st.attemptsRemaining;
    t.limit = st.attemptLimit;
    this.tracked.set(key, t);
  }

  /**
   * How an untyped exception seen by the probe is judged: a violation kind, or null to accept it
   * (the token-faults target accepts the failures it injects itself).
   */
  untypedKind: (e: unknown) => string | null = () => 'untyped-error';

  /** Drains the probe; throws a Violation for the first exception `untypedKind` does not accept. Returns how many it saw. */
  checkProbe(where: string): number {
    const seen = this.probe.drain();
    this.judge(seen, where);
    return seen.length;
  }

  private judge(seen: unknown[], where: string): void {
    for (const e of seen) {
      const kind = this.untypedKind(e);
      if (kind) violation(kind, `an untyped exception reached the enclave's toFault during ${where} (answered as BadPayload "internal error"): ${describeError(e)}`);
    }
  }

  /** Checks the end-of-input invariants common to the enclave targets. */
  async endInput(where: string): Promise<void> {
    this.checkProbe(where);
    await this.checkServing(where);
  }
}

/**
 * A target's vault across its lifecycle: opened with the run's seed at setup, reopened fresh at
 * each reset (a seed of its own per generation), dropped at teardown.
 */
export class VaultSlot {
  vault: FuzzVault | null = null;
  private seed = 1;
  private generation = 0;

  async open(seed = 1): Promise<void> {
    this.seed = seed;
    this.vault = await FuzzVault.open(seed);
  }
  async reopen(): Promise<void> {
    this.vault = await FuzzVault.open(this.seed * 1000 + ++this.generation);
  }
  close(): void {
    this.vault = null;
  }
  /** The open vault; opened again with the run's seed after a teardown. */
  async current(): Promise<FuzzVault> {
    if (!this.vault) await this.open(this.seed);
    return this.vault!;
  }
}

export function describe(res: HostResponse): string {
  if (res.type === 'Fault') return `Fault ${res.code} (${new TextDecoder().decode(res.field)}: ${new TextDecoder().decode(res.message)})`;
  return res.type;
}

export function describeClient(res: ClientResponse): string {
  if (res.type === 'Fault') return `Fault ${res.code} (${new TextDecoder().decode(res.field)})`;
  return res.type;
}

export { EnclaveFault };
