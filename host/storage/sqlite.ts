/**
 * The embedded record store on SQLite (better-sqlite3 12): WAL journal with `synchronous = FULL`
 * (a batch is on stable storage when `applyBatch` resolves), checkpointed every
 * SQLITE_WAL_CHECKPOINT_PAGES pages, a busy timeout, a versioned schema
 * (table `meta`, migrations in one transaction, a newer schema refused), cached prepared
 * statements, one IMMEDIATE transaction per batch. better-sqlite3 is synchronous: every method
 * does its work at once and returns a settled promise; SQLite failures become `StorageError`s.
 *
 * Schema, version 2 (STRICT tables, 4096-byte pages):
 *   meta(key TEXT PRIMARY KEY, value)                        -- schema_version, app, epoch/<partition>
 *   records(partition, record_id BLOB, blob BLOB, epoch INTEGER,
 *           PRIMARY KEY(partition, record_id)) WITHOUT ROWID
 *   records_tombstones: partial index (partition, epoch) of the empty-blob rows, for `compact`
 *   audit(partition, seq, event BLOB, PRIMARY KEY(partition, seq)) WITHOUT ROWID
 *                                                            -- event: encodeFields(AuditEventSchema)
 * Version 1 also kept each record's previous blob (`prev`); migration 2 rebuilds `records`
 * without it, and opening a store that needed that migration ends with a VACUUM, so that the
 * file gives the freed pages back (see `openSqliteStore`).
 *
 * Size: a record of a 16-byte id and a 322-byte blob takes about 435 bytes of file (100k records
 * written in random id order: leaves about 81% full; interior pages of a WITHOUT ROWID table hold
 * whole rows, about 10% of the pages). Rewriting a record keeps its size, so the file does not
 * grow with updates; a store fresh from migration 2 (copied in key order, then VACUUMed) starts
 * near 373. Larger pages save little per record, at twice the WAL bytes per scattered write and
 * slower batches, so the page size stays SQLite's default 4096 (figures in bench/README.md).
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import type { AuditEvent, StoredAuditEvent } from '../../enclave/api/messages.ts';
import { checkAuditRange, checkBatch, checkChunkSize, checkCompact, checkId, checkPartition, decodeAuditRow, invalid } from './check.ts';
import { StorageCode, StorageError } from './types.ts';
import type { BatchWrite, RecordStore, StoreSnapshot, StoreStats, StoredRecord } from './types.ts';

export interface SqliteStoreOptions {
  /** How long a call waits for a lock held by another connection before failing with Busy. Default 5000 ms. */
  busyTimeoutMs?: number;
  /**
   * A size cap for the database file (rounded down to whole pages): a batch that would grow it
   * beyond fails with Full, exactly as a full disk does. Default: no cap beyond SQLite's own.
   */
  maxSizeBytes?: number;
  /** SQLite's page cache for this connection. Default 16384 KiB (SQLite's own default is 2000 KiB). */
  cacheKiB?: number;
  /**
   * How many pages the WAL holds before a commit copies them back into the database file
   * (`wal_autocheckpoint`), 1..SQLITE_MAX_WAL_CHECKPOINT_PAGES. Default SQLITE_WAL_CHECKPOINT_PAGES.
   */
  walCheckpointPages?: number;
}

/**
 * The WAL's auto-checkpoint threshold in pages, against SQLite's default of 1000. A batch writes
 * each record it changes as one page frame to the WAL (records of a batch land on scattered pages),
 * and the commit that crosses the threshold copies every page of the WAL back into the database
 * file, one read and one write call per page, on the host's thread. A page rewritten between two
 * checkpoints is copied once: at 10,000 pages (about 40 MB of WAL) the pages of a working set of
 * some thousands of records are each rewritten several times in between, where at 1,000 most are
 * copied once per write. `bench/storage.ts` measures both side by side (`sqliteCheckpointCpu`;
 * figures in bench/README.md, 2026-12-07 (SQLite)). Crash recovery replays at most that much WAL;
 * `journal_size_limit` (64 MB) stays above it.
 */
export const SQLITE_WAL_CHECKPOINT_PAGES = 10_000;
/** The most `walCheckpointPages` may be: the WAL stays within `journal_size_limit` (64 MB of 4096-byte pages). */
export const SQLITE_MAX_WAL_CHECKPOINT_PAGES = 16_000;

