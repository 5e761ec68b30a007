/**
 * WorkerChannel: runs the simulated device (hsm/worker-main.ts, bundled by bin/bundle.mjs, or from source through hsm/boot.mjs) in a worker
 * thread, the default isolation. Requests and responses cross as transferred ArrayBuffers
 * (the caller's own buffer when it gives it up, RequestOptions.transfer, else a copy, so its bytes
 * are detached only on request); the host holds only
 * the Worker. An uncaught error or exit of the thread fails every pending request with Crashed.
 */
import v8 from 'node:v8';
import { Worker, type WorkerOptions } from 'node:worker_threads';
import { DeviceChannel, deviceEntry } from './channel.ts';
import type { ChannelOptions } from './channel.ts';
import type { ToDevice } from '../../enclave/api/device.ts';

/**
 * The cap on a device thread's young generation, MB (BKV_DEVICE_YOUNG_MB overrides; 0: V8's own
 * sizing, which follows the process's --max-semi-space-size and by default grows to 48 MB).
 * Applied by `deviceThread` below whatever the process's flags, so a device behaves the same
 * under `bkv serve` (whose main thread runs with --max-semi-space-size=4) and in the benches.
 * The rule: the memory target first (bench/memory.ts: the service's peak RSS while 1,000,000
 * records are registered, < 300 MB), then CPU. A device keeps each batch's ops alive until the
 * batch is done (its answers until the Commit), so a small young generation copies them at every
 * scavenge: 24 MB (8 MB semi-spaces) against 12 MB, 5,063 against 4,814 logins/s and 383 against
 * 405 us of CPU per login (`npx tsx bench/lib/env-ab.ts BKV_DEVICE_YOUNG_MB=12,24 10 512 3000`,
 * 2026-12-06, 24 ahead in 8 of 10 rounds); 48 MB costs 41 MB more peak RSS at 150,000 records
 * than 12 (253.8 against 213.0), 24 about 10.5 MB more (225.0 against 214.5). Figures and the 1M
 * run in bench/README.md.
 */
export const DEVICE_YOUNG_GENERATION_MB = 24;

/** The devices' young-generation cap in MB: BKV_DEVICE_YOUNG_MB when set (a whole number, 0: V8's own sizing), else the default. */
export function deviceYoungMb(env: NodeJS.ProcessEnv = process.env): number {
  const v = env.BKV_DEVICE_YOUNG_MB;
  if (v === undefined || v === '') return DEVICE_YOUNG_GENERATION_MB;
  if (!/^[0-9]{1,4}$/.test(v)) throw new RangeError(`BKV_DEVICE_YOUNG_MB: expected a whole number of MB (0: V8's own sizing), got ${JSON.stringify(v.slice(0, 32))}`);
  return Number(v);
}

/**
 * A device thread with its young generation capped at `youngMb` (0: V8's own sizing). V8 lets a
 * process-wide --max-semi-space-size override a new isolate's own young-generation limit (its
 * heap configuration reads the flag first), so under `bkv serve` (--max-semi-space-size=4 for its
 * main thread) the cap would be ignored and every device would run with 4 MB semi-spaces. The
 * flag is cleared (0, V8's "not set") before the thread starts: that changes no heap already made
 * (the main thread keeps its 4 MB), only isolates made from then on, whose limits are their own.
 * test/host/channel/device-young.test.ts checks both threads in a process run with the flag.
 */
export function deviceThread(entry: string | URL, o: WorkerOptions, youngMb: number): Worker {
  if (youngMb <= 0) return new Worker(entry, o);
  v8.setFlagsFromString('--max-semi-space-size=0');
  return new Worker(entry, { ...o, resourceLimits: { ...o.resourceLimits, maxYoungGenerationSizeMb: youngMb } });
}

export class WorkerChannel extends DeviceChannel {
  private readonly worker: Worker;
  private lastError: string | undefined;

  constructor(opts: ChannelOptions) {
    const young = deviceYoungMb(); // refused before anything starts
    super(opts);
    // The bundled device (or, from source, hsm/boot.mjs, which registers tsx itself).
    // execArgv: [] drops the parent's loader flags (tsx, vitest).
    this.worker = deviceThread(deviceEntry('worker', this.config), { workerData: this.config, execArgv: [] }, young);
    this.worker.on('message', (m: unknown) => this.onDeviceMessage(m));
    this.worker.on('error', (e: Error) => {
      this.lastError = `${e.name}: ${e.message}`;
    });
    this.worker.on('exit', (code: number) => this.onDeviceExit(`thread exit code ${code}`, this.lastError));
  }

  /** The worker's thread id (for logs). */
  get threadId(): number {
    return this.worker.threadId;
  }

  protected post(msg: ToDevice, transfer: ArrayBuffer[]): void {
    try {
      this.worker.postMessage(msg, transfer);
    } catch {
      // the thread is gone; its exit event fails the request
    }
  }

  protected async terminate(): Promise<void> {
    await this.worker.terminate();
    await this.exited;
  }
}
