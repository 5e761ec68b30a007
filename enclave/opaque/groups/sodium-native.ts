/**
 * ristretto255 on the machine's native libsodium (Debian's `libsodium23`, `libsodium.so.23`),
 * called through koffi (a maintained FFI package with prebuilt binaries): the same seven libsodium
 * functions as the WebAssembly engine (sodium-ristretto255.ts), about twice as fast per
 * multiplication (bench/groups.ts). Beside it, `NativeHpke`: X25519, AES-256-GCM and
 * HMAC-SHA256 for the end-to-end envelope (enclave/vault/e2e-open.ts), `NativeEd25519`: the
 * issuer token's signature check (enclave/api/auth-verify.ts), and `NativeSha256`: the enclave's
 * own SHA-256 and HMAC-SHA256 (enclave/vault/vault.ts).
 *
 * Memory: koffi hands a TypedArray argument to C as a pointer to its contents (no copy; koffi's
 * doc/output.md, "Transient pointers"), so every byte libsodium reads or writes for us is in one
 * scratch array we own, zeroed after each call. What we can not wipe: libsodium's own stack
 * temporaries (it clears some of them itself) and the caller's arrays.
 *
 * Loading: `loadNativeSodium()` (and `loadNativeHpke()`, `loadNativeEd25519()`, `loadNativeSha256()`) never throws; it answers the engine or why there is none (koffi
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

type Env = Record<string, string | undefined>;

/** `load` run once per process for process.env, and afresh for any other environment (tests). */
function oncePerProcess<T>(load: (env: Env) => Promise<T>): (env?: Env) => Promise<T> {
  let loaded: Promise<T> | undefined;
  return (env = process.env) => (env !== process.env ? load(env) : (loaded ??= load(env)));
}

/** Native libsodium's ristretto255 engine, loaded once per process, or the reason it is not available. */
export const loadNativeSodium: (env?: Env) => Promise<NativeSodium> = oncePerProcess(load);

type Library = { lib: ReturnType<(typeof import('koffi'))['default']['load']>; library: string } | { lib: null; reason: string };

