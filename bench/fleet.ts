/**
 * Logins per second of the vault served by fleets of member processes on loopback (`bkv serve
 * --fleet ... --member I`: each batch one entry of the fleet's log, answered once a majority holds
 * it, applied by the followers) against the single vault (`bkv serve`, 1 partition), side by side
 * in one run: the single vault, a fleet of 3 and a fleet of 5 (`--members`), the same SDK client
 * (EscrowClient.recover with the right password over the HTTP relay, identity KSF: LoginStart +
 * LoginFinish, 2 operations, 2 batches) in this process.
 *
 * At each concurrency level the sides take turns in rounds (the order rotating each round, so
 * that drift in the shared machine falls on every side alike); a side's figure is the median of
 * its rounds' logins/s, with the p50/p99 latency per login and the CPU time each of its
 * processes spent per login (/proc/PID/stat user + system over the window) from its middle window
 * (the one whose rate is the median). Each fleet member is listed, the leader marked with `*`; a
 * window in which the leader changed says so. The sides not being measured are paused (SIGSTOP:
 * a member counts ticks on a timer, so a paused fleet sees no silence) and resumed before their
 * turn, so an idle fleet's ticking does not tax another side's window; `--no-pause` keeps them
 * all running. Before each window the bench samples the machine (bench/lib/common.ts
 * machineLoad): the load average and the cores other processes kept busy, with a warning when
 * they were busy.
 *
 *   fleet3VsSingle = fleet of 3 logins/s / single vault logins/s, medians at the highest level
 *   (target 0.5: docs/fleet-vault.md "Cost per login, expected"); fleet5VsSingle likewise for
 *   the fleet of 5; fleetNVsSinglePairedMedian: the median of the per-round ratios.
 *
 * Run: npx tsx bench/fleet.ts [--quick] [--json FILE] [--members 3,5] [--seconds S] [--rounds R]
 *                             [--levels 1,16,32] [--no-pause]
 * The single vault runs 1 partition (a fleet member runs 1: each partition would be its own
 * replication group). Every process shares this machine with the client: on a 2-core box the
 * figures are a floor, and the members plus the client compete for the same cores.
 * `--quick`: a smoke run (1 s windows, 2 rounds, one level), not a figure of record.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { BKV_NODE_FLAGS } from '../bin/bundle.mjs';
import { DEFAULT_KSF_BOUNDS, EscrowClient } from '../client/escrow.ts';
import { fetchVaultInfo, httpRelay } from '../client/http-relay.ts';
import { identityKsf } from '../enclave/opaque/ksf.ts';
import { fastSuite } from '../enclave/opaque/suites-fast.ts';
import { readVaultKeyFile } from '../host/cli/io.ts';
import { FLEET_SIZES, checkFleetConfig, fleetJson, initFleet } from '../host/fleet/config.ts';
import { BenchTokens } from './lib/auth.ts';
import { args, emit, machine, machineLine, machineLoad, procCpuMs, progress, round, type BenchResult, type MachineLoad } from './lib/common.ts';
import { freePorts } from './lib/service-proc.ts';
import { median, middleBy, percentile } from './lib/stats.ts';
import { machineBusyMs } from './lib/threads.ts';

const root = resolve(import.meta.dirname, '..');
const te = new TextEncoder();
const A = args();
const M = machine();
const seconds = A.num('seconds', A.quick ? 1 : 5);
const rounds = A.num('rounds', A.quick ? 2 : 3);
const levels = A.list('levels', A.quick ? [8] : [1, 16, 32]);
const memberCounts = A.list('members', [3, 5]);
const pause = !A.has('no-pause');
for (const n of memberCounts) if (!FLEET_SIZES.includes(n)) throw new Error(`--members: ${n} is not a fleet size (${FLEET_SIZES.join(', ')})`);
if (new Set(memberCounts).size !== memberCounts.length || !memberCounts.length) throw new Error('--members: a list of distinct fleet sizes, e.g. 3,5');
if (!Number.isInteger(rounds) || rounds < 1) throw new Error(`--rounds: a positive integer, got ${rounds}`);
for (const c of levels) if (!Number.isInteger(c) || c < 1) throw new Error(`--levels: positive integers, got ${c}`);
const maxC = Math.max(...levels);

interface Proc {
  readonly name: string;
  readonly child: ChildProcess;
  log: string;
}

const alive = (p: Proc) => p.child.exitCode === null && p.child.signalCode === null;

function spawnBkv(name: string, argv: string[], all: Proc[]): Proc {
  const child = spawn(process.execPath, [...BKV_NODE_FLAGS, join(root, 'bin/bkv.mjs'), ...argv], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  const p: Proc = { name, child, log: '' };
  const keep = (d: Buffer) => {
    p.log += d.toString('utf8');
    if (p.log.length > 1e6) p.log = p.log.slice(-1e5);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  all.push(p);
  return p;
}

async function until<T>(what: string, ms: number, fn: () => T | null | false | Promise<T | null | false>, procs: Proc[], pollMs = 100): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== null && v !== false) return v;
    for (const p of procs) if (!alive(p)) throw new Error(`${p.name} exited ${p.child.exitCode ?? p.child.signalCode}:\n${p.log.slice(-3000)}`);
    if (Date.now() > end) throw new Error(`${what}: not within ${ms / 1000} s\n${procs.map((p) => `${p.name}:\n${p.log.slice(-2000)}`).join('\n')}`);
    await new Promise((r) => setTimeout(r, pollMs));
  }
}

/** SIGCONT (a paused process handles no SIGTERM), SIGTERM, and SIGKILL whatever has not exited after 15 s. */
async function stopAll(procs: Proc[]): Promise<void> {
  await Promise.all(
    procs.map((p) => {
      if (!alive(p)) return undefined;
      const done = new Promise((r) => p.child.once('exit', r));
      p.child.kill('SIGCONT');
      p.child.kill('SIGTERM');
      const t = setTimeout(() => p.child.kill('SIGKILL'), 15_000);
      return done.then(() => clearTimeout(t));
    }),
  );
}

