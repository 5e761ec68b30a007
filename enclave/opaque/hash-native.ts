/**
 * SHA-256 and SHA-512 (FIPS 180-4) with HMAC (RFC 2104) and expand_message_xmd (RFC 9380
 * §5.3.1) on native code through koffi, as `HashPrimitives`, on one of two libraries:
 * - the OpenSSL that Node itself carries (groups/openssl-native.ts: the running process's own
 *   `SHA256_*`/`SHA512_*` exports, so no second OpenSSL is loaded): its SHA-256 uses the CPU's
 *   SHA extensions where it has them and its SHA-512 AVX2; about 3x libsodium's SHA-256 and 1.5x
 *   its SHA-512 per block on the bench machine (bench/README.md 2026-12-07);
 * - native libsodium (`libsodium.so.23`, groups/sodium-native.ts `openLibrary`), portable C,
 *   where Node's OpenSSL symbols are not reachable or BKV_OPENSSL_NATIVE=0.
 * Uses: SHA-512 for the server's ristretto255-SHA512 suite (suites-fast.ts; `xmdInto` writes
 * HashToGroup's and HashToScalar's uniform bytes straight into the group engine's scratch);
 * SHA-256 for the enclave's own hashing (record index leaves and keys, the audit chain,
 * partitions, the end-to-end envelope's key schedule). Where neither library loads, callers use
 * libsodium's WebAssembly build (hash-sodium.ts).
 *
 * Both libraries are used only through init/update/final on a hash state: HMAC is RFC 2104's
 * composition over them, with the key's inner and outer pad states hashed once per key
 * (`hmacKey`), and a state after `init` copied instead of calling init. Each library's first use
 * checks itself against FIPS 180-4's "abc" digest and RFC 4231's first HMAC case and is refused
 * otherwise (a wrong state size would show there).
 *
 * Memory: koffi hands a TypedArray argument to C as a pointer to its contents (no copy), so every
 * byte the library reads or writes for us is in arrays we own, carved from one ArrayBuffer (V8
 * keeps a small array's bytes inside the object and moves them out the first time koffi asks for
 * them), zeroed after each call. Inputs longer than STAGE are passed as the caller's arrays.
 * Keyed HMAC states and hash prefixes are kept in slots of that buffer until `dispose` (in arrays
 * of their own when all slots are taken), zeroed when released. What we can not wipe: the
 * library's stack temporaries (libsodium clears its message schedule; OpenSSL's assembly keeps
 * it in registers and on the stack) and the caller's arrays.
 *
 * Loading (`loadNativeSha256`, `loadNativeSha512`) never throws; it answers the hash or why there
 * is none.
 */
import { processOpenssl } from './groups/openssl-native.ts';
import { firstLine, oncePerProcess, openLibrary } from './groups/sodium-native.ts';
import type { Fn, NativeEnv } from './groups/sodium-native.ts';
import { toHex } from './bytes.ts';
import { SavedHashPrefix, SavedHmacKey } from './hash.ts';
import type { HashName, HashPrefix, HashPrimitives, HmacKey, StateKeeper } from './hash.ts';

/** One hash function's calls on one library (pointers are our arrays). */
export interface ShaCalls {
  /** Bytes of the library's hash state. */
  stateBytes: number;
  init(state: Uint8Array): void;
  update(state: Uint8Array, data: Uint8Array, n: number): void;
  final(state: Uint8Array, out: Uint8Array): void;
}

/** Inputs up to this length are copied into the staging array and hashed in one update; longer ones are fed part by part. */
const STAGE = 1024;
/** Saved states (keyed HMAC states, hash prefixes): slots in the scratch buffer, each two hash states long. */
const SLOTS = 8;

