/**
 * OPAQUE server throughput per core (RFC 9807 §5.2.2 registration response, §6.2.2 KE1→KE2,
 * §6.2.4 KE3 check, §6.3.2.2 fake-record KE2) for both suites and both of our backends (the fast
 * server suite and the portable @noble one), side by side with @serenity-kit/opaque and
 * @serenity-kit/opaque-p256 (opaque-ke in WebAssembly) and with the multiplication floor of a
 * login (4 variable-base + 1 base multiplications): for ristretto255 on libsodium's WebAssembly
 * build and on native libsodium (bare engine calls, where the library loads), for P-256 on the
 * fast backend. Targets: ristretto255 login ≥ 4x serenity and ≥ 85% of the native floor.
 *
 * Run: npx tsx bench/opaque.ts [--quick] [--json FILE]   (or through the runner: npm run bench)
 *
 * The peers are loaded from bench/peers (their own package.json and lockfile, pinned at 1.1.0;
 * `npm ci --prefix bench/peers`, which bench/run.ts does on first use). --quick measures only
 * the fast backend, the peers and the floor (no @noble backend, no fake-record KE2).
 *
 * Method: every contestant is warmed up, then timed in several rounds of fixed duration
 * (5 × 1 s, --quick 3 × 0.3 s). A round's time per contestant is cut into 100 ms slices and the
 * slices of all contestants are interleaved, in a new pseudo-random order for every slice, so a
 * burst of machine noise hits them alike and the collection of one contestant's garbage (the
 * KE3 check makes a great deal) falls on all others evenly rather than on its usual successor.
 * (A forced full collection between slices was tried and dropped: it slowed the JavaScript-heavy
 * contestants by 10-30% relative to the WebAssembly ones.) The reported figure is the median
 * round. Each ratio is printed with its range over rounds and the median of the same ratio taken
 * slice pass by slice pass (the two slices at most a couple of seconds apart).
 *
 * The clock is the process's CPU time (user + system), so that time spent descheduled on a
 * shared machine is not counted; the wall-clock figure is printed beside it. Neither removes the
 * slowdown a busy sibling hyperthread or shared cache causes: compare figures within one run.
 * One thread, so ops/s is per core.
 *
 * Inputs (registration requests, KE1s, records) are made beforehand by the serenity client and
 * fed to both servers, which hold the same keys; 16 KE1s and 4 records are cycled. Serenity's
 * API takes and returns base64url strings: that conversion is part of its cost as a library and
 * is included.
 *
 * Writes bench/results/opaque-latest.json (or --json FILE): the runner's format, with the ratio
 * ranges over rounds and the paired medians under `detail`.
 */
import { randomFillSync } from 'node:crypto';
import { availableParallelism, cpus, loadavg } from 'node:os';
import type * as SerenityModule from '@serenity-kit/opaque';
import { args, emit, loadPeer, machine as machineInfo, round } from './lib/common.ts';
import type { BenchResult } from './lib/common.ts';
import { median } from './lib/stats.ts';
import { type RandomSource, pooledRandom, utf8 } from '../enclave/opaque/bytes.ts';
import {
  type FakeRecord, type ServerKeys, type ServerLoginState, generateFakeRecord, generateServerKeys, serverLoginFinish,
  serverLoginStart, serverLoginStateDecode, serverLoginStateEncode, serverRegistrationResponse,
} from '../enclave/opaque/server.ts';
import type { Suite, SuiteId } from '../enclave/opaque/suite.ts';
import { makeSuite } from '../enclave/opaque/suite.ts';
import { loadNativeSodium } from '../enclave/opaque/groups/sodium-native.ts';
import type { NativeEngine } from '../enclave/opaque/groups/sodium-native.ts';
import { createSodiumRistretto255 } from '../enclave/opaque/groups/sodium-ristretto255.ts';
import { createSodiumSha512 } from '../enclave/opaque/hash-sodium.ts';
import { fastSuite } from '../enclave/opaque/suites-fast.ts';
import { portableSuite } from '../enclave/opaque/suites-portable.ts';

