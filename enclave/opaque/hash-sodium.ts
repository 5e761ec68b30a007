/**
 * SHA-512 and SHA-256 `HashPrimitives` (FIPS 180-4; HMAC per RFC 2104) on libsodium compiled to
 * WebAssembly (libsodium-wrappers-sumo), called through the raw emscripten exports
 * (`_crypto_hash_sha512_*`, `_crypto_auth_hmacsha512_*`, and their SHA-256 twins) on one scratch
 * area allocated once in the WebAssembly heap. SHA-512 is the server default for
 * ristretto255-SHA512; SHA-256 is the enclave's (the end-to-end envelope's HKDF, the record
 * index, the audit chain).
 *
 * Why not node:crypto: OPAQUE hashes short strings (one to four 128-byte blocks; 10 HMACs and 6
 * hashes per login), where creating and finishing a node:crypto Hash or Hmac object costs more
 * than hashing the blocks. Each of those objects is also a native handle with a weak callback and
 * a Buffer with its own backing store, and every young-generation collection of a device thread
 * runs those callbacks (`node --trace-gc-nvp`: heap.external_weak_global_handles). Here a call
 * allocates one small typed array. bench/opaque.ts and bench/enclave.ts measure the difference
 * (figures in bench/README.md). Same bytes as `hash-node.ts` and
 * `hash-noble.ts` (test/enclave/opaque/groups.test.ts).
 *
 * Every byte copied into the scratch area (inputs, keys, hash states, outputs) is zeroed before a
 * call returns, as in groups/sodium-ristretto255.ts; libsodium wipes its own stack temporaries
 * (the SHA-512 message schedule, the HMAC key pads). Besides the `HashPrimitives` calls, the
 * scratch area offers RFC 9380 expand_message_xmd for 64 bytes (`xmd64`) that leaves its output in
 * the heap for the ristretto255 backend to map or reduce in place (see `SodiumSha512.xmd64`).
 */
import sodium from 'libsodium-wrappers-sumo';
import type { HashPrefix, HashPrimitives, HmacKey, StateKeeper } from './hash.ts';
import { SavedHashPrefix, SavedHmacKey } from './hash.ts';

type Sodium = typeof sodium;

/** The emscripten exports this file calls (pointers are offsets into `HEAPU8`; 64-bit lengths as lo, hi). */
export interface SodiumHashModule {
  HEAPU8: Uint8Array;
  _malloc(size: number): number;
  _crypto_hash_sha512_init(state: number): number;
  _crypto_hash_sha512_update(state: number, input: number, lenLo: number, lenHi: number): number;
  _crypto_hash_sha512_final(state: number, out: number): number;
  _crypto_auth_hmacsha512_init(state: number, key: number, keyLen: number): number;
  _crypto_auth_hmacsha512_update(state: number, input: number, lenLo: number, lenHi: number): number;
  _crypto_auth_hmacsha512_final(state: number, out: number): number;
  _crypto_hash_sha256_init(state: number): number;
  _crypto_hash_sha256_update(state: number, input: number, lenLo: number, lenHi: number): number;
  _crypto_hash_sha256_final(state: number, out: number): number;
  _crypto_auth_hmacsha256_init(state: number, key: number, keyLen: number): number;
  _crypto_auth_hmacsha256_update(state: number, input: number, lenLo: number, lenHi: number): number;
  _crypto_auth_hmacsha256_final(state: number, out: number): number;
}

const HASH_FUNCTIONS = [
  '_malloc',
  '_crypto_hash_sha512_init',
  '_crypto_hash_sha512_update',
  '_crypto_hash_sha512_final',
  '_crypto_auth_hmacsha512_init',
  '_crypto_auth_hmacsha512_update',
  '_crypto_auth_hmacsha512_final',
  '_crypto_hash_sha256_init',
  '_crypto_hash_sha256_update',
  '_crypto_hash_sha256_final',
  '_crypto_auth_hmacsha256_init',
  '_crypto_auth_hmacsha256_update',
  '_crypto_auth_hmacsha256_final',
] as const;

/** The libsodium module object behind the wrappers, if this build exposes the hash exports. */
export function sodiumHashModule(lib: Sodium): SodiumHashModule | undefined {
  const m = (lib as unknown as { libsodium?: Record<string, unknown> }).libsodium;
  if (!m || !(m['HEAPU8'] instanceof Uint8Array)) return undefined;
  for (const f of HASH_FUNCTIONS) if (typeof m[f] !== 'function') return undefined;
  return m as unknown as SodiumHashModule;
}

type Update = (state: number, input: number, lenLo: number, lenHi: number) => number;

