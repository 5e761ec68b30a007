/**
 * The p11-kit RPC message codec, protocol version 0 (p11-kit 0.24.1 rpc-message.c and
 * rpc-server.c `proto_read_*` / `proto_write_*`): numbers are big-endian; CK_ULONG is 8 bytes;
 * a byte array is a 4-byte length and its bytes, length 0xffffffff meaning NULL.
 *
 * The reader is strict and bounded: every length and count is checked against the bytes that
 * remain (and the server's own limits) before anything is sliced or allocated; a flag byte must
 * be 0 or 1; the message must end exactly after its last field. A refusal is a P11KitError.
 * Values are never copied into the error.
 */
import { P11KitError, P11KitErrorCode as E } from './errors.ts';
import { CALL_ERROR, RPC_CALL_MAX, RPC_CALLS } from './calls.ts';
import type { RpcCall } from './calls.ts';

/** A byte array's NULL marker (rpc-message.c `p11_rpc_buffer_add_byte_array`). */
const NULL_LENGTH = 0xffffffff;
/** The longest array either side may send (rpc-message.c refuses 0x7fffffff and above). */
const MAX_ARRAY = 0x7ffffffe;

/** Limits on what one message may ask of the server (each checked before use). */
export interface CodecLimits {
  /** Attributes in one template. */
  maxTemplate: number;
  /** Bytes of output the server produces for one `fy` buffer. */
  maxOutput: number;
}

export const DEFAULT_CODEC_LIMITS: CodecLimits = { maxTemplate: 256, maxOutput: 1 << 20 };

export class RpcReader {
  private off = 0;
  /** What is left of the call's signature to read. */
  private sig: string;
  readonly call: RpcCall;

  /**
   * Parses a message's call id and signature (rpc-message.c `p11_rpc_message_parse`): an id
   * outside the table (or, in a request, the error id) and a signature other than the call's
   * are refused. The server reads requests; `response` is for clients (tests).
   */
  constructor(
    private readonly buf: Buffer,
    kind: 'request' | 'response' = 'request',
  ) {
    const id = this.u32();
    if ((kind === 'request' && id === CALL_ERROR) || id >= RPC_CALL_MAX) throw new P11KitError(E.UnknownCall, `unknown call id ${id}`);
    this.call = RPC_CALLS[id]!;
    const expected = kind === 'request' ? this.call.request : this.call.response;
    const sig = this.rawArray();
    if (sig === null || sig.toString('latin1') !== expected) throw new P11KitError(E.BadSignature, `${this.call.name}: wrong signature`);
    this.sig = expected;
  }

  /** The part of the signature about to be read must be `part` (a programming error otherwise). */
  private expect(part: string): void {
    if (!this.sig.startsWith(part)) throw new Error(`${this.call.name}: read ${part} where the signature has ${this.sig || 'nothing'}`);
    this.sig = this.sig.slice(part.length);
  }

  private need(n: number): void {
    if (n > this.buf.length - this.off) throw new P11KitError(E.Truncated, `${this.call?.name ?? 'message'}: truncated`);
  }

  private u8(): number {
    this.need(1);
    return this.buf[this.off++]!;
  }

  private u32(): number {
    this.need(4);
    const v = this.buf.readUInt32BE(this.off);
    this.off += 4;
    return v;
  }

  private u64(): bigint {
    this.need(8);
    const v = this.buf.readBigUInt64BE(this.off);
    this.off += 8;
    return v;
  }

  /** A flag byte: 0 or 1, nothing else. */
  private flag(): boolean {
    const f = this.u8();
    if (f > 1) throw new P11KitError(E.InvalidValue, `${this.call.name}: flag byte ${f}`);
    return f === 1;
  }

  /** A length-prefixed array (a view into the message), or null for the NULL marker. */
  private rawArray(): Buffer | null {
    const len = this.u32();
    if (len === NULL_LENGTH) return null;
    if (len > MAX_ARRAY) throw new P11KitError(E.TooLong, 'array too long');
    this.need(len);
    const v = this.buf.subarray(this.off, this.off + len);
    this.off += len;
    return v;
  }

  /** The bytes left unread. */
  get remaining(): number {
    return this.buf.length - this.off;
  }

  byte(): number {
    this.expect('y');
    return this.u8();
  }

  ulong(): bigint {
    this.expect('u');
    return this.u64();
  }

