/**
 * The device contract, declared once: what the host (host/) and the simulated device (hsm/)
 * agree on.
 *
 * - `Device`: the one byte seam. Request bytes in (a HostRequests message, messages.ts), response
 *   bytes out (a HostResponses message: every failure is a Fault, never an exception across the
 *   boundary). The firmware's `createEnclave(platform)` returns one (enclave/main.ts); a host
 *   channel (host/channel/) is one across a thread or process boundary; the host's engine
 *   (host/vault/engine.ts) talks to whichever it is given, through one typed call.
 * - `DeviceConfig`: what the host passes a device at start (structured-clone and JSON friendly).
 * - `ToDevice` / `FromDevice`: the messages between a host channel and its device's serve loop
 *   (hsm/runner.ts). 'fail' answers a request whose handler threw, which the firmware's
 *   contract forbids.
 */

export interface RequestOptions {
  /** Overrides the channel's default timeout; 0 or Infinity waits forever. In-process firmware has none. */
  timeoutMs?: number;
  /**
   * The caller gives up `req`: a channel to a worker thread moves its ArrayBuffer to the device
   * (detaching it here) when `req` spans all of it (`wholeBuffer`), instead of copying it first.
   * Without it the caller's bytes are copied and never detached.
   */
  transfer?: boolean;
}

/**
 * `b`'s ArrayBuffer when `b` spans all of it (the codec's output does: enclave/api/codec.ts
 * encodeMessage allocates its exact size), so that it can be transferred without a copy; else null.
 */
export function wholeBuffer(b: Uint8Array): ArrayBuffer | null {
  return b.byteOffset === 0 && b.buffer instanceof ArrayBuffer && b.byteLength === b.buffer.byteLength ? b.buffer : null;
}

/**
 * The one byte seam between the host and an enclave. The rule of its one queue: a device takes
 * requests one at a time, in the order they were made, each answered before the next starts (the
 * engine sends a Batch and the Commit ahead of it back to back and relies on this order). The
 * device enforces it itself (`oneAtATime`, used by the firmware's entry enclave/main.ts), so a
 * device is serial whoever calls it: the device runner (hsm/runner.ts) and the host channels
 * only forward, in arrival order, and keep no queue of their own.
 */
export interface Device {
  request(req: Uint8Array, opts?: RequestOptions): Promise<Uint8Array>;
}

/** A Device whose requests run one at a time in call order (the rule above), whatever `handle` awaits. */
export function oneAtATime(handle: (req: Uint8Array) => Promise<Uint8Array>): Device {
  let queue: Promise<unknown> = Promise.resolve();
  return {
    request(req: Uint8Array): Promise<Uint8Array> {
      const r = queue.then(() => handle(req));
      queue = r.catch(() => undefined);
      return r;
    },
  };
}

/**
 * Where a device finds its token's PINs (hsm/tokens/token-pins.ts): the operator's pin file, the
 * PINs themselves, or (development mode) an operator folder beside the data folder.
 */
export type TokenPinSource = { pinFile: string } | { operatorDir: string } | { userPin: string; soPin?: string };

/** What the host passes to a device at start. */
export interface DeviceConfig {
  /** Absolute path of the firmware module (default: enclave/main.ts). */
  firmware?: string;
  /** The vault's data folder: the token (and NVRAM files, if any) live here. */
  dataDir: string;
  /** The vault's token backend, a name in hsm/tokens/backends.ts (default 'emulator'); fixed when the data folder is created. */
  token?: string;
  /** Where the token's PINs come from; default: the operator folder `<dataDir>.operator`. */
  tokenPins?: TokenPinSource;
  /** Where the NVRAM lives (default 'file': nvram-<partition>.bin; 'token': data objects in the token). */
  nvram?: 'token' | 'file';
  partition: number;
  partitions: number;
  /** NVRAM region of this partition in bytes (default NVRAM_REGION_BYTES: 256 of the device's 4 KB). */
  nvramSize?: number;
  /** Name of the failpoint at which the device dies; none when absent. */
  failpoint?: string;
  /** Which hit of that failpoint kills (default 1). */
  failpointHit?: number;
  /** Operator key hash, 64 hex digits. */
  operatorKeyHash?: string;
  /** The issuer set: auth.ts encodeAuthConfig output, base64url. */
  auth?: string;
}

/** The environment variable that carries a child-process device's DeviceConfig, as JSON. */
export const DEVICE_CONFIG_ENV = 'BKV_HSM_CONFIG';

export type ToDevice = { t: 'req'; id: number; buf: ArrayBuffer } | { t: 'stop' };
export type FromDevice =
  | { t: 'ready' }
  | { t: 'boot-error'; message: string }
  | { t: 'res'; id: number; buf: ArrayBuffer }
  | { t: 'fail'; id: number; message: string };
