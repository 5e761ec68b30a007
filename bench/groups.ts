/**
 * Group backend benchmark (RFC 9497 §2.1 group operations): per-operation µs and ops/s of
 * variable-base multiplication, base multiplication and hash-to-group (plus element validation,
 * scalar inversion and hash-to-scalar) for every backend, and the server-login multiplication
 * floor (4 variable-base + 1 base, RFC 9807 §6.4 with the OPRF evaluation). Also the hash
 * primitives at OPAQUE's input sizes (HMAC-SHA512 of a 64-byte key over 100 bytes, SHA-512 of a
 * 431-byte preamble) on node:crypto, libsodium WebAssembly and @noble/hashes.
 *
 * Run: npx tsx bench/groups.ts [rounds] [--quick] [--json FILE]   (the runner: npm run bench -- --only groups)
 *
 * Caveats: a warmed-up loop timed with process.hrtime.bigint; each figure is the median over
 * interleaved rounds, so machine noise moves them a few percent between runs. Variable-base
 * inputs cycle through 16 different points and scalars.
 */
import { cpus } from 'node:os';
import { ECDH, createECDH } from 'node:crypto';
import sodium from 'libsodium-wrappers-sumo';
import type { Group } from '../enclave/opaque/group.ts';
import { NobleP256 } from '../enclave/opaque/groups/noble-p256.ts';
import { NobleRistretto255 } from '../enclave/opaque/groups/noble-ristretto255.ts';
import { NodeP256 } from '../enclave/opaque/groups/node-p256.ts';
import { createSodiumRistretto255 } from '../enclave/opaque/groups/sodium-ristretto255.ts';
import { loadNativeSodium } from '../enclave/opaque/groups/sodium-native.ts';
import { args, emit, machine } from './lib/common.ts';
import type { BenchResult } from './lib/common.ts';
import { median } from './lib/stats.ts';
import { nobleHash } from '../enclave/opaque/hash-noble.ts';
import { nodeHash } from '../enclave/opaque/hash-node.ts';
import { loadNativeShaOn } from '../enclave/opaque/hash-native.ts';
import { createSodiumSha512 } from '../enclave/opaque/hash-sodium.ts';
import type { HashPrimitives } from '../enclave/opaque/hash.ts';

const ARGS = args();
const M = machine();
const ROUNDS = /^\d+$/.test(process.argv[2] ?? '') ? Number(process.argv[2]) : ARGS.quick ? 3 : 9;
const BATCH_MS = 60;

interface Case {
  label: string;
  op: string;
  fn: () => unknown;
  samples: number[];
  iters: number;
}

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s >>> 24;
  };
}

function makeCases(label: string, g: Group): Case[] {
  const r = rng(label.length * 7919);
  const draw = (n: number) => Uint8Array.from({ length: n }, r);
  const scalars = Array.from({ length: 16 }, () => g.randomScalar(draw));
  const points = scalars.map((k) => g.scalarMultBase(g.randomScalar(draw)));
  const msgs = Array.from({ length: 16 }, () => draw(32));
  const dst = new TextEncoder().encode('HashToGroup-OPRFV1-\x00-bench');
  let i = 0;
  const next = () => (i = (i + 1) & 15);
  const c = (op: string, fn: () => unknown): Case => ({ label, op, fn, samples: [], iters: 1 });
  return [
    c('scalarMult', () => g.scalarMult(scalars[next()]!, points[i]!, 'e')),
    c('scalarMultBase', () => g.scalarMultBase(scalars[next()]!)),
    c('hashToGroup', () => g.hashToGroup(msgs[next()]!, dst)),
    c('checkElement', () => g.checkElement(points[next()]!, 'e')),
    c('scalarInvert', () => g.scalarInvert(scalars[next()]!)),
    c('hashToScalar', () => g.hashToScalar(msgs[next()]!, dst)),
  ];
}

