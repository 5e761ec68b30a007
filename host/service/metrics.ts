/**
 * Prometheus metrics of the vault service (prom-client, one registry per service):
 *
 *   bkv_ops_total{outcome}                       POST /ops by outcome class: ok, client-fault
 *                                                (4xx, or an unsealed enclave fault), rate-limited, server-error
 *   bkv_http_request_duration_seconds{method,route,status}   request latency, every route
 *   bkv_enclave_queue_depth{partition}           operations waiting for the next batch
 *   bkv_partition_ready{partition}               1 when the partition's device runs and its records are loaded
 *   bkv_batch_size{partition}                    operations per committed batch
 *   bkv_batch_duration_seconds{partition}        one batch: read, enclave, persist, commit
 *   bkv_rate_limit_buckets{limiter}              buckets held by each limiter (bounded)
 *   plus prom-client's default process metrics (bkv_process_*, bkv_nodejs_*), in a registry of
 *   its own only: an integrator who gives a registry collects its process's metrics itself.
 *
 * The registry is the service's own, or one the integrator gives (`createVaultHandler`'s
 * `metricsRegistry`): every name above lands there, and `unregister()` removes exactly those,
 * leaving the integrator's own metrics. Two services need two registries (their names are the
 * same); `METRIC_NAMES` is what a given registry must not hold yet.
 *
 * Labels carry no record id, address or body: only route templates, partitions and classes.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export type OpOutcome = 'ok' | 'client-fault' | 'rate-limited' | 'server-error';

export interface MetricsSources {
  queueDepth(): number[];
  partitionsReady(): boolean[];
  limiterSizes(): { record: number; address: number };
}

/** The service's own metric names (the default process metrics aside), all under `bkv_`. */
export const METRIC_NAMES = [
  'bkv_ops_total',
  'bkv_http_request_duration_seconds',
  'bkv_batch_size',
  'bkv_batch_duration_seconds',
  'bkv_enclave_queue_depth',
  'bkv_partition_ready',
  'bkv_rate_limit_buckets',
] as const;

/** Throws when `registry` already holds any of `METRIC_NAMES` (a second service on one registry). */
export function assertRegistryFree(registry: Registry): void {
  const taken = METRIC_NAMES.filter((n) => registry.getSingleMetric(n) !== undefined);
  if (taken.length > 0) throw new Error(`the metrics registry already holds ${taken.join(', ')}: each vault service needs a registry of its own`);
}

export class ServiceMetrics {
  readonly registry: Registry;
  private readonly owned: boolean;
  private readonly ops: Counter<'outcome'>;
  private readonly latency: Histogram<'method' | 'route' | 'status'>;
  private readonly batchSize: Histogram<'partition'>;
  private readonly batchSeconds: Histogram<'partition'>;

  /** `registry`: the integrator's (it must not hold `METRIC_NAMES` yet); default one of its own. */
  constructor(sources: MetricsSources, registry?: Registry) {
    this.owned = registry === undefined;
    this.registry = registry ?? new Registry();
    assertRegistryFree(this.registry);
    const registers = [this.registry];
    if (this.owned) collectDefaultMetrics({ register: this.registry, prefix: 'bkv_' });
    this.ops = new Counter({ name: 'bkv_ops_total', help: 'POST /ops requests by outcome class', labelNames: ['outcome'], registers });
    for (const o of ['ok', 'client-fault', 'rate-limited', 'server-error'] as const) this.ops.inc({ outcome: o }, 0);
    this.latency = new Histogram({
      name: 'bkv_http_request_duration_seconds',
      help: 'HTTP request latency by route template and status',
      labelNames: ['method', 'route', 'status'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    this.batchSize = new Histogram({
      name: 'bkv_batch_size',
      help: 'operations per committed enclave batch',
      labelNames: ['partition'],
      buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256],
      registers,
    });
    this.batchSeconds = new Histogram({
      name: 'bkv_batch_duration_seconds',
      help: 'duration of one enclave batch (read, prepare, persist, commit)',
      labelNames: ['partition'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
      registers,
    });
    new Gauge({
      name: 'bkv_enclave_queue_depth',
      help: 'operations queued for the next batch, per partition',
      labelNames: ['partition'],
      registers,
      collect() {
        sources.queueDepth().forEach((d, p) => this.set({ partition: String(p) }, d));
      },
    });
    new Gauge({
      name: 'bkv_partition_ready',
      help: '1 when the partition is booted and loaded',
      labelNames: ['partition'],
      registers,
      collect() {
        sources.partitionsReady().forEach((r, p) => this.set({ partition: String(p) }, r ? 1 : 0));
      },
    });
    new Gauge({
      name: 'bkv_rate_limit_buckets',
      help: 'token buckets held per limiter',
      labelNames: ['limiter'],
      registers,
      collect() {
        const s = sources.limiterSizes();
        this.set({ limiter: 'record' }, s.record);
        this.set({ limiter: 'address' }, s.address);
      },
    });
  }

  /** Removes the service's metrics: all of a registry of its own, only `METRIC_NAMES` from a given one. */
  unregister(): void {
    if (this.owned) this.registry.clear();
    else for (const n of METRIC_NAMES) this.registry.removeSingleMetric(n);
  }

  op(outcome: OpOutcome): void {
    this.ops.inc({ outcome });
  }

  request(method: string, route: string, status: number, seconds: number): void {
    this.latency.observe({ method, route, status: String(status) }, seconds);
  }

  batch(partition: number, size: number, ms: number): void {
    this.batchSize.observe({ partition: String(partition) }, size);
    this.batchSeconds.observe({ partition: String(partition) }, ms / 1000);
  }
}
