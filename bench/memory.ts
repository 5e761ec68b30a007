/**
 * Memory and size: the vault service holding many records, and a large backup.
 *
 *   npx tsx bench/memory.ts [--quick] [--json FILE] [--records N] [--budget-s S] [--in-flight K] [--backup-mib M]
 *
 * 1. Records (default 1,000,000; --quick 20,000). The real service (`bkv serve`: worker-thread
 *    devices, one partition per core, SQLite, emulator token, rate limits off) in a child process;
 *    records registered through it over HTTP as fast as it takes them (RegisterStart, then
 *    RegisterFinish, K records in flight; identity KSF; client messages sealed with
 *    client/e2e-seal-node.ts and one shared valid RegistrationRecord, so the load generator costs
 *    little; the enclave's work does not depend on the record's bytes). Progress every 10 s.
 *    Stops at N records or after the time budget (default 3600 s; --quick 10 s): the figures are
 *    then measured at the N reached and the ones for the target N are extrapolated, labelled so.
 *    Measured: registration rate; the service's RSS (VmRSS, the whole process: devices are threads
 *    in it) at checkpoints and its peak (VmHWM); then the service is stopped, the SQLite file
 *    checkpointed (wal_checkpoint(TRUNCATE)) and measured (bytes per record, per table when the
 *    build has dbstat); then restarted on the same data: time until /health answers (every
 *    partition loaded and checked against its NVRAM) and the RSS and peak RSS after the restart.
 *    The service trusts a bench issuer (`--auth-issuer`, bench/lib/auth.ts): each record's two
 *    operations carry one token minted for it, which the enclave checks (a signature
 *    verification at RegisterStart, a cache hit at RegisterFinish).
 * 2. Backup: a generated stream of --backup-mib MiB (default 1024) encrypted by
 *    client/backup-file-node.ts in a child process of its own (bench/lib/backup-rss.ts): its
 *    peak RSS and rate.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { decodeMessage, encodeMessage } from '../enclave/api/codec.ts';
import { ClientRequests, ClientResponses, DEFAULT_OPAQUE_CONTEXT, SUITE_CODE } from '../enclave/api/messages.ts';
import type { ClientRequest } from '../enclave/api/messages.ts';
import { clientRegistrationFinish, clientRegistrationStart } from '../enclave/opaque/client.ts';
import { identityKsf } from '../enclave/opaque/ksf.ts';
import { fastSuite } from '../enclave/opaque/suites-fast.ts';
import { AUTH_TOKEN_HEADER, fromBase64url, opsPath, toBase64url } from '../enclave/api/http.ts';
import { BenchTokens } from './lib/auth.ts';
import { ROOT, args, emit, machine, machineLine, progress, round } from './lib/common.ts';
import type { BenchResult } from './lib/common.ts';
import { FastSealer, openResponse } from '../client/e2e-seal-node.ts';
import { jsonPoster } from './lib/http-post.ts';
import { startService } from './lib/service-proc.ts';
import type { ServiceProc } from './lib/service-proc.ts';
import { rng } from './lib/vault-load.ts';
import type { ClientOp } from './lib/vault-load.ts';
import { expectResponse } from '../enclave/api/expect.ts';

const A = args();
const QUICK = A.quick;
const TARGET = A.num('records', QUICK ? 20_000 : 1_000_000);
const BUDGET_S = A.num('budget-s', QUICK ? 4 : 3600);
/** Below this many records, RSS growth is mostly warm-up (JIT, heaps): no extrapolation. */
const MIN_EXTRAPOLATE = 50_000;
const IN_FLIGHT = A.num('in-flight', 128);
const BACKUP_MIB = A.num('backup-mib', 1024);
const P = A.num('partitions', availableParallelism());
const M = machine();
const te = new TextEncoder();
const td = new TextDecoder();
const results: BenchResult[] = [];
const figures: Record<string, number> = {};
const notes: string[] = [];

console.log(`memory and size: ${machineLine(M)}`);

