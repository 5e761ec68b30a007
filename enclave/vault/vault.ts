/**
 * The enclave's lifecycle, one instance per partition: boot (self-tests, provisioning, NVRAM),
 * load (rebuild the rollback index from the host's rows), the dispatch of host requests, the
 * operator's requests (zeroization, a new issuer set, audit verification), and the NVRAM state.
 * Batches (Batch, Prepare, Commit, Abort) go to batch.ts, which keeps the rule that a guess is
 * charged durably before KE2 leaves; one operation's pipeline is compute.ts, its rules ops.ts.
 */
import { EnclaveFault, Handling, Integrity, Lifecycle, PlatformFault as PlatformCodes } from '../api/codes.ts';
import type { HostRequest, HostResponse } from '../api/messages.ts';
import { decodeAuthConfig, encodeAuthConfig } from '../api/auth.ts';
import { PACING } from '../api/pacing.ts';
import type { AuthConfig } from '../api/auth.ts';
import { TokenVerifier } from '../api/auth-verify.ts';
import { ENCLAVE_STATE, SELF_TEST, SUITE_CODE } from '../api/messages.ts';
import { ctEqual } from '../opaque/bytes.ts';
import { digestOf } from './digest.ts';
import { createSodiumSha256 } from '../opaque/hash-sodium.ts';
import { loadOpensslX25519 } from '../opaque/groups/openssl-native.ts';
import { loadNativeHpke } from '../opaque/groups/sodium-native.ts';
import { loadNativeSha256 } from '../opaque/hash-native.ts';
import type { HashPrimitives } from '../opaque/hash.ts';
import type { Suite, SuiteId } from '../opaque/suite.ts';
import { SUITE_IDS } from '../opaque/suite.ts';
import { fastSuite } from '../opaque/suites-fast.ts';
import type { Platform } from '../platform.ts';
import { runSelfTests } from '../selftest.ts';
import { AuditLog } from './audit.ts';
import { Batches, noPendingBatch } from './batch.ts';
import type { VaultLink } from './batch.ts';
import { partitionOfHash } from './compute.ts';
import { deriveEnclaveKeys, ensureTokenKeys, zeroizeEnclaveKeys } from './keys.ts';
import type { EnclaveKeys } from './keys.ts';
import { FLAG_ZEROIZED, decodeNvramState, encodeNvramState, freshNvramState, NVRAM_STATE_SIZE } from './nvram-state.ts';
import type { NvramState } from './nvram-state.ts';
import { IndexLoader, RecordIndex } from './record-index.ts';
import { STATUS_LOCKED, unseal, zeroizeRecord } from './record.ts';
import { VaultTables } from './sessions.ts';
import { FleetSeat, type LoggedBatch } from './fleet-seat.ts';
import type { TableLimits } from './sessions.ts';

/** The device boundary (main.ts) answers its faults with the one conversion an op's fault uses. */
export { toFault } from './compute.ts';

/** How a Vault is built beyond its platform (tests shrink the tables with it). */
export interface VaultOptions {
  tableLimits?: Partial<TableLimits>;
  /**
   * A fleet member (docs/fleet-vault.md): its batches name each write's change for the fleet's
   * log (Prepared's `ops`, fleet-change.ts; a write that is no change the rules allow fails its
   * op), and it takes a leader's batches (Apply, apply.ts). Until the fleet core runs in the
   * device (slice 1), only tests set it: an Apply names no majority yet.
   * A FleetSeat (fleet-seat.ts) is the fleet core of the member's device: with it, a batch is
   * answered only once the fleet's log holds it on a majority, and an Apply is taken only as the
   * log's committed batch.
   */
  fleet?: boolean | FleetSeat;
}

type State = 'ready' | 'notLoaded' | 'selfTestFailed' | 'zeroized' | 'broken';

