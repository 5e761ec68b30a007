/**
 * Record store conformance: one suite, run against every backend (SQLite always; PostgreSQL
 * when BKV_PG_URL names a server, see below), plus the storage URL parser, each backend's error
 * mapping and specifics (schema migrations among them), and a fast-check model test (random
 * applyBatch / compact sequences compared with an in-memory model after every step).
 *
 * PostgreSQL: BKV_PG_URL is an admin URL (allowed to CREATE DATABASE), e.g. from
 * `eval "$(scripts/ci-postgres.sh)"`. This file creates one uniquely named database, gives
 * every test its own schema in it, and drops the database at the end. Without BKV_PG_URL the
 * PostgreSQL tests are skipped with a message, except under CI=true, where they fail.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import fc from 'fast-check';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { decodeFields, encodeFields } from '../../../enclave/api/codec.ts';
import type { AuditEvent, StoredAuditEvent } from '../../../enclave/api/messages.ts';
import { AuditEventSchema, MAX_RECORD_ID, MAX_SEALED_RECORD } from '../../../enclave/api/messages.ts';
import { openStore, parseStoreUrl } from '../../../host/storage/index.ts';
import { openPostgresStore, pgToStorageError, POSTGRES_SCHEMA_VERSION } from '../../../host/storage/postgres.ts';
import type { PostgresRecordStore } from '../../../host/storage/postgres.ts';
import { openSqliteStore, SQLITE_MAX_WAL_CHECKPOINT_PAGES, SQLITE_SCHEMA_VERSION, SQLITE_WAL_CHECKPOINT_PAGES, toStorageError } from '../../../host/storage/sqlite.ts';
import { StorageCode, StorageError, isStorageError } from '../../../host/storage/types.ts';
import { storedAudit } from '../../../host/storage/check.ts';
import type { RecordStore, StoredRecord } from '../../../host/storage/types.ts';

// ---- backends -------------------------------------------------------------------------------

interface Backend {
  name: string;
  /** The schema version the backend's code writes. */
  schemaVersion: number;
  /** A new, empty location (a file path; for PostgreSQL a fresh schema or database URL). */
  fresh(): Promise<string>;
  open(location: string): Promise<RecordStore>;
  /** Overwrites the stored schema version (the store must be closed). */
  setSchemaVersion?(location: string, version: number): Promise<void>;
  /** Makes every audit insert with this seq fail inside the transaction (the store must be closed). */
  failAuditInsert?(location: string, seq: number): Promise<void>;
  /**
   * Overwrites the stored bytes with garbage: everything (`all`) or all but the header (`pages`).
   * PostgreSQL owns its files, so there the equivalent is garbage in the store's tables: `all`
   * ruins table meta, `pages` ruins every stored audit event and blob (the server's own page
   * checksum failures, XX001/XX002, map to Corrupt: see 'PostgreSQL specifics').
   */
  corrupt?(location: string, how: 'all' | 'pages'): Promise<void>;
}

const TMP = mkdtempSync(join(tmpdir(), 'bkv-storage-'));
afterAll(() => rmSync(TMP, { recursive: true, force: true }));
let fileNo = 0;

const sqliteBackend: Backend = {
  name: 'sqlite',
  schemaVersion: SQLITE_SCHEMA_VERSION,
  fresh: async () => join(TMP, `s${++fileNo}`, 'vault.db'),
  open: (path) => openSqliteStore(path),
  setSchemaVersion: async (path, version) => {
    const db = new Database(path);
    db.prepare("UPDATE meta SET value = ? WHERE key = 'schema_version'").run(version);
    db.close();
  },
  failAuditInsert: async (path, seq) => {
    const db = new Database(path);
    db.exec(
      `CREATE TRIGGER inject_failure BEFORE INSERT ON audit WHEN NEW.seq = ${seq}
       BEGIN SELECT RAISE(ABORT, 'injected failure'); END`,
    );
    db.close();
  },
  corrupt: async (path, how) => {
    for (const suffix of ['-wal', '-shm']) rmSync(path + suffix, { force: true });
    const size = statSync(path).size;
    const garbage = new Uint8Array(size).fill(0xa5);
    if (how === 'all') {
      writeFileSync(path, garbage);
    } else {
      const db = new Uint8Array(readFileSync(path));
      db.set(garbage.subarray(4096), 4096); // keep page 1 (header and schema), ruin the rest
      writeFileSync(path, db);
    }
  },
};

// PostgreSQL: an admin URL from the environment; one database for this file, a schema per test.
const PG_URL = process.env.BKV_PG_URL?.trim() || undefined;
const IN_CI = /^(1|true|yes)$/i.test(process.env.CI ?? '');
const PG_HOW = 'start a throwaway server with `eval "$(scripts/ci-postgres.sh)"` (sets BKV_PG_URL; stop it with scripts/ci-postgres-stop.sh "$BKV_PG_DIR")';
const PG_DB = `bkv_test_${process.pid}_${randomBytes(4).toString('hex')}`;
let pgDbReady: Promise<void> | undefined;
let schemaNo = 0;

/** `PG_URL` pointed at another database (and optionally a store schema). */
function pgUrl(database: string, schema?: string): string {
  const u = new URL(PG_URL!);
  u.pathname = `/${database}`;
  if (schema !== undefined) u.searchParams.set('schema', schema);
  return u.toString();
}

/** Runs SQL as the admin on the database of `location` (a store URL); `S` in the text is its schema. */
async function pgExec(location: string, sql: string | ((S: string) => string)): Promise<pg.QueryResult> {
  const u = new URL(location);
  const schema = u.searchParams.get('schema') ?? 'public';
  u.searchParams.delete('schema');
  const c = new pg.Client({ connectionString: u.toString() });
  await c.connect();
  try {
    return await c.query(typeof sql === 'string' ? sql : sql(`"${schema}"`));
  } finally {
    await c.end();
  }
}

async function pgCreateDatabase(name: string): Promise<void> {
  await pgExec(pgUrl('postgres'), `CREATE DATABASE "${name}"`);
}
async function pgDropDatabase(name: string): Promise<void> {
  await pgExec(pgUrl('postgres'), `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
}

if (PG_URL !== undefined) {
  afterAll(async () => {
    if (pgDbReady !== undefined) await pgDropDatabase(PG_DB);
  });
}

const pgBackend: Backend = {
  name: 'postgres',
  schemaVersion: POSTGRES_SCHEMA_VERSION,
  fresh: async () => {
    pgDbReady ??= pgCreateDatabase(PG_DB);
    await pgDbReady;
    return pgUrl(PG_DB, `s${++schemaNo}`);
  },
  open: (url) => openPostgresStore(url),
  setSchemaVersion: async (url, version) => {
    await pgExec(url, (S) => `UPDATE ${S}.meta SET value = '${version}' WHERE key = 'schema_version'`);
  },
  failAuditInsert: async (url, seq) => {
    await pgExec(
      url,
      (S) => `CREATE FUNCTION ${S}.inject_failure() RETURNS trigger LANGUAGE plpgsql AS $$
          BEGIN IF NEW.seq = ${seq} THEN RAISE EXCEPTION 'injected failure'; END IF; RETURN NEW; END $$;
        CREATE TRIGGER inject_failure BEFORE INSERT ON ${S}.audit FOR EACH ROW EXECUTE FUNCTION ${S}.inject_failure();`,
    );
  },
  corrupt: async (url, how) => {
    const garbage = `'\\x${'a5'.repeat(300)}'::bytea`;
    await pgExec(
      url,
      how === 'all'
        ? (S) => `UPDATE ${S}.meta SET value = repeat(chr(165), 40)`
        : (S) => `UPDATE ${S}.audit SET event = ${garbage}; UPDATE ${S}.records SET blob = ${garbage}`,
    );
  },
};

/** Every backend the suite runs against. */
const BACKENDS: Backend[] = [sqliteBackend, ...(PG_URL !== undefined ? [pgBackend] : [])];

if (PG_URL === undefined) {
  if (IN_CI) {
    describe('RecordStore conformance: postgres', () => {
      it('has a PostgreSQL server to test against (BKV_PG_URL)', () => {
        throw new Error(`CI=true but BKV_PG_URL is unset: the PostgreSQL backend must be tested in CI; ${PG_HOW}`);
      });
    });
  } else {
    console.warn(`[storage.test] PostgreSQL tests skipped: BKV_PG_URL is unset. To run them, ${PG_HOW}.`);
    describe.skip('RecordStore conformance: postgres (skipped: BKV_PG_URL is unset, see scripts/ci-postgres.sh)', () => {
      it('needs BKV_PG_URL', () => undefined);
    });
  }
}

// ---- helpers --------------------------------------------------------------------------------

const hex = (b: Uint8Array | null) => (b === null ? null : Buffer.from(b).toString('hex'));
const id = (n: number, len = 16) => {
  const be = new Uint8Array(4);
  new DataView(be.buffer).setUint32(0, n);
  const b = new Uint8Array(len);
  if (len >= 4) b.set(be);
  else b.set(be.subarray(4 - len));
  return b;
};
const blob = (s: string) => new TextEncoder().encode(s);
const TOMB = new Uint8Array(0);
const evObj = (seq: number, kind = 2): AuditEvent => ({
  seq,
  time: 1_700_000_000_000 + seq,
  nonce: new Uint8Array(16).fill(seq & 0xff),
  sealed: new Uint8Array(34).fill(kind),
  mac: new Uint8Array(32).fill((seq * 7) & 0xff),
});
/** A row as comparable plain data. */
const row = (r: StoredRecord | undefined) => (r === undefined ? undefined : { id: hex(r.recordId), blob: hex(r.blob), epoch: r.epoch });
/** An event as applyBatch takes it: its encoding and seq (enclave/api/messages.ts StoredAuditSchema). */
const ev = (seq: number, kind = 2): StoredAuditEvent => storedAudit(evObj(seq, kind));
/** An event as comparable plain data, whether decoded (auditEvents) or as applyBatch took it. */
const evPlain = (x: AuditEvent | StoredAuditEvent) => {
  const e = 'bytes' in x ? decodeFields(AuditEventSchema, x.bytes) : x;
  return { ...e, nonce: hex(e.nonce), sealed: hex(e.sealed), mac: hex(e.mac) };
};

/**
 * The statements of a backend's first migration (`MIGRATIONS[0]` in host/storage/sqlite.ts or
 * postgres.ts), read from its source: the version 1 layout, as that release created it (a released
 * migration is never edited). Postgres's `${S}` is replaced by `schema`.
 */
function v1Schema(backend: 'sqlite.ts' | 'postgres.ts', schema = ''): string {
  const src = readFileSync(new URL(`../../../host/storage/${backend}`, import.meta.url), 'utf8');
  const from = src.indexOf('const MIGRATIONS');
  // the first entry ends where the list's first entry-level closing bracket is
  const ends = ['\n  },', '\n  ],'].map((e) => src.indexOf(e, from)).filter((i) => i > from);
  const first = src.slice(from, Math.min(...ends));
  const statements = [...first.matchAll(/`([^`]*)`/g)].map((m) => m[1]!.replaceAll('${S}', schema));
  if (from < 0 || statements.length === 0) throw new Error(`no first migration in host/storage/${backend}`);
  return statements.join(';\n');
}

/**
 * The content of a version 1 store (which kept each record's previous blob), written by hand in
 * the migration tests: live rows with and without `prev`, tombstones with and without `prev`,
 * several partitions and id lengths, audit events.
 */
function v1Content() {
  const fill = (n: number, seed: number) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed * 7) & 0xff);
  const rows: { partition: number; recordId: Uint8Array; blob: Uint8Array; prev: Uint8Array | null; epoch: number }[] = [];
  for (let i = 0; i < 1500; i++) {
    const tomb = i % 50 === 0;
    rows.push({
      partition: 0,
      recordId: id(i * 2654435761),
      blob: tomb ? TOMB : fill(322, i),
      prev: i % 3 === 0 ? null : i % 7 === 0 ? TOMB : fill(322, i + 1),
      epoch: 1 + (i % 97),
    });
  }
  for (const [k, len] of [1, 7, 16, 33, MAX_RECORD_ID].entries()) {
    rows.push({ partition: 1, recordId: new Uint8Array(len).fill(0x40 + k), blob: fill(10 + k, k), prev: fill(5, k), epoch: 200 + k });
  }
  rows.push({ partition: 65535, recordId: id(7), blob: TOMB, prev: null, epoch: Number.MAX_SAFE_INTEGER });
  const audit = [
    ...Array.from({ length: 10 }, (_, q) => ({ partition: 0, event: evObj(q, 1 + (q % 7)) })),
    ...Array.from({ length: 3 }, (_, q) => ({ partition: 1, event: evObj(q) })),
  ];
  /** What a store must hold after the migration: per partition, rows in id order without `prev`. */
  const expected = new Map<number, ReturnType<typeof row>[]>();
  for (const r of [...rows].sort((a, c) => Buffer.compare(a.recordId, c.recordId))) {
    const list = expected.get(r.partition) ?? [];
    list.push({ id: hex(r.recordId), blob: hex(r.blob), epoch: r.epoch });
    expected.set(r.partition, list);
  }
  const live = rows.filter((r) => r.blob.length > 0);
  const stats = { records: live.length, bytes: rows.reduce((n, r) => n + r.recordId.length + r.blob.length, 0) };
  return { rows, audit, expected, stats };
}

