/**
 * The host's only handle on an enclave: a channel that carries request bytes to the firmware
 * and response bytes back, across a real isolation boundary (a worker thread or a child
 * process running the simulated device, hsm/). The host holds no enclave object.
 *
 * This file has the interface, the typed errors (codes 3000-3099, never renumbered) and
 * `DeviceChannel`, the bookkeeping both transports share: request ids, per-request timeouts,
 * a bound on requests in flight, the `ready` promise, crash detection and clean shutdown.
 *
 * A request that times out is rejected at once, but still counts as in flight until the
 * firmware answers it (the device handles requests one at a time, so it is still ahead in the
 * queue): a hung device fills up and answers Overloaded instead of queueing without bound.
 */
import { encodeAuthConfig } from '../../enclave/api/auth.ts';
import type { AuthConfig } from '../../enclave/api/auth.ts';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { projectBundle, projectRoot } from '../../bin/bundle.mjs';
import { TOKEN_BACKENDS } from '../../hsm/tokens/backends.ts';
import type { TokenKind } from '../../hsm/tokens/backends.ts';
import { codedErrorClass, type CodeOf } from '../../enclave/api/codes.ts';
import { wholeBuffer } from '../../enclave/api/device.ts';
import type { Device, DeviceConfig, FromDevice, RequestOptions, ToDevice, TokenPinSource } from '../../enclave/api/device.ts';

export const ChannelErrorCode = {
  /** No response within the request's timeout. */
  Timeout: 3001,
  /** The channel is closing or closed. */
  Closed: 3002,
  /** Too many requests in flight; retry later. */
  Overloaded: 3003,
  /** The device died (exit, signal, uncaught error); the channel is dead: restart it. */
  Crashed: 3004,
  /** The firmware did not boot (its createEnclave threw, the module is missing, boot timed out). */
  BootFailed: 3005,
  /** The firmware's request() threw, which its contract forbids. */
  HandlerFailed: 3006,
  /** The request was not bytes. */
  InvalidRequest: 3007,
  /**
   * The device answered with a response its request does not have (enclave/api/messages.ts
   * ResponseOf): the engine's typed call throws it as an EnclaveCallError (host/vault/engine.ts).
   */
  UnexpectedResponse: 3008,
  /**
   * The partition serves nothing now: its device answered a fault at boot or at load (its token
   * or its store is broken) and the host keeps restarting it (host/vault/vault-host.ts). The
   * request was refused before it reached any device; retry later.
   */
  NotReady: 3009,
} as const;
export type ChannelErrorCode = CodeOf<typeof ChannelErrorCode>;

/** A channel failure: a code of ChannelErrorCode (range 3000-3099 in enclave/api/codes.ts CODE_RANGES). */
export const ChannelError = codedErrorClass('ChannelError', ChannelErrorCode);
export type ChannelError = InstanceType<typeof ChannelError>;

export type ChannelState = 'booting' | 'ready' | 'closing' | 'closed' | 'crashed';

/** A device across a thread or process boundary: the byte seam (enclave/api/device.ts) and its lifecycle. */
export interface EnclaveChannel extends Device {
  /** Stops accepting, waits for requests in flight up to a deadline, then ends the device. */
  close(opts?: { timeoutMs?: number }): Promise<void>;
  /** True once closing began or the device died. */
  readonly closed: boolean;
  /** Resolves when the firmware booted; rejects with ChannelError BootFailed. */
  readonly ready: Promise<void>;
  readonly state: ChannelState;
  /** Requests sent and not yet answered by the firmware (including timed-out ones). */
  readonly inFlight: number;
}

