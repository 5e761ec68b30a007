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
 * Run: npx tsx bench/service.ts [--partitions N] [--seconds S] [--levels 1,8,32,64]
 * The client and the server share the machine: on a 2-core box the figures are a floor.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { encodeMessage } from '../enclave/api/codec.ts';
import { sealRequest } from '../enclave/api/e2e.ts';
import { ClientRequests } from '../enclave/api/messages.ts';
import { fastSuite } from '../enclave/opaque/suites-fast.ts';
import { EscrowClient } from '../host/client/escrow.ts';
import { fetchVaultInfo, httpRelay } from '../host/client/http-relay.ts';
import { opsPath, toBase64url } from '../host/service/wire.ts';

const root = resolve(import.meta.dirname, '..');
const te = new TextEncoder();
const arg = (n: string) => {
  const i = process.argv.indexOf(n);
  return i >= 0 ? process.argv[i + 1] : undefined;
};
const partitions = Number(arg('--partitions') ?? 2);
const seconds = Number(arg('--seconds') ?? 3);
const levels = (arg('--levels') ?? '1,8,32,64').split(',').map(Number);
const maxC = Math.max(...levels);

async function startChild(dataDir: string): Promise<{ url: string; stop(): Promise<number | null> }> {
  const child = spawn(
    process.execPath,
    [join(root, 'bin/bkv.mjs'), 'serve', '--data', dataDir, '--port', '0', '--partitions', String(partitions), '--record-limit', 'off', '--address-limit', 'off'],
    { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  const url = await new Promise<string>((res, rej) => {
    let buf = '';
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
    stop: () => {
      child.kill('SIGTERM');
      return exited;
    },
  };
}

/** Runs `worker(i)` in `c` concurrent loops for the window; returns completed iterations per second. */
async function run(c: number, worker: (i: number) => Promise<boolean>): Promise<{ perSec: number; n: number; ms: number }> {
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  let n = 0;
  await Promise.all(
    Array.from({ length: c }, async (_, i) => {
      while (performance.now() < end) {
        if (!(await worker(i))) return;
        n++;
      }
    }),
  );
  const ms = performance.now() - t0;
  return { perSec: (n * 1000) / ms, n, ms };
}

async function main(): Promise<void> {
  const dataDir = mkdtempSync(join(tmpdir(), 'bkv-bench-svc-'));
  const svc = await startChild(dataDir);
  try {
    const info = await fetchVaultInfo(svc.url);
    const suite = await fastSuite('ristretto255-SHA512');
    const client = new EscrowClient({
      relay: httpRelay({ baseUrl: svc.url }),
      enclavePublicKey: info.enclavePublicKey,
      suite,
      rng: (n) => new Uint8Array(randomBytes(n)),
      context: te.encode('BackupKeyVault-v1'),
    });
    const ids = Array.from({ length: maxC }, (_, i) => te.encode(`bench-user-${i}`));
    await Promise.all(ids.map((id) => client.register(id, te.encode('pw'), new Uint8Array(32).fill(1), { attemptLimit: 255 })));

    console.log(`vault service throughput, POST /ops over HTTP (keep-alive, undici fetch)`);
    console.log(`${cpus()[0]?.model ?? 'cpu'} x${availableParallelism()}, node ${process.version}, ${partitions} partition(s), worker devices, SQLite, ristretto255, identity KSF`);

    // Status: seal enough messages beforehand for the whole run (the replay guard wants each once).
    const perLevelGuess = 4000 * seconds;
    const pool: { path: string; body: string }[] = [];
    for (let i = 0; i < perLevelGuess * levels.length; i++) {
      const id = ids[i % ids.length]!;
      const { message } = await sealRequest(info.enclavePublicKey, id, encodeMessage(ClientRequests, { type: 'Status' }));
      pool.push({ path: svc.url + opsPath(id), body: JSON.stringify({ message: toBase64url(message) }) });
    }
    let next = 0;
    const status = async () => {
      const m = pool[next++];
      if (!m) return false;
      const r = await fetch(m.path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: m.body });
      await r.arrayBuffer();
      if (r.status !== 200) throw new Error(`status ${r.status}`);
      return true;
    };
    const login = async (i: number) => {
      const r = await client.recover(ids[i]!, te.encode('pw'));
      if (!r.ok) throw new Error('login failed');
      return true;
    };
    await run(4, status); // warm-up
    await run(4, login);
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
      const r = await run(c, w);
      const b1 = await batches();
      const n = b1.n - b0.n;
      return { ...r, batch: (b1.ops - b0.ops) / n, batchMs: ((b1.sec - b0.sec) * 1000) / n };
    };
    console.log(`load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
    console.log('\nconcurrency | status ops/s (mean batch, ms/batch) | logins/s = ops/s (mean batch, ms/batch)');
    for (const c of levels) {
      const s = await measure(c, status);
      const l = await measure(c, login);
      console.log(
        `${String(c).padStart(11)} | ${s.perSec.toFixed(0).padStart(6)} (${s.batch.toFixed(1)}, ${s.batchMs.toFixed(1)}) | ${l.perSec.toFixed(0).padStart(5)} = ${(2 * l.perSec).toFixed(0).padStart(5)} (${l.batch.toFixed(1)}, ${l.batchMs.toFixed(1)})`,
      );
    }
    console.log(`load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  } finally {
    const code = await svc.stop();
    rmSync(dataDir, { recursive: true, force: true });
    if (code !== 0) console.error(`service exited ${code}`);
  }
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    console.error(e);
    process.exit(1);
  },
);
