/**
 * Where the time of one enclave login goes: every step of the enclave path (LoginStart through
 * VaultHost) timed on its own, in this thread, with the product's own functions, against the raw
 * server login; per operation, and per batch for what a batch pays once (two NVRAM writes, the
 * store transaction, the thread hop). Beside each step that has a proposed fix, the fix's
 * prototype (bench/lib/hpke.ts FastOpener; NVRAM in a file, hsm/nvram-file.ts).
 *
 *   npx tsx bench/breakdown.ts [--quick] [--json FILE] [--batch 32]
 *
 * Times are CPU time of the process (user + system) per operation, and wall time beside it
 * (fsync waits show in wall time only). Each figure is the median of 5 interleaved rounds.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { decodeMessage, encodeMessage } from '../enclave/api/codec.ts';
import { deriveE2eKeyPair, openRequest } from '../enclave/api/e2e.ts';
import type { AuditEvent } from '../enclave/api/messages.ts';
import { ClientRequests, DEFAULT_OPAQUE_CONTEXT, HostRequests, HostResponses } from '../enclave/api/messages.ts';
import { nodeHash } from '../enclave/opaque/hash-node.ts';
import { clientLoginStart, clientRegistrationFinish, clientRegistrationStart } from '../enclave/opaque/client.ts';
import { identityKsf } from '../enclave/opaque/ksf.ts';
import { generateServerKeys, serverLoginStart, serverRegistrationResponse } from '../enclave/opaque/server.ts';
import { fastSuite } from '../enclave/opaque/suites-fast.ts';
import { AuditLog } from '../enclave/vault/audit.ts';
import { ensureTokenKeys } from '../enclave/vault/keys.ts';
import { RecordIndex } from '../enclave/vault/record-index.ts';
import { KIND_RECORD, seal, unseal } from '../enclave/vault/record.ts';
import type { VaultRecord } from '../enclave/vault/record.ts';
import { bootFirmware, buildPlatform } from '../hsm/runner.ts';
import type { HsmConfig } from '../hsm/runner.ts';
import { FileNvram } from '../hsm/nvram-file.ts';
import { TokenNvram } from '../hsm/nvram-token.ts';
import { openStore } from '../host/storage/index.ts';
import { softhsmUnavailable } from '../host/tokens/softhsm.ts';
import { args, emit, machine, machineLine, median, round } from './lib/common.ts';
import type { BenchResult } from './lib/common.ts';
import { FastOpener, FastSealer } from './lib/hpke.ts';

const A = args();
const QUICK = A.quick;
const B = A.num('batch', 32);
const ROUNDS = QUICK ? 3 : 5;
const BUDGET_MS = QUICK ? 60 : 200;
const M = machine();
const te = new TextEncoder();
const rnd = (n: number) => new Uint8Array(randomBytes(n));

interface Step {
  name: string;
  /** 'op': once per operation; 'batch': once per batch. */
  per: 'op' | 'batch';
  /** Which path: the product's ('now') or a proposed fix's prototype ('fix'), or the baseline ('raw'). */
  path: 'now' | 'fix' | 'raw';
  /** What the step replaces, for 'fix'. */
  replaces?: string;
  fn: (i: number) => unknown;
  calls: number;
  cpu: number[];
  wall: number[];
}
const steps: Step[] = [];
/** `calls`: operations one call of `fn` covers (a whole batch's codec is timed at once). */
const step = (name: string, per: Step['per'], path: Step['path'], fn: Step['fn'], replaces?: string, calls = 1) =>
  steps.push({ name, per, path, fn, cpu: [], wall: [], calls, ...(replaces && { replaces }) });

async function measure(s: Step): Promise<void> {
  let n = 0;
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  while (performance.now() - t0 < BUDGET_MS || n < 3) {
    const r = s.fn(n++);
    if (r instanceof Promise) await r;
  }
  const wall = performance.now() - t0;
  const c = process.cpuUsage(c0);
  s.cpu.push((c.user + c.system) / n / s.calls);
  s.wall.push((wall * 1000) / n / s.calls);
}

