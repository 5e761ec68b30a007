/**
 * Byte helpers shared by the OPAQUE core: concatenation, I2OSP (RFC 8017 §4.1), length checks,
 * constant-time comparison and zeroization.
 *
 * JavaScript gives no guarantee that a secret is gone from memory: the engine may have copied it
 * (garbage collector moves, JIT spills, strings). `zeroize` clears the one buffer we hold; that
 * is all the language allows.
 */
import { invalidLength } from './errors.ts';

export function concat(...parts: Uint8Array[]): Uint8Array {
  return concatAll(parts);
}

/** `concat` of an array of any length (no spread of its items as arguments). */
export function concatAll(parts: readonly Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** I2OSP(value, length), big-endian. */
export function i2osp(value: number, length: number): Uint8Array {
  if (!Number.isInteger(value) || value < 0 || (length < 4 && value >= 256 ** length)) {
    throw new RangeError(`i2osp: ${value} does not fit in ${length} bytes`);
  }
  const out = new Uint8Array(length);
  for (let i = length - 1, v = value; i >= 0; i--, v = Math.floor(v / 256)) out[i] = v & 0xff;
  return out;
}

/** Throws a typed InvalidLength fault naming the field unless `bytes` has exactly `len` bytes. */
/** v (an integer in 0..2^53-1) as 8 bytes big-endian at `off` (no DataView: that would give a small array an ArrayBuffer of its own). */
export function putU64(out: Uint8Array, off: number, v: number): void {
  const hi = Math.floor(v / 0x1_0000_0000);
  const lo = v >>> 0;
  out[off] = hi >>> 24;
  out[off + 1] = (hi >>> 16) & 0xff;
  out[off + 2] = (hi >>> 8) & 0xff;
  out[off + 3] = hi & 0xff;
  out[off + 4] = lo >>> 24;
  out[off + 5] = (lo >>> 16) & 0xff;
  out[off + 6] = (lo >>> 8) & 0xff;
  out[off + 7] = lo & 0xff;
}

export function expectLength(bytes: Uint8Array, len: number, field: string): Uint8Array {
  if (!(bytes instanceof Uint8Array)) throw invalidLength(field, len, -1);
  if (bytes.length !== len) throw invalidLength(field, len, bytes.length);
  return bytes;
}

/**
 * The one constant-time comparison used for every MAC and tag in the project. Runs over the
 * whole length whatever the contents; unequal lengths return false at once (lengths are public).
 */
export function ctEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}

export function zeroize(...bufs: (Uint8Array | undefined | null)[]): void {
  for (const b of bufs) if (b) b.fill(0);
}

export function xor(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (a.length !== b.length) throw new RangeError('xor: length mismatch');
  const out = new Uint8Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i]! ^ b[i]!;
  return out;
}

const enc = new TextEncoder();
export function utf8(s: string): Uint8Array {
  return enc.encode(s);
}

/** Node's Buffer where there is one (enclave, device, host, CLI); a browser has none. */
const NodeBuffer = (globalThis as { Buffer?: typeof Buffer }).Buffer;
const HEX_PAIRS = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

/**
 * Node's string encoders called on any Uint8Array (`Buffer.prototype.hexSlice` and
 * `latin1Slice`, the methods behind `buf.toString('hex')` and `'latin1'`). They read a small
 * array's bytes where V8 keeps them, inside the array; `Buffer.from(b.buffer, ...)` would first
 * give such an array (64 bytes or less) an ArrayBuffer of its own: three native allocations,
 * freed later by the collector's sweeper, for every key made (bench/README.md 2026-12-06
 * (evening), the enclave path's allocations).
 */
type Encoder = (this: Uint8Array, start: number, end: number) => string;
const HEX_SLICE = (NodeBuffer?.prototype as { hexSlice?: Encoder } | undefined)?.hexSlice;
const LATIN1_SLICE = (NodeBuffer?.prototype as { latin1Slice?: Encoder } | undefined)?.latin1Slice;

