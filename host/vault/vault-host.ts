/**
 * A running vault: the partition pool of enclave devices (worker threads by default, child
 * processes on request), one group-commit engine per partition, and the record store. Routes
 * each client operation to the partition that owns its record id, and brings a crashed
 * partition back (a fresh device boot and a full reload of its records) on its own. From time to
 * time (`compactEveryMs`) it removes the store's empty-blob rows of committed batches.
 */
import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { lockDataFolder } from './folder-lock.ts';
import type { AuthConfig } from '../../enclave/api/auth.ts';
import { encodeAuthConfig } from '../../enclave/api/auth.ts';
import { EnclavePool } from '../channel/pool.ts';
import type { ChannelMode } from '../channel/pool.ts';
import { ChannelError, ChannelErrorCode } from '../channel/channel.ts';
import type { TokenKind } from '../../hsm/tokens/backends.ts';
import type { TokenPinSource } from '../../enclave/api/device.ts';
import { openStore } from '../storage/index.ts';
import type { RecordStore } from '../storage/types.ts';
import { ENCLAVE_STATE, MAX_LOAD_ENTRIES } from '../../enclave/api/messages.ts';
import type { ResponseOf } from '../../enclave/api/messages.ts';
import { Lifecycle } from '../../enclave/api/codes.ts';
import { EnclaveCallError, PartitionEngine } from './engine.ts';
import type { OpResult } from './engine.ts';
import { readAuditChain } from './audit-read.ts';
import type { AuditReadOptions, AuditReport } from './audit-read.ts';

export interface VaultHostOptions {
  dataDir: string;
  mode?: ChannelMode;
  /** The vault's PKCS#11 token backend (hsm/tokens/backends.ts; default 'emulator'); fixed at the data folder's creation. */
  token?: TokenKind;
  /** Where the devices find the token's PINs (hsm/tokens/token-pins.ts); default: the operator folder `<dataDir>.operator`. */
  tokenPins?: TokenPinSource;
  partitions?: number;
  /** Storage location: undefined (SQLite file in the data folder), a path, or a URL. */
  store?: string;
  /** The operator secret's SHA-256, provisioned into each partition (enables zeroization). */
  operatorKeyHash?: Uint8Array;
  /**
   * The issuer set whose tokens authorize client operations (enclave/api/auth.ts). Provisioned
   * into each partition at its first boot; afterwards the devices refuse to boot under another.
   * Without one the vault serves no client operation.
   */
  auth?: AuthConfig;
  /** Crash tests: the device of every partition dies at this failpoint. */
  failpoint?: string;
  failpointHit?: number;
  /** Restart a partition whose device died or whose batch failed (default true). */
  autoRestart?: boolean;
  /**
   * An automatic restart that fails (the token or the store still broken) is tried again after
   * this delay, doubled after every failure up to `restartMaxBackoffMs` (defaults 250 ms, 30 s).
   */
  restartBackoffMs?: number;
  restartMaxBackoffMs?: number;
  /**
   * Every this long (default one hour; 0: never) each partition's empty-blob rows written before
   * its last applied batch, which the enclave takes as no row at all, are removed from the store
   * (`RecordStore.compact`; the sealed tombstones of deleted records stay). On PostgreSQL a pass
   * reads the partition's rows (postgres.ts: no tombstone index there, on purpose).
   */
  compactEveryMs?: number;
  /**
   * False: boot the devices without loading any record, for the operator's requests that a device
   * answers in any state (zeroize, status); the host then serves no client operation and `info`
   * is unset. Default true.
   */
  load?: boolean;
  log?: (msg: string) => void;
  /**
   * The devices print their start note to stderr (the token profile of the vault's keys, once
   * per boot of partition 0's device: host/channel/channel.ts `deviceNotes`). `bkv serve` sets
   * it; default off: a library or test vault starts silently.
   */
  deviceNotes?: boolean;
  /** Called after each committed batch of any partition (metrics): its size and duration. */
  onBatch?: (partition: number, size: number, ms: number) => void;
  /**
   * Called while `open` loads the stored records into the devices, after each chunk: stored
   * records (rows with a blob, sealed tombstones of deleted records included) loaded so far and
   * the store's count of them (`RecordStore.stats`), all partitions (progress).
   */
  onLoadProgress?: (loaded: number, total: number) => void;
}

export interface VaultInfo {
  partitions: number;
  /** The HPKE public key clients pin (the same on every partition). */
  enclavePublicKey: Uint8Array;
  /** OPAQUE server public keys by suite code. */
  serverPublicKeys: Map<number, Uint8Array>;
  records: number;
}

/** One partition's device as `status()` found it. */
export interface PartitionStatus {
  partition: number;
  info: ResponseOf<{ type: 'Info' }>;
  /** Why its records did not load, or null. */
  loadError: string | null;
}