/** HMAC and hash calls at the sizes a login uses (10 HMACs and 6 hashes per server login). */
function hashCases(label: string, h: HashPrimitives): Case[] {
  const r = rng(label.length * 131);
  const draw = (n: number) => Uint8Array.from({ length: n }, r);
  const key = draw(64);
  const msg = draw(100);
  const preamble = draw(431);
  const c = (op: string, fn: () => unknown): Case => ({ label, op, fn, samples: [], iters: 1 });
  return [
    c('HMAC-SHA512 64B key, 100B', () => h.hmac(key, msg)),
    c('SHA-512 431B', () => h.hash(preamble)),
  ];
}

/** Bare library calls with no validation or conversion: the floor the backends are measured against. */
function floorCases(): Case[] {
  const k = sodium.crypto_core_ristretto255_scalar_random();
  const p = sodium.crypto_scalarmult_ristretto255_base(sodium.crypto_core_ristretto255_scalar_random());
  const ecdh = createECDH('prime256v1');
  ecdh.generateKeys();
  const peer = createECDH('prime256v1');
  peer.generateKeys();
  const mu = peer.getPublicKey();
  const mc = peer.getPublicKey(undefined, 'compressed');
  const priv = ecdh.getPrivateKey();
  const c = (label: string, op: string, fn: () => unknown): Case => ({ label, op, fn, samples: [], iters: 1 });
  return [
    c('libsodium-wrappers (bare)', 'scalarMult', () => sodium.crypto_scalarmult_ristretto255(k, p)),
    c('libsodium-wrappers (bare)', 'scalarMultBase', () => sodium.crypto_scalarmult_ristretto255_base(k)),
    c('libsodium-wrappers (bare)', 'from_hash', () => sodium.crypto_core_ristretto255_from_hash(new Uint8Array(64))),
    c('node:crypto ECDH (bare)', 'computeSecret(x only)', () => ecdh.computeSecret(mu)),
    c('node:crypto ECDH (bare)', 'setPrivateKey', () => ecdh.setPrivateKey(priv)),
    c('node:crypto ECDH (bare)', 'getPublicKey(compr.)', () => ecdh.getPublicKey(undefined, 'compressed')),
    c('node:crypto ECDH (bare)', 'convertKey(decompress)', () =>
      ECDH.convertKey(mc, 'prime256v1', undefined, undefined, 'uncompressed'),
    ),
  ];
}

function calibrate(cs: Case[]): void {
  for (const c of cs) {
    const t0 = process.hrtime.bigint();
    let n = 0;
    while (Number(process.hrtime.bigint() - t0) < 30e6) {
      c.fn();
      n++;
    }
    c.iters = Math.max(5, Math.round((n * BATCH_MS) / 30));
  }
}

function run(cs: Case[]): void {
  for (let r = 0; r < ROUNDS; r++) {
    for (const c of cs) {
      const t0 = process.hrtime.bigint();
      for (let j = 0; j < c.iters; j++) c.fn();
      c.samples.push(Number(process.hrtime.bigint() - t0) / 1e3 / c.iters);
    }
  }
}

const us = (c: Case): number => median(c.samples);
const best = (c: Case): number => Math.min(...c.samples);

await sodium.ready;
const nativeSodium = await loadNativeSodium();
// SHA-512 on each native library hash-native.ts runs on (Node's OpenSSL, native libsodium), where it loads.
const nativeSha512 = (await Promise.all((['openssl', 'libsodium'] as const).map((l) => loadNativeShaOn(l, 512)))).flatMap((r) => (r.sha ? [r.sha] : []));
if (!nativeSodium.engine) console.log(`native libsodium not loaded (${nativeSodium.reason})`);
const backends: [string, Group][] = [
  ['ristretto255 noble', new NobleRistretto255(nobleHash('SHA-512'))],
  ['ristretto255 sodium-wasm (raw exports)', await createSodiumRistretto255(nodeHash('SHA-512'))],
  ['ristretto255 sodium-wasm (wrappers)', await createSodiumRistretto255(nodeHash('SHA-512'), { rawExports: false })],
  ...(nativeSodium.engine ? [['ristretto255 sodium-native', await createSodiumRistretto255(nodeHash('SHA-512'), { native: nativeSodium.engine })] as [string, Group]] : []),
  ['P-256 noble', new NobleP256(nobleHash('SHA-256'))],
  ['P-256 node-ecdh', new NodeP256(nodeHash('SHA-256'))],
];

