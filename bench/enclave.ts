/**
 * The enclave path: OPAQUE through the message boundary and the worker pool, with durable guess
 * charging and group commit (VaultHost: partitions of enclave devices in worker threads, one
 * group-commit engine per partition, SQLite WAL synchronous=FULL), against the raw server (our
 * OPAQUE server in N worker threads, no boundary, no storage) on the same cores, in one run.
 * Both sides pay the same issuer token check per login: a cache hit of the same TokenVerifier
 * (each record's token verified once, at registration for the enclave and before the first run
 * for the raw server: bench/lib/raw-worker.ts, bench/lib/enclave-rig.ts `loginIdsOf`); a new
 * session's first verification (60-80 us) is bench/breakdown.ts's row.
 *
 *   npx tsx bench/enclave.ts [--quick] [--json FILE] [--levels 1,8,32,128,256,512] [--partitions 1,2]
 *                            [--window-ms 2000] [--rounds 5] [--records 16384] [--token emulator|softhsm]
 *                            [--warmup-ms 1500] [--ramp-ms 300]
 *                            (quick: levels 1,128, 500 ms windows, 100 ms ramps, 3 rounds, 1024 records)
 *
 * Measured:
 * - raw login (KE1->KE2) and registration response on 1 thread and on all cores (wall clock);
 * - enclave login (LoginStart: HPKE open, stored record checked against the rollback index and
 *   unsealed, KE2, the charged record sealed, NVRAM intent + commit, SQLite commit, response
 *   sealed) at each concurrency level, for 1..N partitions (scaling), with p50 / p99 latency,
 *   mean batch size and the CPU split (host thread / device threads / other threads);
 * - enclave registration (RegisterStart, then RegisterFinish) and KE3 check (LoginFinish with a
 *   valid KE3: attempts reset, key released) at concurrency 128 on all partitions.
 * Each enclave login window is measured at its sustained rate: after `--ramp-ms` under the same
 * load, the operations answered within the window over its length (the raw server's loop has no
 * ramp: it runs back to back from the start). CPU is read over the same interval.
 * At all cores the raw baseline and the enclave levels are interleaved round by round, and
 * enclaveVsRaw is the best enclave level's median over the raw median (with the per-round
 * paired ratios beside it).
 *
 * Load generation costs little and is outside the timed window: client messages are sealed
 * beforehand with a fresh HPKE encapsulation each (client/e2e-seal-node.ts, node:crypto), from a few
 * real KE1s; the bulk records share one valid RegistrationRecord (the enclave's work does not
 * depend on it). Answers are opened and counted after each window. The host (engine, SQLite,
 * codec) and the load generator share the main thread: on a 2-core machine they compete with the
 * devices, and the CPU split says how much.
 */
import { availableParallelism } from 'node:os';
import { parseTokenKind } from '../hsm/tokens/backends.ts';
import { EnclaveRig, RawPool } from './lib/enclave-rig.ts';
import type { WindowResult } from './lib/enclave-rig.ts';
import { args, emit, machine, machineLine, progress, round } from './lib/common.ts';
import type { BenchResult } from './lib/common.ts';
import { median, middleBy } from './lib/stats.ts';

const A = args();
const QUICK = A.quick;
const CORES = availableParallelism();
const LEVELS = A.list('levels', QUICK ? [1, 128] : [1, 8, 32, 128, 256, 512]);
const PARTITIONS = A.list('partitions', QUICK ? [CORES] : Array.from({ length: CORES }, (_, i) => i + 1)).sort((a, b) => b - a);
const WINDOW = A.num('window-ms', QUICK ? 500 : 2000);
// Each enclave login window runs this long under its load before it is measured, and is measured
// without the drain of its last operations (bench/lib/vault-load.ts closedLoop, `rampMs`): the
// sustained rate, as the raw server's back-to-back loop measures it.
const RAMP = A.num('ramp-ms', QUICK ? 100 : 300);
const ROUNDS = A.num('rounds', QUICK ? 3 : 5);
// Records registered; the login windows cycle through the last few thousand of each partition
// (enclave-rig.ts loginIdsOf) and close every window's sessions after it (`endSessions`).
const RECORDS = A.num('records', QUICK ? 1024 : 16384);
const TOKEN = parseTokenKind(A.get('token'));

const M = machine();
console.log(`enclave path vs raw server: ${machineLine(M)}`);
console.log(`levels ${LEVELS.join(',')}; partitions ${PARTITIONS.join(',')}; ${ROUNDS} round(s) of ${WINDOW} ms windows (enclave logins after a ${RAMP} ms ramp); ${RECORDS} records; ${TOKEN} token; worker-thread devices; SQLite`);

const raw = await RawPool.open(CORES);
const rawLogin: { all: number[]; one: number[]; cpuUs: number[] } = { all: [], one: [], cpuUs: [] };
const rawReg: { all: number[]; one: number[] } = { all: [], one: [] };
const enc = new Map<string, WindowResult[]>(); // key `${P}/${c}`
const extra: WindowResult[] = [];
const pairedRounds: { round: number; raw: number; byLevel: Map<number, number> }[] = [];
let registerRate = 0;