const ARGS = args();
const QUICK = ARGS.quick;
const ROUNDS = QUICK ? 3 : 5;
const ROUND_MS = QUICK ? 300 : 1000;
const SLICES = QUICK ? 3 : ROUND_MS / 100;
// Quick runs keep the full warm-up: with 80 ms our JavaScript-heavy server was still unoptimized (1.89x vs 2.26x in a full run).
const WARMUP_MS = 500;
/** Iterations between clock reads are sized so that one chunk takes about this long. */
const CHUNK_MS = 5;

type Peer = typeof SerenityModule;
/**
 * Our servers draw from the same source as in production (hsm/runner.ts): node:crypto's CSPRNG
 * through pooledRandom (4 KiB refills, each draw copied out and wiped from the pool).
 */
const rng: RandomSource = pooledRandom((b) => void randomFillSync(b));
const b64 = (b: Uint8Array): string => Buffer.from(b).toString('base64url');
const unb64 = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'base64url'));
const EMPTY = new Uint8Array(0);
/** Key stretching for making bench inputs only (the server never stretches): cheap Argon2id. */
const CHEAP_KSF = { 'argon2id-custom': { iterations: 1, memory: 64, parallelism: 1 } };

interface Contestant {
  name: string;
  /** Called outside the timed region before a chunk of `n` steps (for single-use inputs). */
  prepare?: (n: number) => void;
  step: (i: number) => void;
  chunk: number;
  /** Per round: operations, and the timed nanoseconds of process CPU time and of wall-clock time. */
  rounds: Sample[];
  /** Per pass (one 100 ms slice of every contestant, in random order). */
  passes: Sample[];
}
interface Sample { ops: number; ns: number; wallNs: number }

const contestants: Contestant[] = [];
const add = (name: string, step: (i: number) => void, prepare?: (n: number) => void): void => {
  contestants.push({ name, step, prepare, chunk: 1, rounds: [], passes: [] });
};

/**
 * Runs `c` for about `ms` milliseconds of timed work. The figure used is the process's CPU time
 * (user + system) over the timed chunks: on a shared machine, time spent descheduled while other
 * processes run is not counted, which wall-clock time would charge to whoever was running.
 */
function runFor(c: Contestant, ms: number): Sample {
  let ops = 0;
  let ns = 0;
  let wallNs = 0;
  const budget = ms * 1e6;
  while (wallNs < budget) {
    const n = c.chunk;
    c.prepare?.(n);
    const c0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) c.step(ops + i);
    wallNs += Number(process.hrtime.bigint() - t0);
    const c1 = process.cpuUsage(c0);
    ns += (c1.user + c1.system) * 1e3;
    ops += n;
  }
  return { ops, ns, wallNs };
}

function warmUp(c: Contestant): void {
  const r = runFor(c, WARMUP_MS);
  c.chunk = Math.max(1, Math.round((r.ops * CHUNK_MS) / (r.wallNs / 1e6)));
}

const opsPerSec = (c: Contestant): number => median(c.rounds.map((r) => (r.ops * 1e9) / r.ns));
const opsPerWallSec = (c: Contestant): number => median(c.rounds.map((r) => (r.ops * 1e9) / r.wallNs));

// ---------------------------------------------------------------------------------------------
// Inputs and contestants

interface SuiteInputs {
  id: SuiteId;
  short: string;
  peer: Peer;
  pkg: string;
  setup: string;
  cids: string[];
  records: string[];
  ke1s: string[];
  regRequests: string[];
  /** A finished login made by their client against our fast server: encoded state and KE3. */
  finish: { state: Uint8Array; ke3: Uint8Array };
}

/** Their setup string holding our keys: oprf_seed || server_private_key || fake-record public key. */
function setupFromKeys(suite: Suite, keys: ServerKeys): string {
  return b64(Uint8Array.from([...keys.oprfSeed, ...keys.serverPrivateKey, ...generateFakeRecord(suite, rng).clientPublicKey]));
}

