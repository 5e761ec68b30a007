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
 *              stored rows it names read, Apply, persisted, Commit.
 * Client operations are taken only by the leader whose vault has applied every batch of the log;
 * another member refuses them before they reach its device (421 NOT_LEADER naming the leader, or
 * 503 NOT_READY while it catches up), so a refused operation charged nothing.
 */
import { Handling } from '../../enclave/api/codes.ts';
import type { Device } from '../../enclave/api/device.ts';
import { FleetVaultDevice, MAX_OPS_PER_BATCH, type Fate, type VaultDeviceOptions, type VaultDeviceStatus } from '../../hsm/fleet/device.ts';
import { ServiceError } from '../service/error-codes.ts';
import { openStore } from '../storage/index.ts';
import type { BatchWrite, RecordStore, StoredAuditEvent } from '../storage/types.ts';
import { EnclaveCallError, PartitionEngine, type OpResult } from '../vault/engine.ts';
import type { VaultInfo } from '../vault/vault-host.ts';

/** How long a leader's batch may wait for the fleet's commit before the engine gives it up. */
export const COMMIT_TIMEOUT_MS = 10_000;

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

export class FleetVaultNode {
  private device: FleetVaultDevice | null = null;
  private engine: PartitionEngine | null = null;
  private rebooting: Promise<void> | null = null;
  private applying = false;
  private closed = false;
  private now = 0;
  private readonly waiters = new Set<() => void>();
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
      await node.boot();
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
    const engine = new PartitionEngine(flushing, new FleetCommitStore(this.store, (e) => this.settled(device, e)), 0, 10_000, MAX_OPS_PER_BATCH);
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

  /** A device reboot (a new incarnation from state.bin, NVRAM and store), as a process restart would do. */
  private reboot(): Promise<void> {
    this.rebooting ??= (async () => {
      const engine = this.engine;
      const device = this.device;
      this.engine = null;
      this.device = null;
      this.wake();
      await Promise.race([engine?.close(), new Promise((r) => setTimeout(r, 2000))]);
      device?.close();
      while (!this.closed) {
        try {
          await this.boot();
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
