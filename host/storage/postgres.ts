/**
 * The networked record store on PostgreSQL (`pg`, a Pool), with the same semantics as the SQLite
 * store (see sqlite.ts and the RecordStore contract in types.ts).
 *
 * - Durable: every batch is one autocommit statement and `synchronous_commit` stays on (a
 *   server whose default is `off` gets `-c synchronous_commit=on` for this store's sessions),
 *   so a resolved `applyBatch` is on the server's stable storage.
 * - Fast: `applyBatch` is ONE statement (data-modifying CTEs: records upsert, audit supersede,
 *   audit upsert) and so one round trip, with its arrays sent in PostgreSQL's binary array
 *   format; named (server-side prepared) statements; `getMany` one statement too, each found
 *   row placed by the position of its id in the request; `scan` by keyset pagination on the
 *   primary key.
 * - Versioned: table `meta` holds schema_version; migrations run in one transaction under a
 *   transaction-scoped advisory lock, so processes starting together do not race; a newer
 *   version is refused (SchemaTooNew).
 * - Errors become StorageError (connection refused / timeout -> Io, 53100 -> Full,
 *   XX001/XX002 -> Corrupt, 40001/40P01 -> Busy, retried inside applyBatch, a closed store ->
 *   Closed). No message carries the URL or its password.
 *
 * URL: postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?schema=NAME&sslmode=...]. `schema`
 * (default `public`) is this project's own parameter: the store's tables live in that schema,
 * which is created when missing; everything else goes to `pg` unchanged.
 *
 * Schema, version 2 (in the chosen schema):
 *   meta(key text PRIMARY KEY, value text)                   -- app, schema_version, epoch/<partition>
 *   records(partition integer, record_id bytea, blob bytea, epoch bigint,
 *           PRIMARY KEY(partition, record_id))               -- rows stay inline (toast_tuple_target)
 *   audit(partition integer, seq bigint, event bytea, PRIMARY KEY(partition, seq))
 *                                                            -- event: encodeFields(AuditEventSchema)
 * Version 1 also kept each record's previous blob (`prev`) and a partial index for `compact`;
 * migration 2 rebuilds `records` without either. `records` has no index but its primary key on
 * purpose: every write sets `blob` and `epoch`, and an index that reads either (even only in its
 * WHERE) makes every update non-HOT, which cost about 20 bytes per record of index bloat and
 * some latency in measurements. So `compact` reads the rows of its partition.
 *
 * Size (pg_total_relation_size, a 16-byte id and a 322-byte blob, 100k records in random order):
 * about 443 bytes per record after the load (heap 390: 21 rows of 384 + 4 bytes per 8 KB page;
 * primary key 53), settling between 490 and 510 once every record has been rewritten a few times
 * (HOT updates leave some room in each page; fillfactor 90 settles at the same figure, so the
 * table keeps the default). Dead row versions are reclaimed by page pruning and autovacuum.
 */
import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import type { AuditEvent, StoredAuditEvent } from '../../enclave/api/messages.ts';
import { checkAuditRange, checkBatch, checkChunkSize, checkCompact, checkId, checkPartition, decodeAuditRow, invalid } from './check.ts';
import { StorageCode, StorageError } from './types.ts';
import type { BatchWrite, RecordStore, StoreSnapshot, StoreStats, StoredRecord } from './types.ts';

export interface PostgresStoreOptions {
  /** Pool size (connections). Default 10. */
  maxConnections?: number;
  /** How long connecting may take before failing with Io. Default 10000 ms. */
  connectTimeoutMs?: number;
  /** An idle pooled connection is closed after this long. Default 30000 ms. */
  idleTimeoutMs?: number;
  /**
   * Server-side statement timeout; a statement cancelled by it is rolled back and fails with
   * Busy. Default: the server's own (usually none). Sent as a startup parameter.
   */
  statementTimeoutMs?: number;
  /** How often applyBatch retries after a serialization failure or deadlock (40001/40P01). Default 5. */
  busyRetries?: number;
  /** Overrides the URL's `schema` parameter. */
  schema?: string;
}