const APP_ID = 'backup-key-vault/records';

/** Migration i brings the schema from version i to i + 1. Never edit a released one; append. */
const MIGRATIONS: readonly ((db: Database.Database) => void)[] = [
  (db) => {
    db.exec(`
      CREATE TABLE records (
        partition INTEGER NOT NULL,
        record_id BLOB NOT NULL,
        blob      BLOB NOT NULL,
        prev      BLOB,
        epoch     INTEGER NOT NULL,
        PRIMARY KEY (partition, record_id)
      ) STRICT, WITHOUT ROWID;
      CREATE INDEX records_pending ON records (partition, epoch)
        WHERE prev IS NOT NULL OR length(blob) = 0;
      CREATE TABLE audit (
        partition INTEGER NOT NULL,
        seq       INTEGER NOT NULL,
        event     BLOB NOT NULL,
        PRIMARY KEY (partition, seq)
      ) STRICT, WITHOUT ROWID;
    `);
  },
  // 1 -> 2: no previous blob per record (the enclave rolls an interrupted batch forward; the host
  // never reverts). A rebuild rather than DROP COLUMN: that would shrink every row in place and
  // leave the pages about half full; copied in key order, the rows fill their pages.
  (db) => {
    db.exec(`
      DROP INDEX records_pending;
      CREATE TABLE records_v2 (
        partition INTEGER NOT NULL,
        record_id BLOB NOT NULL,
        blob      BLOB NOT NULL,
        epoch     INTEGER NOT NULL,
        PRIMARY KEY (partition, record_id)
      ) STRICT, WITHOUT ROWID;
      INSERT INTO records_v2 (partition, record_id, blob, epoch)
        SELECT partition, record_id, blob, epoch FROM records ORDER BY partition, record_id;
      DROP TABLE records;
      ALTER TABLE records_v2 RENAME TO records;
      CREATE INDEX records_tombstones ON records (partition, epoch) WHERE length(blob) = 0;
    `);
  },
];

/** The schema version this code writes. */
export const SQLITE_SCHEMA_VERSION = MIGRATIONS.length;

/** Maps a better-sqlite3 / Node error to a StorageError code (`SQLITE_IOERR_FSYNC` -> Io, ...). */
export function toStorageError(e: unknown, what: string): StorageError {
  if (e instanceof StorageError) return e;
  const code = typeof (e as { code?: unknown } | null)?.code === 'string' ? (e as { code: string }).code : undefined;
  const msg = `${what}: ${e instanceof Error ? e.message : String(e)}`;
  let sc: StorageCode = StorageCode.Internal;
  if (code !== undefined) {
    if (code.startsWith('SQLITE_FULL') || code === 'ENOSPC' || code === 'EDQUOT') sc = StorageCode.Full;
    else if (code.startsWith('SQLITE_CORRUPT') || code.startsWith('SQLITE_NOTADB')) sc = StorageCode.Corrupt;
    else if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED')) sc = StorageCode.Busy;
    else if (
      code.startsWith('SQLITE_IOERR') ||
      code.startsWith('SQLITE_CANTOPEN') ||
      code.startsWith('SQLITE_READONLY') ||
      code.startsWith('SQLITE_PERM') ||
      /^E[A-Z]+$/.test(code)
    ) {
      sc = StorageCode.Io;
    }
  }
  return new StorageError(sc, msg, code, { cause: e });
}

/** The meta key of a partition's applied epoch. */
const epochKey = (p: number) => `epoch/${p}`;

/** A plain Uint8Array view of a Buffer from better-sqlite3 (each owns its memory: no copy). */
const view = (b: Buffer): Uint8Array => new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
/** Ids read by one statement in `getMany` (SQLite allows 32,766 parameters; a batch is far smaller). */
const GET_CHUNK = 64;

interface RecordRow {
  record_id: Buffer;
  blob: Buffer;
  epoch: number;
}

const toRecord = (r: RecordRow): StoredRecord => ({ recordId: view(r.record_id), blob: view(r.blob), epoch: r.epoch });