/** The vault's devices were zeroized (`bkv operator zeroize`): it never serves again. */
export class VaultZeroizedError extends Error {
  override readonly name = 'VaultZeroizedError';
  constructor(readonly partition: number) {
    super(`the vault was zeroized by its operator (partition ${partition}): its device keys are destroyed, its records can never be opened again, and it will not serve; a new vault needs a new data folder`);
  }
}

export class VaultHost {
  private engines: PartitionEngine[] = [];
  private readonly restarts = new Map<number, Promise<void>>();
  /** Per partition: automatic restarts that failed in a row, and the timer of the next try. */
  private readonly retries = new Map<number, { failures: number; timer: NodeJS.Timeout | null }>();
  /**
   * Per partition whose last restart failed: why. Its device did not boot, or booted and
   * answered a fault at load (a token that lost its keys: NotProvisioned), so its channel may say
   * 'ready' while it holds no records: such a partition is not ready and serves nothing until a
   * restart succeeds.
   */
  private readonly down = new Map<number, unknown>();
  private closed = false;
  /** Releases the data folder's lock (folder-lock.ts), taken by open. */
  private unlock: () => void = () => {};
  private compactTimer: NodeJS.Timeout | null = null;
  /** The compaction pass in progress, if any (close waits for it). */
  private compacting: Promise<void> | null = null;
  info!: VaultInfo;

  private constructor(
    private readonly pool: EnclavePool,
    readonly store: RecordStore,
    private readonly opts: VaultHostOptions,
  ) {}

  static async open(opts: VaultHostOptions): Promise<VaultHost> {
    const every = opts.compactEveryMs;
    if (every !== undefined && (!Number.isSafeInteger(every) || every < 0 || every > 0x7fffffff)) {
      throw new RangeError('compactEveryMs must be an integer in 0..2147483647 (a timer delay)');
    }
    mkdirSync(opts.dataDir, { recursive: true });
    const unlock = lockDataFolder(opts.dataDir);
    let store: RecordStore;
    try {
      store = await openStore(opts.store, opts.dataDir);
    } catch (e) {
      unlock();
      throw e;
    }
    let host: VaultHost | undefined;
    let pool: EnclavePool;
    try {
      pool = await EnclavePool.open({
        dataDir: opts.dataDir,
        mode: opts.mode ?? 'worker',
        ...(opts.token !== undefined && { token: opts.token }),
        ...(opts.tokenPins !== undefined && { tokenPins: opts.tokenPins }),
        partitions: opts.partitions,
        operatorKeyHash: opts.operatorKeyHash,
        ...(opts.auth !== undefined && { auth: opts.auth }),
        failpoint: opts.failpoint,
        failpointHit: opts.failpointHit,
        ...(opts.deviceNotes === true && { deviceNotes: true }),
        onCrash: (p) => {
          host?.autoRestart(p);
        },
      });
    } catch (e) {
      await store.close();
      unlock();
      throw e;
    }
    host = new VaultHost(pool, store, opts);
    host.unlock = unlock;
    if (opts.load === false) {
      host.engines = Array.from({ length: pool.partitions }, (_, p) => host!.newEngine(p));
      return host;
    }
    try {
      await host.startEngines();
    } catch (e) {
      await host.close();
      throw e;
    }
    host.scheduleCompaction();
    return host;
  }

  private scheduleCompaction(): void {
    const every = this.opts.compactEveryMs ?? 3_600_000;
    if (every === 0) return;
    this.compactTimer = setInterval(() => void this.compact(), every);
    this.compactTimer.unref();
  }

  /**
   * One compaction pass (see `compactEveryMs`): per partition, the store's empty-blob rows below
   * its applied epoch go. A partition that is restarting is skipped; a storage error is logged
   * and the next pass tries again. Concurrent calls share one pass.
   */
  compact(): Promise<void> {
    this.compacting ??= (async () => {
      for (let p = 0; p < this.engines.length && !this.closed; p++) {
        if (this.restarts.has(p)) continue;
        try {
          const applied = await this.store.appliedEpoch(p);
          if (applied !== null && applied > 0) await this.store.compact(p, applied);
        } catch (e) {
          if (!this.closed) this.opts.log?.(`partition ${p}: compaction failed: ${String(e)}`);
        }
      }
    })().finally(() => {
      this.compacting = null;
    });
    return this.compacting;
  }

