/**
 * Throughput of the vault service's POST /v1/records/{recordId}/ops over HTTP, end to end: a
 * service in a child process (`bkv serve`, worker-thread devices, SQLite in a temporary
 * folder, host rate limits off, request logging on as in production), and a concurrent fetch
 * loop in this process at several concurrency levels.
 *
 *   status: sealed Status operations, sealed beforehand (one fresh HPKE encapsulation each, so
 *           the replay guard passes them); responses are not opened. Server cost only.
 *   login:  EscrowClient.recover with the right password over the HTTP relay: LoginStart then
 *           LoginFinish (2 operations, 2 batches), including the client's own OPAQUE and HPKE
 *           work in this process. Reported as logins/s (operations/s = 2x).
 *
 * Run: npx tsx bench/service.ts [--quick] [--json FILE] [--partitions N] [--seconds S] [--levels 1,8,32,64]
 * The service trusts a bench issuer (`--auth-issuer`, bench/lib/auth.ts): every operation carries
 * its record's token (one per record, minted once and reused across its logins, as a client reuses
 * its token for LoginStart and LoginFinish), which the enclave checks.
 * The client and the server share the machine: on a 2-core box the figures are a floor. The
 * client's KSF is the identity (the CLI's default Argon2id would measure the client's Argon2id,
 * about 0.3 s a login here, not the service). Status messages are sealed with client/e2e-seal-node.ts
 * (node:crypto, about 0.15 ms each) rather than the SDK's sealRequest (about 1.3 ms each).
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { BKV_NODE_FLAGS } from '../bin/bundle.mjs';
import { encodeMessage } from '../enclave/api/codec.ts';
import { ClientRequests } from '../enclave/api/messages.ts';
import { identityKsf } from '../enclave/opaque/ksf.ts';
import { fastSuite } from '../enclave/opaque/suites-fast.ts';
import { DEFAULT_KSF_BOUNDS, EscrowClient } from '../client/escrow.ts';
import { fetchVaultInfo, httpRelay } from '../client/http-relay.ts';
import { opsPath, toBase64url, AUTH_TOKEN_HEADER } from '../enclave/api/http.ts';
import { BenchTokens } from './lib/auth.ts';
import { args, emit, machine, progress, round } from './lib/common.ts';
import type { BenchResult } from './lib/common.ts';
import { FastSealer } from '../client/e2e-seal-node.ts';
import { percentile } from './lib/stats.ts';

const root = resolve(import.meta.dirname, '..');
const te = new TextEncoder();
const A = args();
const M = machine();
const partitions = A.num('partitions', availableParallelism());
const seconds = A.num('seconds', A.quick ? 0.7 : 3);
const levels = A.list('levels', A.quick ? [1, 16] : [1, 8, 32, 64]);
const maxC = Math.max(...levels);

/** Fails a step that takes longer than `ms` (a hung request must not hang the runner), with the service log's tail. */
async function step<T>(what: string, ms: number, p: Promise<T>, logTail: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, rej) => {
    timer = setTimeout(() => rej(new Error(`${what}: no answer within ${ms / 1000} s; service log tail:\n${logTail()}`)), ms);
  });
  try {
    return await Promise.race([p, t]);
  } finally {
    clearTimeout(timer);
  }
}

async function startChild(dataDir: string, authIssuer: string): Promise<{ url: string; pid: number; log: () => string; stop(): Promise<number | null> }> {
  const child = spawn(
    process.execPath,
    [
      ...BKV_NODE_FLAGS,
      join(root, 'bin/bkv.mjs'),
      'serve',
      '--data',
      dataDir,
      '--port',
      '0',
      '--partitions',
      String(partitions),
      '--record-limit',
      'off',
      '--address-limit',
      'off',
      '--auth-issuer',
      authIssuer,
    ],
    { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  let buf = '';
  const url = await new Promise<string>((res, rej) => {
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString('utf8');
      const m = /"msg":"listening","url":"([^"]+)"/.exec(buf);
      if (m) res(m[1]!);
      if (buf.length > 1e6) buf = buf.slice(-1e5);
    });
    void exited.then(() => rej(new Error('service exited')));
  });
  return {
    url,
    pid: child.pid!,
    log: () => buf.split('\n').slice(-20).join('\n'),
    stop: () => {
      child.kill('SIGTERM');
      return exited;
    },
  };
}