/** Brings the schema to SQLITE_SCHEMA_VERSION in one transaction; returns the version it found (0: a new store). */
function migrate(db: Database.Database): number {
  const run = db.transaction((): number => {
    const hasMeta = db.prepare("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'meta'").get();
    let version = 0;
    if (hasMeta) {
      const row = db.prepare("SELECT value FROM meta WHERE key = 'schema_version'").get() as { value: unknown } | undefined;
      version = Number(row?.value);
      if (!Number.isSafeInteger(version) || version < 1) {
        throw new StorageError(StorageCode.Corrupt, 'meta: schema_version missing or invalid');
      }
    } else {
      const other = db.prepare("SELECT name FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%' LIMIT 1").get();
      if (other) throw new StorageError(StorageCode.Corrupt, 'not a vault record store (tables without meta)');
      db.exec('CREATE TABLE meta (key TEXT PRIMARY KEY, value ANY NOT NULL) STRICT');
      db.prepare("INSERT INTO meta (key, value) VALUES ('app', ?)").run(APP_ID);
    }
    if (version > SQLITE_SCHEMA_VERSION) {
      throw new StorageError(
        StorageCode.SchemaTooNew,
        `store schema version ${version} is newer than this build's ${SQLITE_SCHEMA_VERSION}`,
      );
    }
    if (version === SQLITE_SCHEMA_VERSION) return version;
    for (let v = version; v < SQLITE_SCHEMA_VERSION; v++) MIGRATIONS[v]!(db);
    db.prepare("INSERT INTO meta (key, value) VALUES ('schema_version', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value").run(
      SQLITE_SCHEMA_VERSION,
    );
    return version;
  });
  return run.immediate();
}

/**
 * After a migration that rewrote tables, gives the pages it freed back to the file system
 * (VACUUM, then a WAL checkpoint that truncates the WAL). Best effort: the migrated store is
 * already committed, and VACUUM applies all or nothing, so a lack of disk space for the copy or
 * a concurrent reader is no reason to refuse the store; any other failure is.
 */
function reclaimFreedPages(db: Database.Database): void {
  if ((db.pragma('freelist_count', { simple: true }) as number) === 0) return;
  try {
    db.exec('VACUUM');
    db.pragma('wal_checkpoint(TRUNCATE)');
  } catch (e) {
    const code = toStorageError(e, 'vacuum').code;
    if (code !== StorageCode.Full && code !== StorageCode.Busy) throw e;
  }
}

class SqliteRecordStore implements RecordStore {
  readonly kind = 'sqlite' as const;
  private db: Database.Database | null;
  private readonly s: ReturnType<typeof prepareAll>;
  private readonly getInStatements: Database.Statement[] = [];
  private readonly applyTx: (p: number, epoch: number, writes: BatchWrite[], events: Uint8Array[], seqs: number[], minSeq: number | null) => void;

  /** Snapshots open on this store (closed with it). */
  private readonly snapshots = new Set<SqliteSnapshot>();

  constructor(
    db: Database.Database,
    private readonly busyTimeoutMs: number,
  ) {
    this.db = db;
    const s = prepareAll(db);
    this.s = s;
    this.applyTx = db.transaction((p: number, epoch: number, writes: BatchWrite[], events: Uint8Array[], seqs: number[], minSeq: number | null) => {
      for (const w of writes) s.upsert.run(p, w.recordId, w.blob, epoch);
      if (minSeq !== null) {
        s.auditSupersede.run(p, minSeq);
        for (let i = 0; i < events.length; i++) s.auditInsert.run(p, seqs[i]!, events[i]!);
      }
      // Always a write, so that the commit syncs even for a batch that changed nothing (types.ts).
      s.epochSet.run(epochKey(p), epoch);
    }).immediate;
  }

  /**
   * The statement that reads `n` ids at once (1..GET_CHUNK), prepared on first use: the ids as a
   * table of (position, id) looked up one by one in the primary key (CROSS JOIN keeps that order
   * of the loops), each row returned with its position. Against `record_id IN (...)` returning the
   * id: one buffer fewer per row (better-sqlite3 copies every BLOB into a Buffer of its own) and
   * 10-20% less time per row (a scratch script, 70 ids out of 50,000 rows).
   */
  private getIn(n: number): Database.Statement {
    let st = this.getInStatements[n];
    if (!st) {
      const ids = Array.from({ length: n }, (_, i) => `(${i}, ?)`).join(', ');
      st = this.live()
        .prepare(`WITH ids(i, id) AS (VALUES ${ids}) SELECT ids.i, r.blob, r.epoch FROM ids CROSS JOIN records r ON r.partition = ? AND r.record_id = ids.id`)
        .raw(true);
      this.getInStatements[n] = st;
    }
    return st;
  }

