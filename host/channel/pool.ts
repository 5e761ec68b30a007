/**
 * EnclavePool: one enclave channel per partition of the record space. A record belongs to
 * partition (first 4 bytes of SHA-256(recordId), big-endian) mod partitions. The partition
 * count is fixed when a vault's data folder is first opened and kept in `pool.json` there;
 * later opens must ask for the same count (or none). A crashed partition stays dead until the
 * caller restarts it: its firmware must then be reloaded by the host (the pool can not know
 * what), so the pool never restarts one behind the caller's back.
 */
import { hash } from 'node:crypto';
import { loadNativeSha256 } from '../../enclave/opaque/hash-native.ts';
import type { NativeSha256 } from '../../enclave/opaque/hash-native.ts';
import { createFileDurably } from '../../hsm/durable-file.ts';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ChannelError, ChannelErrorCode } from './channel.ts';
import type { ChannelOptions, EnclaveChannel } from './channel.ts';
import type { Device, RequestOptions } from '../../enclave/api/device.ts';
import { ProcessChannel } from './process-channel.ts';
import { WorkerChannel } from './worker-channel.ts';

export type ChannelMode = 'worker' | 'process';
export const POOL_CONFIG_FILE = 'pool.json';
/** Each partition owns a 256-byte region of the device's 4 KB NVRAM (enclave/vault/nvram-state.ts). */
export const MAX_PARTITIONS = 16;

export interface PoolOptions extends Omit<ChannelOptions, 'partition' | 'partitions' | 'onCrash'> {
  /** Isolation of each partition's device (default 'worker'). */
  mode?: ChannelMode;
  /** Partition count for a new data folder (default os.availableParallelism()); must match an existing one. */
  partitions?: number;
  /** Called when a partition's device dies on its own. */
  onCrash?: (partition: number, error: ChannelError) => void;
}

export function createChannel(mode: ChannelMode, opts: ChannelOptions): EnclaveChannel {
  if (mode === 'worker') return new WorkerChannel(opts);
  if (mode === 'process') return new ProcessChannel(opts);
  throw new Error(`unknown channel mode ${String(mode)}`);
}

/** Native libsodium's SHA-256 once it has loaded (null: not there; undefined: not asked yet). */
let nativeSha256: NativeSha256 | null | undefined;

/** What partitionOf hashes with now (for tests and diagnostics). */
export function partitionHashBackend(): 'libsodium native' | 'node:crypto' {
  return nativeSha256 ? 'libsodium native' : 'node:crypto';
}

/**
 * The partition a record belongs to: SHA-256(id)'s first 4 bytes, big-endian, mod partitions (the
 * device checks the same, enclave/vault/compute.ts partitionOfHash; host/ may not import it:
 * test/boundary.test.ts). Once per request on the
 * host: on native libsodium when it has loaded (0.37 us and nothing allocated but the 32-byte
 * digest), until then and without it on node:crypto's one-shot `hash` (0.6 us, and a Buffer of its
 * own with four native allocations; `createHash` also made a Hash object the collector finalizes).
 */
export function partitionOf(recordId: Uint8Array, partitions: number): number {
  if (nativeSha256 === undefined) {
    nativeSha256 = null;
    void loadNativeSha256().then((r) => {
      nativeSha256 = r.sha256;
    });
  }
  const d = nativeSha256 ? nativeSha256.hash(recordId) : hash('sha256', recordId, 'buffer');
  return (((d[0]! << 24) | (d[1]! << 16) | (d[2]! << 8) | d[3]!) >>> 0) % partitions;
}

