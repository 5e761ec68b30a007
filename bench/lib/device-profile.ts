/**
 * One partition's device in this thread (hsm/runner.ts buildPlatform + bootFirmware, no worker),
 * behind the real group-commit engine and SQLite: how much time one enclave login (or KE3 check)
 * costs inside the device, with an optional CPU profile of the timed window. A tool for finding
 * per-operation costs, not a benchmark of record (bench/enclave.ts is).
 *
 *   npx tsx bench/lib/device-profile.ts [--op login|ke3] [--ms 3000] [--records 1024]
 *        [--nvram file|token] [--token emulator|softhsm] [--concurrency 128]
 *        [--prof FILE.cpuprofile [--incl REGEX]] [--heap [--heap-steps REGEX]] [--ab]
 *
 * The device is provisioned with a bench issuer (bench/lib/auth.ts) and every operation carries
 * its record's token (one per record, reused), so the token check is in the device's time.
 * Prints ops/s, the device's time per operation (wall time inside enclave.request, which is
 * synchronous work on this thread), the process's CPU time per operation (this thread, other
 * threads: GC helpers, JIT) and the garbage collections of this thread. --prof writes and
 * summarizes a CPU profile of the window; --heap samples allocations (collected ones included)
 * by allocating function (--heap-steps: also by step, each allocation counted to the innermost
 * calling function whose name matches REGEX, e.g. 'openRequestSync|serverLoginStart|seal|unseal|next|put'); --ab then times serverLoginStart with raw keys and with the enclave's
 * derived keys and random source, interleaved, in this heap (the enclave/raw OPAQUE question).
 * For all of GC on this thread: `node --single-threaded --import tsx bench/lib/device-profile.ts`.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { base64url, encodeAuthConfig } from '../../enclave/api/auth.ts';
import { DEFAULT_OPAQUE_CONTEXT, SUITE_CODE } from '../../enclave/api/messages.ts';
import { clientLoginFinish, clientLoginStart, clientRegistrationFinish, clientRegistrationStart } from '../../enclave/opaque/client.ts';
import { identityKsf } from '../../enclave/opaque/ksf.ts';
import { fastSuite } from '../../enclave/opaque/suites-fast.ts';
import { bootFirmware, buildPlatform } from '../../hsm/runner.ts';
import type { CheckedConfig } from '../../hsm/runner.ts';
import { openStore } from '../../host/storage/index.ts';
import { parseTokenKind } from '../../hsm/tokens/backends.ts';
import { PartitionEngine } from '../../host/vault/engine.ts';
import { BenchTokens } from './auth.ts';
import { ROOT, args } from './common.ts';
import { threadTimes } from './threads.ts';
import { printSummary, profileWindow, summarize } from './cpuprofile.ts';
import { ClientKit, bulkRegister, closedLoop, decodeAnswer, rng } from './vault-load.ts';
import type { Prepared } from './vault-load.ts';
import { expectResponse } from '../../enclave/api/expect.ts';

const A = args();
const OP = A.get('op') ?? 'login';
const MS = A.num('ms', 3000);
// Logins are never finished and a record holds at most 16 open login sessions (120 s each).
const RECORDS = A.num('records', 1024);
const CONC = A.num('concurrency', 128);
const te = new TextEncoder();

const dir = mkdtempSync(join(tmpdir(), 'bkv-device-profile-'));
const nvram = A.get('nvram') as 'file' | 'token' | undefined;
const tokens = await BenchTokens.create();
const cfg: CheckedConfig = {
  dataDir: dir,
  partition: 0,
  partitions: 1,
  token: parseTokenKind(A.get('token')),
  auth: base64url(encodeAuthConfig(tokens.config)),
  ...(nvram && { nvram }),
};
const platform = buildPlatform(cfg, () => {
  throw new Error('crash');
});
const enclave = await bootFirmware(cfg, platform);
let inDevice = 0;
let calls = 0;
const channel = {
  async request(b: Uint8Array): Promise<Uint8Array> {
    const t0 = performance.now();
    const r = await enclave.request(b);
    inDevice += performance.now() - t0;
    calls++;
    return r;
  },
};
const store = await openStore(undefined, join(dir, 'store'));
const engine = new PartitionEngine(channel, store, 0);
const info = await engine.start();
const suite = await fastSuite('ristretto255-SHA512');
const kit = new ClientKit(suite, info.hpkePublicKey, DEFAULT_OPAQUE_CONTEXT, tokens);
const submit = (id: Uint8Array, m: Uint8Array) => engine.submit(id, m);
const o = { suite, context: DEFAULT_OPAQUE_CONTEXT, rng, ksf: identityKsf };

async function registerReal(id: Uint8Array, pw: Uint8Array): Promise<void> {
  const { request, state } = clientRegistrationStart(o, pw);
  const p = kit.prepare(id, { type: 'RegisterStart', suite: SUITE_CODE[suite.id], request, attemptLimit: 255, ksf: identityKsf.params, pacing: 0 });
  const a = expectResponse(decodeAnswer(p, await submit(id, p.message)), 'RegisterStarted', 'registration');
  const { record } = await clientRegistrationFinish(o, state, pw, a.response);
  const f = kit.prepare(id, { type: 'RegisterFinish', stageId: a.stageId, record, backupKey: new Uint8Array(32).fill(1), authorization: undefined });
  expectResponse(decodeAnswer(f, await submit(id, f.message)), 'Registered', 'registration finish');
}

let msgs: Prepared[];
if (OP === 'ke3') {
  const ids = Array.from({ length: RECORDS }, (_, i) => te.encode(`real-${i}`));
  await Promise.all(ids.map((id, i) => registerReal(id, te.encode(`pw-${i}`))));
  const n = Math.min(RECORDS, 4000);
  msgs = [];
  const starts = ids.slice(0, n).map((id, i) => {
    const pw = te.encode(`pw-${i}`);
    const { ke1, state } = clientLoginStart(o, pw);
    return { id, pw, state, p: kit.prepare(id, { type: 'LoginStart', suite: SUITE_CODE[suite.id], ke1 }) };
  });
  const answers = await Promise.all(starts.map((s) => submit(s.id, s.p.message)));
  for (const [i, s] of starts.entries()) {
    const a = expectResponse(decodeAnswer(s.p, answers[i]!), 'LoginStarted', 'LoginStart');
    const fin = await clientLoginFinish(o, s.state, s.pw, a.ke2);
    if (!fin.ok) throw new Error('client login failed');
    msgs.push(kit.prepare(s.id, { type: 'LoginFinish', sessionId: a.sessionId, ke3: fin.ke3 }));
  }
} else {
  const record = await kit.sampleRecord(submit, te.encode('sample'), te.encode('pw'));
  const ids = Array.from({ length: RECORDS }, (_, i) => te.encode(`bench-${i}`));
  const reg = await bulkRegister(kit, submit, ids, record, { inFlight: 256 });
  if (reg.failures) throw new Error(`${reg.failures} registrations failed`);
  const n = Math.ceil((MS / 1000) * 4000);
  msgs = Array.from({ length: n }, (_, i) => kit.loginStart(ids[i % ids.length]!, i));
  await closedLoop(submit, msgs.splice(0, 2000), CONC, 500); // warm-up
}

inDevice = 0;
calls = 0;
const gcStats = new Map<string, { n: number; ms: number }>();
const { PerformanceObserver, constants: pc } = await import('node:perf_hooks');
const gcKinds: Record<number, string> = { [pc.NODE_PERFORMANCE_GC_MAJOR]: 'major', [pc.NODE_PERFORMANCE_GC_MINOR]: 'minor', [pc.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental', [pc.NODE_PERFORMANCE_GC_WEAKCB]: 'weakcb' };
const gcObs = new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    const k = gcKinds[(e as unknown as { detail: { kind: number } }).detail.kind] ?? 'other';
    const g = gcStats.get(k) ?? { n: 0, ms: 0 };
    g.n++;
    g.ms += e.duration;
    gcStats.set(k, g);
  }
});
gcObs.observe({ entryTypes: ['gc'] });
const th0 = threadTimes();
const c0 = process.cpuUsage();
const run = () => closedLoop(submit, msgs, CONC, OP === 'ke3' ? 60_000 : MS);
const prof = A.get('prof');
let out: Awaited<ReturnType<typeof run>>;
if (A.has('heap')) {
  // Sampled allocations (collected ones included), by allocating function: who makes the garbage.
  const { Session } = await import('node:inspector/promises');
  const s = new Session();
  s.connect();
  await s.post('HeapProfiler.enable');
  await s.post('HeapProfiler.startSampling', { samplingInterval: 4096, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true } as never);
  out = await run();
  const { profile } = (await s.post('HeapProfiler.stopSampling')) as unknown as { profile: { head: HeapNode } };
  s.disconnect();
  interface HeapNode { callFrame: { functionName: string; url: string; lineNumber: number }; selfSize: number; children: HeapNode[] }
  const by = new Map<string, number>();
  let total = 0;
  // A script's path from the project's root (its url is file:// and absolute).
  const rel = (url: string) => url.replace(/^file:\/\//, '').replace(`${ROOT}/`, '');
  const name = (n: HeapNode) => `${n.callFrame.functionName || '(anon)'} ${rel(n.callFrame.url)}:${n.callFrame.lineNumber + 1}`;
  const walk = (n: HeapNode, parent?: HeapNode) => {
    let k = name(n);
    // Builtins (no url) are named with their caller.
    if (!n.callFrame.url && parent) k = `${k} <- ${name(parent)}`;
    by.set(k, (by.get(k) ?? 0) + n.selfSize);
    total += n.selfSize;
    for (const c of n.children) walk(c, n);
  };
  walk(profile.head);
  const stepRe = A.get('heap-steps') ? new RegExp(A.get('heap-steps')!) : null;
  if (stepRe) {
    const bySteps = new Map<string, number>();
    const walk2 = (n: HeapNode, step: string) => {
      const nm = n.callFrame.functionName;
      const st = nm && stepRe.test(nm) ? `${nm} ${rel(n.callFrame.url)}` : step;
      bySteps.set(st, (bySteps.get(st) ?? 0) + n.selfSize);
      for (const c of n.children) walk2(c, st);
    };
    walk2(profile.head, '(other)');
    console.log(`by step (the innermost caller matching ${stepRe.source}), bytes per op:`);
    for (const [k, v] of [...bySteps].sort((a, b) => b[1] - a[1]).slice(0, 40)) console.log(`  ${(v / out.ops).toFixed(0).padStart(7)}  ${k}`);
  }
  console.log(`allocated ~${(total / out.ops / 1024).toFixed(1)} KiB per op (sampled); top allocators, bytes per op:`);
  for (const [k, v] of [...by].sort((a, b) => b[1] - a[1]).slice(0, 30)) console.log(`  ${(v / out.ops).toFixed(0).padStart(7)}  ${k}`);
} else {
  out = prof ? await profileWindow(prof, run) : await run();
}
const cpu = process.cpuUsage(c0);
const th1 = threadTimes();
let mainMs = 0;
let otherMs = 0;
for (const [tid, t] of th1) {
  if (tid === -1) continue;
  const d = t - (th0.get(tid) ?? 0);
  if (tid === process.pid) mainMs += d;
  else otherMs += d;
}
console.log(`${OP}: ${out.ops} ops in ${out.ms.toFixed(0)} ms = ${out.opsPerSec.toFixed(0)}/s; in the device ${((inDevice * 1000) / out.ops).toFixed(0)} us/op (${calls} calls); process CPU ${((cpu.user + cpu.system) / out.ops).toFixed(0)} us/op (this thread ${((mainMs * 1000) / out.ops).toFixed(0)}, other threads ${((otherMs * 1000) / out.ops).toFixed(0)}); answers ${JSON.stringify(out.answers)}`);
if (A.has('ab')) {
  const { generateServerKeys, serverLoginStart, serverRegistrationResponse } = await import('../../enclave/opaque/server.ts');
  const { ensureTokenKeys, deriveEnclaveKeys } = await import('../../enclave/vault/keys.ts');
  const rawKeys = generateServerKeys(suite, rng);
  const h = ensureTokenKeys(platform.token, false);
  const ek = (await deriveEnclaveKeys(platform.token, h, new Map([[suite.id, suite]]))).server.get(suite.id)!;
  const rid = te.encode('ab-user');
  const { request, state } = clientRegistrationStart(o, te.encode('pw'));
  const rec1 = (await clientRegistrationFinish(o, state, te.encode('pw'), serverRegistrationResponse(o, rawKeys, request, rid))).record;
  const { request: r2, state: s2 } = clientRegistrationStart(o, te.encode('pw'));
  const rec2 = (await clientRegistrationFinish(o, s2, te.encode('pw'), serverRegistrationResponse(o, ek, r2, rid))).record;
  const ke1 = clientLoginStart(o, te.encode('pw')).ke1;
  const cases: [string, () => unknown][] = [
    ['raw keys, rnd', () => serverLoginStart(o, rawKeys, ke1, rid, rec1)],
    ['enclave keys, rnd', () => serverLoginStart(o, ek, ke1, rid, rec2)],
    ['enclave keys, platform rng', () => serverLoginStart({ ...o, rng: platform.random }, ek, ke1, rid, rec2)],
  ];
  for (let r = 0; r < 3; r++) for (const [name, f] of cases) {
    const c0 = process.cpuUsage(); const t0 = performance.now(); let n = 0;
    while (performance.now() - t0 < 700) { f(); n++; }
    const c = process.cpuUsage(c0);
    console.log(`  ${name}: ${((c.user + c.system) / n).toFixed(0)} us cpu`);
  }
}
await new Promise((r) => setTimeout(r, 50));
gcObs.disconnect();
console.log(`GC on this thread: ${[...gcStats].map(([k, g]) => `${k} ${g.n}x ${((g.ms * 1000) / out.ops).toFixed(0)} us/op`).join(', ')}; heap used ${(process.memoryUsage().heapUsed / 2 ** 20).toFixed(0)} MiB`);
if (prof) printSummary(summarize(prof, { top: 40, inclusive: A.get('incl') ? new RegExp(A.get('incl')!) : undefined }));
await engine.close();
await store.close();
for (const x of [dir, `${dir}.operator`]) rmSync(x, { recursive: true, force: true });
process.exit(0);