const copyKeys = (k: ServerKeys): ServerKeys => ({ oprfSeed: k.oprfSeed.slice(), serverPrivateKey: k.serverPrivateKey.slice(), serverPublicKey: k.serverPublicKey.slice() });

function makeInputs(id: SuiteId, short: string, peer: Peer, pkg: string, suite: Suite, keys: ServerKeys): SuiteInputs {
  const setup = setupFromKeys(suite, keys);
  const cids = ['alice@example.org', 'bob@example.org', 'carol@example.org', 'dave@example.org'];
  const records = cids.map((userIdentifier, i) => {
    const password = `password ${i}`;
    const start = peer.client.startRegistration({ password });
    const { registrationResponse } = peer.server.createRegistrationResponse({ serverSetup: setup, userIdentifier, registrationRequest: start.registrationRequest });
    return peer.client.finishRegistration({ clientRegistrationState: start.clientRegistrationState, registrationResponse, password, keyStretching: CHEAP_KSF }).registrationRecord;
  });
  const logins = Array.from({ length: 16 }, (_, i) => ({ i, ...peer.client.startLogin({ password: `password ${i % 4}` }) }));
  const regRequests = Array.from({ length: 16 }, () => peer.client.startRegistration({ password: 'x' }).registrationRequest);

  // Sanity: our fast server's KE2 for every KE1 is accepted by their client, and the KE3 by ours.
  const o = { suite, context: EMPTY, rng };
  let finish: SuiteInputs['finish'] | undefined;
  for (const l of logins) {
    const s = serverLoginStart(o, keys, unb64(l.startLoginRequest), utf8(cids[l.i % 4]!), unb64(records[l.i % 4]!));
    const fin = peer.client.finishLogin({ clientLoginState: l.clientLoginState, loginResponse: b64(s.ke2), password: `password ${l.i % 4}`, keyStretching: CHEAP_KSF });
    if (!fin) throw new Error(`${id}: their client rejected our KE2`);
    const ke3 = unb64(fin.finishLoginRequest);
    if (finish) {
      if (!serverLoginFinish(o, s.state, ke3).ok) throw new Error(`${id}: our server rejected their KE3`);
    } else {
      finish = { state: serverLoginStateEncode(s.state), ke3 };
      if (!serverLoginFinish(o, serverLoginStateDecode(suite, finish.state), ke3).ok) throw new Error(`${id}: our server rejected their KE3`);
    }
  }
  return { id, short, peer, pkg, setup, cids, records, ke1s: logins.map((l) => l.startLoginRequest), regRequests, finish: finish! };
}

function addOurs(inp: SuiteInputs, label: string, suite: Suite, keys: ServerKeys, full = true): void {
  const o = { suite, context: EMPTY, rng };
  const cids = inp.cids.map(utf8);
  const records = inp.records.map(unb64);
  const ke1s = inp.ke1s.map(unb64);
  const reqs = inp.regRequests.map(unb64);
  const fake: FakeRecord = generateFakeRecord(suite, rng);
  const nobody = utf8('nobody');
  add(`${inp.short} ${label}: registration response`, (i) => {
    serverRegistrationResponse(o, keys, reqs[i & 15]!, cids[i & 3]!);
  });
  add(`${inp.short} ${label}: login KE1->KE2`, (i) => {
    serverLoginStart(o, keys, ke1s[i & 15]!, cids[i & 3]!, records[i & 3]!);
  });
  let states: ServerLoginState[] = [];
  if (full) add(
    `${inp.short} ${label}: KE3 check`,
    (i) => {
      const r = serverLoginFinish(o, states[i % states.length]!, inp.finish.ke3);
      if (!r.ok) throw new Error('KE3 rejected');
    },
    (n) => {
      states = Array.from({ length: n }, () => serverLoginStateDecode(suite, inp.finish.state));
    },
  );
  if (full) {
    add(`${inp.short} ${label}: fake-record KE2`, (i) => {
      serverLoginStart(o, keys, ke1s[i & 15]!, nobody, null, fake);
    });
  }
}

