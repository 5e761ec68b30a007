/**
 * The PKCS#11 remote, host side: a synchronous `Pkcs11` (enclave/api/pkcs11.ts, shaped on
 * pkcs11js's PKCS11 class, so graphene-pk11's Module and every existing caller use it unchanged)
 * whose module, the emulator token, runs in its own worker thread (pkcs11-server.ts, started
 * by file path through pkcs11-boot.mjs). Each call is encoded into bytes (protocol.ts),
 * written into a SharedArrayBuffer, and the caller blocks in `Atomics.wait` until the token thread
 * answers; output buffers are filled from the reply and their filled part returned, as pkcs11js
 * does. Only bytes cross: this side holds no reference to the module or its objects.
 *
 * Failures are Pkcs11Errors: the module's own (code, method and detail as it threw them); a
 * request too large for the frame area CKR_ARGUMENTS_BAD (nothing is sent); a malformed reply
 * CKR_GENERAL_ERROR; no answer within `timeoutMs`, or a thread that died, CKR_DEVICE_ERROR, after
 * which the thread is terminated and every call is CKR_DEVICE_ERROR (the token's state is
 * unknown); after `close()` every call is CKR_DEVICE_REMOVED. Arguments of the wrong JS type are
 * a TypeError, as in pkcs11js. One call at a time per remote (the calls block); the thread does
 * not keep the process alive.
 */
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { projectRoot } from '../../../bin/bundle.mjs';
import * as P from '../../../enclave/api/pkcs11.ts';
import {
  CTL_LENGTH,
  CTL_STATE,
  DEFAULT_CAPACITY,
  HEADER_BYTES,
  MAX_CAPACITY,
  MIN_CAPACITY,
  STATE,
  CALLS,
  callSpec,
  decodeResponse,
  encodeRequest,
  pkcs11Error,
} from './protocol.ts';
import type { CallName, CallSpec, RemoteEmulatorOptions, TokenThreadData, TokenThreadFaults } from './protocol.ts';

/** The token thread's bootstrap, by path (this side never imports the token's code). */
export const TOKEN_THREAD_BOOT = path.join(projectRoot(), 'test', 'helpers', 'remote-token', 'pkcs11-boot.mjs');

export interface RemoteOptions {
  /** The emulator's options (in memory unless `storeFile` is given). */
  emulator?: RemoteEmulatorOptions;
  /** How long a call may wait for its answer (default 30 s); then CKR_DEVICE_ERROR. */
  timeoutMs?: number;
  /** How long the thread may take to start (default 60 s). */
  bootTimeoutMs?: number;
  /** Size of the frame area, bytes (default 1 MiB; MIN_CAPACITY..MAX_CAPACITY). */
  capacity?: number;
  /** Tests only: calls the token thread never answers or whose replies it garbles. */
  faults?: TokenThreadFaults;
}

/** Its `Pkcs11` calls but C_FindObjects are made from the protocol's call table (the static block below). */
export interface RemotePkcs11 extends P.Pkcs11 {}

export class RemotePkcs11 implements P.Pkcs11 {
  readonly libPath = 'backup-key-vault:emulator (remote)';
  /** Resolves with the thread's exit code when it has ended. */
  readonly exited: Promise<number>;
  readonly capacity: number;
  private readonly worker: Worker;
  private readonly ctl: Int32Array;
  private readonly area: Uint8Array;
  private readonly timeoutMs: number;
  private seq = 0;
  private closed = false;
  private failure: string | null = null;
  private lastError = '';