/** One hash function's exports and sizes. */
interface Algorithm {
  name: 'SHA-256' | 'SHA-512';
  outputLen: number;
  blockLen: number;
  /** crypto_hash_shaXXX_statebytes. */
  hashState: number;
  /** crypto_auth_hmacshaXXX_statebytes (two hash states). */
  hmacState: number;
  hashInit(m: SodiumHashModule, st: number): number;
  hashUpdate(m: SodiumHashModule): Update;
  hashFinal(m: SodiumHashModule, st: number, out: number): number;
  hmacInit(m: SodiumHashModule, st: number, key: number, keyLen: number): number;
  hmacUpdate(m: SodiumHashModule): Update;
  hmacFinal(m: SodiumHashModule, st: number, out: number): number;
}

/** The exports and sizes of SHA-256 or SHA-512 (libsodium names them alike). */
function algorithm(bits: 256 | 512): Algorithm {
  const hash = `_crypto_hash_sha${bits}` as const;
  const hmac = `_crypto_auth_hmacsha${bits}` as const;
  return {
    name: `SHA-${bits}`,
    outputLen: bits / 8,
    blockLen: bits / 4,
    hashState: bits === 256 ? 104 : 208,
    hmacState: bits === 256 ? 208 : 416,
    hashInit: (m, st) => m[`${hash}_init`](st),
    hashUpdate: (m) => m[`${hash}_update`],
    hashFinal: (m, st, out) => m[`${hash}_final`](st, out),
    hmacInit: (m, st, k, n) => m[`${hmac}_init`](st, k, n),
    hmacUpdate: (m) => m[`${hmac}_update`],
    hmacFinal: (m, st, out) => m[`${hmac}_final`](st, out),
  };
}
const SHA512 = algorithm(512);
const SHA256 = algorithm(256);

// Scratch layout: HMAC state (416 bytes for SHA-512, whose hash state is its first 208; SHA-256
// uses the first 208 of it) | 64-byte output |
// a second 64-byte output | staging area for inputs and keys. Constants (not secret, never wiped)
// live in a separate allocation.
const ST = 0;
const ST_LEN = 416;
const OUT = ST + ST_LEN;
const OUT2 = OUT + 64;
const STAGE = OUT2 + 64;
const STAGE_LEN = 1024;
const SIZE = STAGE + STAGE_LEN;
const SHA512_STATE = 208;
/**
 * Saved states (keyed HMAC states, hash prefixes) live in heap slots of 416 bytes, copied to and
 * from the scratch state with copyWithin: a JavaScript copy of more than 64 bytes costs about
 * 0.3 µs to allocate. A slot is zeroed when released; when all are taken, a JavaScript copy is used.
 */
const SLOTS = 8;

/** A hash over libsodium's WebAssembly exports (SodiumSha512, SodiumSha256 below). */
class SodiumHash implements HashPrimitives, StateKeeper<number | Uint8Array> {
  readonly name: 'SHA-256' | 'SHA-512';
  readonly backend = 'sodium-wasm';
  readonly outputLen: number;
  readonly blockLen: number;
  readonly m: SodiumHashModule;
  /** Base of the scratch area in the WebAssembly heap. */
  readonly s: number;
  /** Bytes of the staging area written since the last wipe. */
  protected used = 0;
  private readonly hashUpdate: Update;
  private readonly hmacUpdate: Update;
  /** Addresses of the free saved-state slots. */
  private readonly freeSlots: number[] = [];

  constructor(
    lib: Sodium,
    private readonly alg: Algorithm,
  ) {
    const m = sodiumHashModule(lib);
    if (!m) throw new Error('hash-sodium: this libsodium build does not expose its WebAssembly module');
    this.m = m;
    this.name = alg.name;
    this.outputLen = alg.outputLen;
    this.blockLen = alg.blockLen;
    this.hashUpdate = alg.hashUpdate(m);
    this.hmacUpdate = alg.hmacUpdate(m);
    const s = m._malloc(SIZE);
    const slots = m._malloc(SLOTS * ST_LEN);
    if (!s || !slots) throw new Error('hash-sodium: WebAssembly heap allocation failed');
    this.s = s;
    for (let i = SLOTS - 1; i >= 0; i--) this.freeSlots.push(slots + i * ST_LEN);
    m.HEAPU8.fill(0, slots, slots + SLOTS * ST_LEN);
    m.HEAPU8.fill(0, s, s + SIZE);
  }

  /** Zeroes the state, outputs and the staging bytes written since the last wipe. */
  wipe(): void {
    this.m.HEAPU8.fill(0, this.s, this.s + STAGE + this.used);
    this.used = 0;
  }

