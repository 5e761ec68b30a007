/**
 * Load and soak: the vault service (in a child process, on loopback) under sustained open-loop
 * load at 80% of its measured capacity for a bounded time.
 *
 *   npx tsx test/adversarial/soak.ts --minutes N [--rate R] [--mode worker|process]
 *       [--partitions P] [--population U] [--calibrate-seconds S] [--seed S]
 *   (npm run soak -- --minutes N)
 *
 * 0. Population: U users registered first (default 20,000; not measured). The mix deletes as
 *    many users as it registers, so the vault holds about U records throughout: a soak that only
 *    registered would triple a small database in half an hour, and measure that growth (p99
 *    followed it, bench/README.md 2026-12-05) rather than a vault in a steady state.
 * 1. Capacity: a closed loop at 64 concurrent clients runs the mix, first for S/2 s unmeasured
 *    (the enclave's tables fill) and then for S s (--calibrate-seconds, default 20); capacity is
 *    the operations completed per second in the measured part. `--rate R` skips this and runs at R.
 * 2. The soak: arrivals at 80% of capacity, Poisson (exponential gaps), each started at its
 *    scheduled time whether or not earlier ones finished (open loop: a slow vault shows up as
 *    latency, not as a lower arrival rate); latency runs from the scheduled time to the end of
 *    the operation. The mix (one operation = the client's whole exchange):
 *      register  7.5% a new id: RegisterStart + RegisterFinish, answered Registered
 *      delete    7.5% a registered user, with proof of its backup key: Status + Delete, answered Deleted
 *      good      40%  a registered user, the right password: Recovered with the registered key
 *      bad       25%  a registered user, a wrong password: KE2, then WrongPassword (a user gets at
 *                     most limit-2 of these in a row before a good login resets the count)
 *      unknown   20%  an id never registered: the fake KE2, then WrongPassword
 *    Anything else (an HTTP error, another answer, a wrong key) is an error.
 * 3. Every 10 s: the service's RSS (its process and, in process mode, its devices; /proc) and the
 *    main thread's V8 heap (from /metrics). Memory is flat when, after the warm-up, the
 *    least-squares slope of RSS is under 5 MB/min and that of the heap under 2 MB/min. The warm-up
 *    is the time the enclave's bounded tables take to fill (sessions 2 min, stages and
 *    recovered-session proofs 5 min: RSS climbs for about 6 minutes, then levels; a 10-minute run
 *    measured +80 MB over minutes 2 to 6 and +15 MB over minutes 6 to 10): 6 minutes, and the gate
 *    applies to runs of 12 minutes or more (shorter runs report the slope after a warm-up of half
 *    the run, ungated). The bounds leave room for the state the mix legitimately adds: every
 *    registration is a new record (about 435 B in SQLite's page cache and a 32-byte leaf in the
 *    enclave). The service runs with a replay window of 60 s (default 10 min) so that the host's
 *    bounded replay table reaches its steady size within the warm-up.
 * 4. Every 10 s also the service's counters and CPU (lib/scrape.ts): per minute, the service's own
 *    mean latency, its batches (duration, size, rate) and the CPU of the service (with its devices)
 *    and of this driver: a latency drift that the service's own latency does not share is the driver's.
 * Report: operations by kind, errors, p50/p90/p99/max latency per kind per minute, RSS and heap
 * per minute, the slopes, the service's figures per minute. Exit 1 on any error or on memory growth.
 */
import { randomBytes } from 'node:crypto';
import { Rng, bump, isMain, linearFit, newReport, parseArgs, percentile, rssOf, runMain, sleep, sortedCopy, tempDir, te } from './lib/common.ts';
import type { Report } from './lib/common.ts';
import { describe, sameBytes } from './lib/flows.ts';
import type { VaultClient } from './lib/flows.ts';
import { openService } from './lib/vaults.ts';
import { cpuSecondsOf, scrape } from './lib/scrape.ts';
import type { Counters } from './lib/scrape.ts';

