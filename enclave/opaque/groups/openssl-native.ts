/**
 * The OpenSSL that Node itself carries, called through koffi on the running process's own
 * exports (`koffi.load(null)`, dlopen of the program: Node's builds export OpenSSL's public API
 * for addons, so no second OpenSSL is loaded). Its public API only. Used for:
 * - SHA-256 and SHA-512 (../hash-native.ts): SHA extensions and AVX2 where the CPU has them;
 * - X25519 (`OpensslX25519`): the end-to-end envelope's Diffie-Hellman (enclave/vault/e2e-open.ts),
 *   30.2-30.4 against native libsodium's 36.3-36.7 µs on the bench machine (bench/README.md
 *   2026-12-07; bench/breakdown.ts rows).
 *
 * Loading never throws; it answers the object or why there is none (koffi missing, the symbols
 * not exported, BKV_OPENSSL_NATIVE=0, a failed known-answer check).
 */
import { fromHex, toHex } from '../bytes.ts';
import type { Fn, NativeEnv } from './sodium-native.ts';
import { firstLine, oncePerProcess } from './sodium-native.ts';

type Koffi = (typeof import('koffi'))['default'];
export type ProcessLibrary = ReturnType<Koffi['load']>;
export type ProcessLoad = { lib: ProcessLibrary; version: string } | { lib: null; reason: string };

let processLib: Promise<{ lib: ProcessLibrary; version: string } | { lib: null; reason: string }> | undefined;

/** Node's own OpenSSL (the process's exports), or why not; BKV_OPENSSL_NATIVE=0 turns it off. */
export async function processOpenssl(env: NativeEnv = process.env): Promise<ProcessLoad> {
  if (env.BKV_OPENSSL_NATIVE === '0') return { lib: null, reason: 'turned off (BKV_OPENSSL_NATIVE=0)' };
  processLib ??= (async () => {
    try {
      const koffi = (await import('koffi')).default;
      return { lib: koffi.load(null), version: process.versions.openssl ?? 'unknown' };
    } catch (e) {
      return { lib: null, reason: `the process's own symbols do not load: ${firstLine(e)}` };
    }
  })();
  return processLib;
}

/** EVP_PKEY_X25519 (NID_X25519, `<openssl/obj_mac.h>`). */
const EVP_PKEY_X25519 = 1034;

interface X25519Functions {
  newPrivate: Fn;
  newPublic: Fn;
  setPublic: Fn;
  ctxNew: Fn;
  deriveInit: Fn;
  setPeer: Fn;
  derive: Fn;
  freeKey: Fn;
  freeCtx: Fn;
  clearErrors: Fn;
}

/**
 * X25519 (RFC 7748 §5) with one private key, on OpenSSL's EVP API: the private key, one derive
 * context and one peer key object are made once; each `dh` sets the peer key's 32 bytes, hands it
 * to the context and derives (three calls). The private key lives in OpenSSL's memory, which
 * `dispose` frees (OpenSSL clears a freed X25519 private key). OpenSSL refuses an all-zero output
 * (RFC 7748 §6.1, RFC 9180 §7.1.4): `dh` answers null then, and clears the thread's OpenSSL error
 * queue so nothing of it reaches Node's own crypto calls on this thread. Not thread-safe: one per
 * thread, as every enclave device has its own.
 */
export class OpensslX25519 {
  readonly name: string;
  private readonly s = new Uint8Array(64 + 32);
  private readonly peerBytes = this.s.subarray(0, 32);
  private readonly out = this.s.subarray(32, 64);
  private readonly outLen: [number] = [32];
  private key: unknown;
  private ctx: unknown;
  private peer: unknown;

  constructor(
    private readonly f: X25519Functions,
    privateKey: Uint8Array,
    version: string,
  ) {
    this.name = `node OpenSSL ${version}`;
    const sk = this.s.subarray(64, 96);
    try {
      sk.set(privateKey);
      this.key = f.newPrivate(EVP_PKEY_X25519, null, sk, 32);
      // Any valid public key: the peer object is reset before every use (u = 9, the base point).
      this.peerBytes[0] = 9;
      this.peer = f.newPublic(EVP_PKEY_X25519, null, this.peerBytes, 32);
      this.ctx = this.key ? f.ctxNew(this.key, null) : null;
      if (!this.key || !this.peer || !this.ctx || f.deriveInit(this.ctx) !== 1) {
        this.dispose();
        throw new Error('OpenSSL X25519: the key or its context could not be made');
      }
    } finally {
      this.s.fill(0);
    }
  }