function addTheirs(inp: SuiteInputs): void {
  const { peer, setup } = inp;
  add(`${inp.short} ${inp.pkg}: registration response`, (i) => {
    peer.server.createRegistrationResponse({ serverSetup: setup, userIdentifier: inp.cids[i & 3]!, registrationRequest: inp.regRequests[i & 15]! });
  });
  add(`${inp.short} ${inp.pkg}: login KE1->KE2`, (i) => {
    peer.server.startLogin({ serverSetup: setup, userIdentifier: inp.cids[i & 3]!, registrationRecord: inp.records[i & 3]!, startLoginRequest: inp.ke1s[i & 15]! });
  });
}

/** The multiplications a floor times: the group's own (checks included) or bare engine calls. */
interface FloorOps {
  mult(k: Uint8Array, e: Uint8Array): unknown;
  multBase(k: Uint8Array): unknown;
}

/** 4 variable-base + 1 base multiplications with the login's own elements and fresh scalars. */
function addFloor(inp: SuiteInputs, label: string, suite: Suite, ops?: FloorOps): void {
  const g = suite.group;
  const o: FloorOps = ops ?? { mult: (k, e) => g.scalarMult(k, e, 'e'), multBase: (k) => g.scalarMultBase(k) };
  const scalars = Array.from({ length: 16 }, () => g.randomScalar(rng));
  const points: Uint8Array[] = [];
  for (const k of inp.ke1s.map(unb64)) points.push(k.subarray(0, g.elementLen).slice(), k.subarray(k.length - g.elementLen).slice());
  for (const r of inp.records.map(unb64)) points.push(r.subarray(0, g.elementLen).slice());
  add(`${inp.short} floor (${label}): 4 scalarMult + 1 scalarMultBase`, (i) => {
    for (let j = 0; j < 4; j++) o.mult(scalars[(i + j) & 15]!, points[(4 * i + j) % points.length]!);
    o.multBase(scalars[(i + 7) & 15]!);
  });
}

const native = await loadNativeSodium();
const nativeEngine = native.engine;
if (!nativeEngine) console.log(`native libsodium not loaded (${native.reason}): no native floor`);

// ---------------------------------------------------------------------------------------------

const peerR = await loadPeer<Peer>('@serenity-kit/opaque');
const peerP = await loadPeer<Peer>('@serenity-kit/opaque-p256');
const serenityRistretto = peerR.mod;
const serenityP256 = peerP.mod;
await Promise.all([serenityRistretto.ready, serenityP256.ready]);
const pkgVersion = (p: string): string => (p === '@serenity-kit/opaque' ? peerR.version : peerP.version);

const SUITES: { id: SuiteId; short: string; peer: Peer; pkg: string }[] = [
  { id: 'ristretto255-SHA512', short: 'r255', peer: serenityRistretto, pkg: 'serenity' },
  { id: 'P256-SHA256', short: 'p256', peer: serenityP256 as Peer, pkg: 'serenity-p256' },
];

