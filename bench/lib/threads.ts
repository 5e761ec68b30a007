/**
 * CPU time per thread of this process, from /proc/self/task (Linux): who used the cores during
 * a window. The main thread is the host (engine, store, codec, and the bench's load generator);
 * worker threads carry the enclave devices; the rest are V8 helpers (GC) and libuv's thread pool
 * (fs, fsync, WebCrypto jobs). Node names every thread "node", so devices are told apart as the
 * busiest threads that are neither the main thread nor present before the devices started.
 */
import { readdirSync, readFileSync } from 'node:fs';

const TICK_MS = 10; // USER_HZ = 100 on Linux

/** Per thread id: CPU ms; key -1: the whole machine's busy CPU ms (all processes, from /proc/stat). */
export type ThreadTimes = Map<number, number>;

/** Busy CPU time of the whole machine in ms (user + nice + system + irq + softirq + steal). */
export function machineBusyMs(): number {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    const [user, nice, system, _idle, _iowait, irq, softirq, steal] = line as [number, number, number, number, number, number, number, number];
    return (user + nice + system + irq + softirq + (steal ?? 0)) * TICK_MS;
  } catch {
    return NaN;
  }
}

export function threadTimes(): ThreadTimes {
  const out: ThreadTimes = new Map();
  out.set(-1, machineBusyMs());
  let tasks: string[] = [];
  try {
    tasks = readdirSync('/proc/self/task');
  } catch {
    return out;
  }
  for (const t of tasks) {
    try {
      const s = readFileSync(`/proc/self/task/${t}/stat`, 'utf8');
      const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
      out.set(Number(t), (Number(f[11]) + Number(f[12])) * TICK_MS); // utime + stime, ms
    } catch {
      // the thread ended
    }
  }
  return out;
}

export interface CpuSplit {
  /** Cores' worth of CPU (CPU ms / wall ms) by role. */
  host: number;
  devices: number;
  other: number;
  total: number;
  /** Cores used by other processes on the machine meanwhile (noise; includes child processes of ours). */
  otherProcesses: number;
}

/** Splits CPU time between two snapshots: main thread, the `devices` busiest threads not in `before0`, the rest. */
export function cpuSplit(a: ThreadTimes, b: ThreadTimes, wallMs: number, devices: number, before0: ThreadTimes): CpuSplit {
  const pid = process.pid;
  let host = 0;
  const cand: number[] = [];
  let rest = 0;
  for (const [tid, t] of b) {
    if (tid === -1) continue;
    const d = t - (a.get(tid) ?? 0);
    if (tid === pid) host = d;
    else if (!before0.has(tid)) cand.push(d);
    else rest += d;
  }
  cand.sort((x, y) => y - x);
  if (process.env.BKV_BENCH_THREADS) {
    const all = [...b].filter(([t]) => t !== -1).map(([t, v]) => [t, v - (a.get(t) ?? 0), t === pid ? 'main' : before0.has(t) ? 'old' : 'new'] as const);
    const comm = (t: number) => {
      try {
        return readFileSync(`/proc/self/task/${t}/comm`, 'utf8').trim().replace(/\s+/g, '_');
      } catch {
        return '?';
      }
    };
    process.stderr.write(`threads (ms in ${wallMs.toFixed(0)} ms): ${all.filter((x) => x[1] > 0).sort((x, y) => y[1] - x[1]).map((x) => `${x[0]}:${x[2]}:${comm(x[0])}:${x[1]}`).join(' ')}\n`);
  }
  const dev = cand.slice(0, devices).reduce((s, x) => s + x, 0);
  rest += cand.slice(devices).reduce((s, x) => s + x, 0);
  const r = (x: number) => Number((x / wallMs).toFixed(2));
  const ours = host + dev + rest;
  const machine = (b.get(-1) ?? NaN) - (a.get(-1) ?? NaN);
  return { host: r(host), devices: r(dev), other: r(rest), total: r(ours), otherProcesses: r(Math.max(0, machine - ours)) };
}