  /** Feeds the concatenation of `parts` to `update` through the staging area. */
  protected feed(parts: readonly Uint8Array[], update: Update): void {
    const m = this.m;
    const stage = this.s + STAGE;
    let h = m.HEAPU8;
    let n = 0;
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i]!;
      let off = 0;
      while (off < p.length) {
        const take = Math.min(p.length - off, STAGE_LEN - n);
        h.set(off === 0 && take === p.length ? p : p.subarray(off, off + take), stage + n);
        n += take;
        off += take;
        if (n > this.used) this.used = n;
        if (n === STAGE_LEN) {
          update.call(m, this.s + ST, stage, n, 0);
          h = m.HEAPU8;
          n = 0;
        }
      }
    }
    if (n > 0) update.call(m, this.s + ST, stage, n, 0);
  }

  private output(at: number): Uint8Array {
    return this.m.HEAPU8.slice(this.s + at, this.s + at + this.outputLen);
  }

  hash(...parts: Uint8Array[]): Uint8Array {
    const m = this.m;
    try {
      this.alg.hashInit(m, this.s + ST);
      this.feed(parts, this.hashUpdate);
      this.alg.hashFinal(m, this.s + ST, this.s + OUT);
      return this.output(OUT);
    } finally {
      this.wipe();
    }
  }

  /** crypto_auth_hmacshaXXX_init on the scratch state (the caller wipes). */
  private hmacInit(key: Uint8Array): void {
    const m = this.m;
    // RFC 2104: a key longer than the block is replaced by its hash (libsodium does the same,
    // but the key must fit in the staging area first).
    const k = key.length > STAGE_LEN ? this.hash(key) : key;
    m.HEAPU8.set(k, this.s + STAGE);
    if (k.length > this.used) this.used = k.length;
    this.alg.hmacInit(m, this.s + ST, this.s + STAGE, k.length);
    if (k !== key) k.fill(0);
  }

  /** Feeds `parts` to the HMAC state in the scratch area and returns the tag (the caller wipes). */
  private hmacFinish(parts: readonly Uint8Array[]): Uint8Array {
    const m = this.m;
    this.feed(parts, this.hmacUpdate);
    this.alg.hmacFinal(m, this.s + ST, this.s + OUT);
    return this.output(OUT);
  }

  hmac(key: Uint8Array, ...parts: Uint8Array[]): Uint8Array {
    try {
      this.hmacInit(key);
      return this.hmacFinish(parts);
    } finally {
      this.wipe();
    }
  }

  /**
   * Saves the first `len` bytes of the scratch state: in a free heap slot if there is one (a
   * number), else in a JavaScript copy.
   */
  private save(len: number): number | Uint8Array {
    const slot = this.freeSlots.pop();
    if (slot === undefined) return this.m.HEAPU8.slice(this.s + ST, this.s + ST + len);
    this.m.HEAPU8.copyWithin(slot, this.s + ST, this.s + ST + len);
    return slot;
  }

  /** Copies a saved state back into the scratch state. */
  restore(saved: number | Uint8Array, len: number): void {
    if (typeof saved === 'number') this.m.HEAPU8.copyWithin(this.s + ST, saved, saved + len);
    else this.m.HEAPU8.set(saved, this.s + ST);
  }

  /** Zeroes a saved state and returns its slot. */
  release(saved: number | Uint8Array): void {
    if (typeof saved === 'number') {
      this.m.HEAPU8.fill(0, saved, saved + ST_LEN);
      this.freeSlots.push(saved);
    } else {
      saved.fill(0);
    }
  }

  /**
   * The keyed HMAC state (inner and outer hash states after the pads) is saved,
   * restored for each message and zeroed by `dispose`: each further MAC skips the two pad
   * compressions.
   */
  hmacKey(key: Uint8Array): HmacKey {
    try {
      this.hmacInit(key);
      return new SavedHmacKey(this, this.save(this.alg.hmacState));
    } finally {
      this.wipe();
    }
  }

  /** HMAC from a saved keyed state (SavedHmacKey). */
  macFrom(saved: number | Uint8Array, parts: readonly Uint8Array[]): Uint8Array {
    try {
      this.restore(saved, this.alg.hmacState);
      return this.hmacFinish(parts);
    } finally {
      this.wipe();
    }
  }

  /** The hash state after `parts` is saved until `extend` or `dispose`. */
  hashPrefix(...parts: Uint8Array[]): HashPrefix {
    const m = this.m;
    try {
      this.alg.hashInit(m, this.s + ST);
      this.feed(parts, this.hashUpdate);
      const saved = this.save(this.alg.hashState);
      this.alg.hashFinal(m, this.s + ST, this.s + OUT);
      return new SavedHashPrefix(this, this.output(OUT), saved);
    } finally {
      this.wipe();
    }
  }

  /** Hash(prefix || more) from a saved state (SavedHashPrefix). */
  hashFrom(saved: number | Uint8Array, more: readonly Uint8Array[]): Uint8Array {
    const m = this.m;
    try {
      this.restore(saved, this.alg.hashState);
      this.feed(more, this.hashUpdate);
      this.alg.hashFinal(m, this.s + ST, this.s + OUT);
      return this.output(OUT);
    } finally {
      this.wipe();
    }
  }
}

