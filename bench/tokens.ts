/**
 * Tokens: the emulator token against SoftHSM2 and against itself through p11-kit-client.so, side by side in one run.
 *
 * 1. Login through the enclave path on each token (bench/lib/enclave-rig.ts: VaultHost with all
 *    partitions, worker devices, SQLite, `token` 'emulator' | 'softhsm', and the emulator behind
 *    `bkv token serve` through p11-kit-client.so as the `pkcs11` backend on its ctr-hmac
 *    profile), interleaved rounds at one concurrency: softhsmVsEmulator = SoftHSM2 logins/s over
 *    the emulator's, p11kitVsEmulator the same for the emulator through p11-kit.
 * 2. Token operation rates through
 * the firmware's own token layer (enclave/token-pkcs11.ts over PKCS#11 v2.40): AES-256-GCM of
 * 64 bytes (C_EncryptInit + C_Encrypt), HMAC-SHA256 of 64 bytes (C_SignInit + C_Sign), 32 random
 * bytes (C_GenerateRandom), P-256 ECDH (C_DeriveKey + C_GetAttributeValue + C_DestroyObject),
 * a P-256 ECDSA signature of a 32-byte hash (CKM_ECDSA, C_SignInit + C_Sign: raw module calls),
 * the OPAQUE P-256 server DH done in the token (two derivations and a point recovery), a login's
token work on its record per firmware token profile (open the stored blob and seal the new one:
AES-GCM on gcm-ecdh, AES-ECB keystream + HMAC-SHA256 on ctr-hmac), an NVRAM
 * write as token data objects (destroy + create; the emulator's store fsyncs, SoftHSM2's files are
 * fsynced by hsm/tokens/softhsm.ts), and C_Login. The same operations on the emulator served by
 * `bkv token serve` in a child process and reached through p11-kit-client.so 0.24.1 (column
 * p11kit): each call crosses p11-kit's RPC protocol over a Unix socket. Its client carries no
 * AES-GCM or ECDH1 parameters (hsm/tokens/p11kit/client-limits.ts): those
 * operations are reported not available, with the reason, under `missing`.
 *
 *   npx tsx bench/tokens.ts [--quick] [--json FILE] [--concurrency 128] [--rounds 3] [--window-ms 1500]
 *
 * Prints the machine, Node version and each token's ops/s with the emulator/SoftHSM2 ratio;
 * writes bench/results/tokens-latest.json (or --json FILE). Without SoftHSM2 (softhsm2 package,
 * pkcs11js built) the ratio is reported missing with the reason.
 */
import { spawn } from 'node:child_process';
import { createECDH } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { p256 } from '@noble/curves/nist.js';
import * as P from '../enclave/api/pkcs11.ts';
import { Pkcs11Token } from '../enclave/token-pkcs11.ts';
import { KIND_RECORD, seal, unseal } from '../enclave/vault/record.ts';
import type { VaultRecord } from '../enclave/vault/record.ts';
import { tokenP256Key } from '../enclave/vault/token-dh.ts';
import { TokenNvram } from '../hsm/nvram-token.ts';
import { openVaultToken } from '../hsm/tokens/open.ts';
import { SCRATCH_TOKEN_KINDS, TOKEN_BACKENDS, availableTokenKinds } from '../hsm/tokens/backends.ts';
import type { TokenKind } from '../hsm/tokens/backends.ts';
import { availableParallelism } from 'node:os';
import { ROOT, args, emit, machine, progress, round } from './lib/common.ts';
import type { BenchResult } from './lib/common.ts';
import { median, middleBy } from './lib/stats.ts';
import { EnclaveRig } from './lib/enclave-rig.ts';
import type { WindowResult } from './lib/enclave-rig.ts';
import { loadModule } from '../hsm/tokens/pkcs11-module.ts';
import { provisionModuleToken } from '../hsm/tokens/config.ts';
import { p11kitRefuses } from '../hsm/tokens/p11kit/index.ts';
import { P11_KIT_CLIENT } from '../host/cli/cmd-token.ts';

const A = args();
const quick = A.quick;
const budgetMs = quick ? 80 : 1000;
const M = machine();

