/**
 * A strict, schema-driven binary codec for the enclave message API.
 *
 * A message is `version (u8) || tag (u8) || fields`, each field in schema order:
 *   u8 / u16 / u32: big-endian unsigned integers; u53: 8 bytes big-endian, at most 2^53-1;
 *   fixed(n): exactly n bytes; bytes(min..max): u16 or u32 length prefix (u32 when max > 65535);
 *   list(schema, max): u16 count, then the items; opt(kind): a presence byte 0 or 1, then the kind.
 * Decoding refuses, with an `EnclaveFault` naming the field, before any handler runs: an unknown
 * version or tag, a truncated field, a length out of its bounds, a presence byte other than 0/1,
 * a list longer than its maximum, and any byte after the last field.
 */
import { Codec, EnclaveFault } from './codes.ts';
import { newBytes } from '../opaque/bytes.ts';
import type { Alloc } from '../opaque/bytes.ts';

export type Kind =
  | { readonly k: 'u8' }
  | { readonly k: 'u16' }
  | { readonly k: 'u32' }
  | { readonly k: 'u53' }
  | { readonly k: 'fixed'; readonly len: number }
  | { readonly k: 'bytes'; readonly min: number; readonly max: number }
  | { readonly k: 'list'; readonly of: Schema; readonly max: number }
  | { readonly k: 'opt'; readonly of: Kind };

export type Schema = readonly (readonly [string, Kind])[];

export const u8 = { k: 'u8' } as const;
export const u16 = { k: 'u16' } as const;
export const u32 = { k: 'u32' } as const;
export const u53 = { k: 'u53' } as const;
export const fixed = <N extends number>(len: N) => ({ k: 'fixed', len }) as const;
export const bytes = (min: number, max: number) => ({ k: 'bytes', min, max }) as const;
export const list = <S extends Schema>(of: S, max: number) => ({ k: 'list', of, max }) as const;
export const opt = <K extends Kind>(of: K) => ({ k: 'opt', of }) as const;

export type ValueOf<K> = K extends { k: 'u8' | 'u16' | 'u32' | 'u53' }
  ? number
  : K extends { k: 'fixed' | 'bytes' }
    ? Uint8Array
    : K extends { k: 'list'; of: infer S extends Schema }
      ? Decoded<S>[]
      : K extends { k: 'opt'; of: infer G }
        ? ValueOf<G> | undefined
        : never;

export type Decoded<S extends Schema> = { -readonly [E in S[number] as E[0]]: ValueOf<E[1]> };

const fault = (code: number, msg: string, field?: string) => new EnclaveFault(code, msg, field);

class Writer {
  private buf: Uint8Array;
  len = 0;
  /** `size`: the expected length (sizeOfFields), so that one allocation holds the whole output; `alloc`: where it comes from. */
  constructor(
    size = 256,
    private readonly alloc: Alloc = newBytes,
  ) {
    this.buf = alloc(Math.max(size, 1));
  }
  private grow(n: number) {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const b = this.alloc(size);
    b.set(this.buf.subarray(0, this.len));
    this.buf = b;
  }
  byte(v: number) {
    this.grow(1);
    this.buf[this.len++] = v;
  }
  uint(v: number, n: number) {
    this.grow(n);
    for (let i = n - 1; i >= 0; i--) {
      this.buf[this.len + i] = v % 256;
      v = Math.floor(v / 256);
    }
    this.len += n;
  }
  raw(b: Uint8Array) {
    this.grow(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
  }
  done(): Uint8Array {
    if (this.len === this.buf.length) return this.buf;
    // An array of its own is trimmed to a buffer of its own (a caller may transfer it); an arena's is a view.
    return this.alloc === newBytes ? this.buf.slice(0, this.len) : this.buf.subarray(0, this.len);
  }
}

class Reader {
  off = 0;
  /** Field paths read as views into `b` instead of copies (see decodeMessage). */
  views: ReadonlySet<string> | null = null;
  constructor(readonly b: Uint8Array) {}
  need(n: number, field: string) {
    if (this.off + n > this.b.length) throw fault(Codec.Truncated, `truncated at ${field}`, field);
  }
  uint(n: number, field: string): number {
    this.need(n, field);
    let v = 0;
    for (let i = 0; i < n; i++) v = v * 256 + this.b[this.off + i]!;
    this.off += n;
    return v;
  }
  raw(n: number, field: string): Uint8Array {
    this.need(n, field);
    const out = this.views !== null && this.views.has(field) ? this.b.subarray(this.off, this.off + n) : this.b.slice(this.off, this.off + n);
    this.off += n;
    return out;
  }
}

function checkUint(v: unknown, max: number, field: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max) {
    throw fault(Codec.InvalidValue, `${field}: not an integer in 0..${max}`, field);
  }
  return v;
}

