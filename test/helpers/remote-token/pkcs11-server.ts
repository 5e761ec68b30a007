/**
 * The token thread of the PKCS#11 remote (test/helpers/remote-token/): owns one emulator module
 * (hsm/tokens/emulator/) and serves the calls a host-side client writes into the shared
 * frame area, one at a time, in the protocol of protocol.ts. Started by
 * pkcs11-boot.mjs in a worker thread with `TokenThreadData` as workerData; the thread sleeps
 * in `Atomics.wait` between calls and ends when the client stores CLOSING.
 *
 * Every request is decoded strictly: a malformed one is answered CKR_ARGUMENTS_BAD (with what is
 * wrong as the error's detail) and never reaches the module. The module's Pkcs11Error becomes an
 * error reply with its code, method and detail; anything else it throws, or a result that does
 * not encode or does not fit the frame area, is CKR_GENERAL_ERROR. Output buffers are allocated
 * here, capped at what a reply can carry.
 */
import * as P from '../../../enclave/api/pkcs11.ts';
import { EmulatorModule } from '../../../hsm/tokens/emulator/module.ts';
import {
  CTL_LENGTH,
  CTL_STATE,
  HEADER_BYTES,
  MAX_CAPACITY,
  MIN_CAPACITY,
  OutBuffer,
  ProtocolError,
  REPLY_RESERVE,
  STATE,
  decodeRequest,
  encodeError,
  encodeResult,
  requestSeq,
} from './protocol.ts';
import type { TokenThreadData, TokenThreadFaults } from './protocol.ts';

const EMULATOR_KEYS = ['storeFile', 'userPinMaxFailures', 'soPinMaxFailures', 'pinKdfIterations', 'revalidateMs', 'lockTimeoutMs', 'lockStaleMs', 'selfTestFault'];

function checkData(d: unknown): TokenThreadData {
  const data = d as TokenThreadData;
  if (!data || typeof data !== 'object') throw new Error('token thread: expected its start data');
  if (!(data.sab instanceof SharedArrayBuffer)) throw new Error('token thread: no SharedArrayBuffer');
  const cap = data.sab.byteLength - HEADER_BYTES;
  if (cap < MIN_CAPACITY || cap > MAX_CAPACITY) throw new Error(`token thread: frame area of ${cap} bytes out of ${MIN_CAPACITY}..${MAX_CAPACITY}`);
  if (!data.emulator || typeof data.emulator !== 'object') throw new Error('token thread: emulator options missing');
  for (const k of Object.keys(data.emulator)) if (!EMULATOR_KEYS.includes(k)) throw new Error(`token thread: unknown emulator option ${k}`);
  return data;
}

function describe(e: unknown): string {
  return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
}

/** One call: decode, run on the module, encode the reply. */
export class TokenServer {
  private readonly module: EmulatorModule;
  private readonly stall: Set<string>;
  /** Largest output buffer a reply can carry. */
  readonly outLimit: number;

  constructor(
    emulator: ConstructorParameters<typeof EmulatorModule>[0],
    readonly capacity: number,
    private readonly faults: TokenThreadFaults = {},
  ) {
    this.module = new EmulatorModule(emulator);
    this.stall = new Set(faults.stall ?? []);
    this.outLimit = capacity - REPLY_RESERVE;
  }