/**
 * Lower-case hex of bytes: the one hex helper of the tree. One native call where Node's Buffer
 * exists (the vault keys its tables by hex ids, several per operation, and a per-byte loop makes
 * dozens of short-lived strings for each); a table lookup per byte elsewhere.
 */
export function toHex(b: Uint8Array): string {
  if (HEX_SLICE !== undefined) return HEX_SLICE.call(b, 0, b.length);
  let s = '';
  for (const x of b) s += HEX_PAIRS[x]!;
  return s;
}

/** Each byte as the char of that code (latin1) in one string: a map key for an id, one native call where Node's Buffer exists. */
export function latin1Key(b: Uint8Array): string {
  if (LATIN1_SLICE !== undefined) return LATIN1_SLICE.call(b, 0, b.length);
  let s = '';
  for (const x of b) s += String.fromCharCode(x);
  return s;
}

export function fromHex(h: string): Uint8Array {
  if (h.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(h)) throw new RangeError('fromHex: not hex');
  const out = new Uint8Array(h.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(h.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** A source of random bytes, injected everywhere (never a global). */
export type RandomSource = (n: number) => Uint8Array;

/**
 * A RandomSource that serves small draws from a pool refilled `poolSize` bytes at a time by
 * `fill` (a CSPRNG such as node:crypto randomFillSync or WebCrypto getRandomValues). Each draw
 * is copied out and its bytes in the pool are zeroed at once, so no served value stays behind.
 * One fill call per 4 KiB instead of one per draw: a 32-byte draw costs about a tenth.
 */
export function pooledRandom(fill: (buf: Uint8Array) => void, poolSize = 4096): RandomSource {
  const pool = new Uint8Array(poolSize);
  let off = poolSize;
  return (n: number) => {
    if (n > poolSize) {
      const big = new Uint8Array(n);
      fill(big);
      return big;
    }
    if (off + n > poolSize) {
      fill(pool);
      off = 0;
    }
    const out = pool.slice(off, off + n);
    pool.fill(0, off, off + n);
    off += n;
    return out;
  };
}

/** Where a function puts the bytes it returns: `newBytes` (an array of its own) unless the caller gives a `ByteArena`'s. */
export type Alloc = (n: number) => Uint8Array;

/** A new zero-filled array of its own: the default `Alloc`. */
export const newBytes: Alloc = (n) => new Uint8Array(n);

/**
 * Zero-filled arrays carved from shared chunks, for bytes that die together (what one batch of
 * the enclave makes and hands on). Every array larger than V8's on-heap limit for typed arrays
 * (64 bytes) gets an ArrayBuffer of its own: a native allocation, a backing-store record the
 * collector's helper threads sweep and free, a second allocation where node:crypto trims its
 * output. At about a dozen per login these cost more than the code that fills them
 * (bench/README.md, 2026-12-06 (arena)). Here one chunk serves many arrays; a chunk is freed when
 * the last array carved from it is gone, so only arrays of a short life may come from an
 * arena: one kept for long would hold its whole chunk. Chunks are never reused, so every array
 * starts zero-filled, as `new Uint8Array(n)` does; wiping one (fill(0)) wipes its bytes in the
 * chunk. Arrays larger than a quarter chunk get their own buffer.
 */
export class ByteArena {
  private chunk = new ArrayBuffer(0);
  private off = 0;
  /** The same arena as an `Alloc` (bound once). */
  readonly alloc: Alloc = (n) => this.take(n);
  constructor(private readonly chunkBytes = 32 * 1024) {
    if (!Number.isInteger(chunkBytes) || chunkBytes < 64) throw new RangeError('ByteArena: a chunk of at least 64 bytes');
  }
  take(n: number): Uint8Array {
    if (n > this.chunkBytes >> 2) return new Uint8Array(n);
    if (this.off + n > this.chunk.byteLength) {
      this.chunk = new ArrayBuffer(this.chunkBytes);
      this.off = 0;
    }
    const v = new Uint8Array(this.chunk, this.off, n);
    this.off += (n + 7) & ~7; // 8-byte aligned starts
    return v;
  }
}
