/**
 * Hash primitives used by OPAQUE (RFC 9807 §4, §6.4.2) and the OPRF (RFC 9497 §4):
 * the hash itself, HMAC (RFC 2104), HKDF Extract/Expand (RFC 5869 §2.2, §2.3) and
 * expand_message_xmd (RFC 9380 §5.3.1).
 *
 * Implementations of `HashPrimitives`: `hash-noble.ts` (portable, what a browser client uses),
 * `hash-node.ts` (node:crypto; the server's P-256 suite's SHA-256), `hash-native.ts` (Node's own
 * OpenSSL or native libsodium through FFI: the server's ristretto255-SHA512 and the enclave's own
 * SHA-256 where either loads) and `hash-sodium.ts` (libsodium's WebAssembly build: the same where
 * neither does).
 * Everything else here is composition over those two calls.
 */
import { concat, i2osp } from './bytes.ts';

export type HashName = 'SHA-256' | 'SHA-512';

export interface HashPrimitives {
  readonly name: HashName;
  /** The implementation, printed by benchmarks (`node:crypto`, `@noble/hashes`, `sodium-wasm`). */
  readonly backend?: string;
  /** Output length in bytes (Nh). */
  readonly outputLen: number;
  /** Input block length in bytes (s_in_bytes of RFC 9380). */
  readonly blockLen: number;
  /** Hash of the concatenation of `parts`. */
  hash(...parts: Uint8Array[]): Uint8Array;
  /** HMAC(key, concatenation of `parts`). */
  hmac(key: Uint8Array, ...parts: Uint8Array[]): Uint8Array;
  /**
   * Optional: HMAC with `key` set up once (its inner and outer pads hashed once) for several
   * messages; same bytes as `hmac(key, ...)`. Callers go through `hmacKey()` below.
   */
  hmacKey?(key: Uint8Array): HmacKey;
  /**
   * Optional: Hash(parts), and a continuation giving Hash(parts || more) without hashing `parts`
   * again. Callers go through `hashPrefix()` below.
   */
  hashPrefix?(...parts: Uint8Array[]): HashPrefix;
}

/** An HMAC key ready for several messages. `dispose` wipes whatever key material it holds. */
export interface HmacKey {
  mac(...parts: Uint8Array[]): Uint8Array;
  dispose(): void;
}

/**
 * Hash(prefix) and a single-use continuation computing Hash(prefix || more). Call `dispose` when
 * `extend` may not be called (it releases the saved state; a no-op after `extend`).
 */
export interface HashPrefix {
  readonly digest: Uint8Array;
  extend(...more: Uint8Array[]): Uint8Array;
  dispose(): void;
}

/** `h.hmacKey(key)` where the implementation has it, else plain `h.hmac` calls. */
export function hmacKey(h: HashPrimitives, key: Uint8Array): HmacKey {
  return h.hmacKey ? h.hmacKey(key) : new PlainHmacKey(h, key);
}

/** `h.hashPrefix(...parts)` where the implementation has it, else two plain hashes. */
export function hashPrefix(h: HashPrimitives, parts: Uint8Array[]): HashPrefix {
  return h.hashPrefix ? h.hashPrefix(...parts) : new PlainHashPrefix(h, parts);
}

/**
 * Where a hash keeps saved states (keyed HMAC states, hash prefixes) of type S: slots of its own
 * memory or arrays. `macFrom` and `hashFrom` compute from a saved state; `release` wipes it.
 */
export interface StateKeeper<S> {
  macFrom(saved: S, parts: readonly Uint8Array[]): Uint8Array;
  hashFrom(saved: S, more: readonly Uint8Array[]): Uint8Array;
  release(saved: S): void;
}

// Classes rather than closures: on the hot path, and a bundler's keepNames (tsx, esbuild) would
// otherwise define a `name` on every closure created per call.
/** An HmacKey over a saved keyed state (hash-sodium.ts, hash-native.ts). */
export class SavedHmacKey<S> implements HmacKey {
  private saved: S | null;
  constructor(
    private readonly h: StateKeeper<S>,
    saved: S,
  ) {
    this.saved = saved;
  }
  mac(...parts: Uint8Array[]): Uint8Array {
    if (this.saved === null) throw new Error('hmacKey: used after dispose');
    return this.h.macFrom(this.saved, parts);
  }
  dispose(): void {
    if (this.saved === null) return;
    this.h.release(this.saved);
    this.saved = null;
  }
}