  /** The reply frame to a request frame, and the length to announce (a fault may lie about it). */
  handle(frame: Buffer): { reply: Buffer; length: number } {
    let req;
    try {
      req = decodeRequest(frame);
    } catch (e) {
      const method = (e as { method?: string }).method ?? '';
      const detail = e instanceof ProtocolError ? e.message : describe(e);
      return this.fit(encodeError(requestSeq(frame), P.CKR.CKR_ARGUMENTS_BAD, method, `malformed request: ${detail}`));
    }
    const { seq, spec } = req;
    if (this.stall.has(spec.name)) hang();
    const args = req.args.map((a) => (a instanceof OutBuffer ? Buffer.alloc(Math.min(a.length, this.outLimit)) : a));
    // Every handle C_FindObjects returns must fit the reply (it may return fewer than asked, v2.40 §5.7).
    if (spec.name === 'C_FindObjects' && typeof args[1] === 'number') args[1] = Math.min(args[1], Math.floor(this.outLimit / 12));
    let reply: Buffer;
    try {
      const fn = (this.module as unknown as Record<string, (...a: unknown[]) => unknown>)[spec.name]!;
      const value = fn.apply(this.module, args);
      try {
        reply = encodeResult(seq, spec, value);
      } catch (e) {
        reply = encodeError(seq, P.CKR.CKR_GENERAL_ERROR, spec.name, `result does not encode: ${describe(e)}`);
      }
    } catch (e) {
      if (e instanceof P.Pkcs11Error) {
        const detail = (e as { detail?: unknown }).detail;
        reply = encodeError(seq, e.code, e.method, typeof detail === 'string' ? detail : undefined);
      } else reply = encodeError(seq, P.CKR.CKR_GENERAL_ERROR, spec.name, describe(e));
    }
    const out = this.fit(reply, seq, spec.name);
    return this.garble(spec.name, out.reply);
  }

  private fit(reply: Buffer, seq = 0, method = ''): { reply: Buffer; length: number } {
    if (reply.length <= this.capacity) return { reply, length: reply.length };
    const e = encodeError(seq, P.CKR.CKR_GENERAL_ERROR, method, `reply of ${reply.length} bytes exceeds the ${this.capacity}-byte frame area`);
    return { reply: e, length: e.length };
  }

  /** Tests only: a reply spoiled as the faults ask. */
  private garble(name: string, reply: Buffer): { reply: Buffer; length: number } {
    const kind = this.faults.reply?.[name];
    const r = Buffer.from(reply);
    switch (kind) {
      case undefined:
        return { reply, length: reply.length };
      case 'truncate':
        return { reply: r.subarray(0, r.length - 3), length: r.length - 3 };
      case 'trailing':
        return { reply: Buffer.concat([r, Buffer.of(0)]), length: r.length + 1 };
      case 'overlength':
        return { reply: r, length: this.capacity + 1 };
      case 'status':
        r[1] = 7;
        return { reply: r, length: r.length };
      case 'seq':
        r.writeUInt32LE((r.readUInt32LE(2) + 1) >>> 0, 2);
        return { reply: r, length: r.length };
      case 'version':
        r[0] = 99;
        return { reply: r, length: r.length };
    }
  }
}

/** Tests only: a token thread that never answers (until the thread is terminated). */
function hang(): never {
  const never = new Int32Array(new SharedArrayBuffer(4));
  for (;;) Atomics.wait(never, 0, 0);
}

/** Serves the client until it stores CLOSING (then returns). Throws if the start data is bad. */
export function serveToken(d: unknown): void {
  const data = checkData(d);
  const ctl = new Int32Array(data.sab, 0, 4);
  const area = new Uint8Array(data.sab, HEADER_BYTES);
  const server = new TokenServer(data.emulator, area.length, data.faults);
  Atomics.store(ctl, CTL_STATE, STATE.IDLE);
  Atomics.notify(ctl, CTL_STATE);
  for (;;) {
    const state = Atomics.load(ctl, CTL_STATE);
    if (state === STATE.CLOSING) return;
    if (state !== STATE.REQUEST) {
      Atomics.wait(ctl, CTL_STATE, state);
      continue;
    }
    const len = Atomics.load(ctl, CTL_LENGTH);
    let out: { reply: Buffer; length: number };
    if (len < 0 || len > area.length) {
      const e = encodeError(0, P.CKR.CKR_ARGUMENTS_BAD, '', `malformed request: frame length ${len} exceeds the ${area.length}-byte frame area`);
      out = { reply: e, length: e.length };
    } else out = server.handle(Buffer.from(area.subarray(0, len)));
    area.set(out.reply.subarray(0, area.length));
    Atomics.store(ctl, CTL_LENGTH, out.length);
    Atomics.store(ctl, CTL_STATE, STATE.RESPONSE);
    Atomics.notify(ctl, CTL_STATE);
  }
}
