/**
 * Record store benchmark: SQLite against PostgreSQL, side by side in one run. Per backend:
 * applyBatch of 1 write (+1 audit event), applyBatch of 32 writes (+32 audit events), getMany
 * of 32 ids, and applyBatch of 32 from 8 partitions at once (the host runs one engine per
 * partition); ops/s and the PostgreSQL / SQLite ratio. Both backends are durable (SQLite WAL
 * with synchronous = FULL; PostgreSQL with synchronous_commit = on, fsync as the server has it).
 *
 * Then SQLite's WAL checkpoint threshold, the default (host/storage/sqlite.ts
 * SQLITE_WAL_CHECKPOINT_PAGES) against SQLite's own 1,000 pages: CPU per record of a vault's
 * batch (getMany + applyBatch of 64 scattered records with their audit events), sqliteCheckpointCpu.
 *
 * Then a copy of the rows for another fleet member from a snapshot while a writer's batches go
 * on: the writer's rate with and without it, the copy's rate, SQLite's WAL at its largest
 * (copyWriterSqlite, copyWriterPostgres).
 *
 * Then (not with --quick) login through the enclave path (bench/lib/enclave-rig.ts, all
 * partitions, concurrency 128) with each store, interleaved: pgVsSqlite.
 *
 * Run: eval "$(scripts/ci-postgres.sh)"; npx tsx bench/storage.ts [seconds-per-case] [rounds] [--quick] [--json FILE]
 *      (without BKV_PG_URL only SQLite runs; bench/run.ts starts a throwaway cluster when it
 *      can). BKV_PG_URL must be allowed to CREATE DATABASE: the benchmark works in a database of
 *      its own and drops it at the end.
 *
 * Caveats: each figure is the median over interleaved rounds; a loopback server shares the
 * machine's 2 cores with the client, and both backends fsync to the same disk, so the figures
 * say as much about this machine's fsync latency as about the code.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import Database from 'better-sqlite3';
import pg from 'pg';
import { storedAudit } from '../host/storage/check.ts';
import { openPostgresStore } from '../host/storage/postgres.ts';
import type { PostgresRecordStore } from '../host/storage/postgres.ts';
import { openSqliteStore, SQLITE_WAL_CHECKPOINT_PAGES } from '../host/storage/sqlite.ts';
import type { RecordStore } from '../host/storage/types.ts';
import { availableParallelism } from 'node:os';
import { args, emit, machine, progress, round } from './lib/common.ts';
import type { BenchResult } from './lib/common.ts';
import { median, middleBy } from './lib/stats.ts';
import { EnclaveRig } from './lib/enclave-rig.ts';
import { SCAN_CHUNK } from '../host/fleet/rows-endpoint.ts';
import type { WindowResult } from './lib/enclave-rig.ts';

const A = args();
const M = machine();
const positional = process.argv.slice(2).filter((x, i, all) => /^\d/.test(x) && !(all[i - 1] ?? '').startsWith('--'));
const SECONDS = Number(positional[0] ?? (A.quick ? 0.2 : 1.5));
const ROUNDS = Number(positional[1] ?? (A.quick ? 2 : 3));
const out: BenchResult[] = [];
const ratios: Record<string, number> = {};
const missing: Record<string, string> = {};
const notes: string[] = [];
const RECORDS = 10_000; // preloaded rows per partition 0
const BLOB = 320; // bytes, about one sealed record
const PARALLEL = 8;

const require = createRequire(import.meta.url);
const version = (pkg: string) => (require(`${pkg}/package.json`) as { version: string }).version;

const recId = (n: number) => {
  const b = new Uint8Array(16);
  new DataView(b.buffer).setUint32(0, n);
  b[15] = 0x5a;
  return b;
};
const blobOf = (n: number) => new Uint8Array(BLOB).fill(n & 0xff);

interface Bench {
  name: string;
  store: RecordStore;
  epoch: Map<number, number>;
  seq: Map<number, number>;
  cursor: number;
}

const event = (seq: number) =>
  storedAudit({
    seq,
    time: 1_700_000_000_000,
    nonce: new Uint8Array(16).fill(seq & 0xff),
    sealed: new Uint8Array(34).fill(2),
    mac: new Uint8Array(32).fill(7),
  });

async function batch(b: Bench, partition: number, n: number): Promise<void> {
  const epoch = (b.epoch.get(partition) ?? 0) + 1;
  b.epoch.set(partition, epoch);
  const seq0 = b.seq.get(partition) ?? 0;
  b.seq.set(partition, seq0 + n);
  const writes = Array.from({ length: n }, () => {
    b.cursor = (b.cursor + 7919) % RECORDS;
    return { recordId: recId(b.cursor), blob: blobOf(epoch) };
  });
  const audit = Array.from({ length: n }, (_, i) => event(seq0 + i));
  await b.store.applyBatch(partition, epoch, writes, audit);
}

async function read(b: Bench, n: number): Promise<void> {
  const ids = Array.from({ length: n }, () => {
    b.cursor = (b.cursor + 7919) % RECORDS;
    return recId(b.cursor);
  });
  const found = (await b.store.getMany(0, ids)).filter((r) => r !== undefined).length;
  if (found !== n) throw new Error(`getMany: ${found} of ${n}`);
}

const CASES: { label: string; perOp: number; run: (b: Bench) => Promise<void> }[] = [
  { label: 'applyBatch 1 write', perOp: 1, run: (b) => batch(b, 0, 1) },
  { label: 'applyBatch 32 writes', perOp: 1, run: (b) => batch(b, 0, 32) },
  { label: 'getMany 32', perOp: 1, run: (b) => read(b, 32) },
  {
    label: `applyBatch 32, ${PARALLEL} partitions`,
    perOp: PARALLEL,
    run: (b) => Promise.all(Array.from({ length: PARALLEL }, (_, p) => batch(b, 1 + p, 32))).then(() => undefined),
  },
];

/** ops/s of one case for about SECONDS. */
async function measure(b: Bench, c: (typeof CASES)[number]): Promise<number> {
  for (let i = 0; i < 5; i++) await c.run(b); // warm-up (prepared statements, caches)
  const until = process.hrtime.bigint() + BigInt(Math.round(SECONDS * 1e9));
  const start = process.hrtime.bigint();
  let ops = 0;
  let now = start;
  while (now < until) {
    await c.run(b);
    ops += c.perOp;
    now = process.hrtime.bigint();
  }
  return ops / (Number(now - start) / 1e9);
}

