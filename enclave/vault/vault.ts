/**
 * The enclave's state machine: boot (self-tests, provisioning, NVRAM), load (rebuild the
 * rollback index from the host's rows), batches (prepare, then commit after the host made them
 * durable), zeroization, and audit verification. One instance per partition.
 *
 * Batch protocol (the guess-charging rule of the design):
 *   Batch(e)  -> every op runs against the record the enclave expects (index leaf check), its
 *                writes are sealed with epoch e; the enclave writes the batch's resulting index
 *                count and sum to NVRAM as an intent and answers Prepared(writes, audit).
 *                No client response leaves yet.
 *   Commit(e) -> the host has persisted the writes. The enclave writes the intent as committed
 *                to NVRAM, then answers Committed(results).
 *   Abort(e)  -> the host could not persist: the batch is dropped (its stages and sessions die).
 * Room for the stages and sessions a batch makes is taken while it is computed (sessions.ts): an
 * op that finds none is refused then, so nothing can fail once the Commit has written NVRAM.
 * Overlap (the device works while the host persists): a Batch(e+1) that arrives while batch e is
 * prepared and not yet committed is run at once and held as staged (answer Staged(e+1)): its ops
 * are computed, nothing is written to NVRAM and no response leaves. It may not touch a record of
 * batch e (the whole Batch is refused), so every op sees exactly the state it would see after
 * Commit(e): records batch e did not change, and no session or stage batch e's commit would add
 * for them. After Commit(e), Prepare(e+1) writes the staged batch's intent and answers
 * Prepared(e+1) as Batch would have; then Commit(e+1) as usual. Abort(e) drops the staged batch too.
 */
import { EnclaveFault, Handling, Integrity, Lifecycle, PlatformFault as PlatformCodes } from '../api/codes.ts';
import { encodeMessage, decodeMessage } from '../api/codec.ts';
import type { AuditEvent, ClientRequest, HostRequest, HostResponse } from '../api/messages.ts';
import { decodeAuthConfig, encodeAuthConfig } from '../api/auth.ts';
import { PACING } from '../api/pacing.ts';
import type { AuthConfig } from '../api/auth.ts';
import { TokenVerifier } from '../api/auth-verify.ts';
import { AUDIT_NONCE_LEN, ClientRequests, ClientResponses, DEFAULT_OPAQUE_CONTEXT, ENCLAVE_STATE, SUITE_CODE } from '../api/messages.ts';
import { openRequestSync } from './e2e-open.ts';
import type { E2eReceiver } from './e2e-open.ts';
import { ctEqual } from '../opaque/bytes.ts';
import { digestOf } from './digest.ts';
import { toHex } from '../opaque/bytes.ts';
import { OpaqueError } from '../opaque/errors.ts';
import { createSodiumSha256 } from '../opaque/hash-sodium.ts';
import type { HashPrimitives } from '../opaque/hash.ts';
import type { Suite, SuiteId } from '../opaque/suite.ts';
import { SUITE_IDS } from '../opaque/suite.ts';
import { fastSuite } from '../opaque/suites-fast.ts';
import type { Platform } from '../platform.ts';
import { TokenError } from '../token.ts';
import { runSelfTests } from '../selftest.ts';
import { AuditLog } from './audit.ts';
import { deriveEnclaveKeys, ensureTokenKeys, zeroizeEnclaveKeys } from './keys.ts';
import type { EnclaveKeys } from './keys.ts';
import { FLAG_ZEROIZED, decodeNvramState, encodeNvramState, freshNvramState, NVRAM_STATE_SIZE } from './nvram-state.ts';
import type { NvramSlot, NvramState } from './nvram-state.ts';
import { addInto, subInto } from './adhash.ts';
import { handleSync } from './ops.ts';
import type { OpContext } from './ops.ts';
import { IndexLoader, RecordIndex } from './record-index.ts';
import { KIND_RECORD, KIND_TOMBSTONE, parseHeader, seal, unseal } from './record.ts';
import type { VaultRecord } from './record.ts';
import { VaultTables } from './sessions.ts';
import type { TableLimits } from './sessions.ts';