/** koffi and the library, initialised (sodium_init), or why not. */
async function openLibrary(env: Record<string, string | undefined>): Promise<Library> {
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

async function load(env: Record<string, string | undefined>): Promise<NativeSodium> {
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
export const loadNativeHpke: (env?: Env) => Promise<NativeHpkeLoad> = oncePerProcess(loadHpke);

async function loadHpke(env: Record<string, string | undefined>): Promise<NativeHpkeLoad> {
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
export const loadNativeEd25519: (env?: Env) => Promise<NativeEd25519Load> = oncePerProcess(async (env) => {
  const l = await openLibrary(env);
  if (!l.lib) return { ed25519: null, reason: l.reason };
  try {
    const f = l.lib.func('int crypto_sign_ed25519_verify_detached(uint8_t *sig, uint8_t *m, unsigned long long mlen, uint8_t *pk)') as Fn;
    return { ed25519: new NativeEd25519(f, l.library) };
  } catch (e) {
    return { ed25519: null, reason: `${l.library}: ${firstLine(e)}` };
  }
});

interface Sha256Functions {
  /** crypto_hash_sha256 (one shot), and its init/update/final on a state of `hashStateBytes`. */
  hash: Fn;
  hashInit: Fn;
  hashUpdate: Fn;
  hashFinal: Fn;
  hashStateBytes: number;
  /** crypto_auth_hmacsha256 (one shot, 32-byte key), and its init (any key length)/update/final on a state of `hmacStateBytes`. */
  hmac: Fn;
  hmacInit: Fn;
  hmacUpdate: Fn;
  hmacFinal: Fn;
  hmacStateBytes: number;
}

/** Inputs up to this length are copied into the staging array and hashed in one call; longer ones are fed part by part. */
const SHA_STAGE = 1024;

/**
 * SHA-256 and HMAC-SHA256 (FIPS 180-4, RFC 2104) on native libsodium, as `HashPrimitives`: the
 * enclave's own SHA-256 (record index leaves and keys, the audit chain, partitions). One call
 * through koffi per hash or HMAC, where libsodium's WebAssembly build pays a copy into its memory:
 * about 10% faster on a sealed record's 300 bytes (bench/breakdown.ts rows, bench/README.md
 * 2026-12-06). Every byte handed to libsodium is staged
 * in arrays we own and zeroed after the call (inputs longer than SHA_STAGE are passed as the
 * caller's arrays); `hmacKey` keeps the key's hashed pads in an array of its own until `dispose`.
 */
export class NativeSha256 {
  readonly name = 'SHA-256' as const;
  readonly backend = 'libsodium native';
  readonly outputLen = 32;
  readonly blockLen = 64;
  private readonly stage = new Uint8Array(SHA_STAGE);
  private readonly out = new Uint8Array(32);
  /** A key of up to one block, staged (a longer one libsodium hashes first: RFC 2104 §2). */
  private readonly keyStage = new Uint8Array(64);
  private readonly hashState: Uint8Array;
  private readonly macState: Uint8Array;

  constructor(
    private readonly f: Sha256Functions,
    readonly library: string,
  ) {
    this.hashState = new Uint8Array(f.hashStateBytes);
    this.macState = new Uint8Array(f.hmacStateBytes);
  }

  /** Copies `parts` into the staging array; their total length, or -1 when it does not fit. */
  private staged(parts: readonly Uint8Array[]): number {
    let n = 0;
    for (const p of parts) n += p.length;
    if (n > SHA_STAGE) return -1;
    let o = 0;
    for (const p of parts) {
      this.stage.set(p, o);
      o += p.length;
    }
    return n;
  }

  hash(...parts: Uint8Array[]): Uint8Array {
    let n = -1;
    try {
      n = this.staged(parts);
      if (n >= 0) this.f.hash(this.out, this.stage, n);
      else {
        this.f.hashInit(this.hashState);
        for (const p of parts) this.f.hashUpdate(this.hashState, p, p.length);
        this.f.hashFinal(this.hashState, this.out);
      }
      return this.out.slice();
    } finally {
      this.wipe(n);
    }
  }

  hmac(key: Uint8Array, ...parts: Uint8Array[]): Uint8Array {
    let n = -1;
    try {
      n = this.staged(parts);
      if (key.length === 32 && n >= 0) {
        this.keyStage.set(key);
        this.f.hmac(this.out, this.stage, n, this.keyStage);
      } else {
        this.initMac(this.macState, key);
        this.update(this.macState, parts, n);
        this.f.hmacFinal(this.macState, this.out);
      }
      return this.out.slice();
    } finally {
      this.wipe(n);
    }
  }

  hmacKey(key: Uint8Array): HmacKeyLike {
    const keyed = new Uint8Array(this.f.hmacStateBytes);
    try {
      this.initMac(keyed, key);
    } finally {
      this.keyStage.fill(0);
    }
    return {
      mac: (...parts: Uint8Array[]): Uint8Array => {
        let n = -1;
        try {
          n = this.staged(parts);
          this.macState.set(keyed);
          this.update(this.macState, parts, n);
          this.f.hmacFinal(this.macState, this.out);
          return this.out.slice();
        } finally {
          this.wipe(n);
        }
      },
      dispose: () => keyed.fill(0),
    };
  }

  private initMac(state: Uint8Array, key: Uint8Array): void {
    if (key.length <= 64) {
      this.keyStage.set(key);
      this.f.hmacInit(state, this.keyStage, key.length);
    } else this.f.hmacInit(state, key, key.length);
  }

  /** Feeds the staged input (`n` bytes), or each part when it was too long to stage. */
  private update(state: Uint8Array, parts: readonly Uint8Array[], n: number): void {
    if (n >= 0) this.f.hmacUpdate(state, this.stage, n);
    else for (const p of parts) this.f.hmacUpdate(state, p, p.length);
  }

  private wipe(n: number): void {
    this.stage.fill(0, 0, n >= 0 ? n : SHA_STAGE);
    this.out.fill(0);
    this.keyStage.fill(0);
    this.hashState.fill(0);
    this.macState.fill(0);
  }
}

/** hash.ts's HmacKey, restated here so this file imports nothing of the OPAQUE layer. */
interface HmacKeyLike {
  mac(...parts: Uint8Array[]): Uint8Array;
  dispose(): void;
}

export type NativeSha256Load = { sha256: NativeSha256 } | { sha256: null; reason: string };

/** Native libsodium's SHA-256 and HMAC-SHA256, loaded once per process, or the reason they are not available. */
export const loadNativeSha256: (env?: Env) => Promise<NativeSha256Load> = oncePerProcess(async (env) => {
  const l = await openLibrary(env);
  if (!l.lib) return { sha256: null, reason: l.reason };
  try {
    const f = (sig: string) => l.lib.func(sig) as Fn;
    return {
      sha256: new NativeSha256(
        {
          hash: f('int crypto_hash_sha256(uint8_t *out, uint8_t *in, unsigned long long inlen)'),
          hashInit: f('int crypto_hash_sha256_init(uint8_t *state)'),
          hashUpdate: f('int crypto_hash_sha256_update(uint8_t *state, uint8_t *in, unsigned long long inlen)'),
          hashFinal: f('int crypto_hash_sha256_final(uint8_t *state, uint8_t *out)'),
          hashStateBytes: f('size_t crypto_hash_sha256_statebytes()')(),
          hmac: f('int crypto_auth_hmacsha256(uint8_t *out, uint8_t *in, unsigned long long inlen, uint8_t *k)'),
          hmacInit: f('int crypto_auth_hmacsha256_init(uint8_t *state, uint8_t *key, size_t keylen)'),
          hmacUpdate: f('int crypto_auth_hmacsha256_update(uint8_t *state, uint8_t *in, unsigned long long inlen)'),
          hmacFinal: f('int crypto_auth_hmacsha256_final(uint8_t *state, uint8_t *out)'),
          hmacStateBytes: f('size_t crypto_auth_hmacsha256_statebytes()')(),
        },
        l.library,
      ),
    };
  } catch (e) {
    return { sha256: null, reason: `${l.library}: ${firstLine(e)}` };
  }
});

function firstLine(e: unknown): string {
  return String(e instanceof Error ? e.message : e).split('\n')[0]!;
}
