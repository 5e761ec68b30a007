/**
 * The PKCS#11 remote's wire protocol: how a `Pkcs11` call (enclave/api/pkcs11.ts) crosses from a
 * host-side client (client.ts) to the token thread (pkcs11-server.ts) and back, as bytes in
 * one SharedArrayBuffer. Nothing else crosses: the host holds no reference to token objects.
 *
 * Shared memory: a 16-byte header of four Int32 words, then the frame area (`capacity` bytes):
 *   word 0  state: BOOTING -> IDLE, then IDLE -> REQUEST (client) -> RESPONSE (token) -> IDLE
 *           (client); CLOSING (client) ends the thread; FAILED (token) means it did not boot
 *           (the frame area holds the reason, UTF-8);
 *   word 1  length of the frame in the frame area.
 * The client writes a request frame, stores REQUEST and `Atomics.notify`s; the token thread,
 * asleep in `Atomics.wait`, answers with a response frame and RESPONSE; the client blocks in
 * `Atomics.wait` until then, or until its timeout (CKR_DEVICE_ERROR).
 *
 * Frames (all integers little-endian):
 *   request   u8 version (1) | u8 call id (CALLS index + 1) | u32 seq | the call's arguments
 *   response  u8 version | u8 status (0 ok, 1 error) | u32 seq (the request's) |
 *             ok: the call's result; error: u32 CKR_ code | str method | opt str detail
 * Values, each by the codec its call declares (no self-description, so nothing unexpected decodes):
 *   num f64 | bool u8 0/1 | bytes u32 length + bytes | str u32 length + UTF-8 (strict) |
 *   opt u8 0 absent / 1 present + value | array u32 count + items | record: its fields in order |
 *   attribute value u8 kind (0 absent: undefined or null, 1 bool, 2 num, 3 str, 4 bytes) + value |
 *   mechanism num + u8 parameter kind (0 absent, 1 null, 2 bytes, 3 num, 4 struct: u8 field
 *   bitmask, then the present fields of type, iv, aad, ivBits, tagBits, kdf, sharedData, publicData) |
 *   output buffer: u32 length only (the token thread allocates it; the filled part comes back as bytes).
 * Decoding is strict: an unknown version, call, kind or flag, a length past the end, trailing
 * bytes, invalid UTF-8 are a ProtocolError: CKR_ARGUMENTS_BAD for a request (answered by the token
 * thread), CKR_GENERAL_ERROR for a response (thrown by the client). A frame larger than the frame
 * area is refused before it is sent (request: CKR_ARGUMENTS_BAD) or replaced by an error (reply:
 * CKR_GENERAL_ERROR). Output buffers are capped by the token thread at what a reply can carry, so
 * an over-large result is the module's own CKR_BUFFER_TOO_SMALL and the operation stays active.
 */
import * as P from '../../../enclave/api/pkcs11.ts';

export const PROTOCOL_VERSION = 1;

// ---- shared memory ----
export const HEADER_BYTES = 16;
export const CTL_STATE = 0;
export const CTL_LENGTH = 1;
export const STATE = { BOOTING: 0, IDLE: 1, REQUEST: 2, RESPONSE: 3, CLOSING: 4, FAILED: 5 } as const;
/** Frame area size: default, and the limits a remote accepts. */
export const DEFAULT_CAPACITY = 1 << 20;
export const MIN_CAPACITY = 4096;
export const MAX_CAPACITY = 64 << 20;
/** Room a reply needs beside an output buffer's bytes (header, length, slack). */
export const REPLY_RESERVE = 64;
/** Longest error detail carried in a reply (longer ones are cut). */
export const MAX_DETAIL = 1024;

/** Test hooks of the token thread: it never answers these calls, or garbles their replies. */
export interface TokenThreadFaults {
  stall?: string[];
  reply?: Record<string, 'truncate' | 'trailing' | 'overlength' | 'status' | 'seq' | 'version'>;
}

/** The emulator's options as plain data (hsm/tokens/emulator EmulatorOptions). */
export interface RemoteEmulatorOptions {
  storeFile?: string | null;
  userPinMaxFailures?: number;
  soPinMaxFailures?: number;
  pinKdfIterations?: number;
  revalidateMs?: number;
  lockTimeoutMs?: number;
  lockStaleMs?: number;
  selfTestFault?: string;
}