function writeKind(w: Writer, kind: Kind, v: unknown, field: string): void {
  switch (kind.k) {
    case 'u8':
      return w.uint(checkUint(v, 0xff, field), 1);
    case 'u16':
      return w.uint(checkUint(v, 0xffff, field), 2);
    case 'u32':
      return w.uint(checkUint(v, 0xffffffff, field), 4);
    case 'u53':
      return w.uint(checkUint(v, Number.MAX_SAFE_INTEGER, field), 8);
    case 'fixed': {
      if (!(v instanceof Uint8Array) || v.length !== kind.len) {
        throw fault(Codec.InvalidValue, `${field}: expected ${kind.len} bytes`, field);
      }
      return w.raw(v);
    }
    case 'bytes': {
      if (!(v instanceof Uint8Array)) throw fault(Codec.InvalidValue, `${field}: expected bytes`, field);
      if (v.length > kind.max) throw fault(Codec.FieldTooLong, `${field}: at most ${kind.max} bytes`, field);
      if (v.length < kind.min) throw fault(Codec.FieldTooShort, `${field}: at least ${kind.min} bytes`, field);
      w.uint(v.length, kind.max > 0xffff ? 4 : 2);
      return w.raw(v);
    }
    case 'list': {
      if (!Array.isArray(v)) throw fault(Codec.InvalidValue, `${field}: expected a list`, field);
      if (v.length > kind.max) throw fault(Codec.TooManyItems, `${field}: at most ${kind.max} items`, field);
      w.uint(v.length, 2);
      for (const item of v) writeFields(w, kind.of, item as Record<string, unknown>, field);
      return;
    }
    case 'opt':
      if (v === undefined) return w.byte(0);
      w.byte(1);
      return writeKind(w, kind.of, v, field);
  }
}

/** The field paths of a schema under a prefix, built once per (schema, prefix) and reused. */
const PATHS = new WeakMap<Schema, Map<string, string[]>>();
function pathsOf(schema: Schema, prefix: string): string[] {
  let byPrefix = PATHS.get(schema);
  if (!byPrefix) PATHS.set(schema, (byPrefix = new Map()));
  let paths = byPrefix.get(prefix);
  if (!paths) {
    paths = schema.map(([name]) => (prefix ? `${prefix}.${name}` : name));
    if (byPrefix.size < 64) byPrefix.set(prefix, paths);
  }
  return paths;
}

/**
 * The encoded length of a value, for sizing the output once. Lenient: a value the writer will
 * refuse counts as little as possible (the writer throws the typed fault, and grows if need be).
 */
function sizeOfKind(kind: Kind, v: unknown): number {
  switch (kind.k) {
    case 'u8':
      return 1;
    case 'u16':
      return 2;
    case 'u32':
      return 4;
    case 'u53':
      return 8;
    case 'fixed':
      return kind.len;
    case 'bytes':
      return (kind.max > 0xffff ? 4 : 2) + (v instanceof Uint8Array && v.length <= kind.max ? v.length : 0);
    case 'list': {
      let n = 2;
      if (Array.isArray(v) && v.length <= kind.max) for (const item of v) n += sizeOfFields(kind.of, item as Record<string, unknown>);
      return n;
    }
    case 'opt':
      return v === undefined ? 1 : 1 + sizeOfKind(kind.of, v);
  }
}

function sizeOfFields(schema: Schema, obj: Record<string, unknown>): number {
  if (obj === null || typeof obj !== 'object') return 0;
  let n = 0;
  for (let i = 0; i < schema.length; i++) n += sizeOfKind(schema[i]![1], obj[schema[i]![0]]);
  return n;
}

function writeFields(w: Writer, schema: Schema, obj: Record<string, unknown>, prefix: string): void {
  if (obj === null || typeof obj !== 'object') throw fault(Codec.InvalidValue, `${prefix}: expected an object`, prefix);
  const paths = pathsOf(schema, prefix);
  for (let i = 0; i < schema.length; i++) writeKind(w, schema[i]![1], obj[schema[i]![0]], paths[i]!);
}

function readKind(r: Reader, kind: Kind, field: string): unknown {
  switch (kind.k) {
    case 'u8':
      return r.uint(1, field);
    case 'u16':
      return r.uint(2, field);
    case 'u32':
      return r.uint(4, field);
    case 'u53': {
      r.need(8, field);
      if (r.b[r.off]! !== 0 || r.b[r.off + 1]! > 0x1f) throw fault(Codec.InvalidValue, `${field}: above 2^53-1`, field);
      return r.uint(8, field);
    }
    case 'fixed':
      return r.raw(kind.len, field);
    case 'bytes': {
      const n = r.uint(kind.max > 0xffff ? 4 : 2, field);
      if (n > kind.max) throw fault(Codec.FieldTooLong, `${field}: at most ${kind.max} bytes`, field);
      if (n < kind.min) throw fault(Codec.FieldTooShort, `${field}: at least ${kind.min} bytes`, field);
      return r.raw(n, field);
    }
    case 'list': {
      const n = r.uint(2, field);
      if (n > kind.max) throw fault(Codec.TooManyItems, `${field}: at most ${kind.max} items`, field);
      const out: unknown[] = [];
      for (let i = 0; i < n; i++) out.push(readFields(r, kind.of, field));
      return out;
    }
    case 'opt': {
      const p = r.uint(1, field);
      if (p === 0) return undefined;
      if (p !== 1) throw fault(Codec.InvalidValue, `${field}: presence byte must be 0 or 1`, field);
      return readKind(r, kind.of, field);
    }
  }
}

