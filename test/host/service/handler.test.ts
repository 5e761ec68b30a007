/**
 * `createVaultHandler` mounted in an integrator's own node:http server (host/service/server.ts,
 * the `backup-key-vault/service` entry point): its metrics land in a prom-client Registry the
 * integrator gives, under `bkv_`, next to the integrator's own; two handlers with two registries
 * do not collide; a registry that already holds a service's metrics is refused before any vault
 * opens; close() removes the service's metrics and leaves the integrator's.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { Counter, Registry } from 'prom-client';
import { afterAll, describe, expect, it } from 'vitest';
import { createVaultHandler, type VaultHandler } from '../../../host/service/server.ts';
import { METRIC_NAMES } from '../../../host/service/metrics.ts';
import { testIssuer } from '../../helpers/auth.ts';

const scratch = mkdtempSync(join(tmpdir(), 'bkv-handler-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
const silent = pino({ level: 'silent' });

async function mount(name: string, metricsRegistry?: Registry): Promise<VaultHandler> {
  const dataDir = join(scratch, name);
  return createVaultHandler({ dataDir, partitions: 1, tokenPins: { operatorDir: `${dataDir}.operator` }, auth: (await testIssuer()).config, logger: silent, ...(metricsRegistry && { metricsRegistry }) });
}

async function listen(listener: VaultHandler['listener']): Promise<{ server: Server; url: string }> {
  const server = createServer(listener);
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

/** The request-latency histogram's count for one route, from a registry. */
async function healthCount(registry: Registry): Promise<number> {
  const m = (await registry.getSingleMetric('bkv_http_request_duration_seconds')!.get()) as { values: { metricName?: string; labels: Record<string, unknown>; value: number }[] };
  return m.values.filter((v) => v.metricName === 'bkv_http_request_duration_seconds_count' && v.labels.route === '/health').reduce((n, v) => n + v.value, 0);
}

describe('createVaultHandler with the integrator\'s metrics registry', () => {
  it('two handlers with two registries do not collide; each registry counts its own requests, under bkv_, beside the integrator\'s metrics', async () => {
    const regA = new Registry();
    const regB = new Registry();
    const mine = new Counter({ name: 'app_logins_total', help: 'the integrator\'s own', registers: [regA] });
    mine.inc(7);
    const a = await mount('a', regA);
    const b = await mount('b', regB);
    const sa = await listen(a.listener);
    const sb = await listen(b.listener);
    try {
      expect(a.metrics.registry).toBe(regA);
      expect(b.metrics.registry).toBe(regB);
      for (let i = 0; i < 2; i++) expect((await fetch(`${sa.url}/health`)).status).toBe(200);
      expect((await fetch(`${sb.url}/health`)).status).toBe(200);
      expect(await healthCount(regA)).toBe(2);
      expect(await healthCount(regB)).toBe(1);

      const names = (await regA.getMetricsAsJSON()).map((m) => m.name).sort();
      expect(names).toEqual([...METRIC_NAMES, 'app_logins_total'].sort());
      expect(names.filter((n) => n !== 'app_logins_total').every((n) => n.startsWith('bkv_'))).toBe(true);
      expect(await regA.metrics()).toMatch(/^app_logins_total 7$/m);
    } finally {
      for (const s of [sa, sb]) await new Promise<void>((ok) => s.server.close(() => ok()));
      await a.close();
      await b.close();
    }
    // close() takes the service's metrics out and leaves the integrator's.
    expect((await regA.getMetricsAsJSON()).map((m) => m.name)).toEqual(['app_logins_total']);
    expect(await regB.getMetricsAsJSON()).toEqual([]);
  }, 60_000);

  it('refuses a registry that already holds a service\'s metrics, before opening a vault', async () => {
    const reg = new Registry();
    const first = await mount('first', reg);
    try {
      await expect(mount('second', reg)).rejects.toThrow(/already holds bkv_ops_total.*registry of its own/);
      expect(existsSync(join(scratch, 'second'))).toBe(false);
      // the first handler's metrics are untouched
      expect(first.metrics.registry.getSingleMetric('bkv_ops_total')).toBeDefined();
    } finally {
      await first.close();
    }
  }, 60_000);

  it('without a registry, the handler has one of its own with the default process metrics under bkv_', async () => {
    const h = await mount('own');
    try {
      const names = (await h.metrics.registry.getMetricsAsJSON()).map((m) => m.name);
      expect(names).toEqual(expect.arrayContaining([...METRIC_NAMES, 'bkv_process_cpu_seconds_total']));
      expect(names.every((n) => n.startsWith('bkv_'))).toBe(true);
    } finally {
      await h.close();
    }
  }, 60_000);
});
