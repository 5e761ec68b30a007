/**
 * The check of the issuer's token (the rules are in auth.ts), the enclave's and the host's: the
 * compact JWS parsed strictly here (RFC 7515 §7.1: exactly three base64url parts without padding,
 * canonical; the protected header as auth.ts allows it), the Ed25519 signature (RFC 8032 §5.1.7)
 * on native libsodium (groups/sodium-native.ts) or, where it does not load, on node:crypto, then
 * the claims against the provisioned issuer set and audience, the record id and the platform
 * clock. Every client operation passes here before it runs, so a host that skips its own checks
 * still can not get a guess charged, a record changed or a status read. The vault service runs the
 * same check early (host/service/routes.ts), with the host's clock, to shed a stranger's load
 * before it takes a record's rate-limit bucket; nothing depends on it.
 *
 * Both signature backends refuse the same signatures: a non-canonical S (S >= L), an R or an
 * issuer key of small order, a non-canonical R or key. libsodium 1.0.18 refuses all of them
 * itself; OpenSSL (node:crypto) refuses a non-canonical S and R but accepts small-order points, so
 * the fallback checks R against SMALL_ORDER, and an issuer key is checked once, at `create`.
 *
 * A token that verified is cached (by its exact text) until it expires, so a login pays one
 * signature verification for its LoginStart and none for its LoginFinish; a cache hit still
 * checks the subject and the expiry against the platform clock.
 */
import { createPublicKey, verify as nodeVerify } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { ed25519 } from '@noble/curves/ed25519.js';
import { loadNativeEd25519 } from '../opaque/groups/sodium-native.ts';
import { latin1Key } from '../opaque/bytes.ts';
import { EnclaveFault, Handling } from './codes.ts';
import { CLOCK_SKEW_S, MAX_AUTH_TOKEN, MAX_TOKEN_LIFETIME_S, base64url, issuerKid } from './auth.ts';
import type { AuthConfig } from './auth.ts';

/** Verified tokens kept (each a few hundred bytes): enough for every login in flight on a partition. */
export const TOKEN_CACHE_MAX = 8192;
const CACHE_MAX = TOKEN_CACHE_MAX;

interface Issuer {
  name: string;
  publicKey: Uint8Array;
  /** False for a key of small order or not canonically encoded: every token under it is refused. */
  usable: boolean;
  /** node:crypto's key object (the fallback), made once. */
  key: KeyObject | null;
}
interface Verified {
  /** The subject's bytes as a string of char codes (a cheap exact compare with the record id). */
  sub: string;
  expMs: number;
}

/** Whether `sig` is a signature of `input` under `issuer` (a usable key). */
type SignatureCheck = (sig: Uint8Array, input: Uint8Array, issuer: Issuer) => boolean;

const td = new TextDecoder('utf-8', { fatal: true });
const te = new TextEncoder();
const fault = (code: number, msg: string) => new EnclaveFault(code, msg, 'auth');
const invalid = (msg: string) => fault(Handling.AuthInvalid, msg);

/** Each byte as the char of that code (latin1), in one string: no string built char by char per check. */
const subjectKey = latin1Key;

/** An issuer key that decodes (strictly: y < p) to a point not of small order. */
function usableKey(encoded: Uint8Array): boolean {
  try {
    return !ed25519.Point.fromBytes(encoded).isSmallOrder();
  } catch {
    return false;
  }
}

/**
 * The canonical encodings of the eight points of order dividing 8 (the canonical entries of
 * libsodium's `ge25519_has_small_order` list; the test recomputes them with @noble/curves). Only
 * the fallback needs them: OpenSSL compares R byte for byte with a canonical encoding, so a
 * non-canonical one fails there anyway.
 */
const SMALL_ORDER = new Set([
  '0100000000000000000000000000000000000000000000000000000000000000',
  'c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a',
  '0000000000000000000000000000000000000000000000000000000000000080',
  '26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05',
  'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  '26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85',
  '0000000000000000000000000000000000000000000000000000000000000000',
  'c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa',
]);
export const SMALL_ORDER_ENCODINGS: readonly string[] = [...SMALL_ORDER];