function readFields(r: Reader, schema: Schema, prefix: string, out: Record<string, unknown> = {}): Record<string, unknown> {
  const paths = pathsOf(schema, prefix);
  for (let i = 0; i < schema.length; i++) out[schema[i]![0]] = readKind(r, schema[i]![1], paths[i]!);
  return out;
}

/** Encodes the fields of `schema` alone (no version or tag): for nested payloads and sealed bodies. */
export function encodeFields<S extends Schema>(schema: S, value: Decoded<S>): Uint8Array {
  const w = new Writer(sizeOfFields(schema, value as Record<string, unknown>));
  writeFields(w, schema, value as Record<string, unknown>, '');
  return w.done();
}

/** Decodes exactly the fields of `schema`; a trailing byte is a fault. */
export function decodeFields<S extends Schema>(schema: S, b: Uint8Array, what = 'message'): Decoded<S> {
  if (!(b instanceof Uint8Array)) throw fault(Codec.InvalidValue, `${what}: expected bytes`);
  const r = new Reader(b);
  const out = readFields(r, schema, '');
  if (r.off !== b.length) throw fault(Codec.TrailingBytes, `${what}: ${b.length - r.off} trailing bytes`);
  return out as Decoded<S>;
}

/** A family of tagged messages sharing one version byte: one schema per tag. */
export interface Family<M extends Record<string, Schema>> {
  readonly version: number;
  readonly tags: { readonly [K in keyof M]: number };
  readonly schemas: M;
  readonly maxSize: number;
}

export type Message<M extends Record<string, Schema>> = {
  [K in keyof M & string]: { type: K } & Decoded<M[K]>;
}[keyof M & string];

export function defineFamily<M extends Record<string, Schema>>(
  version: number,
  tags: { readonly [K in keyof M]: number },
  schemas: M,
  maxSize: number,
): Family<M> {
  const seen = new Set<number>();
  for (const t of Object.values(tags) as number[]) {
    if (seen.has(t)) throw new Error(`duplicate tag ${t}`);
    seen.add(t);
  }
  return { version, tags, schemas, maxSize };
}

/** Encodes `msg`; `alloc`: where the output's bytes come from (a ByteArena's for bytes of a short life). */
export function encodeMessage<M extends Record<string, Schema>>(fam: Family<M>, msg: Message<M>, alloc: Alloc = newBytes): Uint8Array {
  const type = msg.type as keyof M;
  const schema = fam.schemas[type];
  if (!schema) throw fault(Codec.UnknownTag, `unknown message type ${String(msg.type)}`);
  const w = new Writer(2 + sizeOfFields(schema, msg as Record<string, unknown>), alloc);
  w.byte(fam.version);
  w.byte(fam.tags[type]);
  writeFields(w, schema, msg as Record<string, unknown>, '');
  const out = w.done();
  if (out.length > fam.maxSize) throw fault(Codec.MessageTooLarge, `message of ${out.length} bytes exceeds ${fam.maxSize}`);
  return out;
}

/**
 * Decodes one message of the family. Byte fields are copies of `b`, except those whose path is in
 * `opts.views` (e.g. 'ops.request'): those are subarrays of `b`, for a caller that reads them while
 * `b` can not change (not a SharedArrayBuffer) and keeps none of them.
 */
export function decodeMessage<M extends Record<string, Schema>>(fam: Family<M>, b: Uint8Array, opts?: { views?: ReadonlySet<string> }): Message<M> {
  if (!(b instanceof Uint8Array)) throw fault(Codec.InvalidValue, 'message: expected bytes');
  if (b.length > fam.maxSize) throw fault(Codec.MessageTooLarge, `message of ${b.length} bytes exceeds ${fam.maxSize}`);
  if (b.length < 2) throw fault(Codec.Truncated, 'message shorter than its header', 'header');
  if (b[0] !== fam.version) throw fault(Codec.UnsupportedVersion, `unsupported version ${b[0]}`, 'version');
  const tag = b[1]!;
  const type = typesOf(fam).get(tag);
  if (type === undefined) throw fault(Codec.UnknownTag, `unknown tag ${tag}`, 'tag');
  const r = new Reader(b);
  r.off = 2;
  if (opts?.views) r.views = opts.views;
  const out = readFields(r, fam.schemas[type]!, '', { type });
  if (r.off !== b.length) throw fault(Codec.TrailingBytes, `${type}: ${b.length - r.off} trailing bytes`);
  return out as Message<M>;
}

/** Per family, its message types by tag (built once). */
const TYPES = new WeakMap<object, Map<number, string>>();
function typesOf(fam: Family<Record<string, Schema>>): Map<number, string> {
  let m = TYPES.get(fam);
  if (!m) {
    m = new Map();
    for (const [k, t] of Object.entries(fam.tags) as [string, number][]) if (Object.hasOwn(fam.schemas, k)) m.set(t, k);
    TYPES.set(fam, m);
  }
  return m;
}