/** SHA-256 or SHA-512 with HMAC over a library's init/update/final (see the file header). */
export class NativeSha implements HashPrimitives, StateKeeper<Uint8Array> {
  readonly outputLen: number;
  readonly blockLen: number;
  private readonly hs: number;
  private readonly stage: Uint8Array;
  private readonly out: Uint8Array;
  /** The key's pad block (RFC 2104 K XOR ipad, then K XOR opad). */
  private readonly keyStage: Uint8Array;
  /** `keyStage` and `out` as one array. */
  private readonly padOut: Uint8Array;
  private readonly hashState: Uint8Array;
  /** A key's inner and outer pad states for one `hmac` call. */
  private readonly macState: Uint8Array;
  /** The state after init; a constant. */
  private readonly ivState: Uint8Array;
  /** The state after one all-zero block (expand_message_xmd's Z_pad); a constant. */
  private readonly zPadState: Uint8Array;
  private readonly freeSlots: Uint8Array[] = [];
  /** Bytes of the staging array written since the last wipe. */
  private used = 0;

  constructor(
    readonly name: HashName,
    private readonly c: ShaCalls,
    /** 'node OpenSSL <version>' or 'libsodium native'. */
    readonly backend: string,
    /** Where the calls were loaded from. */
    readonly library: string,
  ) {
    this.outputLen = name === 'SHA-256' ? 32 : 64;
    this.blockLen = name === 'SHA-256' ? 64 : 128;
    const hs = (this.hs = c.stateBytes);
    const o = this.outputLen;
    const b = this.blockLen;
    // The staging array, then the key pad block right before the output: K XOR opad || inner hash
    // is one contiguous input (`padOut`).
    const buf = new Uint8Array(STAGE + b + o + hs + 2 * hs + hs + hs + SLOTS * 2 * hs);
    let at = 0;
    const take = (n: number) => buf.subarray(at, (at += n));
    this.stage = take(STAGE);
    this.keyStage = take(b);
    this.out = take(o);
    this.padOut = buf.subarray(STAGE, STAGE + b + o);
    this.hashState = take(hs);
    this.macState = take(2 * hs);
    this.ivState = take(hs);
    this.zPadState = take(hs);
    for (let i = 0; i < SLOTS; i++) this.freeSlots.push(take(2 * hs));
    c.init(this.ivState);
    this.zPadState.set(this.ivState);
    c.update(this.zPadState, this.keyStage, b); // all zeros
  }

