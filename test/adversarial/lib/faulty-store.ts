/**
 * A RecordStore wrapper that injects storage faults: write errors in applyBatch (nothing
 * applied, as the store contract promises for a rejection), read errors in getMany, an outage
 * (every write fails), a full disk (the inner store is swapped for a connection to the same
 * SQLite file opened with `maxSizeBytes`: a real SQLITE_FULL once the file must grow), and an
 * ambiguous commit (the batch is applied, then the call fails: what a client sees when the
 * connection drops after COMMIT, or an error reported after the data reached the disk).
 *
 * `attach(host)` routes a live VaultHost's store calls through the wrapper (its engines hold the
 * store object, so the methods are replaced on that object, as test/host/service/service.test.ts does); the
 * returned function undoes it.
 */
import type { AuditEvent, BatchWrite, RecordStore, StoreStats, StoredAuditEvent, StoredRecord } from '../../../host/storage/types.ts';
import { StorageCode, StorageError } from '../../../host/storage/types.ts';
import type { VaultHost } from '../../../host/vault/vault-host.ts';
import type { Rng } from './common.ts';

export type StoreFault = 'none' | 'write-error' | 'read-error' | 'outage' | 'full-disk' | 'ambiguous-commit';

export interface FailedBatch {
  partition: number;
  epoch: number;
  writes: number;
  kind: StoreFault;
  error: string;
  /** The writes were applied although the call failed (ambiguous commit). */
  applied: boolean;
}

export class FaultyStore implements RecordStore {
  readonly kind = 'sqlite' as const;
  fault: StoreFault = 'none';
  /** Probability per call for write-error, read-error and ambiguous-commit. */
  p = 0.3;
  readonly failed: FailedBatch[] = [];
  readonly counts = { batches: 0, batchesFailed: 0, readsFailed: 0, fullErrors: 0 };

  /** Where calls go; swap it to change the backing connection (full disk). */
  inner: RecordStore;

  constructor(
    /** The store this wraps. */
    readonly base: RecordStore,
    private readonly rng: Rng,
  ) {
    this.inner = base;
  }

  getMany(partition: number, recordIds: Uint8Array[]): Promise<(StoredRecord | undefined)[]> {
    if (this.fault === 'read-error' && this.rng.chance(this.p)) {
      this.counts.readsFailed++;
      return Promise.reject(new StorageError(StorageCode.Io, 'injected read error', 'EIO'));
    }
    return this.inner.getMany(partition, recordIds);
  }

  async applyBatch(partition: number, epoch: number, writes: BatchWrite[], audit: StoredAuditEvent[]): Promise<void> {
    this.counts.batches++;
    const fail = (kind: StoreFault, error: string, applied: boolean) => {
      this.counts.batchesFailed++;
      this.failed.push({ partition, epoch, writes: writes.length, kind, error, applied });
    };
    if (this.fault === 'outage' || (this.fault === 'write-error' && this.rng.chance(this.p))) {
      fail(this.fault, 'injected', false);
      throw new StorageError(StorageCode.Io, 'injected write error', 'SQLITE_IOERR_WRITE');
    }
    if (this.fault === 'ambiguous-commit' && this.rng.chance(this.p)) {
      await this.inner.applyBatch(partition, epoch, writes, audit);
      fail('ambiguous-commit', 'applied, then failed', true);
      throw new StorageError(StorageCode.Io, 'injected error after commit', 'ECONNRESET');
    }
    try {
      await this.inner.applyBatch(partition, epoch, writes, audit);
    } catch (e) {
      if (e instanceof StorageError && e.code === StorageCode.Full) this.counts.fullErrors++;
      fail(this.fault, e instanceof StorageError ? `${e.code} ${e.detail ?? ''}` : String(e), false);
      throw e;
    }
  }

  scan(partition: number, chunkSize: number): AsyncIterable<StoredRecord[]> {
    return this.inner.scan(partition, chunkSize);
  }
  snapshot(partition: number) {
    return this.inner.snapshot(partition);
  }
  appliedEpoch(partition: number): Promise<number | null> {
    return this.inner.appliedEpoch(partition);
  }
  compact(partition: number, beforeEpoch: number): Promise<void> {
    return this.inner.compact(partition, beforeEpoch);
  }
  auditEvents(partition: number, fromSeq: number, limit: number): Promise<AuditEvent[]> {
    return this.inner.auditEvents(partition, fromSeq, limit);
  }
  stats(): Promise<StoreStats> {
    return this.inner.stats();
  }
  close(): Promise<void> {
    return this.inner.close();
  }

  /** Routes the host's store calls (its engines', present and future) through this wrapper. */
  static attach(host: VaultHost, rng: Rng): { store: FaultyStore; detach(): void } {
    const target = host.store as unknown as Record<'getMany' | 'applyBatch' | 'scan', unknown>;
    const saved = { getMany: target.getMany, applyBatch: target.applyBatch, scan: target.scan };
    const original: RecordStore = {
      kind: host.store.kind,
      getMany: (saved.getMany as RecordStore['getMany']).bind(host.store),
      applyBatch: (saved.applyBatch as RecordStore['applyBatch']).bind(host.store),
      scan: (saved.scan as RecordStore['scan']).bind(host.store),
      snapshot: host.store.snapshot.bind(host.store),
      appliedEpoch: host.store.appliedEpoch.bind(host.store),
      compact: host.store.compact.bind(host.store),
      auditEvents: host.store.auditEvents.bind(host.store),
      stats: host.store.stats.bind(host.store),
      close: host.store.close.bind(host.store),
    };
    const store = new FaultyStore(original, rng);
    target.getMany = store.getMany.bind(store);
    target.applyBatch = store.applyBatch.bind(store);
    target.scan = store.scan.bind(store);
    return {
      store,
      detach() {
        Object.assign(target, saved);
      },
    };
  }
}