// ---- fixtures --------------------------------------------------------------------------------
const dir = mkdtempSync(join(tmpdir(), 'bkv-bench-breakdown-'));
const suite = await fastSuite('ristretto255-SHA512');
const o = { suite, context: DEFAULT_OPAQUE_CONTEXT, rng: rnd, ksf: identityKsf };
const keys = generateServerKeys(suite, rnd);
const rid = te.encode('user-0001@example.org');
const { request: regReq, state: regState } = clientRegistrationStart(o, te.encode('pw'));
const { record: opaqueRecord } = await clientRegistrationFinish(o, regState, te.encode('pw'), serverRegistrationResponse(o, keys, regReq, rid));
const ke1 = clientLoginStart(o, te.encode('pw')).ke1;
const loginReq = encodeMessage(ClientRequests, { type: 'LoginStart', suite: 1, ke1 });

// HPKE: the product's key pair and a prototype's.
const kp = await deriveE2eKeyPair(rnd(32));
const sealer = new FastSealer(kp.publicKey);
const opener = new FastOpener();
const sealer2 = new FastSealer(opener.publicKey);
const POOL = 4096;
const msgs = Array.from({ length: POOL }, () => sealer.seal(rid, loginReq).message);
const msgs2 = Array.from({ length: POOL }, () => sealer2.seal(rid, loginReq).message);
const opened = await openRequest(kp, rid, msgs[0]!, rnd);
const fastOpened = opener.open(rid, msgs2[0]!);
const response = new Uint8Array(380); // LoginStarted: session id, KE2 (320), KSF, attempts

// The vault's token as a booted device leaves it (its keys and NVRAM objects), emulator and SoftHSM2.
async function deviceToken(kind: 'emulator' | 'softhsm') {
  const cfg: HsmConfig = { dataDir: join(dir, kind), partition: 0, partitions: 2, token: kind };
  const platform = buildPlatform(cfg, () => {
    throw new Error('crash');
  });
  await bootFirmware(cfg, platform);
  const cfg1: HsmConfig = { ...cfg, partition: 1 };
  await bootFirmware(cfg1, buildPlatform(cfg1, () => {
    throw new Error('crash');
  }));
  const handles = ensureTokenKeys(platform.token, false);
  return { token: platform.token, sealKey: handles.seal };
}
const tokens: { kind: string; token: Awaited<ReturnType<typeof deviceToken>> }[] = [{ kind: 'emulator', token: await deviceToken('emulator') }];
const softhsmWhy = softhsmUnavailable();
if (!softhsmWhy) tokens.push({ kind: 'softhsm', token: await deviceToken('softhsm') });

const rec: VaultRecord = {
  status: 1,
  suite: 1,
  attemptLimit: 10,
  attemptsUsed: 1,
  registrationId: rnd(16),
  ksf: identityKsf.params,
  opaqueRecord,
  backupKey: rnd(32),
  registeredAt: 1_700_000_000_000,
};
const hash = nodeHash('SHA-256');
const index = new RecordIndex(rnd(32), hash);
const audit = new AuditLog(rnd(32), hash);

// ---- per operation -----------------------------------------------------------------------------
step('raw server: serverLoginStart (the whole raw login)', 'op', 'raw', () => serverLoginStart(o, keys, ke1, rid, opaqueRecord));
step('e2e openRequest (@hpke/core on WebCrypto)', 'op', 'now', (i) => openRequest(kp, rid, msgs[i % POOL]!, rnd));
step('e2e openRequest on node:crypto, synchronous (prototype)', 'op', 'fix', (i) => opener.open(rid, msgs2[i % POOL]!), 'e2e openRequest (@hpke/core on WebCrypto)');
step('e2e sealResponse (WebCrypto AES-GCM)', 'op', 'now', () => opened.sealResponse(response));
step('e2e sealResponse on node:crypto (prototype)', 'op', 'fix', () => opener.sealResponse(fastOpened.responseKey, rid, response, rnd(12)), 'e2e sealResponse (WebCrypto AES-GCM)');
step('client request decode', 'op', 'now', () => decodeMessage(ClientRequests, loginReq));
step('OPAQUE serverLoginStart in the enclave', 'op', 'now', () => serverLoginStart(o, keys, ke1, rid, opaqueRecord));
for (const t of tokens) {
  const blob = seal(t.token.token, t.token.sealKey, rid, { kind: KIND_RECORD, suite: 1, epoch: 1, version: 1 }, rec);
  step(`stored record: leaf check + unseal (${t.kind} token)`, 'op', 'now', () => {
    index.leafOf(rid, blob);
    return unseal(t.token.token, t.token.sealKey, rid, blob);
  });
  step(`charged record: seal + new leaf (${t.kind} token)`, 'op', 'now', () => index.leafOf(rid, seal(t.token.token, t.token.sealKey, rid, { kind: KIND_RECORD, suite: 1, epoch: 2, version: 2 }, rec)));
}
step('audit event: record hash + chained HMAC', 'op', 'now', (i) => audit.next(i, new Uint8Array(32), 0, 2, audit.recordHash(rid), 9));
step('random session id + response nonce', 'op', 'now', () => [rnd(16), rnd(12)]);