/** What a PostgreSQL store reports about its server (for benchmarks and logs; no secrets). */
export interface PostgresServerInfo {
  serverVersion: string;
  schema: string;
  synchronousCommit: string;
  fsync: string;
}

export interface PostgresRecordStore extends RecordStore {
  readonly kind: 'postgres';
  serverInfo(): Promise<PostgresServerInfo>;
}

const APP_ID = 'backup-key-vault/records';
const DEFAULT_SCHEMA = 'public';
const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

/**
 * Migration i brings the schema from version i to i + 1: statements run in order, in the
 * migration transaction; `S` is the quoted schema name. Never edit a released one; append.
 */
const MIGRATIONS: readonly ((S: string) => readonly string[])[] = [
  (S) => [
    `CREATE TABLE ${S}.records (
       partition integer NOT NULL,
       record_id bytea   NOT NULL,
       blob      bytea   NOT NULL,
       prev      bytea,
       epoch     bigint  NOT NULL,
       PRIMARY KEY (partition, record_id)
     ) WITH (toast_tuple_target = 8160)`,
    // sealed blobs do not compress: keep them uncompressed (and, thanks to the target above, inline)
    `ALTER TABLE ${S}.records ALTER COLUMN blob SET STORAGE EXTERNAL, ALTER COLUMN prev SET STORAGE EXTERNAL`,
    `CREATE INDEX records_pending ON ${S}.records (partition, epoch) WHERE prev IS NOT NULL OR length(blob) = 0`,
    `CREATE TABLE ${S}.audit (
       partition integer NOT NULL,
       seq       bigint  NOT NULL,
       event     bytea   NOT NULL,
       PRIMARY KEY (partition, seq)
     )`,
  ],
  // 1 -> 2: no previous blob per record (the enclave rolls an interrupted batch forward; the host
  // never reverts), no partial index (see the header). A rebuild rather than DROP COLUMN, which
  // would leave the old bytes in every row until it is next written; the key is built after the copy.
  (S) => [
    `CREATE TABLE ${S}.records_v2 (
       partition integer NOT NULL,
       record_id bytea   NOT NULL,
       blob      bytea   NOT NULL,
       epoch     bigint  NOT NULL
     ) WITH (toast_tuple_target = 8160)`,
    `ALTER TABLE ${S}.records_v2 ALTER COLUMN blob SET STORAGE EXTERNAL`,
    `INSERT INTO ${S}.records_v2 (partition, record_id, blob, epoch)
       SELECT partition, record_id, blob, epoch FROM ${S}.records ORDER BY partition, record_id`,
    `DROP TABLE ${S}.records`,
    `ALTER TABLE ${S}.records_v2 RENAME TO records`,
    `ALTER TABLE ${S}.records ADD CONSTRAINT records_pkey PRIMARY KEY (partition, record_id)`,
    `ANALYZE ${S}.records`,
  ],
];

/** The schema version this code writes. */
export const POSTGRES_SCHEMA_VERSION = MIGRATIONS.length;

// ---- errors ---------------------------------------------------------------------------------

/** SQLSTATEs after which a batch is retried: nothing of it was applied. */
const RETRYABLE = new Set(['40001', '40P01']);

function sqlState(e: unknown): string | undefined {
  return e instanceof pg.DatabaseError && typeof e.code === 'string' ? e.code : undefined;
}

/**
 * Maps a `pg` / Node error to a StorageError. `secrets` (the URL's password, raw and decoded)
 * are cut out of the message, should a driver ever echo one.
 */