interface Side {
  readonly name: string;
  /** 0 for the single vault. */
  readonly members: number;
  readonly urls: string[];
  readonly procs: Proc[];
  readonly enclavePublicKey: Uint8Array;
  readonly context: Uint8Array;
}

async function singleVault(dir: string, pubFile: string, all: Proc[], port: number): Promise<Side> {
  const p = spawnBkv('single', ['serve', '--data', join(dir, 'single'), '--port', String(port), '--partitions', '1', '--record-limit', 'off', '--address-limit', 'off', '--auth-issuer', pubFile], all);
  const url = await until('the single vault to listen', 120_000, () => /"msg":"listening","url":"([^"]+)"/.exec(p.log)?.[1] ?? null, [p]);
  const info = await fetchVaultInfo(url);
  return { name: 'single vault', members: 0, urls: [url], procs: [p], enclavePublicKey: info.enclavePublicKey, context: te.encode('BackupKeyVault-v1') };
}

interface MemberStatus {
  status: string;
  view: number;
  leader: { id: number } | null;
  appliedBatch?: number;
}

async function statuses(side: Side): Promise<(MemberStatus | null)[]> {
  return Promise.all(
    side.urls.map((u) =>
      fetch(`${u}/fleet/status`, { signal: AbortSignal.timeout(2000) }).then(
        (r) => r.json() as Promise<MemberStatus>,
        () => null,
      ),
    ),
  );
}

/** The leader every member of the fleet names while all are normal with their vault loaded; null otherwise. */
function agreedLeader(all: (MemberStatus | null)[]): { leader: number; view: number } | null {
  const first = all[0]?.leader?.id;
  if (first === undefined) return null;
  return all.every((s) => s?.status === 'normal' && s.appliedBatch !== undefined && s.leader?.id === first) ? { leader: first, view: Math.max(...all.map((s) => s!.view)) } : null;
}

/** Waits until every member is normal under one leader (at start, and after a pause). */
async function settled(side: Side, ms: number): Promise<{ leader: number; view: number }> {
  return until(`${side.name}: every member normal under one leader`, ms, async () => agreedLeader(await statuses(side)), side.procs, 50);
}