export interface ChannelOptions {
  /** The vault's data folder (the token, NVRAM files if any). */
  dataDir: string;
  /** The vault's PKCS#11 token backend (hsm/tokens/backends.ts; default the emulator). */
  token?: TokenKind;
  /** Where the device finds the token's PINs (hsm/tokens/token-pins.ts); default: the operator folder `<dataDir>.operator`. */
  tokenPins?: TokenPinSource;
  /** Where the device keeps its NVRAM: a file per partition (default) or token data objects. */
  nvram?: 'token' | 'file';
  partition?: number;
  partitions?: number;
  /** Absolute path of the firmware module; the device's default is enclave/main.ts. */
  firmware?: string;
  nvramSize?: number;
  /** Failpoint name at which the device dies (crash tests). */
  failpoint?: string;
  failpointHit?: number;
  operatorKeyHash?: Uint8Array;
  /** The issuer set (enclave/api/auth.ts) the device boots with; its enclave checks it against its NVRAM. */
  auth?: AuthConfig;
  /** Default per-request timeout (default 30 s). */
  timeoutMs?: number;
  /** How long the firmware may take to boot (default 60 s). */
  bootTimeoutMs?: number;
  /** Requests in flight before new ones are rejected with Overloaded (default 256). */
  maxInFlight?: number;
  /** How long close() waits for requests in flight (default 5 s). */
  closeTimeoutMs?: number;
  /** How long a stopping device may take to exit before it is killed (default 2 s). */
  killAfterMs?: number;
  /** Child process mode: copy the device's stderr to this process's stderr (default true). */
  forwardStderr?: boolean;
  /**
   * The device prints its start note to stderr: partition 0's boot names the token profile of the
   * vault's keys and the profiles the token meets (hsm/runner.ts). `bkv serve` sets it for its
   * operator; default off, so a library or test vault starts silently.
   */
  deviceNotes?: boolean;
  /** Called once when a booted device dies on its own (not for a boot failure, not after close()). */
  onCrash?: (error: ChannelError) => void;
}

/** Path of the device bootstrap from source (tsx), started by path: the host never imports hsm/. */
export const deviceBootPath = (): string => join(projectRoot(), 'hsm', 'boot.mjs');

/**
 * Set when this module runs compiled in the package's dist/ (`npm run build`): the device's
 * entries and the default firmware are compiled beside it, and no sources ship.
 */
const compiledIn = import.meta.url.endsWith('/dist/host/channel/channel.js') ? new URL('../../', import.meta.url) : undefined;

/**
 * What a channel starts for its device. Compiled (dist/): the compiled entry, with the compiled
 * default firmware unless one is given by path. From source: the bundled entry
 * (bin/bundle.mjs) when the device runs the default firmware and the bundle is available, else
 * hsm/boot.mjs, which loads the device from source (a firmware given by path, BKV_BUNDLE=0, a
 * bundle that did not build). With the bundle, `config.firmware` is set to the bundled firmware.
 */
export function deviceEntry(kind: 'worker' | 'process', config: DeviceConfig): string {
  if (compiledIn) {
    config.firmware ??= fileURLToPath(new URL('enclave/main.js', compiledIn));
    return fileURLToPath(new URL(`hsm/${kind}-main.js`, compiledIn));
  }
  if (config.firmware !== undefined) return deviceBootPath();
  let bundle = projectBundle();
  // A build folder can be pruned under a long-running process (after a day unused): rebuild.
  if (bundle && !existsSync(bundle.firmware)) bundle = projectBundle(true);
  if (!bundle) return deviceBootPath();
  config.firmware = bundle.firmware;
  return kind === 'worker' ? bundle.worker : bundle.process;
}

interface Pending {
  resolve(b: Uint8Array): void;
  reject(e: ChannelError): void;
  timer: ReturnType<typeof setTimeout> | undefined;
  /** Set while waiting for the device to boot: the request has not been sent. */
  unsent: ArrayBuffer | undefined;
}

export abstract class DeviceChannel implements EnclaveChannel {
  readonly ready: Promise<void>;
  /** The device's configuration; `deviceNotes` is read by hsm/runner.ts (its CheckedConfig). */
  protected readonly config: DeviceConfig & { deviceNotes?: boolean };
  private readonly timeoutMs: number;
  private readonly maxInFlight: number;
  private readonly closeTimeoutMs: number;
  protected readonly killAfterMs: number;
  private readonly onCrash: ((error: ChannelError) => void) | undefined;
  private _state: ChannelState = 'booting';
  private failure: ChannelError | undefined;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly abandoned = new Set<number>();
  private readonly unsentOrder: number[] = [];
  private resolveReady!: () => void;
  private rejectReady!: (e: ChannelError) => void;
  private bootTimer: ReturnType<typeof setTimeout> | undefined;
  private bootError: string | undefined;
  private drainWaiters: (() => void)[] = [];
  private closing: Promise<void> | undefined;
  private resolveExited!: () => void;
  protected readonly exited: Promise<void>;
  private alive = true;