function rate(fn: () => void): { opsPerSec: number; usPerOp: number } {
  for (let i = 0; i < 20; i++) fn(); // warm up
  let n = 0;
  const t0 = performance.now();
  let t = t0;
  while (t - t0 < budgetMs) {
    for (let i = 0; i < 10; i++) fn();
    n += 10;
    t = performance.now();
  }
  const us = ((t - t0) * 1000) / n;
  return { opsPerSec: Math.round(1e6 / us), usPerOp: Number(us.toFixed(2)) };
}

type Rate = { opsPerSec: number; usPerOp: number };
/** An operation's rate, or why it can not run on this token. */
type Measured = Rate | { unavailable: string };

/** Each operation on a token the caller opened; where `refused(mechanism)` gives a reason, the operation is not measured and the reason kept. */
function operations(o: { module: P.Pkcs11; label: string; userPin: string }, token: Pkcs11Token, refused: (mechanism: number) => string | null): Record<string, Measured> {
  const measure = (mechanism: number | null, fn: () => void): Measured => {
    const why = mechanism === null ? null : refused(mechanism);
    return why ? { unavailable: why } : rate(fn);
  };
  const aes = token.generateAesKey('bench-aes');
  const mac = token.generateHmacKey('bench-mac', 32);
  const ec = token.generateEcKeyPair('bench-ec');
  const iv = token.random(12);
  const aad = new Uint8Array(16);
  const msg = new Uint8Array(64);
  const peer = createECDH('prime256v1');
  peer.generateKeys();
  const point = new Uint8Array(peer.getPublicKey());
  const dh = tokenP256Key(token, ec);
  const m = p256.Point.BASE.multiply(7n).toBytes(true);
  const nv = new TokenNvram(token, 'bench-nvram', 256);
  const state = new Uint8Array(226);
  const s = o.module.C_OpenSession(o.module.C_GetSlotList(true).find((x) => P.trimLabel(o.module.C_GetTokenInfo(x).label) === o.label)!, P.CKF_SERIAL_SESSION | P.CKF_RW_SESSION);
  // A session key pair for CKM_ECDSA (the vault's own P-256 key derives only): made on `s`, logged in through `token`.
  const signer = o.module.C_GenerateKeyPair(s, { mechanism: P.CKM_EC_KEY_PAIR_GEN }, [{ type: P.CKA_TOKEN, value: false }, { type: P.CKA_EC_PARAMS, value: Buffer.from(P.EC_PARAMS_P256) }], [{ type: P.CKA_TOKEN, value: false }, { type: P.CKA_SIGN, value: true }, { type: P.CKA_SENSITIVE, value: true }]);
  const hash = Buffer.alloc(32, 0x42);
  const sig = Buffer.alloc(64);
  const out: Record<string, Measured> = {
    'aes-256-gcm encrypt 64 B': measure(P.CKM_AES_GCM, () => token.encryptGcm(aes, iv, aad, msg)),
    'hmac-sha256 64 B': measure(P.CKM_SHA256_HMAC, () => token.hmac(mac, 'SHA-256', msg)),
    'random 32 B': measure(null, () => token.random(32)),
    'ecdh p-256 (x only)': measure(P.CKM_ECDH1_DERIVE, () => token.ecdhX(ec, point)),
    'ecdsa p-256 sign 32 B': measure(P.CKM_ECDSA, () => {
      o.module.C_SignInit(s, { mechanism: P.CKM_ECDSA }, signer.privateKey);
      o.module.C_Sign(s, hash, sig);
    }),
    'opaque p-256 server dh in token': measure(P.CKM_ECDH1_DERIVE, () => dh.dh(m, 'bench')),
  };
  // A login's token work on its record (ristretto255: no token EC), per firmware token profile
  // (enclave/token-profiles.ts): open the stored blob, seal the new one (record.ts).
  const ctr = { enc: token.generateAesKey('bench-ctr', true), mac: token.generateHmacKey('bench-ctr-mac', 32) };
  const rid = new Uint8Array(32).fill(1);
  const header = { kind: KIND_RECORD, suite: 1, epoch: 1, version: 1 };
  const rec: VaultRecord = { status: 1, suite: 1, attemptLimit: 10, attemptsUsed: 0, registrationId: new Uint8Array(16), ksf: new Uint8Array(0), opaqueRecord: new Uint8Array(192), backupKey: new Uint8Array(32), registeredAt: 1, pacing: 0, lastGuessAt: 0 };
  for (const [profile, key, mechanism] of [['gcm-ecdh', aes, P.CKM_AES_GCM], ['ctr-hmac', ctr, P.CKM_AES_ECB]] as const) {
    let blob: Uint8Array | null = null;
    out[`login record open + seal (${profile})`] = measure(mechanism, () => {
      blob ??= seal(token, key, rid, header, rec);
      unseal(token, key, rid, blob);
      blob = seal(token, key, rid, header, rec);
    });
  }
  out['nvram write (data objects)'] = measure(null, () => nv.write(state));
  out['C_Login + C_Logout'] = measure(null, () => {
    o.module.C_Logout(s);
    o.module.C_Login(s, P.CKU_USER, o.userPin);
  });
  return out;
}