  /** `v`: a CK_VERSION. */
  version(): { major: number; minor: number } {
    this.expect('v');
    return { major: this.u8(), minor: this.u8() };
  }

  /** `s`: a blank-padded string, as sent. */
  spaceString(): string {
    this.expect('s');
    return (this.rawArray() ?? Buffer.alloc(0)).toString('utf8');
  }

  /** `au`: the values, or (presence byte 0) null and the count. */
  ulongArray(): { values: bigint[] | null; count: number } {
    this.expect('au');
    const present = this.flag();
    const n = this.u32();
    if (!present) return { values: null, count: n };
    if (n * 8 > this.remaining) throw new P11KitError(E.TooLong, `${this.call.name}: ${n} values`);
    const values: bigint[] = [];
    for (let i = 0; i < n; i++) values.push(this.u64());
    return { values, count: n };
  }

  /** `ay`: the bytes, or (presence byte 0) null and the length the caller named. */
  byteArray(): { data: Buffer | null; length: number } {
    this.expect('ay');
    if (!this.flag()) return { data: null, length: this.u32() };
    const data = this.rawArray();
    return { data, length: data?.length ?? 0 };
  }

  /** `ay` that must hold bytes (a PIN, data to encrypt): NULL reads as empty. */
  bytes(): Buffer {
    const { data } = this.byteArray();
    return data ?? Buffer.alloc(0);
  }

  /**
   * `fy`: the size of the caller's output buffer. 0 asks for the length only; 0xffffffff is a
   * buffer of length 0 (rpc-server.c `proto_read_byte_buffer`). Nothing is allocated here.
   */
  outputSize(): { size: number; query: boolean } {
    this.expect('fy');
    const n = this.u32();
    if (n === NULL_LENGTH) return { size: 0, query: false };
    return { size: n, query: n === 0 };
  }

  /** `fu`: how many CK_ULONGs the caller has room for (0: the count only). */
  ulongBufferSize(): number {
    this.expect('fu');
    return this.u32();
  }

  /** `z`: a string sent without its NUL. */
  string(): Buffer {
    this.expect('z');
    return this.rawArray() ?? Buffer.alloc(0);
  }

  /** `aA`: a template with values (rpc-server.c `proto_read_attribute_array`). */
  template(limits: CodecLimits): WireAttribute[] {
    this.expect('aA');
    const n = this.count(limits.maxTemplate, 5);
    const out: WireAttribute[] = [];
    for (let i = 0; i < n; i++) out.push(this.attribute());
    return out;
  }

  /** `fA`: attribute types with the caller's buffer size for each (0: the length only). */
  attributeBuffers(limits: CodecLimits): { type: number; size: number }[] {
    this.expect('fA');
    const n = this.count(limits.maxTemplate, 8);
    const out: { type: number; size: number }[] = [];
    for (let i = 0; i < n; i++) {
      const type = this.u32();
      const size = this.u32();
      // A nested template's buffer (rpc-message.c writes its members after it): not accepted here.
      if (valueKind(type) === 'template' && size > 0) throw new P11KitError(E.InvalidValue, `${this.call.name}: nested template buffer`);
      out.push({ type, size });
    }
    return out;
  }

  /** A count, bounded by the server's limit and by the bytes left (each item takes at least `minBytes`). */
  private count(max: number, minBytes: number): number {
    const n = this.u32();
    if (n > max || n * minBytes > this.remaining) throw new P11KitError(E.TooLong, `${this.call.name}: ${n} items`);
    return n;
  }

  /** One attribute (rpc-message.c `p11_rpc_buffer_get_attribute`), its value by its type's kind. */
  private attribute(): WireAttribute {
    const type = this.u32();
    if (!this.flag()) return { type, value: null };
    const declared = this.u32();
    const kind = valueKind(type);
    let value: Buffer;
    switch (kind) {
      case 'byte':
        value = Buffer.of(this.u8());
        break;
      case 'ulong': {
        value = Buffer.alloc(8);
        value.writeBigUInt64LE(this.u64());
        break;
      }
      case 'mechanisms': {
        const n = this.count(this.remaining >>> 3, 8);
        value = Buffer.alloc(n * 8);
        for (let i = 0; i < n; i++) value.writeBigUInt64LE(this.u64(), i * 8);
        break;
      }
      case 'date': {
        value = this.rawArray() ?? Buffer.alloc(0);
        if (value.length !== 0 && value.length !== 8) throw new P11KitError(E.InvalidValue, `${this.call.name}: date of ${value.length} bytes`);
        break;
      }
      case 'template':
        // rpc-server.c: "recursive attribute array is not supported".
        throw new P11KitError(E.InvalidValue, `${this.call.name}: nested template`);
      case 'bytes':
        value = this.rawArray() ?? Buffer.alloc(0);
        break;
    }
    // The caller's declared length covers what was sent (rpc-message.c: `length < decode_length` fails).
    if (declared < value.length) throw new P11KitError(E.InvalidValue, `${this.call.name}: attribute 0x${type.toString(16)} longer than declared`);
    return { type, value: declared === 0 ? Buffer.alloc(0) : value };
  }