export type Kind = 'register' | 'delete' | 'good' | 'bad' | 'unknown';
const KINDS: Kind[] = ['register', 'delete', 'good', 'bad', 'unknown'];
export const MIX: Record<Kind, number> = { register: 0.075, delete: 0.075, good: 0.4, bad: 0.25, unknown: 0.2 };
/** The population registered before the soak (SoakOptions.population). */
export const DEFAULT_POPULATION = 20_000;
const LIMIT = 10;
export const RSS_SLOPE_MB_PER_MIN = 5;
export const HEAP_SLOPE_MB_PER_MIN = 2;
/** The enclave's longest table expiry (5 min) and a minute of margin. */
const WARM_UP_MS = 6 * 60_000;
const GATED_MINUTES = 12;

interface User {
  id: Uint8Array;
  password: Uint8Array;
  key: Uint8Array;
  bad: number;
  busy: boolean;
}

export interface SoakOptions {
  minutes: number;
  /** Operations per second; default 80% of the measured capacity. */
  rate?: number;
  calibrateSeconds?: number;
  mode?: 'worker' | 'process';
  partitions?: number;
  /** Users registered before calibration (default DEFAULT_POPULATION; at least 128). */
  population?: number;
  seed?: number;
  /** Gate on memory growth (default: for runs of GATED_MINUTES or more). */
  memoryGate?: boolean;
  log?: (line: string) => void;
}

class Mix {
  readonly users: User[] = [];
  constructor(
    readonly c: VaultClient,
    readonly rng: Rng,
  ) {}

  pickKind(): Kind {
    let x = this.rng.next();
    for (const k of KINDS) {
      if (x < MIX[k]) return k;
      x -= MIX[k];
    }
    return 'unknown';
  }

  private freeUser(bad: boolean): User | undefined {
    for (let i = 0; i < 8 && this.users.length; i++) {
      const u = this.rng.pick(this.users);
      if (!u.busy && (!bad || u.bad < LIMIT - 2)) return u;
    }
    return undefined;
  }

  /** Runs one operation of `kind`; resolves with the kind actually run and an error text, if any. */
  async run(kind: Kind): Promise<{ kind: Kind; error?: string }> {
    if (kind === 'register' || ((kind === 'good' || kind === 'bad' || kind === 'delete') && this.users.length < 8)) return { kind: 'register', error: await this.register() };
    if (kind === 'unknown') return { kind, error: await this.unknown() };
    if (kind === 'delete') {
      const d = this.freeUser(false);
      if (!d) return { kind: 'register', error: await this.register() };
      d.busy = true;
      const error = await this.remove(d);
      if (error) d.busy = false;
      return { kind, error };
    }
    let u = this.freeUser(kind === 'bad');
    if (!u && kind === 'bad') {
      kind = 'good';
      u = this.freeUser(false);
    }
    if (!u) return { kind: 'register', error: await this.register() };
    u.busy = true;
    try {
      return { kind, error: await this.login(u, kind === 'good') };
    } finally {
      u.busy = false;
    }
  }

  async register(): Promise<string | undefined> {
    const u: User = { id: te.encode(`soak-${randomBytes(8).toString('hex')}`), password: te.encode(randomBytes(8).toString('hex')), key: new Uint8Array(randomBytes(32)), bad: 0, busy: false };
    const o = await this.c.register(u.id, u.password, u.key, { attemptLimit: LIMIT });
    if (!o.registered) return `register: ${o.unknownAt ? `no answer to ${o.unknownAt} (${describe(o.error)})` : `${o.start?.type}/${o.finish?.type}`}`;
    this.users.push(u);
    return undefined;
  }

  private async login(u: User, good: boolean): Promise<string | undefined> {
    const o = await this.c.login(u.id, good ? u.password : te.encode(`bad-${randomBytes(4).toString('hex')}`));
    const what = `${good ? 'good' : 'bad'} login: ${o.unknownAt ? `no answer to ${o.unknownAt} (${describe(o.error)})` : `${o.start?.type}/${o.finish?.type}`}`;
    if (o.unknownAt || o.badRelease) return what;
    if (good) {
      if (!o.key || !sameBytes(o.key, u.key)) return what;
      u.bad = 0;
    } else {
      if (o.finish?.type !== 'WrongPassword') return what;
      u.bad++;
    }
    return undefined;
  }