// ---- 1. records --------------------------------------------------------------------------------
const root = mkdtempSync(join(tmpdir(), 'bkv-bench-memory-'));
const dataDir = join(root, 'vault');
let svc: ServiceProc | undefined;
try {
  const { tokens, pubFile } = await BenchTokens.inDir(join(root, 'issuer'));
  svc = await startService(dataDir, { partitions: P, authIssuer: pubFile });
  const info = (await (await fetch(`${svc.url}/v1/vault`)).json()) as { enclavePublicKey: string };
  const enclavePublicKey = fromBase64url(info.enclavePublicKey)!;
  const sealer = new FastSealer(enclavePublicKey);
  const http = jsonPoster(svc.url, IN_FLIGHT);
  const suite = await fastSuite('ristretto255-SHA512');
  /** One operation on `id`, with `auth` (the id's token: one per record, for both its operations). */
  const post = async (id: Uint8Array, op: ClientOp, auth: Uint8Array) => {
    const s = sealer.seal(id, encodeMessage(ClientRequests, { ...op, auth } as ClientRequest));
    // The token in the clear too, for the service's early check (host/service/routes.ts).
    const r = await http.post(opsPath(id), { message: toBase64url(s.message) }, { [AUTH_TOKEN_HEADER]: td.decode(auth) });
    const j = r.body as { sealed?: boolean; response?: string };
    if (r.status !== 200 || !j.response) throw new Error(`HTTP ${r.status}: ${JSON.stringify(j).slice(0, 200)}`);
    const raw = fromBase64url(j.response)!;
    const plain = j.sealed ? openResponse(s.responseKey, id, raw) : raw;
    if (!plain) throw new Error('response does not open');
    return decodeMessage(ClientResponses, plain);
  };
  // One genuine registration whose record bytes every bulk record reuses.
  const o = { suite, context: DEFAULT_OPAQUE_CONTEXT, rng, ksf: identityKsf };
  const sampleId = te.encode('memory-sample');
  const { request, state } = clientRegistrationStart(o, te.encode('pw'));
  const sampleAuth = tokens.bytes(sampleId);
  const st = expectResponse(await post(sampleId, { type: 'RegisterStart', suite: SUITE_CODE[suite.id], request, attemptLimit: 10, ksf: identityKsf.params, pacing: 1 }, sampleAuth), 'RegisterStarted', 'sample');
  const { record } = await clientRegistrationFinish(o, state, te.encode('pw'), st.response);
  expectResponse(await post(sampleId, { type: 'RegisterFinish', stageId: st.stageId, record, backupKey: new Uint8Array(32).fill(1), authorization: undefined }, sampleAuth), 'Registered', 'sample finish');

  const startOp: ClientOp = { type: 'RegisterStart', suite: SUITE_CODE[suite.id], request, attemptLimit: 10, ksf: identityKsf.params, pacing: 1 };
  const key = new Uint8Array(32).fill(9);
  let next = 0;
  let done = 0;
  let failures = 0;
  let lastError = '';
  const checkpoints: { records: number; seconds: number; rssMB: number; hwmMB: number }[] = [];
  const t0 = performance.now();
  const deadline = t0 + BUDGET_S * 1000;
  const rssAt0 = svc.rss();
  const sample = () => {
    const r = svc!.rss();
    if (r) checkpoints.push({ records: done + 1, seconds: (performance.now() - t0) / 1000, rssMB: r.rssMB, hwmMB: r.hwmMB });
  };
  const ticker = setInterval(() => {
    sample();
    const c = checkpoints.at(-1);
    const rate = done / ((performance.now() - t0) / 1000);
    progress(`${done.toLocaleString('en-US')} records in ${((performance.now() - t0) / 1000).toFixed(0)} s (${rate.toFixed(0)}/s; ${TARGET.toLocaleString('en-US')} in ${((TARGET - done) / rate / 60).toFixed(1)} min more); service RSS ${c?.rssMB.toFixed(0)} MB, peak ${c?.hwmMB.toFixed(0)} MB${failures ? `; ${failures} failures (${lastError})` : ''}`);
  }, QUICK ? 2500 : 10_000);
  await Promise.all(
    Array.from({ length: IN_FLIGHT }, async () => {
      while (next < TARGET && performance.now() < deadline) {
        const id = te.encode(`mem-${(next++).toString(36).padStart(5, '0')}`);
        try {
          // Minted here, not kept (a million tokens would weigh on this process): the record's two operations share it.
          const auth = te.encode(tokens.mint(id));
          const a = expectResponse(await post(id, startOp, auth), 'RegisterStarted', 'RegisterStart');
          expectResponse(await post(id, { type: 'RegisterFinish', stageId: a.stageId, record, backupKey: key, authorization: undefined }, auth), 'Registered', 'RegisterFinish');
          done++;
        } catch (e) {
          failures++;
          lastError = (e as Error).message;
          if (failures > 100 && failures > done / 100) throw new Error(`registrations failing: ${lastError}\n${svc!.stderrTail()}`);
        }
      }
    }),
  );
  clearInterval(ticker);
  http.close();
  sample();
  const seconds = (performance.now() - t0) / 1000;
  const records = done + 1;
  const rate = done / seconds;
  const during = svc.rss()!;
  progress(`registered ${records.toLocaleString('en-US')} records in ${seconds.toFixed(0)} s (${rate.toFixed(0)}/s); stopping the service`);
  const code = await svc.stop();
  svc = undefined;
  if (code !== 0) notes.push(`bkv serve exited ${code} at the first stop`);

  // Stored bytes: checkpoint the WAL into the file, then measure.
  const dbFile = join(dataDir, 'vault.db');
  const db = new Database(dbFile);
  db.pragma('wal_checkpoint(TRUNCATE)');
  const pageSize = db.pragma('page_size', { simple: true }) as number;
  const pages = db.pragma('page_count', { simple: true }) as number;
  const free = db.pragma('freelist_count', { simple: true }) as number;
  let tables: Record<string, number> = {};
  try {
    tables = Object.fromEntries((db.prepare('SELECT name, SUM(pgsize) AS b FROM dbstat GROUP BY name').all() as { name: string; b: number }[]).map((r) => [r.name, r.b]));
  } catch {
    tables = {};
  }
  const rows = (db.prepare('SELECT COUNT(*) AS n FROM records').get() as { n: number }).n;
  const auditRows = (db.prepare('SELECT COUNT(*) AS n FROM audit').get() as { n: number }).n;
  const blobBytes = (db.prepare('SELECT AVG(length(blob)) AS b FROM records').get() as { b: number }).b;
  db.close();
  const fileBytes = statSync(dbFile).size;
  const bytesPerRecord = fileBytes / rows;

  // Restart on the same data: load time and memory.
  progress(`restarting the service on ${rows.toLocaleString('en-US')} records`);
  svc = await startService(dataDir, { partitions: P, authIssuer: pubFile });
  await new Promise((r) => setTimeout(r, 1000));
  const after = svc.rss()!;
  const restartMs = svc.startMs;
  await svc.stop();
  svc = undefined;

  // Extrapolation to TARGET when it was not reached: RSS linear in records over the second half of the checkpoints.
  const reached = records >= TARGET;
  const half = checkpoints.filter((c) => c.records >= records / 2);
  let slope = 0;
  if (half.length >= 2) {
    const a = half[0]!;
    const b = half.at(-1)!;
    slope = (b.rssMB - a.rssMB) / Math.max(1, b.records - a.records);
  }
  const perRecordAfterRestartKB = ((after.rssMB - (rssAt0?.rssMB ?? 0)) * 1024) / records;
  figures.records = records;
  figures.recordsTarget = TARGET;
  figures.registrationsPerSec = round(rate, 1);
  figures.serviceRssMBEmpty = round(rssAt0?.rssMB ?? NaN, 1);
  figures.serviceRssMBAtEnd = round(during.rssMB, 1);
  figures.servicePeakRssMBRegistering = round(during.hwmMB, 1);
  figures.restartMs = Math.round(restartMs);
  figures.serviceRssMBAfterRestart = round(after.rssMB, 1);
  figures.servicePeakRssMBAfterRestart = round(after.hwmMB, 1);
  figures.servicePeakRssMB = round(Math.max(during.hwmMB, after.hwmMB), 1);
  figures.storedBytesPerRecord = round(bytesPerRecord, 1);
  figures.sqliteFileBytes = fileBytes;
  figures.sqliteFreePages = free;
  figures.sealedBlobBytes = round(blobBytes, 1);
  figures.auditRows = auditRows;
  for (const [t, b] of Object.entries(tables)) figures[`sqliteBytes_${t}`] = b;
  if (!reached && records >= MIN_EXTRAPOLATE) {
    figures.extrapolated = 1;
    figures.extrapolatedServicePeakRssMB = round(figures.servicePeakRssMB + Math.max(slope, (after.rssMB - (rssAt0?.rssMB ?? 0)) / records) * (TARGET - records), 1);
    figures.extrapolatedRegistrationMinutes = round(TARGET / rate / 60, 1);
    figures.extrapolatedRestartMs = Math.round((restartMs * TARGET) / records);
  }
  results.push({ name: `memory: bulk registration through the service (HTTP, ${IN_FLIGHT} in flight)`, group: 'registration through the service', kind: 'ours', opsPerSec: round(rate, 1), unit: 'records/s (2 operations each)' });
  console.log(`\nrecords: ${records.toLocaleString('en-US')}${reached ? '' : ` of ${TARGET.toLocaleString('en-US')} (time budget ${BUDGET_S} s)`} at ${rate.toFixed(0)} registrations/s (${(2 * rate).toFixed(0)} operations/s)`);
  console.log(`service RSS: empty ${figures.serviceRssMBEmpty} MB; at the end of registration ${figures.serviceRssMBAtEnd} MB (peak ${figures.servicePeakRssMBRegistering} MB)`);
  console.log(`restart with ${rows.toLocaleString('en-US')} records: ready in ${(restartMs / 1000).toFixed(1)} s; RSS ${figures.serviceRssMBAfterRestart} MB (peak ${figures.servicePeakRssMBAfterRestart} MB); ${perRecordAfterRestartKB.toFixed(2)} KB per record over empty`);
  console.log(`stored: ${fileBytes.toLocaleString('en-US')} bytes of SQLite after a checkpoint = ${bytesPerRecord.toFixed(0)} bytes per record (sealed blob ${blobBytes.toFixed(0)} B; ${auditRows} audit rows; ${free} free pages of ${pages} x ${pageSize} B)${Object.keys(tables).length ? `; by table/index: ${Object.entries(tables).map(([t, b]) => `${t} ${(b / rows).toFixed(0)} B/record`).join(', ')}` : ''}`);
  if (!reached && records < MIN_EXTRAPOLATE) {
    figures.notExtrapolated = 1;
    console.log(`not extrapolated to ${TARGET.toLocaleString('en-US')}: below ${MIN_EXTRAPOLATE.toLocaleString('en-US')} records the RSS growth is mostly warm-up`);
    notes.push(`records: reached ${records} of ${TARGET} within ${BUDGET_S} s: too few to extrapolate; the full run measures this`);
  }
  if (figures.extrapolated) {
    console.log(`EXTRAPOLATED to ${TARGET.toLocaleString('en-US')} records (linear): service peak RSS ${figures.extrapolatedServicePeakRssMB} MB; registration ${figures.extrapolatedRegistrationMinutes} min; restart ${(figures.extrapolatedRestartMs! / 1000).toFixed(0)} s`);
    notes.push(`records: reached ${records} of ${TARGET} within ${BUDGET_S} s; the figures for ${TARGET} marked extrapolated are linear extrapolations from the RSS growth`);
  }
  notes.push(`RSS checkpoints (records: MB): ${checkpoints.filter((_, i, a) => i % Math.max(1, Math.floor(a.length / 12)) === 0 || i === a.length - 1).map((c) => `${c.records}: ${c.rssMB.toFixed(0)}`).join(', ')}`);
} finally {
  await svc?.stop();
  rmSync(root, { recursive: true, force: true });
}

