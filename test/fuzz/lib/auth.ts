/**
 * Fuzzing: the planted issuer (enclave/api/auth.ts). Like the planted token keys (canary.ts), its
 * Ed25519 key is fixed, so every fuzz vault is provisioned with the same issuer set, tokens in
 * checked-in seeds and saved findings verify in any later run, and make-seeds.ts writes the same
 * bytes (Ed25519 signatures are deterministic and the `jti` is derived from the claims).
 *
 * Tokens are compact JWS (EdDSA) with the claims of host/auth/issuer.ts mintToken, signed with
 * node:crypto. Besides valid ones, `tokenOfKind` makes each kind of bad token the enclave must
 * refuse, with the fault it must refuse it with: the targets that drive client operations pick
 * one by a code byte in the request's `auth` field (`authFor`).
 */
import { PACING } from '../../../enclave/api/pacing.ts';
import { createHash, createPrivateKey, createPublicKey, sign } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { DEFAULT_AUDIENCE, base64url, fromBase64url, issuerKid } from '../../../enclave/api/auth.ts';
import type { AuthConfig } from '../../../enclave/api/auth.ts';
import { Handling } from '../../../enclave/api/codes.ts';

const te = new TextEncoder();
const td = new TextDecoder();
const sha256 = (s: string): Uint8Array => new Uint8Array(createHash('sha256').update(s).digest());
/** PKCS#8 DER of an Ed25519 private key, up to its 32-byte seed (RFC 8410 §7). */
const PKCS8_ED25519 = Buffer.from('302e020100300506032b657004220420', 'hex');

interface PlantedKey {
  key: KeyObject;
  publicKey: Uint8Array;
  kid: string;
}

function plantedKey(label: string): PlantedKey {
  const key = createPrivateKey({ key: Buffer.concat([PKCS8_ED25519, sha256(label)]), format: 'der', type: 'pkcs8' });
  const publicKey = fromBase64url(createPublicKey(key).export({ format: 'jwk' }).x!);
  return { key, publicKey, kid: issuerKid(publicKey) };
}

export const ISSUER_NAME = 'bkv-fuzz-issuer';
const ISSUER = plantedKey('bkv-fuzz/canary/issuer');
/** A key no fuzz vault is provisioned with (an attacker's own issuer). */
const ROGUE = plantedKey('bkv-fuzz/rogue/issuer');

/** The issuer set every fuzz vault is provisioned with. */
export const FUZZ_AUTH: AuthConfig = Object.freeze({ audience: DEFAULT_AUDIENCE, issuers: [{ name: ISSUER_NAME, publicKey: ISSUER.publicKey }], minPacing: PACING.none });

/** The fuzz vaults' clock at their start (lib/vault.ts), and the seeds' minting time. */
export const FUZZ_EPOCH_MS = 1_700_000_000_000;

export interface MintOptions {
  ttlS?: number;
  audience?: string;
  /** Seconds added to `iat` (a token from the future). */
  iatOffsetS?: number;
  /** Sign with the rogue key: under its own kid (unknown issuer), or under the planted kid (a forged signature). */
  rogue?: 'own-kid' | 'planted-kid';
  alg?: string;
}

/** A token for `subject` (a record id; its UTF-8 text), issued at `nowMs`. Deterministic. */
export function mintFuzzToken(subject: Uint8Array | string, nowMs: number, o: MintOptions = {}): string {
  const sub = typeof subject === 'string' ? subject : td.decode(subject);
  const iat = Math.floor(nowMs / 1000) + (o.iatOffsetS ?? 0);
  const ttl = o.ttlS ?? 600;
  const aud = o.audience ?? DEFAULT_AUDIENCE;
  const signer = o.rogue ? ROGUE : ISSUER;
  const kid = o.rogue === 'own-kid' ? ROGUE.kid : ISSUER.kid;
  const header = { alg: o.alg ?? 'EdDSA', kid, typ: 'JWT' };
  const jti = base64url(sha256(`bkv-fuzz/jti/${sub}/${iat}/${ttl}/${aud}/${o.rogue ?? ''}`).subarray(0, 12));
  const claims = { iss: ISSUER_NAME, aud, sub, iat, exp: iat + ttl, jti };
  const input = `${base64url(te.encode(JSON.stringify(header)))}.${base64url(te.encode(JSON.stringify(claims)))}`;
  return `${input}.${base64url(new Uint8Array(sign(null, Buffer.from(input), signer.key)))}`;
}

/**
 * The kinds of token a fuzzed client request can carry: a 1-byte `auth` field is a code (its
 * value modulo the number of kinds) that the driver replaces with a token of that kind for the
 * request's record, minted at the vault's clock; an empty field stays empty; a longer one is sent
 * as it is (a literal token, mutated by the fuzzer).
 */
