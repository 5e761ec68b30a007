/**
 * The firmware's one entry, a `Device` (api/device.ts): request bytes in, response bytes out.
 * Requests are decoded strictly (enclave/api/codec.ts) before any handler runs and handled one
 * at a time, in arrival order (the device's one queue: api/device.ts `oneAtATime`); every failure is an encoded `Fault` response with a stable code, never an
 * exception across the boundary.
 */
import { decodeMessage, encodeMessage } from './api/codec.ts';
import { EnclaveFault } from './api/codes.ts';
import { oneAtATime } from './api/device.ts';
import type { Device } from './api/device.ts';
import type { HostResponse } from './api/messages.ts';
import { HOST_REQUEST_VIEWS, HostRequests, HostResponses } from './api/messages.ts';
import type { Platform } from './platform.ts';
import { Vault, toFault } from './vault/vault.ts';
import type { VaultOptions } from './vault/vault.ts';

const te = new TextEncoder();

function faultResponse(f: EnclaveFault): Uint8Array {
  const msg: HostResponse = {
    type: 'Fault',
    code: f.code,
    field: te.encode((f.field ?? '').slice(0, 64)),
    message: te.encode(f.message.slice(0, 256)),
  };
  return encodeMessage(HostResponses, msg);
}

/** `options` are for tests (the device runner passes only the platform). */
export async function createEnclave(platform: Platform, options?: VaultOptions): Promise<Device> {
  let vault: Vault | null = null;
  let bootFault: EnclaveFault | null = null;
  try {
    vault = await Vault.boot(platform, options);
  } catch (e) {
    bootFault = toFault(e);
  }
  return oneAtATime(async (request: Uint8Array): Promise<Uint8Array> => {
    try {
      if (!vault) throw bootFault!;
      // Memory another thread may write (a SharedArrayBuffer) is copied first: views must not change under the vault.
      const own = request instanceof Uint8Array && !(request.buffer instanceof ArrayBuffer) ? request.slice() : request;
      const req = decodeMessage(HostRequests, own, { views: HOST_REQUEST_VIEWS });
      return encodeMessage(HostResponses, await vault.handle(req));
    } catch (e) {
      return faultResponse(toFault(e));
    }
  });
}