/** How a Vault is built beyond its platform (tests shrink the tables with it). */
export interface VaultOptions {
  tableLimits?: Partial<TableLimits>;
}

type State = 'ready' | 'notLoaded' | 'selfTestFailed' | 'zeroized' | 'broken';

interface Pending {
  epoch: number;
  /** By record id (hex): the record's state after this batch; `key` is its index key (RecordIndex.keyOf). */
  overlay: Map<string, { recordId: Uint8Array; key: Uint8Array; record: VaultRecord | null; version: number; leaf: Uint8Array | null }>;
  /** Every record id (hex) an op of this batch named, written or not. */
  touched: Set<string>;
  audit: AuditEvent[];
  results: { opId: number; sealed: number; response: Uint8Array }[];
}

/** A computed batch: its effects, its writes for the host, and the audit chain after it. */
interface Computed {
  pending: Pending;
  writes: { recordId: Uint8Array; blob: Uint8Array }[];
  auditSeq: number;
  auditHead: Uint8Array;
  /** A staged batch whose intent went to NVRAM with its predecessor's commit (one write for both). */
  intentWritten?: boolean;
}

type Opened = ReturnType<typeof openRequestSync>;
/**
 * A batch op's request after the pre-pass: opened, decoded and authorized, or the error to answer
 * with (`sealResponse` present when the envelope opened, so that the answer is sealed).
 */
type Admitted = { request: ClientRequest; sealResponse: Opened['sealResponse'] } | { error: unknown; sealResponse?: Opened['sealResponse'] };

const preparedOf = (c: Computed): HostResponse => ({ type: 'Prepared', epoch: c.pending.epoch, writes: c.writes, audit: c.pending.audit });

/** openRequestSync, with its error as a value (thrown later, where the op would have opened it). */
function openOrError(r: E2eReceiver, recordId: Uint8Array, message: Uint8Array, rng: (n: number) => Uint8Array): Opened | { error: unknown } {
  try {
    return openRequestSync(r, recordId, message, rng);
  } catch (error) {
    return { error };
  }
}

export class Vault {
  private state: State = 'notLoaded';
  private failure = '';
  private nv!: NvramState;
  private keys: EnclaveKeys | null = null;
  private index: RecordIndex | null = null;
  private loader: IndexLoader | null = null;
  private pending: Pending | null = null;
  /**
   * A batch computed while `pending` waits for its Commit: no NVRAM intent until that Commit writes
   * it together with the commit (`intentWritten`); its Prepare then makes it pending.
   */
  private staged: Computed | null = null;
  private audit!: AuditLog;
  /** Checks the issuer's token of every client operation (api/auth-verify.ts). */
  private verifier!: TokenVerifier;
  /** The laxest guess pacing a registration may pick (AuthConfig.minPacing; api/pacing.ts). */
  private minPacing: number = PACING.standard;
  /**
   * SHA-256 of the record index, the audit chain, partitioning and the end-to-end key schedule:
   * libsodium's WebAssembly build (hash-sodium.ts), which makes no native object per call (a
   * node:crypto Hmac is one, with a weak callback that every young-generation collection of this
   * thread then runs). Set at boot, checked by the self-tests.
   */
  private sha256!: HashPrimitives;
  private readonly suites = new Map<SuiteId, Suite>();
  /**
   * Stages, login sessions and recovered sessions. What a batch puts there is pending until its
   * Commit (which only marks it live) and released when the batch is aborted or dropped.
   */
  private readonly tables: VaultTables;

  /** `random` as a RandomSource, made once (the batch hands it to every operation). */
  private readonly rng = (n: number): Uint8Array => this.random(n);

