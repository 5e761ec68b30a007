/**
 * The vault of one fleet member, host side (docs/fleet-vault.md, "What the host of a member
 * runs"): the member's device running the vault with its seat in the fleet's log
 * (hsm/fleet/device.ts FleetVaultDevice), the member's own record store (SQLite in its folder by
 * default, any storage URL of host/storage/), the single vault's engine (host/vault/engine.ts) and
 * the loop that applies the log's committed batches.
 *
 *   leader     the engine's batches as the single vault runs them, with one rule more: its store
 *              persists a batch only once the fleet committed the log entry that carries it
 *              (`fate(epoch)` no longer pending: committed, persisted; lost to a view change, or
 *              still pending after COMMIT_TIMEOUT_MS, refused, so the engine stops and the device
 *              reboots from its NVRAM, state.bin and store, which settles the batch);
 *   follower   every committed batch its vault has not applied (`nextToApply`), in order: the
 *              stored rows it names read, Apply, persisted, Commit;
 *   behind     (its log folded batches its vault never applied: `status().behind`) a catch-up by
 *              stored rows: another member's rows downloaded into a staging file (row-copy.ts),
 *              the device booted on that file (it takes the rows only if their record index is a
 *              batch its log holds committed, and then moves its NVRAM there; else it refuses
 *              and keeps its state), and only once it took them, the rows written over the
 *              member's own store and the device booted on it again; tried again with backoff.
 * Client operations are taken only by the leader whose vault has applied every batch of the log;
 * another member refuses them before they reach its device (421 NOT_LEADER naming the leader, or
 * 503 NOT_READY while it catches up), so a refused operation charged nothing.
 */
import { Handling } from '../../enclave/api/codes.ts';
import type { Device } from '../../enclave/api/device.ts';
import { FleetVaultDevice, MAX_OPS_PER_BATCH, type CharterState, type Fate, type JoinFile, type VaultDeviceOptions, type VaultDeviceStatus } from '../../hsm/fleet/device.ts';
import { ServiceError } from '../service/error-codes.ts';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { openStore } from '../storage/index.ts';
import { openSqliteStore } from '../storage/sqlite.ts';
import type { BatchWrite, RecordStore, StoreSnapshot, StoredAuditEvent } from '../storage/types.ts';
import { EnclaveCallError, PartitionEngine, type OpResult } from '../vault/engine.ts';
import type { VaultInfo } from '../vault/vault-host.ts';
import { downloadRows, removeStaging, STAGING_DONE, stagingPath, type Peer } from './row-copy.ts';
import type { RowsSource } from './rows-endpoint.ts';

/** How long a leader's batch may wait for the fleet's commit before the engine gives it up. */
export const COMMIT_TIMEOUT_MS = 10_000;
/** How long a downloaded copy of stored rows waits for this member's log to name its batch committed. */
export const ANCHOR_WAIT_MS = 10_000;

export interface VaultNodeOptions {
  readonly device: VaultDeviceOptions;
  /** Storage URL (host/storage/index.ts); default SQLite `vault.db` in the member's folder. */
  readonly storeUrl?: string;
  /** Sends a sealed fleet message to member `to`. */
  readonly send: (to: number, msg: Uint8Array) => void;
  /** A message from another member that the device refused, by fault name. */
  readonly onFault?: (name: string) => void;
  /** The leader's client URL, when this member knows one that is not itself. */
  readonly leaderUrl: () => string | null;
  /** Catch-up by stored rows (absent: a member that is behind waits). */
  readonly catchUp?: {
    /** The members to ask, best first, given this member's applied batch (row-copy.ts copySources). */
    readonly sources: (ownBatch: number) => Promise<Peer[]>;
    /** The key of this member's peer credentials (peer-auth.ts peerAuthKey). */
    readonly key: Uint8Array;
  };
  readonly log: (line: string) => void;
}