async function scanAll(s: RecordStore, partition: number, chunk = 1000) {
  const rows: ReturnType<typeof row>[] = [];
  for await (const c of s.scan(partition, chunk)) for (const r of c) rows.push(row(r));
  return rows;
}

async function rejectsWith(p: Promise<unknown>, code: StorageCode): Promise<StorageError> {
  const e = await p.then(
    () => undefined,
    (x: unknown) => x,
  );
  expect(e, `expected a rejection with ${code}`).toBeInstanceOf(StorageError);
  expect((e as StorageError).code).toBe(code);
  return e as StorageError;
}

async function withStore<T>(b: Backend, fn: (s: RecordStore, loc: string) => Promise<T>): Promise<T> {
  const loc = await b.fresh();
  return withOpened(b.open(loc), (s) => fn(s, loc));
}

/** Runs `fn` on the store `opening` opens, and closes it. */
async function withOpened<T>(opening: Promise<RecordStore>, fn: (s: RecordStore) => Promise<T>): Promise<T> {
  const s = await opening;
  try {
    return await fn(s);
  } finally {
    await s.close();
  }
}

// ---- the conformance suite ------------------------------------------------------------------

/**
 * A child process opens the store (`module` of host/storage/, `opener(openArg)`, `openArg` a
 * JavaScript expression), rewrites the same 8 records in every batch (blob = the epoch) and
 * acknowledges each on stdout; it is SIGKILLed once `stopAt` batches are acknowledged. Returns
 * the highest batch acknowledged.
 */
async function killMidStream(module: string, opener: string, openArg: string, stopAt: number, env: Record<string, string> = {}): Promise<number> {
  const moduleUrl = new URL(`../../../host/storage/${module}`, import.meta.url).href;
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      '--input-type=module',
      '-e',
      `const { ${opener} } = await import(${JSON.stringify(moduleUrl)});
       const s = await ${opener}(${openArg});
       for (let e = 1; ; e++) {
         const writes = Array.from({ length: 8 }, (_, i) => ({ recordId: new Uint8Array([i + 1]), blob: new Uint8Array(200).fill(e % 251) }));
         const bytes = new Uint8Array(98); // an audit event's encoding: seq, time, nonce, sealed, mac
         new DataView(bytes.buffer).setBigUint64(0, BigInt(e));
         new DataView(bytes.buffer).setBigUint64(8, BigInt(e));
         const audit = [{ seq: e, bytes }];
         await s.applyBatch(0, e, writes, audit);
         process.stdout.write(e + '\\n');
       }`,
    ],
    { cwd: process.cwd(), stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } },
  );
  let acked = 0;
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  await new Promise<void>((resolve, reject) => {
    let buf = '';
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      const lines = buf.split('\n');
      buf = lines.pop()!;
      for (const l of lines) acked = Math.max(acked, Number(l));
      if (acked >= stopAt) child.kill('SIGKILL');
    });
    child.on('exit', () => (acked >= stopAt ? resolve() : reject(new Error(`child exited early: ${stderr}`))));
  });
  return acked;
}

/** After `killMidStream`: all 8 writes of one batch at or after the last acknowledged one (never a mix), and every audit event up to it. */
async function expectWholeLastBatch(s: RecordStore, acked: number): Promise<void> {
  const rows = await scanAll(s, 0);
  expect(rows.length).toBe(8);
  const epochs = new Set(rows.map((r) => r!.epoch));
  expect(epochs.size).toBe(1); // all 8 writes of the last batch, or none of them
  const last = [...epochs][0]!;
  expect(last).toBeGreaterThanOrEqual(acked);
  for (const r of rows) expect(r!.blob).toBe(Buffer.alloc(200, last % 251).toString('hex'));
  const audit = await s.auditEvents(0, 0, 100_000);
  expect(audit.map((e) => e.seq)).toEqual(Array.from({ length: last }, (_, i) => i + 1));
}

/** A store migrated from `v1Content` reads it back exactly, and then works as a version 2 store: compact reclaims the migrated tombstones. */
async function expectV1Content(s: RecordStore, content: ReturnType<typeof v1Content>): Promise<void> {
  for (const [p, want] of content.expected) expect(await scanAll(s, p, 100)).toEqual(want);
  const some = content.rows.filter((r) => r.partition === 0).slice(0, 40);
  const got = await s.getMany(0, some.map((r) => r.recordId));
  expect(got.map(row)).toEqual(some.map((r) => ({ id: hex(r.recordId), blob: hex(r.blob), epoch: r.epoch })));
  for (const p of [0, 1]) {
    const want = content.audit.filter((a) => a.partition === p).map((a) => evPlain(a.event));
    expect((await s.auditEvents(p, 0, 100)).map(evPlain)).toEqual(want);
  }
  expect(await s.stats()).toEqual(content.stats);
  await s.applyBatch(0, 1000, [{ recordId: id(1), blob: blob('after') }], [ev(10)]);
  await s.compact(0, 1000);
  expect((await scanAll(s, 0, 500)).filter((r) => r!.blob === '')).toEqual([]);
}