/** What the client hands the token thread at start (workerData). */
export interface TokenThreadData {
  sab: SharedArrayBuffer;
  emulator: RemoteEmulatorOptions;
  faults?: TokenThreadFaults;
}

/** A malformed frame. */
export class ProtocolError extends Error {
  override readonly name = 'ProtocolError';
}

// ---- byte writer and reader ----
export class Writer {
  private buf = Buffer.allocUnsafe(256);
  private n = 0;

  private room(k: number): void {
    if (this.n + k <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.n + k) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.n);
    this.buf = next;
  }
  u8(v: number): void {
    this.room(1);
    this.buf[this.n++] = v;
  }
  u32(v: number): void {
    this.room(4);
    this.buf.writeUInt32LE(v, this.n);
    this.n += 4;
  }
  f64(v: number): void {
    this.room(8);
    this.buf.writeDoubleLE(v, this.n);
    this.n += 8;
  }
  u64(v: bigint): void {
    this.room(8);
    this.buf.writeBigUInt64LE(v, this.n);
    this.n += 8;
  }
  bytes(v: Uint8Array): void {
    this.u32(v.length);
    this.room(v.length);
    this.buf.set(v, this.n);
    this.n += v.length;
  }
  str(v: string): void {
    const len = Buffer.byteLength(v, 'utf8');
    this.u32(len);
    this.room(len);
    this.buf.write(v, this.n, len, 'utf8');
    this.n += len;
  }
  /** The frame written so far (a view: copy before writing more). */
  finish(): Buffer {
    return this.buf.subarray(0, this.n);
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

export class Reader {
  private off = 0;
  constructor(private readonly buf: Buffer) {}

  get remaining(): number {
    return this.buf.length - this.off;
  }
  private need(k: number): void {
    if (k > this.remaining) throw new ProtocolError('truncated frame');
  }
  u8(): number {
    this.need(1);
    return this.buf[this.off++]!;
  }
  u32(): number {
    this.need(4);
    const v = this.buf.readUInt32LE(this.off);
    this.off += 4;
    return v;
  }
  f64(): number {
    this.need(8);
    const v = this.buf.readDoubleLE(this.off);
    this.off += 8;
    return v;
  }
  u64(): bigint {
    this.need(8);
    const v = this.buf.readBigUInt64LE(this.off);
    this.off += 8;
    return v;
  }
  flag(what: string): boolean {
    const v = this.u8();
    if (v > 1) throw new ProtocolError(`bad ${what} flag ${v}`);
    return v === 1;
  }
  bytes(): Buffer {
    const len = this.u32();
    this.need(len);
    const v = Buffer.from(this.buf.subarray(this.off, this.off + len));
    this.off += len;
    return v;
  }
  str(): string {
    const len = this.u32();
    this.need(len);
    let v: string;
    try {
      v = utf8.decode(this.buf.subarray(this.off, this.off + len));
    } catch {
      throw new ProtocolError('invalid UTF-8 in a string');
    }
    this.off += len;
    return v;
  }
  /** An item count, refused when the items could not fit in what is left (each `min` bytes at least). */
  count(min: number): number {
    const n = this.u32();
    if (n * min > this.remaining) throw new ProtocolError('truncated frame');
    return n;
  }
  end(): void {
    if (this.remaining !== 0) throw new ProtocolError(`${this.remaining} trailing bytes`);
  }
}

// ---- codecs ----
/** How one value is written (a TypeError for a JS value it can not carry) and read (strictly). */
export interface Codec<T = unknown> {
  enc(w: Writer, v: unknown, at: string): void;
  dec(r: Reader): T;
}

const isBytes = (v: unknown): v is Uint8Array => v instanceof Uint8Array;

export const num: Codec<number> = {
  enc(w, v, at) {
    if (typeof v !== 'number') throw new TypeError(`${at}: expected a number`);
    w.f64(v);
  },
  dec: (r) => r.f64(),
};

export const bool: Codec<boolean> = {
  enc(w, v, at) {
    if (typeof v !== 'boolean') throw new TypeError(`${at}: expected a boolean`);
    w.u8(v ? 1 : 0);
  },
  dec: (r) => r.flag('boolean'),
};

export const bytes: Codec<Buffer> = {
  enc(w, v, at) {
    if (!isBytes(v)) throw new TypeError(`${at}: expected a Buffer`);
    w.bytes(v);
  },
  dec: (r) => r.bytes(),
};

export const str: Codec<string> = {
  enc(w, v, at) {
    if (typeof v !== 'string') throw new TypeError(`${at}: expected a string`);
    w.str(v);
  },
  dec: (r) => r.str(),
};

/** A handle as a result: exactly 8 bytes. */
export const handle: Codec<P.Handle> = {
  enc: bytes.enc,
  dec(r) {
    const h = r.bytes();
    if (h.length !== 8) throw new ProtocolError(`a handle of ${h.length} bytes`);
    return h;
  },
};

export const none: Codec<void> = { enc() {}, dec() {} };

export function opt<T>(c: Codec<T>): Codec<T | undefined> {
  return {
    enc(w, v, at) {
      if (v === undefined) w.u8(0);
      else {
        w.u8(1);
        c.enc(w, v, at);
      }
    },
    dec: (r) => (r.flag('presence') ? c.dec(r) : undefined),
  };
}

export function array<T>(c: Codec<T>, minItemBytes: number): Codec<T[]> {
  return {
    enc(w, v, at) {
      if (!Array.isArray(v)) throw new TypeError(`${at}: expected an array`);
      w.u32(v.length);
      v.forEach((x, i) => c.enc(w, x, `${at}[${i}]`));
    },
    dec(r) {
      const n = r.count(minItemBytes);
      const out: T[] = [];
      for (let i = 0; i < n; i++) out.push(c.dec(r));
      return out;
    },
  };
}

type Fields = readonly (readonly [string, Codec])[];

/** A record of fixed fields in a fixed order (other properties of the value are not carried). */
export function record<T>(fields: Fields): Codec<T> {
  return {
    enc(w, v, at) {
      if (typeof v !== 'object' || v === null) throw new TypeError(`${at}: expected an object`);
      for (const [k, c] of fields) c.enc(w, (v as Record<string, unknown>)[k], `${at}.${k}`);
    },
    dec(r) {
      const out: Record<string, unknown> = {};
      for (const [k, c] of fields) out[k] = c.dec(r);
      return out as T;
    },
  };
}

/** CK_ULONG-sized counters that may be a bigint (CK_UNAVAILABLE_INFORMATION). */
export const numOrBig: Codec<number | bigint> = {
  enc(w, v, at) {
    if (typeof v === 'number') {
      w.u8(0);
      w.f64(v);
    } else if (typeof v === 'bigint' && v >= 0n && v < 1n << 64n) {
      w.u8(1);
      w.u64(v);
    } else throw new TypeError(`${at}: expected a number or a 64-bit bigint`);
  },
  dec(r) {
    const k = r.u8();
    if (k === 0) return r.f64();
    if (k === 1) return r.u64();
    throw new ProtocolError(`bad number kind ${k}`);
  },
};

/** An attribute's value; null is no value, as pkcs11js takes it (graphene asks `{ value: null }`). */
export const attrValue: Codec<P.Attribute['value']> = {
  enc(w, v, at) {
    if (v === undefined || v === null) w.u8(0);
    else if (typeof v === 'boolean') {
      w.u8(1);
      w.u8(v ? 1 : 0);
    } else if (typeof v === 'number') {
      w.u8(2);
      w.f64(v);
    } else if (typeof v === 'string') {
      w.u8(3);
      w.str(v);
    } else if (isBytes(v)) {
      w.u8(4);
      w.bytes(v);
    } else throw new TypeError(`${at}: attribute value must be a number, boolean, string or Buffer`);
  },
  dec(r) {
    const k = r.u8();
    switch (k) {
      case 0:
        return undefined;
      case 1:
        return r.flag('boolean');
      case 2:
        return r.f64();
      case 3:
        return r.str();
      case 4:
        return r.bytes();
      default:
        throw new ProtocolError(`bad attribute value kind ${k}`);
    }
  },
};

export const attribute: Codec<P.Attribute> = {
  enc(w, v, at) {
    if (typeof v !== 'object' || v === null) throw new TypeError(`${at}: expected an attribute { type, value }`);
    const a = v as P.Attribute;
    num.enc(w, a.type, `${at}.type`);
    attrValue.enc(w, a.value, `${at}.value`);
  },
  dec(r) {
    const type = r.f64();
    const value = attrValue.dec(r);
    return value === undefined ? { type } : { type, value };
  },
};

export const template = array(attribute, 9);

/** The structured mechanism parameter fields, in bitmask order. */
const PARAM_FIELDS: readonly (readonly [string, Codec])[] = [
  ['type', num],
  ['iv', bytes],
  ['aad', bytes],
  ['ivBits', num],
  ['tagBits', num],
  ['kdf', num],
  ['sharedData', bytes],
  ['publicData', bytes],
];

export const mechanism: Codec<P.Mechanism> = {
  enc(w, v, at) {
    if (typeof v !== 'object' || v === null) throw new TypeError(`${at}: expected a mechanism { mechanism, parameter }`);
    const m = v as P.Mechanism;
    num.enc(w, m.mechanism, `${at}.mechanism`);
    const p = m.parameter as unknown;
    if (p === undefined) w.u8(0);
    else if (p === null) w.u8(1);
    else if (isBytes(p)) {
      w.u8(2);
      w.bytes(p);
    } else if (typeof p === 'number') {
      w.u8(3);
      w.f64(p);
    } else if (typeof p === 'object') {
      w.u8(4);
      const o = p as Record<string, unknown>;
      let mask = 0;
      PARAM_FIELDS.forEach(([k], i) => {
        if (o[k] !== undefined && o[k] !== null) mask |= 1 << i;
      });
      w.u8(mask);
      PARAM_FIELDS.forEach(([k, c], i) => {
        if (mask & (1 << i)) c.enc(w, o[k], `${at}.parameter.${k}`);
      });
    } else throw new TypeError(`${at}.parameter: expected a Buffer, a number or a parameter object`);
  },
  dec(r) {
    const mechanism = r.f64();
    const k = r.u8();
    switch (k) {
      case 0:
        return { mechanism };
      case 1:
        return { mechanism, parameter: null as unknown as undefined };
      case 2:
        return { mechanism, parameter: r.bytes() };
      case 3:
        return { mechanism, parameter: r.f64() };
      case 4: {
        const mask = r.u8();
        const o: Record<string, unknown> = {};
        PARAM_FIELDS.forEach(([f, c], i) => {
          if (mask & (1 << i)) o[f] = c.dec(r);
        });
        return { mechanism, parameter: o as unknown as P.Mechanism['parameter'] };
      }
      default:
        throw new ProtocolError(`bad mechanism parameter kind ${k}`);
    }
  },
};

export const initOptions: Codec<P.InitializationOptions> = {
  enc(w, v, at) {
    if (typeof v !== 'object' || v === null) throw new TypeError(`${at}: expected initialization options`);
    const o = v as P.InitializationOptions;
    opt(str).enc(w, o.libraryParameters, `${at}.libraryParameters`);
    opt(num).enc(w, o.flags, `${at}.flags`);
  },
  dec(r) {
    const out: P.InitializationOptions = {};
    const lp = opt(str).dec(r);
    const flags = opt(num).dec(r);
    if (lp !== undefined) out.libraryParameters = lp;
    if (flags !== undefined) out.flags = flags;
    return out;
  },
};

/** An output buffer: only its length crosses. */
export class OutBuffer {
  constructor(readonly length: number) {}
}

export const outBuffer: Codec<OutBuffer> = {
  enc(w, v, at) {
    if (!isBytes(v)) throw new TypeError(`${at}: expected an output Buffer`);
    w.u32(v.length);
  },
  dec: (r) => new OutBuffer(r.u32()),
};

/** C_FindObjects's result: null, one handle, or a list. */
export const findResult: Codec<P.Handle | null | P.Handle[]> = {
  enc(w, v, at) {
    if (v === null) w.u8(0);
    else if (isBytes(v)) {
      w.u8(1);
      handle.enc(w, v, at);
    } else {
      w.u8(2);
      array(handle, 12).enc(w, v, at);
    }
  },
  dec(r) {
    const k = r.u8();
    if (k === 0) return null;
    if (k === 1) return handle.dec(r);
    if (k === 2) return array(handle, 12).dec(r);
    throw new ProtocolError(`bad find result kind ${k}`);
  },
};

const version = record<P.Version>([
  ['major', num],
  ['minor', num],
]);
const moduleInfo = record<P.ModuleInfo>([
  ['cryptokiVersion', version],
  ['manufacturerID', str],
  ['flags', num],
  ['libraryDescription', str],
  ['libraryVersion', version],
]);
const slotInfo = record<P.SlotInfo>([
  ['slotDescription', str],
  ['manufacturerID', str],
  ['flags', num],
  ['hardwareVersion', version],
  ['firmwareVersion', version],
]);
const tokenInfo = record<P.TokenInfo>([
  ['label', str],
  ['manufacturerID', str],
  ['model', str],
  ['serialNumber', str],
  ['flags', num],
  ['maxSessionCount', num],
  ['sessionCount', num],
  ['maxRwSessionCount', num],
  ['rwSessionCount', num],
  ['maxPinLen', num],
  ['minPinLen', num],
  ['hardwareVersion', version],
  ['firmwareVersion', version],
  ['utcTime', str],
  ['totalPublicMemory', numOrBig],
  ['freePublicMemory', numOrBig],
  ['totalPrivateMemory', numOrBig],
  ['freePrivateMemory', numOrBig],
]);
const mechanismInfo = record<P.MechanismInfo>([
  ['minKeySize', num],
  ['maxKeySize', num],
  ['flags', num],
]);
const sessionInfo = record<P.SessionInfo>([
  ['slotID', handle],
  ['state', num],
  ['flags', num],
  ['deviceError', num],
]);
const keyPair = record<P.KeyPair>([
  ['privateKey', handle],
  ['publicKey', handle],
]);
const attributeResult = record<P.AttributeResult>([
  ['type', num],
  ['value', bytes],
]);

// ---- the calls ----
export type CallName = keyof P.Pkcs11;

export interface CallSpec {
  name: CallName;
  id: number;
  args: readonly Codec[];
  result: Codec;
  /** Index of the output-buffer argument: the result is the filled part of it. */
  out?: number;
}

const h = bytes; // a handle argument: any bytes (the module judges them, as it does directly)
const data = opt(bytes); // an input buffer: the module judges empty or missing ones
const pin = opt(str);

/** Every `Pkcs11` call: its argument codecs, result codec and output-buffer argument; ids follow this order. */
const TABLE: { readonly [K in keyof P.Pkcs11]: readonly [readonly Codec[], Codec, number?] } = {
  C_Initialize: [[opt(initOptions)], none],
  C_Finalize: [[], none],
  C_GetInfo: [[], moduleInfo],
  C_GetSlotList: [[opt(bool)], array(handle, 12)],
  C_GetSlotInfo: [[h], slotInfo],
  C_GetTokenInfo: [[h], tokenInfo],
  C_GetMechanismList: [[h], array(num, 8)],
  C_GetMechanismInfo: [[h, num], mechanismInfo],
  C_InitToken: [[h, pin, opt(str)], opt(str)],
  C_InitPIN: [[h, pin], none],
  C_SetPIN: [[h, pin, pin], none],
  C_OpenSession: [[h, num], handle],
  C_CloseSession: [[h], none],
  C_CloseAllSessions: [[h], none],
  C_GetSessionInfo: [[h], sessionInfo],
  C_Login: [[h, num, pin], none],
  C_Logout: [[h], none],
  C_CreateObject: [[h, template], handle],
  C_CopyObject: [[h, h, template], handle],
  C_DestroyObject: [[h, h], none],
  C_GetAttributeValue: [[h, h, template], array(attributeResult, 12)],
  C_SetAttributeValue: [[h, h, template], none],
  C_FindObjectsInit: [[h, template], none],
  C_FindObjects: [[h, opt(num)], findResult],
  C_FindObjectsFinal: [[h], none],
  C_EncryptInit: [[h, mechanism, h], none],
  C_Encrypt: [[h, data, outBuffer], bytes, 2],
  C_EncryptUpdate: [[h, data, outBuffer], bytes, 2],
  C_EncryptFinal: [[h, outBuffer], bytes, 1],
  C_DecryptInit: [[h, mechanism, h], none],
  C_Decrypt: [[h, data, outBuffer], bytes, 2],
  C_DecryptUpdate: [[h, data, outBuffer], bytes, 2],
  C_DecryptFinal: [[h, outBuffer], bytes, 1],
  C_SignInit: [[h, mechanism, h], none],
  C_Sign: [[h, data, outBuffer], bytes, 2],
  C_SignUpdate: [[h, data], none],
  C_SignFinal: [[h, outBuffer], bytes, 1],
  C_VerifyInit: [[h, mechanism, h], none],
  C_Verify: [[h, data, data], bool],
  C_VerifyUpdate: [[h, data], none],
  C_VerifyFinal: [[h, data], bool],
  C_GenerateKey: [[h, mechanism, template], handle],
  C_GenerateKeyPair: [[h, mechanism, template, template], keyPair],
  C_WrapKey: [[h, mechanism, h, h, outBuffer], bytes, 4],
  C_UnwrapKey: [[h, mechanism, h, data, template], handle],
  C_DeriveKey: [[h, mechanism, h, template], handle],
  C_GenerateRandom: [[h, outBuffer], bytes, 1],
};

export const CALLS: readonly CallSpec[] = Object.entries(TABLE).map(([name, [args, result, out]], i) => ({ name: name as CallName, id: i + 1, args, result, ...(out !== undefined && { out }) }));
const BY_NAME = new Map<string, CallSpec>(CALLS.map((c) => [c.name, c]));

export function callSpec(name: string): CallSpec | undefined {
  return BY_NAME.get(name);
}

// ---- frames ----
/** A writer holding a frame's head: the version, `kind` (a request's call id, a response's status), `seq`. */
function frameWriter(kind: number, seq: number): Writer {
  const w = new Writer();
  w.u8(PROTOCOL_VERSION);
  w.u8(kind);
  w.u32(seq >>> 0);
  return w;
}

/** A reader past a frame's version, which must be this protocol's. */
function frameReader(frame: Buffer): Reader {
  const r = new Reader(frame);
  const v = r.u8();
  if (v !== PROTOCOL_VERSION) throw new ProtocolError(`unsupported protocol version ${v}`);
  return r;
}

export function encodeRequest(seq: number, spec: CallSpec, args: readonly unknown[]): Buffer {
  const w = frameWriter(spec.id, seq);
  spec.args.forEach((c, i) => c.enc(w, args[i], `${spec.name} argument ${i + 1}`));
  return w.finish();
}

export interface Request {
  seq: number;
  spec: CallSpec;
  args: unknown[];
}

/** Decodes a request; a ProtocolError names what is wrong and carries what could be read. */
export function decodeRequest(frame: Buffer): Request {
  const r = frameReader(frame);
  const id = r.u8();
  const seq = r.u32();
  const spec = CALLS[id - 1];
  if (!spec) throw Object.assign(new ProtocolError(`unknown call ${id}`), { seq });
  try {
    const args = spec.args.map((c) => c.dec(r));
    r.end();
    return { seq, spec, args };
  } catch (e) {
    throw Object.assign(e as Error, { seq, method: spec.name });
  }
}

/** The seq of a request frame as far as it can be read (0 when it can not). */
export function requestSeq(frame: Buffer): number {
  return frame.length >= 6 ? frame.readUInt32LE(2) : 0;
}

export function encodeResult(seq: number, spec: CallSpec, value: unknown): Buffer {
  const w = frameWriter(0, seq);
  spec.result.enc(w, value, `${spec.name} result`);
  return w.finish();
}

export function encodeError(seq: number, code: number, method: string, detail?: string): Buffer {
  const w = frameWriter(1, seq);
  w.u32(Number.isInteger(code) && code >= 0 && code <= 0xffffffff ? code : P.CKR.CKR_GENERAL_ERROR);
  w.str(method.slice(0, 64));
  opt(str).enc(w, detail === undefined ? undefined : detail.slice(0, MAX_DETAIL), 'detail');
  return w.finish();
}

export type Response = { ok: true; value: unknown } | { ok: false; code: number; method: string; detail?: string };

/** Decodes the response to request `seq` of `spec` (a ProtocolError if it is not one). */
export function decodeResponse(frame: Buffer, spec: CallSpec, seq: number): Response {
  const r = frameReader(frame);
  const status = r.u8();
  const got = r.u32();
  if (got !== seq >>> 0) throw new ProtocolError(`reply to request ${got}, expected ${seq >>> 0}`);
  if (status === 0) {
    const value = spec.result.dec(r);
    r.end();
    return { ok: true, value };
  }
  if (status === 1) {
    const code = r.u32();
    const method = r.str();
    const detail = opt(str).dec(r);
    r.end();
    return detail === undefined ? { ok: false, code, method } : { ok: false, code, method, detail };
  }
  throw new ProtocolError(`bad reply status ${status}`);
}

/** The Pkcs11Error for an error reply or a local failure (with its detail, as the emulator attaches one). */
export function pkcs11Error(code: number, method: string, detail?: string): P.Pkcs11Error {
  const e = new P.Pkcs11Error(code, method);
  if (detail !== undefined) Object.assign(e, { detail });
  return e;
}