export class Vault {
  private state: State = 'notLoaded';
  private failure = '';
  private nv!: NvramState;
  private keys: EnclaveKeys | null = null;
  private index: RecordIndex | null = null;
  private loader: IndexLoader | null = null;
  /** The batch protocol (batch.ts): made at each load, dropped whenever the vault stops being ready. */
  private batches: Batches | null = null;
  private audit!: AuditLog;
  /** Checks the issuer's token of every client operation (api/auth-verify.ts). */
  private verifier!: TokenVerifier;
  /** The laxest guess pacing a registration may pick (AuthConfig.minPacing; api/pacing.ts). */
  private minPacing: number = PACING.standard;
  /**
   * SHA-256 of the record index, the audit chain, partitioning and the end-to-end key schedule:
   * hash-native.ts (Node's OpenSSL, else native libsodium) or libsodium's WebAssembly build
   * (hash-sodium.ts), neither of which makes a native object per call (a node:crypto Hmac is one,
   * with a weak callback that every young-generation collection of this thread then runs). Set at
   * boot, checked by the self-tests.
   */
  private sha256!: HashPrimitives;
  private readonly suites = new Map<SuiteId, Suite>();
  /**
   * Stages, login sessions and recovered sessions. What a batch puts there is pending until its
   * Commit (which only marks it live) and released when the batch is aborted or dropped.
   */
  private readonly tables: VaultTables;

  /** `random` as a RandomSource, made once (every operation of a batch gets it). */
  private readonly rng = (n: number): Uint8Array => this.random(n);

  /** What batch.ts reads and writes of this vault. */
  private readonly link: VaultLink = {
    nv: () => this.nv,
    writeNvram: (next) => this.writeNvram(next),
    verifier: () => this.verifier,
    minPacing: () => this.minPacing,
    fleet: () => this.fleet,
    seat: () => this.seat,
  };

  private constructor(
    private readonly p: Platform,
    opts: VaultOptions,
  ) {
    this.tables = new VaultTables(this.suites, opts.tableLimits);
    this.fleet = opts.fleet !== undefined && opts.fleet !== false;
    this.seat = opts.fleet instanceof FleetSeat ? opts.fleet : null;
  }

  private readonly fleet: boolean;
  private readonly seat: FleetSeat | null;

  static async boot(p: Platform, opts: VaultOptions = {}): Promise<Vault> {
    const v = new Vault(p, opts);
    await v.start();
    return v;
  }