describe.each(BACKENDS)('RecordStore conformance: $name', (b) => {
  it('getMany answers aligned with the ids: the row of ids[i] at i, undefined for an absent id, [] for no ids', async () => {
    await withStore(b, async (s) => {
      expect(await s.getMany(0, [])).toEqual([]);
      expect(await s.getMany(0, [id(1)])).toEqual([undefined]);
      await s.applyBatch(0, 1, [{ recordId: id(1), blob: blob('one') }, { recordId: id(2, 3), blob: blob('two') }], []);
      const got = await s.getMany(0, [id(1), id(3), id(2, 3)]);
      expect(got.map(row)).toEqual([
        { id: hex(id(1)), blob: hex(blob('one')), epoch: 1 },
        undefined,
        { id: hex(id(2, 3)), blob: hex(blob('two')), epoch: 1 },
      ]);
      expect(Object.keys(got[0]!).sort()).toEqual(['blob', 'epoch', 'recordId']); // no previous blob
      for (const r of [got[0]!.recordId, got[0]!.blob]) {
        expect(r).toBeInstanceOf(Uint8Array);
        expect(Buffer.isBuffer(r)).toBe(false); // plain Uint8Array, not a Buffer
      }
      expect(await s.getMany(0, [])).toEqual([]);
    });
  });

  it('getMany keeps the order of the ids as given: absent ids, tombstones and an id given twice at their positions', async () => {
    await withStore(b, async (s) => {
      const stored = Array.from({ length: 20 }, (_, i) => id(i * 7919, 1 + (i % 16)));
      const writes = stored.map((recordId, i) => ({ recordId, blob: i % 5 === 0 ? TOMB : blob(`v${i}`) }));
      await s.applyBatch(0, 1, writes, []);
      await s.applyBatch(0, 2, [{ recordId: stored[3]!, blob: blob('v3 again') }], []);
      await s.applyBatch(1, 3, [{ recordId: id(100), blob: blob('other partition') }], []);
      const model = new Map(writes.map((w) => [hex(w.recordId), { blob: hex(w.blob), epoch: 1 }]));
      model.set(hex(stored[3]!), { blob: hex(blob('v3 again')), epoch: 2 });
      const absent = Array.from({ length: 6 }, (_, i) => id(100 + i));
      // every id, stored or not, plus stored[7] (live) and stored[10] (a tombstone) and absent[2] twice
      const all = [...stored, ...absent, stored[7]!, stored[10]!, absent[2]!];
      // a fixed shuffle: position k takes all[k * 11 mod 29] (11 and 29 coprime: each once)
      const ids = all.map((_, k) => all[(k * 11) % all.length]!);
      expect(ids.map(hex)).not.toEqual(ids.map(hex).sort()); // not in byte order by chance
      const want = ids.map((x) => {
        const m = model.get(hex(x));
        return m === undefined ? undefined : { id: hex(x), ...m };
      });
      expect(want.filter((w) => w === undefined)).toHaveLength(7);
      expect(want.filter((w) => w?.blob === '')).toHaveLength(5);
      expect((await s.getMany(0, ids)).map(row)).toEqual(want);
      expect((await s.getMany(0, [...ids].reverse())).map(row)).toEqual([...want].reverse());
      // the same id at every position
      expect((await s.getMany(0, [stored[1]!, stored[1]!, stored[1]!])).map(row)).toEqual(Array(3).fill({ id: hex(stored[1]!), blob: hex(blob('v1')), epoch: 1 }));
    });
  });

  it('getMany of more ids than one SQLite statement reads (150: three chunks) keeps them aligned across the chunks', async () => {
    await withStore(b, async (s) => {
      const stored = Array.from({ length: 100 }, (_, i) => id(i, 2 + (i % 3)));
      await s.applyBatch(0, 1, stored.map((recordId, i) => ({ recordId, blob: blob(`c${i}`) })), []);
      // stored and absent ids interleaved, and the first id again at the end (in another chunk)
      const ids = Array.from({ length: 149 }, (_, k) => (k % 3 === 2 ? id(1000 + k) : stored[(k * 37) % 100]!));
      ids.push(ids[0]!);
      const want = ids.map((x) => {
        const i = stored.findIndex((y) => hex(y) === hex(x));
        return i < 0 ? undefined : { id: hex(x), blob: hex(blob(`c${i}`)), epoch: 1 };
      });
      expect(want.filter((w) => w === undefined)).toHaveLength(49);
      expect((await s.getMany(0, ids)).map(row)).toEqual(want);
    });
  });

  it('applyBatch replaces the blob and sets the epoch, keeping nothing of the old blob', async () => {
    await withStore(b, async (s) => {
      await s.applyBatch(0, 1, [{ recordId: id(1), blob: blob('v1') }], []);
      await s.applyBatch(0, 2, [{ recordId: id(1), blob: blob('v2') }, { recordId: id(2), blob: blob('w1') }], []);
      expect((await s.getMany(0, [id(1), id(2)])).map(row)).toEqual([
        { id: hex(id(1)), blob: hex(blob('v2')), epoch: 2 },
        { id: hex(id(2)), blob: hex(blob('w1')), epoch: 2 },
      ]);
      await s.applyBatch(0, 3, [{ recordId: id(1), blob: blob('v3') }], []);
      expect((await s.getMany(0, [id(1), id(2)])).map(row)).toEqual([
        { id: hex(id(1)), blob: hex(blob('v3')), epoch: 3 },
        { id: hex(id(2)), blob: hex(blob('w1')), epoch: 2 },
      ]);
      expect(await s.stats()).toEqual({ records: 2, bytes: 16 + 2 + 16 + 2 }); // v1 and v2 are gone
      // an empty batch is a valid no-op
      await s.applyBatch(0, 4, [], []);
      // the same epoch again (the enclave issues an epoch again after an Abort) simply overwrites
      await s.applyBatch(0, 3, [{ recordId: id(1), blob: blob('v3bis') }], []);
      expect((await s.getMany(0, [id(1)])).map(row)).toEqual([{ id: hex(id(1)), blob: hex(blob('v3bis')), epoch: 3 }]);
    });
  });

  it('an empty blob is a tombstone: the row stays with its epoch', async () => {
    await withStore(b, async (s) => {
      await s.applyBatch(0, 1, [{ recordId: id(1), blob: blob('v1') }], []);
      await s.applyBatch(0, 2, [{ recordId: id(1), blob: TOMB }, { recordId: id(9), blob: TOMB }], []);
      expect((await s.getMany(0, [id(1), id(9)])).map(row)).toEqual([
        { id: hex(id(1)), blob: '', epoch: 2 },
        { id: hex(id(9)), blob: '', epoch: 2 },
      ]);
      expect((await scanAll(s, 0)).length).toBe(2);
      expect(await s.stats()).toEqual({ records: 0, bytes: 16 + 16 });
      // written again: a live record once more
      await s.applyBatch(0, 3, [{ recordId: id(1), blob: blob('v3') }], []);
      expect((await s.getMany(0, [id(1)])).map(row)).toEqual([{ id: hex(id(1)), blob: hex(blob('v3')), epoch: 3 }]);
      expect((await s.stats()).records).toBe(1);
    });
  });

  it('scan returns every row exactly once, in chunks, per partition', async () => {
    await withStore(b, async (s) => {
      const sizes = new Map([[0, 25], [1, 1], [2, 0], [65535, 7]]);
      let epoch = 0;
      for (const [p, n] of sizes) {
        for (let i = 0; i < n; i += 10) {
          const writes = [];
          for (let j = i; j < Math.min(n, i + 10); j++) writes.push({ recordId: id(j * 7919 + p, 4 + (j % 5) * 8), blob: blob(`${p}:${j}`) });
          await s.applyBatch(p, ++epoch, writes, []);
        }
      }
      await s.applyBatch(0, ++epoch, [{ recordId: id(3 * 7919, 20), blob: TOMB }], []); // tombstones are scanned too
      const all = new Set<string>();
      for (const [p, n] of sizes) {
        const expected = (await scanAll(s, p, 10_000)).map((r) => r!.id!);
        expect(expected.length).toBe(n + (p === 0 ? 1 : 0));
        expect([...expected].sort()).toEqual(expected); // record id order
        for (const chunk of [1, 3, 7, 25, 100]) {
          const seen: string[] = [];
          for await (const c of s.scan(p, chunk)) {
            expect(c.length).toBeGreaterThan(0);
            expect(c.length).toBeLessThanOrEqual(chunk);
            for (const r of c) seen.push(hex(r.recordId)!);
          }
          expect(seen).toEqual(expected);
        }
        for (const k of expected) all.add(`${p}/${k}`);
      }
      expect(all.size).toBe(25 + 1 + 1 + 7);
      expect(await scanAll(s, 3)).toEqual([]);
    });
  });

  it('a scan in progress tolerates writes between chunks', async () => {
    await withStore(b, async (s) => {
      await s.applyBatch(0, 1, Array.from({ length: 10 }, (_, i) => ({ recordId: id(i), blob: blob(`a${i}`) })), []);
      const seen: string[] = [];
      let k = 0;
      for await (const c of s.scan(0, 3)) {
        for (const r of c) seen.push(hex(r.recordId)!);
        await s.applyBatch(0, 2 + k, [{ recordId: id(k), blob: blob(`b${k}`) }], []); // rewrite an already-seen row
        k++;
      }
      expect(seen).toEqual(Array.from({ length: 10 }, (_, i) => hex(id(i))));
    });
  });

  it('a snapshot is one state: its epoch and rows stay as they were while batches go on, until closed', async () => {
    await withStore(b, async (s) => {
      await s.applyBatch(0, 1, Array.from({ length: 10 }, (_, i) => ({ recordId: id(i), blob: blob(`a${i}`) })), []);
      await s.applyBatch(1, 4, [{ recordId: id(1), blob: blob('other') }], []);
      const want = await scanAll(s, 0);
      const snap = await s.snapshot(0);
      expect(snap.appliedEpoch).toBe(1);
      const seen: ReturnType<typeof row>[] = [];
      let k = 0;
      for await (const c of snap.scan(3)) {
        expect(c.length).toBeLessThanOrEqual(3);
        for (const r of c) seen.push(row(r));
        // between chunks: a seen row and an unseen one rewritten, one deleted, one added
        await s.applyBatch(0, 2 + k, [{ recordId: id(k), blob: blob(`b${k}`) }, { recordId: id(9 - k), blob: TOMB }, { recordId: id(100 + k), blob: blob('new') }], []);
        k++;
      }
      expect(k).toBe(4);
      expect(seen).toEqual(want);
      // the store itself moved on, and a snapshot taken now sees that
      expect(await s.appliedEpoch(0)).toBe(5);
      const now = await s.snapshot(0);
      try {
        expect(now.appliedEpoch).toBe(5);
        const rows: ReturnType<typeof row>[] = [];
        for await (const c of now.scan(1000)) for (const r of c) rows.push(row(r));
        expect(rows).toEqual(await scanAll(s, 0));
        expect(rows).not.toEqual(want);
      } finally {
        await now.close();
      }
      // a second scan of the same snapshot: the same rows
      const again: ReturnType<typeof row>[] = [];
      for await (const c of snap.scan(7)) for (const r of c) again.push(row(r));
      expect(again).toEqual(want);
      await rejectsWith(snap.scan(0)[Symbol.asyncIterator]().next(), StorageCode.InvalidArgument);
      await snap.close();
      await snap.close(); // harmless twice
      await rejectsWith(snap.scan(3)[Symbol.asyncIterator]().next(), StorageCode.Closed);
      // a partition with no batch: no epoch, no rows; a bad partition refused
      const empty = await s.snapshot(7);
      expect(empty.appliedEpoch).toBeNull();
      for await (const c of empty.scan(10)) expect(c).toEqual([]);
      await empty.close();
      await rejectsWith(s.snapshot(-1), StorageCode.InvalidArgument);
    });
  });

  it('closing the store closes its open snapshots; a closed store gives none', async () => {
    const s = await b.open(await b.fresh());
    await s.applyBatch(0, 1, [{ recordId: id(1), blob: blob('v1') }], []);
    const snap = await s.snapshot(0);
    await s.close(); // does not wait for the snapshot's reader
    await rejectsWith(snap.scan(3)[Symbol.asyncIterator]().next(), StorageCode.Closed);
    await snap.close();
    await rejectsWith(s.snapshot(0), StorageCode.Closed);
  });

  it('partitions are isolated', async () => {
    await withStore(b, async (s) => {
      await s.applyBatch(1, 1, [{ recordId: id(1), blob: blob('p1') }], [ev(0), ev(1)]);
      await s.applyBatch(2, 1, [{ recordId: id(1), blob: blob('p2') }], [ev(0)]);
      await s.applyBatch(2, 2, [{ recordId: id(1), blob: TOMB }], [ev(1), ev(2)]);
      expect(row((await s.getMany(1, [id(1)]))[0])).toMatchObject({ blob: hex(blob('p1')), epoch: 1 });
      expect(row((await s.getMany(2, [id(1)]))[0])).toMatchObject({ blob: '', epoch: 2 });
      expect(await s.getMany(0, [id(1)])).toEqual([undefined]);
      await s.compact(2, 10);
      expect(row((await s.getMany(1, [id(1)]))[0])?.blob).toBe(hex(blob('p1')));
      expect(await s.getMany(2, [id(1)])).toEqual([undefined]);
      expect((await s.auditEvents(1, 0, 100)).map((e) => e.seq)).toEqual([0, 1]);
      expect((await s.auditEvents(2, 0, 100)).map((e) => e.seq)).toEqual([0, 1, 2]);
      expect(await s.auditEvents(0, 0, 100)).toEqual([]);
    });
  });

  it('audit events append and read back in seq order, paged', async () => {
    await withStore(b, async (s) => {
      const events = Array.from({ length: 40 }, (_, i) => ev(i, 1 + (i % 7)));
      await s.applyBatch(0, 1, [{ recordId: id(1), blob: blob('x') }], events.slice(0, 3));
      await s.applyBatch(0, 2, [], [events[4]!, events[3]!]); // order within a batch does not matter
      await s.applyBatch(0, 3, [], events.slice(5));
      const back = await s.auditEvents(0, 0, 1000);
      expect(back.map(evPlain)).toEqual(events.map(evPlain));
      expect(back[0]!.sealed).toBeInstanceOf(Uint8Array);
      const page: AuditEvent[] = [];
      for (let from = 0; ; ) {
        const p = await s.auditEvents(0, from, 6);
        if (p.length === 0) break;
        expect(p.length).toBeLessThanOrEqual(6);
        page.push(...p);
        from = p[p.length - 1]!.seq + 1;
      }
      expect(page.map((e) => e.seq)).toEqual(events.map((e) => e.seq));
      expect((await s.auditEvents(0, 38, 10)).map((e) => e.seq)).toEqual([38, 39]);
      expect(await s.auditEvents(0, 0, 0)).toEqual([]);
    });
  });

  it('audit events a batch issues again replace those of a batch that never committed', async () => {
    await withStore(b, async (s) => {
      await s.applyBatch(0, 1, [], [ev(0), ev(1)]);
      await s.applyBatch(0, 2, [], [ev(2, 2), ev(3, 2), ev(4, 2)]); // persisted, never committed by the enclave
      await s.applyBatch(0, 2, [], [ev(2, 4)]); // the enclave issues seq 2 again
      const back = await s.auditEvents(0, 0, 100);
      expect(back.map((e) => [e.seq, e.sealed[0]])).toEqual([[0, 2], [1, 2], [2, 4]]);
    });
  });

  it('compact removes old tombstones only, leaving live rows and newer tombstones alone', async () => {
    await withStore(b, async (s) => {
      await s.applyBatch(0, 1, [1, 2, 3, 4, 5].map((i) => ({ recordId: id(i), blob: blob(`a${i}`) })), []);
      await s.applyBatch(0, 2, [{ recordId: id(1), blob: blob('b1') }, { recordId: id(2), blob: TOMB }], []);
      await s.applyBatch(0, 3, [{ recordId: id(3), blob: blob('c3') }, { recordId: id(4), blob: TOMB }], []);
      await s.applyBatch(1, 1, [{ recordId: id(1), blob: TOMB }], []);
      await s.compact(0, 3);
      expect(await scanAll(s, 0)).toEqual([
        { id: hex(id(1)), blob: hex(blob('b1')), epoch: 2 },
        { id: hex(id(3)), blob: hex(blob('c3')), epoch: 3 },
        { id: hex(id(4)), blob: '', epoch: 3 },
        { id: hex(id(5)), blob: hex(blob('a5')), epoch: 1 },
      ]);
      expect((await scanAll(s, 1)).length).toBe(1); // other partitions untouched
      await s.compact(0, 4);
      expect(await scanAll(s, 0)).toEqual([
        { id: hex(id(1)), blob: hex(blob('b1')), epoch: 2 },
        { id: hex(id(3)), blob: hex(blob('c3')), epoch: 3 },
        { id: hex(id(5)), blob: hex(blob('a5')), epoch: 1 },
      ]);
      await s.compact(0, Number.MAX_SAFE_INTEGER); // live rows stay whatever their epoch
      expect((await scanAll(s, 0)).length).toBe(3);
      await s.compact(1, 0); // nothing is older than epoch 0
      expect((await scanAll(s, 1)).length).toBe(1);
      await s.compact(1, 2);
      expect(await scanAll(s, 1)).toEqual([]);
      await rejectsWith(s.compact(0, -1), StorageCode.InvalidArgument);
      await rejectsWith(s.compact(70000, 1), StorageCode.InvalidArgument);
    });
  });

  it('stats counts live records and the bytes of ids and blobs held', async () => {
    await withStore(b, async (s) => {
      expect(await s.stats()).toEqual({ records: 0, bytes: 0 });
      await s.applyBatch(0, 1, [{ recordId: id(1), blob: blob('12345') }, { recordId: id(2), blob: blob('123') }], []);
      expect(await s.stats()).toEqual({ records: 2, bytes: 16 + 5 + 16 + 3 });
      await s.applyBatch(3, 2, [{ recordId: id(1), blob: blob('1') }], []);
      await s.applyBatch(0, 2, [{ recordId: id(1), blob: TOMB }], []);
      expect(await s.stats()).toEqual({ records: 2, bytes: 16 + 0 + 16 + 3 + 16 + 1 });
      await s.applyBatch(0, 3, [{ recordId: id(2), blob: blob('1234567') }], []); // a rewrite counts the new blob only
      expect(await s.stats()).toEqual({ records: 2, bytes: 16 + 0 + 16 + 7 + 16 + 1 });
      await s.compact(0, 3);
      expect(await s.stats()).toEqual({ records: 2, bytes: 16 + 7 + 16 + 1 });
    });
  });

  it('every batch records its epoch as the applied epoch of its partition, an empty batch too, and it survives a reopen', async () => {
    const loc = await b.fresh();
    let s = await b.open(loc);
    try {
      expect(await s.appliedEpoch(0)).toBeNull();
      await s.applyBatch(0, 1, [{ recordId: id(1), blob: blob('v1') }], [ev(0)]);
      expect(await s.appliedEpoch(0)).toBe(1);
      // No writes and no events (a batch of fake-record LoginStarts): still applied, and recorded.
      await s.applyBatch(0, 2, [], []);
      expect(await s.appliedEpoch(0)).toBe(2);
      await s.applyBatch(3, 2 ** 40, [], []);
      expect(await s.appliedEpoch(3)).toBe(2 ** 40);
      expect(await s.appliedEpoch(0)).toBe(2); // partitions are separate
      expect(await s.appliedEpoch(1)).toBeNull();
      // A refused batch changes nothing, its epoch included.
      await rejectsWith(s.applyBatch(0, 9, [{ recordId: id(1), blob: blob('a') }, { recordId: id(1), blob: blob('b') }], []), StorageCode.InvalidArgument);
      expect(await s.appliedEpoch(0)).toBe(2);
      await rejectsWith(s.appliedEpoch(-1), StorageCode.InvalidArgument);
      await rejectsWith(s.appliedEpoch(0x10000), StorageCode.InvalidArgument);
      // The stored rows are untouched by the empty batch.
      expect(await scanAll(s, 0)).toEqual([{ id: hex(id(1)), blob: hex(blob('v1')), epoch: 1 }]);
    } finally {
      await s.close();
    }
    await rejectsWith(s.appliedEpoch(0), StorageCode.Closed);
    s = await b.open(loc);
    try {
      expect([await s.appliedEpoch(0), await s.appliedEpoch(3)]).toEqual([2, 2 ** 40]);
    } finally {
      await s.close();
    }
  });

  it('everything survives close and reopen; a closed store refuses calls', async () => {
    const loc = await b.fresh();
    let s = await b.open(loc);
    await s.applyBatch(0, 1, [{ recordId: id(1), blob: blob('v1') }, { recordId: id(2), blob: blob('w1') }], [ev(0)]);
    await s.applyBatch(0, 2, [{ recordId: id(1), blob: blob('v2') }, { recordId: id(2), blob: TOMB }], [ev(1)]);
    await s.applyBatch(5, 9, [{ recordId: id(3), blob: blob('z') }], [ev(0)]);
    const before = [await scanAll(s, 0), await scanAll(s, 5), await s.auditEvents(0, 0, 10), await s.stats()];
    await s.close();
    await s.close(); // harmless twice
    await rejectsWith(s.getMany(0, [id(1)]), StorageCode.Closed);
    await rejectsWith(s.applyBatch(0, 3, [], []), StorageCode.Closed);
    await rejectsWith(s.compact(0, 1), StorageCode.Closed);
    await rejectsWith(s.auditEvents(0, 0, 1), StorageCode.Closed);
    await rejectsWith(s.stats(), StorageCode.Closed);
    await rejectsWith(s.scan(0, 10)[Symbol.asyncIterator]().next(), StorageCode.Closed);
    s = await b.open(loc);
    try {
      expect([await scanAll(s, 0), await scanAll(s, 5), await s.auditEvents(0, 0, 10), await s.stats()]).toEqual(before);
      expect(await scanAll(s, 0)).toEqual([
        { id: hex(id(1)), blob: hex(blob('v2')), epoch: 2 },
        { id: hex(id(2)), blob: '', epoch: 2 },
      ]);
    } finally {
      await s.close();
    }
  });

  it('an invalid value in a batch is refused and nothing of the batch is applied', async () => {
    await withStore(b, async (s) => {
      await s.applyBatch(0, 1, [{ recordId: id(1), blob: blob('v1') }], [ev(0)]);
      const snapshot = async () => [await scanAll(s, 0), (await s.auditEvents(0, 0, 100)).map(evPlain)];
      const before = await snapshot();
      const good = (i: number) => ({ recordId: id(i), blob: blob(`n${i}`) });
      const bad: [string, Parameters<RecordStore['applyBatch']>][] = [
        ['a string blob mid-batch', [0, 2, [good(1), good(2), { recordId: id(3), blob: 'oops' as unknown as Uint8Array }, good(4)], [ev(1)]]],
        ['a missing blob', [0, 2, [good(1), { recordId: id(3) } as never], []]],
        ['an oversized blob', [0, 2, [good(1), { recordId: id(3), blob: new Uint8Array(MAX_SEALED_RECORD + 1) }], []]],
        ['an empty record id', [0, 2, [good(1), { recordId: new Uint8Array(0), blob: blob('x') }], []]],
        ['an oversized record id', [0, 2, [good(1), { recordId: new Uint8Array(MAX_RECORD_ID + 1), blob: blob('x') }], []]],
        ['a record id twice', [0, 2, [good(1), good(2), good(1)], []]],
        ['a malformed audit event', [0, 2, [good(1), good(2)], [ev(1), { ...ev(2), bytes: new Uint8Array(5) }]]],
        ['an audit event that does not start with its seq', [0, 2, [good(1), good(2)], [ev(1), { seq: 3, bytes: ev(2).bytes }]]],
        ['an audit event without bytes', [0, 2, [good(1)], [{ seq: 1 } as never]]],
        ['an audit seq out of range', [0, 2, [good(1)], [{ ...ev(1), seq: -1 }]]],
        ['an audit seq twice', [0, 2, [good(1)], [ev(1), ev(1)]]],
        ['a negative epoch', [0, -1, [good(1)], []]],
        ['a fractional epoch', [0, 1.5, [good(1)], []]],
        ['a partition out of range', [70000, 2, [good(1)], []]],
      ];
      for (const [what, args] of bad) {
        await rejectsWith(s.applyBatch(...args), StorageCode.InvalidArgument).catch((e) => {
          throw new Error(`${what}: ${String(e)}`);
        });
        expect(await snapshot(), what).toEqual(before);
      }
      await s.applyBatch(0, 2, [good(1)], [ev(1)]); // still usable
      expect((await scanAll(s, 0))[0]).toMatchObject({ blob: hex(blob('n1')), epoch: 2 });
    });
  });

  it('a record id twice in one batch is found by its bytes; ids that only share a prefix are different ids', async () => {
    await withStore(b, async (s) => {
      const w = (bytes: number[], v: string) => ({ recordId: Uint8Array.from(bytes), blob: blob(v) });
      const twice = [w([1, 2], 'a'), w([9], 'b'), { recordId: Buffer.from([1, 2]), blob: blob('c') }];
      const e = await rejectsWith(s.applyBatch(0, 1, twice, []), StorageCode.InvalidArgument);
      expect(e.message).toBe('writes: a record id appears twice in one batch');
      expect(await scanAll(s, 0)).toEqual([]);
      await s.applyBatch(0, 1, [w([1, 2], 'a'), w([1], 'b'), w([1, 2, 0], 'c'), w([0, 1, 2], 'd')], []);
      expect((await scanAll(s, 0)).map((r) => r!.id)).toEqual(['000102', '01', '0102', '010200']);
    });
  });

  it.skipIf(!b.failAuditInsert)('a failure inside the transaction leaves nothing half-applied', async () => {
    const loc = await b.fresh();
    let s = await b.open(loc);
    await s.applyBatch(0, 1, [{ recordId: id(1), blob: blob('v1') }, { recordId: id(2), blob: blob('w1') }], [ev(0)]);
    await s.close();
    await b.failAuditInsert!(loc, 3);
    s = await b.open(loc);
    try {
      const before = [await scanAll(s, 0), (await s.auditEvents(0, 0, 100)).map(evPlain), await s.stats()];
      // the record writes and the first audit insert run before the failing insert
      const e = await s
        .applyBatch(0, 2, [{ recordId: id(1), blob: blob('v2') }, { recordId: id(2), blob: TOMB }, { recordId: id(3), blob: blob('x') }], [ev(1), ev(2), ev(3), ev(4)])
        .then(() => undefined, (x: unknown) => x);
      expect(e).toBeInstanceOf(StorageError);
      expect([await scanAll(s, 0), (await s.auditEvents(0, 0, 100)).map(evPlain), await s.stats()]).toEqual(before);
      await s.applyBatch(0, 2, [{ recordId: id(1), blob: blob('v2') }], [ev(1), ev(2)]); // still usable
      expect((await s.auditEvents(0, 0, 100)).map((x) => x.seq)).toEqual([0, 1, 2]);
    } finally {
      await s.close();
    }
  });

  it.skipIf(!b.setSchemaVersion)('a store written by a newer schema version is refused', async () => {
    const loc = await b.fresh();
    const s = await b.open(loc);
    await s.applyBatch(0, 1, [{ recordId: id(1), blob: blob('v1') }], []);
    await s.close();
    await b.setSchemaVersion!(loc, 99);
    const e = await rejectsWith(b.open(loc), StorageCode.SchemaTooNew);
    expect(e.message).toMatch(/99/);
    await b.setSchemaVersion!(loc, b.schemaVersion); // and the current version opens again
    const again = await b.open(loc);
    expect(row((await again.getMany(0, [id(1)]))[0])?.blob).toBe(hex(blob('v1')));
    await again.close();
  });

  it.skipIf(!b.corrupt)('a store overwritten with garbage gives StorageError Corrupt, not a crash', async () => {
    const loc = await b.fresh();
    const s = await b.open(loc);
    await s.applyBatch(0, 1, [{ recordId: id(1), blob: blob('v1') }], [ev(0)]);
    await s.close();
    await b.corrupt!(loc, 'all');
    await rejectsWith(b.open(loc), StorageCode.Corrupt);
  });

  it.skipIf(!b.corrupt)('damaged stored bytes give StorageError Corrupt at open or on first use', async () => {
    const loc = await b.fresh();
    const s = await b.open(loc);
    for (let e = 1; e <= 20; e++) {
      await s.applyBatch(0, e, Array.from({ length: 10 }, (_, i) => ({ recordId: id(e * 100 + i), blob: new Uint8Array(300).fill(e) })), [ev(e)]);
    }
    await s.close();
    await b.corrupt!(loc, 'pages');
    const outcome = await (async () => {
      const t = await b.open(loc);
      try {
        await scanAll(t, 0);
        await t.auditEvents(0, 0, 100);
      } finally {
        await t.close();
      }
    })().then(
      () => undefined,
      (x: unknown) => x,
    );
    expect(outcome).toBeInstanceOf(StorageError);
    expect((outcome as StorageError).code).toBe(StorageCode.Corrupt);
  });

  it('large batches and extreme values round-trip byte for byte', async () => {
    await withStore(b, async (s) => {
      const rnd = (n: number, seed: number) => Uint8Array.from({ length: n }, (_, i) => (i * 131 + seed * 17 + (i >> 3)) & 0xff);
      const writes = Array.from({ length: 300 }, (_, i) => ({
        recordId: i === 0 ? new Uint8Array(MAX_RECORD_ID).fill(0xff) : i === 1 ? new Uint8Array([0]) : rnd(1 + (i % MAX_RECORD_ID), i),
        blob: i === 2 ? TOMB : rnd(i === 3 ? MAX_SEALED_RECORD : i * 7, i + 1000),
      }));
      const seen = new Set<string>();
      const unique = writes.filter((w) => !seen.has(hex(w.recordId)!) && seen.add(hex(w.recordId)!));
      const top = Number.MAX_SAFE_INTEGER;
      const far = [storedAudit({ ...evObj(top - 1), time: top }), storedAudit({ ...evObj(top), time: 0 })];
      await s.applyBatch(65535, top - 1, unique, far);
      await s.applyBatch(65535, top, unique.slice(0, 5).map((w) => ({ recordId: w.recordId, blob: blob('again') })), []);
      const m = await s.getMany(65535, unique.map((w) => w.recordId));
      expect(m.length).toBe(unique.length);
      for (const [i, w] of unique.entries()) {
        const got = m[i]!;
        expect(hex(got.recordId)).toBe(hex(w.recordId));
        if (i < 5) expect([hex(got.blob), got.epoch]).toEqual([hex(blob('again')), top]);
        else expect([hex(got.blob), got.epoch]).toEqual([hex(w.blob), top - 1]);
      }
      const scanned = await scanAll(s, 65535, 64);
      expect(scanned.map((r) => r!.id)).toEqual(unique.map((w) => hex(w.recordId)!).sort());
      expect((await s.auditEvents(65535, top - 1, 10)).map(evPlain)).toEqual(far.map(evPlain));
    });
  });

  // ---- model test ---------------------------------------------------------------------------

  it('random applyBatch / compact sequences match an in-memory model', async () => {
    const PARTS = [0, 1, 2];
    const IDS = [[1], [1, 0], [2], [0xff], [0, 0, 0, 1], [0x80, 1]].map((a) => new Uint8Array(a));
    type Row = { blob: string; epoch: number };
    const opArb = fc.oneof(
      {
        weight: 5,
        arbitrary: fc.record({
          t: fc.constant('apply' as const),
          p: fc.constantFrom(...PARTS),
          epoch: fc.nat(12),
          writes: fc.uniqueArray(fc.tuple(fc.nat(IDS.length - 1), fc.uint8Array({ maxLength: 6 })), {
            maxLength: 4,
            selector: (w) => w[0],
          }),
          audit: fc.nat(3),
          rewind: fc.nat(3),
        }),
      },
      { weight: 1, arbitrary: fc.record({ t: fc.constant('compact' as const), p: fc.constantFrom(...PARTS), before: fc.nat(14) }) },
    );
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { maxLength: 24 }), fc.integer({ min: 1, max: 4 }), async (ops, chunk) => {
        await withStore(b, async (s) => {
          const model = new Map<number, Map<string, Row>>(PARTS.map((p) => [p, new Map()]));
          const audit = new Map<number, Map<number, StoredAuditEvent>>(PARTS.map((p) => [p, new Map()]));
          const nextSeq = new Map<number, number>(PARTS.map((p) => [p, 0]));
          for (const op of ops) {
            const m = model.get(op.p)!;
            if (op.t === 'apply') {
              const writes = op.writes.map(([i, bl]) => ({ recordId: IDS[i]!, blob: bl }));
              const start = Math.max(0, nextSeq.get(op.p)! - op.rewind);
              const events = Array.from({ length: op.audit }, (_, k) => ev(start + k, 1 + ((op.epoch + k) % 7)));
              await s.applyBatch(op.p, op.epoch, writes, events);
              for (const w of writes) m.set(hex(w.recordId)!, { blob: hex(w.blob)!, epoch: op.epoch });
              if (events.length > 0) {
                const a = audit.get(op.p)!;
                for (const q of [...a.keys()]) if (q >= start) a.delete(q);
                for (const e of events) a.set(e.seq, e);
                nextSeq.set(op.p, start + events.length);
              }
            } else {
              await s.compact(op.p, op.before);
              for (const [k, r] of [...m]) if (r.epoch < op.before && r.blob === '') m.delete(k);
            }
            // compare everything after every step
            let records = 0;
            let bytes = 0;
            for (const p of PARTS) {
              const want = [...model.get(p)!].sort(([a], [c]) => (a < c ? -1 : a > c ? 1 : 0)).map(([k, r]) => ({ id: k, ...r }));
              expect(await scanAll(s, p, chunk)).toEqual(want);
              const byId = model.get(p)!;
              expect((await s.getMany(p, IDS)).map(row)).toEqual(IDS.map((x) => (byId.has(hex(x)!) ? { id: hex(x), ...byId.get(hex(x)!)! } : undefined)));
              const wantAudit = [...audit.get(p)!.values()].sort((x, y) => x.seq - y.seq).map(evPlain);
              expect((await s.auditEvents(p, 0, 1000)).map(evPlain)).toEqual(wantAudit);
              for (const r of want) {
                if (r.blob !== '') records++;
                bytes += (r.id.length + r.blob.length) / 2;
              }
            }
            expect(await s.stats()).toEqual({ records, bytes });
          }
        });
      }),
      { numRuns: 60 },
    );
  });
});

