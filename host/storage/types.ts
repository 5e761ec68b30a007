/**
 * The host's record store: untrusted storage for sealed record blobs and the enclave's chained
 * audit events, per partition. It holds opaque bytes only; the enclave seals every blob and
 * detects rollback itself. Every method is async so that a networked backend (PostgreSQL) can
 * implement the same interface as the embedded SQLite one.
 *
 * How the engine uses it, per partition and one batch at a time:
 *   getMany (current blobs) -> enclave Prepared -> applyBatch (one durable transaction) -> Commit;
 *   at startup: scan every row -> enclave LoadChunk/LoadEnd -> revert what it names.
 *
 * Errors are `StorageError` with a stable numeric code in 4000-4099.
 */
import type { AuditEvent } from '../../enclave/api/messages.ts';

export type { AuditEvent };

/** One stored row. `blob` empty: a tombstone (the record was deleted). */
export interface StoredRecord {
  recordId: Uint8Array;
  /** The current sealed blob; empty for a tombstone. */
  blob: Uint8Array;
  /** The blob before the last batch that wrote this record; null when there was none (or it was compacted). */
  prev: Uint8Array | null;
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
  /** Bytes of record ids, blobs and previous blobs held, all partitions (payload, not file size). */
  bytes: number;
}

export interface RecordStore {
  readonly kind: 'sqlite' | 'postgres';

  /**
   * The stored rows of the given ids, keyed by the lower-case hex of the id (`recordKey`).
   * Absent ids are missing from the map; tombstones are present with an empty blob.
   */
  getMany(partition: number, recordIds: Uint8Array[]): Promise<Map<string, StoredRecord>>;

  /**
   * Persists one prepared batch in ONE durable transaction: for each write, the current blob
   * (if the row exists) moves to `prev`, the new blob and `epoch` are stored (a new row has a
   * null `prev`); the audit events are appended. Audit events already stored in this partition
   * with a seq at or above the lowest seq of `audit` are replaced: they belong to a batch the
   * enclave never committed, whose seqs it has issued again. When this resolves, the whole batch
   * is on stable storage; when it rejects, none of it is applied.
   * Refused (InvalidArgument, nothing applied): a record id twice in `writes`, an id of 0 or more
   * than MAX_RECORD_ID bytes, a blob over MAX_SEALED_RECORD bytes, an audit event that does not
   * encode, two events with the same seq.
   */
  applyBatch(partition: number, epoch: number, writes: BatchWrite[], audit: AuditEvent[]): Promise<void>;

  /**
   * Undoes the last write of each given record, in one transaction: blob := prev, prev := null.
   * A row that would be left with nothing is removed: prev null (the undone batch created the
   * row, e.g. a tombstone whose prev is null) or prev a tombstone. Ids without a row are ignored.
   * The row keeps its epoch (the previous one is not stored); only `compact` reads it.
   */
  revert(partition: number, recordIds: Uint8Array[]): Promise<void>;

  /**
   * Every row of the partition exactly once, in record id order, in chunks of at most
   * `chunkSize` rows. Rows written while a scan is in progress may or may not be seen.
   */
  scan(partition: number, chunkSize: number): AsyncIterable<StoredRecord[]>;

  /**
   * Forgets history the enclave no longer needs: of the rows written at an epoch below
   * `beforeEpoch`, removes tombstones and clears `prev` of the others.
   */
  compact(partition: number, beforeEpoch: number): Promise<void>;

  /** Up to `limit` audit events of the partition with seq >= fromSeq, in seq order. */
  auditEvents(partition: number, fromSeq: number, limit: number): Promise<AuditEvent[]>;

  stats(): Promise<StoreStats>;

  /** Closes the store; later calls reject with Closed. Closing twice is harmless. */
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
export type StorageCode = (typeof StorageCode)[keyof typeof StorageCode];

const CODE_NAMES = new Map<number, string>(Object.entries(StorageCode).map(([k, v]) => [v, k]));

/** A readable name for a storage code (`Storage.Full`), for logs and CLIs. */
export function storageCodeName(code: number): string {
  return `Storage.${CODE_NAMES.get(code) ?? code}`;
}

/**
 * A typed storage failure. `detail` is the backend's own code when there is one
 * (`SQLITE_IOERR_FSYNC`, `ENOSPC`); the message never carries stored bytes.
 */
export class StorageError extends Error {
  override readonly name = 'StorageError';
  constructor(
    readonly code: StorageCode,
    message: string,
    readonly detail?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export function isStorageError(e: unknown, code?: StorageCode): e is StorageError {
  return e instanceof StorageError && (code === undefined || e.code === code);
}

/** The map key of a record id in `getMany` results: lower-case hex. */
export function recordKey(recordId: Uint8Array): string {
  return Buffer.from(recordId.buffer, recordId.byteOffset, recordId.byteLength).toString('hex');
}