export function pgToStorageError(e: unknown, what: string, secrets: readonly string[] = []): StorageError {
  if (e instanceof StorageError) return e;
  let inner = e;
  if (e instanceof AggregateError && e.errors.length > 0) inner = e.errors[0]; // several addresses tried
  const code = typeof (inner as { code?: unknown } | null)?.code === 'string' ? (inner as { code: string }).code : undefined;
  const text = inner instanceof Error ? inner.message || code || inner.name : String(inner);
  let msg = `${what}: ${text}`;
  for (const s of secrets) if (s !== '') msg = msg.split(s).join('***');
  const state = sqlState(inner);
  let sc: StorageCode = StorageCode.Internal;
  if (state !== undefined) {
    const cls = state.slice(0, 2);
    if (state === '53100') sc = StorageCode.Full;
    else if (state === 'XX001' || state === 'XX002') sc = StorageCode.Corrupt;
    else if (RETRYABLE.has(state) || state === '55P03' || state === '57014' || state === '53300') sc = StorageCode.Busy;
    else if (
      cls === '08' || // connection exception
      cls === '28' || // invalid authorization
      cls === '53' || // insufficient resources (other than the above)
      cls === '58' || // system error (I/O)
      state === '57P01' || state === '57P02' || state === '57P03' || // shutdown, crash, starting up
      state === '3D000' || // no such database
      state === '42501' || // insufficient privilege
      state === '25006' // read-only transaction (a standby)
    ) {
      sc = StorageCode.Io;
    }
  } else if (code !== undefined && /^E[A-Z0-9_]+$/.test(code)) {
    sc = StorageCode.Io; // ECONNREFUSED, ECONNRESET, ETIMEDOUT, ENOTFOUND, EPIPE, ...
  } else if (/Cannot use a pool after calling end|Client was closed and is not queryable/i.test(text)) {
    sc = StorageCode.Closed;
  } else if (/timeout|terminated|connect|ssl|socket|password/i.test(text)) {
    sc = StorageCode.Io; // pg's own connection failures carry no code
  }
  return new StorageError(sc, msg, state ?? code, { cause: e });
}

// ---- binary array parameters ------------------------------------------------------------------

const OID_BYTEA = 17;
const OID_INT8 = 20;

/** A one-dimensional bytea[] in PostgreSQL's binary array format (sent as is, no hex). */
function byteaArray(items: readonly Uint8Array[]): Buffer {
  let size = items.length === 0 ? 12 : 20;
  for (const it of items) size += 4 + it.length;
  const b = Buffer.allocUnsafe(size);
  b.writeInt32BE(items.length === 0 ? 0 : 1, 0); // dimensions
  b.writeInt32BE(0, 4); // no nulls
  b.writeInt32BE(OID_BYTEA, 8);
  let o = 12;
  if (items.length > 0) {
    b.writeInt32BE(items.length, 12);
    b.writeInt32BE(1, 16); // lower bound
    o = 20;
  }
  for (const it of items) {
    b.writeInt32BE(it.length, o);
    b.set(it, o + 4);
    o += 4 + it.length;
  }
  return b;
}

/** A one-dimensional int8[] in PostgreSQL's binary array format. */
function int8Array(items: readonly number[]): Buffer {
  const b = Buffer.allocUnsafe(items.length === 0 ? 12 : 20 + 12 * items.length);
  b.writeInt32BE(items.length === 0 ? 0 : 1, 0);
  b.writeInt32BE(0, 4);
  b.writeInt32BE(OID_INT8, 8);
  if (items.length > 0) {
    b.writeInt32BE(items.length, 12);
    b.writeInt32BE(1, 16);
  }
  let o = 20;
  for (const v of items) {
    b.writeInt32BE(8, o);
    b.writeBigInt64BE(BigInt(v), o + 4);
    o += 12;
  }
  return b;
}

const asBuffer = (u: Uint8Array): Buffer => Buffer.from(u.buffer, u.byteOffset, u.byteLength);
/** A plain Uint8Array copy of a Buffer from `pg` (its Buffers may share a pooled slab). */
const own = (b: Buffer): Uint8Array => new Uint8Array(b);

// ---- SQL --------------------------------------------------------------------------------------