  /** Deletes `u` with proof of its backup key; it leaves the population (still busy: nobody picks it meanwhile). */
  private async remove(u: User): Promise<string | undefined> {
    const a = await this.c.deleteWithKey(u.id, u.key);
    if (!a.ok || a.res.type !== 'Deleted') return `delete: ${a.ok ? a.res.type : `no answer (${describe(a.error)})`}`;
    const i = this.users.indexOf(u);
    this.users[i] = this.users[this.users.length - 1]!;
    this.users.pop();
    return undefined;
  }

  private async unknown(): Promise<string | undefined> {
    const o = await this.c.login(te.encode(`nobody-${randomBytes(8).toString('hex')}`), te.encode('guess'), { knownWrong: true });
    if (o.unknownAt || o.start?.type !== 'LoginStarted' || o.finish?.type !== 'WrongPassword') return `unknown user: ${o.unknownAt ? `no answer to ${o.unknownAt} (${describe(o.error)})` : `${o.start?.type}/${o.finish?.type}`}`;
    return undefined;
  }
}

const MB = 1024 * 1024;
const fmt = (ms: number) => (Number.isFinite(ms) ? (ms < 10 ? ms.toFixed(1) : Math.round(ms).toString()) : '-');

export async function soak(o: SoakOptions): Promise<Report> {
  const seed = o.seed ?? Date.now() % 1e9;
  const rng = new Rng(seed);
  const log = o.log ?? (() => undefined);
  const report = newReport(`soak (${o.minutes} min, ${o.mode ?? 'worker'} devices, seed ${seed})`);
  const tmp = tempDir('soak');
  const v = await openService({ dataDir: tmp.dir, mode: o.mode ?? 'worker', partitions: o.partitions ?? 2, replayWindowMs: 60_000, fastSeal: true });
  const svc = v.service;
  const mix = new Mix(v.client, rng);
  const errors: string[] = [];
  try {
    // The population (not measured), 64 registrations at a time.
    const population = Math.max(128, o.population ?? DEFAULT_POPULATION);
    const tp = performance.now();
    let lastLog = tp;
    let started = 0;
    await Promise.all(Array.from({ length: 64 }, async () => {
      while (started < population && errors.length < 20) {
        started++;
        const e = await mix.register();
        if (e) errors.push(`setup ${e}`);
        if (performance.now() - lastLog > 10_000) {
          lastLog = performance.now();
          log(`population: ${mix.users.length} of ${population} users`);
        }
      }
    }));
    report.stats['population registered first'] = `${mix.users.length} users in ${((performance.now() - tp) / 1000).toFixed(0)} s`;

    // ---- capacity ----
    let rate = o.rate;
    if (rate === undefined) {
      const seconds = o.calibrateSeconds ?? 20;
      let done = 0;
      const from = performance.now() + (seconds * 1000) / 2;
      const until = from + seconds * 1000;
      await Promise.all(
        Array.from({ length: 64 }, async () => {
          while (performance.now() < until) {
            const r = await mix.run(mix.pickKind());
            if (r.error) errors.push(`calibration ${r.error}`);
            else if (performance.now() >= from) done++;
          }
        }),
      );
      const capacity = done / seconds;
      rate = 0.8 * capacity;
      report.stats['capacity (closed loop, 64 clients), ops/s'] = capacity.toFixed(1);
      log(`capacity ${capacity.toFixed(1)} ops/s for the mix; soak at ${rate.toFixed(1)} ops/s`);
    }
    report.stats['arrival rate, ops/s'] = rate.toFixed(1);

    // ---- the soak ----
    const durationMs = o.minutes * 60_000;
    const lat: Map<string, number[]> = new Map(); // `${minute}/${kind}` -> ms
    const count: Record<string, number> = {};
    const mem: { t: number; rss: number; heap: number; counters?: Counters; svcCpu: number; genCpu: number }[] = [];
    const t0 = performance.now();
    let inFlight = 0;
    let maxInFlight = 0;
    let dropped = 0;
    const pending = new Set<Promise<void>>();
    const sampler = (async () => {
      for (;;) {
        const t = performance.now() - t0;
        const devices = svc.devicePids();
        const rss = rssOf(svc.pid) + devices.reduce((s, p) => s + (rssOf(p) || 0), 0);
        const counters = await scrape(svc.url);
        const svcCpu = cpuSecondsOf(svc.pid) + devices.reduce((s, p) => s + (cpuSecondsOf(p) || 0), 0);
        const u = process.cpuUsage();
        mem.push({ t, rss, heap: counters?.heapBytes ?? NaN, ...(counters && { counters }), svcCpu, genCpu: (u.user + u.system) / 1e6 });
        if (t >= durationMs) return;
        await sleep(Math.min(10_000, durationMs - t + 1));
      }
    })();
    let next = t0;
    let minuteLogged = 0;
    while (next - t0 < durationMs) {
      const now = performance.now();
      if (next > now) await sleep(Math.min(next - now, 50));
      while (next <= performance.now() && next - t0 < durationMs) {
        const scheduled = next;
        next += rng.exp(1000 / rate);
        if (inFlight >= 5000) {
          dropped++;
          continue;
        }
        inFlight++;
        maxInFlight = Math.max(maxInFlight, inFlight);
        const p: Promise<void> = mix.run(mix.pickKind()).then((r) => {
          inFlight--;
          const ms = performance.now() - scheduled;
          const minute = Math.floor((scheduled - t0) / 60_000) + 1;
          const key = `${minute}/${r.kind}`;
          let arr = lat.get(key);
          if (!arr) lat.set(key, (arr = []));
          arr.push(ms);
          bump(count, r.kind);
          if (r.error) errors.push(`minute ${minute}: ${r.error}`);
          pending.delete(p);
        });
        pending.add(p);
      }
      const minute = Math.floor((performance.now() - t0) / 60_000);
      if (minute > minuteLogged) {
        minuteLogged = minute;
        const last = mem[mem.length - 1];
        log(`minute ${minute}: ${Object.values(count).reduce((a, b) => a + b, 0)} ops, ${errors.length} errors, in flight ${inFlight}, RSS ${last ? (last.rss / MB).toFixed(1) : '-'} MB`);
      }
    }
    await Promise.all(pending);
    await sampler;
    const elapsed = (performance.now() - t0) / 1000;

    // ---- report ----
    const total = Object.values(count).reduce((a, b) => a + b, 0);
    report.stats['operations'] = `${total} in ${elapsed.toFixed(0)} s (${(total / elapsed).toFixed(1)}/s): ${KINDS.map((k) => `${k}=${count[k] ?? 0}`).join(' ')}`;
    report.stats['errors'] = errors.length;
    report.stats['arrivals dropped (5000 in flight)'] = dropped;
    report.stats['most operations in flight'] = maxInFlight;
    const minutes = Math.ceil(o.minutes);
    const table: string[] = ['minute kind        n    p50    p90    p99    max (ms)'];
    for (let m = 1; m <= minutes; m++) {
      for (const k of KINDS) {
        const xs = lat.get(`${m}/${k}`);
        if (!xs) continue;
        const s = sortedCopy(xs);
        table.push(`${String(m).padStart(6)} ${k.padEnd(9)} ${String(s.length).padStart(5)} ${fmt(percentile(s, 50)).padStart(6)} ${fmt(percentile(s, 90)).padStart(6)} ${fmt(percentile(s, 99)).padStart(6)} ${fmt(s[s.length - 1]!).padStart(6)}`);
      }
    }
    report.stats['latency'] = `\n${table.join('\n')}`;
    const memLines = ['minute  RSS MB  heap MB'];
    for (let m = 0; m <= minutes; m++) {
      const s = [...mem].reverse().find((x) => x.t <= m * 60_000 + 5000);
      if (s) memLines.push(`${String(m).padStart(6)} ${(s.rss / MB).toFixed(1).padStart(7)} ${(s.heap / MB).toFixed(1).padStart(8)}`);
    }
    report.stats['memory'] = `\n${memLines.join('\n')}`;
    // Where the time goes, minute by minute (differences between samples, lib/scrape.ts): the
    // service's own latency and batches beside the CPU of the service (with its devices) and of
    // this load generator, so that a drift shows whether it is in the vault or in the driver.
    const sample = (m: number) => [...mem].reverse().find((x) => x.t <= m * 60_000 + 5000);
    const inside = ['minute  server ms  batch ms  ops/batch  batches/s  service CPU %  driver CPU %'];
    for (let m = 1; m <= minutes; m++) {
      const a = sample(m - 1);
      const b = sample(m);
      if (!a?.counters || !b?.counters || b === a) continue;
      const dt = (b.t - a.t) / 1000;
      const d = (k: keyof Counters) => b.counters![k] - a.counters![k];
      const cell = (x: number, w: number, digits = 1) => (Number.isFinite(x) ? x.toFixed(digits) : '-').padStart(w);
      inside.push(
        `${String(m).padStart(6)} ${cell((1000 * d('opsSeconds')) / d('opsCount'), 10)} ${cell((1000 * d('batchSeconds')) / d('batchCount'), 9, 2)} ${cell(d('batchOps') / d('batchCount'), 10)} ${cell(d('batchCount') / dt, 10)} ${cell((100 * (b.svcCpu - a.svcCpu)) / dt, 14, 0)} ${cell((100 * (b.genCpu - a.genCpu)) / dt, 13, 0)}`,
      );
    }
    report.stats['inside the service'] = `\n${inside.join('\n')}`;
    const warm = Math.min(WARM_UP_MS, durationMs * 0.5);
    const after = mem.filter((x) => x.t >= warm && Number.isFinite(x.rss));
    const rssFit = linearFit(after.map((x) => x.t / 60_000), after.map((x) => x.rss / MB));
    const heapPts = after.filter((x) => Number.isFinite(x.heap));
    const heapFit = linearFit(heapPts.map((x) => x.t / 60_000), heapPts.map((x) => x.heap / MB));
    report.stats['RSS slope after warm-up, MB/min'] = `${rssFit.slope.toFixed(2)} (bound ${RSS_SLOPE_MB_PER_MIN}, ${after.length} samples)`;
    report.stats['heap slope after warm-up, MB/min'] = `${heapFit.slope.toFixed(2)} (bound ${HEAP_SLOPE_MB_PER_MIN})`;
    report.stats['users at the end'] = `${mix.users.length} (population ${population})`;
    report.checks += total + 2;
    for (const e of errors.slice(0, 20)) report.violations.push(`error: ${e}`);
    if (errors.length > 20) report.violations.push(`... and ${errors.length - 20} more errors`);
    if (dropped) report.violations.push(`${dropped} arrivals dropped: the vault fell behind the arrival rate`);
    const gate = o.memoryGate ?? o.minutes >= GATED_MINUTES;
    if (gate) {
      if (rssFit.slope > RSS_SLOPE_MB_PER_MIN) report.violations.push(`RSS grows ${rssFit.slope.toFixed(2)} MB/min after the warm-up (bound ${RSS_SLOPE_MB_PER_MIN})`);
      if (heapFit.slope > HEAP_SLOPE_MB_PER_MIN) report.violations.push(`heap grows ${heapFit.slope.toFixed(2)} MB/min after the warm-up (bound ${HEAP_SLOPE_MB_PER_MIN})`);
    } else report.notes.push(`memory not gated (runs under ${GATED_MINUTES} minutes end before the enclave's tables reach their steady size)`);
  } finally {
    await v.close().catch(() => svc.kill());
    tmp.remove();
  }
  return report;
}

if (isMain(import.meta.url)) {
  runMain(async () => {
    const a = parseArgs(process.argv.slice(2), ['minutes', 'rate', 'mode', 'partitions', 'population', 'calibrate-seconds', 'seed']);
    return soak({
      minutes: a.num('minutes', 5),
      rate: a.get('rate') === undefined ? undefined : a.num('rate', 10),
      calibrateSeconds: a.num('calibrate-seconds', 20),
      population: a.num('population', DEFAULT_POPULATION),
      mode: a.get('mode') === 'process' ? 'process' : 'worker',
      partitions: a.num('partitions', 2),
      seed: a.get('seed') === undefined ? undefined : a.num('seed', 1),
      log: (l) => console.log(l),
    });
  });
}