  private live(): Database.Database {
    if (this.db === null || !this.db.open) throw new StorageError(StorageCode.Closed, 'record store is closed');
    return this.db;
  }

  async getMany(partition: number, recordIds: Uint8Array[]): Promise<(StoredRecord | undefined)[]> {
    this.live();
    checkPartition(partition);
    for (const id of recordIds) checkId(id, 'recordId');
    try {
      // One statement per chunk of ids, each row with its id's position in the chunk (types.ts:
      // the result is aligned with `recordIds`; an id may come twice, and is found twice).
      const out: (StoredRecord | undefined)[] = new Array(recordIds.length).fill(undefined);
      for (let at = 0; at < recordIds.length; at += GET_CHUNK) {
        const chunk = recordIds.slice(at, at + GET_CHUNK);
        for (const [i, blob, epoch] of this.getIn(chunk.length).all(...chunk, partition) as [number, Buffer, number][]) {
          out[at + i] = { recordId: new Uint8Array(recordIds[at + i]!), blob: view(blob), epoch };
        }
      }
      return out;
    } catch (e) {
      throw toStorageError(e, 'getMany');
    }
  }

  async applyBatch(partition: number, epoch: number, writes: BatchWrite[], audit: StoredAuditEvent[]): Promise<void> {
    this.live();
    const { events, seqs, minSeq } = checkBatch(partition, epoch, writes, audit);
    try {
      this.applyTx(partition, epoch, writes, events, seqs, minSeq);
    } catch (e) {
      throw toStorageError(e, 'applyBatch');
    }
  }

  async *scan(partition: number, chunkSize: number): AsyncGenerator<StoredRecord[], void, undefined> {
    checkPartition(partition);
    checkChunkSize(chunkSize);
    yield* scanChunks(() => (this.live(), this.s), partition, chunkSize, 'scan');
  }

  async snapshot(partition: number): Promise<StoreSnapshot> {
    const db = this.live();
    checkPartition(partition);
    if (db.memory) {
      // a throwaway store has no file for a second connection: its rows read in one synchronous
      // call are one state (nothing runs between two statements of it)
      try {
        const epoch = readEpoch(this.s, partition);
        const rows = (this.s.scanFirst.all(partition, Number.MAX_SAFE_INTEGER) as RecordRow[]).map(toRecord);
        return heldSnapshot(epoch, rows);
      } catch (e) {
        throw toStorageError(e, 'snapshot');
      }
    }
    let r: Database.Database;
    try {
      r = new Database(db.name, { readonly: true, fileMustExist: true, timeout: this.busyTimeoutMs });
    } catch (e) {
      throw toStorageError(e, 'snapshot: open a read connection');
    }
    try {
      const st = prepareReads(r);
      // the read transaction's snapshot is taken at its first read (sqlite.org/isolation.html:
      // a reader in WAL mode sees the database as of the start of its read transaction)
      r.exec('BEGIN');
      const epoch = readEpoch(st, partition);
      const snap = new SqliteSnapshot(r, st, partition, epoch, () => this.snapshots.delete(snap));
      this.snapshots.add(snap);
      return snap;
    } catch (e) {
      r.close();
      throw toStorageError(e, 'snapshot');
    }
  }

  async compact(partition: number, beforeEpoch: number): Promise<void> {
    this.live();
    checkCompact(partition, beforeEpoch);
    try {
      this.s.compact.run(partition, beforeEpoch); // one statement: atomic by itself
    } catch (e) {
      throw toStorageError(e, 'compact');
    }
  }

  async appliedEpoch(partition: number): Promise<number | null> {
    this.live();
    checkPartition(partition);
    try {
      return readEpoch(this.s, partition);
    } catch (e) {
      throw toStorageError(e, 'appliedEpoch');
    }
  }

  async auditEvents(partition: number, fromSeq: number, limit: number): Promise<AuditEvent[]> {
    this.live();
    checkAuditRange(partition, fromSeq, limit);
    let rows: { seq: number; event: Buffer }[];
    try {
      rows = this.s.auditRange.all(partition, fromSeq, limit) as { seq: number; event: Buffer }[];
    } catch (e) {
      throw toStorageError(e, 'auditEvents');
    }
    return rows.map((r) => decodeAuditRow(r.seq, view(r.event)));
  }