const backendNames: string[] = [];
for (const s of SUITES) {
  const fast = await fastSuite(s.id);
  const portable = portableSuite(s.id);
  const keys = generateServerKeys(fast, rng);
  const inp = makeInputs(s.id, s.short, s.peer, s.pkg, fast, keys);
  addOurs(inp, 'ours/fast', fast, keys, !QUICK);
  if (!QUICK) addOurs(inp, 'ours/noble', portable, copyKeys(keys));
  addTheirs(inp);
  if (s.id === 'ristretto255-SHA512') {
    // Both libsodium floors side by side: the WebAssembly build and, where it loads, the native one.
    const h = await createSodiumSha512();
    addFloor(inp, 'sodium-wasm', makeSuite(s.id, await createSodiumRistretto255(h), h));
    // Bare native libsodium calls (the engine of groups/sodium-native.ts, no checks): the machine's floor.
    if (nativeEngine) addFloor(inp, 'sodium-native', fast, nativeEngine);
    // With native SHA-512 the suite's default, the same group with the WebAssembly SHA-512 beside it.
    if (!QUICK && nativeEngine && fast.hash.backend !== h.backend) {
      addOurs(inp, 'ours/wasm-sha512', makeSuite(s.id, await createSodiumRistretto255(h, { native: nativeEngine }), h), copyKeys(keys), false);
    }
  } else addFloor(inp, fast.group.backend, fast);
  backendNames.push(
    `${s.id}: ours/fast = ${fast.group.backend} + ${fast.hash.backend ?? 'node:crypto'} ${fast.hash.name}`,
    ...(QUICK ? [] : [`${s.id}: ours/noble = ${portable.group.backend} + ${portable.hash.backend ?? '@noble/hashes'} ${portable.hash.name}`]),
    `${s.id}: ${s.pkg} = ${s.id === 'P256-SHA256' ? '@serenity-kit/opaque-p256' : '@serenity-kit/opaque'} ${pkgVersion(s.id === 'P256-SHA256' ? '@serenity-kit/opaque-p256' : '@serenity-kit/opaque')} (opaque-ke, WebAssembly)`,
  );
}

const machine = {
  cpu: cpus()[0]?.model ?? 'unknown',
  logicalCores: cpus().length,
  availableParallelism: availableParallelism(),
  node: process.version,
  platform: `${process.platform}/${process.arch}`,
  loadavgAtStart: loadavg().map((x) => Number(x.toFixed(2))),
  date: new Date().toISOString(),
  method: `${ROUNDS} rounds x ${ROUND_MS} ms per contestant in 100 ms slices, interleaved in random order, median round, after ${WARMUP_MS} ms warm-up; one thread; ops/s and µs/op on process CPU time (opsPerWallSec on wall-clock time); runs = timed operations over all rounds`,
  backends: backendNames,
};

console.log(`CPU: ${machine.cpu} (${machine.logicalCores} logical, ${machine.availableParallelism} available)`);
console.log(`Node ${machine.node} ${machine.platform}, load average ${machine.loadavgAtStart.join(' ')}`);
console.log(`backends:\n${backendNames.map((b) => `  ${b}`).join('\n')}`);
console.log(`method: ${machine.method}${QUICK ? ' (--quick)' : ''}\n`);