  constructor(opts: ChannelOptions) {
    const partitions = opts.partitions ?? 1;
    this.config = {
      dataDir: opts.dataDir,
      partition: opts.partition ?? 0,
      partitions,
      ...(opts.firmware !== undefined && { firmware: opts.firmware }),
      ...(opts.token !== undefined && { token: opts.token }),
      ...(opts.tokenPins !== undefined && { tokenPins: opts.tokenPins }),
      ...(opts.nvram !== undefined && { nvram: opts.nvram }),
      ...(opts.nvramSize !== undefined && { nvramSize: opts.nvramSize }),
      ...(opts.failpoint !== undefined && { failpoint: opts.failpoint }),
      ...(opts.failpointHit !== undefined && { failpointHit: opts.failpointHit }),
      ...(opts.operatorKeyHash !== undefined && { operatorKeyHash: Buffer.from(opts.operatorKeyHash).toString('hex') }),
      ...(opts.auth !== undefined && { auth: Buffer.from(encodeAuthConfig(opts.auth)).toString('base64url') }),
      ...(opts.deviceNotes === true && { deviceNotes: true }),
    };
    // What the token's library reads from the process environment (SoftHSM2: SOFTHSM2_CONF), which
    // a worker thread can not set for the process: the host sets it (a child-process device sets
    // its own as well).
    if (opts.token !== undefined) Object.assign(process.env, TOKEN_BACKENDS[opts.token].hostEnv(opts.dataDir));
    this.timeoutMs = opts.timeoutMs ?? 30_000;
    this.maxInFlight = opts.maxInFlight ?? 256;
    this.closeTimeoutMs = opts.closeTimeoutMs ?? 5_000;
    this.killAfterMs = opts.killAfterMs ?? 2_000;
    this.onCrash = opts.onCrash;
    this.ready = new Promise<void>((res, rej) => {
      this.resolveReady = res;
      this.rejectReady = rej;
    });
    this.ready.catch(() => {}); // observed by whoever awaits it; never an unhandled rejection
    this.exited = new Promise<void>((res) => (this.resolveExited = res));
    const bootTimeoutMs = opts.bootTimeoutMs ?? 60_000;
    this.bootTimer = setTimeout(() => {
      if (this._state !== 'booting') return;
      this.fail(new ChannelError(ChannelErrorCode.BootFailed, `firmware did not boot within ${bootTimeoutMs} ms`));
      void this.terminate();
    }, bootTimeoutMs);
  }

  get state(): ChannelState {
    return this._state;
  }
  get closed(): boolean {
    return this._state !== 'booting' && this._state !== 'ready';
  }
  get inFlight(): number {
    return this.pending.size + this.abandoned.size;
  }

  /** Sends one message to the device (transferring `transfer` where the transport can). */
  protected abstract post(msg: ToDevice, transfer: ArrayBuffer[]): void;
  /** Ends the device at once. */
  protected abstract terminate(): Promise<void>;

  request(req: Uint8Array, opts: RequestOptions = {}): Promise<Uint8Array> {
    if (!(req instanceof Uint8Array)) {
      return Promise.reject(new ChannelError(ChannelErrorCode.InvalidRequest, 'request must be a Uint8Array'));
    }
    if (this.failure) return Promise.reject(this.failure);
    if (this.closed) return Promise.reject(new ChannelError(ChannelErrorCode.Closed, 'channel is closed'));
    if (this.inFlight >= this.maxInFlight) {
      return Promise.reject(new ChannelError(ChannelErrorCode.Overloaded, `${this.inFlight} requests in flight (limit ${this.maxInFlight})`));
    }
    const id = this.nextId++;
    // The caller's own buffer when it gives it up (RequestOptions.transfer), else a copy, which is
    // what crosses (transferred to a worker thread, serialized to a child process).
    let buf = opts.transfer ? wholeBuffer(req) : null;
    if (!buf) {
      buf = new ArrayBuffer(req.byteLength);
      new Uint8Array(buf).set(req);
    }
    const timeoutMs = opts.timeoutMs ?? this.timeoutMs;
    return new Promise<Uint8Array>((resolve, reject) => {
      const p: Pending = { resolve, reject, timer: undefined, unsent: undefined };
      if (timeoutMs > 0 && Number.isFinite(timeoutMs)) {
        p.timer = setTimeout(() => this.expire(id, timeoutMs), timeoutMs);
      }
      this.pending.set(id, p);
      if (this._state === 'ready') {
        this.post({ t: 'req', id, buf }, [buf]);
      } else {
        p.unsent = buf;
        this.unsentOrder.push(id);
      }
    });
  }

