/**
 * ristretto255 on the machine's native libsodium (Debian's `libsodium23`, `libsodium.so.23`),
 * called through koffi (a maintained FFI package with prebuilt binaries): the same seven libsodium
 * functions as the WebAssembly engine (sodium-ristretto255.ts), about twice as fast per
 * multiplication (bench/groups.ts). Beside it, `NativeHpke`: X25519, AES-256-GCM and
 * HMAC-SHA256 for the end-to-end envelope (enclave/vault/e2e-open.ts), `NativeEd25519`: the
 * issuer token's signature check (enclave/api/auth-verify.ts). The SHA-256 and SHA-512 hashes on
 * the same library are in ../hash-native.ts.
 *
 * Memory: koffi hands a TypedArray argument to C as a pointer to its contents (no copy; koffi's
 * doc/output.md, "Transient pointers"), so every byte libsodium reads or writes for us is in one
 * scratch array we own, zeroed after each call. What we can not wipe: libsodium's own stack
 * temporaries (it clears some of them itself) and the caller's arrays.
 *
 * Loading: `loadNativeSodium()` (and `loadNativeHpke()`, `loadNativeEd25519()`, and ../hash-native.ts's loaders) never throws; it answers the engine or why there is none (koffi
 * missing, the library missing or too old, `BKV_SODIUM_NATIVE=0`). `BKV_SODIUM_LIBRARY` names
 * another library file (tests use it to hide the library and check the fallback).
 */
import { newBytes } from '../bytes.ts';
import type { Alloc } from '../bytes.ts';
import type { Engine } from './sodium-ristretto255.ts';

/** The library names tried in order when BKV_SODIUM_LIBRARY is not set. */
const LIBRARY_NAMES = ['libsodium.so.23', 'libsodium.so', 'libsodium.dylib', 'libsodium.dll'];

// Scratch layout: scalar | element | output | 64-byte wide input (as in the WebAssembly engine).
const S_SCALAR = 0;
const S_POINT = 32;
const S_OUT = 64;
const S_WIDE = 96;
const S_SIZE = 160;