/** `ports`: 2n free ports (an API and a peer port per member), distinct from every other side's. */
async function fleetOf(n: number, dir: string, pubFile: string, all: Proc[], ports: number[]): Promise<Side> {
  const fdir = join(dir, `fleet-${n}`);
  await initFleet({ dir: fdir, members: n, authIssuers: [pubFile] });
  const file = join(fdir, 'fleet.json');
  const cfg = checkFleetConfig(JSON.parse(readFileSync(file, 'utf8')));
  writeFileSync(file, fleetJson({ ...cfg, members: cfg.members.map((m, i) => ({ ...m, api: { host: '127.0.0.1', port: ports[2 * i]! }, peer: { host: '127.0.0.1', port: ports[2 * i + 1]! } })) }));
  const ids = Array.from({ length: n }, (_, i) => i);
  const procs = ids.map((i) => spawnBkv(`member ${i}`, ['serve', '--fleet', file, '--member', String(i), '--record-limit', 'off', '--address-limit', 'off'], all));
  const urls = ids.map((i) => `http://127.0.0.1:${ports[2 * i]}`);
  const keyFile = join(fdir, 'vault-key.pub');
  await until(`fleet of ${n}: vault-key.pub`, 180_000, () => existsSync(keyFile), procs);
  const pinned = readVaultKeyFile(keyFile);
  const side: Side = { name: `fleet of ${n}`, members: n, urls, procs, enclavePublicKey: pinned.enclavePublicKey, context: pinned.opaqueContext };
  await settled(side, 60_000);
  return side;
}

function signal(side: Side, sig: 'SIGSTOP' | 'SIGCONT'): void {
  for (const p of side.procs) if (alive(p)) p.child.kill(sig);
}