// Codec of a batch of B (host <-> device), per operation.
const blob0 = seal(tokens[0]!.token.token, tokens[0]!.token.sealKey, rid, { kind: KIND_RECORD, suite: 1, epoch: 1, version: 1 }, rec);
const batchReq = encodeMessage(HostRequests, { type: 'Batch', epoch: 2, ops: Array.from({ length: B }, (_, i) => ({ opId: i, recordId: rid, stored: blob0, request: msgs[i]! })) });
const ev: AuditEvent = { seq: 1, time: 0, kind: 2, recordHash: new Uint8Array(32), attemptsRemaining: 9, mac: new Uint8Array(32) };
const prepared = encodeMessage(HostResponses, { type: 'Prepared', epoch: 2, writes: Array.from({ length: B }, () => ({ recordId: rid, blob: blob0 })), audit: Array.from({ length: B }, () => ev) });
const committed = encodeMessage(HostResponses, { type: 'Committed', epoch: 2, results: Array.from({ length: B }, (_, i) => ({ opId: i, sealed: 1, response: new Uint8Array(400 + (i & 0)) })) });
const batchObj = decodeMessage(HostRequests, batchReq);
const preparedObj = decodeMessage(HostResponses, prepared);
const committedObj = decodeMessage(HostResponses, committed);
step(`host<->device codec: Batch, Prepared, Committed each encoded once and decoded once, per op at batch ${B}`, 'op', 'now', () => {
  decodeMessage(HostRequests, encodeMessage(HostRequests, batchObj));
  decodeMessage(HostResponses, encodeMessage(HostResponses, preparedObj));
  return decodeMessage(HostResponses, encodeMessage(HostResponses, committedObj));
}, undefined, B);

// ---- per batch ---------------------------------------------------------------------------------
for (const t of tokens) {
  const nv = new TokenNvram(t.token.token as unknown as ConstructorParameters<typeof TokenNvram>[0], `bench-nvram-${t.kind}`, 256);
  step(`NVRAM write as token data objects (${t.kind} token), x2 per batch`, 'batch', 'now', () => {
    // destroy + create of a CKO_DATA object: the emulator rewrites its whole store file durably for each
    nv.write(new Uint8Array(226));
    nv.write(new Uint8Array(226));
  });
}
const fnv = new FileNvram(join(dir, 'nvram-bench.bin'), { size: 256 });
step('NVRAM write to a file per partition (hsm/nvram-file.ts), x2 per batch', 'batch', 'fix', () => {
  fnv.write(new Uint8Array(226));
  fnv.write(new Uint8Array(226));
}, 'NVRAM write as token data objects (emulator token), x2 per batch');
const store = await openStore(undefined, join(dir, 'store'));
let epoch = 0;
let seq = 0;
const ids = Array.from({ length: B }, (_, i) => te.encode(`user-${i}`));
const writes = ids.map((recordId) => ({ recordId, blob: blob0 }));
step(`SQLite getMany ${B} + applyBatch ${B} writes + ${B} audit events`, 'batch', 'now', async () => {
  await store.getMany(0, ids);
  const evs = ids.map(() => ({ ...ev, seq: ++seq }));
  await store.applyBatch(0, ++epoch, writes, evs);
});
const echo = new Worker('const { parentPort } = require("node:worker_threads"); parentPort.on("message", (b) => parentPort.postMessage(b, [b]));', { eval: true });
step('worker round trip (Batch bytes there, Prepared back) x2 per batch', 'batch', 'now', async () => {
  for (let k = 0; k < 2; k++) {
    const b = batchReq.slice().buffer;
    await new Promise((res) => {
      echo.once('message', res);
      echo.postMessage(b, [b]);
    });
  }
});