// ---- backend-independent pieces -------------------------------------------------------------

describe('storage URL and openStore', () => {
  it('parses the accepted forms', () => {
    expect(parseStoreUrl(undefined, '/data')).toEqual({ backend: 'sqlite', path: join('/data', 'vault.db') });
    expect(parseStoreUrl('', '/data')).toEqual({ backend: 'sqlite', path: join('/data', 'vault.db') });
    expect(parseStoreUrl('sqlite:rel/v.db', '/data')).toEqual({ backend: 'sqlite', path: 'rel/v.db' });
    expect(parseStoreUrl('sqlite:///abs/v.db', '/data')).toEqual({ backend: 'sqlite', path: '/abs/v.db' });
    expect(parseStoreUrl('sqlite:/abs/v.db', '/data')).toEqual({ backend: 'sqlite', path: '/abs/v.db' });
    expect(parseStoreUrl('/srv/vault/x.db', '/data')).toEqual({ backend: 'sqlite', path: '/srv/vault/x.db' });
    expect(parseStoreUrl('postgres://u:p@h/db', '/data')).toEqual({ backend: 'postgres', url: 'postgres://u:p@h/db' });
    expect(parseStoreUrl('postgresql://h/db', '/data').backend).toBe('postgres');
    expect(() => parseStoreUrl('mysql://h/db', '/data')).toThrow(StorageError);
    expect(() => parseStoreUrl('sqlite:', '/data')).toThrow(StorageError);
  });

  it('opens SQLite at DATA/vault.db by default, and routes postgres:// to PostgreSQL without echoing the URL', async () => {
    const dir = join(TMP, 'default-data', 'nested');
    const s = await openStore(undefined, dir);
    expect(s.kind).toBe('sqlite');
    await s.applyBatch(0, 1, [{ recordId: id(1), blob: blob('v') }], []);
    await s.close();
    expect(existsSync(join(dir, 'vault.db'))).toBe(true);
    const t = await openStore(`sqlite:${join(dir, 'vault.db')}`, '/nonexistent');
    expect(row((await t.getMany(0, [id(1)]))[0])?.blob).toBe(hex(blob('v')));
    await t.close();
    // nothing listens on that port: connection refused, reported without the password
    const port = await closedPort();
    for (const scheme of ['postgres', 'postgresql']) {
      const e = await rejectsWith(openStore(`${scheme}://user:s3cret-pw@127.0.0.1:${port}/vault`, dir), StorageCode.Io);
      expect(e.message).not.toMatch(/s3cret/);
      expect(e.message).not.toMatch(/user:/);
    }
  });
});