  /** `M`: a mechanism and its parameter (rpc-message.c `p11_rpc_buffer_get_mechanism`, version 0). */
  mechanism(): WireMechanism {
    this.expect('M');
    const type = this.u32();
    const shape = PARAM_SHAPES.get(type);
    if (shape === 'gcm') {
      const iv = this.rawArray();
      const ivBits = this.u64();
      const aad = this.rawArray();
      const tagBits = this.u64();
      return { type, param: { kind: 'gcm', iv: iv ?? Buffer.alloc(0), ivBits, aad: aad ?? Buffer.alloc(0), tagBits } };
    }
    if (shape === 'ecdh') {
      const kdf = this.u64();
      const shared = this.rawArray();
      const pub = this.rawArray();
      return { type, param: { kind: 'ecdh', kdf, sharedData: shared, publicData: pub ?? Buffer.alloc(0) } };
    }
    if (shape !== undefined) {
      // A parameter this server reads only to step over it: the mechanism is refused.
      for (const part of shape) {
        if (part === 'u') this.u64();
        else this.rawArray();
      }
      return { type, param: { kind: 'unsupported' } };
    }
    const raw = this.rawArray();
    return { type, param: raw === null ? null : { kind: 'bytes', bytes: raw } };
  }

  /** The message ends here: trailing bytes are refused, and every field was read. */
  end(): void {
    if (this.off !== this.buf.length) throw new P11KitError(E.TrailingBytes, `${this.call.name}: ${this.buf.length - this.off} bytes after the last field`);
    if (this.sig !== '') throw new Error(`${this.call.name}: ${this.sig} left unread`);
  }
}

/** An attribute from the wire: its raw value (CK_ULONG as 8 bytes little-endian, as pkcs11js encodes it), or null when absent. */
export interface WireAttribute {
  type: number;
  value: Buffer | null;
}

export type WireParam =
  | null
  | { kind: 'bytes'; bytes: Buffer }
  | { kind: 'gcm'; iv: Buffer; ivBits: bigint; aad: Buffer; tagBits: bigint }
  | { kind: 'ecdh'; kdf: bigint; sharedData: Buffer | null; publicData: Buffer }
  | { kind: 'unsupported' };

export interface WireMechanism {
  type: number;
  param: WireParam;
}

// ---- attribute value kinds (rpc-message.c `map_attribute_to_value_type`) ----

export type ValueKind = 'byte' | 'ulong' | 'template' | 'mechanisms' | 'date' | 'bytes';

