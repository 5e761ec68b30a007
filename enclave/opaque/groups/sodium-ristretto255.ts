/**
 * ristretto255 (RFC 9496) on libsodium: the server's fast backend for RFC 9497 §4.1
 * ristretto255-SHA512, on the machine's native libsodium when it loads (sodium-native.ts, the
 * server default) or on libsodium compiled to WebAssembly (libsodium-wrappers-sumo).
 * - Multiplication: `crypto_scalarmult_ristretto255` (decodes and validates the element itself and
 *   fails on an identity product) and `crypto_scalarmult_ristretto255_base`; both constant time.
 * - HashToGroup: `crypto_core_ristretto255_from_hash` (the RFC 9496 §4.3.4 one-way map) over
 *   expand_message_xmd(SHA-512, 64 bytes) (RFC 9380 §5.3.1).
 * - HashToScalar: the same 64 bytes reduced mod L (`crypto_core_ristretto255_scalar_reduce`).
 * - scalarInvert: `crypto_core_ristretto255_scalar_invert` (constant time, unlike a bigint inverse).
 *
 * By default the emscripten exports (`_crypto_scalarmult_ristretto255`, ...) are called directly on
 * one scratch area allocated once in the WebAssembly heap, and every byte copied there (secret
 * scalars, hash outputs, results) is zeroed after each call. The libsodium-wrappers functions
 * malloc and free per call without wiping, leaving secret scalars in freed heap memory; speed is the
 * same within half a microsecond (bench/groups.ts). `{ rawExports: false }` selects the wrappers,
 * for a libsodium build that does not expose its module object as `sodium.libsodium`.
 *
 * Caveats: the heap copies are the only ones we can wipe (the caller's arrays and anything the
 * JavaScript engine copied are out of reach); the module object is an undocumented property of
 * libsodium-wrappers, checked at construction.
 */
import sodium from 'libsodium-wrappers-sumo';
import { expectLength, zeroize } from '../bytes.ts';
import { OpaqueError, OpaqueErrorCode, invalidElement, invalidScalar } from '../errors.ts';
import type { Group } from '../group.ts';
import type { HashPrimitives } from '../hash.ts';
import { expandMessageXmd } from '../hash.ts';
import { SodiumSha512 } from '../hash-sodium.ts';
import { Ristretto255Base } from './noble-ristretto255.ts';
import type { NativeEngine } from './sodium-native.ts';

type Sodium = typeof sodium;

/** A hash that writes RFC 9380 expand_message_xmd(msg, dst, Nh) into a given array (hash-native.ts). */
interface XmdInto {
  xmdInto(msg: Uint8Array, dst: Uint8Array, into: Uint8Array): void;
}

/** The emscripten exports this backend calls (pointers are offsets into `HEAPU8`). */
interface SodiumModule {
  HEAPU8: Uint8Array;
  _malloc(size: number): number;
  _crypto_scalarmult_ristretto255(q: number, n: number, p: number): number;
  _crypto_scalarmult_ristretto255_base(q: number, n: number): number;
  _crypto_core_ristretto255_is_valid_point(p: number): number;
  _crypto_core_ristretto255_from_hash(p: number, r: number): number;
  _crypto_core_ristretto255_scalar_invert(recip: number, s: number): number;
  _crypto_core_ristretto255_scalar_reduce(r: number, s: number): void;
}

const MODULE_FUNCTIONS = [
  '_malloc',
  '_crypto_scalarmult_ristretto255',
  '_crypto_scalarmult_ristretto255_base',
  '_crypto_core_ristretto255_is_valid_point',
  '_crypto_core_ristretto255_from_hash',
  '_crypto_core_ristretto255_scalar_invert',
  '_crypto_core_ristretto255_scalar_reduce',
] as const;

/** The libsodium module object behind the wrappers, if this build exposes it. */
function sodiumModule(lib: Sodium): SodiumModule | undefined {
  const m = (lib as unknown as { libsodium?: Record<string, unknown> }).libsodium;
  if (!m || !(m['HEAPU8'] instanceof Uint8Array)) return undefined;
  for (const f of MODULE_FUNCTIONS) if (typeof m[f] !== 'function') return undefined;
  return m as unknown as SodiumModule;
}