/** A HashPrefix over a saved hash state, released after its one `extend` (hash-sodium.ts, hash-native.ts). */
export class SavedHashPrefix<S> implements HashPrefix {
  private saved: S | null;
  constructor(
    private readonly h: StateKeeper<S>,
    readonly digest: Uint8Array,
    saved: S,
  ) {
    this.saved = saved;
  }
  extend(...more: Uint8Array[]): Uint8Array {
    const saved = this.saved;
    if (saved === null) throw new Error('hashPrefix: extend called twice or after dispose');
    try {
      return this.h.hashFrom(saved, more);
    } finally {
      this.dispose();
    }
  }
  dispose(): void {
    if (this.saved === null) return;
    this.h.release(this.saved);
    this.saved = null;
  }
}

class PlainHmacKey implements HmacKey {
  constructor(
    private readonly h: HashPrimitives,
    private readonly key: Uint8Array,
  ) {}
  mac(...parts: Uint8Array[]): Uint8Array {
    return this.h.hmac(this.key, ...parts);
  }
  dispose(): void {}
}

class PlainHashPrefix implements HashPrefix {
  readonly digest: Uint8Array;
  constructor(
    private readonly h: HashPrimitives,
    private readonly parts: Uint8Array[],
  ) {
    this.digest = h.hash(...parts);
  }
  extend(...more: Uint8Array[]): Uint8Array {
    return this.h.hash(...this.parts, ...more);
  }
  dispose(): void {}
}

/** RFC 5869 §2.2 HKDF-Extract(salt, IKM). */
export function hkdfExtract(h: HashPrimitives, salt: Uint8Array, ikm: Uint8Array): Uint8Array {
  return h.hmac(salt.length ? salt : new Uint8Array(h.outputLen), ikm);
}

/** RFC 5869 §2.3 HKDF-Expand(PRK, info, L). */
export function hkdfExpand(h: HashPrimitives, prk: Uint8Array, info: Uint8Array, length: number): Uint8Array {
  const n = Math.ceil(length / h.outputLen);
  if (n > 255) throw new RangeError('hkdfExpand: length too large');
  const out = new Uint8Array(n * h.outputLen);
  let t: Uint8Array = new Uint8Array(0);
  for (let i = 1; i <= n; i++) {
    t = h.hmac(prk, t, info, Uint8Array.of(i));
    out.set(t, (i - 1) * h.outputLen);
  }
  return length === out.length ? out : out.slice(0, length);
}

/** Z_pad for each block length: read-only zeros made once (128 bytes for SHA-512: one fresh ArrayBuffer per call saved). */
const Z_PADS = new Map<number, Uint8Array>();

/** RFC 9380 §5.3.1 expand_message_xmd(msg, DST, len_in_bytes). */
export function expandMessageXmd(h: HashPrimitives, msg: Uint8Array, dst: Uint8Array, lenInBytes: number): Uint8Array {
  const b = h.outputLen;
  const ell = Math.ceil(lenInBytes / b);
  if (ell > 255 || lenInBytes > 65535) throw new RangeError('expand_message_xmd: length too large');
  // RFC 9380 §5.3.3: a DST longer than 255 bytes is replaced by its hash.
  const dstPrime0 = dst.length > 255 ? h.hash(new TextEncoder().encode('H2C-OVERSIZE-DST-'), dst) : dst;
  const dstPrime = concat(dstPrime0, i2osp(dstPrime0.length, 1));
  let zPad = Z_PADS.get(h.blockLen);
  if (zPad === undefined) Z_PADS.set(h.blockLen, (zPad = new Uint8Array(h.blockLen)));
  const libStr = i2osp(lenInBytes, 2);
  const b0 = h.hash(zPad, msg, libStr, Uint8Array.of(0), dstPrime);
  const out = new Uint8Array(ell * b);
  let bi = h.hash(b0, Uint8Array.of(1), dstPrime);
  out.set(bi, 0);
  for (let i = 2; i <= ell; i++) {
    const x = new Uint8Array(b);
    for (let j = 0; j < b; j++) x[j] = b0[j]! ^ bi[j]!;
    bi = h.hash(x, Uint8Array.of(i), dstPrime);
    out.set(bi, (i - 1) * b);
  }
  return lenInBytes === out.length ? out : out.slice(0, lenInBytes);
}