/** The member's store as the leader's engine sees it: a batch is persisted once the fleet committed it. */
class FleetCommitStore implements RecordStore {
  constructor(
    private readonly inner: RecordStore,
    private readonly settled: (epoch: number) => Promise<Fate>,
  ) {}
  get kind() {
    return this.inner.kind;
  }
  getMany(p: number, ids: Uint8Array[]) {
    return this.inner.getMany(p, ids);
  }
  async applyBatch(p: number, epoch: number, writes: BatchWrite[], audit: StoredAuditEvent[]): Promise<void> {
    const fate = await this.settled(epoch);
    // not committed: nothing persisted; the answers stay in the device, and it reboots (the batch's guesses were not charged by a majority, or will be found committed at load)
    if (fate !== 'committed') throw new ServiceError('UNAVAILABLE', { retryAfterSeconds: 1, cause: new Error(`the fleet did not commit batch ${epoch} (${fate})`) });
    return this.inner.applyBatch(p, epoch, writes, audit);
  }
  appliedEpoch(p: number) {
    return this.inner.appliedEpoch(p);
  }
  scan(p: number, chunk: number) {
    return this.inner.scan(p, chunk);
  }
  snapshot(p: number) {
    return this.inner.snapshot(p);
  }
  compact(p: number, before: number) {
    return this.inner.compact(p, before);
  }
  auditEvents(p: number, from: number, limit: number) {
    return this.inner.auditEvents(p, from, limit);
  }
  stats() {
    return this.inner.stats();
  }
  close() {
    return this.inner.close();
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const message = (e: unknown) => (e instanceof Error ? e.message : String(e));
/** The longest wait between two catch-up attempts. */
export const CATCH_UP_MAX_BACKOFF_MS = 30_000;

export class FleetVaultNode implements RowsSource {
  private device: FleetVaultDevice | null = null;
  private engine: PartitionEngine | null = null;
  private rebooting: Promise<void> | null = null;
  private applying = false;
  private closed = false;
  private now = 0;
  private readonly waiters = new Set<() => void>();
  private copying = false;
  private copyAttempts = 0;
  private nextCopyAt = 0;
  /** Catch-ups by stored rows that ended with the device taking the copy. */
  caughtUp = 0;
  /** Batches applied as a follower since start. */
  applied = 0;
  /** The last failure of the apply loop, if any. */
  applyError: string | null = null;
  info!: VaultInfo;

  private constructor(
    private readonly o: VaultNodeOptions,
    readonly store: RecordStore,
  ) {}

  static async open(o: VaultNodeOptions, now: number): Promise<FleetVaultNode> {
    const store = await openStore(o.storeUrl, o.device.dir);
    const node = new FleetVaultNode(o, store);
    node.now = now;
    try {
      await node.bootFinishingCopy(true);
    } catch (e) {
      await store.close();
      throw e;
    }
    return node;
  }

  /** Boots the device from the member's folder and loads the stored rows into it. */
  private async boot(): Promise<void> {
    const device = await FleetVaultDevice.open(this.o.device, this.now);
    // what the device sends after a request (a leader's batch proposed: its prepares) leaves at once
    const flushing: Device = {
      request: async (req, opts) => {
        try {
          return await device.device.request(req, opts);
        } finally {
          this.flush();
        }
      },
    };
    const engine = new PartitionEngine(flushing, new FleetCommitStore(this.store, (e) => this.settled(device, e)), 0, 10_000, MAX_OPS_PER_BATCH, false);
    engine.onFailure = (e) => {
      this.o.log(`vault: a batch was not committed by the fleet (${e instanceof Error ? e.message : String(e)}); rebooting the device`);
      void this.reboot();
    };
    this.device = device;
    try {
      const info = await engine.start();
      this.info = { partitions: 1, enclavePublicKey: info.hpkePublicKey, serverPublicKeys: new Map(info.suites.map((s) => [s.suite, s.serverPublicKey])), records: info.records };
    } catch (e) {
      this.device = null;
      device.close();
      throw e;
    }
    this.engine = engine;
    this.flush();
  }

  /**
   * A boot (at start, or again after a reboot). A staging copy marked whole (row-copy.ts) may have been taken by the device
   * before the process stopped, with the member's store not yet rewritten: when the device
   * refuses the store, it is booted on the copy, and if it takes that, the copy finishes. At
   * start (`atStart`), an unmarked copy (a download cut short) is deleted.
   */
  private async bootFinishingCopy(atStart: boolean): Promise<void> {
    const dir = this.o.device.dir;
    if (!existsSync(path.join(dir, STAGING_DONE))) {
      if (atStart) removeStaging(dir);
      return this.boot();
    }
    try {
      await this.boot();
    } catch (e) {
      try {
        await this.checkStaging();
      } catch {
        throw e;
      }
      this.o.log('vault: the device holds the state of the copied rows of a catch-up that stopped midway; writing them into the store');
      await this.copyStagingIntoStore();
      removeStaging(dir);
      return this.boot();
    }
    removeStaging(dir);
  }

  /** A device reboot (a new incarnation from state.bin, NVRAM and store), as a process restart would do; `between` runs while the device is down. */
  private reboot(between?: () => Promise<void>): Promise<void> {
    this.rebooting ??= (async () => {
      const engine = this.engine;
      const device = this.device;
      this.engine = null;
      this.device = null;
      this.wake();
      await Promise.race([engine?.close(), sleep(2000)]);
      device?.close();
      try {
        await between?.();
      } catch (e) {
        this.o.log(`vault: ${message(e)}`);
      }
      while (!this.closed) {
        try {
          await this.bootFinishingCopy(false);
          return;
        } catch (e) {
          this.o.log(`vault: the device did not boot again (${e instanceof Error ? e.message : String(e)}); trying again`);
          await new Promise((r) => setTimeout(r, 1000));
        }
      }
    })().finally(() => (this.rebooting = null));
    return this.rebooting;
  }

  /** Resolves with the batch's fate once it is not pending (or pending after COMMIT_TIMEOUT_MS, or its device gone). */
  private settled(device: FleetVaultDevice, epoch: number): Promise<Fate> {
    const t0 = Date.now();
    return new Promise((resolve) => {
      const check = () => {
        const fate = this.device === device ? device.fate(epoch) : 'lost';
        if (fate === 'pending' && Date.now() - t0 < COMMIT_TIMEOUT_MS && !this.closed) return;
        this.waiters.delete(check);
        resolve(fate);
      };
      this.waiters.add(check);
      check();
    });
  }

  private wake(): void {
    for (const w of [...this.waiters]) w();
  }

  private flush(): void {
    const d = this.device;
    if (!d) return;
    for (const { to, msg } of d.takeOutbox()) this.o.send(to, msg);
    for (const f of d.takeFaults()) this.o.onFault?.(f);
  }

  receive(msg: Uint8Array, now: number): void {
    this.now = now;
    this.device?.receive(msg, now);
    this.flush();
    this.wake();
    void this.applyLoop();
  }

  tick(now: number): void {
    this.now = now;
    this.device?.tick(now);
    this.flush();
    this.wake();
    void this.applyLoop();
    this.maybeCatchUp();
  }

  // ---- catch-up by stored rows (docs/fleet-vault.md) ---------------------------------------------

  private maybeCatchUp(): void {
    if (!this.o.catchUp || this.copying || this.rebooting || this.closed || Date.now() < this.nextCopyAt) return;
    if (!this.device?.status().behind) return;
    this.copying = true;
    void this.catchUpOnce().finally(() => (this.copying = false));
  }

  /** One attempt: a copy from the first source that serves one, the device's verdict, one log line. */
  private async catchUpOnce(): Promise<void> {
    const c = this.o.catchUp!;
    const own = this.device?.status();
    if (!own?.behind) return;
    const n = ++this.copyAttempts;
    let outcome: string;
    try {
      outcome = await this.copyFromSources(c, own.appliedBatch);
    } catch (e) {
      outcome = `failed: ${message(e)}`;
    }
    const behind = this.device?.status().behind ?? true;
    if (!behind && outcome.startsWith('took')) {
      this.caughtUp++;
      this.copyAttempts = 0;
      this.nextCopyAt = 0;
    } else {
      this.nextCopyAt = Date.now() + Math.min(CATCH_UP_MAX_BACKOFF_MS, 1000 * 2 ** Math.min(n - 1, 5));
      if (outcome.startsWith('took')) outcome += ', yet the device is still behind';
    }
    this.o.log(`vault: catch-up by stored rows, attempt ${n}: ${outcome}${behind ? ` (next in ${Math.round((this.nextCopyAt - Date.now()) / 1000)} s)` : ''}`);
  }

  private async copyFromSources(c: NonNullable<VaultNodeOptions['catchUp']>, ownBatch: number): Promise<string> {
    const sources = await c.sources(ownBatch);
    if (sources.length === 0) return `no member to copy from (none normal, not behind and past batch ${ownBatch})`;
    const tried: string[] = [];
    for (const src of sources) {
      let got: { appliedBatch: number; rows: number };
      try {
        const n = this.copyAttempts;
        got = await downloadRows(this.o.device.dir, src, this.o.device.member, c.key, (rows) => this.o.log(`vault: catch-up by stored rows, attempt ${n}: ${rows.toLocaleString('en-US')} rows from member ${src.member} so far`));
      } catch (e) {
        tried.push(message(e));
        continue;
      }
      if (this.rebooting || this.closed) {
        removeStaging(this.o.device.dir);
        return 'the device was rebooting; the copy is dropped';
      }
      // the device checks the copy against the log it boots from: wait until that log names the
      // copy's batch committed (the source applied it, so the fleet committed it; this member
      // hears of it a moment later, and writes it later still)
      if (!(await this.namesCommitted(got.appliedBatch))) {
        removeStaging(this.o.device.dir);
        tried.push(`the copy from member ${src.member} is at batch ${got.appliedBatch}, which this member's log did not name committed within ${ANCHOR_WAIT_MS / 1000} s`);
        continue;
      }
      this.o.log(`vault: catch-up by stored rows, attempt ${this.copyAttempts}: ${got.rows} rows at batch ${got.appliedBatch} from member ${src.member} arrived; the device checks them`);
      let refused: string | null = null;
      await this.reboot(async () => {
        try {
          await this.checkStaging();
        } catch (e) {
          refused = message(e);
          removeStaging(this.o.device.dir);
          return;
        }
        this.o.log(`vault: catch-up by stored rows, attempt ${this.copyAttempts}: the device took them; writing them into the store`);
        await this.copyStagingIntoStore();
        removeStaging(this.o.device.dir);
      });
      if (refused !== null) return `the device refused ${got.rows} rows at batch ${got.appliedBatch} from member ${src.member} (${refused}); its own rows are kept`;
      return `took ${got.rows} rows at batch ${got.appliedBatch} from member ${src.member}`;
    }
    return `no copy arrived: ${tried.join('; ')}`;
  }

  /** Resolves true once the running device's written log names batch `epoch` committed; false after ANCHOR_WAIT_MS, or when the device goes. */
  private namesCommitted(epoch: number): Promise<boolean> {
    const t0 = Date.now();
    const device = this.device;
    return new Promise((resolve) => {
      const check = () => {
        const ok = this.device === device && device !== null && device.namesCommitted(epoch);
        if (!ok && this.device === device && device !== null && !this.rebooting && !this.closed && Date.now() - t0 < ANCHOR_WAIT_MS) return;
        this.waiters.delete(check);
        resolve(ok);
      };
      this.waiters.add(check);
      check();
    });
  }

  /**
   * Boots a device on the staging copy (a plain engine: nothing is submitted) and takes it down
   * again. Resolves when the device took the rows (its NVRAM now at the copy's batch); throws its
   * refusal (RollbackDetected: not a state its log names), its NVRAM unchanged.
   */
  private async checkStaging(): Promise<void> {
    const staging = await openSqliteStore(stagingPath(this.o.device.dir));
    let device: FleetVaultDevice | null = null;
    let engine: PartitionEngine | null = null;
    try {
      device = await FleetVaultDevice.open(this.o.device, this.now);
      engine = new PartitionEngine(device.device, staging, 0, 10_000, MAX_OPS_PER_BATCH, false);
      await engine.start();
    } finally {
      if (engine) await Promise.race([engine.close(), sleep(2000)]);
      device?.close();
      await staging.close();
    }
  }

  /** The staging copy written over the member's store: its rows, rows it does not hold emptied (deleted), its applied batch. */
  private async copyStagingIntoStore(): Promise<void> {
    const staging = await openSqliteStore(stagingPath(this.o.device.dir));
    try {
      const epoch = (await staging.appliedEpoch(0)) ?? 0;
      for await (const chunk of this.store.scan(0, 256)) {
        const there = await staging.getMany(0, chunk.map((r) => r.recordId));
        const gone = chunk.filter((r, i) => r.blob.length > 0 && !there[i]?.blob.length).map((r) => ({ recordId: r.recordId, blob: new Uint8Array(0) }));
        if (gone.length) await this.store.applyBatch(0, epoch, gone, []);
      }
      for await (const chunk of staging.scan(0, 256)) await this.store.applyBatch(0, epoch, chunk.map((r) => ({ recordId: r.recordId, blob: r.blob })), []);
      await this.store.applyBatch(0, epoch, [], []);
    } finally {
      await staging.close();
    }
  }

  // ---- serving a copy of the rows (rows-endpoint.ts) ---------------------------------------------

  rowsRefusal(): string | null {
    const d = this.device;
    if (!d || !this.engine || this.rebooting || this.closed) return 'its vault is not up';
    if (d.status().behind) return 'it is behind itself';
    return null;
  }

  rowsSnapshot(): Promise<StoreSnapshot> {
    return this.store.snapshot(0);
  }

  /** The operator's approval of a charter change, to the device (hsm/fleet/charters.ts); a FleetFault when refused, an Error while the device is down. */
  approveCharter(change: CharterState, approval: Uint8Array): void {
    if (!this.device) throw new Error('the device is not booted');
    this.device.approveCharter(change, approval);
  }

  /** The operator's approval of a re-form without some members, to the device; a FleetFault when refused, an Error while the device is down. */
  approveReform(fromEpoch: number, without: readonly number[], kept: ReadonlyMap<number, Uint8Array>, approval: Uint8Array): void {
    if (!this.device) throw new Error('the device is not booted');
    this.device.approveReform(fromEpoch, without, kept, approval, this.now);
    this.flush();
  }

  /** The device's grant to an added member (null while there is none to make, or the device is down). */
  async grantJoiner(joiner: number): Promise<JoinFile | null> {
    return (await this.device?.grantJoiner(joiner)) ?? null;
  }

  status(): VaultDeviceStatus | null {
    return this.device?.status() ?? null;
  }

  /** A follower's host: the log's committed batches its vault has not applied, in order (Apply, persist, Commit). */
  private async applyLoop(): Promise<void> {
    if (this.applying) return;
    const engine = this.engine;
    const device = this.device;
    if (!engine || !device) return;
    this.applying = true;
    let taken = false;
    try {
      for (;;) {
        if (this.engine !== engine || this.closed) return;
        const b = device.nextToApply();
        if (!b) return;
        const stored = await this.store.getMany(0, b.writes.map((w) => w.recordId));
        let prepared;
        try {
          prepared = await engine.call({ type: 'Apply', epoch: b.epoch, ops: b.ops, writes: b.writes.map((w, i) => ({ recordId: w.recordId, stored: stored[i]?.blob ?? new Uint8Array(0), blob: w.blob })) });
        } catch (e) {
          // its own batch still pending in the vault (the engine commits it): try on the next tick
          if (e instanceof EnclaveCallError && (e.code === Handling.BatchOutOfOrder || e.code === Handling.NoBatchPending)) return;
          throw e;
        }
        taken = true;
        await this.store.applyBatch(0, b.epoch, prepared.writes, prepared.audit);
        await engine.call({ type: 'Commit', epoch: b.epoch });
        taken = false;
        this.applied++;
        this.applyError = null;
      }
    } catch (e) {
      const why = e instanceof Error ? e.message : String(e);
      if (why !== this.applyError) this.o.log(`vault: applying a committed batch failed: ${why}`);
      this.applyError = why;
      // an Apply the vault took and the host could not finish: only a reload settles it
      if (taken && this.engine === engine) void this.reboot();
    } finally {
      this.applying = false;
    }
  }

  // ---- what the HTTP routes use (host/service/routes.ts RouteVault) ------------------------------

  partitionOf(_recordId: Uint8Array): number {
    return 0;
  }

  partitionsReady(): boolean[] {
    return [this.engine !== null && !this.closed];
  }

  /** Why this member takes no client operation now (a ServiceError to answer), or null. */
  refusal(): ServiceError | null {
    const d = this.device;
    if (!d || !this.engine) return new ServiceError('NOT_READY', { retryAfterSeconds: 1 });
    if (!d.isLeader()) {
      const leader = this.o.leaderUrl();
      return new ServiceError('NOT_LEADER', leader ? { leader } : {});
    }
    // a leader that hears no majority (cut off, or deaf to its followers) could commit nothing: the
    // client goes on to another member rather than wait for the commit timeout
    if (d.cutOff()) return new ServiceError('NOT_READY', { retryAfterSeconds: 1 });
    // a new leader applies the log's committed batches before it computes one
    if (d.nextToApply() !== null) return new ServiceError('NOT_READY', { retryAfterSeconds: 1 });
    return null;
  }

  async submit(recordId: Uint8Array, message: Uint8Array): Promise<OpResult> {
    const refused = this.refusal();
    if (refused) throw refused;
    try {
      return await this.engine!.submit(recordId, message);
    } catch (e) {
      // the device refused the batch before anything in it was charged (it left the lead, or is behind the log)
      if (e instanceof EnclaveCallError && e.code === Handling.FleetRefused) throw this.refusal() ?? new ServiceError('NOT_READY', { retryAfterSeconds: 1 });
      throw e;
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    this.wake();
    await this.rebooting?.catch(() => undefined);
    await Promise.race([this.engine?.close(), new Promise((r) => setTimeout(r, 2000))]);
    this.device?.close();
    this.device = null;
    this.engine = null;
    await this.store.close();
  }
}