// ---- run ---------------------------------------------------------------------------------------
console.log(`where an enclave login's time goes: ${machineLine(M)}`);
console.log(`${ROUNDS} interleaved rounds of ${BUDGET_MS} ms per step, median; CPU time of the process per call (wall time beside it); batch of ${B}${softhsmWhy ? `; SoftHSM2 skipped: ${softhsmWhy}` : ''}\n`);
for (const s of steps) await measure(s); // warm-up
for (const s of steps) {
  s.cpu.length = 0;
  s.wall.length = 0;
}
for (let r = 0; r < ROUNDS; r++) for (const s of steps) await measure(s);
await echo.terminate();
await store.close();
rmSync(dir, { recursive: true, force: true });

const med = (s: Step) => ({ cpu: median(s.cpu), wall: median(s.wall) });
const perOp = (s: Step) => (s.per === 'op' ? med(s).cpu : med(s).cpu / B);
const perOpWall = (s: Step) => (s.per === 'op' ? med(s).wall : med(s).wall / B);
const w = Math.max(...steps.map((s) => s.name.length)) + 2;
console.log(`${'step'.padEnd(w)}${'per'.padStart(6)}${'CPU us'.padStart(10)}${'wall us'.padStart(10)}${'CPU us/op'.padStart(11)}${'wall us/op'.padStart(12)}`);
for (const s of steps) {
  const m = med(s);
  console.log(`${(s.path === 'fix' ? `  fix: ${s.name}` : s.name).padEnd(w)}${s.per.padStart(6)}${m.cpu.toFixed(1).padStart(10)}${m.wall.toFixed(1).padStart(10)}${perOp(s).toFixed(1).padStart(11)}${perOpWall(s).toFixed(1).padStart(12)}`);
}
const rawStep = steps.find((s) => s.path === 'raw')!;
const now = steps.filter((s) => s.path === 'now' && !s.name.includes('softhsm'));
const fixes = steps.filter((s) => s.path === 'fix');
const replaced = new Set(fixes.map((f) => f.replaces));
const withFix = [...now.filter((s) => !replaced.has(s.name)), ...fixes];
const sum = (ss: Step[], f: (s: Step) => number) => ss.reduce((a, s) => a + f(s), 0);
const rawUs = perOp(rawStep);
const nowUs = sum(now, perOp);
const fixUs = sum(withFix, perOp);
console.log(`\nper login at batch ${B}, emulator token: enclave path ${nowUs.toFixed(0)} us CPU (${(sum(now, perOpWall)).toFixed(0)} us wall) vs raw ${rawUs.toFixed(0)} us: the boundary, sealing and durable charging cost ${(nowUs - rawUs).toFixed(0)} us (${((100 * (nowUs - rawUs)) / nowUs).toFixed(0)}%)`);
console.log(`with the prototyped fixes: ${fixUs.toFixed(0)} us CPU (${sum(withFix, perOpWall).toFixed(0)} us wall): overhead ${(fixUs - rawUs).toFixed(0)} us (${((100 * (fixUs - rawUs)) / fixUs).toFixed(0)}%); single-thread bound raw/enclave ${(rawUs / fixUs).toFixed(2)}`);

const results: BenchResult[] = steps.map((s) => ({
  name: `breakdown: ${s.path === 'fix' ? 'fix: ' : ''}${s.name}`,
  group: 'enclave login, cost per step',
  kind: s.path === 'raw' ? 'ours' : 'other',
  opsPerSec: Math.round(1e6 / med(s).cpu),
  cpuUs: round(med(s).cpu, 1),
  wallUs: round(med(s).wall, 1),
  per: s.per,
  cpuUsPerOp: round(perOp(s), 1),
  path: s.path,
}));
emit(
  {
    subsystem: 'breakdown',
    quick: QUICK,
    machine: M,
    results,
    ratios: { breakdownRawOverEnclave: round(rawUs / nowUs, 3), breakdownRawOverEnclaveWithFixes: round(rawUs / fixUs, 3) },
    figures: { enclaveLoginCpuUs: round(nowUs, 1), enclaveLoginCpuUsWithFixes: round(fixUs, 1), rawLoginCpuUs: round(rawUs, 1), batch: B },
    notes: [`per-step CPU time at batch ${B}, emulator token; 'fix' rows are prototypes of proposed product fixes, measured, not in the product`],
  },
  A.json,
);
process.exit(0);