  private constructor(
    private readonly p: Platform,
    opts: VaultOptions,
  ) {
    this.tables = new VaultTables(this.suites, opts.tableLimits);
  }

  static async boot(p: Platform, opts: VaultOptions = {}): Promise<Vault> {
    const v = new Vault(p, opts);
    await v.start();
    return v;
  }

  private async start(): Promise<void> {
    for (const id of SUITE_IDS) this.suites.set(id, await fastSuite(id));
    this.sha256 = await createSodiumSha256();
    if (this.p.nvram.size < NVRAM_STATE_SIZE) throw new EnclaveFault(PlatformCodes.NvramFull, 'NVRAM region too small');
    const stored = decodeNvramState(this.p.nvram.read());
    if (stored && stored.flags & FLAG_ZEROIZED) {
      this.state = 'zeroized';
      return;
    }
    const handles = ensureTokenKeys(this.p.token, stored === null);
    const st = await runSelfTests(this.sha256, this.suites.get('ristretto255-SHA512')!, this.p.token, handles.seal);
    if (!st.ok) {
      this.state = 'selfTestFailed';
      this.failure = st.failed.join(',');
      return;
    }
    this.keys = await deriveEnclaveKeys(this.p.token, handles, this.suites, this.sha256);
    const auth = this.p.auth ?? null;
    const authHash = auth ? this.authHashOf(encodeAuthConfig(auth)) : new Uint8Array(16);
    if (stored) {
      if (!ctEqual(stored.keyCheck, this.keys.keyCheck)) {
        throw new EnclaveFault(Lifecycle.NotProvisioned, 'the token keys are not the ones this NVRAM was provisioned with');
      }
      this.nv = stored;
      if (!ctEqual(stored.authHash, authHash)) {
        // A vault with no issuer yet (new, or made before issuers existed) adopts the first set it
        // is booted with: until then it serves no client operation. Any later change is SetAuth's.
        if (!stored.authHash.every((x) => x === 0) || !auth) {
          throw new EnclaveFault(Lifecycle.AuthConfigMismatch, 'the issuer set is not the one this vault was provisioned with (change it with the operator secret)');
        }
        this.nv = { ...stored, authHash };
        await this.p.nvram.write(encodeNvramState(this.nv));
      }
    } else {
      this.nv = freshNvramState(this.keys.keyCheck, this.p.operatorKeyHash, authHash);
      await this.p.nvram.write(encodeNvramState(this.nv));
    }
    this.verifier = await TokenVerifier.create(auth);
    this.minPacing = auth?.minPacing ?? PACING.standard;
    this.audit = new AuditLog(this.keys.auditKey, this.keys.auditSealKey, this.sha256);
    this.state = 'notLoaded';
  }

  /** The NVRAM's fingerprint of an issuer set: the first 16 bytes of SHA-256 of its encoding. */
  private authHashOf(encoded: Uint8Array): Uint8Array {
    return this.sha256.hash(encoded).slice(0, 16);
  }

  /** The platform's random bytes, length-checked (a faulty source is a typed fault, not a crash). */
  private random(n: number): Uint8Array {
    const b = this.p.random(n);
    if (!(b instanceof Uint8Array) || b.length !== n) throw new EnclaveFault(PlatformCodes.RandomError, 'random source returned the wrong length');
    return b;
  }

  /** Partition of a record id: the first 4 bytes of SHA-256(id), big-endian, mod partitions. */
  partitionOf(recordId: Uint8Array): number {
    return this.partitionOfHash(digestOf(this.sha256, recordId));
  }

  /** partitionOf from SHA-256(id), which also gives the index key (its first 16 bytes). */
  private partitionOfHash(h: Uint8Array): number {
    return (((h[0]! << 24) | (h[1]! << 16) | (h[2]! << 8) | h[3]!) >>> 0) % this.p.partitions;
  }