for (const c of contestants) warmUp(c);
/** A fixed-seed shuffle (xorshift32), so that every run visits the contestants in the same orders. */
let seed = 0x9e3779b9;
function shuffled<T>(xs: readonly T[]): T[] {
  const out = [...xs];
  for (let i = out.length - 1; i > 0; i--) {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    const j = (seed >>> 0) % (i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

for (let r = 0; r < ROUNDS; r++) {
  for (const c of contestants) c.rounds.push({ ops: 0, ns: 0, wallNs: 0 });
  for (let sl = 0; sl < SLICES; sl++) {
    for (const c of shuffled(contestants)) {
      const t = runFor(c, ROUND_MS / SLICES);
      c.rounds[r]!.ops += t.ops;
      c.rounds[r]!.ns += t.ns;
      c.rounds[r]!.wallNs += t.wallNs;
      c.passes.push(t);
    }
  }
}

const results = contestants.map((c) => {
  const ops = opsPerSec(c);
  return {
    name: c.name, opsPerSec: Math.round(ops), usPerOp: Number((1e6 / ops).toFixed(2)), runs: c.rounds.reduce((a, r) => a + r.ops, 0),
    opsPerWallSec: Math.round(opsPerWallSec(c)),
  };
});
const find = (name: string): Contestant => {
  const c = contestants.find((x) => x.name === name);
  if (!c) throw new Error(`no result ${name}`);
  return c;
};
const get = (name: string): number => opsPerSec(find(name));
const rate = (x: Sample): number => x.ops / x.ns;
/** The ratio a/b of ops/s in each round. */
const perRound = (a: string, b: string): number[] => find(a).rounds.map((ra, i) => rate(ra) / rate(find(b).rounds[i]!));
/** The median over passes of the ratio a/b within a pass (slices at most a couple of seconds apart). */
const pairedMedian = (a: string, b: string): number => median(find(a).passes.map((pa, i) => rate(pa) / rate(find(b).passes[i]!)));

const w = Math.max(...results.map((r) => r.name.length)) + 2;
console.log(`${'name'.padEnd(w)}${'ops/s'.padStart(10)}${'µs/op'.padStart(11)}${'runs'.padStart(10)}${'ops/s wall'.padStart(12)}`);
for (const r of results) {
  const us = r.usPerOp.toFixed(r.usPerOp < 10 ? 2 : 1);
  console.log(`${r.name.padEnd(w)}${String(r.opsPerSec).padStart(10)}${us.padStart(11)}${String(r.runs).padStart(10)}${String(r.opsPerWallSec).padStart(12)}`);
}

interface Ratio { value: number; unit: 'x' | '%'; roundMin: number; roundMax: number; pairedMedian: number; target?: number; met?: boolean }
const ratios: Record<string, Ratio> = {};
/** ops/s of `a` over ops/s of `b` (median rounds), as a factor or a percentage, with an optional minimum. */
const ratio = (key: string, a: string, b: string, unit: 'x' | '%', target?: number): void => {
  const f = unit === '%' ? 100 : 1;
  const rounds = perRound(a, b).map((x) => x * f);
  const value = (f * get(a)) / get(b);
  const r: Ratio = { value, unit, roundMin: Math.min(...rounds), roundMax: Math.max(...rounds), pairedMedian: f * pairedMedian(a, b) };
  ratios[key] = target === undefined ? r : { ...r, target, met: value >= target };
};
const LOGIN = 'login KE1->KE2';
const REG = 'registration response';
const p256Floor = `p256 floor (${(await fastSuite('P256-SHA256')).group.backend}): 4 scalarMult + 1 scalarMultBase`;
ratio('r255 login ours/fast vs serenity', `r255 ours/fast: ${LOGIN}`, `r255 serenity: ${LOGIN}`, 'x', 4.0);
ratio('r255 login ours/fast vs floor', `r255 ours/fast: ${LOGIN}`, 'r255 floor (sodium-wasm): 4 scalarMult + 1 scalarMultBase', '%');
if (!QUICK && results.some((r) => r.name === `r255 ours/wasm-sha512: ${LOGIN}`)) ratio('r255 login ours/fast vs ours/wasm-sha512', `r255 ours/fast: ${LOGIN}`, `r255 ours/wasm-sha512: ${LOGIN}`, '%');
if (nativeEngine) ratio('r255 login ours/fast vs native floor', `r255 ours/fast: ${LOGIN}`, 'r255 floor (sodium-native): 4 scalarMult + 1 scalarMultBase', '%', 85);
ratio('p256 login ours/fast vs serenity-p256', `p256 ours/fast: ${LOGIN}`, `p256 serenity-p256: ${LOGIN}`, 'x', 2.0);
ratio('p256 login ours/fast vs floor', `p256 ours/fast: ${LOGIN}`, p256Floor, '%');
ratio('r255 registration ours/fast vs serenity', `r255 ours/fast: ${REG}`, `r255 serenity: ${REG}`, 'x');
ratio('p256 registration ours/fast vs serenity-p256', `p256 ours/fast: ${REG}`, `p256 serenity-p256: ${REG}`, 'x');
if (!QUICK) {
  ratio('r255 login ours/noble vs serenity', `r255 ours/noble: ${LOGIN}`, `r255 serenity: ${LOGIN}`, 'x');
  ratio('p256 login ours/noble vs serenity-p256', `p256 ours/noble: ${LOGIN}`, `p256 serenity-p256: ${LOGIN}`, 'x');
  ratio('r255 fake-record KE2 vs real KE2 (ours/fast)', 'r255 ours/fast: fake-record KE2', `r255 ours/fast: ${LOGIN}`, '%');
  ratio('p256 fake-record KE2 vs real KE2 (ours/fast)', 'p256 ours/fast: fake-record KE2', `p256 ours/fast: ${LOGIN}`, '%');
}

console.log('\nratios (ops/s over ops/s of the median rounds; [range over rounds]; median of the per-pass ratios):');
const fmt = (x: number, unit: 'x' | '%'): string => (unit === '%' ? `${x.toFixed(1)}%` : `${x.toFixed(2)}x`);
for (const [k, r] of Object.entries(ratios)) {
  const range = `[${fmt(r.roundMin, r.unit)}..${fmt(r.roundMax, r.unit)}]`;
  const t = r.target === undefined ? '' : `   target >= ${fmt(r.target, r.unit)}: ${r.met ? 'MET' : 'NOT MET'}`;
  console.log(`  ${k.padEnd(46)}${fmt(r.value, r.unit).padStart(8)} ${range.padEnd(18)}${`paired ${fmt(r.pairedMedian, r.unit)}`.padEnd(16)}${t}`);
}

const r3 = (x: number): number => Number(x.toFixed(3));
const rounded = Object.fromEntries(
  Object.entries(ratios).map(([k, r]) => [k, { ...r, value: r3(r.value), roundMin: r3(r.roundMin), roundMax: r3(r.roundMax), pairedMedian: r3(r.pairedMedian) }]),
);
const loadavgAtEnd = loadavg().map((x) => Number(x.toFixed(2)));
console.log(`load average at the end: ${loadavgAtEnd.join(' ')} (other processes on this machine disturb the figures)`);

// The runner's format (bench/lib/common.ts): one entry per contestant, the issue's ratio keys.
const groupOf = (name: string): { group: string; kind: BenchResult['kind'] } => {
  const [who, op] = name.split(': ') as [string, string];
  const suite = who.startsWith('p256') ? 'P-256' : 'ristretto255';
  if (who.includes('floor')) return { group: `login KE1->KE2 per core, ${suite}`, kind: 'floor' };
  const kind = who.includes('serenity') ? 'peer' : 'ours';
  return { group: `${op} per core, ${suite}`, kind };
};
const common: BenchResult[] = results.map((r) => ({
  name: `opaque: ${r.name}`,
  ...groupOf(r.name),
  opsPerSec: r.opsPerSec,
  usPerOp: r.usPerOp,
  opsPerWallSec: r.opsPerWallSec,
  clock: 'process CPU time, one thread',
}));
const v = (k: string, f = 1): number => round(ratios[k]!.value / f, 3);
const commonRatios: Record<string, number> = {
  loginVsSerenity: v('r255 login ours/fast vs serenity'),
  loginVsFloor: v('r255 login ours/fast vs floor', 100),
  ...(nativeEngine && { loginVsNativeFloor: v('r255 login ours/fast vs native floor', 100) }),
  p256LoginVsSerenityP256: v('p256 login ours/fast vs serenity-p256'),
  p256LoginVsFloor: v('p256 login ours/fast vs floor', 100),
  registrationVsSerenity: v('r255 registration ours/fast vs serenity'),
  p256RegistrationVsSerenityP256: v('p256 registration ours/fast vs serenity-p256'),
  loginVsSerenityPairedMedian: round(ratios['r255 login ours/fast vs serenity']!.pairedMedian, 3),
  loginVsFloorPairedMedian: round(ratios['r255 login ours/fast vs floor']!.pairedMedian / 100, 3),
};
const M = machineInfo();
M.loadavgAtStart = machine.loadavgAtStart;
emit(
  {
    subsystem: 'opaque',
    quick: QUICK,
    machine: M,
    results: common,
    ratios: commonRatios,
    notes: [`method: ${machine.method}`, ...backendNames.map((b) => `backend ${b}`)],
    detail: { ratios: rounded, perContestant: results },
  },
  ARGS.json,
);
