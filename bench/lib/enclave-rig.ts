/**
 * The enclave path as the benches drive it: a VaultHost (partitions of enclave devices in worker
 * threads, SQLite durable by default, or another store / token) provisioned with a bench issuer
 * (bench/lib/auth.ts: every operation carries its record's token, which the enclave checks),
 * records registered through it, and timed windows of sealed client operations at a fixed concurrency with latencies, mean
 * batch size and the CPU split between the host thread and the devices. Also the raw baseline:
 * N worker threads running our OPAQUE server with no boundary (bench/lib/raw-worker.ts).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { DEFAULT_OPAQUE_CONTEXT, SUITE_CODE } from '../../enclave/api/messages.ts';
import { clientLoginFinish, clientLoginStart, clientRegistrationFinish, clientRegistrationStart } from '../../enclave/opaque/client.ts';
import { identityKsf } from '../../enclave/opaque/ksf.ts';
import type { SuiteId } from '../../enclave/opaque/suite.ts';
import { fastSuite } from '../../enclave/opaque/suites-fast.ts';
import type { TokenKind } from '../../hsm/tokens/backends.ts';
import type { TokenPinSource } from '../../enclave/api/device.ts';
import { VaultHost } from '../../host/vault/vault-host.ts';
import { BenchTokens } from './auth.ts';
import { TOKEN_CACHE_MAX } from '../../enclave/api/auth-verify.ts';
import { MAX_LOGIN_SESSIONS_PER_ID, MAX_TABLE_ENTRIES, SESSION_TTL_MS } from '../../enclave/vault/sessions.ts';
import { cpuSplit, threadTimes } from './threads.ts';
import type { CpuSplit, ThreadTimes } from './threads.ts';
import { ClientKit, bulkRegister, closedLoop, decodeAnswer, rng } from './vault-load.ts';
import { percentile } from './stats.ts';
import type { Outcome, Prepared } from './vault-load.ts';
import { expectResponse } from '../../enclave/api/expect.ts';

const te = new TextEncoder();

export interface WindowResult {
  op: string;
  partitions: number;
  concurrency: number;
  opsPerSec: number;
  ops: number;
  ms: number;
  p50Ms: number;
  p99Ms: number;
  meanBatch: number;
  cpu: CpuSplit;
  /** CPU time of the whole process per operation (all its threads), microseconds. */
  cpuUsPerOp: number;
  answers: Record<string, number>;
  /** True if the prepared messages ran out before the window ended. */
  exhausted: boolean;
}

export interface RigOptions {
  partitions: number;
  records: number;
  token?: TokenKind;
  /** Where the devices find the token's PINs (VaultHostOptions.tokenPins): a `pkcs11` token's user PIN. */
  tokenPins?: TokenPinSource;
  /** Runs on the new data folder before the vault opens (a `pkcs11` token's configuration: hsm/tokens/config.ts provisionModuleToken). */
  prepare?: (dataDir: string) => void;
  store?: string;
  mode?: 'worker' | 'process';
  suite?: SuiteId;
  /** Records registered with a real client and a known password (for the KE3 phase). */
  realRecords?: number;
}

export class EnclaveRig {
  private batchSizes: number[] = [];
  private estimate = 1000; // ops/s, for sizing the prepared pools
  private constructor(
    readonly host: VaultHost,
    readonly kit: ClientKit,
    readonly dir: string,
    readonly ids: Uint8Array[],
    readonly realIds: Uint8Array[],
    readonly opts: RigOptions,
    readonly threadsBefore: ThreadTimes,
    readonly registerMs: number,
  ) {}