  close(opts: { timeoutMs?: number } = {}): Promise<void> {
    if (this.closing) return this.closing;
    const wasAlive = this.alive;
    if (!this.closed) this._state = 'closing';
    this.closing = (async () => {
      if (wasAlive) {
        const deadline = opts.timeoutMs ?? this.closeTimeoutMs;
        await this.drained(deadline);
        this.failAll(new ChannelError(ChannelErrorCode.Closed, 'channel closed before the response arrived'));
        if (this.alive) {
          this.post({ t: 'stop' }, []);
          const stopped = await Promise.race([this.exited.then(() => true), delay(this.killAfterMs).then(() => false)]);
          if (!stopped) await this.terminate();
        }
        await this.exited;
      }
      clearTimeout(this.bootTimer);
      if (!this.failure) this._state = 'closed';
    })();
    return this.closing;
  }

  // ---- called by the transports ----

  protected onDeviceMessage(raw: unknown): void {
    const msg = raw as FromDevice;
    switch (msg?.t) {
      case 'ready':
        if (this._state !== 'booting' && this._state !== 'closing') return;
        clearTimeout(this.bootTimer);
        if (this._state === 'booting') this._state = 'ready';
        this.resolveReady();
        for (const id of this.unsentOrder.splice(0)) {
          const p = this.pending.get(id);
          if (!p?.unsent) continue;
          const buf = p.unsent;
          p.unsent = undefined;
          this.post({ t: 'req', id, buf }, [buf]);
        }
        return;
      case 'boot-error':
        this.bootError = String(msg.message);
        return;
      case 'res':
      case 'fail': {
        const p = this.pending.get(msg.id);
        if (!p) {
          this.abandoned.delete(msg.id);
        } else {
          clearTimeout(p.timer);
          this.pending.delete(msg.id);
          if (msg.t === 'res') p.resolve(new Uint8Array(msg.buf));
          else p.reject(new ChannelError(ChannelErrorCode.HandlerFailed, `firmware handler threw: ${msg.message}`));
        }
        this.checkDrained();
        return;
      }
    }
  }

  /** The device is gone: `how` says how (exit code, signal), `detail` any last words. */
  protected onDeviceExit(how: string, detail?: string): void {
    if (!this.alive) return;
    this.alive = false;
    clearTimeout(this.bootTimer);
    const suffix = detail ? `: ${detail}` : '';
    if (this._state === 'booting' || (this._state === 'closing' && this.bootError !== undefined)) {
      const why = this.bootError ?? `device ended (${how}) before the firmware booted${suffix}`;
      this.fail(new ChannelError(ChannelErrorCode.BootFailed, why));
    } else if (this._state === 'ready') {
      const err = new ChannelError(ChannelErrorCode.Crashed, `device died (${how})${suffix}`);
      this.fail(err);
      this.onCrash?.(err);
    } else {
      this.failAll(new ChannelError(ChannelErrorCode.Closed, 'channel closed before the response arrived'));
      if (this._state === 'closing') this.rejectReady(new ChannelError(ChannelErrorCode.Closed, 'channel closed during boot'));
    }
    this.resolveExited();
  }

  // ---- internals ----

  private fail(err: ChannelError): void {
    if (this.failure) return;
    this.failure = err;
    this._state = 'crashed';
    this.rejectReady(err);
    this.failAll(err);
  }

  private failAll(err: ChannelError): void {
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(err);
    }
    this.pending.clear();
    this.abandoned.clear();
    this.unsentOrder.length = 0;
    this.checkDrained();
  }

  private expire(id: number, ms: number): void {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    if (p.unsent) p.unsent = undefined; // never sent: nothing for the device to finish
    else this.abandoned.add(id);
    p.reject(new ChannelError(ChannelErrorCode.Timeout, `no response within ${ms} ms`));
    this.checkDrained();
  }

  private drained(ms: number): Promise<void> {
    if (this.pending.size === 0) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.drainWaiters.push(done);
    });
  }

  private checkDrained(): void {
    if (this.pending.size > 0) return;
    for (const w of this.drainWaiters.splice(0)) w();
  }
}

export function delay(ms: number): Promise<void> {
  return new Promise((res) => setTimeout(res, ms));
}