describe('SQLite specifics', () => {
  it('maps SQLite and system error codes to StorageError codes', () => {
    const err = (code: string) => Object.assign(new Error('x'), { code });
    const cases: [string, StorageCode][] = [
      ['SQLITE_FULL', StorageCode.Full],
      ['ENOSPC', StorageCode.Full],
      ['SQLITE_CORRUPT', StorageCode.Corrupt],
      ['SQLITE_CORRUPT_INDEX', StorageCode.Corrupt],
      ['SQLITE_NOTADB', StorageCode.Corrupt],
      ['SQLITE_IOERR', StorageCode.Io],
      ['SQLITE_IOERR_FSYNC', StorageCode.Io],
      ['SQLITE_CANTOPEN', StorageCode.Io],
      ['EACCES', StorageCode.Io],
      ['SQLITE_BUSY', StorageCode.Busy],
      ['SQLITE_BUSY_SNAPSHOT', StorageCode.Busy],
      ['SQLITE_LOCKED', StorageCode.Busy],
      ['SQLITE_CONSTRAINT_TRIGGER', StorageCode.Internal],
    ];
    for (const [code, want] of cases) {
      const e = toStorageError(err(code), 'op');
      expect([code, e.code]).toEqual([code, want]);
      expect(e.detail).toBe(code);
    }
    expect(toStorageError(new Error('plain'), 'op').code).toBe(StorageCode.Internal);
  });

  it('a throwaway (:memory:) store gives one state as a snapshot too (read whole: it has no file for a second connection)', async () => {
    const s = await openSqliteStore(':memory:');
    try {
      await s.applyBatch(0, 3, [{ recordId: id(1), blob: blob('v1') }, { recordId: id(2), blob: blob('w1') }], []);
      const snap = await s.snapshot(0);
      await s.applyBatch(0, 4, [{ recordId: id(1), blob: TOMB }, { recordId: id(3), blob: blob('x') }], []);
      expect(snap.appliedEpoch).toBe(3);
      const rows: ReturnType<typeof row>[] = [];
      for await (const c of snap.scan(1)) for (const r of c) rows.push(row(r));
      expect(rows).toEqual([
        { id: hex(id(1)), blob: hex(blob('v1')), epoch: 3 },
        { id: hex(id(2)), blob: hex(blob('w1')), epoch: 3 },
      ]);
      await snap.close();
      await rejectsWith(snap.scan(1)[Symbol.asyncIterator]().next(), StorageCode.Closed);
    } finally {
      await s.close();
    }
  });

  it('an empty batch is written to the WAL (and so synced) like any other', async () => {
    const path = join(TMP, 'empty-batch', 'vault.db');
    mkdirSync(join(TMP, 'empty-batch'), { recursive: true });
    const s = await openSqliteStore(path);
    try {
      await s.applyBatch(0, 1, [{ recordId: id(1), blob: blob('v1') }], []);
      const wal = () => statSync(`${path}-wal`).size;
      const before = wal();
      await s.applyBatch(0, 2, [], []);
      expect(wal()).toBeGreaterThan(before);
      const raw = new Database(path, { readonly: true });
      try {
        expect(raw.prepare("SELECT value FROM meta WHERE key = 'epoch/0'").get()).toEqual({ value: 2 });
      } finally {
        raw.close();
      }
    } finally {
      await s.close();
    }
  });

  it('checkpoints the WAL at walCheckpointPages pages (default SQLITE_WAL_CHECKPOINT_PAGES, not SQLite\'s 1,000)', async () => {
    const FRAME = 4096 + 24; // a WAL frame: one 4096-byte page and its header
    // About 2,000 frames: 250 batches of 8 new records of 1,800 bytes (two to a page, so each
    // batch writes at least 4 new pages, their parent pages and the meta row's page).
    const fill = async (path: string, opts: Parameters<typeof openSqliteStore>[1]) => {
      const s = await openSqliteStore(path, opts);
      let most = 0;
      try {
        for (let e = 1; e <= 250; e++) {
          const writes = Array.from({ length: 8 }, (_, i) => ({ recordId: id(e * 8 + i), blob: new Uint8Array(1800).fill(e & 0xff) }));
          await s.applyBatch(0, e, writes, []);
          most = Math.max(most, statSync(`${path}-wal`).size);
        }
        expect((await s.getMany(0, [id(8), id(250 * 8 + 7)])).map((r) => r?.blob[0])).toEqual([1, 250]);
      } finally {
        await s.close();
      }
      return most / FRAME;
    };
    // Checkpointed at 32 pages, the WAL never holds much more than that and one batch.
    expect(await fill(join(TMP, 'wal-32', 'vault.db'), { walCheckpointPages: 32 })).toBeLessThan(32 + 40);
    // At the default it holds every frame of the run: well past SQLite's own threshold of 1,000.
    expect(SQLITE_WAL_CHECKPOINT_PAGES).toBe(10_000);
    expect(await fill(join(TMP, 'wal-default', 'vault.db'), {})).toBeGreaterThan(1_500);
    for (const bad of [0, -1, 1.5, SQLITE_MAX_WAL_CHECKPOINT_PAGES + 1, Number.NaN]) {
      await rejectsWith(openSqliteStore(join(TMP, 'wal-bad', 'vault.db'), { walCheckpointPages: bad }), StorageCode.InvalidArgument);
    }
    expect(existsSync(join(TMP, 'wal-bad', 'vault.db'))).toBe(false);
  });

  it('uses WAL with synchronous = FULL and records the schema version', async () => {
    const path = join(TMP, 'pragmas', 'vault.db');
    const s = await openSqliteStore(path);
    const raw = new Database(path, { readonly: true });
    try {
      expect(raw.pragma('journal_mode', { simple: true })).toBe('wal');
      expect(raw.prepare("SELECT value FROM meta WHERE key = 'schema_version'").get()).toEqual({ value: SQLITE_SCHEMA_VERSION });
    } finally {
      raw.close();
      await s.close();
    }
  });

  it('a full database (size cap) fails with Full and applies nothing of the batch', async () => {
    const path = join(TMP, 'full', 'vault.db');
    const s = await openSqliteStore(path, { maxSizeBytes: 64 * 1024 });
    try {
      let epoch = 0;
      let failure: unknown;
      for (; epoch < 1000 && failure === undefined; ) {
        epoch++;
        const writes = Array.from({ length: 8 }, (_, i) => ({ recordId: id(epoch * 10 + i), blob: new Uint8Array(1000).fill(epoch & 0xff) }));
        const before = await s.stats();
        failure = await s.applyBatch(0, epoch, writes, [ev(epoch)]).then(() => undefined, (x: unknown) => x);
        if (failure !== undefined) expect(await s.stats()).toEqual(before);
      }
      expect(isStorageError(failure, StorageCode.Full)).toBe(true);
      expect((await s.auditEvents(0, 0, 10_000)).length).toBe(epoch - 1);
      expect((await s.getMany(0, [id(10)]))[0]).toBeDefined(); // reads still work
    } finally {
      await s.close();
    }
  });

  it('a process killed mid-stream keeps every acknowledged batch, and each batch whole or not at all', async () => {
    const path = join(TMP, 'crash', 'vault.db');
    const acked = await killMidStream('sqlite.ts', 'openSqliteStore', JSON.stringify(path), 150);
    await withOpened(openSqliteStore(path), (s) => expectWholeLastBatch(s, acked));
  });

  it('migrates a version 1 store in place: every row kept, prev and its index gone, the freed pages given back', async () => {
    const dir = join(TMP, 'v1-sqlite');
    mkdirSync(dir, { recursive: true });
    const path = join(dir, 'vault.db');
    const content = v1Content();
    const raw = new Database(path);
    raw.pragma('journal_mode = WAL');
    raw.exec(`
      CREATE TABLE meta (key TEXT PRIMARY KEY, value ANY NOT NULL) STRICT;
      INSERT INTO meta (key, value) VALUES ('app', 'backup-key-vault/records'), ('schema_version', 1);
      ${v1Schema('sqlite.ts')};
    `);
    const insert = raw.prepare('INSERT INTO records (partition, record_id, blob, prev, epoch) VALUES (?, ?, ?, ?, ?)');
    const insertAudit = raw.prepare('INSERT INTO audit (partition, seq, event) VALUES (?, ?, ?)');
    raw.transaction(() => {
      for (const r of content.rows) insert.run(r.partition, r.recordId, r.blob, r.prev, r.epoch);
      for (const a of content.audit) insertAudit.run(a.partition, a.event.seq, encodeFields(AuditEventSchema, a.event));
    })();
    raw.close();
    const sizeBefore = statSync(path).size;

    // a migration that can not finish (no room for the rebuilt table) leaves version 1 as it was
    await rejectsWith(openSqliteStore(path, { maxSizeBytes: sizeBefore + 8192 }), StorageCode.Full);
    const still = new Database(path, { readonly: true });
    try {
      expect(still.prepare("SELECT value FROM meta WHERE key = 'schema_version'").get()).toEqual({ value: 1 });
      expect(still.prepare('SELECT count(*) AS n, count(prev) AS p FROM records').get()).toEqual({
        n: content.rows.length,
        p: content.rows.filter((r) => r.prev !== null).length,
      });
    } finally {
      still.close();
    }

    await withOpened(openSqliteStore(path), (s) => expectV1Content(s, content));

    const db = new Database(path, { readonly: true });
    try {
      expect(db.prepare("SELECT value FROM meta WHERE key = 'schema_version'").get()).toEqual({ value: SQLITE_SCHEMA_VERSION });
      expect(SQLITE_SCHEMA_VERSION).toBe(2);
      expect((db.pragma('table_info(records)') as { name: string }[]).map((c) => c.name)).toEqual(['partition', 'record_id', 'blob', 'epoch']);
      expect(db.prepare("SELECT sql FROM sqlite_schema WHERE name = 'records'").pluck().get()).toMatch(/STRICT, WITHOUT ROWID\s*$/);
      const indexes = db.prepare("SELECT name, sql FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'records' AND sql IS NOT NULL").all();
      expect(indexes).toEqual([{ name: 'records_tombstones', sql: expect.stringMatching(/WHERE length\(blob\) = 0$/) }]);
      const plan = db.prepare('EXPLAIN QUERY PLAN DELETE FROM records WHERE partition = ? AND epoch < ? AND length(blob) = 0').all(0, 1) as { detail: string }[];
      expect(plan.map((r) => r.detail).join(' ')).toMatch(/records_tombstones/);
      expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
      expect(db.pragma('freelist_count', { simple: true })).toBe(0);
    } finally {
      db.close();
    }
    // the previous blobs no longer take room in the file
    expect(statSync(path).size).toBeLessThan(sizeBefore * 0.7);
    expect(existsSync(`${path}-wal`) ? statSync(`${path}-wal`).size : 0).toBe(0);
  });

  it('a new store is created without prev, on 4096-byte pages', async () => {
    const path = join(TMP, 'fresh-v2', 'vault.db');
    await (await openSqliteStore(path)).close();
    const db = new Database(path, { readonly: true });
    try {
      expect((db.pragma('table_info(records)') as { name: string }[]).map((c) => c.name)).toEqual(['partition', 'record_id', 'blob', 'epoch']);
      expect(db.pragma('page_size', { simple: true })).toBe(4096);
    } finally {
      db.close();
    }
  });

  it('a file that is an unrelated SQLite database is refused as Corrupt', async () => {
    const path = join(TMP, 'other', 'other.db');
    await openSqliteStore(join(TMP, 'other', 'placeholder.db')).then((s) => s.close()); // creates the directory
    const raw = new Database(path);
    raw.exec('CREATE TABLE something (x)');
    raw.close();
    const e = await rejectsWith(openSqliteStore(path), StorageCode.Corrupt);
    expect(e.message).toMatch(/not a vault record store/);
    expect(readdirSync(join(TMP, 'other'))).toContain('other.db');
  });
});