  static async open(o: RigOptions): Promise<EnclaveRig> {
    const dir = mkdtempSync(join(tmpdir(), 'bkv-bench-rig-'));
    const before = threadTimes();
    const sizes: number[] = [];
    const tokens = await BenchTokens.create();
    let host: VaultHost;
    try {
      o.prepare?.(dir);
      host = await VaultHost.open({
        dataDir: dir,
        partitions: o.partitions,
        auth: tokens.config,
        mode: o.mode ?? 'worker',
        ...(o.token && { token: o.token }),
        ...(o.tokenPins && { tokenPins: o.tokenPins }),
        ...(o.store && { store: o.store }),
        onBatch: (_p, size) => sizes.push(size),
      });
    } catch (e) {
      for (const x of [dir, `${dir}.operator`]) rmSync(x, { recursive: true, force: true });
      throw e;
    }
    const suite = await fastSuite(o.suite ?? 'ristretto255-SHA512');
    const kit = new ClientKit(suite, host.info.enclavePublicKey, DEFAULT_OPAQUE_CONTEXT, tokens);
    const submit = (id: Uint8Array, m: Uint8Array) => host.submit(id, m);
    const tag = Math.random().toString(36).slice(2, 8);
    const realIds = Array.from({ length: o.realRecords ?? 0 }, (_, i) => te.encode(`real-${tag}-${i}`));
    await Promise.all(realIds.map((id) => registerReal(kit, submit, id)));
    const record = await kit.sampleRecord(submit, te.encode(`sample-${tag}`), te.encode('pw'));
    const ids = Array.from({ length: o.records }, (_, i) => te.encode(`bench-${tag}-${i}`));
    const reg = await bulkRegister(kit, submit, ids, record, { inFlight: 256 });
    if (reg.failures) throw new Error(`${reg.failures} registrations failed`);
    const rig = new EnclaveRig(host, kit, dir, loginIdsOf(host, ids), realIds, o, before, reg.ms);
    rig.batchSizes = sizes;
    return rig;
  }

  get submit() {
    return (id: Uint8Array, m: Uint8Array) => this.host.submit(id, m);
  }

  /**
   * Runs prepared messages at `concurrency` for `windowMs` (after `rampMs` of the same load, not
   * counted: closedLoop's ClosedLoopOptions), with the batch and CPU accounting of the measured
   * interval.
   */
  async window(op: string, msgs: Prepared[], concurrency: number, windowMs: number, rampMs = 0): Promise<WindowResult & { outcome: Outcome }> {
    const sizes = this.batchSizes;
    let b0 = sizes.length;
    let b1 = -1;
    let t0 = threadTimes();
    let t1 = t0;
    const outcome = await closedLoop(this.submit, msgs, concurrency, windowMs, {
      rampMs,
      onStart: () => {
        t0 = threadTimes();
        b0 = sizes.length;
      },
      onEnd: () => {
        t1 = threadTimes();
        b1 = sizes.length;
      },
    });
    const wall = outcome.ms;
    const cpu = cpuSplit(t0, t1, wall, this.host.info.partitions, this.threadsBefore);
    const batch = sizes.slice(b0, b1);
    sizes.length = 0;
    const meanBatch = batch.length ? batch.reduce((a, x) => a + x, 0) / batch.length : 0;
    return {
      op,
      partitions: this.host.info.partitions,
      concurrency,
      opsPerSec: outcome.opsPerSec,
      ops: outcome.ops,
      ms: outcome.ms,
      p50Ms: percentile(outcome.latenciesMs, 50),
      p99Ms: percentile(outcome.latenciesMs, 99),
      meanBatch,
      cpu,
      cpuUsPerOp: (cpu.total * wall * 1000) / Math.max(1, outcome.ops),
      answers: outcome.answers,
      exhausted: outcome.sent >= msgs.length,
      outcome,
    };
  }

  /** Messages to prepare for a window: 1.6x what the fastest rate seen so far would use (`factor` for cheaper operations). */
  private poolSize(windowMs: number, factor = 1): number {
    return Math.min(40_000, Math.max(300, Math.ceil((this.estimate * factor * windowMs * 1.6) / 1000)));
  }

  private cursor = 0;
  /**
   * LoginStart (KE1 -> KE2 with a durably charged guess) over the bulk records, round robin;
   * `rampMs` of the same load before the measured window (closedLoop's ClosedLoopOptions).
   */
  async login(concurrency: number, windowMs: number, rampMs = 0): Promise<WindowResult> {
    const n = this.poolSize(windowMs + rampMs);
    const msgs = Array.from({ length: n }, () => {
      const i = this.cursor++;
      return this.kit.loginStart(this.ids[i % this.ids.length]!, i);
    });
    const r = await this.window('login', msgs, concurrency, windowMs, rampMs);
    // A refused login (TooManySessions) is cheap and no login to count: a record holds at most
    // MAX_LOGIN_SESSIONS_PER_ID open login sessions and a partition MAX_TABLE_ENTRIES, each for
    // SESSION_TTL_MS; `endSessions` closes each window's sessions so that a run never nears either.
    const refused = r.answers['Fault 2114'];
    if (refused) {
      throw new Error(
        `${refused} of ${r.ops} logins refused (TooManySessions): a record holds at most ${MAX_LOGIN_SESSIONS_PER_ID} and a partition ${MAX_TABLE_ENTRIES} open login sessions for ${SESSION_TTL_MS / 1000} s`,
      );
    }
    await this.endSessions(r.outcome);
    this.estimate = Math.max(this.estimate, r.opsPerSec);
    return strip(r);
  }