/** Resumes a paused side and waits until it serves again: the fleet under one leader, the single vault answering. */
async function resume(side: Side): Promise<{ leader: number; view: number } | null> {
  signal(side, 'SIGCONT');
  if (side.members) return settled(side, 30_000);
  await until(`${side.name}: health after resume`, 30_000, () => fetch(`${side.urls[0]}/health`, { signal: AbortSignal.timeout(2000) }).then((r) => r.ok, () => false), side.procs, 20);
  return null;
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

interface Window {
  round: number;
  perSec: number;
  n: number;
  p50: number;
  p99: number;
  failed: number;
  lastError: string;
  /** Per process of the side: CPU ms per login, and cores' worth of CPU over the window. */
  cpuMsPerLogin: number[];
  cpuCores: number[];
  /** Cores other processes (not the bench, not any side's server) kept busy during the window. */
  otherCores: number;
  /** The machine before the window. */
  before: MachineLoad;
  /** Fleets: the leader (and view) before and after the window. */
  leader: number | null;
  leaderAfter: number | null;
  viewChanged: boolean;
}

/** `c` concurrent login loops for the window: logins/s, p50/p99 ms, failures, each process's CPU. */
async function measure(side: Side, client: EscrowClient, ids: Uint8Array[], c: number, windowS: number, everyPid: number[]) {
  const selfMs = () => {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1000;
  };
  const ours = () => selfMs() + everyPid.reduce((s, pid) => s + (procCpuMs(pid) || 0), 0);
  const cpu0 = side.procs.map((p) => procCpuMs(p.child.pid!));
  const m0 = machineBusyMs();
  const o0 = ours();
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
  const otherCores = round(Math.max(0, machineBusyMs() - m0 - (ours() - o0)) / ms, 2);
  const cpu = side.procs.map((p, i) => procCpuMs(p.child.pid!) - cpu0[i]!);
  const n = lat.length;
  const sorted = lat.sort((a, b) => a - b);
  return {
    perSec: (n * 1000) / ms,
    n,
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    failed,
    lastError,
    cpuMsPerLogin: cpu.map((x) => (n ? x / n : NaN)),
    cpuCores: cpu.map((x) => x / ms),
    otherCores,
  };
}

/** `member 0* 2.01, member 1 3.90`: CPU ms per login of each process, the leader starred. */
function cpuText(side: Side, w: Window): string {
  return side.procs.map((p, i) => `${p.name}${w.leader === i ? '*' : ''} ${w.cpuMsPerLogin[i]!.toFixed(2)}`).join(', ');
}

const results: BenchResult[] = [];
const ratios: Record<string, number> = {};
const missing: Record<string, string> = {};
const notes: string[] = [];
const detail: Record<string, unknown>[] = [];

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'bkv-bench-fleet-'));
  const { tokens, pubFile } = await BenchTokens.inDir(join(dir, 'issuer'));
  const all: Proc[] = [];
  // Stopped by a signal (bench/run.ts on its time limit, Ctrl-C): no member is left paused or running.
  for (const sig of ['SIGTERM', 'SIGINT'] as const) {
    process.once(sig, () => {
      for (const p of all) {
        if (!alive(p)) continue;
        p.child.kill('SIGCONT');
        p.child.kill('SIGKILL');
      }
      rmSync(dir, { recursive: true, force: true });
      process.exit(1);
    });
  }
  try {
    const t0 = performance.now();
    // Every side's ports reserved together, before any process starts: the sides start at once, and
    // ports taken one at a time could hand two members (or a member and the single vault) one port.
    const ports = await freePorts(1 + memberCounts.reduce((s, n) => s + 2 * n, 0));
    const portsOf = (k: number) => ports.slice(1 + memberCounts.slice(0, k).reduce((s, n) => s + 2 * n, 0)).slice(0, 2 * memberCounts[k]!);
    const sides = await Promise.all([singleVault(dir, pubFile, all, ports[0]!), ...memberCounts.map((n, k) => fleetOf(n, dir, pubFile, all, portsOf(k)))]);
    progress(`up in ${((performance.now() - t0) / 1000).toFixed(1)} s: ${sides.map((s) => `${s.name} at ${s.urls.join(',')}`).join('; ')}`);
    const everyPid = all.map((p) => p.child.pid!);
    if (pause) for (const s of sides) signal(s, 'SIGSTOP');
    const ids = Array.from({ length: maxC }, (_, i) => te.encode(`bench-user-${i}`));
    const clients = await Promise.all(sides.map((s) => clientOf(s, tokens)));
    for (const [k, side] of sides.entries()) {
      if (pause) await resume(side);
      for (let i = 0; i < ids.length; i += 16) await Promise.all(ids.slice(i, i + 16).map((id) => clients[k]!.register(id, te.encode('pw'), new Uint8Array(32).fill(1), { attemptLimit: 255 })));
      await measure(side, clients[k]!, ids, Math.min(4, maxC), A.quick ? 0.3 : 1, everyPid); // warm-up
      if (pause) signal(side, 'SIGSTOP');
    }
    progress(`${ids.length} records registered on each side`);
    console.log(`vault logins over HTTP: the single vault against fleets of ${memberCounts.join(' and ')} member processes on loopback`);
    console.log(machineLine(M));
    console.log(
      `${rounds} round(s) of ${seconds} s per side and level, the order rotating; ${pause ? 'the sides not measured paused (SIGSTOP)' : 'every side running throughout (--no-pause)'}; load = 1-minute load average before the window, other = cores other processes used before / during it`,
    );
    let busy = 0;
    let windows = 0;
    const top: Record<string, Window[]> = {};
    for (const [li, c] of levels.entries()) {
      console.log(`\nconcurrency ${c}: windows`);
      const byside = new Map<Side, Window[]>(sides.map((s) => [s, []]));
      for (let r = 0; r < rounds; r++) {
        const order = sides.map((_, i) => sides[(i + r + li) % sides.length]!);
        for (const side of order) {
          const before = pause ? await resume(side) : side.members ? await settled(side, 30_000) : null;
          const load = await machineLoad(everyPid, A.quick ? 250 : 500);
          if (load.warning) {
            busy++;
            console.log(`  WARNING ${load.warning}`);
          }
          const m = await measure(side, clients[sides.indexOf(side)]!, ids, c, seconds, everyPid);
          const after = side.members ? agreedLeader(await statuses(side)) : null;
          if (pause) signal(side, 'SIGSTOP');
          windows++;
          const w: Window = {
            round: r,
            ...m,
            before: load,
            leader: before?.leader ?? null,
            leaderAfter: after?.leader ?? null,
            viewChanged: !!before && (!after || after.view !== before.view),
          };
          byside.get(side)!.push(w);
          const lead = side.members ? (w.viewChanged ? `, VIEW CHANGED: leader ${w.leader} -> ${w.leaderAfter ?? 'none'}` : `, leader member ${w.leader}`) : '';
          console.log(
            `  round ${r + 1} ${side.name.padEnd(12)} ${w.perSec.toFixed(1).padStart(8)} logins/s  p50/p99 ${w.p50.toFixed(1)}/${w.p99.toFixed(1)} ms  load ${load.loadavg[0]} other ${load.otherCores}/${w.otherCores}${lead}${w.failed ? `  failed ${w.failed} (${w.lastError})` : ''}`,
          );
        }
      }
      console.log(`concurrency ${c}: median of ${rounds} round(s); p50/p99 and CPU from the middle window (* leader)`);
      console.log(`  ${'side'.padEnd(12)} | logins/s | p50/p99 ms    | CPU ms per login, per process`);
      for (const side of sides) {
        const ws = byside.get(side)!;
        const perSec = median(ws.map((w) => w.perSec));
        const mid = middleBy(ws, (w) => w.perSec);
        console.log(`  ${side.name.padEnd(12)} | ${perSec.toFixed(1).padStart(8)} | ${`${mid.p50.toFixed(1)}/${mid.p99.toFixed(1)}`.padEnd(13)} | ${cpuText(side, mid)}`);
        const label = (i: number) => `${side.procs[i]!.name}${mid.leader === i ? ' (leader)' : ''}`;
        results.push({
          name: `fleet: ${side.name}, logins, concurrency ${c}`,
          group: 'fleet vs single vault, logins over HTTP',
          kind: 'ours',
          opsPerSec: round(perSec, 1),
          unit: 'logins/s (2 operations each)',
          p50Ms: round(mid.p50, 2),
          p99Ms: round(mid.p99, 2),
          concurrency: c,
          members: side.members || 1,
          ...(side.members ? { leader: mid.leader, leaderChangedInWindows: ws.filter((w) => w.viewChanged).length } : {}),
          roundsPerSec: ws.map((w) => round(w.perSec, 1)),
          failed: ws.reduce((s, w) => s + w.failed, 0),
          cpuMsPerLogin: Object.fromEntries(side.procs.map((_, i) => [label(i), round(mid.cpuMsPerLogin[i]!, 3)])),
          cpuCoresPerProcess: Object.fromEntries(side.procs.map((_, i) => [label(i), round(mid.cpuCores[i]!, 3)])),
          otherCoresMax: Math.max(...ws.map((w) => Math.max(w.before.otherCores, w.otherCores))),
        });
        detail.push({ side: side.name, concurrency: c, windows: ws.map((w) => ({ ...w, perSec: round(w.perSec, 1), p50: round(w.p50, 2), p99: round(w.p99, 2), cpuMsPerLogin: w.cpuMsPerLogin.map((x) => round(x, 3)), cpuCores: w.cpuCores.map((x) => round(x, 3)) })) });
        if (c === maxC) top[side.name] = ws;
      }
    }
    const single = top['single vault']!;
    console.log('');
    for (const n of memberCounts) {
      const fleet = top[`fleet of ${n}`]!;
      const key = `fleet${n}VsSingle`;
      ratios[key] = round(median(fleet.map((w) => w.perSec)) / median(single.map((w) => w.perSec)), 3);
      ratios[`${key}PairedMedian`] = round(median(fleet.map((w, r) => w.perSec / single[r]!.perSec)), 3);
      console.log(`${key} (concurrency ${maxC}) = ${ratios[key]}${n === 3 ? ' (target 0.5)' : ''}; paired median of ${rounds} round(s) ${ratios[`${key}PairedMedian`]}`);
    }
    for (const n of [3, 5]) if (!memberCounts.includes(n)) missing[`fleet${n}VsSingle`] = `not measured: --members ${memberCounts.join(',')}`;
    console.log(`load average at the end ${machine().loadavgAtStart.join(' ')}`);
    notes.push(
      `single vault: bkv serve, 1 partition, worker device, SQLite; fleets of ${memberCounts.join(' and ')}: bkv serve --fleet processes, the device in each member's main thread, SQLite per member; SDK client (identity KSF) in the bench process; levels ${levels.join(', ')}, ${rounds} round(s) of ${seconds} s per side and level, the order rotating, median; p50/p99 and CPU per process from the middle window; ${pause ? 'the sides not measured paused (SIGSTOP)' : 'all sides running throughout'}; ${availableParallelism()} cores${A.quick ? ' (quick: a smoke run)' : ''}`,
    );
    if (busy) notes.push(`${busy} of ${windows} windows followed a sample in which other processes used at least 0.25 cores: a busy machine, figures are a floor`);
    const changed = results.reduce((s, r) => s + ((r.leaderChangedInWindows as number | undefined) ?? 0), 0);
    if (changed) notes.push(`a fleet's view changed during ${changed} window(s)`);
  } finally {
    await stopAll(all);
    rmSync(dir, { recursive: true, force: true });
  }
}

main().then(
  () => {
    emit({ subsystem: 'fleet', quick: A.quick, machine: M, results, ratios, missing, notes, detail }, A.json);
    process.exit(0);
  },
  (e: unknown) => {
    console.error(e);
    process.exit(1);
  },
);