async function preload(store: RecordStore): Promise<void> {
  for (let i = 0; i < RECORDS; i += 500) {
    const writes = Array.from({ length: Math.min(500, RECORDS - i) }, (_, k) => ({ recordId: recId(i + k), blob: blobOf(0) }));
    await store.applyBatch(0, 0, writes, []);
  }
}

const fmt = (x: number) => (x >= 100 ? x.toFixed(0) : x.toFixed(1)).padStart(9);

async function main(): Promise<void> {
  const cpu = cpus();
  console.log(`machine: ${cpu[0]?.model ?? '?'} x ${cpu.length}, ${(totalmem() / 2 ** 30).toFixed(1)} GiB, ${process.platform} ${process.arch}`);
  console.log(`node ${process.version}, better-sqlite3 ${version('better-sqlite3')}, pg ${version('pg')}`);

  const dir = mkdtempSync(join(tmpdir(), 'bkv-bench-storage-'));
  const benches: Bench[] = [];
  const cleanups: (() => Promise<void>)[] = [async () => rmSync(dir, { recursive: true, force: true })];
  try {
    const sqlitePath = join(dir, 'vault.db');
    const sqlite = await openSqliteStore(sqlitePath);
    const raw = new Database(':memory:');
    console.log(`sqlite ${String(raw.prepare('SELECT sqlite_version() AS v').pluck().get())}: ${sqlitePath} (WAL, synchronous = FULL)`);
    raw.close();
    benches.push({ name: 'sqlite', store: sqlite, epoch: new Map(), seq: new Map(), cursor: 0 });
    cleanups.unshift(() => sqlite.close());

    const adminUrl = process.env.BKV_PG_URL?.trim();
    if (adminUrl) {
      const database = `bkv_bench_${randomBytes(4).toString('hex')}`;
      const admin = new pg.Client({ connectionString: adminUrl });
      await admin.connect();
      await admin.query(`CREATE DATABASE "${database}"`);
      await admin.end();
      cleanups.push(async () => {
        const c = new pg.Client({ connectionString: adminUrl });
        await c.connect();
        await c.query(`DROP DATABASE IF EXISTS "${database}" WITH (FORCE)`);
        await c.end();
      });
      const u = new URL(adminUrl);
      u.pathname = `/${database}`;
      const store: PostgresRecordStore = await openPostgresStore(u.toString(), { maxConnections: PARALLEL + 2 });
      cleanups.unshift(() => store.close());
      const info = await store.serverInfo();
      console.log(
        `postgresql ${info.serverVersion} at ${u.hostname}:${u.port || 5432} (synchronous_commit = ${info.synchronousCommit}, fsync = ${info.fsync})`,
      );
      benches.push({ name: 'postgres', store, epoch: new Map(), seq: new Map(), cursor: 0 });
    } else {
      console.log('postgresql: skipped (BKV_PG_URL unset; eval "$(scripts/ci-postgres.sh)" starts one)');
    }
    for (const b of benches) await preload(b.store);
    console.log(`${RECORDS} records of ${BLOB} bytes preloaded; ${ROUNDS} interleaved rounds of ${SECONDS} s per case; median ops/s\n`);

    const results = new Map<string, number[]>();
    for (let r = 0; r < ROUNDS; r++) {
      for (const c of CASES) {
        for (const b of benches) {
          const key = `${c.label}|${b.name}`;
          const list = results.get(key) ?? [];
          list.push(await measure(b, c));
          results.set(key, list);
        }
      }
    }

    const names = benches.map((b) => b.name);
    const header = `${'case'.padEnd(32)}${names.map((n) => n.padStart(10)).join('')}${names.length > 1 ? '   pg/sqlite' : ''}`;
    console.log(header);
    for (const c of CASES) {
      const vals = names.map((n) => median(results.get(`${c.label}|${n}`)!));
      const ratio = vals.length > 1 ? `   ${(vals[1]! / vals[0]!).toFixed(2)}x` : '';
      console.log(`${c.label.padEnd(32)}${vals.map((v) => ` ${fmt(v)}`).join('')}${ratio}`);
      names.forEach((n, i) => out.push({ name: `storage: ${c.label} (${n})`, group: `store: ${c.label}`, kind: 'other', opsPerSec: Math.round(vals[i]!), store: n }));
      if (vals.length > 1 && c.label === 'applyBatch 32 writes') ratios.pgVsSqliteApplyBatch32 = round(vals[1]! / vals[0]!, 3);
    }
    console.log('\n(ops = batches or getMany calls; for "32 writes" multiply by 32 for records/s)');
    notes.push(`store level: ${RECORDS} records preloaded, ${ROUNDS} interleaved rounds of ${SECONDS} s per case, median; ops = batches or getMany calls`);
    await checkpointCompare(dir);
    await snapshotCopy(dir, benches.find((b) => b.name === 'postgres')?.store);
    if (benches.length < 2) missing.pgVsSqlite = 'PostgreSQL not measured: BKV_PG_URL unset (bench/run.ts starts one with scripts/ci-postgres.sh when PostgreSQL is installed)';
    if (benches.length > 1 && !A.quick) await enclavePath(benches.find((b) => b.name === 'postgres')!.store as PostgresRecordStore, adminUrl!);
  } finally {
    for (const f of cleanups) await f().catch((e: unknown) => console.error('cleanup:', e));
  }
}