function bench(kind: TokenKind): Record<string, Measured> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `bkv-bench-${kind}-`));
  try {
    const o = openVaultToken(dir, kind);
    const token = new Pkcs11Token({ module: o.module, label: o.label, userPin: o.userPin, exclusive: o.exclusive, lockObjectStore: o.lockObjectStore });
    return operations(o, token, () => null);
  } finally {
    for (const x of [dir, `${dir}.operator`]) fs.rmSync(x, { recursive: true, force: true });
  }
}

/** Null when p11-kit-client.so and pkcs11js (which loads it) are here; else why not. */
function p11kitUnavailable(): string | null {
  if (!fs.existsSync(P11_KIT_CLIENT)) return `${P11_KIT_CLIENT} not installed (apt-get install -y p11-kit-modules)`;
  return TOKEN_BACKENDS.pkcs11.unavailable();
}

/** The emulator behind `bkv token serve` in a child process (the client blocks this thread on every call, so the server can not share it). */
interface P11kitServer {
  module: P.Pkcs11;
  label: string;
  pins: { userPin: string; soPin: string };
  stop(): void;
}

async function startP11kitServer(): Promise<P11kitServer> {
  const pins = { userPin: `bench-user-${process.pid}`, soPin: `bench-so-${process.pid}` };
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bkv-bench-p11kit-'));
  const child = spawn(process.execPath, [path.join(ROOT, 'bin/bkv.mjs'), 'token', 'serve', '--data', path.join(dir, 'data'), '--socket', path.join(dir, 'token.sock')], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, BKV_TOKEN_PIN: pins.userPin, BKV_TOKEN_SO_PIN: pins.soPin },
  });
  let stopped = false;
  const stop = () => {
    if (stopped) return;
    stopped = true;
    child.kill('SIGTERM');
    fs.rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', stop); // a run that fails leaves no server behind
  try {
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const address = await new Promise<string>((resolve, reject) => {
      let out = '';
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        const m = /^P11_KIT_SERVER_ADDRESS=(\S+)$/m.exec(out);
        if (m) resolve(m[1]!);
      });
      child.once('exit', (c) => reject(new Error(`bkv token serve exited ${c}: ${err}`)));
    });
    // read when pkcs11js loads the client (p11-kit client.c), here and in the vault's device threads
    process.env.P11_KIT_SERVER_ADDRESS = address;
    const module = loadModule(P11_KIT_CLIENT);
    const slot = module.C_GetSlotList(true).find((x) => (module.C_GetTokenInfo(x).flags & P.CKF_TOKEN_INITIALIZED) !== 0)!;
    return { module, label: P.trimLabel(module.C_GetTokenInfo(slot).label), pins, stop };
  } catch (e) {
    stop();
    throw e;
  }
}

/** The token operations on the emulator through p11-kit-client.so (column p11kit). */
function benchP11kit(s: P11kitServer): Record<string, Measured> {
  const token = new Pkcs11Token({ module: s.module, label: s.label, userPin: s.pins.userPin });
  const refused = (mechanism: number) => {
    const name = p11kitRefuses(mechanism);
    return name && `p11-kit 0.24.1's client carries no ${name} parameters and refuses it itself (CKR_MECHANISM_INVALID)`;
  };
  return operations({ module: s.module, label: s.label, userPin: s.pins.userPin }, token, refused);
}