  /**
   * Closes the login sessions a window opened, outside its timing: a LoginFinish with a wrong KE3
   * each (the guess stays charged; the records' attempt limit, 255, outlasts a full run). Without
   * it the open sessions of a full run's logins within SESSION_TTL_MS filled a partition's table
   * (TooManySessions in round 5, 2026-12-05). Every finish must answer WrongPassword.
   */
  private async endSessions(o: Outcome): Promise<void> {
    const ke3 = new Uint8Array(this.kit.suite.Nm);
    const finishes: Prepared[] = [];
    for (const a of o.answerList) {
      const d = decodeAnswer(a.p, a.r);
      if (d?.type === 'LoginStarted') finishes.push(this.kit.prepare(a.p.recordId, { type: 'LoginFinish', sessionId: d.sessionId, ke3 }));
    }
    const done = await closedLoop(this.submit, finishes, 256, 600_000);
    const wrong = done.answers['WrongPassword'] ?? 0;
    if (wrong !== finishes.length) throw new Error(`closing ${finishes.length} login sessions: ${JSON.stringify(done.answers)}`);
  }

  private regCursor = 0;
  /** RegisterStart (the OPRF evaluation of a registration) then RegisterFinish (a new sealed record, durably) for new ids. */
  async register(concurrency: number, windowMs: number): Promise<{ start: WindowResult; finish: WindowResult }> {
    const n = this.poolSize(windowMs, 3);
    const tag = `reg-${this.regCursor++}-${Math.random().toString(36).slice(2, 6)}`;
    const ids = Array.from({ length: n }, (_, i) => te.encode(`${tag}-${i}`));
    const starts = ids.map((id, i) => this.kit.registerStart(id, i));
    const s = await this.window('registration start', starts, concurrency, windowMs);
    const record = await this.kit.sampleRecord(this.submit, te.encode(`${tag}-sample`), te.encode('pw'));
    const finishes: Prepared[] = [];
    // Answers come back in completion order: pair each start with its answer by re-opening them.
    for (const [i, a] of s.outcome.answerList.entries()) {
      const d = decodeAnswer(a.p, a.r);
      if (d?.type !== 'RegisterStarted') continue;
      finishes.push(this.kit.prepare(a.p.recordId, { type: 'RegisterFinish', stageId: d.stageId, record, backupKey: new Uint8Array(32).fill(i & 255), authorization: undefined }));
    }
    const f = await this.window('registration finish', finishes, concurrency, windowMs * 4);
    return { start: strip(s), finish: strip(f) };
  }

  /** LoginFinish (KE3 check, attempts reset, key release) on the real records: logins started and finished by a real client, the finish timed. */
  async ke3(concurrency: number): Promise<WindowResult> {
    const o = { suite: this.kit.suite, context: this.kit.context, rng, ksf: identityKsf };
    const finishes: Prepared[] = [];
    const starts = this.realIds.map((id, i) => {
      const pw = te.encode(`pw-real-${i}`);
      const { ke1, state } = clientLoginStart(o, pw);
      return { id, pw, state, p: this.kit.prepare(id, { type: 'LoginStart', suite: SUITE_CODE[this.kit.suite.id], ke1 }) };
    });
    const answers = await Promise.all(starts.map((s) => this.submit(s.id, s.p.message)));
    for (const [i, s] of starts.entries()) {
      const a = expectResponse(decodeAnswer(s.p, answers[i]!), 'LoginStarted', 'KE3 phase: LoginStart');
      const fin = await clientLoginFinish(o, s.state, s.pw, a.ke2);
      if (!fin.ok) throw new Error(`KE3 phase: client login failed (${fin.outcome})`);
      finishes.push(this.kit.prepare(s.id, { type: 'LoginFinish', sessionId: a.sessionId, ke3: fin.ke3 }));
    }
    return strip(await this.window('KE3 check', finishes, concurrency, 60_000));
  }

  async close(): Promise<void> {
    await this.host.close();
    for (const x of [this.dir, `${this.dir}.operator`]) rmSync(x, { recursive: true, force: true });
  }
}