  /** Copies `parts` into the staging array from `at`; their total length, or -1 when it does not fit. */
  private staged(parts: readonly Uint8Array[], at = 0): number {
    let n = 0;
    for (let i = 0; i < parts.length; i++) n += parts[i]!.length;
    if (at + n > STAGE) return -1;
    let o = at;
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i]!;
      this.stage.set(p, o);
      o += p.length;
    }
    if (o > this.used) this.used = o;
    return n;
  }

  /** Feeds the staged input (`n` bytes), or each part when it was too long to stage. */
  private feed(state: Uint8Array, parts: readonly Uint8Array[], n: number): void {
    if (n >= 0) this.c.update(state, this.stage, n);
    else for (const p of parts) this.c.update(state, p, p.length);
  }

  /** Hash of `parts` (staged as `n`) from `from` (a state) into `out`. */
  private digest(from: Uint8Array, parts: readonly Uint8Array[], n: number): void {
    const st = this.hashState;
    st.set(from);
    this.feed(st, parts, n);
    this.c.final(st, this.out);
  }

  hash(...parts: Uint8Array[]): Uint8Array {
    try {
      this.digest(this.ivState, parts, this.staged(parts));
      return this.out.slice();
    } finally {
      this.wipe();
    }
  }

  /**
   * RFC 2104 §2: K XOR ipad into `pad` (one block); K is the key zero-padded, or its hash when
   * longer than a block (then `out` and `hashState` hold it for the caller's wipe).
   */
  private ipad(pad: Uint8Array, key: Uint8Array): void {
    let k = key;
    if (key.length > this.blockLen) {
      this.digest(this.ivState, [key], -1);
      k = this.out;
    }
    pad.fill(0);
    pad.set(k);
    for (let i = 0; i < pad.length; i++) pad[i]! ^= 0x36;
  }

  /** The inner and outer pad states of `key` into `into` (two states); leaves `keyStage` for the caller's wipe. */
  private keyInto(into: Uint8Array, key: Uint8Array): void {
    const ks = this.keyStage;
    this.ipad(ks, key);
    const inner = into.subarray(0, this.hs);
    inner.set(this.ivState);
    this.c.update(inner, ks, ks.length);
    for (let i = 0; i < ks.length; i++) ks[i]! ^= 0x36 ^ 0x5c;
    const outer = into.subarray(this.hs, 2 * this.hs);
    outer.set(this.ivState);
    this.c.update(outer, ks, ks.length);
  }

  /** HMAC of `parts` (staged as `n`) from keyed pad states into `out`. */
  private macWith(keyed: Uint8Array, parts: readonly Uint8Array[], n: number): void {
    this.digest(keyed.subarray(0, this.hs), parts, n);
    const st = this.hashState;
    st.set(keyed.subarray(this.hs, 2 * this.hs));
    this.c.update(st, this.out, this.outputLen);
    this.c.final(st, this.out);
  }

  hmac(key: Uint8Array, ...parts: Uint8Array[]): Uint8Array {
    try {
      const b = this.blockLen;
      const n = this.staged(parts, b);
      if (n < 0) {
        this.keyInto(this.macState, key);
        this.macWith(this.macState, parts, n);
      } else {
        // H(K XOR ipad || text), then H(K XOR opad || inner): each one contiguous input.
        const st = this.hashState;
        const pad = this.stage.subarray(0, b);
        this.ipad(pad, key);
        st.set(this.ivState);
        this.c.update(st, this.stage, b + n);
        this.c.final(st, this.out);
        const ks = this.keyStage;
        for (let i = 0; i < b; i++) ks[i] = pad[i]! ^ 0x36 ^ 0x5c;
        st.set(this.ivState);
        this.c.update(st, this.padOut, b + this.outputLen);
        this.c.final(st, this.out);
      }
      return this.out.slice();
    } finally {
      this.wipe();
    }
  }

  /** The key's pad states are hashed once and kept until `dispose`. */
  hmacKey(key: Uint8Array): HmacKey {
    const keyed = this.freeSlots.pop() ?? new Uint8Array(2 * this.hs);
    try {
      this.keyInto(keyed, key);
    } finally {
      this.wipe();
    }
    return new SavedHmacKey(this, keyed);
  }

  macFrom(keyed: Uint8Array, parts: readonly Uint8Array[]): Uint8Array {
    try {
      this.macWith(keyed, parts, this.staged(parts));
      return this.out.slice();
    } finally {
      this.wipe();
    }
  }

  /** Hash(parts), and the state after `parts` kept for one `extend`. */
  hashPrefix(...parts: Uint8Array[]): HashPrefix {
    const saved = this.freeSlots.pop() ?? new Uint8Array(2 * this.hs);
    try {
      const n = this.staged(parts);
      const st = this.hashState;
      st.set(this.ivState);
      this.feed(st, parts, n);
      saved.set(st);
      this.c.final(st, this.out);
      return new SavedHashPrefix(this, this.out.slice(), saved);
    } finally {
      this.wipe();
    }
  }

  hashFrom(saved: Uint8Array, more: readonly Uint8Array[]): Uint8Array {
    try {
      this.digest(saved.subarray(0, this.hs), more, this.staged(more));
      return this.out.slice();
    } finally {
      this.wipe();
    }
  }

  /** Zeroes a saved state and gives its slot back (a slot is a view of the scratch buffer). */
  release(saved: Uint8Array): void {
    saved.fill(0);
    if (saved.buffer === this.stage.buffer) this.freeSlots.push(saved);
  }

  /**
   * RFC 9380 §5.3.1 expand_message_xmd(msg, DST, outputLen) with this hash, one output block, `dst`
   * at most 255 bytes: the uniform bytes are written to `into` (outputLen long; the caller wipes
   * it). b_0 = H(Z_pad || msg || I2OSP(len, 2) || 0x00 || DST || I2OSP(len(DST), 1)) starts from the
   * state after Z_pad; b_1 = H(b_0 || 0x01 || DST || I2OSP(len(DST), 1)) (with one block, b_0 is
   * never XORed into anything).
   */
  xmdInto(msg: Uint8Array, dst: Uint8Array, into: Uint8Array): void {
    const o = this.outputLen;
    if (dst.length > 255) throw new RangeError('xmdInto: DST longer than 255 bytes');
    if (into.length !== o) throw new RangeError(`xmdInto: output must be ${o} bytes`);
    const c = this.c;
    const st = this.stage;
    const h = this.hashState;
    try {
      h.set(this.zPadState);
      const tail = 4 + dst.length;
      let n = 0;
      if (msg.length + tail <= STAGE) {
        st.set(msg);
        n = msg.length;
      } else c.update(h, msg, msg.length);
      st[n] = o >> 8;
      st[n + 1] = o & 0xff;
      st[n + 2] = 0;
      st.set(dst, n + 3);
      st[n + 3 + dst.length] = dst.length;
      n += tail;
      if (n > this.used) this.used = n;
      c.update(h, st, n);
      c.final(h, this.out);
      st.set(this.out);
      st[o] = 1;
      st.set(dst, o + 1);
      st[o + 1 + dst.length] = dst.length;
      const m = o + 2 + dst.length;
      if (m > this.used) this.used = m;
      h.set(this.ivState);
      c.update(h, st, m);
      c.final(h, into);
    } finally {
      this.wipe();
    }
  }

  /** Zeroes what the last call wrote: staged bytes, output, key pad, states. */
  private wipe(): void {
    this.stage.fill(0, 0, this.used);
    this.used = 0;
    this.out.fill(0);
    this.keyStage.fill(0);
    this.hashState.fill(0);
    this.macState.fill(0);
  }
}

