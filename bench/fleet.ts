/**
 * Logins per second of the vault served by a fleet of 3 member processes on loopback (`bkv serve
 * --fleet ... --member I`: each batch one entry of the fleet's log, answered once a majority holds
 * it, applied by the two followers) against the single vault (`bkv serve`, 1 partition), side by
 * side in one run: at each concurrency level the single vault, then the fleet, the same SDK
 * client (EscrowClient.recover with the right password over the HTTP relay, identity KSF:
 * LoginStart + LoginFinish, 2 operations, 2 batches) in this process. With each figure: p50/p99
 * latency per login and the CPU time each server process spent per login (/proc/PID/stat user +
 * system, over the window).
 *
 *   fleet3VsSingle = fleet logins/s / single vault logins/s, at the highest level (target 0.5:
 *   docs/fleet-vault.md "Cost per login, expected").
 *
 * Run: npx tsx bench/fleet.ts [--quick] [--json FILE] [--seconds S] [--levels 1,16,32]
 * The single vault runs 1 partition (a fleet member runs 1: each partition would be its own
 * replication group). Every process shares this machine with the client: on a 2-core box the
 * figures are a floor, and three members plus the client compete for the same cores.
 * `--quick`: a smoke run (short windows, one level), not a figure of record.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { freePort } from './lib/service-proc.ts';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { BKV_NODE_FLAGS } from '../bin/bundle.mjs';
import { DEFAULT_KSF_BOUNDS, EscrowClient } from '../client/escrow.ts';
import { fetchVaultInfo, httpRelay } from '../client/http-relay.ts';
import { identityKsf } from '../enclave/opaque/ksf.ts';
import { fastSuite } from '../enclave/opaque/suites-fast.ts';
import { readVaultKeyFile } from '../host/cli/io.ts';
import { checkFleetConfig, fleetJson, initFleet } from '../host/fleet/config.ts';
import { BenchTokens } from './lib/auth.ts';
import { args, emit, machine, machineLine, progress, round, type BenchResult } from './lib/common.ts';
import { percentile } from './lib/stats.ts';

const root = resolve(import.meta.dirname, '..');
const te = new TextEncoder();
const A = args();
const M = machine();
const seconds = A.num('seconds', A.quick ? 1 : 5);
const levels = A.list('levels', A.quick ? [8] : [1, 16, 32]);
const maxC = Math.max(...levels);
const CLK_TCK = 100; // Linux USER_HZ: /proc/PID/stat counts CPU time in 1/100 s

interface Proc {
  readonly name: string;
  readonly child: ChildProcess;
  log: string;
}

function spawnBkv(name: string, argv: string[]): Proc {
  const child = spawn(process.execPath, [...BKV_NODE_FLAGS, join(root, 'bin/bkv.mjs'), ...argv], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  const p: Proc = { name, child, log: '' };
  const keep = (d: Buffer) => {
    p.log += d.toString('utf8');
    if (p.log.length > 1e6) p.log = p.log.slice(-1e5);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  return p;
}

async function until<T>(what: string, ms: number, fn: () => T | null | false | Promise<T | null | false>, procs: Proc[]): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== null && v !== false) return v;
    for (const p of procs) if (p.child.exitCode !== null) throw new Error(`${p.name} exited ${p.child.exitCode}:\n${p.log.slice(-3000)}`);
    if (Date.now() > end) throw new Error(`${what}: not within ${ms / 1000} s\n${procs.map((p) => `${p.name}:\n${p.log.slice(-2000)}`).join('\n')}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function stop(procs: Proc[]): Promise<void> {
  await Promise.all(
    procs.map((p) => {
      if (p.child.exitCode !== null || p.child.signalCode !== null) return undefined;
      const done = new Promise((r) => p.child.once('exit', r));
      p.child.kill('SIGTERM');
      return done;
    }),
  );
}

/** CPU seconds (user + system) process `pid` has used so far. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / CLK_TCK; // fields 14 and 15 (utime, stime), counted from field 3
}

interface Side {
  readonly name: string;
  readonly urls: string[];
  readonly procs: Proc[];
  readonly enclavePublicKey: Uint8Array;
  readonly context: Uint8Array;
}

async function singleVault(dir: string, pubFile: string): Promise<Side> {
  const p = spawnBkv('single', ['serve', '--data', join(dir, 'single'), '--port', '0', '--partitions', '1', '--record-limit', 'off', '--address-limit', 'off', '--auth-issuer', pubFile]);
  const url = await until('the single vault to listen', 120_000, () => /"msg":"listening","url":"([^"]+)"/.exec(p.log)?.[1] ?? null, [p]);
  const info = await fetchVaultInfo(url);
  return { name: 'single vault', urls: [url], procs: [p], enclavePublicKey: info.enclavePublicKey, context: te.encode('BackupKeyVault-v1') };
}

async function fleetOf3(dir: string, pubFile: string): Promise<Side> {
  const fdir = join(dir, 'fleet');
  await initFleet({ dir: fdir, members: 3, authIssuers: [pubFile] });
  const file = join(fdir, 'fleet.json');
  const cfg = checkFleetConfig(JSON.parse(readFileSync(file, 'utf8')));
  const ports: number[] = [];
  for (let i = 0; i < 6; i++) ports.push(await freePort());
  writeFileSync(file, fleetJson({ ...cfg, members: cfg.members.map((m, i) => ({ ...m, api: { host: '127.0.0.1', port: ports[2 * i]! }, peer: { host: '127.0.0.1', port: ports[2 * i + 1]! } })) }));
  const procs = [0, 1, 2].map((i) => spawnBkv(`member ${i}`, ['serve', '--fleet', file, '--member', String(i), '--record-limit', 'off', '--address-limit', 'off']));
  const urls = [0, 1, 2].map((i) => `http://127.0.0.1:${ports[2 * i]}`);
  const keyFile = join(fdir, 'vault-key.pub');
  await until('vault-key.pub', 180_000, () => existsSync(keyFile), procs);
  // every member normal under one leader, its vault loaded
  await until('a leader', 60_000, async () => {
    const all = await Promise.all(urls.map((u) => fetch(`${u}/fleet/status`).then((r) => r.json() as Promise<{ status: string; leader: { id: number } | null; appliedBatch?: number }>, () => null)));
    return all.every((s) => s?.status === 'normal' && s.appliedBatch !== undefined && s.leader?.id === all[0]!.leader?.id);
  }, procs);
  const pinned = readVaultKeyFile(keyFile);
  return { name: 'fleet of 3 processes', urls, procs, enclavePublicKey: pinned.enclavePublicKey, context: pinned.opaqueContext };
}

async function clientOf(side: Side, tokens: BenchTokens): Promise<EscrowClient> {
  return new EscrowClient({
    relay: httpRelay({ baseUrl: side.urls.length === 1 ? side.urls[0]! : side.urls, enclavePublicKey: side.enclavePublicKey }),
    enclavePublicKey: side.enclavePublicKey,
    suite: await fastSuite('ristretto255-SHA512'),
    rng: (n) => new Uint8Array(randomBytes(n)),
    context: side.context,
    auth: (id) => tokens.token(id),
    ksf: identityKsf,
    ksfBounds: { ...DEFAULT_KSF_BOUNDS, allowIdentity: true },
  });
}

/** `c` concurrent login loops for the window: logins/s, p50/p99 ms, failures, and each process's CPU ms per login. */
async function measure(side: Side, client: EscrowClient, ids: Uint8Array[], c: number, windowS: number) {
  const cpu0 = side.procs.map((p) => cpuSeconds(p.child.pid!));
  const t0 = performance.now();
  const end = t0 + windowS * 1000;
  const lat: number[] = [];
  let failed = 0;
  let lastError = '';
  await Promise.all(
    Array.from({ length: c }, async (_, i) => {
      while (performance.now() < end) {
        const s = performance.now();
        try {
          const r = await client.recover(ids[i]!, te.encode('pw'));
          if (!r.ok) throw new Error(`login ${r.outcome}`);
          lat.push(performance.now() - s);
        } catch (e) {
          failed++;
          lastError = e instanceof Error ? e.message : String(e);
          if (failed > 50) throw e;
        }
      }
    }),
  );
  const ms = performance.now() - t0;
  const cpu = side.procs.map((p, i) => cpuSeconds(p.child.pid!) - cpu0[i]!);
  const n = lat.length;
  const sorted = lat.sort((a, b) => a - b);
  return { perSec: (n * 1000) / ms, n, p50: percentile(sorted, 50), p99: percentile(sorted, 99), failed, lastError, cpuMsPerLogin: cpu.map((s) => (n ? (s * 1000) / n : NaN)) };
}