/** SHA-512 over libsodium's WebAssembly exports; `lib` must be ready (`await sodium.ready`). */
export class SodiumSha512 extends SodiumHash {
  declare readonly name: 'SHA-512';
  /** SHA-512 state after one all-zero 128-byte block (expand_message_xmd's Z_pad), a constant. */
  private readonly zPadState: number;

  constructor(lib: Sodium) {
    super(lib, SHA512);
    const m = this.m;
    const c = m._malloc(SHA512_STATE + 128);
    if (!c) throw new Error('hash-sodium: WebAssembly heap allocation failed');
    this.zPadState = c;
    m.HEAPU8.fill(0, c, c + SHA512_STATE + 128);
    m._crypto_hash_sha512_init(c);
    m._crypto_hash_sha512_update(c, c + SHA512_STATE, 128, 0);
  }

  /**
   * RFC 9380 §5.3.1 expand_message_xmd(msg, DST, 64) with SHA-512, `dst` at most 255 bytes: the
   * 64 uniform bytes are left in the heap at the returned pointer (b_1; with one output block,
   * b_0 is never XORed into anything). The caller must call `wipe()` once it has used them.
   * b_0 = H(Z_pad || msg || I2OSP(64, 2) || 0x00 || DST || I2OSP(len(DST), 1)) starts from the
   * precomputed state after Z_pad; b_1 = H(b_0 || 0x01 || DST || I2OSP(len(DST), 1)).
   */
  xmd64(msg: Uint8Array, dst: Uint8Array): number {
    if (dst.length > 255) throw new RangeError('xmd64: DST longer than 255 bytes');
    const m = this.m;
    const s = this.s;
    const stage = s + STAGE;
    let h = m.HEAPU8;
    h.copyWithin(s + ST, this.zPadState, this.zPadState + SHA512_STATE);
    if (msg.length + 4 + dst.length > STAGE_LEN) {
      this.feed([msg], m._crypto_hash_sha512_update);
      h = m.HEAPU8;
      h[stage] = 0;
      h[stage + 1] = 64;
      h[stage + 2] = 0;
      h.set(dst, stage + 3);
      h[stage + 3 + dst.length] = dst.length;
      const n = 4 + dst.length;
      if (n > this.used) this.used = n;
      m._crypto_hash_sha512_update(s + ST, stage, n, 0);
    } else {
      h.set(msg, stage);
      let n = msg.length;
      h[stage + n] = 0;
      h[stage + n + 1] = 64;
      h[stage + n + 2] = 0;
      h.set(dst, stage + n + 3);
      n += 3 + dst.length;
      h[stage + n++] = dst.length;
      if (n > this.used) this.used = n;
      m._crypto_hash_sha512_update(s + ST, stage, n, 0);
    }
    // b_0 goes to OUT2, which the staging area follows: b_0 || 0x01 || DST || len(DST) is contiguous.
    m._crypto_hash_sha512_final(s + ST, s + OUT2);
    h = m.HEAPU8;
    h[stage] = 1;
    h.set(dst, stage + 1);
    h[stage + 1 + dst.length] = dst.length;
    const n = 2 + dst.length;
    if (n > this.used) this.used = n;
    m._crypto_hash_sha512_init(s + ST);
    m._crypto_hash_sha512_update(s + ST, s + OUT2, 64 + n, 0);
    m._crypto_hash_sha512_final(s + ST, s + OUT);
    return s + OUT;
  }
}

/** SHA-256 over libsodium's WebAssembly exports; `lib` must be ready (`await sodium.ready`). */
export class SodiumSha256 extends SodiumHash {
  declare readonly name: 'SHA-256';
  constructor(lib: Sodium) {
    super(lib, SHA256);
  }
}

/** Waits for libsodium's WebAssembly to load, then builds the hash. */
export async function createSodiumSha512(): Promise<SodiumSha512> {
  await sodium.ready;
  return new SodiumSha512(sodium);
}

/** Waits for libsodium's WebAssembly to load, then builds the hash. */
export async function createSodiumSha256(): Promise<SodiumSha256> {
  await sodium.ready;
  return new SodiumSha256(sodium);
}