function statements(S: string) {
  return {
    // One row per (position, found record): `i` is the 1-based position of the id in $2, so an
    // id given twice is answered at both positions.
    get: `SELECT q.i::integer AS i, r.blob, r.epoch FROM unnest($2::bytea[]) WITH ORDINALITY AS q(record_id, i)
      JOIN ${S}.records r ON r.partition = $1::integer AND r.record_id = q.record_id`,
    // One statement, one round trip, atomic. The CTEs run on one snapshot, so no two of them may
    // touch the same row: the audit delete spares the seqs the audit upsert writes.
    apply: `WITH w AS (
        INSERT INTO ${S}.records AS r (partition, record_id, blob, epoch)
        SELECT $1::integer, u.id, u.blob, $2::bigint FROM unnest($3::bytea[], $4::bytea[]) AS u(id, blob)
        ON CONFLICT (partition, record_id) DO UPDATE SET blob = excluded.blob, epoch = excluded.epoch
      ), d AS (
        DELETE FROM ${S}.audit WHERE partition = $1::integer AND seq >= $5::bigint AND seq <> ALL($6::bigint[])
      ), a AS (
        INSERT INTO ${S}.audit AS t (partition, seq, event)
        SELECT $1::integer, u.seq, u.event FROM unnest($6::bigint[], $7::bytea[]) AS u(seq, event)
        ON CONFLICT (partition, seq) DO UPDATE SET event = excluded.event
      ), m AS (
        INSERT INTO ${S}.meta AS t (key, value) VALUES ('epoch/' || $1::integer, $2::bigint::text)
        ON CONFLICT (key) DO UPDATE SET value = excluded.value
      )
      SELECT 1`,
    epoch: `SELECT value FROM ${S}.meta WHERE key = 'epoch/' || $1::integer`,
    scan: `SELECT record_id, blob, epoch FROM ${S}.records
      WHERE partition = $1::integer AND record_id > $2::bytea ORDER BY record_id LIMIT $3::integer`,
    compact: `DELETE FROM ${S}.records WHERE partition = $1::integer AND epoch < $2::bigint AND length(blob) = 0`,
    audit: `SELECT seq, event FROM ${S}.audit WHERE partition = $1::integer AND seq >= $2::bigint ORDER BY seq LIMIT $3::bigint`,
    stats: `SELECT count(*) FILTER (WHERE length(blob) > 0) AS records,
        coalesce(sum(length(record_id) + length(blob)), 0) AS bytes
      FROM ${S}.records`,
  };
}

interface RecordRow {
  record_id: Buffer;
  blob: Buffer;
  epoch: string;
}

const toRecord = (r: RecordRow): StoredRecord => ({ recordId: own(r.record_id), blob: own(r.blob), epoch: Number(r.epoch) });

const quoteIdent = (name: string) => `"${name.replace(/"/g, '""')}"`;

/** The advisory lock key of a schema's migrations: 64 bits of a hash, as a signed decimal. */
function lockKey(schema: string): string {
  return createHash('sha256').update(`${APP_ID}:${schema}`).digest().readBigInt64BE(0).toString();
}

/** The applied epoch a `meta` read gives (null: none); Corrupt for a value that is not one. */
function epochOf(rows: readonly { value: string }[], partition: number): number | null {
  if (rows.length === 0) return null;
  const v = Number(rows[0]!.value);
  if (!/^\d+$/.test(rows[0]!.value) || !Number.isSafeInteger(v)) throw new StorageError(StorageCode.Corrupt, `meta: epoch/${partition} is not an epoch`);
  return v;
}

/** Every row in record id order, `chunkSize` at a time, each chunk the rows after the last one read (the `scan` statement). */
async function* keysetChunks(chunkSize: number, read: (after: Buffer, limit: number) => Promise<RecordRow[]>): AsyncGenerator<StoredRecord[], void, undefined> {
  const limit = Math.min(chunkSize, 0x7fffffff);
  let after: Buffer = Buffer.alloc(0); // sorts before every record id (ids are 1..64 bytes)
  for (;;) {
    const rows = await read(after, limit);
    if (rows.length === 0) return;
    after = rows[rows.length - 1]!.record_id;
    yield rows.map(toRecord);
    if (rows.length < limit) return;
  }
}

