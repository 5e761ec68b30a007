/**
 * The host's record store: untrusted storage for sealed record blobs and the enclave's chained
 * audit events, per partition. It holds opaque bytes only; the enclave seals every blob and
 * detects rollback itself. Every method is async so that a networked backend (PostgreSQL) can
 * implement the same interface as the embedded SQLite one.
 *
 * How the engine uses it, per partition and one batch at a time:
 *   getMany (current blobs) -> enclave Prepared -> applyBatch (one durable transaction) -> Commit;
 *   at startup: scan every row -> enclave LoadChunk/LoadEnd.
 * The store keeps the current blob of each record only. A batch that was persisted but never
 * committed is not undone here: the enclave wrote it to its NVRAM as an intent before the host
 * persisted it, and rolls it forward at load (see the README, "Rollback protection").
 *
 * Errors are `StorageError` with a stable numeric code in 4000-4099.
 */
import type { AuditEvent, StoredAuditEvent } from '../../enclave/api/messages.ts';
import { CodedError, type CodeOf } from '../../enclave/api/codes.ts';
import { toHex } from '../../enclave/opaque/bytes.ts';

export type { AuditEvent, StoredAuditEvent };

/** One stored row. `blob` empty: a tombstone (the record was deleted). */
export interface StoredRecord {
  recordId: Uint8Array;
  /** The current sealed blob; empty for a tombstone. */
  blob: Uint8Array;
  /** The epoch of the last batch that wrote this record. */
  epoch: number;
}

export interface BatchWrite {
  recordId: Uint8Array;
  /** The new sealed blob; empty means delete (a tombstone row is kept). */
  blob: Uint8Array;
}

export interface StoreStats {
  /** Live records (rows whose blob is not a tombstone), all partitions. */
  records: number;
  /** Bytes of record ids and blobs held (tombstones count their id), all partitions: payload, not file size. */
  bytes: number;
}

export interface RecordStore {
  readonly kind: 'sqlite' | 'postgres';

  /**
   * The stored rows of the given ids, aligned with `recordIds`: element i is the row of
   * recordIds[i], undefined when the partition has no row for it; a tombstone is present with an
   * empty blob. An id given twice gets its row at both positions. No ids: an empty array.
   * Refused (InvalidArgument): an id of 0 or more than MAX_RECORD_ID bytes.
   */
  getMany(partition: number, recordIds: Uint8Array[]): Promise<(StoredRecord | undefined)[]>;

  /**
   * Persists one prepared batch in ONE durable transaction: for each write, the new blob and
   * `epoch` replace the stored row (or create it; nothing of the old blob is kept); the audit
   * events are appended, as the enclave encoded them (`bytes`, stored as they are; `seq` is
   * their key); `epoch` becomes the partition's applied epoch (even with no writes).
   * Audit events already stored in this partition with a seq at or above the lowest seq of
   * `audit` are replaced: they belong to a batch the enclave never committed, whose seqs it has
   * issued again. When this resolves, the whole batch
   * is on stable storage; when it rejects, none of it is applied.
   * Refused (InvalidArgument, nothing applied): a record id twice in `writes`, an id of 0 or more
   * than MAX_RECORD_ID bytes, a blob over MAX_SEALED_RECORD bytes, an audit event whose bytes
   * are not AUDIT_EVENT_LEN long or do not start with its seq, two events with the same seq.
   */
  applyBatch(partition: number, epoch: number, writes: BatchWrite[], audit: StoredAuditEvent[]): Promise<void>;

  /**
   * The epoch of the last batch applied to the partition (null: none yet). Every applyBatch
   * records it in its transaction, so a batch with no writes and no audit events is synced like
   * any other: the storage commit takes as long whether or not the batch changed a record (a
   * LoginStart for an unknown id, answered with the fake credential response, changes nothing;
   * one for a registered id charges a guess). The enclave's own part of that difference is not
   * evened out here (bench/README.md, "LoginStart timing through the engine").
   */
  appliedEpoch(partition: number): Promise<number | null>;

  /**
   * Every row of the partition exactly once, in record id order, in chunks of at most
   * `chunkSize` rows. Rows written while a scan is in progress may or may not be seen.
   */
  scan(partition: number, chunkSize: number): AsyncIterable<StoredRecord[]>;

  /**
   * One consistent read of the partition while writes go on: its applied epoch and every row
   * exactly as the state after that one batch, however many batches are applied meanwhile (a
   * copy of the rows for another fleet member, host/fleet/rows-endpoint.ts). SQLite: a second,
   * read-only connection in one read transaction (WAL); PostgreSQL: one pooled connection in a
   * REPEATABLE READ READ ONLY transaction. Hold it briefly and close it: while it is open SQLite
   * can not checkpoint its WAL past it (the WAL grows with every write meanwhile) and PostgreSQL
   * can not vacuum the rows changed since. Rejects with Closed on a closed store.
   */
  snapshot(partition: number): Promise<StoreSnapshot>;

  /**
   * Removes the tombstone rows (empty blob) of the partition written at an epoch below
   * `beforeEpoch`; no other row is touched. To the enclave an empty-blob row and no row are the
   * same, so this is safe at any epoch; VaultHost calls it from time to time (`compactEveryMs`,
   * below the partition's applied epoch) to reclaim them.
   * (A sealed tombstone, the non-empty blob the enclave writes when it deletes a record, is an
   * ordinary row here and stays: it keeps the record's version numbering monotonic.)
   */
  compact(partition: number, beforeEpoch: number): Promise<void>;

  /** Up to `limit` audit events of the partition with seq >= fromSeq, in seq order. */
  auditEvents(partition: number, fromSeq: number, limit: number): Promise<AuditEvent[]>;

  stats(): Promise<StoreStats>;

  /** Closes the store; later calls reject with Closed. Closing twice is harmless. */
  close(): Promise<void>;
}

/** A consistent read of one partition (RecordStore.snapshot). */
export interface StoreSnapshot {
  /** The epoch of the last batch applied in this state (null: none). */
  readonly appliedEpoch: number | null;
  /** Every row of this state exactly once, in record id order, in chunks of at most `chunkSize` rows (scan's contract, without its caveat). */
  scan(chunkSize: number): AsyncIterable<StoredRecord[]>;
  /** Ends the read (its connection closed or returned). Closing twice is harmless; a scan after it rejects with Closed. */
  close(): Promise<void>;
}

/** Stable codes; never renumber, add at the end. */
export const StorageCode = {
  Io: 4001,
  Full: 4002,
  Corrupt: 4003,
  Closed: 4004,
  SchemaTooNew: 4005,
  Busy: 4006,
  NotAvailable: 4007,
  InvalidArgument: 4008,
  Internal: 4009,
} as const;
export type StorageCode = CodeOf<typeof StorageCode>;

/**
 * A typed storage failure. `detail` is the backend's own code when there is one
 * (`SQLITE_IOERR_FSYNC`, `ENOSPC`); the message never carries stored bytes.
 */
export class StorageError extends CodedError<StorageCode> {
  override readonly name = 'StorageError';
  constructor(
    code: StorageCode,
    message: string,
    readonly detail?: string,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
  }
}

export function isStorageError(e: unknown, code?: StorageCode): e is StorageError {
  return e instanceof StorageError && (code === undefined || e.code === code);
}

/** A record id as a map key (lower-case hex): the engine's queue key, computed once per op at submit. */
export function recordKey(recordId: Uint8Array): string {
  return toHex(recordId);
}