  private requireState(...ok: State[]): void {
    if (ok.includes(this.state)) return;
    switch (this.state) {
      case 'selfTestFailed':
        throw new EnclaveFault(Lifecycle.SelfTestFailed, `self-tests failed: ${this.failure}`);
      case 'zeroized':
        throw new EnclaveFault(Lifecycle.Zeroized, 'the enclave has been zeroized');
      case 'notLoaded':
        throw new EnclaveFault(Integrity.NotLoaded, 'records not loaded yet');
      case 'broken':
        throw new EnclaveFault(PlatformCodes.NvramError, 'NVRAM write failed; reload required');
      default:
        throw new EnclaveFault(Lifecycle.NotReady, 'not ready');
    }
  }

  async handle(req: HostRequest): Promise<HostResponse> {
    switch (req.type) {
      case 'Info':
        return this.info();
      case 'LoadChunk':
        return this.loadChunk(req);
      case 'LoadEnd':
        return this.loadEnd();
      case 'Batch':
        return this.batch(req);
      case 'Commit':
        return this.commit(req.epoch);
      case 'Prepare':
        return this.prepareStaged(req.epoch);
      case 'Abort':
        return this.abort(req.epoch);
      case 'Zeroize':
        return this.zeroize(req.auth);
      case 'SetAuth':
        return this.setAuth(req.config, req.auth);
      case 'AuditVerify':
        return this.auditVerify(req);
      default: {
        const never: never = req;
        throw new EnclaveFault(Handling.BadPayload, `unhandled ${String(never)}`);
      }
    }
  }

  private info(): HostResponse {
    const suites = [];
    if (this.keys) {
      for (const [id, k] of this.keys.server) suites.push({ suite: SUITE_CODE[id], serverPublicKey: k.serverPublicKey });
    }
    return {
      type: 'InfoResult',
      state: ENCLAVE_STATE[this.state === 'broken' ? 'notLoaded' : this.state],
      partition: this.p.partition,
      epoch: this.nv?.committed.epoch ?? 0,
      records: this.index?.count ?? 0,
      hpkePublicKey: this.keys?.e2e.publicKey ?? new Uint8Array(0),
      suites,
    };
  }

  private loadChunk(req: Extract<HostRequest, { type: 'LoadChunk' }>): HostResponse {
    this.requireState('notLoaded', 'broken');
    this.pending = null;
    this.staged = null;
    this.tables.dropAll();
    this.loader ??= new IndexLoader(this.keys!.indexKey, this.sha256, (id) => this.partitionOf(id) === this.p.partition);
    try {
      for (const e of req.entries) this.loader.add(e.recordId, e.blob);
    } catch (err) {
      this.loader = null;
      throw err;
    }
    return { type: 'Loading', accepted: req.entries.length };
  }

  private async loadEnd(): Promise<HostResponse> {
    this.requireState('notLoaded', 'broken');
    const loader = this.loader ?? new IndexLoader(this.keys!.indexKey, this.sha256, () => true);
    this.loader = null;
    const { index, rolledForward } = loader.finish(this.nv.committed, this.nv.intent);
    if (rolledForward) await this.writeNvram({ ...this.nv, committed: this.nv.intent!, intent: null });
    else if (this.nv.intent) await this.writeNvram({ ...this.nv, intent: null });
    this.index = index;
    this.state = 'ready';
    return { type: 'Loaded', epoch: this.nv.committed.epoch, records: index.count, rolledForward: rolledForward ? 1 : 0 };
  }

  /** Writes the NVRAM and adopts the state; on failure the enclave needs a reload. */
  private async writeNvram(next: NvramState): Promise<void> {
    try {
      await this.p.nvram.write(encodeNvramState(next));
    } catch {
      this.pending = null;
      this.staged = null;
      this.tables.dropAll();
      this.state = 'broken';
      throw new EnclaveFault(PlatformCodes.NvramError, 'NVRAM write failed; reload required');
    }
    this.nv = next;
  }