export const TOKEN_KINDS = [
  'valid',
  'empty',
  'other-record',
  'expired',
  'wrong-audience',
  'unknown-issuer',
  'forged-signature',
  'not-yet-valid',
  'too-long-lived',
  'garbage',
  'not-utf8',
  'alg-none',
] as const;
export type TokenKind = (typeof TOKEN_KINDS)[number];

/** The fault the enclave must answer a token of each bad kind with. */
export const EXPECTED_FAULT: Readonly<Record<Exclude<TokenKind, 'valid'>, number>> = Object.freeze({
  empty: Handling.AuthRequired,
  'other-record': Handling.AuthWrongSubject,
  expired: Handling.AuthExpired,
  'wrong-audience': Handling.AuthWrongAudience,
  'unknown-issuer': Handling.AuthInvalid,
  'forged-signature': Handling.AuthInvalid,
  'not-yet-valid': Handling.AuthInvalid,
  'too-long-lived': Handling.AuthInvalid,
  garbage: Handling.AuthInvalid,
  'not-utf8': Handling.AuthInvalid,
  'alg-none': Handling.AuthInvalid,
});

/** The code byte of a kind (what seeds put in the `auth` field). */
export const tokenCode = (k: TokenKind): Uint8Array => Uint8Array.of(TOKEN_KINDS.indexOf(k));

/**
 * A token of `kind` for `recordId` at `nowMs`; `otherId` is the record whose valid token stands
 * in for another record's. `valid` tokens come from `validToken` (the driver's cache, so that the
 * enclave sees the one token a client reuses).
 */
export function tokenOfKind(kind: TokenKind, recordId: Uint8Array, otherId: Uint8Array, nowMs: number, validToken: (id: Uint8Array) => Uint8Array): Uint8Array {
  switch (kind) {
    case 'valid':
      return validToken(recordId);
    case 'empty':
      return new Uint8Array(0);
    case 'other-record':
      return validToken(otherId);
    case 'expired':
      return te.encode(mintFuzzToken(recordId, nowMs - 7200_000));
    case 'wrong-audience':
      return te.encode(mintFuzzToken(recordId, nowMs, { audience: 'another-vault' }));
    case 'unknown-issuer':
      return te.encode(mintFuzzToken(recordId, nowMs, { rogue: 'own-kid' }));
    case 'forged-signature':
      return te.encode(mintFuzzToken(recordId, nowMs, { rogue: 'planted-kid' }));
    case 'not-yet-valid':
      return te.encode(mintFuzzToken(recordId, nowMs, { iatOffsetS: 600 }));
    case 'too-long-lived':
      return te.encode(mintFuzzToken(recordId, nowMs, { ttlS: 7200 }));
    case 'garbage':
      return te.encode('not a token');
    case 'not-utf8':
      return Uint8Array.of(0xff, 0xfe, 0x2e, 0x80, 0x2e, 0xc0);
    case 'alg-none': {
      const t = mintFuzzToken(recordId, nowMs, { alg: 'none' });
      return te.encode(t.slice(0, t.lastIndexOf('.') + 1));
    }
  }
}

/**
 * What a fuzzed `auth` field becomes (see TOKEN_KINDS): the bytes to send and, when the driver
 * chose the kind, the kind (a literal field's validity is not predicted).
 */
export function authFor(field: Uint8Array, recordId: Uint8Array, otherId: Uint8Array, nowMs: number, validToken: (id: Uint8Array) => Uint8Array): { auth: Uint8Array; kind: TokenKind | null } {
  if (field.length === 0) return { auth: field, kind: 'empty' };
  if (field.length > 1) return { auth: field, kind: null };
  const kind = TOKEN_KINDS[field[0]! % TOKEN_KINDS.length]!;
  return { auth: tokenOfKind(kind, recordId, otherId, nowMs, validToken), kind };
}

/**
 * Valid tokens of one vault, one per record id, as a client reuses its token: minted at the
 * vault's clock and minted again once half their lifetime has passed on it (or it went back).
 */
export class TokenBook {
  private readonly tokens = new Map<string, { bytes: Uint8Array; atMs: number }>();
  constructor(private readonly now: () => number) {}

  bytes(recordId: Uint8Array): Uint8Array {
    const k = Buffer.from(recordId).toString('hex');
    const now = this.now();
    const t = this.tokens.get(k);
    if (t && now >= t.atMs && now - t.atMs < 300_000) return t.bytes;
    const bytes = te.encode(mintFuzzToken(recordId, now));
    this.tokens.set(k, { bytes, atMs: now });
    return bytes;
  }
}