// CK_BBOOL attributes (PKCS#11 v2.40 §4; CKA_SECONDARY_AUTH 0x200, CKA_RESET_ON_INIT 0x301,
// CKA_HAS_RESET 0x302, CKA_COLOR 0x405 included as p11-kit lists them).
const BYTE_TYPES = [0x1, 0x2, 0x86, 0x103, 0x104, 0x105, 0x106, 0x107, 0x108, 0x109, 0x10a, 0x10b, 0x10c, 0x162, 0x163, 0x164, 0x165, 0x170, 0x171, 0x172, 0x200, 0x202, 0x210, 0x301, 0x302, 0x405];
// CK_ULONG attributes: CKA_CLASS, CKA_CERTIFICATE_TYPE, CKA_CERTIFICATE_CATEGORY,
// CKA_JAVA_MIDP_SECURITY_DOMAIN, CKA_KEY_TYPE, CKA_MODULUS_BITS, CKA_PRIME_BITS,
// CKA_SUB_PRIME_BITS, CKA_VALUE_BITS, CKA_VALUE_LEN, CKA_KEY_GEN_MECHANISM, CKA_AUTH_PIN_FLAGS,
// CKA_HW_FEATURE_TYPE, CKA_PIXEL_X .. CKA_BITS_PER_PIXEL, CKA_MECHANISM_TYPE.
const ULONG_TYPES = [0x0, 0x80, 0x87, 0x88, 0x100, 0x121, 0x133, 0x134, 0x160, 0x161, 0x166, 0x201, 0x300, 0x400, 0x401, 0x402, 0x403, 0x404, 0x406, 0x500];
// CKA_WRAP_TEMPLATE, CKA_UNWRAP_TEMPLATE, CKA_DERIVE_TEMPLATE.
const TEMPLATE_TYPES = [0x40000211, 0x40000212, 0x40000213];
const KINDS = new Map<number, ValueKind>([
  ...BYTE_TYPES.map((t) => [t, 'byte'] as const),
  ...ULONG_TYPES.map((t) => [t, 'ulong'] as const),
  ...TEMPLATE_TYPES.map((t) => [t, 'template'] as const),
  [0x40000600, 'mechanisms'], // CKA_ALLOWED_MECHANISMS
  [0x110, 'date'], // CKA_START_DATE
  [0x111, 'date'], // CKA_END_DATE
]);

/** How the protocol encodes a value of attribute `type` (every other type is a byte array). */
export function valueKind(type: number): ValueKind {
  return KINDS.get(type) ?? 'bytes';
}

// ---- mechanism parameter shapes (rpc-message.c `p11_rpc_mechanism_serializers`) ----
type Shape = 'gcm' | 'ecdh' | readonly ('u' | 'a')[];
const PARAM_SHAPES = new Map<number, Shape>([
  [0x1087, 'gcm'], // CKM_AES_GCM: iv, ivBits, aad, tagBits
  [0x1050, 'ecdh'], // CKM_ECDH1_DERIVE: kdf, shared data, public data
  // RSA PSS (CKM_RSA_PKCS_PSS and the SHA-n variants): hashAlg, mgf, sLen.
  ...[0x0d, 0x0e, 0x43, 0x44, 0x45, 0x47].map((t) => [t, ['u', 'u', 'u']] as const),
  [0x09, ['u', 'u', 'u', 'a']], // CKM_RSA_PKCS_OAEP: hashAlg, mgf, source, source data
  [0x1086, ['u', 'a']], // CKM_AES_CTR: counter bits, counter block
]);

// ---- the writer ----

/** A response under construction: call id, signature, then the fields in signature order. */
export class RpcWriter {
  private readonly parts: Buffer[] = [];
  private sig: string;

  /** A response by default; clients (tests) write requests. */
  constructor(
    readonly call: RpcCall,
    kind: 'request' | 'response' = 'response',
  ) {
    this.sig = kind === 'request' ? call.request : call.response;
    this.u32(call.id);
    this.array(Buffer.from(this.sig, 'latin1'));
  }

  /** The error response: call id 0, signature `u`, the CKR_ value (rpc-server.c `p11_rpc_server_handle`). */
  static error(ckr: number): Buffer {
    const w = new RpcWriter(RPC_CALLS[CALL_ERROR]!);
    w.ulong(ckr >>> 0);
    return w.finish();
  }

  private expect(part: string): void {
    if (!this.sig.startsWith(part)) throw new Error(`${this.call.name}: wrote ${part} where the signature has ${this.sig || 'nothing'}`);
    this.sig = this.sig.slice(part.length);
  }

  private u32(v: number): void {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(v >>> 0);
    this.parts.push(b);
  }

  private u64(v: bigint | number): void {
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(BigInt(v));
    this.parts.push(b);
  }

  private array(data: Buffer | null): void {
    if (data === null) return this.u32(NULL_LENGTH);
    this.u32(data.length);
    this.parts.push(data);
  }

  byte(v: number): this {
    this.expect('y');
    this.parts.push(Buffer.of(v & 0xff));
    return this;
  }

  ulong(v: bigint | number): this {
    this.expect('u');
    this.u64(v);
    return this;
  }

  version(v: { major: number; minor: number }): this {
    this.expect('v');
    this.parts.push(Buffer.of(v.major & 0xff, v.minor & 0xff));
    return this;
  }