// ---- 2. a large backup -------------------------------------------------------------------------
progress(`encrypting a ${BACKUP_MIB} MiB backup in a child process`);
const r = spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'bench/lib/backup-rss.ts'), '--mib', String(BACKUP_MIB)], { cwd: ROOT, encoding: 'utf8' });
if (r.status !== 0) throw new Error(`backup child failed: ${r.stderr}`);
const b = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { mib: number; seconds: number; mbPerSec: number; rssBeforeMB: number; peakRssMB: number };
figures.backupMiB = b.mib;
figures.backupPeakRssMB = round(b.peakRssMB, 1);
figures.backupRssBeforeMB = round(b.rssBeforeMB, 1);
figures.backupMBPerSec = round(b.mbPerSec, 0);
results.push({ name: `memory: encrypt a ${b.mib} MiB backup (backup-file-node, node:crypto AES-256-GCM)`, group: 'backup encryption', kind: 'ours', opsPerSec: round(b.mbPerSec, 0), unit: 'MB/s' });
console.log(`backup: ${b.mib} MiB encrypted in ${b.seconds.toFixed(2)} s (${b.mbPerSec.toFixed(0)} MB/s); peak RSS ${b.peakRssMB.toFixed(0)} MB (${b.rssBeforeMB.toFixed(0)} MB before: Node, tsx and the code)`);

emit({ subsystem: 'memory', quick: QUICK, machine: M, results, ratios: {}, figures, notes }, A.json);
process.exit(0);