  private async startEngines(): Promise<void> {
    const infos = [];
    this.engines = [];
    const progress = this.opts.onLoadProgress;
    const total = progress ? (await this.store.stats()).records : 0;
    let loaded = 0;
    progress?.(0, total);
    const onLoaded = progress && ((n: number) => progress((loaded += n), total));
    for (let p = 0; p < this.pool.partitions; p++) {
      const engine = this.newEngine(p);
      this.engines.push(engine);
      infos.push(await engine.start(onLoaded).catch((e: unknown) => {
        if (e instanceof EnclaveCallError && e.code === Lifecycle.Zeroized) throw new VaultZeroizedError(p);
        throw e;
      }));
    }
    const first = infos[0]!;
    for (const i of infos) {
      if (Buffer.compare(Buffer.from(i.hpkePublicKey), Buffer.from(first.hpkePublicKey)) !== 0) {
        throw new Error('partitions disagree on the enclave public key (mixed token files?)');
      }
    }
    this.info = {
      partitions: this.pool.partitions,
      enclavePublicKey: first.hpkePublicKey,
      serverPublicKeys: new Map(first.suites.map((s) => [s.suite, s.serverPublicKey])),
      records: infos.reduce((n, i) => n + i.records, 0),
    };
  }

  private newEngine(p: number): PartitionEngine {
    const engine = new PartitionEngine(this.pool.device(p), this.store, p);
    const onBatch = this.opts.onBatch;
    if (onBatch) engine.onBatch = (size, ms) => onBatch(p, size, ms);
    // A batch in an unknown state (a failed storage commit): reload the partition to settle it.
    engine.onFailure = (e) => {
      this.opts.log?.(`partition ${p}: batch failed (${e instanceof Error ? e.name : 'error'}); reloading`);
      this.autoRestart(p);
    };
    return engine;
  }

  /**
   * Per partition: true while its device runs and its records are loaded (false while it
   * restarts, after it died, and after a restart whose boot or load failed).
   */
  partitionsReady(): boolean[] {
    return this.engines.map((_, p) => !this.closed && !this.restarts.has(p) && !this.down.has(p) && this.pool.channel(p).state === 'ready');
  }

  partitionOf(recordId: Uint8Array): number {
    return this.pool.partitionOf(recordId);
  }

  /**
   * Relays one sealed client operation; resolves when its batch is durable. `partition`: the
   * record's partition when the caller has it already (`partitionOf`, as the HTTP route does),
   * so SHA-256 of the id is taken once on the host; a wrong one reaches a device that refuses
   * the op (its enclave checks the partition itself). A partition that is not serving (its last
   * restart failed at boot or load) refuses it with ChannelError NotReady before any device
   * sees it (the service answers 503 NOT_READY).
   */
  async submit(recordId: Uint8Array, message: Uint8Array, partition?: number): Promise<OpResult> {
    const p = partition ?? this.pool.partitionOf(recordId);
    if (!Number.isInteger(p) || p < 0 || p >= this.engines.length) throw new RangeError(`partition ${p} out of 0..${this.engines.length - 1}`);
    const pending = this.restarts.get(p);
    if (pending) await pending.catch(() => {}); // a failed restart marks the partition down: refused below
    if (this.down.has(p)) throw new ChannelError(ChannelErrorCode.NotReady, `partition ${p} is not serving: its device failed to boot or load its records; it is being restarted`, { cause: this.down.get(p) });
    return this.engines[p]!.submit(recordId, message);
  }

  queueDepth(): number[] {
    return this.engines.map((e) => e.queueDepth);
  }

  /**
   * A fresh device for partition `p`, reloaded from storage (its NVRAM decides what is valid).
   * When the boot or the load fails, the partition is down (not ready, refusing operations)
   * until a later restart succeeds.
   */
  restartPartition(p: number): Promise<void> {
    const running = this.restarts.get(p);
    if (running) return running;
    const job = (async () => {
      this.opts.log?.(`partition ${p}: restarting device`);
      try {
        await this.pool.restart(p);
        const engine = this.newEngine(p);
        await engine.start();
        this.engines[p] = engine;
      } catch (e) {
        this.down.set(p, e);
        throw e;
      }
      this.down.delete(p);
    })().finally(() => this.restarts.delete(p));
    this.restarts.set(p, job);
    return job;
  }

  /**
   * Restarts partition `p` on its own (after a device crash or a failed batch) and keeps trying,
   * with exponential backoff, until it serves again or the host closes: a restart attempted while
   * the token or the store is still broken fails, and the partition must not stay down once they
   * work again. Meanwhile partitionsReady() says false for it and its requests fail.
   */
  autoRestart(p: number): void {
    if (this.closed || this.opts.autoRestart === false) return;
    const r = this.retries.get(p);
    if (r?.timer) return; // a retry is already scheduled
    this.restartPartition(p).then(
      () => {
        const had = this.retries.get(p)?.failures ?? 0;
        this.retries.delete(p);
        if (had) this.opts.log?.(`partition ${p}: serving again after ${had} failed restart(s)`);
      },
      (e: unknown) => {
        if (this.closed) return;
        const state = this.retries.get(p) ?? { failures: 0, timer: null };
        if (state.timer) return;
        state.failures++;
        const base = this.opts.restartBackoffMs ?? 250;
        const delay = Math.min(this.opts.restartMaxBackoffMs ?? 30_000, base * 2 ** Math.min(state.failures - 1, 20));
        this.opts.log?.(`partition ${p} restart failed (${state.failures} in a row; next try in ${delay} ms): ${String(e)}`);
        state.timer = setTimeout(() => {
          state.timer = null;
          this.autoRestart(p);
        }, delay);
        state.timer.unref();
        this.retries.set(p, state);
      },
    );
  }