/** The libsodium calls, each returning a fresh array, or null where libsodium reports failure. */
export interface Engine {
  readonly raw: boolean;
  mult(k: Uint8Array, e: Uint8Array): Uint8Array | null;
  multBase(k: Uint8Array): Uint8Array | null;
  isValidPoint(e: Uint8Array): boolean;
  fromHash(u: Uint8Array): Uint8Array;
  invert(k: Uint8Array): Uint8Array | null;
  reduce(u: Uint8Array): Uint8Array;
}

// Scratch layout in the WebAssembly heap: scalar | element | output | 64-byte hash input.
const S_SCALAR = 0;
const S_POINT = 32;
const S_OUT = 64;
const S_WIDE = 96;
const S_SIZE = 160;

/** Direct calls into the emscripten module through one preallocated, always-wiped scratch area. */
class RawEngine implements Engine {
  readonly raw = true;
  private readonly s: number;
  constructor(private readonly m: SodiumModule) {
    const s = m._malloc(S_SIZE);
    if (!s) throw new Error('sodium-ristretto255: WebAssembly heap allocation failed');
    this.s = s;
    m.HEAPU8.fill(0, s, s + S_SIZE);
  }
  // HEAPU8 is read afresh on every call: a heap growth replaces it.
  private out(): Uint8Array {
    return this.m.HEAPU8.slice(this.s + S_OUT, this.s + S_OUT + 32);
  }
  /** Copies `parts` (bytes, heap offset) into the scratch, calls libsodium, and wipes the scratch whatever happens. */
  private call<T>(parts: [Uint8Array, number][], f: (s: number) => T): T {
    try {
      const h = this.m.HEAPU8;
      for (const [b, at] of parts) h.set(b, this.s + at);
      return f(this.s);
    } finally {
      this.m.HEAPU8.fill(0, this.s, this.s + S_SIZE);
    }
  }
  private result(rc: number): Uint8Array | null {
    return rc === 0 ? this.out() : null;
  }
  mult(k: Uint8Array, e: Uint8Array): Uint8Array | null {
    return this.call([[k, S_SCALAR], [e, S_POINT]], (s) => this.result(this.m._crypto_scalarmult_ristretto255(s + S_OUT, s + S_SCALAR, s + S_POINT)));
  }
  multBase(k: Uint8Array): Uint8Array | null {
    return this.call([[k, S_SCALAR]], (s) => this.result(this.m._crypto_scalarmult_ristretto255_base(s + S_OUT, s + S_SCALAR)));
  }
  isValidPoint(e: Uint8Array): boolean {
    return this.call([[e, S_POINT]], (s) => this.m._crypto_core_ristretto255_is_valid_point(s + S_POINT) === 1);
  }
  fromHash(u: Uint8Array): Uint8Array {
    return this.call([[u, S_WIDE]], (s) => (this.m._crypto_core_ristretto255_from_hash(s + S_OUT, s + S_WIDE), this.out()));
  }
  invert(k: Uint8Array): Uint8Array | null {
    return this.call([[k, S_SCALAR]], (s) => this.result(this.m._crypto_core_ristretto255_scalar_invert(s + S_OUT, s + S_SCALAR)));
  }
  reduce(u: Uint8Array): Uint8Array {
    return this.call([[u, S_WIDE]], (s) => (this.m._crypto_core_ristretto255_scalar_reduce(s + S_OUT, s + S_WIDE), this.out()));
  }
  /** from_hash / scalar_reduce of 64 bytes already in the heap at `u` (the caller wipes them). */
  fromHashAt(u: number): Uint8Array {
    return this.call([], (s) => (this.m._crypto_core_ristretto255_from_hash(s + S_OUT, u), this.out()));
  }
  reduceAt(u: number): Uint8Array {
    return this.call([], (s) => (this.m._crypto_core_ristretto255_scalar_reduce(s + S_OUT, u), this.out()));
  }
}