/** Reads the data folder's partition count, or creates the folder and records `wanted`. */
export function settlePartitions(dataDir: string, wanted: number | undefined): number {
  const file = path.join(dataDir, POOL_CONFIG_FILE);
  let text: string | undefined;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  if (text !== undefined) {
    let stored: unknown;
    try {
      stored = (JSON.parse(text) as { partitions?: unknown }).partitions;
    } catch {
      stored = undefined;
    }
    if (!isPartitionCount(stored)) throw new Error(`${file}: unreadable partition count`);
    if (wanted !== undefined && wanted !== stored) {
      throw new Error(`${dataDir} was created with ${stored} partitions; it can not be opened with ${wanted}`);
    }
    return stored;
  }
  const n = wanted ?? os.availableParallelism();
  if (!isPartitionCount(n)) throw new Error(`partitions must be an integer in 1..${MAX_PARTITIONS}, got ${n}`);
  fs.mkdirSync(dataDir, { recursive: true });
  createFileDurably(file, `${JSON.stringify({ format: 'backup-key-vault pool', version: 1, partitions: n })}\n`);
  return settlePartitions(dataDir, wanted); // another opener may have created it first: theirs stands
}

function isPartitionCount(n: unknown): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n >= 1 && n <= MAX_PARTITIONS;
}

export class EnclavePool {
  private readonly channels: EnclaveChannel[];
  private readonly restarting = new Map<number, Promise<void>>();
  private closing: Promise<void> | undefined;

  private constructor(
    readonly partitions: number,
    readonly mode: ChannelMode,
    private readonly opts: PoolOptions,
  ) {
    this.channels = Array.from({ length: partitions }, (_, p) => this.spawn(p));
  }

  /** Opens (or creates) the vault's data folder and boots every partition; rejects if any fails to boot. */
  static async open(opts: PoolOptions): Promise<EnclavePool> {
    const partitions = settlePartitions(opts.dataDir, opts.partitions);
    const pool = new EnclavePool(partitions, opts.mode ?? 'worker', opts);
    try {
      await Promise.all(pool.channels.map((c) => c.ready));
    } catch (e) {
      await pool.close();
      throw e;
    }
    return pool;
  }

  partitionOf(recordId: Uint8Array): number {
    return partitionOf(recordId, this.partitions);
  }

  channel(partition: number): EnclaveChannel {
    this.check(partition);
    return this.channels[partition]!;
  }

  request(partition: number, req: Uint8Array, opts?: RequestOptions): Promise<Uint8Array> {
    this.check(partition);
    if (this.closing) return Promise.reject(new ChannelError(ChannelErrorCode.Closed, 'pool is closed'));
    return this.channels[partition]!.request(req, opts);
  }

  /**
   * Partition `partition` as the byte seam (enclave/api/device.ts): each request goes to the
   * partition's current channel (a restart replaces it) and is refused once the pool closes.
   */
  device(partition: number): Device {
    this.check(partition);
    return { request: (req, opts) => this.request(partition, req, opts) };
  }

  /** Replaces a partition's device with a fresh boot (ending the old one if it still runs). */
  restart(partition: number): Promise<void> {
    this.check(partition);
    if (this.closing) return Promise.reject(new ChannelError(ChannelErrorCode.Closed, 'pool is closed'));
    const running = this.restarting.get(partition);
    if (running) return running;
    const job = (async () => {
      await this.channels[partition]!.close({ timeoutMs: 0 });
      const next = this.spawn(partition);
      this.channels[partition] = next;
      await next.ready;
    })().finally(() => this.restarting.delete(partition));
    this.restarting.set(partition, job);
    return job;
  }

  close(opts?: { timeoutMs?: number }): Promise<void> {
    this.closing ??= (async () => {
      await Promise.allSettled([...this.restarting.values()]);
      await Promise.all(this.channels.map((c) => c.close(opts)));
    })();
    return this.closing;
  }

  private spawn(partition: number): EnclaveChannel {
    const { mode: _mode, partitions: _partitions, onCrash, ...rest } = this.opts;
    return createChannel(this.mode, {
      ...rest,
      partition,
      partitions: this.partitions,
      ...(onCrash && { onCrash: (e: ChannelError) => onCrash(partition, e) }),
    });
  }

  private check(partition: number): void {
    if (!Number.isInteger(partition) || partition < 0 || partition >= this.partitions) {
      throw new RangeError(`partition ${partition} out of 0..${this.partitions - 1}`);
    }
  }
}