export type NativeSha256 = NativeSha & { readonly name: 'SHA-256' };
export type NativeSha512 = NativeSha & { readonly name: 'SHA-512' };
export type NativeSha256Load = { sha256: NativeSha256 } | { sha256: null; reason: string };
export type NativeSha512Load = { sha512: NativeSha512 } | { sha512: null; reason: string };
export type NativeShaLoad = { sha: NativeSha } | { sha: null; reason: string };

/** The libraries, in the order the loaders try them. */
export type ShaLibrary = 'openssl' | 'libsodium';

/**
 * `<openssl/sha.h>` SHA256_CTX (8 + 2 + 16 + 2 32-bit words) and SHA512_CTX (8 + 2 + 16 64-bit
 * words, 2 32-bit): OpenSSL has no call that answers them; the self-check catches a mismatch only
 * as far as a too small state corrupts the digest, so the sizes are generous (a larger array is
 * harmless: the library touches its struct only).
 */
const OPENSSL_STATE = { 256: 112 + 16, 512: 216 + 24 } as const;

async function opensslCalls(bits: 256 | 512, env: NativeEnv): Promise<{ calls: ShaCalls; backend: string; library: string } | { calls: null; reason: string }> {
  const l = await processOpenssl(env);
  if (!l.lib) return { calls: null, reason: l.reason };
  try {
    const f = (sig: string) => l.lib.func(sig) as Fn;
    const init = f(`int SHA${bits}_Init(uint8_t *c)`);
    const update = f(`int SHA${bits}_Update(uint8_t *c, uint8_t *data, size_t len)`);
    const final = f(`int SHA${bits}_Final(uint8_t *md, uint8_t *c)`);
    return {
      calls: {
        stateBytes: OPENSSL_STATE[bits],
        init: (s) => void init(s),
        update: (s, d, n) => void update(s, d, n),
        final: (s, out) => void final(out, s),
      },
      backend: `node OpenSSL ${l.version}`,
      library: 'the node process (OpenSSL)',
    };
  } catch (e) {
    return { calls: null, reason: `Node's OpenSSL SHA${bits} symbols: ${firstLine(e)}` };
  }
}