/**
 * SQLite's WAL checkpoint threshold (host/storage/sqlite.ts SQLITE_WAL_CHECKPOINT_PAGES) against
 * SQLite's own 1,000 pages, side by side: a vault's batch as the host runs it (getMany of 64
 * scattered records, then applyBatch of their 64 writes and 64 audit events) over 16,384 records of
 * 550 bytes (a sealed record's size), CPU time of the process per record, interleaved rounds.
 */
async function checkpointCompare(dir: string): Promise<void> {
  const N = 16_384;
  const B = 64;
  const blob = new Uint8Array(550).fill(0x33);
  const sides: { name: string; store: RecordStore; epoch: number; seq: number; cursor: number }[] = [];
  for (const [name, pages] of [['checkpoint at 1000 pages', 1000], [`checkpoint at ${SQLITE_WAL_CHECKPOINT_PAGES} pages (default)`, SQLITE_WAL_CHECKPOINT_PAGES]] as const) {
    const store = await openSqliteStore(join(dir, `ckpt-${pages}.db`), { walCheckpointPages: pages });
    for (let i = 0; i < N; i += 512) await store.applyBatch(0, i / 512 + 1, Array.from({ length: 512 }, (_, k) => ({ recordId: recId(i + k), blob })), []);
    sides.push({ name, store, epoch: N / 512 + 1, seq: 0, cursor: 0 });
  }
  const step = async (x: (typeof sides)[number]) => {
    const ids = Array.from({ length: B }, () => recId((x.cursor = (x.cursor + 7919) % N)));
    const found = (await x.store.getMany(0, ids)).filter((r) => r !== undefined).length;
    if (found !== B) throw new Error(`getMany: ${found} of ${B}`);
    const seq0 = x.seq;
    x.seq += B;
    await x.store.applyBatch(0, ++x.epoch, ids.map((recordId) => ({ recordId, blob })), ids.map((_, i) => event(seq0 + i)));
  };
  const cpu = new Map<string, number[]>();
  const rate = new Map<string, number[]>();
  try {
    for (const x of sides) for (let i = 0; i < 200; i++) await step(x); // past the first checkpoints of both
    for (let r = 0; r < ROUNDS * 2; r++) {
      for (const x of r % 2 ? [...sides].reverse() : sides) {
        const c0 = process.cpuUsage();
        const t0 = performance.now();
        let n = 0;
        while (performance.now() - t0 < SECONDS * 1000) {
          await step(x);
          n += B;
        }
        const c = process.cpuUsage(c0);
        cpu.set(x.name, [...(cpu.get(x.name) ?? []), (c.user + c.system) / n]);
        rate.set(x.name, [...(rate.get(x.name) ?? []), (n * 1000) / (performance.now() - t0)]);
      }
    }
  } finally {
    for (const x of sides) await x.store.close();
  }
  console.log(`\nSQLite WAL checkpoint: getMany ${B} + applyBatch ${B} writes + ${B} audit events over ${N} records of ${blob.length} bytes, ${ROUNDS * 2} interleaved rounds, medians`);
  for (const x of sides) {
    const us = median(cpu.get(x.name)!);
    const rps = median(rate.get(x.name)!);
    console.log(`  ${x.name.padEnd(40)} ${us.toFixed(1).padStart(6)} us of CPU per record, ${rps.toFixed(0).padStart(6)} records/s  (CPU per round: ${cpu.get(x.name)!.map((v) => v.toFixed(1)).join(' ')})`);
    out.push({ name: `storage: SQLite batch of ${B} over ${N} records, ${x.name}`, group: 'SQLite WAL checkpoint threshold', kind: 'other', opsPerSec: Math.round(rps), cpuUsPerOp: round(us, 1) });
  }
  const [a, b] = sides.map((x) => median(cpu.get(x.name)!));
  ratios.sqliteCheckpointCpu = round(b! / a!, 3);
  console.log(`  CPU per record, default over 1000 pages: ${ratios.sqliteCheckpointCpu}`);
  notes.push(`SQLite WAL checkpoint: ${SQLITE_WAL_CHECKPOINT_PAGES} pages (the default) against SQLite's 1000, a batch of ${B} scattered records (getMany + applyBatch with audit events) over ${N} records; sqliteCheckpointCpu = CPU per record, default over 1000`);
}