// Warm-up, the same on both sides: long enough for the JIT to finish (the enclave path compiles far
// more code than the raw server, libsodium's WebAssembly tiers up per device isolate, and young
// heaps grow to size; with 200 ms of warm-up the first windows paid for that: other threads
// 0.44 cores in the login window, 0.21 after 2 s).
const WARMUP_MS = A.num('warmup-ms', 1500);
await raw.run('login', WARMUP_MS);
for (const P of PARTITIONS) {
  const all = P === CORES;
  progress(`opening a vault with ${P} partition(s), registering ${RECORDS} records`);
  const rig = await EnclaveRig.open({ partitions: P, records: RECORDS, realRecords: all ? (QUICK ? 32 : 256) : 0, token: TOKEN });
  registerRate = Math.max(registerRate, (RECORDS * 1000) / rig.registerMs);
  try {
    await rig.login(32, WARMUP_MS); // warm-up of the devices
    for (let r = 0; r < (all ? ROUNDS : 1); r++) {
      const pr = { round: r, raw: 0, byLevel: new Map<number, number>() };
      if (all) {
        const ra = await raw.run('login', WINDOW);
        const r1 = await raw.run('login', WINDOW / 2, 1);
        rawLogin.all.push(ra.opsPerSec);
        rawLogin.one.push(r1.opsPerSec);
        rawLogin.cpuUs.push(ra.cpuUsPerOp);
        pr.raw = ra.opsPerSec;
        progress(`round ${r + 1}: raw login ${ra.opsPerSec.toFixed(0)}/s on ${CORES} threads, ${r1.opsPerSec.toFixed(0)}/s on 1`);
      }
      for (const c of LEVELS) {
        const w = await rig.login(c, WINDOW, RAMP);
        const k = `${P}/${c}`;
        enc.set(k, [...(enc.get(k) ?? []), w]);
        pr.byLevel.set(c, w.opsPerSec);
        progress(`${P} partition(s), concurrency ${c}: ${w.opsPerSec.toFixed(0)} logins/s, p50 ${w.p50Ms.toFixed(1)} ms, p99 ${w.p99Ms.toFixed(1)} ms, batch ${w.meanBatch.toFixed(1)}`);
      }
      if (all) pairedRounds.push(pr);
    }
    if (all) {
      const { start, finish } = await rig.register(128, WINDOW);
      extra.push(start, finish);
      extra.push(await rig.ke3(128));
      const ra = await raw.run('register', WINDOW / 2);
      const r1 = await raw.run('register', WINDOW / 2, 1);
      rawReg.all.push(ra.opsPerSec);
      rawReg.one.push(r1.opsPerSec);
    }
  } finally {
    await rig.close();
  }
}
await raw.close();

// ---------------------------------------------------------------------------------------------
const results: BenchResult[] = [];
const rawAll = median(rawLogin.all);
if (rawLogin.all.length) {
  results.push({ name: 'raw: login KE1->KE2, 1 thread', group: 'login, all cores (wall clock)', kind: 'ours', opsPerSec: Math.round(median(rawLogin.one)), threads: 1 });
  results.push({ name: `raw: login KE1->KE2, ${CORES} threads`, group: 'login, all cores (wall clock)', kind: 'ours', opsPerSec: Math.round(rawAll), threads: CORES, cpuUsPerOp: round(median(rawLogin.cpuUs), 1) });
}
if (rawReg.all.length) {
  results.push({ name: 'raw: registration response, 1 thread', group: 'registration, all cores (wall clock)', kind: 'ours', opsPerSec: Math.round(median(rawReg.one)), threads: 1 });
  results.push({ name: `raw: registration response, ${CORES} threads`, group: 'registration, all cores (wall clock)', kind: 'ours', opsPerSec: Math.round(median(rawReg.all)), threads: CORES });
}

const summarize = (ws: WindowResult[]) => {
  const mid = middleBy(ws, (w) => w.opsPerSec);
  return { ...mid, opsPerSec: median(ws.map((w) => w.opsPerSec)) };
};
const best = new Map<number, { c: number; ops: number }>();
for (const [k, ws] of enc) {
  const [P, c] = k.split('/').map(Number) as [number, number];
  const s = summarize(ws);
  results.push({
    name: `enclave: login, ${P} partition(s), concurrency ${c}`,
    group: P === CORES ? 'login, all cores (wall clock)' : `login, ${P} partition(s)`,
    kind: 'ours',
    opsPerSec: Math.round(s.opsPerSec),
    p50Ms: round(s.p50Ms, 2),
    p99Ms: round(s.p99Ms, 2),
    meanBatch: round(s.meanBatch, 1),
    partitions: P,
    concurrency: c,
    cpuCores: s.cpu,
    cpuUsPerOp: round(median(ws.map((w) => w.cpuUsPerOp)), 1),
    answers: s.answers,
    rounds: ws.length,
  });
  const b = best.get(P);
  if (!b || s.opsPerSec > b.ops) best.set(P, { c, ops: s.opsPerSec });
}
for (const w of extra) {
  results.push({
    name: `enclave: ${w.op}, ${w.partitions} partition(s), concurrency ${w.concurrency}`,
    group: w.op === 'KE3 check' ? 'KE3 check, all cores (wall clock)' : 'registration, all cores (wall clock)',
    kind: 'ours',
    opsPerSec: Math.round(w.opsPerSec),
    p50Ms: round(w.p50Ms, 2),
    p99Ms: round(w.p99Ms, 2),
    meanBatch: round(w.meanBatch, 1),
    partitions: w.partitions,
    concurrency: w.concurrency,
    cpuCores: w.cpu,
    answers: w.answers,
    ops: w.ops,
  });
}