  constructor(opts: RemoteOptions = {}) {
    const capacity = opts.capacity ?? DEFAULT_CAPACITY;
    if (!Number.isInteger(capacity) || capacity < MIN_CAPACITY || capacity > MAX_CAPACITY) {
      throw new RangeError(`capacity must be an integer in ${MIN_CAPACITY}..${MAX_CAPACITY}`);
    }
    this.capacity = capacity;
    this.timeoutMs = opts.timeoutMs ?? 30_000;
    if (!(this.timeoutMs > 0)) throw new RangeError('timeoutMs must be positive');
    const sab = new SharedArrayBuffer(HEADER_BYTES + capacity);
    this.ctl = new Int32Array(sab, 0, 4);
    this.area = new Uint8Array(sab, HEADER_BYTES);
    const data: TokenThreadData = { sab, emulator: { ...opts.emulator }, ...(opts.faults && { faults: opts.faults }) };
    // execArgv: [] drops the parent's loader flags (tsx, vitest); the bootstrap registers tsx itself.
    this.worker = new Worker(TOKEN_THREAD_BOOT, { workerData: data, execArgv: [] });
    this.worker.on('error', (e: Error) => {
      this.lastError = `${e.name}: ${e.message}`;
    });
    this.exited = new Promise((resolve) => this.worker.once('exit', resolve));
    this.worker.unref();

    const deadline = performance.now() + (opts.bootTimeoutMs ?? 60_000);
    while (Atomics.load(this.ctl, CTL_STATE) === STATE.BOOTING) {
      const left = deadline - performance.now();
      if (left <= 0) this.bootFailed('the token thread did not start in time');
      Atomics.wait(this.ctl, CTL_STATE, STATE.BOOTING, left);
    }
    if (Atomics.load(this.ctl, CTL_STATE) !== STATE.IDLE) this.bootFailed(`the token thread did not start: ${this.failureText()}`);
  }

  /** The token thread's id (for logs). */
  get threadId(): number {
    return this.worker.threadId;
  }

  /** Ends the token thread (pkcs11js's `close`, which graphene's Module.close calls). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.worker.ref(); // the process waits for the thread's end, which is at hand
    if (this.failure === null && Atomics.load(this.ctl, CTL_STATE) === STATE.IDLE) {
      Atomics.store(this.ctl, CTL_STATE, STATE.CLOSING);
      Atomics.notify(this.ctl, CTL_STATE);
      // It ends itself at once; if it does not, it is ended.
      setTimeout(() => void this.worker.terminate().catch(() => undefined), 5000).unref();
    } else void this.worker.terminate().catch(() => undefined);
  }

  // ---------------------------------------------------------------- the calls
  /** Every call of CALLS sends its arguments as they are and returns what the reply carries. */
  static {
    for (const { name } of CALLS) {
      if (Object.hasOwn(RemotePkcs11.prototype, name)) continue;
      Object.defineProperty(RemotePkcs11.prototype, name, {
        value(this: RemotePkcs11, ...args: unknown[]): unknown {
          return this.call(name, args);
        },
        writable: true,
        configurable: true,
      });
    }
  }

  /** The reply is checked to be of the shape the overload promises. */
  C_FindObjects(session: P.Handle): P.Handle | null;
  C_FindObjects(session: P.Handle, maxObjectCount: number): P.Handle[];
  C_FindObjects(session: P.Handle, maxObjectCount?: number): P.Handle | null | P.Handle[] {
    const r = this.call('C_FindObjects', [session, maxObjectCount]) as P.Handle | null | P.Handle[];
    if ((maxObjectCount === undefined) === Array.isArray(r)) throw pkcs11Error(P.CKR.CKR_GENERAL_ERROR, 'C_FindObjects', 'malformed reply: result of the wrong shape');
    return r;
  }

  // ---------------------------------------------------------------- the exchange
  private call(name: CallName, args: unknown[]): unknown {
    const spec = callSpec(name)!;
    this.usable(name);
    this.seq = (this.seq + 1) >>> 0;
    const frame = encodeRequest(this.seq, spec, args);
    if (frame.length > this.capacity) {
      throw pkcs11Error(P.CKR.CKR_ARGUMENTS_BAD, name, `request of ${frame.length} bytes exceeds the ${this.capacity}-byte frame area`);
    }
    const reply = this.exchange(frame, frame.length, name);
    let res;
    try {
      res = decodeResponse(reply, spec, this.seq);
    } catch (e) {
      throw pkcs11Error(P.CKR.CKR_GENERAL_ERROR, name, `malformed reply: ${(e as Error).message}`);
    }
    if (!res.ok) throw pkcs11Error(res.code, res.method, res.detail);
    return deliver(spec, args, res.value);
  }