/** A snapshot on one pooled connection, in one REPEATABLE READ READ ONLY transaction until closed. */
class PgSnapshot implements StoreSnapshot {
  private client: pg.PoolClient | null;
  constructor(
    client: pg.PoolClient,
    private readonly text: string,
    private readonly name: string,
    private readonly partition: number,
    readonly appliedEpoch: number | null,
    private readonly secrets: readonly string[],
    private readonly onClose: () => void,
  ) {
    this.client = client;
  }
  async *scan(chunkSize: number): AsyncGenerator<StoredRecord[], void, undefined> {
    checkChunkSize(chunkSize);
    yield* keysetChunks(chunkSize, async (after, limit) => {
      const client = this.client;
      if (client === null) throw new StorageError(StorageCode.Closed, 'snapshot is closed');
      try {
        return (await client.query<RecordRow>({ name: this.name, text: this.text, values: [this.partition, after, limit] })).rows;
      } catch (e) {
        throw pgToStorageError(e, 'snapshot scan', this.secrets);
      }
    });
  }
  async close(): Promise<void> {
    const client = this.client;
    this.client = null;
    if (client === null) return;
    this.onClose();
    try {
      await client.query('COMMIT');
      client.release();
    } catch (e) {
      client.release(true); // a connection whose transaction did not end is not reused
      throw pgToStorageError(e, 'snapshot close', this.secrets);
    }
  }
}

// ---- the store ------------------------------------------------------------------------------

class PgRecordStore implements PostgresRecordStore {
  readonly kind = 'postgres' as const;
  private pool: pg.Pool | null;
  /** Snapshots open on this store (closed with it). */
  private readonly snapshots = new Set<PgSnapshot>();
  private readonly sql: ReturnType<typeof statements>;
  private readonly names: Record<keyof ReturnType<typeof statements>, string>;

  constructor(
    pool: pg.Pool,
    private readonly schema: string,
    private readonly secrets: readonly string[],
    private readonly busyRetries: number,
  ) {
    this.pool = pool;
    this.sql = statements(quoteIdent(schema));
    const names = {} as Record<keyof ReturnType<typeof statements>, string>;
    for (const k of Object.keys(this.sql) as (keyof ReturnType<typeof statements>)[]) names[k] = `bkv_${k}`;
    this.names = names;
  }

  private live(): pg.Pool {
    if (this.pool === null) throw new StorageError(StorageCode.Closed, 'record store is closed');
    return this.pool;
  }

  private async run<R extends pg.QueryResultRow>(
    what: string,
    key: keyof ReturnType<typeof statements>,
    values: unknown[],
  ): Promise<R[]> {
    const pool = this.live();
    try {
      const res = await pool.query<R>({ name: this.names[key], text: this.sql[key], values });
      return res.rows;
    } catch (e) {
      if (this.pool === null) throw new StorageError(StorageCode.Closed, `${what}: record store is closed`, undefined, { cause: e });
      throw pgToStorageError(e, what, this.secrets);
    }
  }

  async getMany(partition: number, recordIds: Uint8Array[]): Promise<(StoredRecord | undefined)[]> {
    this.live();
    checkPartition(partition);
    for (const id of recordIds) checkId(id, 'recordId');
    const out = new Array<StoredRecord | undefined>(recordIds.length).fill(undefined);
    if (recordIds.length === 0) return out;
    const rows = await this.run<{ i: number; blob: Buffer; epoch: string }>('getMany', 'get', [partition, byteaArray(recordIds)]);
    for (const r of rows) {
      const id = recordIds[r.i - 1];
      if (id === undefined) throw new StorageError(StorageCode.Internal, `getMany: the server answered position ${r.i} of ${recordIds.length}`);
      out[r.i - 1] = { recordId: new Uint8Array(id), blob: own(r.blob), epoch: Number(r.epoch) };
    }
    return out;
  }