  private async batch(req: Extract<HostRequest, { type: 'Batch' }>): Promise<HostResponse> {
    this.requireState('ready');
    if (this.staged) throw new EnclaveFault(Handling.BatchOutOfOrder, 'a batch is already staged', 'epoch');
    const base = this.pending;
    if (base) {
      // Overlap: run it now, hold it until the pending batch is committed (Prepare).
      if (req.epoch !== base.epoch + 1) throw new EnclaveFault(Handling.BatchOutOfOrder, 'a batch is already pending', 'epoch');
      for (const op of req.ops) {
        if (base.touched.has(toHex(op.recordId))) {
          throw new EnclaveFault(Handling.BatchOutOfOrder, 'a record of the pending batch can not be in the batch behind it', 'ops');
        }
      }
      const admitted = await this.admit(req);
      const intent = this.nv.intent!;
      this.staged = this.compute(req, admitted, intent.auditSeq, intent.auditHead);
      return { type: 'Staged', epoch: req.epoch };
    }
    const committed = this.nv.committed;
    if (req.epoch !== committed.epoch + 1) throw new EnclaveFault(Handling.BatchOutOfOrder, `expected epoch ${committed.epoch + 1}`, 'epoch');
    const admitted = await this.admit(req);
    return this.prepareComputed(this.compute(req, admitted, committed.auditSeq, committed.auditHead));
  }

  /**
   * Opens, decodes and authorizes every request of a batch before any of them runs: the issuer's
   * token of each is checked (api/auth-verify.ts, against the platform clock) here, so no op whose
   * token fails reaches a handler, and nothing is charged, changed or revealed for it. The
   * requests are opened one after another first, so that the X25519 key import and DH, the key
   * schedule and AES-GCM stay warm in the caches (interleaved with OPAQUE's group operations the
   * key import costs more: bench/README.md). Errors are values: compute() throws each after the
   * op's partition check and before its stored record is read.
   */
  private async admit(req: Extract<HostRequest, { type: 'Batch' }>): Promise<Admitted[]> {
    const keys = this.keys!;
    const now = this.p.now();
    const opened = req.ops.map((op) => openOrError(keys.e2e, op.recordId, op.request, this.rng));
    return Promise.all(
      opened.map(async (o, i): Promise<Admitted> => {
        if ('error' in o) return o;
        try {
          const request = decodeMessage(ClientRequests, o.request);
          await this.verifier.check(request.auth, req.ops[i]!.recordId, now);
          return { request, sealResponse: o.sealResponse };
        } catch (error) {
          return { error, sealResponse: o.sealResponse };
        }
      }),
    );
  }

  /** Prepare(e): the staged batch e, its predecessor committed, gets its intent and is prepared. */
  private async prepareStaged(epoch: number): Promise<HostResponse> {
    this.requireState('ready');
    const s = this.staged;
    if (!s || this.pending || s.pending.epoch !== epoch || this.nv.committed.epoch + 1 !== epoch) {
      throw new EnclaveFault(Handling.NoBatchPending, 'no staged batch with this epoch behind the committed one', 'epoch');
    }
    this.staged = null;
    if (!s.intentWritten) return this.prepareComputed(s);
    // Its intent is durable already (written with the commit before it): nothing more to write.
    this.p.failpoint?.('batch:before-intent');
    this.pending = s.pending;
    this.p.failpoint?.('batch:prepared');
    return preparedOf(s);
  }

  /** Writes a computed batch's intent to NVRAM and makes it the pending batch: Prepared. */
  private async prepareComputed(c: Computed): Promise<HostResponse> {
    const index = this.index!;
    const intent = this.intentOf(c, index.sum, index.count);
    this.p.failpoint?.('batch:before-intent');
    await this.writeNvram({ ...this.nv, intent });
    this.pending = c.pending;
    this.p.failpoint?.('batch:prepared');
    return preparedOf(c);
  }