const B64U = /^[A-Za-z0-9_-]+$/;
const B64U_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/**
 * base64url without padding (RFC 7515 §2), canonical (RFC 4648 §3.5: the unused bits of the last
 * character are zero), not empty; null otherwise.
 */
function b64u(s: string): Uint8Array | null {
  if (!B64U.test(s) || s.length % 4 === 1) return null;
  const rem = s.length % 4;
  if (rem !== 0 && (B64U_ALPHABET.indexOf(s[s.length - 1]!) & (rem === 2 ? 0x0f : 0x03)) !== 0) return null;
  return Buffer.from(s, 'base64url');
}

function jsonObject(b: Uint8Array): Record<string, unknown> | null {
  try {
    const v: unknown = JSON.parse(td.decode(b));
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

/** The protected header's members auth.ts allows. */
const HEADER_MEMBERS = new Set(['alg', 'kid', 'typ']);

export class TokenVerifier {
  private readonly cache = new Map<string, Verified>();

  private constructor(
    private readonly audience: string,
    private readonly issuers: Map<string, Issuer>,
    private readonly signatureOk: SignatureCheck,
    /** Where signatures are verified: `sodium-native` or `node-crypto`. */
    readonly backend: string,
  ) {}

  /**
   * `config` null: no issuer provisioned, and every operation is refused. `env`: where to look for
   * native libsodium (process.env; tests hide it with BKV_SODIUM_LIBRARY, sodium-native.ts).
   */
  static async create(config: AuthConfig | null, env?: Record<string, string | undefined>): Promise<TokenVerifier> {
    const native = (await loadNativeEd25519(env)).ed25519;
    const issuers = new Map<string, Issuer>();
    for (const i of config?.issuers ?? []) {
      const usable = usableKey(i.publicKey);
      const key = native || !usable ? null : createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: base64url(i.publicKey) }, format: 'jwk' });
      issuers.set(issuerKid(i.publicKey), { name: i.name, publicKey: i.publicKey, usable, key });
    }
    const check: SignatureCheck = native
      ? (sig, input, i) => native.verify(sig, input, i.publicKey)
      : (sig, input, i) => !SMALL_ORDER.has(Buffer.from(sig.buffer, sig.byteOffset, 32).toString('hex')) && nodeVerify(null, input, i.key!, sig);
    return new TokenVerifier(config?.audience ?? '', issuers, check, native ? 'sodium-native' : 'node-crypto');
  }

  get issuerCount(): number {
    return this.issuers.size;
  }

  /**
   * Resolves when `token` authorizes an operation on `recordId` at `nowMs`; otherwise rejects with
   * an EnclaveFault (AuthRequired, AuthInvalid, AuthExpired, AuthWrongSubject, AuthWrongAudience).
   */
  async check(token: Uint8Array, recordId: Uint8Array, nowMs: number): Promise<void> {
    this.checkNow(token, recordId, nowMs);
  }

  /**
   * `check` without a promise: returns when `token` authorizes the operation, throws the same
   * EnclaveFault otherwise. The enclave's batch pre-pass (vault/compute.ts `admit`) calls it for
   * every op; nothing in the check waits.
   */
  checkNow(token: Uint8Array, recordId: Uint8Array, nowMs: number): void {
    if (this.issuers.size === 0) throw fault(Handling.AuthRequired, 'this vault has no issuer provisioned');
    if (token.length === 0) throw fault(Handling.AuthRequired, 'the operation carries no token');
    if (token.length > MAX_AUTH_TOKEN) throw invalid('token too long');
    let text: string;
    try {
      text = td.decode(token);
    } catch {
      throw invalid('token is not text');
    }
    const sub = subjectKey(recordId);
    const hit = this.cache.get(text);
    if (hit) {
      if (nowMs >= hit.expMs + CLOCK_SKEW_S * 1000) {
        this.cache.delete(text);
        throw fault(Handling.AuthExpired, 'token expired');
      }
      if (hit.sub !== sub) throw fault(Handling.AuthWrongSubject, 'token is for another record');
      return;
    }
    const v = this.verify(token, text, nowMs);
    if (v.sub !== sub) throw fault(Handling.AuthWrongSubject, 'token is for another record');
    if (this.cache.size >= CACHE_MAX) this.evict(nowMs);
    this.cache.set(text, v);
  }

  /** Drops expired entries; if none expired, the oldest quarter (insertion order). */
  private evict(nowMs: number): void {
    for (const [k, v] of this.cache) if (nowMs >= v.expMs + CLOCK_SKEW_S * 1000) this.cache.delete(k);
    if (this.cache.size < CACHE_MAX) return;
    let drop = CACHE_MAX >> 2;
    for (const k of this.cache.keys()) {
      if (drop-- <= 0) break;
      this.cache.delete(k);
    }
  }

  /** The signature under the header's issuer key, then the claims; `token` is `text`'s UTF-8 bytes. */
  private verify(token: Uint8Array, text: string, nowMs: number): Verified {
    const parts = text.split('.');
    if (parts.length !== 3) throw invalid('token is not a compact JWS (three parts)');
    const [h, p, s] = parts as [string, string, string];
    const headerBytes = b64u(h);
    const payload = b64u(p);
    const sig = b64u(s);
    if (!headerBytes || !payload || !sig) throw invalid('token part is not canonical base64url');
    const header = jsonObject(headerBytes);
    if (!header) throw invalid('token header is not a JSON object');
    for (const k of Object.keys(header)) if (!HEADER_MEMBERS.has(k)) throw invalid('token header has a member the rules do not allow');
    if (header.alg !== 'EdDSA' || (header.typ !== undefined && header.typ !== 'JWT')) throw invalid('token header is not alg EdDSA (typ JWT)');
    const issuer = typeof header.kid === 'string' ? this.issuers.get(header.kid) : undefined;
    // The signing input is the token's first two parts (ASCII, so their bytes are the text's).
    const input = token.subarray(0, h.length + 1 + p.length);
    if (!issuer || !issuer.usable || sig.length !== 64 || !this.signatureOk(sig, input, issuer)) {
      throw invalid('token signature does not verify under a provisioned issuer key');
    }
    const c = jsonObject(payload);
    if (!c) throw invalid('token claims are not a JSON object');
    if (c.iss !== issuer.name) throw invalid('token issuer does not match its key');
    const aud = c.aud;
    if (!(aud === this.audience || (Array.isArray(aud) && aud.includes(this.audience)))) {
      throw fault(Handling.AuthWrongAudience, 'token is for another vault');
    }
    const { sub, iat, exp, nbf, jti } = c;
    if (typeof sub !== 'string' || sub.length === 0) throw invalid('token has no subject');
    if (!Number.isSafeInteger(iat) || !Number.isSafeInteger(exp)) throw invalid('token needs integer iat and exp');
    if (typeof jti !== 'string' || jti.length === 0 || jti.length > 128) throw invalid('token needs a jti');
    if (nbf !== undefined && !Number.isSafeInteger(nbf)) throw invalid('token nbf is not an integer');
    const iatS = iat as number;
    const expS = exp as number;
    if (expS <= iatS || expS - iatS > MAX_TOKEN_LIFETIME_S) throw invalid('token lifetime out of bounds');
    const nowS = nowMs / 1000;
    if (iatS > nowS + CLOCK_SKEW_S || (nbf !== undefined && (nbf as number) > nowS + CLOCK_SKEW_S)) {
      throw invalid('token is not valid yet');
    }
    if (nowS >= expS + CLOCK_SKEW_S) throw fault(Handling.AuthExpired, 'token expired');
    return { sub: subjectKey(te.encode(sub)), expMs: expS * 1000 };
  }
}