/**
 * A copy of the stored rows for another fleet member (host/fleet/rows-endpoint.ts) served from a
 * snapshot (RecordStore.snapshot) while the store's batches go on, as a leader serves one: a
 * writer's batches (getMany + applyBatch of 32 scattered records and their 32 audit events, one
 * event-loop turn between batches, as the engine's come) alone, and during a snapshot scan of
 * COPY_ROWS rows in the endpoint's chunks (SCAN_CHUNK) with a millisecond between chunks (a
 * socket's drain), on the same thread; interleaved rounds, medians; SQLite's WAL file at its
 * largest (it can not be checkpointed past the snapshot while the copy streams).
 */
async function snapshotCopy(dir: string, pgStore?: RecordStore): Promise<void> {
  const COPY_ROWS = A.quick ? 5_000 : 100_000;
  const P = 100; // a partition no other case writes (they use 0..PARALLEL-1)
  const B = 32;
  const blob = new Uint8Array(550).fill(0x44);
  const walPath = join(dir, 'copy.db-wal');
  const sides: { name: string; store: RecordStore; epoch: number; seq: number; cursor: number; wal: boolean }[] = [];
  const sqlite = await openSqliteStore(join(dir, 'copy.db'));
  sides.push({ name: 'sqlite', store: sqlite, epoch: 0, seq: 0, cursor: 0, wal: true });
  if (pgStore) sides.push({ name: 'postgres', store: pgStore, epoch: 0, seq: 0, cursor: 0, wal: false });
  const walBytes = () => {
    try {
      return statSync(walPath).size;
    } catch {
      return 0;
    }
  };
  const turn = () => new Promise<void>((r) => setImmediate(r));
  try {
    for (const x of sides) {
      for (let i = 0; i < COPY_ROWS; i += 1000) await x.store.applyBatch(P, ++x.epoch, Array.from({ length: Math.min(1000, COPY_ROWS - i) }, (_, k) => ({ recordId: recId(i + k), blob })), []);
    }
    const step = async (x: (typeof sides)[number]) => {
      const ids = Array.from({ length: B }, () => recId((x.cursor = (x.cursor + 7919) % COPY_ROWS)));
      await x.store.getMany(P, ids);
      const seq0 = x.seq;
      x.seq += B;
      await x.store.applyBatch(P, ++x.epoch, ids.map((recordId) => ({ recordId, blob })), ids.map((_, i) => event(seq0 + i)));
    };
    /** Batches per second while `until` says go on; the WAL's largest size meanwhile. */
    const writer = async (x: (typeof sides)[number], going: () => boolean) => {
      const t0 = performance.now();
      let n = 0;
      let wal = 0;
      while (going()) {
        await step(x);
        n++;
        if (x.wal && n % 16 === 0) wal = Math.max(wal, walBytes());
        await turn();
      }
      return { perSec: (n * 1000) / (performance.now() - t0), wal };
    };
    const copy = async (x: (typeof sides)[number]) => {
      const t0 = performance.now();
      const snap = await x.store.snapshot(P);
      let rows = 0;
      try {
        for await (const c of snap.scan(SCAN_CHUNK)) {
          rows += c.length;
          await new Promise((r) => setTimeout(r, 1));
        }
      } finally {
        await snap.close();
      }
      if (rows !== COPY_ROWS) throw new Error(`the snapshot gave ${rows} of ${COPY_ROWS} rows`);
      return performance.now() - t0;
    };
    const got = new Map<string, { alone: number[]; during: number[]; copyMs: number[]; wal: number[] }>();
    for (const x of sides) for (let i = 0; i < 100; i++) await step(x);
    for (let r = 0; r < ROUNDS; r++) {
      for (const x of r % 2 ? [...sides].reverse() : sides) {
        const g = got.get(x.name) ?? { alone: [], during: [], copyMs: [], wal: [] };
        got.set(x.name, g);
        let copying = true;
        const copied = copy(x).finally(() => (copying = false));
        const during = await writer(x, () => copying);
        const ms = await copied;
        const t1 = performance.now();
        const alone = await writer(x, () => performance.now() - t1 < ms);
        g.during.push(during.perSec);
        g.alone.push(alone.perSec);
        g.copyMs.push(ms);
        g.wal.push(during.wal);
      }
    }
    console.log(`\nA copy of ${COPY_ROWS.toLocaleString('en-US')} rows of ${blob.length} bytes from a snapshot, a writer's batches (getMany + applyBatch of ${B} with audit events) on the same thread, ${ROUNDS} interleaved rounds, medians`);
    for (const x of sides) {
      const g = got.get(x.name)!;
      const alone = median(g.alone);
      const during = median(g.during);
      const ms = median(g.copyMs);
      const ratio = round(during / alone, 3);
      const wal = x.wal ? `, WAL at most ${(Math.max(...g.wal) / 2 ** 20).toFixed(0)} MiB` : '';
      console.log(`  ${x.name.padEnd(9)} writer ${alone.toFixed(0)} batches/s alone, ${during.toFixed(0)} during the copy (${ratio}); the copy ${(ms / 1000).toFixed(2)} s, ${((COPY_ROWS * 1000) / ms).toFixed(0)} rows/s${wal}`);
      out.push({ name: `storage: writer's batches of ${B} during a snapshot copy of ${COPY_ROWS} rows (${x.name})`, group: 'a copy from a snapshot while batches go on', kind: 'other', opsPerSec: Math.round(during), store: x.name });
      out.push({ name: `storage: writer's batches of ${B}, no copy (${x.name})`, group: 'a copy from a snapshot while batches go on', kind: 'other', opsPerSec: Math.round(alone), store: x.name });
      out.push({ name: `storage: snapshot copy of ${COPY_ROWS} rows under those batches (${x.name})`, group: 'a copy from a snapshot while batches go on', kind: 'other', opsPerSec: Math.round((COPY_ROWS * 1000) / ms), store: x.name });
      ratios[x.name === 'sqlite' ? 'copyWriterSqlite' : 'copyWriterPostgres'] = ratio;
      notes.push(`snapshot copy (${x.name}): ${COPY_ROWS} rows; the writer's batches during the copy over without it ${ratio}${wal}`);
    }
  } finally {
    await sqlite.close();
  }
}