const kinds = availableTokenKinds();
const why = TOKEN_BACKENDS.softhsm.unavailable();
const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
console.log(`# tokens: ${cpu}, ${os.cpus().length} cores, Node ${process.version}, ${quick ? 'quick' : `${budgetMs} ms per figure`}`);
for (const k of SCRATCH_TOKEN_KINDS) if (!kinds.includes(k)) console.log(`# ${TOKEN_BACKENDS[k].title} skipped: ${TOKEN_BACKENDS[k].unavailable()}`);

// 1. Login through the enclave path on each token, interleaved.
const PARTS = A.num("partitions", availableParallelism());
const C = A.num('concurrency', 128);
const ROUNDS = A.num('rounds', quick ? 2 : 3);
const WINDOW = A.num('window-ms', quick ? 300 : 1500);
// A record holds at most 16 login sessions for 120 s (enclave/vault/sessions.ts): enough records
// that the warm-up and every round of the fastest token stay under that (2,200 logins/s x 6 s;
// quick: 2,600 logins/s x 0.75 s, which 96 records did not hold once the emulator got faster).
const LOGIN_RECORDS = 4096;
const QUICK_LOGIN_RECORDS = 512;
const logins = new Map<TokenKind | 'p11kit', WindowResult[]>();
const rigs = new Map<TokenKind | 'p11kit', EnclaveRig>();
const missing: Record<string, string> = {};
const p11kitWhy = p11kitUnavailable();
if (p11kitWhy) missing.p11kit = `the emulator through p11-kit-client.so: ${p11kitWhy}`;
const p11kit = p11kitWhy ? null : await startP11kitServer();
try {
  for (const k of kinds) {
    progress(`opening a vault on the ${k} token (${PARTS} partitions)`);
    try {
      rigs.set(k, await EnclaveRig.open({ partitions: PARTS, records: quick ? QUICK_LOGIN_RECORDS : LOGIN_RECORDS, token: k }));
    } catch (e) {
      missing.softhsmVsEmulator = `the vault does not open on the ${k} token: ${(e as Error).message.split('\n')[0]}`;
      console.log(`# ${missing.softhsmVsEmulator}`);
    }
  }
  if (p11kit) {
    // the pkcs11 backend on p11-kit-client.so, as `bkv serve --token pkcs11` runs it (the ctr-hmac profile: softhsm-config/README.md)
    progress(`opening a vault on the emulator through p11-kit-client.so (${PARTS} partitions)`);
    const prepare = (dir: string) => provisionModuleToken(dir, { module: P11_KIT_CLIENT, label: p11kit.label });
    try {
      rigs.set('p11kit', await EnclaveRig.open({ partitions: PARTS, records: quick ? QUICK_LOGIN_RECORDS : LOGIN_RECORDS, token: 'pkcs11', tokenPins: { userPin: p11kit.pins.userPin }, prepare }));
    } catch (e) {
      missing.p11kitVsEmulator = `the vault does not open through p11-kit-client.so: ${(e as Error).message.split('\n')[0]}`;
      console.log(`# ${missing.p11kitVsEmulator}`);
    }
  }
  for (const rig of rigs.values()) await rig.login(32, quick ? 150 : 500); // warm-up
  for (let r = 0; r < ROUNDS; r++) {
    for (const [k, rig] of r % 2 ? [...rigs].reverse() : [...rigs]) {
      const w = await rig.login(C, WINDOW);
      logins.set(k, [...(logins.get(k) ?? []), w]);
      progress(`round ${r + 1}, ${k}: ${w.opsPerSec.toFixed(0)} logins/s, p50 ${w.p50Ms.toFixed(1)} ms, p99 ${w.p99Ms.toFixed(1)} ms, batch ${w.meanBatch.toFixed(1)}`);
    }
  }
} finally {
  for (const rig of rigs.values()) await rig.close();
}
const out: BenchResult[] = [];
const loginRate = new Map<TokenKind | 'p11kit', number>();
for (const [k, ws] of logins) {
  const ops = median(ws.map((w) => w.opsPerSec));
  loginRate.set(k, ops);
  const mid = middleBy(ws, (w) => w.opsPerSec);
  out.push({
    name: `tokens: enclave login, ${k} token, ${PARTS} partitions, concurrency ${C}`,
    group: 'login through the enclave path, by token',
    kind: 'ours',
    opsPerSec: Math.round(ops),
    p50Ms: round(mid.p50Ms, 2),
    p99Ms: round(mid.p99Ms, 2),
    meanBatch: round(mid.meanBatch, 1),
    cpuCores: mid.cpu,
    answers: mid.answers,
  });
}