  async applyBatch(partition: number, epoch: number, writes: BatchWrite[], audit: StoredAuditEvent[]): Promise<void> {
    this.live();
    const { sorted, events, seqs, minSeq } = checkBatch(partition, epoch, writes, audit);
    // Applied even with no writes and no events: the applied epoch is written, so the commit is
    // flushed like any other (types.ts, appliedEpoch).
    // Rows are locked in record id order, so concurrent batches over the same ids can not deadlock.
    const values = [
      partition,
      epoch,
      byteaArray(sorted.map((w) => w.recordId)),
      byteaArray(sorted.map((w) => w.blob)),
      minSeq,
      int8Array(seqs),
      byteaArray(events),
    ];
    for (let attempt = 0; ; attempt++) {
      try {
        await this.run('applyBatch', 'apply', values);
        return;
      } catch (e) {
        const state = e instanceof StorageError ? e.detail : undefined;
        if (state === undefined || !RETRYABLE.has(state) || attempt >= this.busyRetries) throw e;
        // the statement was rolled back as a whole: retrying can not apply anything twice
        await sleep(Math.min(200, 5 * 2 ** attempt) * (0.5 + Math.random()));
      }
    }
  }

  async *scan(partition: number, chunkSize: number): AsyncGenerator<StoredRecord[], void, undefined> {
    checkPartition(partition);
    checkChunkSize(chunkSize);
    yield* keysetChunks(chunkSize, (after, limit) => this.run<RecordRow>('scan', 'scan', [partition, after, limit]));
  }

  async compact(partition: number, beforeEpoch: number): Promise<void> {
    this.live();
    checkCompact(partition, beforeEpoch);
    await this.run('compact', 'compact', [partition, beforeEpoch]);
  }

  async appliedEpoch(partition: number): Promise<number | null> {
    this.live();
    checkPartition(partition);
    return epochOf(await this.run<{ value: string }>('appliedEpoch', 'epoch', [partition]), partition);
  }

  async snapshot(partition: number): Promise<StoreSnapshot> {
    const pool = this.live();
    checkPartition(partition);
    let client: pg.PoolClient;
    try {
      client = await pool.connect();
    } catch (e) {
      throw pgToStorageError(e, 'snapshot: a connection', this.secrets);
    }
    try {
      // every statement of a REPEATABLE READ transaction sees the snapshot its first one took
      // (postgresql.org/docs/current/transaction-iso.html#XACT-REPEATABLE-READ)
      await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      const epoch = epochOf((await client.query<{ value: string }>({ name: this.names.epoch, text: this.sql.epoch, values: [partition] })).rows, partition);
      const snap = new PgSnapshot(client, this.sql.scan, this.names.scan, partition, epoch, this.secrets, () => this.snapshots.delete(snap));
      this.snapshots.add(snap);
      return snap;
    } catch (e) {
      client.release(true);
      throw pgToStorageError(e, 'snapshot', this.secrets);
    }
  }

  async auditEvents(partition: number, fromSeq: number, limit: number): Promise<AuditEvent[]> {
    this.live();
    checkAuditRange(partition, fromSeq, limit);
    if (limit === 0) return [];
    const rows = await this.run<{ seq: string; event: Buffer }>('auditEvents', 'audit', [partition, fromSeq, limit]);
    return rows.map((r) => decodeAuditRow(r.seq, own(r.event)));
  }

  async stats(): Promise<StoreStats> {
    const rows = await this.run<{ records: string; bytes: string }>('stats', 'stats', []);
    const r = rows[0];
    return { records: Number(r?.records ?? 0), bytes: Number(r?.bytes ?? 0) };
  }