/** The documented libsodium-wrappers API (each call mallocs and frees without wiping). */
class WrapperEngine implements Engine {
  readonly raw = false;
  constructor(private readonly lib: Sodium) {}
  mult(k: Uint8Array, e: Uint8Array): Uint8Array | null {
    try {
      return this.lib.crypto_scalarmult_ristretto255(k, e);
    } catch {
      return null;
    }
  }
  multBase(k: Uint8Array): Uint8Array | null {
    try {
      return this.lib.crypto_scalarmult_ristretto255_base(k);
    } catch {
      return null;
    }
  }
  isValidPoint(e: Uint8Array): boolean {
    return this.lib.crypto_core_ristretto255_is_valid_point(e);
  }
  fromHash(u: Uint8Array): Uint8Array {
    return this.lib.crypto_core_ristretto255_from_hash(u);
  }
  invert(k: Uint8Array): Uint8Array | null {
    try {
      return this.lib.crypto_core_ristretto255_scalar_invert(k);
    } catch {
      return null;
    }
  }
  reduce(u: Uint8Array): Uint8Array {
    return this.lib.crypto_core_ristretto255_scalar_reduce(u);
  }
}

// The group order L, little-endian, for a byte-wise "is reduced" test that needs no bigint.
const ORDER_LE = Uint8Array.from([
  0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
]);

function isAllZero(b: Uint8Array): boolean {
  let acc = 0;
  for (let i = 0; i < b.length; i++) acc |= b[i]!;
  return acc === 0;
}

/** True if the 32-byte little-endian `k` is below L (variable time over public-length data). */
function isReducedLe(k: Uint8Array): boolean {
  for (let i = 31; i >= 0; i--) {
    if (k[i]! !== ORDER_LE[i]!) return k[i]! < ORDER_LE[i]!;
  }
  return false;
}

export interface SodiumRistretto255Options {
  /**
   * Call the emscripten exports directly and wipe the heap scratch after each call (default true).
   * False uses the libsodium-wrappers functions. True throws if this libsodium build does not
   * expose its module object.
   */
  rawExports?: boolean;
  /** Native libsodium instead of WebAssembly (sodium-native.ts `loadNativeSodium`); `rawExports` is then ignored. */
  native?: NativeEngine;
}

export class SodiumRistretto255 extends Ristretto255Base implements Group {
  /** 'sodium-native' (native libsodium through FFI) or 'sodium-wasm'. */
  readonly backend: 'sodium-native' | 'sodium-wasm';
  /** Whether the emscripten exports are called directly (see the file header). */
  readonly rawExports: boolean;
  private readonly engine: Engine;
  /**
   * Set when the hash is `SodiumSha512` on the same WebAssembly module as the raw engine: then
   * expand_message_xmd runs in the heap and its output is mapped or reduced there, never copied out.
   */
  private readonly inHeap: { hash: SodiumSha512; engine: RawEngine } | undefined;
  /**
   * Set when the engine is native and the hash writes expand_message_xmd into a given array
   * (hash-native.ts `xmdInto`): its output goes straight into the engine's scratch.
   */
  private readonly intoScratch: { hash: XmdInto; engine: NativeEngine } | undefined;

  /** `lib` must be ready (`await sodium.ready`); `createSodiumRistretto255` does that. */
  constructor(hash: HashPrimitives, lib: Sodium, options: SodiumRistretto255Options = {}) {
    super(hash);
    if (hash.name !== 'SHA-512') {
      throw new OpaqueError(OpaqueErrorCode.InvalidArgument, 'ristretto255 (RFC 9497 §4.1) uses SHA-512');
    }
    this.backend = options.native ? 'sodium-native' : 'sodium-wasm';
    if (options.native) {
      this.engine = options.native;
    } else if (options.rawExports === false) {
      this.engine = new WrapperEngine(lib);
    } else {
      const m = sodiumModule(lib);
      if (!m) throw new Error('sodium-ristretto255: this libsodium build does not expose its WebAssembly module');
      this.engine = new RawEngine(m);
    }
    this.rawExports = this.engine.raw;
    this.inHeap =
      this.engine instanceof RawEngine && hash instanceof SodiumSha512 && (hash.m as unknown) === (sodiumModule(lib) as unknown)
        ? { hash, engine: this.engine }
        : undefined;
    this.intoScratch = options.native && typeof (hash as Partial<XmdInto>).xmdInto === 'function' ? { hash: hash as HashPrimitives & XmdInto, engine: options.native } : undefined;
  }