  /**
   * A computed batch's intent: the count and sum the index will have once the batch is durable,
   * from the index's count and sum before it (the committed index, or the pending batch's intent
   * for a staged batch, whose records are all outside the pending batch).
   */
  private intentOf(c: Computed, baseSum: Uint8Array, baseCount: number): NvramSlot {
    const index = this.index!;
    const sum = Uint8Array.from(baseSum);
    let count = baseCount;
    for (const o of c.pending.overlay.values()) {
      const old = index.getByKey(o.key);
      if (old) {
        subInto(sum, old);
        count--;
      }
      if (o.leaf) {
        addInto(sum, o.leaf);
        count++;
      }
    }
    return { epoch: c.pending.epoch, count, indexSum: sum, auditSeq: c.auditSeq, auditHead: c.auditHead };
  }

  /** Runs every op of a batch against the committed index (and the batch's own earlier ops). */
  private compute(req: Extract<HostRequest, { type: 'Batch' }>, admitted: Admitted[], auditSeq: number, auditHead: Uint8Array): Computed {
    const now = this.p.now();
    this.tables.begin(req.epoch, now);
    const pending: Pending = { epoch: req.epoch, overlay: new Map(), touched: new Set(), audit: [], results: [] };
    const writes: { recordId: Uint8Array; blob: Uint8Array }[] = [];
    const keys = this.keys!;
    const index = this.index!;
    for (let i = 0; i < req.ops.length; i++) {
      const op = req.ops[i]!;
      const idHex = toHex(op.recordId);
      pending.touched.add(idHex);
      // Every answer to a request whose envelope opened is sealed, faults included: the client
      // takes nothing unsealed as an outcome, and the host learns no more than the fault's length.
      const sealResponse = admitted[i]!.sealResponse ?? null;
      this.tables.opStart();
      try {
        // SHA-256(id) once: the partition, and the index key (RecordIndex.keyOf).
        const idHash = digestOf(this.sha256, op.recordId);
        if (this.partitionOfHash(idHash) !== this.p.partition) {
          throw new EnclaveFault(Integrity.IndexMismatch, 'record belongs to another partition', 'recordId');
        }
        // A request that did not open, decode or pass its token check is refused before its
        // stored record is read: a stranger's refusal costs the same for a registered id and an
        // unknown one.
        const adm = admitted[i]!;
        if ('error' in adm) throw adm.error;
        const key = idHash.subarray(0, 16);
        const { record: current, version } = this.currentRecord(pending, op.recordId, key, idHex, op.stored, index);
        const seal1 = adm.sealResponse;
        const creq = adm.request;
        const ctx: OpContext = {
          now,
          rng: this.rng,
          recordId: op.recordId,
          idHex,
          current,
          suites: this.suites,
          keys,
          opaqueContext: this.p.opaqueContext ?? DEFAULT_OPAQUE_CONTEXT,
          stages: this.tables.stages,
          sessions: this.tables.sessions,
          authSessions: this.tables.authSessions,
          minPacing: this.minPacing,
        };
        const result = handleSync(ctx, creq);
        if (result.write !== undefined) {
          const rec = result.write === 'delete' ? null : result.write;
          const suite = rec ? rec.suite : (current?.suite ?? 0);
          const blob = seal(this.p.token, keys.seal, op.recordId, { kind: rec ? KIND_RECORD : KIND_TOMBSTONE, suite, epoch: req.epoch, version: version + 1 }, rec);
          pending.overlay.set(idHex, { recordId: op.recordId, key, record: rec, version: version + 1, leaf: rec ? index.leafOf(op.recordId, blob) : null });
          writes.push({ recordId: op.recordId, blob });
        }
        const rh = result.audit.length ? this.audit.recordHash(op.recordId) : null;
        for (const a of result.audit) {
          const ev = this.audit.next(auditSeq, auditHead, now, this.rng(AUDIT_NONCE_LEN), a.kind, rh!, a.attemptsRemaining);
          auditSeq = ev.seq;
          auditHead = ev.mac;
          pending.audit.push(ev);
        }
        const response = seal1(encodeMessage(ClientResponses, result.response));
        pending.results.push({ opId: op.opId, sealed: 1, response });
      } catch (e) {
        this.tables.opFailed(); // what the op put in the tables goes with it
        const f = toFault(e);
        const plain = encodeMessage(ClientResponses, { type: 'Fault', code: f.code, field: new TextEncoder().encode((f.field ?? '').slice(0, 64)) });
        if (sealResponse) pending.results.push({ opId: op.opId, sealed: 1, response: sealResponse(plain) });
        else pending.results.push({ opId: op.opId, sealed: 0, response: plain });
      }
    }
    return { pending, writes, auditSeq, auditHead };
  }