console.log(`CPU: ${cpus()[0]?.model ?? 'unknown'} (${cpus().length} logical)`);
console.log(`Node ${process.version}, ${ROUNDS} interleaved rounds of about ${BATCH_MS} ms per case, median`);
console.log(`backends: ${backends.map(([l, g]) => `${l} [${g.id}/${g.backend}]`).join(', ')}`);
console.log('');

const hashes: [string, HashPrimitives][] = [
  ['SHA-512 node:crypto', nodeHash('SHA-512')],
  ['SHA-512 sodium-wasm (raw exports)', await createSodiumSha512()],
  ...nativeSha512.map((h): [string, HashPrimitives] => [`SHA-512 ${h.backend}`, h]),
  ['SHA-512 @noble/hashes', nobleHash('SHA-512')],
];
const cases = [...backends.flatMap(([l, g]) => makeCases(l, g)), ...floorCases(), ...hashes.flatMap(([l, h]) => hashCases(l, h))];
calibrate(cases);
run(cases);

const pad = (s: string, n: number) => s.padEnd(n);
const num = (x: number, n: number) => x.toFixed(x < 10 ? 2 : 1).padStart(n);
console.log(`${pad('backend', 40)}${pad('operation', 24)}${'µs/op'.padStart(10)}${'best'.padStart(10)}${'ops/s'.padStart(10)}`);
for (const c of cases) {
  const t = us(c);
  console.log(`${pad(c.label, 40)}${pad(c.op, 24)}${num(t, 10)}${num(best(c), 10)}${String(Math.round(1e6 / t)).padStart(10)}`);
}

console.log('\nserver login multiplications, 4 variable-base + 1 base (median / best):');
const get = (label: string, op: string) => cases.find((c) => c.label === label && c.op === op)!;
const login = (label: string, f: (c: Case) => number) => 4 * f(get(label, 'scalarMult')) + f(get(label, 'scalarMultBase'));
for (const l of [...backends.map(([l]) => l), 'libsodium-wrappers (bare)']) {
  console.log(`  ${pad(l, 40)}${num(login(l, us), 8)} µs${num(login(l, best), 8)} µs`);
}
const ratio = (f: (c: Case) => number) =>
  ((100 * login('libsodium-wrappers (bare)', f)) / login('ristretto255 sodium-wasm (raw exports)', f)).toFixed(1);
console.log(`  sodium-wasm backend vs bare libsodium calls: ${ratio(us)}% (median), ${ratio(best)}% (best)`);
const gain = (f: (c: Case) => number) =>
  f(get('ristretto255 sodium-wasm (wrappers)', 'scalarMult')) - f(get('ristretto255 sodium-wasm (raw exports)', 'scalarMult'));
console.log(`  raw exports save ${gain(us).toFixed(2)} µs (median), ${gain(best).toFixed(2)} µs (best) per variable-base multiplication`);

const results: BenchResult[] = cases.map((c) => ({
  name: `groups: ${c.label} ${c.op}`,
  group: c.op.includes('SHA') ? `hash: ${c.op}` : `group operation: ${c.op}`,
  kind: c.label.includes('bare') ? 'floor' : 'ours',
  opsPerSec: Math.round(1e6 / us(c)),
  usPerOp: Number(us(c).toFixed(2)),
  bestUs: Number(best(c).toFixed(2)),
}));
for (const l of [...backends.map(([l]) => l), 'libsodium-wrappers (bare)']) {
  results.push({ name: `groups: ${l} login multiplications (4 + 1)`, group: 'login floor (4 variable-base + 1 base)', kind: 'floor', opsPerSec: Math.round(1e6 / login(l, us)), usPerOp: Number(login(l, us).toFixed(1)) });
}
emit(
  {
    subsystem: 'groups',
    quick: ARGS.quick,
    machine: M,
    results,
    ratios: { sodiumBackendVsBareLibsodium: Number((Number(ratio(us)) / 100).toFixed(3)) },
    notes: [`${ROUNDS} interleaved rounds of about ${BATCH_MS} ms per case, median (wall clock, one thread)`],
  },
  ARGS.json,
);