/** Runs `worker(i)` in `c` concurrent loops for the window; returns completed iterations per second and latencies. */
async function run(c: number, worker: (i: number) => Promise<boolean>, windowS = seconds): Promise<{ perSec: number; n: number; ms: number; p50: number; p99: number }> {
  const t0 = performance.now();
  const end = t0 + windowS * 1000;
  let n = 0;
  const lat: number[] = [];
  await Promise.all(
    Array.from({ length: c }, async (_, i) => {
      while (performance.now() < end) {
        const s = performance.now();
        if (!(await worker(i))) return;
        lat.push(performance.now() - s);
        n++;
      }
    }),
  );
  const ms = performance.now() - t0;
  const sorted = lat.sort((a, b) => a - b);
  return { perSec: (n * 1000) / ms, n, ms, p50: percentile(sorted, 50), p99: percentile(sorted, 99) };
}

const results: BenchResult[] = [];
const transportErrorsSeen = { n: 0 };

async function main(): Promise<void> {
  const dataDir = mkdtempSync(join(tmpdir(), 'bkv-bench-svc-'));
  const { tokens, pubFile } = await BenchTokens.inDir(join(dataDir, 'issuer'));
  const svc = await startChild(join(dataDir, 'vault'), pubFile);
  try {
    progress(`service up at ${svc.url}`);
    const info = await fetchVaultInfo(svc.url);
    const suite = await fastSuite('ristretto255-SHA512');
    const client = new EscrowClient({
      relay: httpRelay({ baseUrl: svc.url }),
      enclavePublicKey: info.enclavePublicKey,
      suite,
      rng: (n) => new Uint8Array(randomBytes(n)),
      context: te.encode('BackupKeyVault-v1'),
      auth: (id) => tokens.token(id),
      ksf: identityKsf,
      ksfBounds: { ...DEFAULT_KSF_BOUNDS, allowIdentity: true },
    });
    const ids = Array.from({ length: maxC }, (_, i) => te.encode(`bench-user-${i}`));
    await step('registering the records', 60_000, Promise.all(ids.map((id) => client.register(id, te.encode('pw'), new Uint8Array(32).fill(1), { attemptLimit: 255 }))), svc.log);
    progress(`${ids.length} records registered`);

    console.log(`vault service throughput, POST /ops over HTTP (keep-alive, undici fetch)`);
    console.log(`${cpus()[0]?.model ?? 'cpu'} x${availableParallelism()}, node ${process.version}, ${partitions} partition(s), worker devices, SQLite, ristretto255, identity KSF`);

    // Status: seal enough messages beforehand for the whole run (the replay guard wants each once).
    const perLevelGuess = Math.ceil(1200 * seconds);
    const pool: { path: string; body: string; token: string }[] = [];
    const sealer = new FastSealer(info.enclavePublicKey);
    const statusReqs = ids.map((id) => encodeMessage(ClientRequests, { type: 'Status', auth: tokens.bytes(id) }));
    for (let i = 0; i < perLevelGuess * (levels.length + 1); i++) {
      const id = ids[i % ids.length]!;
      const { message } = sealer.seal(id, statusReqs[i % ids.length]!);
      pool.push({ path: svc.url + opsPath(id), body: JSON.stringify({ message: toBase64url(message) }), token: new TextDecoder().decode(tokens.bytes(id)) });
    }
    let next = 0;
    /**
     * A keep-alive socket the service has just closed (its keepAliveTimeout, 5 s, against
     * undici's 4 s, on a loaded machine) fails a POST with "other side closed" before any
     * answer: counted, and the operation is sent again (a status op freshly sealed: the replay
     * guard would refuse the same bytes). More than a few is a failure.
     */
    const transportErrors = { n: 0, last: '' };
    const retryable = (e: unknown) => {
      const c = (e as { cause?: { code?: string } }).cause?.code ?? (e as { cause?: { cause?: { code?: string } } }).cause?.cause?.code;
      transportErrors.n++;
      transportErrors.last = `${(e as Error).message}${c ? ` (${c})` : ''}`;
      if (transportErrors.n > 20) throw e;
    };
    const status = async (): Promise<boolean> => {
      const m = pool[next++];
      if (!m) return false;
      let r: Response;
      try {
        // The token in the clear too, for the service's early check (as the HTTP relay sends it).
        r = await fetch(m.path, { method: 'POST', headers: { 'content-type': 'application/json', [AUTH_TOKEN_HEADER]: m.token }, body: m.body });
      } catch (e) {
        retryable(e);
        return status();
      }
      await r.arrayBuffer();
      if (r.status !== 200) throw new Error(`status ${r.status}`);
      return true;
    };
    const login = async (i: number): Promise<boolean> => {
      let r;
      try {
        r = await client.recover(ids[i]!, te.encode('pw'));
      } catch (e) {
        retryable(e);
        return true; // the guess was charged; the record has 255
      }
      if (!r.ok) throw new Error('login failed');
      return true;
    };
    await run(4, status, 0.3); // warm-up
    await run(4, login, 0.3);
    /** Mean batch size and batch duration over a run, from the service's own metrics. */
    const batches = async () => {
      const text = await (await fetch(`${svc.url}/metrics`)).text();
      const sum = (name: string) =>
        text
          .split('\n')
          .filter((l) => l.startsWith(name + '{'))
          .reduce((a, l) => a + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
      return { n: sum('bkv_batch_size_count'), ops: sum('bkv_batch_size_sum'), sec: sum('bkv_batch_duration_seconds_sum') };
    };
    const measure = async (c: number, w: (i: number) => Promise<boolean>) => {
      const b0 = await batches();
      const r = await step(`concurrency ${c}`, seconds * 1000 + 60_000, run(c, w), svc.log);
      const b1 = await batches();
      const n = b1.n - b0.n;
      return { ...r, batch: (b1.ops - b0.ops) / n, batchMs: ((b1.sec - b0.sec) * 1000) / n };
    };
    console.log(`load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
    console.log('\nconcurrency | status ops/s p50/p99 ms (mean batch, ms/batch) | logins/s = ops/s p50/p99 ms (mean batch, ms/batch)');
    for (const c of levels) {
      const s = await measure(c, status);
      const l = await measure(c, login);
      console.log(
        `${String(c).padStart(11)} | ${s.perSec.toFixed(0).padStart(6)} ${s.p50.toFixed(1)}/${s.p99.toFixed(1)} (${s.batch.toFixed(1)}, ${s.batchMs.toFixed(1)}) | ${l.perSec.toFixed(0).padStart(5)} = ${(2 * l.perSec).toFixed(0).padStart(5)} ${l.p50.toFixed(1)}/${l.p99.toFixed(1)} (${l.batch.toFixed(1)}, ${l.batchMs.toFixed(1)})`,
      );
      results.push({
        name: `service: status over HTTP, concurrency ${c}`,
        group: 'end to end over HTTP',
        kind: 'ours',
        opsPerSec: Math.round(s.perSec),
        p50Ms: round(s.p50, 2),
        p99Ms: round(s.p99, 2),
        meanBatch: round(s.batch, 1),
        concurrency: c,
      });
      results.push({
        name: `service: login (LoginStart + LoginFinish, SDK client), concurrency ${c}`,
        group: 'end to end over HTTP',
        kind: 'ours',
        opsPerSec: Math.round(l.perSec),
        unit: 'logins/s (2 operations each)',
        p50Ms: round(l.p50, 2),
        p99Ms: round(l.p99, 2),
        meanBatch: round(l.batch, 1),
        concurrency: c,
      });
    }
    console.log(`load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
    transportErrorsSeen.n = transportErrors.n;
    if (transportErrors.n) console.log(`transport errors (sent again): ${transportErrors.n}, last: ${transportErrors.last}`);
  } finally {
    const code = await svc.stop();
    for (const x of [dataDir, `${dataDir}.operator`]) rmSync(x, { recursive: true, force: true });
    if (code !== 0) console.error(`service exited ${code}`);
  }
}

main().then(
  () => {
    const best = Math.max(...results.filter((r) => r.name.includes('login')).map((r) => r.opsPerSec));
    emit(
      {
        subsystem: 'service',
        quick: A.quick,
        machine: M,
        results,
        ratios: {},
        figures: { bestLoginsPerSec: best, transportErrors: transportErrorsSeen.n },
        notes: [`bkv serve in a child process (${partitions} partitions, worker devices, SQLite, rate limits off), SDK client (EscrowClient over httpRelay, identity KSF) in the bench process; ${seconds} s per level`],
      },
      A.json,
    );
    process.exit(0);
  },
  (e: unknown) => {
    console.error(e);
    process.exit(1);
  },
);