  async serverInfo(): Promise<PostgresServerInfo> {
    const pool = this.live();
    try {
      const { rows } = await pool.query<{ v: string; sc: string; fs: string }>(
        "SELECT current_setting('server_version') AS v, current_setting('synchronous_commit') AS sc, current_setting('fsync') AS fs",
      );
      const r = rows[0]!;
      return { serverVersion: r.v, schema: this.schema, synchronousCommit: r.sc, fsync: r.fs };
    } catch (e) {
      throw pgToStorageError(e, 'serverInfo', this.secrets);
    }
  }

  async close(): Promise<void> {
    // the pool's end waits for every connection out: a snapshot's first
    for (const snap of [...this.snapshots]) await snap.close().catch(() => undefined);
    const pool = this.pool;
    this.pool = null;
    if (pool === null) return;
    try {
      await pool.end();
    } catch (e) {
      throw pgToStorageError(e, 'close', this.secrets);
    }
  }
}

// ---- opening ----------------------------------------------------------------------------------

interface ParsedUrl {
  connectionString: string;
  schema: string;
  secrets: string[];
}

function parseUrl(url: string, schemaOverride: string | undefined): ParsedUrl {
  if (typeof url !== 'string' || !/^postgres(ql)?:\/\//i.test(url)) {
    throw invalid('storage URL: expected postgres:// or postgresql://');
  }
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    // no cause: the URL parser's error carries the input, password included
    throw invalid('storage URL: not a valid postgres:// URL');
  }
  const secrets: string[] = [];
  if (u.password !== '') {
    secrets.push(u.password);
    try {
      secrets.push(decodeURIComponent(u.password));
    } catch {
      // a malformed escape: the raw form is already listed
    }
  }
  const fromUrl = u.searchParams.get('schema');
  u.searchParams.delete('schema');
  const schema = schemaOverride ?? fromUrl ?? DEFAULT_SCHEMA;
  if (!SCHEMA_NAME.test(schema)) throw invalid('storage URL: schema must match [a-z_][a-z0-9_]{0,62}');
  return { connectionString: u.toString(), schema, secrets };
}

function withSessionOption(connectionString: string, option: string): string {
  const u = new URL(connectionString);
  const before = u.searchParams.get('options');
  u.searchParams.set('options', before ? `${before} ${option}` : option);
  return u.toString();
}

function makePool(connectionString: string, opts: PostgresStoreOptions): pg.Pool {
  const config: pg.PoolConfig = {
    connectionString,
    max: opts.maxConnections ?? 10,
    connectionTimeoutMillis: opts.connectTimeoutMs ?? 10_000,
    idleTimeoutMillis: opts.idleTimeoutMs ?? 30_000,
    keepAlive: true,
    application_name: 'backup-key-vault',
  };
  if (opts.statementTimeoutMs !== undefined) config.statement_timeout = opts.statementTimeoutMs;
  const pool = new pg.Pool(config);
  // An idle connection that breaks (server restart, network) is dropped by the pool; the next
  // query reports the failure. Without a listener the 'error' event would end the process.
  pool.on('error', () => undefined);
  return pool;
}