  /** The record an op works on: this batch's pending version, or the stored blob checked against the index. */
  private currentRecord(pending: Pending, recordId: Uint8Array, key: Uint8Array, idHex: string, stored: Uint8Array, index: RecordIndex): { record: VaultRecord | null; version: number } {
    const o = pending.overlay.get(idHex);
    if (o) return { record: o.record ? { ...o.record } : null, version: o.version };
    const expected = index.getByKey(key);
    if (expected) {
      if (stored.length === 0 || !ctEqual(index.leafOf(recordId, stored), expected)) {
        throw new EnclaveFault(Integrity.RollbackDetected, 'stored record is not the current version', 'stored');
      }
      const { header, record } = unseal(this.p.token, this.keys!.seal, recordId, stored);
      if (!record) throw new EnclaveFault(Integrity.SealedRecordInvalid, 'stored record does not open', 'stored');
      return { record, version: header.version };
    }
    // No live record: a tombstone (or nothing). Its version keeps numbering monotonic.
    let version = 0;
    if (stored.length > 0) {
      try {
        version = parseHeader(stored).version;
      } catch {
        version = 0;
      }
    }
    return { record: null, version };
  }

  private async commit(epoch: number): Promise<HostResponse> {
    this.requireState('ready');
    const p = this.pending;
    const intent = this.nv.intent;
    if (!p || p.epoch !== epoch || !intent || intent.epoch !== epoch) {
      throw new EnclaveFault(Handling.NoBatchPending, 'no pending batch with this epoch', 'epoch');
    }
    // A batch staged behind this one gets its intent in the same NVRAM write (one fdatasync for
    // both; its Prepare then writes nothing). The state written is the one a separate Prepare
    // would have left, so a crash finds nothing new: the host has none of its writes yet, and a
    // reload drops its intent.
    const s = this.staged;
    const next = s ? this.intentOf(s, intent.indexSum, intent.count) : null;
    this.p.failpoint?.('commit:before-nvram');
    await this.writeNvram({ ...this.nv, committed: intent, intent: next });
    if (s) s.intentWritten = true;
    this.p.failpoint?.('commit:after-nvram');
    const index = this.index!;
    for (const o of p.overlay.values()) index.setByKey(o.key, o.leaf);
    this.pending = null;
    this.tables.commit(epoch);
    return { type: 'Committed', epoch, results: p.results };
  }

  private abort(epoch: number): HostResponse {
    if (this.staged && this.staged.pending.epoch === epoch) {
      this.staged = null;
      this.tables.abort(epoch);
      return { type: 'Aborted', epoch };
    }
    const p = this.pending;
    if (!p || p.epoch !== epoch) throw new EnclaveFault(Handling.NoBatchPending, 'no pending batch with this epoch', 'epoch');
    // A staged batch was computed on the assumption that this one commits: it goes too.
    this.pending = null;
    this.staged = null;
    this.tables.abort(epoch);
    return { type: 'Aborted', epoch };
  }

