/**
 * Per-user authorization: the contract between the issuer, the client, the host and the enclave.
 *
 * The issuer (the integrating service that knows who a user is) signs short-lived JSON Web Tokens
 * (RFC 7519) with EdDSA over Ed25519 (RFC 8037). The client puts its token in the `auth` field of
 * every client operation, inside the HPKE-sealed request, and the enclave checks it before it
 * charges, changes or reveals anything (enclave/api/auth-verify.ts). A token is valid for a
 * record when:
 *   - it is a JWS in the compact serialization (RFC 7515 §7.1): three parts of base64url without
 *     padding, each canonical (RFC 4648 §3.5), joined by dots;
 *   - its protected header is `alg: "EdDSA"` with a `kid` naming a provisioned issuer key, and at
 *     most `typ: "JWT"` beside them (no `crit`, no other member); the signature verifies under
 *     that key (the kid is the key's RFC 7638 JWK thumbprint, SHA-256), strictly: S < L, R and
 *     the key canonical and not of small order (RFC 8032 §5.1.7, as libsodium checks it);
 *   - `iss` equals that issuer's provisioned name and `aud` (a string, or an array holding it)
 *     equals the vault's provisioned audience;
 *   - `sub` equals the record id (its UTF-8 bytes);
 *   - `iat` and `exp` are integers (seconds), `exp - iat <= MAX_TOKEN_LIFETIME_S`, and by the
 *     enclave's platform clock `iat <= now + CLOCK_SKEW_S` and `now < exp + CLOCK_SKEW_S`
 *     (and `nbf <= now + CLOCK_SKEW_S` when present);
 *   - `jti` is a non-empty string of at most 128 characters.
 * The issuer set and the audience are provisioned into the vault (`AuthConfig`): the host stores
 * them and hands them to every device at boot, and the enclave keeps a hash of them in its NVRAM,
 * so a host that edits them is refused; changing them takes the operator's secret (`SetAuth`).
 *
 * Browser-safe (@noble/hashes only): the client SDK and the CLI compute kids with it too.
 */
import { sha256 } from '@noble/hashes/sha2.js';
import { bytes, decodeFields, encodeFields, fixed, list, u8 } from './codec.ts';
import { PACING } from './pacing.ts';
import type { Decoded } from './codec.ts';

/** Upper bound of a token on the wire (an EdDSA JWT with the claims above is about 300 bytes). */
export const MAX_AUTH_TOKEN = 1024;
/** "Short-lived": an issuer may not mint a token valid for longer than this. */
export const MAX_TOKEN_LIFETIME_S = 3600;
/** Tolerated disagreement between the issuer's clock and the device's. */
export const CLOCK_SKEW_S = 30;
export const MAX_ISSUERS = 16;
/** The audience a vault has unless provisioned with another. */
export const DEFAULT_AUDIENCE = 'backup-key-vault';

export const AuthConfigSchema = [
  ['audience', bytes(1, 128)],
  ['issuers', list([['name', bytes(1, 128)], ['publicKey', fixed(32)]] as const, MAX_ISSUERS)],
  ['minPacing', u8],
] as const;

/**
 * What a vault is provisioned with: whose tokens it accepts, for which audience, and the laxest
 * guess pacing a registration may pick (enclave/api/pacing.ts; default standard).
 */
export interface AuthConfig {
  audience: string;
  issuers: { name: string; publicKey: Uint8Array }[];
  minPacing?: number;
}

const te = new TextEncoder();
const td = new TextDecoder('utf-8', { fatal: true });

export function encodeAuthConfig(c: AuthConfig): Uint8Array {
  const v: Decoded<typeof AuthConfigSchema> = {
    audience: te.encode(c.audience),
    issuers: c.issuers.map((i) => ({ name: te.encode(i.name), publicKey: i.publicKey })),
    minPacing: c.minPacing ?? PACING.standard,
  };
  return encodeFields(AuthConfigSchema, v);
}

/** Strict (codec.ts): a typed fault on malformed bytes or text that is not UTF-8. */
export function decodeAuthConfig(b: Uint8Array): AuthConfig {
  const d = decodeFields(AuthConfigSchema, b, 'auth config');
  return { audience: td.decode(d.audience), issuers: d.issuers.map((i) => ({ name: td.decode(i.name), publicKey: i.publicKey })), minPacing: d.minPacing };
}

export function base64url(b: Uint8Array): string {
  let s = '';
  for (const x of b) s += String.fromCharCode(x);
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

export function fromBase64url(s: string): Uint8Array {
  if (!/^[A-Za-z0-9_-]*$/.test(s)) throw new TypeError('not base64url');
  const bin = atob(s.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - (s.length % 4)) % 4));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

/** RFC 7638 JWK thumbprint (SHA-256, base64url) of a raw Ed25519 public key: the issuer key's `kid`. */
export function issuerKid(publicKey: Uint8Array): string {
  // §3.2: the required members of an OKP key (RFC 8037 §2) in lexicographic order, no whitespace.
  const canonical = `{"crv":"Ed25519","kty":"OKP","x":"${base64url(publicKey)}"}`;
  return base64url(sha256(te.encode(canonical)));
}