  private async start(): Promise<void> {
    for (const id of SUITE_IDS) this.suites.set(id, await fastSuite(id));
    // SHA-256 on Node's own OpenSSL or native libsodium (hash-native.ts; the suite's SHA-512 comes
    // from the same loader, whose fallback logs the reason once), else on libsodium's WebAssembly
    // build. X25519 for the envelope on Node's OpenSSL where it loads (deriveEnclaveKeys).
    this.sha256 = (await loadNativeSha256()).sha256 ?? (await createSodiumSha256());
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
    this.keys = await deriveEnclaveKeys(this.p.token, handles, this.suites, this.sha256, (await loadNativeHpke()).hpke, (await loadOpensslX25519()).make);
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
    return partitionOfHash(digestOf(this.sha256, recordId), this.p.partitions);
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
        return this.ready().batch(req);
      case 'Commit':
        return this.ready().commit(req.epoch);
      case 'Prepare':
        return this.ready().prepare(req.epoch);
      case 'Apply':
        if (!this.fleet) throw new EnclaveFault(Handling.NotAFollower, 'this vault is no fleet member', 'type');
        return this.ready().apply(req);
      case 'Abort':
        // Refused, not out of state, when there is nothing to abort.
        if (!this.batches) throw noPendingBatch();
        return this.batches.abort(req.epoch);
      case 'Zeroize':
        return this.zeroize(req.auth);
      case 'SetAuth':
        return this.setAuth(req.config, req.auth);
      case 'AuditVerify':
        return this.auditVerify(req);
      case 'Census':
        return this.census(req);
      default: {
        const never: never = req;
        throw new EnclaveFault(Handling.BadPayload, `unhandled ${String(never)}`);
      }
    }
  }

  /** The batches of a ready vault (a request for them in any other state is refused). */
  private ready(): Batches {
    this.requireState('ready');
    return this.batches!;
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
      operatorKey: this.nv && !this.nv.operatorKeyHash.every((x) => x === 0) ? 1 : 0,
      selfTest: this.state === 'zeroized' ? SELF_TEST.notRun : this.state === 'selfTestFailed' ? SELF_TEST.failed : SELF_TEST.passed,
      failure: new TextEncoder().encode(this.failure).subarray(0, 128),
      nvramUsed: NVRAM_STATE_SIZE,
      nvramSize: this.p.nvram.size,
    };
  }

  private loadChunk(req: Extract<HostRequest, { type: 'LoadChunk' }>): HostResponse {
    this.requireState('notLoaded', 'broken');
    this.batches = null;
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
    let loaded: { index: RecordIndex; rolledForward: boolean };
    try {
      loaded = loader.finish(this.nv.committed, this.nv.intent);
    } catch (e) {
      // A fleet member behind its fleet (its log folded batches its vault never applied) loads
      // stored rows copied from another member: they are taken only as exactly the fleet's latest
      // committed state its log names (the batch's count and sum, under the log's MACs), never an
      // older one than its own.
      let adopted: RecordIndex | null = null;
      let anchor: LoggedBatch | undefined;
      for (const a of this.seat?.committedAnchors() ?? []) {
        if (a.epoch <= this.nv.committed.epoch) break;
        adopted = loader.finishAt(a.count, a.sum);
        anchor = a;
        if (adopted) break;
      }
      if (!adopted) {
        if (!this.seat) throw e;
        // Said to the host (it streamed the rows and knows the batch numbers): what was checked.
        const later = this.seat.committedAnchors().filter((a) => a.epoch > this.nv.committed.epoch);
        const span = later.length ? `${later[later.length - 1]!.epoch}..${later[0]!.epoch}` : 'none';
        throw new EnclaveFault(
          Integrity.RollbackDetected,
          `stored records do not match the enclave state: ${loader.count} live rows; committed batches its log names after its own ${this.nv.committed.epoch}: ${span}, ${later.filter((a) => a.count === loader.count).length} of them with that count`,
        );
      }
      await this.writeNvram({ ...this.nv, committed: { ...this.nv.committed, epoch: anchor!.epoch, count: anchor!.count, indexSum: Uint8Array.from(anchor!.sum) }, intent: null });
      loaded = { index: adopted, rolledForward: false };
    }
    const { index, rolledForward } = loaded;
    // A fleet member's host persists a batch only once the fleet committed it: storage at an
    // intent the log does not hold committed was written early, and is not rolled forward.
    if (rolledForward && this.seat && !this.seat.committedBatch(this.nv.intent!.epoch)) {
      throw new EnclaveFault(Handling.FleetNotCommitted, `storage holds batch ${this.nv.intent!.epoch}, which the fleet's log does not hold committed`, 'epoch');
    }
    if (rolledForward) await this.writeNvram({ ...this.nv, committed: this.nv.intent!, intent: null });
    else if (this.nv.intent) await this.writeNvram({ ...this.nv, intent: null });
    this.index = index;
    const parts = { p: this.p, keys: this.keys!, index, sha256: this.sha256, audit: this.audit, tables: this.tables, suites: this.suites, rng: this.rng };
    this.batches = new Batches(parts, this.link);
    this.seat?.applied(this.nv.committed.epoch, true);
    await this.batches.catchUpInPlace();
    this.state = 'ready';
    return { type: 'Loaded', epoch: this.nv.committed.epoch, records: index.count, rolledForward: rolledForward ? 1 : 0 };
  }

  /** Writes the NVRAM and adopts the state; on failure the enclave needs a reload. */
  private async writeNvram(next: NvramState): Promise<void> {
    try {
      await this.p.nvram.write(encodeNvramState(next));
    } catch {
      this.batches = null;
      this.tables.dropAll();
      this.state = 'broken';
      throw new EnclaveFault(PlatformCodes.NvramError, 'NVRAM write failed; reload required');
    }
    this.nv = next;
  }

  private async zeroize(auth: Uint8Array): Promise<HostResponse> {
    if (this.state === 'zeroized') return { type: 'ZeroizeDone' };
    this.checkOperator(auth);
    this.p.token.destroyAllKeys();
    if (this.keys) zeroizeEnclaveKeys(this.keys);
    this.audit?.dispose();
    this.keys = null;
    this.index = null;
    this.batches = null;
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

  /**
   * Census: the operator counts locked records. A row counts only if it is the live version of its
   * record (its leaf is the index's), so a stale or foreign row is neither opened nor counted.
   */
  private census(req: Extract<HostRequest, { type: 'Census' }>): HostResponse {
    this.requireState('ready');
    this.checkOperator(req.auth);
    let live = 0;
    let locked = 0;
    for (const e of req.entries) {
      const leaf = this.index!.get(e.recordId);
      if (!leaf || !ctEqual(leaf, this.index!.leafOf(e.recordId, e.blob))) continue;
      const { record } = unseal(this.p.token, this.keys!.seal, e.recordId, e.blob);
      if (!record) continue;
      live++;
      if (record.status === STATUS_LOCKED) locked++;
      zeroizeRecord(record);
    }
    return { type: 'CensusResult', live, locked };
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