const ratios: Record<string, number> = {};
const bAll = best.get(CORES);
const notes: string[] = [];
if (bAll) {
  ratios.enclaveVsRaw = round(bAll.ops / rawAll, 3);
  ratios.enclaveVsRawPairedMedian = round(median(pairedRounds.map((p) => p.byLevel.get(bAll.c)! / p.raw)), 3);
  notes.push(`enclaveVsRaw: enclave login at ${CORES} partitions, concurrency ${bAll.c} (the best level), over the raw server on ${CORES} threads, medians of ${ROUNDS} interleaved round(s), after ${WARMUP_MS} ms of warm-up on each side; each enclave window measured after a ${RAMP} ms ramp under its load, without its drain`);
}
if (bAll && rawLogin.cpuUs.length) {
  const encCpu = median(enc.get(`${CORES}/${bAll.c}`)!.map((w) => w.cpuUsPerOp));
  ratios.enclaveVsRawCpu = round(median(rawLogin.cpuUs) / encCpu, 3);
  notes.push(
    `CPU per login (all threads of the process): raw ${median(rawLogin.cpuUs).toFixed(0)} us, enclave path ${encCpu.toFixed(0)} us; enclaveVsRawCpu = their ratio, what enclaveVsRaw would be if both had every core to themselves (it does not depend on other processes' load)`,
  );
}
const b1 = best.get(1);
if (bAll && b1 && CORES > 1) ratios.enclaveScaling = round(bAll.ops / b1.ops, 3);
if (rawLogin.all.length) {
  ratios.rawScaling = round(rawAll / median(rawLogin.one), 3);
  if (CORES > 1 && ratios.rawScaling < 0.75 * CORES) {
    notes.push(`WARNING: the raw server scaled only ${ratios.rawScaling}x from 1 to ${CORES} threads: other processes held cores during this run, so the all-cores figures (and enclaveVsRaw) are depressed and noisy; enclaveVsRawCpu does not depend on that load`);
  }
}
const regS = extra.find((w) => w.op === 'registration start');
if (regS && rawReg.all.length) ratios.enclaveRegistrationStartVsRaw = round(regS.opsPerSec / median(rawReg.all), 3);
if (bAll) {
  const s = summarize(enc.get(`${CORES}/${bAll.c}`)!);
  notes.push(
    `CPU during the best all-cores login window, in cores: host thread ${s.cpu.host}, device threads ${s.cpu.devices}, other threads ${s.cpu.other} (GC, libuv pool: fsync, WebCrypto); total ${s.cpu.total} of ${CORES}; other processes on the machine ${s.cpu.otherProcesses}`,
  );
}
notes.push(`bulk registration while setting up: ${registerRate.toFixed(0)} records/s (RegisterStart + RegisterFinish each, 256 in flight)`);

// ---------------------------------------------------------------------------------------------
const pad = (s: string, n: number) => s.padEnd(n);
console.log(`\n${pad('configuration', 58)}${'ops/s'.padStart(8)}${'p50 ms'.padStart(9)}${'p99 ms'.padStart(9)}${'batch'.padStart(7)}${'CPU us/op'.padStart(10)}  cores: host/devices/other threads + other processes`);
for (const r of results) {
  const cpu = r.cpuCores as WindowResult['cpu'] | undefined;
  console.log(
    `${pad(r.name, 58)}${String(r.opsPerSec).padStart(8)}${(r.p50Ms?.toFixed(1) ?? '').padStart(9)}${(r.p99Ms?.toFixed(1) ?? '').padStart(9)}${((r.meanBatch as number | undefined)?.toFixed(1) ?? '').padStart(7)}${((r.cpuUsPerOp as number | undefined)?.toFixed(0) ?? '').padStart(10)}  ${cpu ? `${cpu.host}/${cpu.devices}/${cpu.other} + ${cpu.otherProcesses}` : ''}`,
  );
  const odd = Object.keys((r.answers as Record<string, number> | undefined) ?? {}).filter((k) => !['LoginStarted', 'RegisterStarted', 'Registered', 'Recovered'].includes(k));
  if (odd.length) console.log(`   answers: ${JSON.stringify(r.answers)}`);
}
console.log('\nratios:');
for (const [k, v] of Object.entries(ratios)) console.log(`  ${k.padEnd(34)} ${v}`);
for (const n of notes) console.log(`  ${n}`);
emit({ subsystem: 'enclave', quick: QUICK, machine: M, results, ratios, notes }, A.json);
process.exit(0);
