/**
 * ristretto255 on the machine's native libsodium (Debian's `libsodium23`, `libsodium.so.23`),
 * called through koffi (a maintained FFI package with prebuilt binaries): the same seven libsodium
 * functions as the WebAssembly engine (sodium-ristretto255.ts), about twice as fast per
 * multiplication (bench/groups.ts).
 *
 * Memory: koffi hands a TypedArray argument to C as a pointer to its contents (no copy; koffi's
 * doc/output.md, "Transient pointers"), so every byte libsodium reads or writes for us is in one
 * scratch array we own, zeroed after each call. What we can not wipe: libsodium's own stack
 * temporaries (it clears some of them itself) and the caller's arrays.
 *
 * Loading: `loadNativeSodium()` never throws; it answers the engine or why there is none (koffi
 * missing, the library missing or too old, `BKV_SODIUM_NATIVE=0`). `BKV_SODIUM_LIBRARY` names
 * another library file (tests use it to hide the library and check the fallback).
 */
import type { Engine } from './sodium-ristretto255.ts';

/** The library names tried in order when BKV_SODIUM_LIBRARY is not set. */
const LIBRARY_NAMES = ['libsodium.so.23', 'libsodium.so', 'libsodium.dylib', 'libsodium.dll'];

// Scratch layout: scalar | element | output | 64-byte wide input (as in the WebAssembly engine).
const S_SCALAR = 0;
const S_POINT = 32;
const S_OUT = 64;
const S_WIDE = 96;
const S_SIZE = 160;

type Fn = (...args: unknown[]) => number;

interface NativeFunctions {
  mult: Fn;
  multBase: Fn;
  isValidPoint: Fn;
  fromHash: Fn;
  invert: Fn;
  reduce: Fn;
}

/** Calls into native libsodium on one scratch array that is zeroed after every call. */
export class NativeEngine implements Engine {
  readonly raw = true;
  private readonly s = new Uint8Array(S_SIZE);
  private readonly scalar = this.s.subarray(S_SCALAR, S_SCALAR + 32);
  private readonly point = this.s.subarray(S_POINT, S_POINT + 32);
  private readonly outBuf = this.s.subarray(S_OUT, S_OUT + 32);
  private readonly wide = this.s.subarray(S_WIDE, S_WIDE + 64);

  constructor(
    private readonly f: NativeFunctions,
    /** Where the library was loaded from. */
    readonly library: string,
  ) {}

  /** Fills the scratch, calls libsodium, and zeroes the scratch whatever happens. */
  private call<T>(fill: () => void, f: () => T): T {
    try {
      fill();
      return f();
    } finally {
      this.s.fill(0);
    }
  }
  private result(rc: number): Uint8Array | null {
    return rc === 0 ? this.outBuf.slice() : null;
  }
  mult(k: Uint8Array, e: Uint8Array): Uint8Array | null {
    if (topBitSet(e)) return null;
    return this.call(() => (this.scalar.set(k), this.point.set(e)), () => this.result(this.f.mult(this.outBuf, this.scalar, this.point)));
  }
  multBase(k: Uint8Array): Uint8Array | null {
    return this.call(() => this.scalar.set(k), () => this.result(this.f.multBase(this.outBuf, this.scalar)));
  }
  isValidPoint(e: Uint8Array): boolean {
    if (topBitSet(e)) return false;
    return this.call(() => this.point.set(e), () => this.f.isValidPoint(this.point) === 1);
  }
  fromHash(u: Uint8Array): Uint8Array {
    return this.call(() => this.wide.set(u), () => (this.f.fromHash(this.outBuf, this.wide), this.outBuf.slice()));
  }
  invert(k: Uint8Array): Uint8Array | null {
    return this.call(() => this.scalar.set(k), () => this.result(this.f.invert(this.outBuf, this.scalar)));
  }
  reduce(u: Uint8Array): Uint8Array {
    return this.call(() => this.wide.set(u), () => (this.f.reduce(this.outBuf, this.wide), this.outBuf.slice()));
  }
}

/**
 * RFC 9496 §4.3.1: an encoding whose top bit is set is not canonical. libsodium before 1.0.19
 * (Debian 12 ships 1.0.18) ignores that bit when it decodes, so the engine refuses it first
 * (test/enclave/opaque/groups.test.ts "the top bit set").
 */
function topBitSet(e: Uint8Array): boolean {
  return e.length === 32 && (e[31]! & 0x80) !== 0;
}

export type NativeSodium = { engine: NativeEngine } | { engine: null; reason: string };

let loaded: Promise<NativeSodium> | undefined;

/** Native libsodium's ristretto255 engine, loaded once per process, or the reason it is not available. */
export function loadNativeSodium(env: Record<string, string | undefined> = process.env): Promise<NativeSodium> {
  if (env !== process.env) return load(env);
  loaded ??= load(env);
  return loaded;
}

async function load(env: Record<string, string | undefined>): Promise<NativeSodium> {
  if (env.BKV_SODIUM_NATIVE === '0') return { engine: null, reason: 'turned off (BKV_SODIUM_NATIVE=0)' };
  let koffi: (typeof import('koffi'))['default'];
  try {
    koffi = (await import('koffi')).default;
  } catch (e) {
    return { engine: null, reason: `koffi does not load: ${firstLine(e)}` };
  }
  const names = env.BKV_SODIUM_LIBRARY ? [env.BKV_SODIUM_LIBRARY] : LIBRARY_NAMES;
  let lib: ReturnType<typeof koffi.load> | undefined;
  let library = '';
  const errors: string[] = [];
  for (const name of names) {
    try {
      lib = koffi.load(name);
      library = name;
      break;
    } catch (e) {
      errors.push(`${name}: ${firstLine(e)}`);
    }
  }
  if (!lib) return { engine: null, reason: `no native libsodium (${errors.join('; ')})` };
  try {
    const init = lib.func('int sodium_init()') as Fn;
    // 0: initialised now, 1: already initialised; -1: failure.
    if (init() < 0) return { engine: null, reason: `${library}: sodium_init failed` };
    const f: NativeFunctions = {
      mult: lib.func('int crypto_scalarmult_ristretto255(uint8_t *q, uint8_t *n, uint8_t *p)') as Fn,
      multBase: lib.func('int crypto_scalarmult_ristretto255_base(uint8_t *q, uint8_t *n)') as Fn,
      isValidPoint: lib.func('int crypto_core_ristretto255_is_valid_point(uint8_t *p)') as Fn,
      fromHash: lib.func('int crypto_core_ristretto255_from_hash(uint8_t *p, uint8_t *r)') as Fn,
      invert: lib.func('int crypto_core_ristretto255_scalar_invert(uint8_t *recip, uint8_t *s)') as Fn,
      reduce: lib.func('void crypto_core_ristretto255_scalar_reduce(uint8_t *r, uint8_t *s)') as Fn,
    };
    return { engine: new NativeEngine(f, library) };
  } catch (e) {
    // A libsodium older than 1.0.18 has no ristretto255 functions.
    return { engine: null, reason: `${library}: ${firstLine(e)}` };
  }
}

function firstLine(e: unknown): string {
  return String(e instanceof Error ? e.message : e).split('\n')[0]!;
}