// ---- PostgreSQL ---------------------------------------------------------------------------------

/** A loopback port nobody listens on (just released). */
async function closedPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

describe('PostgreSQL error mapping (no server needed)', () => {
  it('maps SQLSTATEs and connection failures to StorageError codes', () => {
    const db = (code: string) => Object.assign(new pg.DatabaseError('x', 1, 'error'), { code });
    const sys = (code: string) => Object.assign(new Error(`connect ${code} 127.0.0.1:1`), { code });
    const cases: [unknown, StorageCode, string | undefined][] = [
      [db('53100'), StorageCode.Full, '53100'],
      [db('XX001'), StorageCode.Corrupt, 'XX001'],
      [db('XX002'), StorageCode.Corrupt, 'XX002'],
      [db('40001'), StorageCode.Busy, '40001'],
      [db('40P01'), StorageCode.Busy, '40P01'],
      [db('55P03'), StorageCode.Busy, '55P03'],
      [db('57014'), StorageCode.Busy, '57014'],
      [db('53300'), StorageCode.Busy, '53300'],
      [db('08006'), StorageCode.Io, '08006'],
      [db('57P01'), StorageCode.Io, '57P01'],
      [db('57P03'), StorageCode.Io, '57P03'],
      [db('58030'), StorageCode.Io, '58030'],
      [db('28P01'), StorageCode.Io, '28P01'],
      [db('3D000'), StorageCode.Io, '3D000'],
      [db('25006'), StorageCode.Io, '25006'],
      [db('53200'), StorageCode.Io, '53200'],
      [db('23505'), StorageCode.Internal, '23505'],
      [db('42P01'), StorageCode.Internal, '42P01'],
      [db('XX000'), StorageCode.Internal, 'XX000'],
      [db('EPIPE'), StorageCode.Internal, 'EPIPE'], // a SQLSTATE-shaped server code is never taken for errno
      [sys('ECONNREFUSED'), StorageCode.Io, 'ECONNREFUSED'],
      [sys('ETIMEDOUT'), StorageCode.Io, 'ETIMEDOUT'],
      [sys('ENOTFOUND'), StorageCode.Io, 'ENOTFOUND'],
      [new AggregateError([sys('ECONNREFUSED'), sys('ECONNREFUSED')], ''), StorageCode.Io, 'ECONNREFUSED'],
      [new Error('timeout exceeded when trying to connect'), StorageCode.Io, undefined],
      [new Error('Connection terminated unexpectedly'), StorageCode.Io, undefined],
      [new Error('Cannot use a pool after calling end on the pool'), StorageCode.Closed, undefined],
      [new Error('plain'), StorageCode.Internal, undefined],
    ];
    for (const [err, want, detail] of cases) {
      const e = pgToStorageError(err, 'op');
      expect([String(err), e.code, e.detail]).toEqual([String(err), want, detail]);
    }
    expect(pgToStorageError(new AggregateError([sys('ECONNREFUSED')], ''), 'open').message).toMatch(/ECONNREFUSED/);
  });

  it('never puts the password in a message', async () => {
    const e = pgToStorageError(new Error('login as u with hunter2%21 / hunter2! failed'), 'open', ['hunter2%21', 'hunter2!']);
    expect(e.message).not.toMatch(/hunter2/);
    const bad = [
      'postgres://u:hunter2@[::1/vault', // not a URL
      'postgres://u:hunter2@127.0.0.1/vault?schema=Not-A-Name',
    ];
    for (const url of bad) {
      const err = await rejectsWith(openPostgresStore(url), StorageCode.InvalidArgument);
      expect(err.message).not.toMatch(/hunter2/);
      expect(String(err.cause ?? '')).not.toMatch(/hunter2/);
    }
    const port = await closedPort();
    const refused = await rejectsWith(openPostgresStore(`postgres://u:hunter2@127.0.0.1:${port}/vault`), StorageCode.Io);
    expect(refused.message).not.toMatch(/hunter2/);
    expect(refused.message).toMatch(/ECONNREFUSED/);
  });

  it('a server that accepts but never answers times out with Io', async () => {
    const sockets = new Set<import('node:net').Socket>();
    const srv = createServer((sock) => sockets.add(sock)); // says nothing, ever
    await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
    const port = (srv.address() as { port: number }).port;
    try {
      const started = Date.now();
      const e = await rejectsWith(openPostgresStore(`postgres://u:hunter2@127.0.0.1:${port}/vault`, { connectTimeoutMs: 300 }), StorageCode.Io);
      expect(e.message).not.toMatch(/hunter2/);
      expect(Date.now() - started).toBeLessThan(10_000);
    } finally {
      for (const sock of sockets) sock.destroy();
      await new Promise<void>((resolve) => srv.close(() => resolve()));
    }
  });
});