const results: BenchResult[] = [];
const ratios: Record<string, number> = {};
const notes: string[] = [];

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'bkv-bench-fleet-'));
  const { tokens, pubFile } = await BenchTokens.inDir(join(dir, 'issuer'));
  const all: Proc[] = [];
  try {
    const single = await singleVault(dir, pubFile);
    all.push(...single.procs);
    progress(`single vault up at ${single.urls[0]}`);
    const fleet = await fleetOf3(dir, pubFile);
    all.push(...fleet.procs);
    progress(`fleet up at ${fleet.urls.join(',')}`);
    const ids = Array.from({ length: maxC }, (_, i) => te.encode(`bench-user-${i}`));
    const sides = [single, fleet];
    const clients = await Promise.all(sides.map((s) => clientOf(s, tokens)));
    for (const [k, side] of sides.entries()) {
      for (let i = 0; i < ids.length; i += 16) await Promise.all(ids.slice(i, i + 16).map((id) => clients[k]!.register(id, te.encode('pw'), new Uint8Array(32).fill(1), { attemptLimit: 255 })));
      await measure(side, clients[k]!, ids, Math.min(4, maxC), A.quick ? 0.3 : 1); // warm-up
    }
    progress(`${ids.length} records registered on each`);
    console.log('vault logins over HTTP: the single vault against a fleet of 3 member processes on loopback');
    console.log(machineLine(M));
    console.log('\nconcurrency | side                   | logins/s | p50/p99 ms    | CPU ms per login, per process | failed');
    let top: { single: number; fleet: number } | null = null;
    for (const c of levels) {
      const row: number[] = [];
      for (const [k, side] of sides.entries()) {
        const r = await measure(side, clients[k]!, ids, c, seconds);
        row.push(r.perSec);
        console.log(
          `${String(c).padStart(11)} | ${side.name.padEnd(22)} | ${r.perSec.toFixed(1).padStart(8)} | ${`${r.p50.toFixed(1)}/${r.p99.toFixed(1)}`.padEnd(13)} | ${side.procs.map((p, i) => `${p.name} ${r.cpuMsPerLogin[i]!.toFixed(2)}`).join(', ').padEnd(29)} | ${r.failed}${r.failed ? ` (${r.lastError})` : ''}`,
        );
        results.push({
          name: `fleet: ${side.name}, logins, concurrency ${c}`,
          group: 'fleet vs single vault, logins over HTTP',
          kind: 'ours',
          opsPerSec: round(r.perSec, 1),
          unit: 'logins/s (2 operations each)',
          p50Ms: round(r.p50, 2),
          p99Ms: round(r.p99, 2),
          concurrency: c,
          failed: r.failed,
          cpuMsPerLogin: Object.fromEntries(side.procs.map((p, i) => [p.name, round(r.cpuMsPerLogin[i]!, 3)])),
        });
      }
      if (c === maxC) top = { single: row[0]!, fleet: row[1]! };
    }
    if (top) {
      ratios.fleet3VsSingle = round(top.fleet / top.single, 3);
      console.log(`\nfleet3VsSingle (concurrency ${maxC}) = ${ratios.fleet3VsSingle} (target 0.5)`);
    }
    console.log(`load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
    notes.push(`single vault: bkv serve, 1 partition, worker device, SQLite; fleet: 3 bkv serve --fleet processes, the device in each member's main thread, SQLite per member; SDK client (identity KSF) in the bench process; ${seconds} s per side and level${A.quick ? ' (quick: a smoke run)' : ''}`);
  } finally {
    await stop(all);
    rmSync(dir, { recursive: true, force: true });
  }
}

main().then(
  () => {
    emit({ subsystem: 'fleet', quick: A.quick, machine: M, results, ratios, notes }, A.json);
    process.exit(0);
  },
  (e: unknown) => {
    console.error(e);
    process.exit(1);
  },
);