  async stats(): Promise<StoreStats> {
    this.live();
    try {
      const r = this.s.stats.get() as { records: number | null; bytes: number | null };
      return { records: r.records ?? 0, bytes: r.bytes ?? 0 };
    } catch (e) {
      throw toStorageError(e, 'stats');
    }
  }

  async close(): Promise<void> {
    for (const snap of [...this.snapshots]) await snap.close();
    const db = this.db;
    this.db = null;
    if (db === null || !db.open) return;
    try {
      db.close();
    } catch (e) {
      throw toStorageError(e, 'close');
    }
  }
}

/** The statements a read needs (the store's own, or a snapshot's read connection's). */
type Reads = Pick<ReturnType<typeof prepareAll>, 'epochGet' | 'scanFirst' | 'scanNext'>;

function prepareReads(db: Database.Database): Reads {
  return {
    epochGet: db.prepare(EPOCH_GET),
    scanFirst: db.prepare(SCAN_FIRST),
    scanNext: db.prepare(SCAN_NEXT),
  };
}

/** The partition's applied epoch (null: none); Corrupt for a value that is not one. */
function readEpoch(s: Reads, partition: number): number | null {
  const row = s.epochGet.get(epochKey(partition)) as { value: unknown } | undefined;
  if (row === undefined) return null;
  const v = Number(row.value);
  if (!Number.isSafeInteger(v) || v < 0) throw new StorageError(StorageCode.Corrupt, `meta: ${epochKey(partition)} is not an epoch`);
  return v;
}

/** Every row of the partition in record id order, `chunkSize` at a time, through `reads()` (which throws Closed once the connection is gone). */
function* scanChunks(reads: () => Reads, partition: number, chunkSize: number, what: string): Generator<StoredRecord[], void, undefined> {
  let after: Buffer | null = null;
  for (;;) {
    let rows: RecordRow[];
    try {
      const s = reads();
      rows = (after === null ? s.scanFirst.all(partition, chunkSize) : s.scanNext.all(partition, after, chunkSize)) as RecordRow[];
    } catch (e) {
      throw toStorageError(e, what);
    }
    if (rows.length === 0) return;
    after = rows[rows.length - 1]!.record_id;
    yield rows.map(toRecord);
    if (rows.length < chunkSize) return;
  }
}

/** A snapshot on a read-only connection of its own, in one read transaction until closed. */
class SqliteSnapshot implements StoreSnapshot {
  private db: Database.Database | null;
  constructor(
    db: Database.Database,
    private readonly st: Reads,
    private readonly partition: number,
    readonly appliedEpoch: number | null,
    private readonly onClose: () => void,
  ) {
    this.db = db;
  }
  private reads(): Reads {
    if (this.db === null) throw new StorageError(StorageCode.Closed, 'snapshot is closed');
    return this.st;
  }
  async *scan(chunkSize: number): AsyncGenerator<StoredRecord[], void, undefined> {
    checkChunkSize(chunkSize);
    yield* scanChunks(() => this.reads(), this.partition, chunkSize, 'snapshot scan');
  }
  async close(): Promise<void> {
    const db = this.db;
    this.db = null;
    if (db === null) return;
    this.onClose();
    try {
      if (db.inTransaction) db.exec('COMMIT');
    } catch (e) {
      throw toStorageError(e, 'snapshot close');
    } finally {
      db.close();
    }
  }
}

/** A snapshot whose rows are already read (a throwaway store's). */
function heldSnapshot(appliedEpoch: number | null, rows: readonly StoredRecord[]): StoreSnapshot {
  let open = true;
  return {
    appliedEpoch,
    async *scan(chunkSize: number) {
      checkChunkSize(chunkSize);
      for (let at = 0; at === 0 || at < rows.length; at += chunkSize) {
        if (!open) throw new StorageError(StorageCode.Closed, 'snapshot is closed');
        if (at < rows.length) yield rows.slice(at, at + chunkSize);
      }
    },
    async close() {
      open = false;
    },
  };
}

const EPOCH_GET = 'SELECT value FROM meta WHERE key = ?';
const SCAN_FIRST = 'SELECT record_id, blob, epoch FROM records WHERE partition = ? ORDER BY record_id LIMIT ?';
const SCAN_NEXT = 'SELECT record_id, blob, epoch FROM records WHERE partition = ? AND record_id > ? ORDER BY record_id LIMIT ?';