/** Brings the schema to POSTGRES_SCHEMA_VERSION; returns the session's synchronous_commit. */
async function migrate(pool: pg.Pool, schema: string): Promise<string> {
  const S = quoteIdent(schema);
  const client = await pool.connect();
  let broken: Error | undefined; // set when the connection is unusable: the pool must not reuse it
  try {
    await client.query('BEGIN');
    await client.query('SELECT pg_advisory_xact_lock($1::bigint)', [lockKey(schema)]);
    const ns = await client.query<{ meta: string | null; other: string | null }>(
      `SELECT (SELECT c.relname FROM pg_class c WHERE c.relnamespace = n.oid AND c.relname = 'meta') AS meta,
              (SELECT c.relname FROM pg_class c WHERE c.relnamespace = n.oid AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
                 AND c.relname <> 'meta' LIMIT 1) AS other
       FROM pg_namespace n WHERE n.nspname = $1`,
      [schema],
    );
    let version = 0;
    const found = ns.rows[0];
    if (found === undefined) await client.query(`CREATE SCHEMA ${S}`);
    if (found?.meta) {
      const meta = await client.query<{ key: string; value: string }>(`SELECT key, value FROM ${S}.meta`);
      const m = new Map(meta.rows.map((r) => [r.key, r.value]));
      if (m.get('app') !== APP_ID) throw new StorageError(StorageCode.Corrupt, 'not a vault record store (meta.app)');
      const v = m.get('schema_version');
      version = v !== undefined && /^[0-9]{1,15}$/.test(v) ? Number(v) : NaN;
      if (!Number.isSafeInteger(version) || version < 1) {
        throw new StorageError(StorageCode.Corrupt, 'meta: schema_version missing or invalid');
      }
    } else {
      if (found?.other) throw new StorageError(StorageCode.Corrupt, 'not a vault record store (tables without meta)');
      await client.query(`CREATE TABLE ${S}.meta (key text PRIMARY KEY, value text NOT NULL)`);
      await client.query(`INSERT INTO ${S}.meta (key, value) VALUES ('app', $1)`, [APP_ID]);
    }
    if (version > POSTGRES_SCHEMA_VERSION) {
      throw new StorageError(
        StorageCode.SchemaTooNew,
        `store schema version ${version} is newer than this build's ${POSTGRES_SCHEMA_VERSION}`,
      );
    }
    if (version < POSTGRES_SCHEMA_VERSION) {
      for (let v = version; v < POSTGRES_SCHEMA_VERSION; v++) {
        for (const stmt of MIGRATIONS[v]!(S)) await client.query(stmt);
      }
      await client.query(
        `INSERT INTO ${S}.meta (key, value) VALUES ('schema_version', $1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value`,
        [String(POSTGRES_SCHEMA_VERSION)],
      );
    }
    const sc = await client.query<{ sc: string }>("SELECT current_setting('synchronous_commit') AS sc");
    await client.query('COMMIT');
    return sc.rows[0]!.sc;
  } catch (e) {
    await client.query('ROLLBACK').catch((x: unknown) => {
      broken = x instanceof Error ? x : new Error(String(x));
    });
    throw e;
  } finally {
    client.release(broken);
  }
}

/**
 * Opens the PostgreSQL store at `url` (see the header for its form), creating or migrating its
 * schema. Rejects with Io when the server can not be reached or refuses the login, Corrupt for
 * a schema that holds something else, SchemaTooNew for one written by a newer build.
 */
export async function openPostgresStore(url: string, opts: PostgresStoreOptions = {}): Promise<PostgresRecordStore> {
  const positive = (v: number | undefined, what: string) => {
    if (v !== undefined && (!Number.isSafeInteger(v) || v < 1)) throw invalid(`${what}: not a positive integer`);
  };
  positive(opts.maxConnections, 'maxConnections');
  positive(opts.connectTimeoutMs, 'connectTimeoutMs');
  positive(opts.idleTimeoutMs, 'idleTimeoutMs');
  positive(opts.statementTimeoutMs, 'statementTimeoutMs');
  const busyRetries = opts.busyRetries ?? 5;
  if (!Number.isSafeInteger(busyRetries) || busyRetries < 0) throw invalid('busyRetries: not a non-negative integer');
  const { connectionString, schema, secrets } = parseUrl(url, opts.schema);

  let pool = makePool(connectionString, opts);
  try {
    const syncCommit = await migrate(pool, schema);
    if (syncCommit === 'off') {
      // this server acknowledges commits before they are flushed: not for this store's sessions
      await pool.end();
      pool = makePool(withSessionOption(connectionString, '-c synchronous_commit=on'), opts);
      const { rows } = await pool.query<{ sc: string }>("SELECT current_setting('synchronous_commit') AS sc");
      if (rows[0]?.sc === 'off') throw new StorageError(StorageCode.Io, 'open: the server keeps synchronous_commit off');
    }
    return new PgRecordStore(pool, schema, secrets, busyRetries);
  } catch (e) {
    await pool.end().catch(() => undefined);
    throw pgToStorageError(e, 'open', secrets);
  }
}