  private async zeroize(auth: Uint8Array): Promise<HostResponse> {
    if (this.state === 'zeroized') return { type: 'ZeroizeDone' };
    this.checkOperator(auth);
    this.p.token.destroyAllKeys();
    if (this.keys) zeroizeEnclaveKeys(this.keys);
    this.keys = null;
    this.index = null;
    this.pending = null;
    this.staged = null;
    this.tables.clear();
    await this.writeNvram({ ...freshNvramState(new Uint8Array(16), undefined), flags: FLAG_ZEROIZED });
    this.state = 'zeroized';
    return { type: 'ZeroizeDone' };
  }

  /** SetAuth: the operator replaces the issuer set; the new set's hash goes to NVRAM, and the host must store the set. */
  private async setAuth(config: Uint8Array, auth: Uint8Array): Promise<HostResponse> {
    this.requireState('ready', 'notLoaded');
    this.checkOperator(auth);
    const cfg: AuthConfig = decodeAuthConfig(config);
    if (cfg.issuers.length === 0) throw new EnclaveFault(Handling.BadPayload, 'an issuer set needs at least one issuer', 'config');
    const verifier = await TokenVerifier.create(cfg);
    await this.writeNvram({ ...this.nv, authHash: this.authHashOf(encodeAuthConfig(cfg)) });
    this.verifier = verifier;
    this.minPacing = cfg.minPacing ?? PACING.standard;
    return { type: 'AuthSet', issuers: cfg.issuers.length };
  }

  /** The operator's secret, checked against the hash provisioned in NVRAM (none provisioned: refused). */
  private checkOperator(auth: Uint8Array): void {
    const expect = this.nv?.operatorKeyHash;
    if (!expect || expect.every((x) => x === 0) || !ctEqual(this.sha256.hash(auth), expect)) {
      throw new EnclaveFault(Lifecycle.OperatorAuthFailed, 'operator authorization failed');
    }
  }

  /**
   * AuditVerify: checks a run of stored events against the committed chain (its NVRAM head, or a
   * point an earlier answer anchored). A run that verifies gets the anchor of its start, so the
   * host can read a long chain backwards; with the operator secret it is also opened. Only events
   * at or before the committed head ever verify, so no batch is opened before its Commit.
   */
  private auditVerify(req: Extract<HostRequest, { type: 'AuditVerify' }>): HostResponse {
    this.requireState('ready', 'notLoaded');
    const open = req.auth.length > 0;
    if (open) this.checkOperator(req.auth);
    const c = this.nv.committed;
    let toSeq = c.auditSeq;
    let toHead = c.auditHead;
    if (req.anchor.length > 0) {
      if (req.toSeq > c.auditSeq || !ctEqual(req.anchor, this.audit.anchor(req.toSeq, req.toHead))) {
        throw new EnclaveFault(Integrity.AuditAnchorInvalid, 'the anchor is not the enclave\'s for this point of the chain', 'anchor');
      }
      toSeq = req.toSeq;
      toHead = req.toHead;
    }
    const bad = this.audit.verify(req.events, req.fromSeq, req.fromHead, toSeq, toHead);
    const ok = bad < 0;
    return {
      type: 'AuditResult',
      firstBad: ok ? 0xffffffff : bad,
      headSeq: c.auditSeq,
      anchor: ok ? this.audit.anchor(req.fromSeq, req.fromHead) : new Uint8Array(0),
      entries: ok && open ? req.events.map((e) => this.audit.open(e)) : [],
    };
  }
}

export function toFault(e: unknown): EnclaveFault {
  if (e instanceof EnclaveFault) return e;
  if (e instanceof OpaqueError) return new EnclaveFault(e.code, e.message, e.field);
  if (e instanceof TokenError) return new EnclaveFault(PlatformCodes.TokenError, `token: ${e.ckr}`);
  return new EnclaveFault(Handling.BadPayload, 'internal error');
}