function prepareAll(db: Database.Database) {
  return {
    upsert: db.prepare(
      `INSERT INTO records (partition, record_id, blob, epoch) VALUES (?, ?, ?, ?)
       ON CONFLICT (partition, record_id) DO UPDATE SET blob = excluded.blob, epoch = excluded.epoch`,
    ),
    auditSupersede: db.prepare('DELETE FROM audit WHERE partition = ? AND seq >= ?'),
    auditInsert: db.prepare('INSERT INTO audit (partition, seq, event) VALUES (?, ?, ?)'),
    epochSet: db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value'),
    epochGet: db.prepare(EPOCH_GET),
    scanFirst: db.prepare(SCAN_FIRST),
    scanNext: db.prepare(SCAN_NEXT),
    // `length(blob) = 0` as written in the index's WHERE: the planner uses records_tombstones
    compact: db.prepare('DELETE FROM records WHERE partition = ? AND epoch < ? AND length(blob) = 0'),
    auditRange: db.prepare('SELECT seq, event FROM audit WHERE partition = ? AND seq >= ? ORDER BY seq LIMIT ?'),
    stats: db.prepare(
      `SELECT sum(length(blob) > 0) AS records,
              sum(length(record_id) + length(blob)) AS bytes
       FROM records`,
    ),
  };
}

/**
 * Opens (creating if needed, with its directory) the SQLite store at `path` (`:memory:` for a
 * throwaway one). Rejects with Corrupt for a file that is not a vault store, SchemaTooNew for a
 * store written by a newer build, Busy when another connection holds the lock past the timeout.
 */
export async function openSqliteStore(path: string, opts: SqliteStoreOptions = {}): Promise<RecordStore> {
  const busyTimeoutMs = opts.busyTimeoutMs ?? 5000;
  if (!Number.isSafeInteger(busyTimeoutMs) || busyTimeoutMs < 0) throw invalid('busyTimeoutMs: not a non-negative integer');
  if (opts.maxSizeBytes !== undefined && (!Number.isSafeInteger(opts.maxSizeBytes) || opts.maxSizeBytes < 1)) {
    throw invalid('maxSizeBytes: not a positive integer');
  }
  const cacheKiB = opts.cacheKiB ?? 16384;
  if (!Number.isSafeInteger(cacheKiB) || cacheKiB < 1) throw invalid('cacheKiB: not a positive integer');
  const walCheckpointPages = opts.walCheckpointPages ?? SQLITE_WAL_CHECKPOINT_PAGES;
  if (!Number.isSafeInteger(walCheckpointPages) || walCheckpointPages < 1 || walCheckpointPages > SQLITE_MAX_WAL_CHECKPOINT_PAGES) {
    throw invalid(`walCheckpointPages: not an integer in 1..${SQLITE_MAX_WAL_CHECKPOINT_PAGES}`);
  }
  if (typeof path !== 'string' || path === '') throw invalid('path: empty');
  const memory = path === ':memory:';
  if (!memory) {
    try {
      mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    } catch (e) {
      throw toStorageError(e, `create directory of ${path}`);
    }
  }
  let db: Database.Database;
  try {
    db = new Database(path, { timeout: busyTimeoutMs });
  } catch (e) {
    throw toStorageError(e, `open ${path}`);
  }
  try {
    if (!memory) {
      const mode = db.pragma('journal_mode = WAL', { simple: true });
      if (mode !== 'wal') throw new StorageError(StorageCode.Io, `open ${path}: WAL journal refused (${String(mode)})`);
    }
    db.pragma('synchronous = FULL');
    db.pragma('journal_size_limit = 67108864');
    db.pragma(`wal_autocheckpoint = ${walCheckpointPages}`);
    db.pragma(`cache_size = -${cacheKiB}`);
    if (opts.maxSizeBytes !== undefined) {
      const pageSize = db.pragma('page_size', { simple: true }) as number;
      db.pragma(`max_page_count = ${Math.max(1, Math.floor(opts.maxSizeBytes / pageSize))}`);
    }
    const found = migrate(db);
    if (found > 0 && found < SQLITE_SCHEMA_VERSION) reclaimFreedPages(db);
    return new SqliteRecordStore(db, busyTimeoutMs);
  } catch (e) {
    try {
      db.close();
    } catch {
      // already failing: the first error is the one to report
    }
    throw toStorageError(e, `open ${path}`);
  }
}