  /** X25519(sk, pk); null when refused (an all-zero output, a key of the wrong length, after dispose). */
  dh(pk: Uint8Array): Uint8Array | null {
    if (pk.length !== 32 || !this.ctx) return null;
    const f = this.f;
    try {
      this.peerBytes.set(pk);
      this.outLen[0] = 32;
      const ok = f.setPublic(this.peer, this.peerBytes, 32) === 1 && f.setPeer(this.ctx, this.peer, 0) === 1 && f.derive(this.ctx, this.out, this.outLen) === 1 && this.outLen[0] === 32;
      if (!ok) {
        f.clearErrors();
        return null;
      }
      return this.out.slice();
    } finally {
      this.s.fill(0);
    }
  }

  /** Frees the context and the keys (OpenSSL clears the private key's memory); `dh` answers null afterwards. */
  dispose(): void {
    if (this.ctx) this.f.freeCtx(this.ctx);
    if (this.key) this.f.freeKey(this.key);
    if (this.peer) this.f.freeKey(this.peer);
    this.ctx = this.key = this.peer = null;
  }
}

// RFC 7748 §6.1: Alice's private key, Bob's public key, and their shared secret.
const KAT = {
  sk: '77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a',
  pk: 'de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f',
  shared: '4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742',
} as const;

export type OpensslX25519Factory = { make(privateKey: Uint8Array): OpensslX25519; version: string } | { make: null; reason: string };

/** A maker of `OpensslX25519` for a private key, loaded and checked once per process, or why there is none. */
export const loadOpensslX25519: (env?: NativeEnv) => Promise<OpensslX25519Factory> = oncePerProcess(async (env) => {
  const l = await processOpenssl(env);
  if (!l.lib) return { make: null, reason: l.reason };
  const lib = l.lib;
  try {
    const fn = (sig: string) => lib.func(sig) as Fn;
    const f: X25519Functions = {
      newPrivate: fn('void *EVP_PKEY_new_raw_private_key(int type, void *e, uint8_t *key, size_t keylen)'),
      newPublic: fn('void *EVP_PKEY_new_raw_public_key(int type, void *e, uint8_t *key, size_t keylen)'),
      setPublic: fn('int EVP_PKEY_set1_encoded_public_key(void *pkey, uint8_t *pub, size_t publen)'),
      ctxNew: fn('void *EVP_PKEY_CTX_new(void *pkey, void *e)'),
      deriveInit: fn('int EVP_PKEY_derive_init(void *ctx)'),
      setPeer: fn('int EVP_PKEY_derive_set_peer_ex(void *ctx, void *peer, int validate_peer)'),
      derive: fn('int EVP_PKEY_derive(void *ctx, uint8_t *key, _Inout_ size_t *keylen)'),
      freeKey: fn('void EVP_PKEY_free(void *pkey)'),
      freeCtx: fn('void EVP_PKEY_CTX_free(void *ctx)'),
      clearErrors: fn('void ERR_clear_error()'),
    };
    const make = (sk: Uint8Array) => new OpensslX25519(f, sk, l.version);
    const k = make(fromHex(KAT.sk));
    try {
      const shared = k.dh(fromHex(KAT.pk));
      if (!shared || toHex(shared) !== KAT.shared) return { make: null, reason: `OpenSSL ${l.version}: X25519 fails its known-answer check (RFC 7748 §6.1)` };
      // The all-zero output is refused (u = 0 is of small order).
      if (k.dh(new Uint8Array(32)) !== null) return { make: null, reason: `OpenSSL ${l.version}: X25519 does not refuse an all-zero output` };
    } finally {
      k.dispose();
    }
    return { make, version: l.version };
  } catch (e) {
    return { make: null, reason: `OpenSSL ${l.version}: ${firstLine(e)}` };
  }
});