async function sodiumCalls(bits: 256 | 512, env: NativeEnv): Promise<{ calls: ShaCalls; backend: string; library: string } | { calls: null; reason: string }> {
  const l = await openLibrary(env);
  if (!l.lib) return { calls: null, reason: l.reason };
  try {
    const f = (sig: string) => l.lib.func(sig) as Fn;
    const h = `crypto_hash_sha${bits}`;
    const init = f(`int ${h}_init(uint8_t *state)`);
    const update = f(`int ${h}_update(uint8_t *state, uint8_t *in, unsigned long long inlen)`);
    const final = f(`int ${h}_final(uint8_t *state, uint8_t *out)`);
    return {
      calls: {
        stateBytes: f(`size_t ${h}_statebytes()`)(),
        init: (s) => void init(s),
        update: (s, d, n) => void update(s, d, n),
        final: (s, out) => void final(s, out),
      },
      backend: 'libsodium native',
      library: l.library,
    };
  } catch (e) {
    return { calls: null, reason: `${l.library}: ${firstLine(e)}` };
  }
}

// FIPS 180-4 examples (SHA-256 and SHA-512 of "abc") and RFC 4231 §4.2 (HMAC test case 1: key 20
// bytes of 0x0b, data "Hi There").
const SELF_CHECK = {
  256: {
    abc: 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad',
    hmac: 'b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7',
  },
  512: {
    abc: 'ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f',
    hmac: '87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cdedaa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854',
  },
} as const;

/** Null when `h` gives the known answers (hash, one-shot HMAC, keyed HMAC), else what failed. */
export function knownAnswerFault(h: NativeSha): string | null {
  const want = SELF_CHECK[h.outputLen === 32 ? 256 : 512];
  const te = new TextEncoder();
  const key = new Uint8Array(20).fill(0x0b);
  if (toHex(h.hash(te.encode('abc'))) !== want.abc) return `${h.name} of "abc" is wrong`;
  if (toHex(h.hmac(key, te.encode('Hi There'))) !== want.hmac) return `HMAC-${h.name} (RFC 4231 case 1) is wrong`;
  const k = h.hmacKey(key);
  try {
    if (toHex(k.mac(te.encode('Hi There'))) !== want.hmac) return `keyed HMAC-${h.name} (RFC 4231 case 1) is wrong`;
  } finally {
    k.dispose();
  }
  return null;
}

/** SHA-`bits` on `library`, checked against the known answers, or why not. */
export async function loadNativeShaOn(library: ShaLibrary, bits: 256 | 512, env: NativeEnv = process.env): Promise<NativeShaLoad> {
  const r = library === 'openssl' ? await opensslCalls(bits, env) : await sodiumCalls(bits, env);
  if (!r.calls) return { sha: null, reason: r.reason };
  try {
    const h = new NativeSha(`SHA-${bits}`, r.calls, r.backend, r.library);
    const fault = knownAnswerFault(h);
    return fault ? { sha: null, reason: `${r.backend}: ${fault}` } : { sha: h };
  } catch (e) {
    return { sha: null, reason: `${r.backend}: ${firstLine(e)}` };
  }
}

/** Node's OpenSSL, else native libsodium; the reasons of both when neither loads. */
async function loadSha(bits: 256 | 512, env: NativeEnv): Promise<NativeShaLoad> {
  const a = await loadNativeShaOn('openssl', bits, env);
  if (a.sha) return a;
  const b = await loadNativeShaOn('libsodium', bits, env);
  return b.sha ? b : { sha: null, reason: `${a.reason}; ${b.reason}` };
}

/** Native SHA-256 and HMAC-SHA256, loaded once per process, or the reason they are not available. */
export const loadNativeSha256: (env?: NativeEnv) => Promise<NativeSha256Load> = oncePerProcess(async (env) => {
  const r = await loadSha(256, env);
  return r.sha ? { sha256: r.sha as NativeSha256 } : { sha256: null, reason: r.reason };
});

/** Native SHA-512 and HMAC-SHA512, loaded once per process, or the reason they are not available. */
export const loadNativeSha512: (env?: NativeEnv) => Promise<NativeSha512Load> = oncePerProcess(async (env) => {
  const r = await loadSha(512, env);
  return r.sha ? { sha512: r.sha as NativeSha512 } : { sha512: null, reason: r.reason };
});