  private usable(name: string): void {
    if (this.failure !== null) throw pkcs11Error(P.CKR.CKR_DEVICE_ERROR, name, this.failure);
    if (this.closed) throw pkcs11Error(P.CKR.CKR_DEVICE_REMOVED, name, 'the remote is closed');
  }

  /**
   * Tests and diagnostics: sends raw frame bytes (announcing `claimedLength`) and returns the
   * raw reply, decoded by nobody. A reply whose announced length exceeds the frame area is a
   * CKR_GENERAL_ERROR.
   */
  exchangeFrame(frame: Uint8Array, claimedLength = frame.length): Buffer {
    this.usable('exchangeFrame');
    return this.exchange(frame.subarray(0, this.capacity), claimedLength, 'exchangeFrame');
  }

  private exchange(frame: Uint8Array, claimedLength: number, name: string): Buffer {
    const ctl = this.ctl;
    this.area.set(frame);
    Atomics.store(ctl, CTL_LENGTH, claimedLength);
    Atomics.store(ctl, CTL_STATE, STATE.REQUEST);
    Atomics.notify(ctl, CTL_STATE);
    const deadline = performance.now() + this.timeoutMs;
    while (Atomics.load(ctl, CTL_STATE) === STATE.REQUEST) {
      const left = deadline - performance.now();
      if (left <= 0) throw this.fail(name, `no answer from the token thread within ${this.timeoutMs} ms`);
      Atomics.wait(ctl, CTL_STATE, STATE.REQUEST, left);
    }
    const state = Atomics.load(ctl, CTL_STATE);
    if (state !== STATE.RESPONSE) throw this.fail(name, `the token thread failed: ${this.failureText()}`);
    const len = Atomics.load(ctl, CTL_LENGTH);
    if (len < 0 || len > this.capacity) {
      Atomics.store(ctl, CTL_STATE, STATE.IDLE);
      throw pkcs11Error(P.CKR.CKR_GENERAL_ERROR, name, `malformed reply: length ${len} exceeds the ${this.capacity}-byte frame area`);
    }
    const reply = Buffer.from(this.area.subarray(0, len));
    Atomics.store(ctl, CTL_STATE, STATE.IDLE);
    return reply;
  }

  /** The thread is of no more use: end it; this and every later call is CKR_DEVICE_ERROR. */
  private fail(name: string, why: string): P.Pkcs11Error {
    this.failure = why;
    void this.worker.terminate().catch(() => undefined);
    return pkcs11Error(P.CKR.CKR_DEVICE_ERROR, name, why);
  }

  private failureText(): string {
    if (Atomics.load(this.ctl, CTL_STATE) === STATE.FAILED) {
      const len = Math.min(Math.max(Atomics.load(this.ctl, CTL_LENGTH), 0), this.capacity);
      return Buffer.from(this.area.subarray(0, len)).toString('utf8');
    }
    return this.lastError || `state ${Atomics.load(this.ctl, CTL_STATE)}`;
  }

  private bootFailed(why: string): never {
    this.failure = why;
    this.closed = true;
    void this.worker.terminate().catch(() => undefined);
    throw pkcs11Error(P.CKR.CKR_DEVICE_ERROR, '', why);
  }
}

/** An output buffer's filled part, copied from the reply (pkcs11js returns a view of the caller's buffer). */
function deliver(spec: CallSpec, args: readonly unknown[], value: unknown): unknown {
  if (spec.out === undefined) return value;
  const out = args[spec.out] as Buffer;
  const got = value as Buffer;
  if (got.length > out.length) throw pkcs11Error(P.CKR.CKR_GENERAL_ERROR, spec.name, `malformed reply: ${got.length} bytes for a ${out.length}-byte buffer`);
  out.set(got);
  return got.length === out.length ? out : out.subarray(0, got.length);
}