/** Login through the enclave path with each store, interleaved rounds. */
async function enclavePath(_pg: PostgresRecordStore, adminUrl: string): Promise<void> {
  const P = availableParallelism();
  const database = `bkv_bench_rig_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE "${database}"`);
  await admin.end();
  const u = new URL(adminUrl);
  u.pathname = `/${database}`;
  const rigs: [string, EnclaveRig][] = [];
  const wins = new Map<string, WindowResult[]>();
  try {
    for (const [name, store] of [['sqlite', undefined], ['postgres', u.toString()]] as const) {
      progress(`enclave path on ${name}: opening a vault (${P} partitions) and registering records`);
      // logins are never finished and a record holds at most 16 open sessions for 120 s: 4,096
      // records hold the about 20,000 logins of the warm-up and the three rounds (512 did not)
      rigs.push([name, await EnclaveRig.open({ partitions: P, records: 4096, ...(store && { store }) })]);
    }
    for (const [, rig] of rigs) await rig.login(32, 500);
    for (let r = 0; r < 3; r++) {
      for (const [name, rig] of r % 2 ? [...rigs].reverse() : rigs) {
        const w = await rig.login(128, 1500);
        wins.set(name, [...(wins.get(name) ?? []), w]);
        progress(`round ${r + 1}, ${name}: ${w.opsPerSec.toFixed(0)} logins/s, p50 ${w.p50Ms.toFixed(1)} ms, batch ${w.meanBatch.toFixed(1)}`);
      }
    }
  } finally {
    for (const [, rig] of rigs) await rig.close();
    const c = new pg.Client({ connectionString: adminUrl });
    await c.connect();
    await c.query(`DROP DATABASE IF EXISTS "${database}" WITH (FORCE)`);
    await c.end();
  }
  const rate = (n: string) => median(wins.get(n)!.map((w) => w.opsPerSec));
  for (const [name, ws] of wins) {
    const mid = middleBy(ws, (w) => w.opsPerSec);
    out.push({ name: `storage: enclave login, ${name} store, ${P} partitions, concurrency 128`, group: 'login through the enclave path, by store', kind: 'ours', opsPerSec: Math.round(rate(name)), p50Ms: round(mid.p50Ms, 2), p99Ms: round(mid.p99Ms, 2), meanBatch: round(mid.meanBatch, 1) });
  }
  ratios.pgVsSqlite = round(rate('postgres') / rate('sqlite'), 3);
  console.log(`\nenclave login: sqlite ${rate('sqlite').toFixed(0)}/s, postgres ${rate('postgres').toFixed(0)}/s: pgVsSqlite ${ratios.pgVsSqlite}`);
  notes.push('enclave path: 3 interleaved rounds of 1.5 s per store at concurrency 128, all partitions, worker devices, emulator token');
}

await main();
emit({ subsystem: 'storage', quick: A.quick, machine: M, results: out, ratios, ...(Object.keys(missing).length && { missing }), notes }, A.json);
process.exit(0);