/**
 * The ids the login windows cycle through: per partition, the last LOGIN_IDS_PER_PARTITION
 * registered. Each device's token verifier (enclave/api/auth-verify.ts) keeps TOKEN_CACHE_MAX
 * verified tokens and, when full, drops the oldest quarter: a cycle over more of a partition's
 * tokens than that misses on every login (each token is dropped just before it comes round
 * again), so one partition would verify a signature per login and the other none. Within three
 * quarters of the cache, less the real records, the tokens registration last verified are all
 * still there and every login is a cache hit, as each raw login is (bench/lib/raw-worker.ts).
 */
const LOGIN_IDS_PER_PARTITION = (TOKEN_CACHE_MAX * 3) / 4 - 512;
function loginIdsOf(host: VaultHost, ids: Uint8Array[]): Uint8Array[] {
  const byPartition = new Map<number, Uint8Array[]>();
  for (const id of ids) {
    const p = host.partitionOf(id);
    const list = byPartition.get(p);
    if (list) list.push(id);
    else byPartition.set(p, [id]);
  }
  const kept = new Set<Uint8Array>();
  for (const list of byPartition.values()) for (const id of list.slice(-LOGIN_IDS_PER_PARTITION)) kept.add(id);
  return ids.filter((id) => kept.has(id));
}

function strip(r: WindowResult & { outcome: Outcome }): WindowResult {
  const { outcome: _o, ...rest } = r;
  return rest;
}

async function registerReal(kit: ClientKit, submit: (id: Uint8Array, m: Uint8Array) => Promise<{ sealed: boolean; response: Uint8Array }>, id: Uint8Array): Promise<void> {
  const i = Number(new TextDecoder().decode(id).split('-').pop());
  const pw = te.encode(`pw-real-${i}`);
  const o = { suite: kit.suite, context: kit.context, rng, ksf: identityKsf };
  const { request, state } = clientRegistrationStart(o, pw);
  const p = kit.prepare(id, { type: 'RegisterStart', suite: SUITE_CODE[kit.suite.id], request, attemptLimit: 255, ksf: identityKsf.params, pacing: 0 });
  const a = expectResponse(decodeAnswer(p, await submit(id, p.message)), 'RegisterStarted', 'real registration');
  const { record } = await clientRegistrationFinish(o, state, pw, a.response);
  const f = kit.prepare(id, { type: 'RegisterFinish', stageId: a.stageId, record, backupKey: new Uint8Array(32).fill(i & 255), authorization: undefined });
  expectResponse(decodeAnswer(f, await submit(id, f.message)), 'Registered', 'real registration finish');
}

/** N raw servers in worker threads, started and stopped together. */
export class RawPool {
  private constructor(private readonly workers: Worker[]) {}

  static async open(n: number, suite: SuiteId = 'ristretto255-SHA512'): Promise<RawPool> {
    const boot = new URL('./worker-boot.mjs', import.meta.url);
    const module = new URL('./raw-worker.ts', import.meta.url).href;
    const workers = Array.from({ length: n }, () => new Worker(boot, { workerData: { module, suite }, execArgv: [] }));
    await Promise.all(
      workers.map(
        (w) =>
          new Promise<void>((res, rej) => {
            w.once('message', () => res());
            w.once('error', rej);
          }),
      ),
    );
    return new RawPool(workers);
  }

  get size(): number {
    return this.workers.length;
  }

  /** All workers run `op` for `ms` at once; total ops/s over the slowest worker's time, and the process's CPU time per operation. */
  async run(op: 'login' | 'register', ms: number, workers = this.workers.length): Promise<{ opsPerSec: number; perWorker: number[]; cpuUsPerOp: number; cpu: CpuSplit }> {
    const ws = this.workers.slice(0, workers);
    const t0 = threadTimes();
    const w0 = performance.now();
    const res = await Promise.all(
      ws.map(
        (w) =>
          new Promise<{ ops: number; ms: number; authFailures: number }>((r) => {
            w.once('message', r);
            w.postMessage({ run: op, ms });
          }),
      ),
    );
    const wall = performance.now() - w0;
    const cpu = cpuSplit(t0, threadTimes(), wall, 0, new Map());
    const refused = res.reduce((a, x) => a + x.authFailures, 0);
    if (refused) throw new Error(`raw ${op}: ${refused} issuer token checks refused`);
    const total = res.reduce((a, x) => a + x.ops, 0);
    const maxMs = Math.max(...res.map((x) => x.ms));
    return { opsPerSec: (total * 1000) / maxMs, perWorker: res.map((x) => (x.ops * 1000) / x.ms), cpuUsPerOp: (cpu.total * wall * 1000) / total, cpu };
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