export type Fn = (...args: unknown[]) => number;

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
  /** from_hash / scalar_reduce of the 64 bytes `fill` writes into the scratch (wiped after, as every call's). */
  fromHashOf(fill: (wide: Uint8Array) => void): Uint8Array {
    return this.call(() => fill(this.wide), () => (this.f.fromHash(this.outBuf, this.wide), this.outBuf.slice()));
  }
  reduceOf(fill: (wide: Uint8Array) => void): Uint8Array {
    return this.call(() => fill(this.wide), () => (this.f.reduce(this.outBuf, this.wide), this.outBuf.slice()));
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

/** The environment the loaders read (process.env, or another in tests). */
export type NativeEnv = Record<string, string | undefined>;

/** `load` run once per process for process.env, and afresh for any other environment (tests). */
export function oncePerProcess<T>(load: (env: NativeEnv) => Promise<T>): (env?: NativeEnv) => Promise<T> {
  let loaded: Promise<T> | undefined;
  return (env = process.env) => (env !== process.env ? load(env) : (loaded ??= load(env)));
}

/** Native libsodium's ristretto255 engine, loaded once per process, or the reason it is not available. */
export const loadNativeSodium: (env?: NativeEnv) => Promise<NativeSodium> = oncePerProcess(load);

type Library = { lib: ReturnType<(typeof import('koffi'))['default']['load']>; library: string } | { lib: null; reason: string };

/** koffi and the library, initialised (sodium_init), or why not. */
export async function openLibrary(env: NativeEnv): Promise<Library> {
  if (env.BKV_SODIUM_NATIVE === '0') return { lib: null, reason: 'turned off (BKV_SODIUM_NATIVE=0)' };
  let koffi: (typeof import('koffi'))['default'];
  try {
    koffi = (await import('koffi')).default;
  } catch (e) {
    return { lib: null, reason: `koffi does not load: ${firstLine(e)}` };
  }
  const names = env.BKV_SODIUM_LIBRARY ? [env.BKV_SODIUM_LIBRARY] : LIBRARY_NAMES;
  const errors: string[] = [];
  for (const name of names) {
    try {
      const lib = koffi.load(name);
      try {
        const init = lib.func('int sodium_init()') as Fn;
        // 0: initialised now, 1: already initialised; -1: failure.
        if (init() < 0) return { lib: null, reason: `${name}: sodium_init failed` };
      } catch (e) {
        return { lib: null, reason: `${name}: ${firstLine(e)}` };
      }
      return { lib, library: name };
    } catch (e) {
      errors.push(`${name}: ${firstLine(e)}`);
    }
  }
  return { lib: null, reason: `no native libsodium (${errors.join('; ')})` };
}

async function load(env: NativeEnv): Promise<NativeSodium> {
  const l = await openLibrary(env);
  if (!l.lib) return { engine: null, reason: l.reason };
  const { lib, library } = l;
  try {
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

// The end-to-end envelope's primitives (enclave/vault/e2e-open.ts): X25519 (RFC 7748 §5) and
// AES-256-GCM (NIST SP 800-38D), on one scratch array of their own, zeroed after every call:
// private key (32) | peer key (32) | output (32) | AEAD key (32) | nonce (12) | tag (16).
const H = { sk: 0, pk: 32, out: 64, key: 96, nonce: 128, tag: 140, size: 156 } as const;

/** The largest HMAC input `hmacSha256` takes (the key schedule's longest is 92 bytes). */
const HMAC_STAGE = 256;
/**
 * AAD up to this length is copied into an array of ours before the call. koffi asks V8 for a
 * TypedArray argument's memory, and V8 keeps an array of 64 bytes or less inside the array
 * itself: asked, it first moves it out to an ArrayBuffer of its own (three native allocations,
 * later freed by the collector's sweeper). The envelope's AADs are that small.
 */
const AAD_STAGE = 256;

interface HpkeFunctions {
  x25519: Fn;
  /** crypto_auth_hmacsha256: HMAC-SHA256 with a 32-byte key (RFC 2104). */
  hmac: Fn;
  /** crypto_aead_aes256gcm_*_detached, or null when the CPU lacks AES-NI and PCLMUL (libsodium has no portable AES-GCM). */
  gcmSeal: Fn | null;
  gcmOpen: Fn | null;
}

/**
 * X25519, AES-256-GCM and HMAC-SHA256 on native libsodium, for the end-to-end envelope. What we can not wipe:
 * libsodium's stack temporaries (it clears some itself), and the plaintext and ciphertext arrays,
 * which are the caller's (koffi passes them as pointers, no copy).
 */
export class NativeHpke {
  private readonly s = new Uint8Array(H.size);
  private readonly sk = this.s.subarray(H.sk, H.pk);
  private readonly pk = this.s.subarray(H.pk, H.out);
  private readonly out = this.s.subarray(H.out, H.key);
  private readonly key = this.s.subarray(H.key, H.nonce);
  private readonly nonce = this.s.subarray(H.nonce, H.tag);
  private readonly tag = this.s.subarray(H.tag, H.size);
  /** HMAC input staging, zeroed after each call (as far as it was written). */
  private readonly stage = new Uint8Array(HMAC_STAGE);
  /** AAD staging (AAD_STAGE); not secret, overwritten by the next call. */
  private readonly aadStage = new Uint8Array(AAD_STAGE);

  constructor(
    private readonly f: HpkeFunctions,
    readonly library: string,
  ) {}

  /** Whether AES-256-GCM runs here (else the caller keeps its own). */
  get gcm(): boolean {
    return this.f.gcmSeal !== null;
  }

  /**
   * X25519(sk, pk), RFC 7748 §5; null when libsodium refuses: an all-zero output (RFC 9180 §7.1.4,
   * crypto_scalarmult_curve25519 checks it) or a point of small order (checked first by 1.0.18).
   */
  x25519(sk: Uint8Array, pk: Uint8Array): Uint8Array | null {
    try {
      this.sk.set(sk);
      this.pk.set(pk);
      return this.f.x25519(this.out, this.sk, this.pk) === 0 ? this.out.slice() : null;
    } finally {
      this.s.fill(0);
    }
  }

  /**
   * HMAC-SHA256(key, concatenation of `parts`) for a 32-byte key; null when the key is not 32
   * bytes or the input is longer than HMAC_STAGE (the caller then uses another HMAC).
   */
  hmacSha256(key: Uint8Array, parts: readonly Uint8Array[]): Uint8Array | null {
    if (key.length !== 32) return null;
    let n = 0;
    for (const p of parts) n += p.length;
    if (n > HMAC_STAGE) return null;
    try {
      let o = 0;
      for (const p of parts) {
        this.stage.set(p, o);
        o += p.length;
      }
      this.key.set(key);
      this.f.hmac(this.out, this.stage, n, this.key);
      return this.out.slice();
    } finally {
      this.stage.fill(0, 0, n);
      this.s.fill(0);
    }
  }

  /** `aad` as passed to libsodium: staged when short (AAD_STAGE). */
  private aadArg(aad: Uint8Array): Uint8Array {
    if (aad.length > AAD_STAGE) return aad;
    this.aadStage.set(aad);
    return this.aadStage;
  }

  /** AES-256-GCM of `pt` into `out` at `at`: ciphertext, then the 16-byte tag. */
  gcmSealInto(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, pt: Uint8Array, out: Uint8Array, at: number): void {
    try {
      this.key.set(key);
      this.nonce.set(nonce);
      const ct = out.subarray(at, at + pt.length);
      this.f.gcmSeal!(ct, this.tag, null, pt, pt.length, this.aadArg(aad), aad.length, null, this.nonce, this.key);
      out.set(this.tag, at + pt.length);
    } finally {
      this.s.fill(0);
    }
  }

  /**
   * AES-256-GCM decryption of `ct` with the detached `tag` into `out` (at least ct.length long):
   * true when the tag verifies; false otherwise, and then libsodium has zeroed what it wrote of
   * `out` (the emulator token's C_Decrypt, hsm/tokens/emulator/mechanisms.ts).
   */
  gcmOpenInto(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, ct: Uint8Array, tag: Uint8Array, out: Uint8Array): boolean {
    const n = ct.length;
    if (tag.length !== 16 || out.length < n) return false;
    try {
      this.key.set(key);
      this.nonce.set(nonce);
      this.tag.set(tag);
      return this.f.gcmOpen!(out, null, ct, n, this.tag, this.aadArg(aad), aad.length, this.nonce, this.key) === 0;
    } finally {
      this.s.fill(0);
    }
  }

  /** AES-256-GCM decryption of ciphertext || tag; null when the tag does not verify (nothing is returned then). */
  gcmOpen(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, ctAndTag: Uint8Array, alloc: Alloc = newBytes): Uint8Array | null {
    const n = ctAndTag.length - 16;
    if (n < 0) return null;
    const pt = alloc(n);
    try {
      this.key.set(key);
      this.nonce.set(nonce);
      this.tag.set(ctAndTag.subarray(n));
      // On a tag mismatch libsodium zeroes `pt` and answers -1.
      const rc = this.f.gcmOpen!(pt, null, ctAndTag.subarray(0, n), n, this.tag, this.aadArg(aad), aad.length, this.nonce, this.key);
      return rc === 0 ? pt : null;
    } finally {
      this.s.fill(0);
    }
  }
}

export type NativeHpkeLoad = { hpke: NativeHpke } | { hpke: null; reason: string };

/** Native libsodium's X25519, AES-256-GCM and HMAC-SHA256, loaded once per process, or the reason they are not available. */
export const loadNativeHpke: (env?: NativeEnv) => Promise<NativeHpkeLoad> = oncePerProcess(loadHpke);

async function loadHpke(env: NativeEnv): Promise<NativeHpkeLoad> {
  const l = await openLibrary(env);
  if (!l.lib) return { hpke: null, reason: l.reason };
  const { lib, library } = l;
  try {
    const x25519 = lib.func('int crypto_scalarmult_curve25519(uint8_t *q, uint8_t *n, uint8_t *p)') as Fn;
    const hmac = lib.func('int crypto_auth_hmacsha256(uint8_t *out, uint8_t *in, unsigned long long inlen, uint8_t *k)') as Fn;
    const available = (lib.func('int crypto_aead_aes256gcm_is_available()') as Fn)() === 1;
    const gcmSeal = available
      ? (lib.func('int crypto_aead_aes256gcm_encrypt_detached(uint8_t *c, uint8_t *mac, void *maclen_p, uint8_t *m, unsigned long long mlen, uint8_t *ad, unsigned long long adlen, void *nsec, uint8_t *npub, uint8_t *k)') as Fn)
      : null;
    const gcmOpen = available
      ? (lib.func('int crypto_aead_aes256gcm_decrypt_detached(uint8_t *m, void *nsec, uint8_t *c, unsigned long long clen, uint8_t *mac, uint8_t *ad, unsigned long long adlen, uint8_t *npub, uint8_t *k)') as Fn)
      : null;
    return { hpke: new NativeHpke({ x25519, hmac, gcmSeal, gcmOpen }, library) };
  } catch (e) {
    return { hpke: null, reason: `${library}: ${firstLine(e)}` };
  }
}

/**
 * Ed25519 signature verification (RFC 8032 §5.1.7) on native libsodium, for the issuer token's
 * check (enclave/api/auth-verify.ts). libsodium 1.0.18's `crypto_sign_ed25519_verify_detached`
 * refuses a non-canonical S (S >= L), a small-order R, a non-canonical or small-order public key,
 * and compares the encoding of [S]B - [k]A with R byte for byte (so a non-canonical R fails).
 * Nothing here is secret; koffi passes the arrays as pointers, so their lengths are checked first.
 */
export class NativeEd25519 {
  constructor(
    private readonly f: Fn,
    readonly library: string,
  ) {}

  /** Whether `sig` (64 bytes) is a signature of `msg` under `publicKey` (32 bytes). */
  verify(sig: Uint8Array, msg: Uint8Array, publicKey: Uint8Array): boolean {
    if (sig.length !== 64 || publicKey.length !== 32) return false;
    return this.f(sig, msg, msg.length, publicKey) === 0;
  }
}

export type NativeEd25519Load = { ed25519: NativeEd25519 } | { ed25519: null; reason: string };

/** Native libsodium's Ed25519 verification, loaded once per process, or the reason it is not available. */
export const loadNativeEd25519: (env?: NativeEnv) => Promise<NativeEd25519Load> = oncePerProcess(async (env) => {
  const l = await openLibrary(env);
  if (!l.lib) return { ed25519: null, reason: l.reason };
  try {
    const f = l.lib.func('int crypto_sign_ed25519_verify_detached(uint8_t *sig, uint8_t *m, unsigned long long mlen, uint8_t *pk)') as Fn;
    return { ed25519: new NativeEd25519(f, l.library) };
  } catch (e) {
    return { ed25519: null, reason: `${l.library}: ${firstLine(e)}` };
  }
});

/** The first line of an error's message (for a one-line reason). */
export function firstLine(e: unknown): string {
  return String(e instanceof Error ? e.message : e).split('\n')[0]!;
}