  private checkScalarArg(k: Uint8Array): void {
    expectLength(k, 32, 'scalar');
    if (!isReducedLe(k)) throw invalidScalar('scalar', 'not reduced');
    if (isAllZero(k)) throw invalidScalar('scalar', 'zero');
  }

  /** Names why libsodium refused `e` (only called on the failure path). */
  private elementFault(e: Uint8Array, field: string): OpaqueError {
    if (isAllZero(e)) return invalidElement(field, 'identity');
    if (!this.engine.isValidPoint(e)) return invalidElement(field, 'not a canonical ristretto255 encoding');
    return invalidElement(field, 'product is the identity');
  }

  checkElement(e: Uint8Array, field: string): void {
    expectLength(e, 32, field);
    // is_valid_point accepts the identity (all zero, its only canonical encoding).
    if (isAllZero(e)) throw invalidElement(field, 'identity');
    if (!this.engine.isValidPoint(e)) throw invalidElement(field, 'not a canonical ristretto255 encoding');
  }

  scalarMult(k: Uint8Array, e: Uint8Array, field: string): Uint8Array {
    expectLength(e, 32, field);
    this.checkScalarArg(k);
    // The multiplication decodes e itself (rejecting non-canonical encodings) and fails on an
    // identity result, which for a non-zero scalar means e was the identity: no separate check.
    const r = this.engine.mult(k, e);
    if (!r) throw this.elementFault(e, field);
    return r;
  }

  scalarMultBase(k: Uint8Array): Uint8Array {
    this.checkScalarArg(k);
    const r = this.engine.multBase(k);
    if (!r) throw invalidScalar('scalar', 'zero');
    return r;
  }

  override scalarInvert(k: Uint8Array): Uint8Array {
    expectLength(k, 32, 'scalar');
    const r = this.engine.invert(k);
    // libsodium refuses an all-zero input; an unreduced multiple of L inverts to zero.
    if (!r || isAllZero(r)) throw invalidScalar('scalar', 'zero');
    return r;
  }

  /**
   * expand_message_xmd(msg, dst, 64) then from_hash or scalar_reduce of those bytes: `inHeap` in
   * the WebAssembly heap, `intoScratch` in the native engine's scratch (neither copied out), or
   * `outside` on a copy, wiped afterwards.
   */
  private wide(
    msg: Uint8Array,
    dst: Uint8Array,
    inHeap: (e: RawEngine, at: number) => Uint8Array,
    intoScratch: (e: NativeEngine, fill: (wide: Uint8Array) => void) => Uint8Array,
    outside: (u: Uint8Array) => Uint8Array,
  ): Uint8Array {
    if (dst.length <= 255) {
      const is = this.intoScratch;
      if (is) return intoScratch(is.engine, (w) => is.hash.xmdInto(msg, dst, w));
      const ih = this.inHeap;
      if (ih) {
        try {
          return inHeap(ih.engine, ih.hash.xmd64(msg, dst));
        } finally {
          ih.hash.wipe();
        }
      }
    }
    const u = expandMessageXmd(this.hash, msg, dst, 64);
    try {
      return outside(u);
    } finally {
      zeroize(u);
    }
  }

  hashToGroup(msg: Uint8Array, dst: Uint8Array): Uint8Array {
    return this.wide(msg, dst, (e, at) => e.fromHashAt(at), (e, fill) => e.fromHashOf(fill), (u) => this.engine.fromHash(u));
  }

  override hashToScalar(msg: Uint8Array, dst: Uint8Array): Uint8Array {
    return this.wide(msg, dst, (e, at) => e.reduceAt(at), (e, fill) => e.reduceOf(fill), (u) => this.engine.reduce(u));
  }
}

/** Waits for libsodium's WebAssembly to load, then builds the group. */
export async function createSodiumRistretto255(
  hash: HashPrimitives,
  options: SodiumRistretto255Options = {},
): Promise<SodiumRistretto255> {
  await sodium.ready;
  return new SodiumRistretto255(hash, sodium, options);
}