  /** `s`: a blank-padded string of exactly `length` bytes (UTF-8, cut or padded with blanks). */
  spaceString(s: string, length: number): this {
    this.expect('s');
    const b = Buffer.alloc(length, 0x20);
    Buffer.from(s, 'utf8').copy(b, 0, 0, length);
    this.array(b);
    return this;
  }

  /** `ay`: the bytes, or (data null) only the length the caller needs (rpc-message.c `p11_rpc_message_write_byte_array`). */
  byteArray(data: Buffer | null, length = data?.length ?? 0): this {
    this.expect('ay');
    if (data === null) {
      this.parts.push(Buffer.of(0));
      this.u32(length);
    } else {
      this.parts.push(Buffer.of(1));
      this.array(data);
    }
    return this;
  }

  /** `au`: the values, or (values null) only the count (rpc-message.c `p11_rpc_message_write_ulong_array`). */
  ulongArray(values: readonly (bigint | number)[] | null, count = values?.length ?? 0): this {
    this.expect('au');
    this.parts.push(Buffer.of(values === null ? 0 : 1));
    this.u32(count);
    if (values !== null) for (const v of values) this.u64(v);
    return this;
  }

  /** `fy` / `fu`: the size of the caller's output buffer (0: the length only). */
  bufferSize(part: 'fy' | 'fu', n: number): this {
    this.expect(part);
    this.u32(n);
    return this;
  }

  /** `fA`: attribute types and the caller's buffer size for each. */
  attributeBuffers(attrs: readonly { type: number; size: number }[]): this {
    this.expect('fA');
    this.u32(attrs.length);
    for (const a of attrs) {
      this.u32(a.type);
      this.u32(a.size);
    }
    return this;
  }

  /** `z`: a string without its NUL. */
  string(s: string): this {
    this.expect('z');
    this.array(Buffer.from(s, 'utf8'));
    return this;
  }

  /** `M`: a mechanism with no parameter, raw parameter bytes, AES-GCM's or ECDH1-DERIVE's (the shapes RpcReader.mechanism reads). */
  mechanism(type: number, param: null | Buffer | { iv: Buffer; aad: Buffer; tagBits: number } | { kdf: number; publicData: Buffer }): this {
    this.expect('M');
    this.u32(type);
    if (param === null || Buffer.isBuffer(param)) {
      this.array(param);
    } else if ('kdf' in param) {
      this.u64(param.kdf);
      this.array(null);
      this.array(param.publicData);
    } else {
      this.array(param.iv);
      this.u64(param.iv.length * 8);
      this.array(param.aad);
      this.u64(param.tagBits);
    }
    return this;
  }

  /**
   * `aA`: attributes as results (rpc-message.c `p11_rpc_buffer_add_attribute`): `value` null and
   * `length` -1 is CK_UNAVAILABLE_INFORMATION; `value` null with a length answers a length query.
   */
  attributes(attrs: readonly { type: number; value: Buffer | null; length: number }[]): this {
    this.expect('aA');
    this.u32(attrs.length);
    for (const a of attrs) {
      this.u32(a.type);
      if (a.length < 0) {
        this.parts.push(Buffer.of(0));
        continue;
      }
      this.parts.push(Buffer.of(1));
      this.u32(a.length);
      this.attributeValue(a.type, a.value, a.length);
    }
    return this;
  }

  /** One value by its type's kind; a length query (value null) writes the kind's empty form. */
  private attributeValue(type: number, value: Buffer | null, length: number): void {
    switch (valueKind(type)) {
      case 'byte':
        this.parts.push(Buffer.of(value && value.length > 0 ? value[0]! : 0));
        return;
      case 'ulong':
        this.u64(value && value.length === 8 ? value.readBigUInt64LE(0) : 0n);
        return;
      case 'mechanisms': {
        // A length query sends no members: the caller reads the length from the attribute, not the count.
        const n = value ? value.length >>> 3 : 0;
        this.u32(n);
        if (value) for (let i = 0; i < n; i++) this.u64(value.readBigUInt64LE(i * 8));
        return;
      }
      case 'template':
        // Never sent with a value (the dispatcher answers nested templates as unavailable).
        this.u32(0);
        return;
      case 'date':
      case 'bytes':
        this.array(value);
        return;
    }
  }

  finish(): Buffer {
    if (this.sig !== '') throw new Error(`${this.call.name}: ${this.sig} left unwritten`);
    return Buffer.concat(this.parts);
  }
}