// 2. Token operation rates.
const results: Record<string, Record<string, Measured>> = {};
for (const k of kinds) results[k] = bench(k);
if (p11kit) {
  progress('the emulator behind bkv token serve, through p11-kit-client.so');
  try {
    results.p11kit = benchP11kit(p11kit);
  } finally {
    p11kit.stop();
  }
}
const columns = Object.keys(results);
const names = Object.keys(results.emulator!);
console.log(`\n${'operation'.padEnd(34)} ${columns.map((k) => `${k} ops/s`.padStart(18)).join('')}${kinds.length > 1 ? '   emulator/softhsm' : ''}`);
const row = (name: string, vals: Map<string, number>) => {
  const cells = columns.map((k) => (vals.has(k) ? Math.round(vals.get(k)!).toLocaleString('en-US') : '-').padStart(18));
  const ratio = kinds.length > 1 && vals.has('softhsm') && vals.has('emulator') ? `   ${(vals.get('emulator')! / vals.get('softhsm')!).toFixed(2)}x` : '';
  console.log(`${name.padEnd(34)} ${cells.join('')}${ratio}`);
};
row(`enclave login (c=${C}, ${PARTS} partitions)`, loginRate);
const rateOf = (k: string, name: string): Rate | null => {
  const r = results[k]![name]!;
  return 'unavailable' in r ? null : r;
};
for (const name of names) row(name, new Map(columns.flatMap((k) => (rateOf(k, name) ? [[k, rateOf(k, name)!.opsPerSec] as const] : []))));
for (const k of columns) {
  for (const name of names) {
    const r = results[k]![name]!;
    if ('unavailable' in r) {
      missing[`${k}: ${name}`] = r.unavailable;
      console.log(`# ${k}: ${name} not available: ${r.unavailable}`);
    } else out.push({ name: `tokens: ${name} (${k})`, group: `token operation: ${name}`, kind: 'other', opsPerSec: r.opsPerSec, usPerOp: r.usPerOp, token: k });
  }
}
const ratios: Record<string, number> = {};
if (loginRate.has('softhsm') && loginRate.has('emulator')) {
  ratios.softhsmVsEmulator = round(loginRate.get('softhsm')! / loginRate.get('emulator')!, 3);
  const e = logins.get('emulator')!;
  const s2 = logins.get('softhsm')!;
  ratios.softhsmVsEmulatorPairedMedian = round(median(s2.map((w, i) => w.opsPerSec / e[i]!.opsPerSec)), 3);
  console.log(`\nsofthsmVsEmulator (enclave login, SoftHSM2 over emulator): ${ratios.softhsmVsEmulator}`);
} else if (why) {
  missing.softhsmVsEmulator = `SoftHSM2 unavailable: ${why}`;
}
if (loginRate.has('p11kit') && loginRate.has('emulator')) {
  ratios.p11kitVsEmulator = round(loginRate.get('p11kit')! / loginRate.get('emulator')!, 3);
  console.log(`p11kitVsEmulator (enclave login, the emulator through p11-kit-client.so over in-process): ${ratios.p11kitVsEmulator}`);
}
emit(
  {
    subsystem: 'tokens',
    quick,
    machine: M,
    results: out,
    ratios,
    ...(Object.keys(missing).length && { missing }),
    notes: [`enclave login: ${ROUNDS} interleaved rounds of ${WINDOW} ms per token at concurrency ${C}, ${PARTS} partitions, worker devices, SQLite; token operations: ${budgetMs} ms each through enclave/token-pkcs11.ts; p11kit: the emulator behind bkv token serve (a child process, default PIN derivation), each call through p11-kit-client.so 0.24.1 and a Unix socket`],
  },
  A.json,
);
process.exit(0);