  /**
   * Replaces the issuer set on every partition (the enclave's SetAuth, authorized by the operator
   * secret whose hash was provisioned). Throws EnclaveCallError (Lifecycle.OperatorAuthFailed for
   * a wrong secret) at the first partition that refuses. The caller stores the new set (the
   * devices refuse to boot under any other); a partition that did not change keeps the old one
   * and refuses to boot under the new one until the command is run again.
   */
  async setAuth(config: AuthConfig, operatorSecret: Uint8Array): Promise<void> {
    if (operatorSecret.length !== 32) throw new RangeError('the operator secret is 32 bytes');
    const encoded = encodeAuthConfig(config);
    for (const e of this.engines) await e.call({ type: 'SetAuth', config: encoded, auth: operatorSecret });
  }

  /**
   * Checks every partition's audit chain through its device, from the committed head back to the
   * first event; with the operator secret the devices also open the events (audit-read.ts).
   */
  async auditVerify(opts: AuditReadOptions = {}): Promise<AuditReport[]> {
    const out: AuditReport[] = [];
    for (let p = 0; p < this.engines.length; p++) {
      const engine = this.engines[p]!;
      out.push(await readAuditChain((req) => engine.call(req), this.store, p, opts));
    }
    return out;
  }

  /**
   * Zeroizes every partition's device (the enclave's Zeroize, authorized by the operator secret
   * whose hash was provisioned): its token keys are destroyed and its NVRAM says so, so no record
   * stored for it can ever be opened again and the vault never serves again. Throws
   * EnclaveCallError (Lifecycle.OperatorAuthFailed for a wrong secret) at the first partition that
   * refuses; the enclave checks the secret before it destroys anything, and one already zeroized
   * answers done, so running it again finishes an interrupted run. Returns the partitions zeroized.
   */
  async zeroize(operatorSecret: Uint8Array): Promise<number> {
    if (operatorSecret.length !== 32) throw new RangeError('the operator secret is 32 bytes');
    for (const e of this.engines) await e.call({ type: 'Zeroize', auth: operatorSecret });
    return this.engines.length;
  }

  /**
   * Every partition's device as it reports itself (InfoResult), after loading its records when
   * it can (a host opened with `load: false`): a load the device refuses (rollback detected, ...)
   * is reported in `loadError`, not thrown.
   */
  async status(): Promise<PartitionStatus[]> {
    const out: PartitionStatus[] = [];
    for (let p = 0; p < this.engines.length; p++) {
      const engine = this.engines[p]!;
      let info = await engine.call({ type: 'Info' });
      let loadError: string | null = null;
      if (info.state === ENCLAVE_STATE.notLoaded) {
        try {
          info = await engine.start();
        } catch (e) {
          loadError = e instanceof Error ? e.message : String(e);
          info = await engine.call({ type: 'Info' });
        }
      }
      out.push({ partition: p, info, loadError });
    }
    return out;
  }

  /**
   * The operator's count of partition `p`'s locked records (the enclave's Census, with the
   * operator secret): its stored rows streamed once more to its loaded device, which opens each
   * live one. `live` is how many rows were live records (the device's record count when the
   * store is complete). One token decryption per record; nothing on the hot path.
   */
  async census(p: number, operatorSecret: Uint8Array): Promise<{ live: number; locked: number }> {
    if (operatorSecret.length !== 32) throw new RangeError('the operator secret is 32 bytes');
    const engine = this.engines[p]!;
    let live = 0;
    let locked = 0;
    for await (const chunk of this.store.scan(p, MAX_LOAD_ENTRIES)) {
      const r = await engine.call({ type: 'Census', entries: chunk.map((x) => ({ recordId: x.recordId, blob: x.blob })), auth: operatorSecret });
      live += r.live;
      locked += r.locked;
    }
    return { live, locked };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.compactTimer) clearInterval(this.compactTimer);
    await this.compacting;
    for (const r of this.retries.values()) if (r.timer) clearTimeout(r.timer);
    this.retries.clear();
    await Promise.allSettled([...this.restarts.values()]);
    await Promise.all(this.engines.map((e) => e.close()));
    await this.pool.close();
    await this.store.close();
    this.unlock();
  }
}

export function operatorKeyHash(secret: Uint8Array): Uint8Array {
  return new Uint8Array(createHash('sha256').update(secret).digest());
}