describe.skipIf(PG_URL === undefined)('PostgreSQL specifics', () => {
  /** A database of its own for one test, dropped after it. */
  async function withDatabase<T>(suffix: string, fn: (database: string) => Promise<T>): Promise<T> {
    const name = `${PG_DB}_${suffix}`;
    await pgCreateDatabase(name);
    try {
      return await fn(name);
    } finally {
      await pgDropDatabase(name);
    }
  }

  it('openStore routes postgres:// here; the schema version is recorded; sessions commit synchronously', async () => {
    const loc = await pgBackend.fresh();
    const s = (await openStore(loc, '/nonexistent')) as PostgresRecordStore;
    try {
      expect(s.kind).toBe('postgres');
      const info = await s.serverInfo();
      expect(info.synchronousCommit).toBe('on');
      expect(info.schema).toMatch(/^s[0-9]+$/);
      const meta = await pgExec(loc, (S) => `SELECT key, value FROM ${S}.meta ORDER BY key`);
      expect(meta.rows).toEqual([
        { key: 'app', value: 'backup-key-vault/records' },
        { key: 'schema_version', value: String(POSTGRES_SCHEMA_VERSION) },
      ]);
    } finally {
      await s.close();
    }
  });

  it('a server whose default is synchronous_commit = off still gets durable commits', async () => {
    await withDatabase('sc', async (database) => {
      await pgExec(pgUrl('postgres'), `ALTER DATABASE "${database}" SET synchronous_commit = off`);
      const s = await openPostgresStore(pgUrl(database));
      try {
        expect((await s.serverInfo()).synchronousCommit).toBe('on');
        await s.applyBatch(0, 1, [{ recordId: id(1), blob: blob('v') }], [ev(0)]);
        expect(row((await s.getMany(0, [id(1)]))[0])?.blob).toBe(hex(blob('v')));
      } finally {
        await s.close();
      }
    });
  });

  it('stores opened concurrently on one fresh database all come up (migration race)', async () => {
    await withDatabase('race', async (database) => {
      for (const schema of [undefined, 'race_a', 'race_b']) {
        const url = pgUrl(database, schema);
        const stores = await Promise.all(Array.from({ length: 6 }, () => openPostgresStore(url)));
        try {
          await Promise.all(stores.map((s, i) => s.applyBatch(i, 1, [{ recordId: id(i), blob: blob(`from ${i}`) }], [ev(0)])));
          for (const s of stores) {
            for (let i = 0; i < stores.length; i++) {
              expect(row((await s.getMany(i, [id(i)]))[0])?.blob).toBe(hex(blob(`from ${i}`)));
            }
          }
          const meta = await pgExec(url, (S) => `SELECT value FROM ${S}.meta WHERE key = 'schema_version'`);
          expect(meta.rows).toEqual([{ value: String(POSTGRES_SCHEMA_VERSION) }]);
        } finally {
          await Promise.all(stores.map((s) => s.close()));
        }
      }
    });
  });

  it('a schema that holds other tables is refused as Corrupt and left alone', async () => {
    const loc = await pgBackend.fresh();
    await pgExec(loc, (S) => `CREATE SCHEMA ${S}; CREATE TABLE ${S}.something (x int)`);
    const e = await rejectsWith(openPostgresStore(loc), StorageCode.Corrupt);
    expect(e.message).toMatch(/not a vault record store/);
    const left = await pgExec(loc, (S) => `SELECT count(*)::int AS n FROM pg_tables WHERE schemaname = '${S.slice(1, -1)}'`);
    expect(left.rows).toEqual([{ n: 1 }]);
  });

  it('serialization failures and deadlocks are retried inside applyBatch, applying the batch once', async () => {
    const loc = await pgBackend.fresh();
    const s = await openPostgresStore(loc, { busyRetries: 3 });
    try {
      await s.applyBatch(0, 1, [{ recordId: id(1), blob: blob('v1') }], [ev(0)]);
      // the first `failures` row writes fail with 40001, then 40P01, alternating
      await pgExec(
        loc,
        (S) => `CREATE SEQUENCE ${S}.attempts;
          CREATE TABLE ${S}.failures (n bigint); INSERT INTO ${S}.failures VALUES (2);
          CREATE FUNCTION ${S}.inject_busy() RETURNS trigger LANGUAGE plpgsql AS $$
          DECLARE k bigint := nextval('${S}.attempts');
          BEGIN
            IF k <= (SELECT n FROM ${S}.failures) THEN
              RAISE EXCEPTION 'injected busy' USING ERRCODE = CASE WHEN k % 2 = 1 THEN '40001' ELSE '40P01' END;
            END IF;
            RETURN NEW;
          END $$;
          CREATE TRIGGER inject_busy BEFORE INSERT ON ${S}.records FOR EACH ROW EXECUTE FUNCTION ${S}.inject_busy();`,
      );
      await s.applyBatch(0, 2, [{ recordId: id(1), blob: blob('v2') }, { recordId: id(2), blob: blob('w2') }], [ev(1)]);
      expect(await scanAll(s, 0)).toEqual([
        { id: hex(id(1)), blob: hex(blob('v2')), epoch: 2 },
        { id: hex(id(2)), blob: hex(blob('w2')), epoch: 2 },
      ]);
      // more failures than retries: Busy, and nothing applied
      await pgExec(loc, (S) => `SELECT setval('${S}.attempts', 1, false); UPDATE ${S}.failures SET n = 100`);
      const before = [await scanAll(s, 0), (await s.auditEvents(0, 0, 10)).map(evPlain)];
      const e = await rejectsWith(s.applyBatch(0, 3, [{ recordId: id(1), blob: blob('v3') }], [ev(2)]), StorageCode.Busy);
      expect(['40001', '40P01']).toContain(e.detail);
      expect([await scanAll(s, 0), (await s.auditEvents(0, 0, 10)).map(evPlain)]).toEqual(before);
      const used = await pgExec(loc, (S) => `SELECT last_value::int AS n FROM ${S}.attempts`);
      expect(used.rows).toEqual([{ n: 4 }]); // one try and three retries
    } finally {
      await s.close();
    }
  });

  it('a batch stuck behind a lock past statementTimeoutMs fails with Busy and applies nothing', async () => {
    const loc = await pgBackend.fresh();
    const s = await openPostgresStore(loc, { statementTimeoutMs: 200 });
    const u = new URL(loc);
    const schema = u.searchParams.get('schema')!;
    u.searchParams.delete('schema');
    const holder = new pg.Client({ connectionString: u.toString() });
    await holder.connect();
    try {
      await s.applyBatch(0, 1, [{ recordId: id(1), blob: blob('v1') }], [ev(0)]);
      await holder.query('BEGIN');
      await holder.query(`SELECT 1 FROM "${schema}".records WHERE record_id = $1 FOR UPDATE`, [Buffer.from(id(1))]);
      const e = await rejectsWith(s.applyBatch(0, 2, [{ recordId: id(2), blob: blob('w2') }, { recordId: id(1), blob: blob('v2') }], [ev(1)]), StorageCode.Busy);
      expect(e.detail).toBe('57014');
      await holder.query('ROLLBACK');
      expect(await scanAll(s, 0)).toEqual([{ id: hex(id(1)), blob: hex(blob('v1')), epoch: 1 }]);
      expect((await s.auditEvents(0, 0, 10)).map((x) => x.seq)).toEqual([0]);
    } finally {
      await holder.end();
      await s.close();
    }
  });

  it('concurrent batches over the same records serialize whole (no deadlock, no mix)', async () => {
    await withStore(pgBackend, async (s) => {
      const ids = Array.from({ length: 8 }, (_, i) => id(i));
      await s.applyBatch(0, 1, ids.map((r) => ({ recordId: r, blob: blob('init') })), []);
      await Promise.all(
        Array.from({ length: 24 }, (_, k) => {
          const order = [...ids.slice(k % 8), ...ids.slice(0, k % 8)]; // each batch in another order
          if (k % 2) order.reverse();
          return s.applyBatch(0, 10 + k, order.map((r) => ({ recordId: r, blob: blob(`batch ${k}`) })), []);
        }),
      );
      const rows = await scanAll(s, 0);
      expect(new Set(rows.map((r) => r!.epoch)).size).toBe(1);
      expect(new Set(rows.map((r) => r!.blob)).size).toBe(1);
    });
  });

  it('a client killed mid-stream leaves every acknowledged batch, and each batch whole or not at all', async () => {
    const loc = await pgBackend.fresh();
    await (await openPostgresStore(loc)).close(); // schema ready before the child starts
    const acked = await killMidStream('postgres.ts', 'openPostgresStore', 'process.env.BKV_CHILD_URL', 100, { BKV_CHILD_URL: loc });
    await withOpened(openPostgresStore(loc), (s) => expectWholeLastBatch(s, acked));
  });

  it('migrates a version 1 schema in place: every row kept, prev and its index gone, the table rewritten', async () => {
    const loc = await pgBackend.fresh();
    const content = v1Content();
    const bx = (b: Uint8Array | null) => (b === null ? 'NULL' : `'\\x${Buffer.from(b).toString('hex')}'::bytea`);
    await pgExec(
      loc,
      (S) => `CREATE SCHEMA ${S};
        CREATE TABLE ${S}.meta (key text PRIMARY KEY, value text NOT NULL);
        INSERT INTO ${S}.meta (key, value) VALUES ('app', 'backup-key-vault/records'), ('schema_version', '1');
        ${v1Schema('postgres.ts', S)};
        INSERT INTO ${S}.records (partition, record_id, blob, prev, epoch) VALUES
          ${content.rows.map((r) => `(${r.partition}, ${bx(r.recordId)}, ${bx(r.blob)}, ${bx(r.prev)}, ${r.epoch})`).join(',\n')};
        INSERT INTO ${S}.audit (partition, seq, event) VALUES
          ${content.audit.map((a) => `(${a.partition}, ${a.event.seq}, ${bx(encodeFields(AuditEventSchema, a.event))})`).join(',\n')};`,
    );
    const sizeOf = async () =>
      Number((await pgExec(loc, (S) => `SELECT pg_total_relation_size('${S}.records') AS n`)).rows[0].n);
    const sizeBefore = await sizeOf();

    await withOpened(openPostgresStore(loc), (s) => expectV1Content(s, content));

    const meta = await pgExec(loc, (S) => `SELECT value FROM ${S}.meta WHERE key = 'schema_version'`);
    expect(meta.rows).toEqual([{ value: String(POSTGRES_SCHEMA_VERSION) }]);
    expect(POSTGRES_SCHEMA_VERSION).toBe(2);
    const schema = new URL(loc).searchParams.get('schema')!;
    const cols = await pgExec(
      loc,
      `SELECT a.attname AS name, a.attstorage AS storage FROM pg_attribute a
       WHERE a.attrelid = '"${schema}".records'::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`,
    );
    expect(cols.rows).toEqual([
      { name: 'partition', storage: 'p' },
      { name: 'record_id', storage: 'x' },
      { name: 'blob', storage: 'e' },
      { name: 'epoch', storage: 'p' },
    ]);
    // rebuilt, not DROP COLUMN: no dropped attribute left behind
    const dropped = await pgExec(loc, `SELECT count(*)::int AS n FROM pg_attribute WHERE attrelid = '"${schema}".records'::regclass AND attisdropped`);
    expect(dropped.rows).toEqual([{ n: 0 }]);
    const rel = await pgExec(loc, `SELECT reloptions FROM pg_class WHERE oid = '"${schema}".records'::regclass`);
    expect(rel.rows[0].reloptions).toEqual(['toast_tuple_target=8160']);
    // the primary key only: an index reading blob or epoch would make every update non-HOT
    const idx = await pgExec(loc, `SELECT indexname AS name, indexdef AS def FROM pg_indexes WHERE schemaname = '${schema}' AND tablename = 'records'`);
    expect(idx.rows).toEqual([{ name: 'records_pkey', def: expect.stringMatching(/UNIQUE INDEX records_pkey .*\(partition, record_id\)$/) }]);
    expect(await sizeOf()).toBeLessThan(sizeBefore * 0.7);
  });

  it('a new schema is created without prev and with the primary key as its only index', async () => {
    const loc = await pgBackend.fresh();
    await (await openPostgresStore(loc)).close();
    const schema = new URL(loc).searchParams.get('schema')!;
    const cols = await pgExec(
      loc,
      `SELECT attname AS name FROM pg_attribute WHERE attrelid = '"${schema}".records'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`,
    );
    expect(cols.rows.map((r: { name: string }) => r.name)).toEqual(['partition', 'record_id', 'blob', 'epoch']);
    const idx = await pgExec(loc, `SELECT indexname AS name FROM pg_indexes WHERE schemaname = '${schema}' AND tablename = 'records'`);
    expect(idx.rows).toEqual([{ name: 'records_pkey' }]);
  });

  it('a store closed while a scan is in progress ends it with Closed', async () => {
    const loc = await pgBackend.fresh();
    const s = await openPostgresStore(loc);
    await s.applyBatch(0, 1, Array.from({ length: 10 }, (_, i) => ({ recordId: id(i), blob: blob(`a${i}`) })), []);
    const it = s.scan(0, 3)[Symbol.asyncIterator]();
    expect((await it.next()).done).toBe(false);
    await s.close();
    await rejectsWith(it.next(), StorageCode.Closed);
  });
});
