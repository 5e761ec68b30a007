/**
 * What the soak reads from the service besides its own latencies, so that a drift can be placed:
 * the service's counters from `/metrics` (prom-client text format) and CPU time from /proc.
 *   server latency   bkv_http_request_duration_seconds (POST /v1/records/{id}/ops): sum / count
 *   batches          bkv_batch_duration_seconds and bkv_batch_size, summed over partitions
 *   CPU              utime + stime of a process (/proc/PID/stat fields 14 and 15, in clock ticks)
 * A minute's figures are differences between two samples, so they do not depend on what came before.
 */
import { readFileSync } from 'node:fs';

export interface Counters {
  /** Seconds and count of answered POST ops requests. */
  opsSeconds: number;
  opsCount: number;
  batchSeconds: number;
  batchCount: number;
  batchOps: number;
  heapBytes: number;
}

/** Sums every series of `name` whose labels contain each of `labels` (`key="value"` texts). */
function sumOf(text: string, name: string, labels: string[] = []): number {
  let total = 0;
  const re = new RegExp(`^${name}(?:\\{(.*)\\})? (\\S+)$`, 'gm');
  for (const m of text.matchAll(re)) {
    const l = m[1] ?? '';
    if (labels.every((x) => l.includes(x))) total += Number(m[2]);
  }
  return total;
}

export function parseCounters(text: string): Counters {
  const ops = ['method="POST"', 'route="/v1/records/{recordId}/ops"'];
  return {
    opsSeconds: sumOf(text, 'bkv_http_request_duration_seconds_sum', ops),
    opsCount: sumOf(text, 'bkv_http_request_duration_seconds_count', ops),
    batchSeconds: sumOf(text, 'bkv_batch_duration_seconds_sum'),
    batchCount: sumOf(text, 'bkv_batch_duration_seconds_count'),
    batchOps: sumOf(text, 'bkv_batch_size_sum'),
    heapBytes: sumOf(text, 'bkv_nodejs_heap_size_used_bytes'),
  };
}

export async function scrape(url: string): Promise<Counters | undefined> {
  try {
    return parseCounters(await (await fetch(`${url}/metrics`)).text());
  } catch {
    return undefined;
  }
}

/** CPU seconds (user + system) a process has used, or NaN when it is gone. */
export function cpuSecondsOf(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // Fields after "(comm) ": state is field 3, so utime (14) and stime (15) are at 11 and 12.
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return NaN;
  }
}
